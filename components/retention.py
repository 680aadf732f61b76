"""Retention: application logs 90 days in Log Analytics, metrics for a year.

* Logs: the containers' logs land in ``ContainerLogV2`` (Container Insights). Where the workspace's
  retention (``aks.logRetentionDays``: dev 30, prod 90) differs from
  ``observability.retention.applicationLogDays``, the table gets its own retention.
* Metrics: Prometheus remote-writes every sample to an Azure Monitor workspace (managed
  Prometheus keeps 18 months), through a data collection endpoint and rule of the stack's own,
  signing in with a workload identity that may only publish to that rule (Monitoring Metrics
  Publisher on the DCR). docs/monitoring.md says why not Thanos.
* Grafana's identity: a user-assigned identity federated to Grafana's ServiceAccount, with
  Monitoring Reader on the stack's resource group (Azure Monitor metrics, e.g. Redis: data source
  ``azure-monitor``) and Monitoring Data Reader on the Azure Monitor workspace only (PromQL over
  the year of metrics: data source ``long-term-metrics``). Nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import alertsmanagement, managedidentity, monitor, operationalinsights

from . import rbac
from .render import helm_values
from .render import rules as rules_render
from .settings import StackSettings

APPLICATION_LOG_TABLES = ("ContainerLogV2",)
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
MONITORING_READER = "43d0d8ad-25c7-4714-9337-8ba259a9fe05"
MONITORING_DATA_READER = "b0d8363b-8ddd-447d-831f-62ca05bff136"  # query an Azure Monitor workspace
DESTINATION = "monitoring-account"


def log_tables(s: StackSettings) -> dict[str, int]:
    """Table -> retention days, for the tables whose retention must differ from the workspace's."""
    days = s.observability.retention.application_log_days
    if days == s.aks.log_retention_days:
        return {}
    return dict.fromkeys(APPLICATION_LOG_TABLES, days)


def remote_write_url(endpoint: str, immutable_id: str) -> str:
    """The DCR's Prometheus remote-write endpoint (Azure Monitor: self-managed Prometheus)."""
    return (
        f"{endpoint.rstrip('/')}/dataCollectionRules/{immutable_id}/streams/Microsoft-PrometheusMetrics"
        "/api/v1/write?api-version=2023-04-24"
    )


@dataclass(frozen=True)
class RemoteWrite:
    url: pulumi.Input[str]
    client_id: pulumi.Input[str]


@dataclass(frozen=True)
class GrafanaAzure:
    """What Grafana's Azure data sources need: its identity's client ID, the subscription (the
    Azure Monitor data source's default) and the workspace's PromQL endpoint (None: no archive)."""

    client_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    query_url: pulumi.Input[str] | None


