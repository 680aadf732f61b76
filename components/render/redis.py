"""Pure renders for Azure Managed Redis (components/redis.py wires them): the fixed security
settings, what a service's landing zone gets (a NetworkPolicy to the private endpoint, the
ConfigMap ``<svc>-redis``), its client contract, and the ACL rule that says "its own keys only".

Least privilege inside Redis: the stable API (2025-07-01, the pinned SDK) assigns only the
built-in access policy ``default`` (full data access). Custom ACL-string access policies exist
only in a preview API. The platform therefore applies ``default`` to each service's own identity
and makes the key prefix ``<service>:`` a contract; :func:`acl_rule` is the rule that says the
same thing as an ACL, proven on a real Redis (tests/test_redis_server.py), ready to become a
custom access policy when that API is stable (docs/redis.md)."""

from __future__ import annotations

from typing import Any

from ..settings import StackSettings

PORT = 10000  # the database's TLS port (EnterpriseCluster: the single proxy endpoint)
SCOPE = "https://redis.azure.com/.default"  # Entra token scope for the data plane
DNS_ZONE = "privatelink.redis.azure.net"
PRIVATE_LINK_GROUP = "redisEnterprise"
DATABASE = "default"  # the only database name Azure Managed Redis accepts
ACCESS_POLICY = "default"  # the only access policy the stable API can assign
MINIMUM_TLS = "1.2"
CONNECTION_EVENTS = "ConnectionEvents"  # the database's log category (table REDConnectionEvents)
CONFIGMAP_KEYS = ("REDIS_HOST", "REDIS_PORT", "REDIS_TLS", "REDIS_USERNAME", "REDIS_SCOPE", "REDIS_KEY_PREFIX")
# Commands a service never needs and that would reach past its prefix or the server's state:
# SCAN and RANDOMKEY take no key argument, so key patterns cannot limit them (they list every
# service's key names); @dangerous holds KEYS, FLUSHALL/FLUSHDB, CONFIG, DEBUG, MONITOR, ACL, ...
DENIED = ("-@dangerous", "-scan", "-randomkey")
ALLOWED = ("+@read", "+@write", "+@connection", "+@transaction")


def key_prefix(svc: str) -> str:
    return f"{svc}:"


def acl_rule(svc: str) -> str:
    """The ACL rule (ACL SETUSER syntax, without the user's name and secret) for one service:
    its own keys and channels, read/write/transactions, nothing dangerous."""
    prefix = key_prefix(svc)
    return " ".join(["on", "resetkeys", f"~{prefix}*", "resetchannels", f"&{prefix}*", "-@all", *ALLOWED, *DENIED])


def host_name(cluster_name: str, location: str) -> str:
    """``<cluster>.<region>.redis.azure.net``; the private DNS zone resolves it to the endpoint."""
    return f"{cluster_name}.{location}.redis.azure.net"


def egress_policy(s: StackSettings, svc: str, labels: dict[str, str]) -> dict:
    """Egress from the service's pods to the private endpoint's subnet on the database port only
    (the endpoint's address is assigned by Azure at deploy time; nothing else in that subnet
    listens on 10000, and the subnet's NSG admits 10000 from the node subnet only)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-redis", "namespace": svc, "labels": labels},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"ipBlock": {"cidr": s.network.endpoints_subnet}}],
                    "ports": [{"protocol": "TCP", "port": PORT}],
                }
            ],
        },
    }


def configmap(svc: str, host: Any, username: Any, labels: dict[str, str]) -> dict:
    """What the service's pods read (env from ConfigMap ``<svc>-redis``): no secret at all, the
    token comes from the pod's workload identity. ``username`` is the identity's object ID."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": configmap_name(svc), "namespace": svc, "labels": labels},
        "data": {
            "REDIS_HOST": host,
            "REDIS_PORT": str(PORT),
            "REDIS_TLS": "true",
            "REDIS_USERNAME": username,
            "REDIS_SCOPE": SCOPE,
            "REDIS_KEY_PREFIX": key_prefix(svc),
        },
    }


def configmap_name(svc: str) -> str:
    return f"{svc}-redis"


