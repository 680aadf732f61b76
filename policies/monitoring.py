"""Monitoring that does not depend on the cluster: every stateful Azure resource of prod has an
availability alert that Azure itself evaluates (a ``monitor.MetricAlert`` on the resource's own
availability metric, enabled, with an action group to notify) - a PrometheusRule would go silent
with the cluster that runs it. The in-cluster RabbitMQ broker (a RabbitmqCluster) has no Azure
metric: its alert is a Prometheus rule group Azure evaluates on the Azure Monitor workspace the
cluster's Prometheus remote-writes to (absent samples page too)."""

from __future__ import annotations

from kit import MANDATORY, MISSING, config, get, schema, violation
from pulumi_policy import StackValidationPolicy

METRIC_ALERT = "azure-native:monitor:MetricAlert"
PROMETHEUS_RULE_GROUP = "azure-native:alertsmanagement:PrometheusRuleGroup"
RABBITMQ_CLUSTER = "kubernetes:rabbitmq.com/v1beta1:RabbitmqCluster"
# stateful type -> the metrics that say it is available (Azure Monitor's names). A new stateful
# Azure type (a cache, a storage account) adds its row here with the alert that proves it.
AVAILABILITY_METRICS = {
    "azure-native:dbforpostgresql:Server": ["is_db_alive"],
    "azure-native:keyvault:Vault": ["Availability"],
    # Azure Managed Redis: no availability metric verified; "no client connected" stands in
    # (components/redis.py: RedisDown). Only a criterion below a threshold counts, so the
    # connected-clients-high warning on the same metric does not.
    "azure-native:redisenterprise:RedisEnterprise": ["connectedclients"],
}
# an availability criterion says "below": the resource stopped answering
BELOW = ("LessThan", "LessThanOrEqual")


def _metrics(alert) -> list[str]:
    # the engine hands props over as read-only proxies, not dicts: read them through kit.get
    return [get(c, "metricName") for c in get(alert.props, "criteria.allOf", []) if get(c, "operator") in BELOW]


def _availability(args, report):
    cfg = config(args)
    if not cfg.get("requireAvailabilityAlerts", False):
        return
    wanted: dict[str, list[str]] = cfg.get("metrics", AVAILABILITY_METRICS)
    alerts = [
        r
        for r in args.resources
        if r.resource_type == METRIC_ALERT
        and get(r.props, "enabled") is True
        and get(r.props, "actions", []) not in (MISSING, [])
        and any(get(a, "actionGroupId") is not MISSING for a in get(r.props, "actions", []))
    ]
    for target in args.resources:
        metrics = wanted.get(target.resource_type)
        if not metrics:
            continue
        # the resource's id flows into the alert's scopes: the engine records it as a dependency
        if not any(
            any(dep.urn == target.urn for dep in alert.dependencies) and set(_metrics(alert)) & set(metrics)
            for alert in alerts
        ):
            violation(
                report,
                target.resource_type,
                target.name,
                "its availability alert",
                MISSING,
                f"add an enabled monitor.MetricAlert scoped to this resource on {' or '.join(metrics)} with an"
                " action group (components/azure_alerts.py does so): Azure evaluates it, so it fires when the"
                " cluster is down too",
                target.urn,
            )

    # The in-cluster broker: no Azure metric, but the samples Prometheus remote-writes to the Azure
    # Monitor workspace. A rule group Azure evaluates there, enabled, with an enabled alert on the
    # broker's `up` (its job is the RabbitmqCluster's name) that notifies an action group.
    groups = [
        r for r in args.resources if r.resource_type == PROMETHEUS_RULE_GROUP and get(r.props, "enabled") is not False
    ]
    for target in args.resources:
        if target.resource_type != RABBITMQ_CLUSTER:
            continue
        job = f'job="{get(target.props, "metadata.name")}"'
        if not any(_broker_alert(rule, job) for g in groups for rule in get(g.props, "rules", [])):
            violation(
                report,
                target.resource_type,
                target.name,
                "its availability alert evaluated outside the cluster",
                MISSING,
                "add an enabled alertsmanagement.PrometheusRuleGroup on the Azure Monitor workspace Prometheus"
                f" remote-writes to, with an enabled alert on up{{{job}}} (absent_over_time, or fewer nodes up"
                " than the replicas) and an action group (components/retention.py: broker_availability)",
                target.urn,
            )


def _broker_alert(rule, job: str) -> bool:
    expr = get(rule, "expression")
    actions = get(rule, "actions", [])
    return (
        get(rule, "alert") not in (MISSING, None, "")
        and get(rule, "enabled") is not False
        and isinstance(expr, str)
        and "up{" in expr
        and job in expr
        and actions not in (MISSING, None, [])
        and any(get(a, "actionGroupId") not in (MISSING, None) for a in actions)
    )


stateful_availability = StackValidationPolicy(
    name="stateful-resources-availability-alert",
    description="Every stateful production resource has an availability alert evaluated by Azure Monitor, "
    "independent of the cluster.",
    validate=_availability,
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "requireAvailabilityAlerts": {"type": "boolean", "default": False},
            "metrics": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
                "default": AVAILABILITY_METRICS,
            },
        }
    ),
)

POLICIES = [stateful_availability]
