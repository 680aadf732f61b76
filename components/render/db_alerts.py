"""Azure Monitor metric alerts on the stack's stateful Azure resources, and the action groups they
notify: pure data (settings and server descriptions in, alert specifications out), built into
``monitor.MetricAlert``/``monitor.ActionGroup`` by components/azure_alerts.py.

Azure evaluates these, not Prometheus: a database that is down pages even when the cluster that
runs Prometheus and Alertmanager is down (the policy ``stateful-resources-availability-alert``
requires one per stateful prod resource). They route like Alertmanager: a ``critical`` alert goes
where Alertmanager sends ``critical`` (PagerDuty, or Slack where a stack has no PagerDuty), a
``warning`` where it sends ``warning`` (Slack), by the same rule (:func:`receiver_for`).

One function over a list of servers (:func:`database_alerts`): the primary today, and each read
replica once the data tier adds them — a replica gets the same alerts plus replication lag."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..settings import StackSettings
from ..settings.pg_skus import max_connections
from . import alertmanager

# Azure Monitor alert severities: 0 Critical, 1 Error, 2 Warning, 3 Informational, 4 Verbose.
AZURE_SEVERITY = {"critical": 0, "warning": 2}
POSTGRES_NAMESPACE = "Microsoft.DBforPostgreSQL/flexibleServers"
KEY_VAULT_NAMESPACE = "Microsoft.KeyVault/vaults"
# The receivers of the action groups, by the Alertmanager receiver they stand for.
PAGERDUTY, SLACK = alertmanager.PAGERDUTY, alertmanager.SLACK
PAGERDUTY_AZURE_URL = "https://events.pagerduty.com/integration/{key}/enqueue"  # a "Microsoft Azure" integration


@dataclass(frozen=True)
class Server:
    """A PostgreSQL flexible server to alert on: ``key`` names its alerts (``primary``, or the
    replica's name), ``role`` decides whether replication lag applies (replicas only: Azure
    emits physical_replication_delay_in_seconds on a read replica)."""

    key: str
    sku_name: str
    role: Literal["primary", "replica"] = "primary"


@dataclass(frozen=True)
class MetricAlertSpec:
    name: str  # the alert's name in Azure and in the runbook (docs/runbooks/<name>.md)
    target: str  # Server.key, or "vault"
    namespace: str
    metric: str
    operator: Literal["GreaterThan", "LessThan", "GreaterThanOrEqual", "LessThanOrEqual"]
    threshold: float
    aggregation: Literal["Average", "Maximum", "Minimum", "Total", "Count"]
    window: str  # ISO 8601
    frequency: str
    severity: Literal["critical", "warning"]
    summary: str
    availability: bool = False  # the alert that says the resource is up at all
    dimensions: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (dimension, values included)

    @property
    def azure_severity(self) -> int:
        return AZURE_SEVERITY[self.severity]


def connection_threshold(s: StackSettings, sku_name: str) -> int:
    """``connectionsPercent`` of the SKU's max_connections, rounded down (the settings rule
    refuses an unknown SKU before this runs)."""
    limit = max_connections(sku_name)
    if limit is None:
        raise ValueError(f"unknown PostgreSQL SKU {sku_name!r}")
    return limit * s.observability.database_alerts.connections_percent // 100


def primary(s: StackSettings) -> Server:
    return Server("primary", s.postgres.sku_name)


def replica_alerts(s: StackSettings, key: str) -> Server:
    """A replica of components/postgres_replicas.py (``replica-<n>`` or ``dr-replica``), with the
    SKU it runs (its own setting, else the primary's): its connection threshold follows it."""
    pg = s.postgres
    own = pg.disaster_recovery.sku_name if key == "dr-replica" and pg.disaster_recovery else None
    if key.startswith("replica-") and pg.read_replicas:
        own = pg.read_replicas.sku_name
    return Server(key, own or pg.sku_name, "replica")


def _pg(server: Server, suffix: str, metric: str, op, threshold: float, agg, window: str, severity, summary: str, **kw):
    return MetricAlertSpec(
        name=f"Postgres{suffix}",
        target=server.key,
        namespace=POSTGRES_NAMESPACE,
        metric=metric,
        operator=op,
        threshold=threshold,
        aggregation=agg,
        window=window,
        frequency="PT1M",
        severity=severity,
        summary=summary,
        **kw,
    )


def database_alerts(s: StackSettings, servers: list[Server]) -> list[MetricAlertSpec]:
    """Every metric alert of every server: connections, CPU, memory, storage, availability, and
    replication lag on replicas."""
    t = s.observability.database_alerts
    out: list[MetricAlertSpec] = []
    for server in servers:
        # a replica's alerts carry the same names (and runbooks) as the primary's; their resources its key

        limit = max_connections(server.sku_name)
        out += [
            _pg(
                server,
                "Down",
                "is_db_alive",
                "LessThan",
                1,
                "Minimum",
                "PT5M",
                "critical",
                f"PostgreSQL {server.key} is not alive (is_db_alive < 1 over 5 minutes)",
                availability=True,
            ),
            _pg(
                server,
                "ConnectionsHigh",
                "active_connections",
                "GreaterThan",
                connection_threshold(s, server.sku_name),
                "Maximum",
                "PT5M",
                "warning",
                f"PostgreSQL {server.key}: active connections above {t.connections_percent}% of max_connections "
                f"({limit} for {server.sku_name}): scale up or pool connections",
            ),
            _pg(
                server,
                "CpuHigh",
                "cpu_percent",
                "GreaterThan",
                t.cpu_percent,
                "Average",
                "PT15M",
                "warning",
                f"PostgreSQL {server.key}: CPU above {t.cpu_percent}% for 15 minutes",
            ),
            _pg(
                server,
                "MemoryHigh",
                "memory_percent",
                "GreaterThan",
                t.memory_percent,
                "Average",
                "PT15M",
                "warning",
                f"PostgreSQL {server.key}: memory above {t.memory_percent}% for 15 minutes",
            ),
            _pg(
                server,
                "StorageHigh",
                "storage_percent",
                "GreaterThan",
                t.storage_percent,
                "Maximum",
                "PT15M",
                "critical",
                f"PostgreSQL {server.key}: storage above {t.storage_percent}% (auto-grow on; a full disk makes "
                "the server read-only)",
            ),
        ]
        if server.role == "replica":
            out.append(
                _pg(
                    server,
                    "ReplicationLagHigh",
                    "physical_replication_delay_in_seconds",
                    "GreaterThan",
                    t.replication_lag_seconds,
                    "Maximum",
                    "PT5M",
                    "warning",
                    f"PostgreSQL replica {server.key} lags its primary by more than {t.replication_lag_seconds} s",
                )
            )
    return out


def vault_alerts(s: StackSettings) -> list[MetricAlertSpec]:
    """Key Vault holds every generated secret: its availability (the share of requests served,
    Azure's "Overall Vault Availability") below 99 % over 15 minutes pages."""
    return [
        MetricAlertSpec(
            name="KeyVaultAvailabilityLow",
            target="vault",
            namespace=KEY_VAULT_NAMESPACE,
            metric="Availability",
            operator="LessThan",
            threshold=99,
            aggregation="Average",
            window="PT15M",
            frequency="PT5M",
            severity="critical",
            summary="Key Vault serves less than 99% of requests (15 minutes)",
            availability=True,
        )
    ]


EDGE_NAMESPACE = "Microsoft.ServiceNetworking/trafficControllers"


def edge_alerts(s: StackSettings) -> list[MetricAlertSpec]:
    """The team's "failed auth attempts > 100/min -> block the source" is the edge WAF's per-client
    rate limit (components/edge.py: waf_custom_rules, ``edge.waf.rateLimitRequests`` per
    ``rateLimitWindow``): the WAF blocks the source itself; this tells the team it does.
    AzwafCustomRule counts custom-rule matches (the rate limit is the only custom rule); in
    Prevention mode only its blocks count, in Detection mode (dev) every match."""
    w = s.edge.waf
    per_minute = s.observability.thresholds.waf_blocks_per_minute
    return [
        MetricAlertSpec(
            name="EdgeWafRateLimitBlocking",
            target="edge",
            namespace=EDGE_NAMESPACE,
            metric="AzwafCustomRule",
            operator="GreaterThan",
            threshold=per_minute * 5,
            aggregation="Total",
            window="PT5M",
            frequency="PT1M",
            severity="warning",
            summary=f"The edge WAF's rate limit ({w.rate_limit_requests} requests per client per "
            f"{w.rate_limit_window}) is {'blocking' if w.mode == 'Prevention' else 'matching'} clients",
            dimensions=(("Action", ("Block",)),) if w.mode == "Prevention" else (),
        )
    ]


# ----------------------------------------------------------------------------- routing
# Azure receiver -> the Alerting setting that provides it (secure values)
AZURE_KEYS = {PAGERDUTY: "pagerduty_azure_integration_key", SLACK: "slack_channel_email"}


def configured(s: StackSettings) -> set[str]:
    a = s.observability.alerting
    return {receiver for receiver, attr in AZURE_KEYS.items() if getattr(a, attr)}


def receiver_for(s: StackSettings, severity: str) -> str:
    """The same rule as Alertmanager's (render/alertmanager.receiver_for), over the Azure-side
    credentials: critical -> PagerDuty, else Slack; warning -> Slack; none configured -> nothing."""
    have = configured(s)
    if severity == "critical":
        return PAGERDUTY if PAGERDUTY in have else (SLACK if SLACK in have else alertmanager.NULL)
    if severity == "warning":
        return SLACK if SLACK in have else alertmanager.NULL
    return alertmanager.NULL


def pagerduty_url(key: str) -> str:
    return PAGERDUTY_AZURE_URL.format(key=key)


def summary_table(s: StackSettings, specs: list[MetricAlertSpec]) -> list[dict]:
    """What build/<stack>/azure-monitor/metric-alerts.json shows: each alert, its computed
    threshold and where it goes (no credential)."""
    return [
        {
            "alert": a.name,
            "target": a.target,
            "metric": f"{a.namespace}/{a.metric}",
            "condition": f"{a.aggregation} {a.operator} {a.threshold:g} over {a.window}",
            "severity": a.severity,
            "azureSeverity": a.azure_severity,
            "receiver": receiver_for(s, a.severity),
            "runbook": f"{s.observability.alerting.runbook_base_url.rstrip('/')}/{a.name}.md",
        }
        for a in specs
    ]
