"""Diagnostic settings: the audit trail of every stateful Azure resource in the stack's Log
Analytics workspace (retention: ``aks.logRetentionDays`` per environment).

* cluster: the control-plane categories in ``aks.controlPlaneLogs`` (at least kube-audit-admin
  and guard: who changed what, who signed in),
* vault: ``AuditEvent`` (who read which secret),
* PostgreSQL: ``PostgreSQLLogs`` (with log_connections/log_disconnections/log_checkpoints on)
  and ``PostgreSQLFlexSessions``,
* registry: repository (push/pull/delete) and login events.

Platform metrics are exported to the workspace in prod only: dev reads them from Azure Monitor
metrics (free) instead of paying Log Analytics ingestion for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import monitor

from .settings import StackSettings

VAULT_LOGS = ("AuditEvent",)
POSTGRES_LOGS = ("PostgreSQLLogs", "PostgreSQLFlexSessions")
REGISTRY_LOGS = ("ContainerRegistryRepositoryEvents", "ContainerRegistryLoginEvents")
SETTING_NAME = "to-log-analytics"


@dataclass(frozen=True)
class Target:
    """One resource that gets a diagnostic setting: its ARM id and the log categories."""

    resource_id: pulumi.Input[str]
    categories: Sequence[str]
    # resource-specific tables (AKSAudit, AZKVAuditLogs, ContainerRegistryLoginEvents, ...);
    # False: the shared AzureDiagnostics table (PostgreSQL flexible server's categories)
    dedicated: bool = True


def log_categories(s: StackSettings) -> dict[str, tuple[str, ...]]:
    """Log categories per target kind."""
    return {
        "cluster": tuple(s.aks.control_plane_logs),
        "vault": VAULT_LOGS,
        "postgres": POSTGRES_LOGS,
        "registry": REGISTRY_LOGS,
    }


def diagnostic_setting_args(
    s: StackSettings, target: Target, workspace_id: pulumi.Input[str]
) -> monitor.DiagnosticSettingArgs:
    return monitor.DiagnosticSettingArgs(
        resource_uri=target.resource_id,
        name=SETTING_NAME,
        workspace_id=workspace_id,
        log_analytics_destination_type="Dedicated" if target.dedicated else None,
        logs=[monitor.DiagnosticsLogSettingsArgs(category=c, enabled=True) for c in target.categories],
        metrics=[monitor.DiagnosticsMetricSettingsArgs(category="AllMetrics", enabled=True)] if s.is_prod else None,
    )


class Diagnostics(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        settings: StackSettings,
        workspace_id: pulumi.Input[str],
        targets: Mapping[str, Target],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:Diagnostics", name, None, opts)
        self.settings: dict[str, monitor.DiagnosticSetting] = {}
        for key, target in targets.items():
            self.settings[key] = monitor.DiagnosticSetting(
                f"diag-{key}",
                diagnostic_setting_args(settings, target, workspace_id),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({})