class Retention(pulumi.ComponentResource):
    remote_write: RemoteWrite | None
    grafana: GrafanaAzure

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        resource_group_name: pulumi.Input[str],
        workspace_id: pulumi.Input[str],
        oidc_issuer_url: pulumi.Input[str],
        client: pulumi.Output,
        resource_group_id: pulumi.Input[str] | None = None,  # Grafana's Monitoring Reader scope
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:Retention", name, None, opts)
        s = settings
        child = pulumi.ResourceOptions(parent=self)
        tags = {**s.tags, "environment": s.environment, "managedBy": "pulumi"}
        workspace_name = pulumi.Output.from_input(workspace_id).apply(lambda i: i.rsplit("/", 1)[-1])
        for table, days in log_tables(s).items():
            operationalinsights.Table(
                f"log-table-{table.lower()}",
                operationalinsights.TableArgs(
                    resource_group_name=resource_group_name,
                    workspace_name=workspace_name,
                    table_name=table,
                    retention_in_days=days,
                    total_retention_in_days=days,
                ),
                opts=child,
            )

        self.remote_write = None
        self.workspace_id: pulumi.Output[str] | None = None
        grafana_identity = self._grafana_identity(s, resource_group_name, resource_group_id, oidc_issuer_url, client)
        self.grafana = GrafanaAzure(grafana_identity.client_id, client.subscription_id, None)
        if not s.observability.retention.long_term_metrics:
            self.register_outputs({})
            return
        amw = monitor.AzureMonitorWorkspace(
            "metrics-workspace",
            monitor.AzureMonitorWorkspaceArgs(
                resource_group_name=resource_group_name,
                azure_monitor_workspace_name=s.name("amw"),
                location=s.location,
                tags=tags,
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=s.protect),  # a year of metrics
        )
        dce = monitor.DataCollectionEndpoint(
            "metrics-dce",
            monitor.DataCollectionEndpointArgs(
                resource_group_name=resource_group_name,
                data_collection_endpoint_name=s.name("dce", "prometheus"),
                location=s.location,
                kind=monitor.KnownDataCollectionEndpointResourceKind.LINUX,
                description="Prometheus remote-write ingestion (event-backbone)",
                tags=tags,
            ),
            opts=child,
        )
        dcr = monitor.DataCollectionRule(
            "metrics-dcr",
            monitor.DataCollectionRuleArgs(
                resource_group_name=resource_group_name,
                data_collection_rule_name=s.name("dcr", "prometheus"),
                location=s.location,
                data_collection_endpoint_id=dce.id,
                description="Prometheus remote-write from the cluster's Prometheus into the Azure Monitor workspace",
                destinations=monitor.DataCollectionRuleDestinationsArgs(
                    monitoring_accounts=[
                        monitor.MonitoringAccountDestinationArgs(account_resource_id=amw.id, name=DESTINATION)
                    ]
                ),
                data_flows=[
                    monitor.DataFlowArgs(
                        streams=[monitor.KnownPrometheusForwarderDataSourceStreams.MICROSOFT_PROMETHEUS_METRICS],
                        destinations=[DESTINATION],
                    )
                ],
                tags=tags,
            ),
            opts=child,
        )
        identity = managedidentity.UserAssignedIdentity(
            "prometheus-remote-write-identity",
            resource_group_name=resource_group_name,
            resource_name_=s.name("id", "prometheus-remote-write"),
            location=s.location,
            tags=tags,
            opts=child,
        )
        ns, sa = s.observability.namespace, helm_values.prometheus_service_account()
        managedidentity.FederatedIdentityCredential(
            "prometheus-remote-write-federation",
            resource_group_name=resource_group_name,
            resource_name_=identity.name,
            federated_identity_credential_resource_name=f"{ns}-{sa}",
            issuer=oidc_issuer_url,
            subject=f"system:serviceaccount:{ns}:{sa}",
            audiences=["api://AzureADTokenExchange"],
            opts=child,
        )
        rbac.grant(
            "prometheus-publishes-metrics",
            role=MONITORING_METRICS_PUBLISHER,
            principal_id=identity.principal_id,
            scope=dcr.id,
            client=client,
            description="Prometheus remote-writes to the stack's data collection rule, nothing else",
            opts=child,
            principal_type="ServicePrincipal",
        )
        endpoint = dce.metrics_ingestion.apply(lambda m: m.endpoint if m is not None else None)
        url = pulumi.Output.all(endpoint, dcr.immutable_id).apply(lambda a: remote_write_url(str(a[0]), str(a[1])))
        self.remote_write = RemoteWrite(url=url, client_id=identity.client_id)
        rbac.grant(
            "grafana-reads-metrics-workspace",
            role=MONITORING_DATA_READER,
            principal_id=grafana_identity.principal_id,
            scope=amw.id,
            client=client,
            description="Grafana queries the year of metrics in the stack's Azure Monitor workspace, nothing else",
            opts=child,
            principal_type="ServicePrincipal",
        )
        query_url = amw.metrics.apply(
            lambda m: (m.prometheus_query_endpoint if m is not None else None) or helm_values.QUERY_URL_PLACEHOLDER
        )
        self.grafana = GrafanaAzure(grafana_identity.client_id, client.subscription_id, query_url)
        self.workspace_id = amw.id
        self.register_outputs({"metricsWorkspaceId": amw.id})

    def _grafana_identity(
        self,
        s: StackSettings,
        resource_group_name: pulumi.Input[str],
        resource_group_id: pulumi.Input[str] | None,
        oidc_issuer_url: pulumi.Input[str],
        client: pulumi.Output,
    ) -> managedidentity.UserAssignedIdentity:
        """Grafana's identity, federated to its ServiceAccount, Monitoring Reader on the resource group."""
        child = pulumi.ResourceOptions(parent=self)
        identity = managedidentity.UserAssignedIdentity(
            "grafana-identity",
            resource_group_name=resource_group_name,
            resource_name_=s.name("id", "grafana"),
            location=s.location,
            tags={**s.tags, "environment": s.environment, "managedBy": "pulumi"},
            opts=child,
        )
        ns, sa = s.observability.namespace, helm_values.grafana_service_account()
        managedidentity.FederatedIdentityCredential(
            "grafana-federation",
            resource_group_name=resource_group_name,
            resource_name_=identity.name,
            federated_identity_credential_resource_name=f"{ns}-{sa}",
            issuer=oidc_issuer_url,
            subject=f"system:serviceaccount:{ns}:{sa}",
            audiences=["api://AzureADTokenExchange"],
            opts=child,
        )
        if resource_group_id is None:
            resource_group_id = pulumi.Output.all(client.subscription_id, resource_group_name).apply(
                lambda a: f"/subscriptions/{a[0]}/resourceGroups/{a[1]}"
            )
        rbac.grant(
            "grafana-reads-azure-monitor",
            role=MONITORING_READER,
            principal_id=identity.principal_id,
            scope=resource_group_id,
            client=client,
            description="Grafana reads Azure Monitor metrics (e.g. Redis) of the stack's resource group",
            opts=child,
            principal_type="ServicePrincipal",
        )
        return identity