def contract(s: StackSettings, svc: str) -> dict:
    """The Redis section of the service's client contract (build/<stack>/rabbitmq/clients/<svc>.json)."""
    r = s.redis
    return {
        "host": "<cluster>.<region>.redis.azure.net (deploy time): ConfigMap "
        f"{configmap_name(svc)} key REDIS_HOST, output redisHost",
        "port": PORT,
        "tls": {"required": True, "minimumVersion": MINIMUM_TLS, "plaintext": "refused"},
        "auth": {
            "kind": "Microsoft Entra token (no access keys)",
            "scope": SCOPE,
            "username": "the service identity's object ID (ConfigMap key REDIS_USERNAME)",
            "password": "an access token for the scope, from the pod's workload identity",
            "reauthenticate": "before the token expires (AUTH <username> <new token> on the open connection)",
            "python": "redis-entraid (create_from_default_azure_credential)",
            "dotnet": "Microsoft.Azure.StackExchangeRedis (ConfigureForAzureWithTokenCredentialAsync)",
        },
        "clustering": {
            "policy": r.clustering_policy,
            "client": "a standalone (non-cluster) client on one endpoint; multi-key commands only across"
            " DEL, MSET, MGET, EXISTS, UNLINK, TOUCH or with keys in one hash slot ({...} tags)",
        },
        "keys": {
            "prefix": key_prefix(svc),
            "rule": "every key and channel starts with the prefix; every key carries a TTL",
            "acl": acl_rule(svc),
        },
        "database": DATABASE,
        "accessPolicy": ACCESS_POLICY,
        "evictionPolicy": r.eviction_policy,
        "kubernetes": {"configMap": configmap_name(svc), "keys": list(CONFIGMAP_KEYS)},
    }


# ----------------------------------------------------------------- dashboard
AZURE_DATASOURCE_TYPE = "grafana-azure-monitor-datasource"
AZURE_DATASOURCE_UID = "azure-monitor"  # provisioned by the Helm values (helm_values.azure_data_sources)
METRIC_NAMESPACE = "Microsoft.Cache/redisEnterprise"
# (title, metric, aggregation, unit, description) - the metrics the alerts watch (components/redis.py)
PANELS = (
    (
        "Server load",
        "serverLoad",
        "Average",
        "percent",
        "RedisServerLoadHigh fires above redis.alerts.serverLoadPercent",
    ),
    ("Memory used", "usedmemorypercentage", "Average", "percent", "RedisMemoryHigh: keys with a TTL are evicted (LRU)"),
    (
        "Connected clients",
        "connectedclients",
        "Maximum",
        "short",
        "RedisConnectedClientsHigh: a share of the SKU limit",
    ),
    ("Errors", "errors", "Total", "short", "RedisErrors; split by the ErrorType dimension in the portal"),
)


def dashboard(s: StackSettings) -> dict[str, Any]:
    """The Grafana board ``redis``, built like the others (components/render/dashboards.py's
    builder): the four alerting metrics of the stack's cluster from the provisioned Azure Monitor
    data source (uid ``azure-monitor``, Grafana's workload identity), the subscription and the
    cluster's name as text variables (the name
    carries a suffix known only after the first `pulumi up`: the stack output redisHost)."""
    import json

    from grafana_foundation_sdk.builders import azuremonitor, timeseries
    from grafana_foundation_sdk.builders import dashboard as gd
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.common import DataSourceRef

    from .dashboards import PANEL_HEIGHT

    source = DataSourceRef(type_val=AZURE_DATASOURCE_TYPE, uid=AZURE_DATASOURCE_UID)
    board = (
        gd.Dashboard("Azure Managed Redis")
        .uid("eb-redis")
        .tags(["event-backbone", "redis"])
        .version(1)
        .readonly()
        .timezone("browser")
        .time("now-6h", "now")
        .refresh("1m")
        .annotations([])
        .with_variable(gd.TextBoxVariable("subscription").label("Subscription ID"))
        .with_variable(gd.TextBoxVariable("cluster").label("Redis cluster name"))
    )
    for i, (title, metric, aggregation, unit, description) in enumerate(PANELS, start=1):
        resource = (
            azuremonitor.AzureMonitorResource()
            .subscription("$subscription")
            .resource_group(s.name("rg"))
            .resource_name("$cluster")
            .metric_namespace(METRIC_NAMESPACE)
            .region(s.location)
        )
        query = (
            azuremonitor.AzureMonitorQuery()
            .ref_id("A")
            .datasource(source)
            .query_type("Azure Monitor")
            .subscription("$subscription")
            .azure_monitor(
                azuremonitor.AzureMetricQuery()
                .resources([resource])
                .metric_namespace(METRIC_NAMESPACE)
                .metric_name(metric)
                .aggregation(aggregation)
                .time_grain("auto")
            )
        )
        panel = (
            timeseries.Panel()
            .title(title)
            .description(description)
            .datasource(source)
            .height(PANEL_HEIGHT)
            .span(12)
            .unit(unit)
            .with_target(query)
            .id(i)
        )
        board.with_panel(panel)
    return json.loads(JSONEncoder().encode(board.build()))


def boards(s: StackSettings) -> dict[str, dict[str, Any]]:
    """The Redis board when the stack has Redis (provisioned like the others, as a ConfigMap)."""
    return {"redis": dashboard(s)} if s.redis_enabled else {}
