"""Monitoring that does not depend on the cluster: every stateful Azure resource of prod has an
availability alert that Azure itself evaluates (a ``monitor.MetricAlert`` on the resource's own
availability metric, enabled, with an action group to notify) - a PrometheusRule would go silent
with the cluster that runs it."""

from __future__ import annotations

from kit import MANDATORY, MISSING, config, get, schema, violation
from pulumi_policy import StackValidationPolicy

METRIC_ALERT = "azure-native:monitor:MetricAlert"
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
