"""Audit trail: every stateful Azure resource sends its logs to a Log Analytics workspace
through a diagnostic setting (monitor:DiagnosticSetting on it, with the audit categories)."""

from __future__ import annotations

from typing import Any

from kit import MANDATORY, MISSING, config, get, schema, violation
from pulumi_policy import StackValidationPolicy

DIAGNOSTIC_SETTING = "azure-native:monitor:DiagnosticSetting"
WORKSPACE = "azure-native:operationalinsights:Workspace"
# resource type -> log categories its diagnostic setting must enable
REQUIRED_CATEGORIES = {
    "azure-native:containerservice:ManagedCluster": ["kube-audit-admin", "guard"],
    "azure-native:keyvault:Vault": ["AuditEvent"],
    "azure-native:dbforpostgresql:Server": ["PostgreSQLLogs"],
    "azure-native:containerregistry:Registry": ["ContainerRegistryRepositoryEvents", "ContainerRegistryLoginEvents"],
}


def _settings_for(target, settings) -> list:
    """The diagnostic settings attached to ``target``: its ARM id flows into their resourceUri,
    so the engine records the target among their dependencies (also while ids are unknown)."""
    return [d for d in settings if any(dep.urn == target.urn for dep in d.dependencies)]


def _to_workspace(setting) -> bool:
    if get(setting.props, "workspaceId") is not MISSING:
        return True
    return any(dep.resource_type == WORKSPACE for dep in setting.dependencies)


def _enabled_categories(setting) -> set[str]:
    logs = get(setting.props, "logs", [])
    return {str(get(log, "category", "")) for log in logs if get(log, "enabled", False) is True}


def _diagnostics(args, report):
    required: dict = config(args).get("requiredCategories", REQUIRED_CATEGORIES)
    settings = [r for r in args.resources if r.resource_type == DIAGNOSTIC_SETTING]
    for target in args.resources:
        if target.resource_type not in required:
            continue
        mine = [d for d in _settings_for(target, settings) if _to_workspace(d)]
        if not mine:
            violation(
                report,
                target.resource_type,
                target.name,
                "its diagnostic setting to a Log Analytics workspace",
                MISSING,
                "add a monitor.DiagnosticSetting with resource_uri = this resource's id and workspace_id ="
                " the stack's workspace (components/diagnostics.py)",
                target.urn,
            )
            continue
        enabled = set().union(*(_enabled_categories(d) for d in mine))
        missing = [c for c in required[target.resource_type] if c not in enabled]
        if missing:
            violation(
                report,
                DIAGNOSTIC_SETTING,
                mine[0].name,
                f"logs for {target.resource_type.split(':')[-1]} '{target.name}'",
                sorted(enabled),
                f"enable the categories {', '.join(missing)}",
                mine[0].urn,
            )


diagnostic_settings = StackValidationPolicy(
    name="diagnostic-settings-to-workspace",
    description="The cluster, vault, PostgreSQL server and registry each send their audit logs to a"
    " Log Analytics workspace.",
    validate=_diagnostics,
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "requiredCategories": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
                "default": REQUIRED_CATEGORIES,
            }
        }
    ),
)

PG_SERVER = "azure-native:dbforpostgresql:Server"
PG_CONFIG = "azure-native:dbforpostgresql:Configuration"
AUDIT_PARAMETERS = ["connection_throttle.enable", "log_connections", "log_disconnections", "log_checkpoints"]


def _postgres_audit(args, report):
    """Each flexible server sets the audit parameters 'on' as explicit Configuration resources."""
    wanted = config(args).get("parameters", AUDIT_PARAMETERS)
    params: dict[str, dict[str, Any]] = {}
    for r in args.resources:
        if r.resource_type == PG_CONFIG:
            params.setdefault(str(get(r.props, "serverName", "")), {})[str(get(r.props, "configurationName", ""))] = r
    for server in (r for r in args.resources if r.resource_type == PG_SERVER):
        mine = params.get(str(get(server.props, "serverName", server.name)), {})
        for name in wanted:
            param = mine.get(name)
            if param is None:
                violation(
                    report,
                    PG_SERVER,
                    server.name,
                    f"the server parameter {name}",
                    MISSING,
                    f"add a dbforpostgresql.Configuration {name} = 'on' for this server (components/postgres.py)",
                    server.urn,
                )
            elif str(get(param.props, "value", "")).lower() != "on":
                violation(
                    report,
                    PG_CONFIG,
                    param.name,
                    f"value of {name}",
                    get(param.props, "value"),
                    "set it to 'on'",
                    param.urn,
                )


postgres_audit = StackValidationPolicy(
    name="postgres-audit-parameters",
    description="PostgreSQL logs connections, disconnections and checkpoints and throttles failed sign-ins.",
    validate=_postgres_audit,
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "parameters": {
                "type": "array",
                "items": {"type": "string", "enum": AUDIT_PARAMETERS},
                "default": AUDIT_PARAMETERS,
            }
        }
    ),
)

POLICIES = [diagnostic_settings, postgres_audit]
