"""Alerts that Azure evaluates: ``monitor.MetricAlert`` on the PostgreSQL flexible server (and each
read replica passed in) and on Key Vault, notifying ``monitor.ActionGroup``s that reach the same
PagerDuty service and Slack channel as Alertmanager. Specifications from
components/render/db_alerts.py; this module only wires."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
from pulumi_azure_native import monitor

from .render import db_alerts as render
from .settings import StackSettings


class AzureAlerts(pulumi.ComponentResource):
    """``servers``: render.Server -> that server's ARM id (the primary, and replicas where the data
    tier has them); ``vault_id``: the Key Vault's."""

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        resource_group_name: pulumi.Input[str],
        servers: Sequence[tuple[render.Server, pulumi.Input[str]]],
        vault_id: pulumi.Input[str] | None = None,
        edge_id: pulumi.Input[str] | None = None,  # the Application Gateway for Containers (WAF)
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:AzureAlerts", name, None, opts)
        s = settings
        a = s.observability.alerting
        child = pulumi.ResourceOptions(parent=self)
        tags = {**s.tags, "environment": s.environment, "managedBy": "pulumi"}

        # One action group per receiver: an alert names the one its severity routes to.
        self.action_groups: dict[str, monitor.ActionGroup] = {}
        if a.pagerduty_azure_integration_key:
            url = pulumi.Output.secret(render.pagerduty_url(a.pagerduty_azure_integration_key))
            self.action_groups[render.PAGERDUTY] = monitor.ActionGroup(
                "action-group-pagerduty",
                monitor.ActionGroupInitArgs(
                    resource_group_name=resource_group_name,
                    action_group_name=s.name("ag", "pagerduty"),
                    group_short_name="eb-pagerdty",
                    location="Global",
                    enabled=True,
                    webhook_receivers=[
                        monitor.WebhookReceiverArgs(name="pagerduty", service_uri=url, use_common_alert_schema=True)
                    ],
                    tags=tags,
                ),
                opts=child,
            )
        if a.slack_channel_email:
            self.action_groups[render.SLACK] = monitor.ActionGroup(
                "action-group-slack",
                monitor.ActionGroupInitArgs(
                    resource_group_name=resource_group_name,
                    action_group_name=s.name("ag", "slack"),
                    group_short_name="eb-slack",
                    location="Global",
                    enabled=True,
                    email_receivers=[
                        monitor.MicrosoftCommonEmailReceiverArgs(
                            name="slack-channel",
                            email_address=pulumi.Output.secret(a.slack_channel_email),
                            use_common_alert_schema=True,
                        )
                    ],
                    tags=tags,
                ),
                opts=child,
            )

        targets: dict[str, pulumi.Input[str]] = {server.key: rid for server, rid in servers}
        specs = render.database_alerts(s, [server for server, _ in servers])
        if vault_id is not None:
            targets["vault"] = vault_id
            specs += render.vault_alerts(s)
        if edge_id is not None:
            targets["edge"] = edge_id
            specs += render.edge_alerts(s)
        self.alerts: dict[str, monitor.MetricAlert] = {}
        for spec in specs:
            self.alerts[f"{spec.target}/{spec.name}"] = self._alert(s, spec, targets, resource_group_name, tags)
        self._settings = s
        self.register_outputs({})

    def group_id(self, severity: str) -> pulumi.Output[str]:
        """The action group an alert of this severity goes to: the receiver Alertmanager picks for
        it (components/render/db_alerts.py: receiver_for), for alerts other components make."""
        receiver = render.receiver_for(self._settings, severity)
        if receiver not in self.action_groups:
            raise ValueError(f"no Azure action group for the {receiver} receiver (observability.alerting)")
        return self.action_groups[receiver].id

    def _alert(
        self,
        s: StackSettings,
        spec: render.MetricAlertSpec,
        targets: Mapping[str, pulumi.Input[str]],
        resource_group_name: pulumi.Input[str],
        tags: dict,
    ) -> monitor.MetricAlert:
        receiver = render.receiver_for(s, spec.severity)
        group = self.action_groups.get(receiver)
        runbook = f"{s.observability.alerting.runbook_base_url.rstrip('/')}/{spec.name}.md"
        suffix = "" if spec.target in ("primary", "vault", "edge") else f"-{spec.target}"
        return monitor.MetricAlert(
            f"alert-{spec.name.lower()}{suffix}",
            monitor.MetricAlertArgs(
                resource_group_name=resource_group_name,
                rule_name=s.name("alert", spec.name.lower()) + suffix,
                location="global",
                description=f"{spec.summary}. Runbook: {runbook}",
                enabled=True,
                severity=spec.azure_severity,
                scopes=[targets[spec.target]],
                evaluation_frequency=spec.frequency,
                window_size=spec.window,
                auto_mitigate=True,
                criteria=monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                    odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                    all_of=[
                        monitor.MetricCriteriaArgs(
                            criterion_type="StaticThresholdCriterion",
                            name=spec.metric,
                            metric_name=spec.metric,
                            metric_namespace=spec.namespace,
                            operator=monitor.Operator(spec.operator),
                            threshold=spec.threshold,
                            time_aggregation=monitor.AggregationTypeEnum(spec.aggregation),
                            dimensions=[
                                monitor.MetricDimensionArgs(name=d, operator="Include", values=list(values))
                                for d, values in spec.dimensions
                            ]
                            or None,
                        )
                    ],
                ),
                actions=[monitor.MetricAlertActionArgs(action_group_id=group.id)] if group is not None else None,
                tags={**tags, "severity": spec.severity, "runbook": runbook},
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