BROKER_DOWN = "BrokerDownSeenFromAzure"


def broker_down_expression(s: StackSettings) -> str:
    """The in-cluster broker, judged from the samples Prometheus remote-writes: none for 5 minutes
    (the broker, Prometheus or the whole cluster is gone) or fewer nodes up than its replicas."""
    sel = rules_render.broker_selector(s)
    return f"absent_over_time(up{{{sel}}}[5m])\nor\nsum(up{{{sel}}}) < {s.broker.replicas}"


def broker_availability(
    s: StackSettings,
    retention: Retention,
    resource_group_name: pulumi.Input[str],
    critical_group_id: pulumi.Input[str],
) -> alertsmanagement.PrometheusRuleGroup | None:
    """A Prometheus rule group Azure evaluates on the Azure Monitor workspace: the in-cluster
    Prometheus cannot page about its own cluster's death, Azure can (policy
    stateful-resources-availability-alert requires it in prod). Critical: the on-call group."""
    if not rules_render.in_cluster_broker(s) or retention.workspace_id is None:
        return None
    runbook = f"{s.observability.alerting.runbook_base_url.rstrip('/')}/{BROKER_DOWN}.md"
    return alertsmanagement.PrometheusRuleGroup(
        "broker-availability-rules",
        alertsmanagement.PrometheusRuleGroupArgs(
            resource_group_name=resource_group_name,
            rule_group_name=s.name("prg", "broker-availability"),
            location=s.location,
            description="The in-cluster RabbitMQ broker, evaluated by Azure from the remote-written metrics",
            scopes=[retention.workspace_id],
            enabled=True,
            interval="PT1M",
            rules=[
                alertsmanagement.PrometheusRuleArgs(
                    alert=BROKER_DOWN,
                    expression=broker_down_expression(s),
                    for_="PT2M",
                    severity=0,
                    enabled=True,
                    labels={"severity": "critical"},
                    annotations={
                        "summary": "The broker is down or no longer reports, seen from Azure",
                        "description": f"Fewer than {s.broker.replicas} RabbitMQ nodes up, or no sample of the "
                        "broker for 5 minutes in the Azure Monitor workspace: the broker, Prometheus or the "
                        "whole cluster is down.",
                        "runbook_url": runbook,
                    },
                    actions=[alertsmanagement.PrometheusRuleGroupActionArgs(action_group_id=critical_group_id)],
                    resolve_configuration=alertsmanagement.PrometheusRuleResolveConfigurationArgs(
                        auto_resolved=True, time_to_resolve="PT10M"
                    ),
                )
            ],
            tags={"environment": s.environment, "managedBy": "pulumi", **s.tags},
        ),
        opts=pulumi.ResourceOptions(parent=retention),
    )
