"""Azure Managed Redis (``Microsoft.Cache/redisEnterprise``) for the services with
``redis: true``: a cluster and its database ``default``, private and Microsoft Entra only.

* TLS only: ``clientProtocol: Encrypted``, ``minimumTlsVersion: 1.2``; no access keys
  (``accessKeysAuthentication: Disabled``); ``publicNetworkAccess: Disabled``.
* A private endpoint (group ``redisEnterprise``) in the endpoints subnet, registered in the
  private DNS zone ``privatelink.redis.azure.net`` linked to the VNet.
* High availability per ``redis.highAvailability`` (a rule makes it true in prod), clustering
  policy EnterpriseCluster (one endpoint, any client), eviction and persistence from the
  settings (reasons: docs/redis.md).
* One access-policy assignment (policy ``default``) per service that asks, for that service's
  own identity and nobody else; the key prefix ``<service>:`` is the contract inside.
* Diagnostics to the stack's workspace: the database's ``ConnectionEvents`` and the cluster's
  metrics; Azure Monitor metric alerts (server load, memory, connected clients against the SKU's
  limit, errors) to the stack's action group; ``protect`` in prod (the lock: components/locks.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
from pulumi_azure_native import monitor, network, privatedns, redisenterprise

from .network import Network
from .render import redis as render
from .settings import StackSettings
from .settings.redis import assignment_name

ALERT_RUNBOOKS = "docs/runbooks"


def cluster_args(s: StackSettings, resource_group_name: pulumi.Input[str], cluster_name: pulumi.Input[str]):
    r = s.redis
    return redisenterprise.RedisEnterpriseArgs(
        resource_group_name=resource_group_name,
        cluster_name=cluster_name,
        location=s.location,
        sku=redisenterprise.SkuArgs(name=redisenterprise.SkuName(r.sku)),
        high_availability=redisenterprise.HighAvailability.ENABLED
        if r.high_availability
        else redisenterprise.HighAvailability.DISABLED,
        minimum_tls_version=redisenterprise.TlsVersion.TLS_VERSION_1_2,
        public_network_access=redisenterprise.PublicNetworkAccess.DISABLED,
        tags={**s.tags, "environment": s.environment, "managedBy": "pulumi"},
    )


def persistence(s: StackSettings) -> redisenterprise.PersistenceArgs:
    """At most one of AOF and RDB (the API refuses both)."""
    r = s.redis
    if r.persistence == "rdb":
        return redisenterprise.PersistenceArgs(
            rdb_enabled=True, rdb_frequency=redisenterprise.RdbFrequency(r.rdb_frequency), aof_enabled=False
        )
    if r.persistence == "aof":
        return redisenterprise.PersistenceArgs(
            aof_enabled=True, aof_frequency=redisenterprise.AofFrequency.AOF_FREQUENCY_1S, rdb_enabled=False
        )
    return redisenterprise.PersistenceArgs(aof_enabled=False, rdb_enabled=False)


def database_args(s: StackSettings, resource_group_name: pulumi.Input[str], cluster_name: pulumi.Input[str]):
    r = s.redis
    return redisenterprise.DatabaseArgs(
        resource_group_name=resource_group_name,
        cluster_name=cluster_name,
        database_name=render.DATABASE,
        client_protocol=redisenterprise.Protocol.ENCRYPTED,
        access_keys_authentication=redisenterprise.AccessKeysAuthentication.DISABLED,
        clustering_policy=redisenterprise.ClusteringPolicy(r.clustering_policy),
        eviction_policy=redisenterprise.EvictionPolicy(r.eviction_policy),
        persistence=persistence(s),
        port=render.PORT,
    )


# (alert name, metric, aggregation, severity, window, description); severity 2 = a warning, routed to
# Slack like every Azure warning (components/azure_alerts.py); the threshold comes from
# alert_threshold(). Metric names: "Supported metrics for Microsoft.Cache/redisEnterprise".
ALERTS = (
    (
        "RedisServerLoadHigh",
        "serverLoad",
        monitor.AggregationTypeEnum.AVERAGE,
        2,
        "PT15M",
        "Redis server load above the threshold for 15 minutes: commands queue, latency grows",
    ),
    (
        "RedisMemoryHigh",
        "usedmemorypercentage",
        monitor.AggregationTypeEnum.AVERAGE,
        2,
        "PT15M",
        "Redis memory above the threshold for 15 minutes: keys with a TTL are being evicted early",
    ),
    (
        "RedisConnectedClientsHigh",
        "connectedclients",
        monitor.AggregationTypeEnum.MAXIMUM,
        2,
        "PT5M",
        "Connected clients near the SKU's connection limit: new connections will be refused",
    ),
    (
        "RedisErrors",
        "errors",
        monitor.AggregationTypeEnum.TOTAL,
        2,
        "PT5M",
        "Redis reports errors (failovers, refused connections, out of memory)",
    ),
)


# Availability: Azure Monitor's reference for Microsoft.Cache/redisEnterprise ("Supported metrics",
# learn.microsoft.com/azure/azure-monitor/reference/supported-metrics/microsoft-cache-redisenterprise-metrics)
# lists no availability metric we could verify (the PostgreSQL server has is_db_alive, Key Vault
# Availability). NOT VERIFIED as an availability signal: "no client connected for 5 minutes"
# (connectedclients, Maximum, < 1) stands in for it - every service with `redis: true` holds a
# pooled connection, so zero means the cache refuses or lost them; it also fires when every such
# service is scaled to zero, and whether Azure still emits the metric (as 0) when the cluster is
# down, rather than nothing (no data: no alert), is not known. A critical alert: it pages
# (components/azure_alerts.py: group_id("critical")). docs/redis.md says the same.
AVAILABILITY_ALERT = "RedisDown"
AVAILABILITY_METRIC = "connectedclients"


def alert_threshold(s: StackSettings, alert: str) -> float:
    a = s.redis.alerts
    if alert == "RedisServerLoadHigh":
        return float(a.server_load_percent)
    if alert == "RedisMemoryHigh":
        return float(a.memory_percent)
    if alert == "RedisConnectedClientsHigh":
        limit = s.redis.max_connected_clients or 0  # required by the settings rules when Redis is on
        return float(int(limit * a.connected_clients_percent / 100))
    if alert == "RedisErrors":
        return float(a.errors_per_five_minutes)
    raise ValueError(f"unknown Redis alert {alert}")


class Redis(pulumi.ComponentResource):
    """``principals``: service -> the object (principal) id of its own identity, for exactly the
    services with ``redis: true``; ``action_group_id``: where the metric alerts go (the stack's
    on-call and e-mail receivers, components/budget.py); ``critical_group_id``: where the
    availability alert ``RedisDown`` goes (the on-call receiver; defaults to ``action_group_id``)."""

    cluster_id: pulumi.Output[str]
    host_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        net: Network,
        suffix: pulumi.Output[str],
        workspace_id: pulumi.Input[str],
        principals: Mapping[str, pulumi.Input[str]],
        action_group_id: pulumi.Input[str],
        critical_group_id: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:Redis", name, None, opts)
        s = settings
        if set(principals) != set(s.redis_services):
            raise ValueError(f"Redis access for {sorted(principals)}, expected {sorted(s.redis_services)}")
        child = pulumi.ResourceOptions(parent=self)
        tags = {**s.tags, "environment": s.environment, "managedBy": "pulumi"}
        rg = net.resource_group_name

        cluster = redisenterprise.RedisEnterprise(
            "redis-cluster",
            cluster_args(s, rg, suffix.apply(lambda x: s.name("redis", x))),
            opts=pulumi.ResourceOptions(parent=self, protect=s.protect),
        )
        database = redisenterprise.Database(
            "redis-database",
            database_args(s, rg, cluster.name),
            opts=pulumi.ResourceOptions(parent=self, protect=s.protect),
        )

        zone = privatedns.PrivateZone(
            "dns-redis",
            privatedns.PrivateZoneArgs(
                resource_group_name=rg, private_zone_name=render.DNS_ZONE, location="global", tags=tags
            ),
            opts=child,
        )
        privatedns.VirtualNetworkLink(
            "dns-redis-link",
            privatedns.VirtualNetworkLinkArgs(
                resource_group_name=rg,
                private_zone_name=zone.name,
                virtual_network_link_name=s.name("vnet", "link"),
                location="global",
                registration_enabled=False,
                virtual_network=privatedns.SubResourceArgs(id=net.vnet_id),
                tags=tags,
            ),
            opts=child,
        )
        endpoint = network.PrivateEndpoint(
            "redis-pe",
            network.PrivateEndpointArgs(
                resource_group_name=rg,
                private_endpoint_name=s.name("redis", "pe"),
                location=s.location,
                subnet=network.SubnetArgs(id=net.endpoints_subnet_id),
                private_link_service_connections=[
                    network.PrivateLinkServiceConnectionArgs(
                        name="redis", private_link_service_id=cluster.id, group_ids=[render.PRIVATE_LINK_GROUP]
                    )
                ],
                tags=tags,
            ),
            opts=child,
        )
        network.PrivateDnsZoneGroup(
            "redis-pe-dns",
            network.PrivateDnsZoneGroupArgs(
                resource_group_name=rg,
                private_endpoint_name=endpoint.name,
                private_dns_zone_group_name="default",
                private_dns_zone_configs=[network.PrivateDnsZoneConfigArgs(name="redis", private_dns_zone_id=zone.id)],
            ),
            opts=child,
        )

        # Each service's own identity, and nobody else, may sign in to the database.
        self.assignments: dict[str, redisenterprise.AccessPolicyAssignment] = {}
        for svc in sorted(principals):
            self.assignments[svc] = redisenterprise.AccessPolicyAssignment(
                f"{svc}-redis-access",
                redisenterprise.AccessPolicyAssignmentArgs(
                    resource_group_name=rg,
                    cluster_name=cluster.name,
                    database_name=database.name,
                    access_policy_assignment_name=assignment_name(svc),
                    access_policy_name=render.ACCESS_POLICY,
                    user=redisenterprise.AccessPolicyAssignmentPropertiesUserArgs(object_id=principals[svc]),
                ),
                opts=child,
            )

        # Audit trail and metrics in the stack's workspace.
        monitor.DiagnosticSetting(
            "diag-redis-database",
            monitor.DiagnosticSettingArgs(
                resource_uri=database.id,
                name="to-log-analytics",
                workspace_id=workspace_id,
                log_analytics_destination_type="Dedicated",
                logs=[monitor.DiagnosticsLogSettingsArgs(category=render.CONNECTION_EVENTS, enabled=True)],
            ),
            opts=child,
        )
        monitor.DiagnosticSetting(
            "diag-redis-cluster",
            monitor.DiagnosticSettingArgs(
                resource_uri=cluster.id,
                name="to-log-analytics",
                workspace_id=workspace_id,
                metrics=[monitor.DiagnosticsMetricSettingsArgs(category="AllMetrics", enabled=True)],
            ),
            opts=child,
        )

        runbooks = s.observability.alerting.runbook_base_url.rstrip("/")  # as every alert links them
        for alert, metric, aggregation, severity, window, description in ALERTS:
            monitor.MetricAlert(
                f"alert-{alert}",
                monitor.MetricAlertArgs(
                    resource_group_name=rg,
                    rule_name=s.name("redis", alert),
                    location="global",
                    description=f"{description}. Runbook: {runbooks}/{alert}.md",
                    severity=severity,
                    enabled=True,
                    scopes=[cluster.id],
                    evaluation_frequency="PT5M" if window != "PT5M" else "PT1M",
                    window_size=window,
                    auto_mitigate=True,
                    criteria=monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                        odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                        all_of=[
                            monitor.MetricCriteriaArgs(
                                criterion_type="StaticThresholdCriterion",
                                name=metric,
                                metric_name=metric,
                                metric_namespace="Microsoft.Cache/redisEnterprise",
                                operator=monitor.Operator.GREATER_THAN,
                                threshold=alert_threshold(s, alert),
                                time_aggregation=aggregation,
                            )
                        ],
                    ),
                    actions=[monitor.MetricAlertActionArgs(action_group_id=action_group_id)],
                    tags=tags,
                ),
                opts=child,
            )

        monitor.MetricAlert(
            f"alert-{AVAILABILITY_ALERT}",
            monitor.MetricAlertArgs(
                resource_group_name=rg,
                rule_name=s.name("redis", AVAILABILITY_ALERT),
                location="global",
                description="No client connected to Redis for 5 minutes: the cache is down or refuses connections"
                f" (a proxy: no availability metric verified for redisEnterprise). Runbook: "
                f"{runbooks}/{AVAILABILITY_ALERT}.md",
                severity=0,
                enabled=True,
                scopes=[cluster.id],
                evaluation_frequency="PT1M",
                window_size="PT5M",
                auto_mitigate=True,
                criteria=monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                    odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                    all_of=[
                        monitor.MetricCriteriaArgs(
                            criterion_type="StaticThresholdCriterion",
                            name=AVAILABILITY_METRIC,
                            metric_name=AVAILABILITY_METRIC,
                            metric_namespace="Microsoft.Cache/redisEnterprise",
                            operator=monitor.Operator.LESS_THAN,
                            threshold=1,
                            time_aggregation=monitor.AggregationTypeEnum.MAXIMUM,
                        )
                    ],
                ),
                actions=[monitor.MetricAlertActionArgs(action_group_id=critical_group_id or action_group_id)],
                tags={**tags, "severity": "critical"},
            ),
            opts=child,
        )

        self.cluster_id = cluster.id
        self.database_id = database.id
        self.host_name = cluster.host_name
        self.register_outputs({"clusterId": self.cluster_id, "hostName": self.host_name})
