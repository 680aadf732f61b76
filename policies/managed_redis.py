"""Azure Managed Redis (``Microsoft.Cache/redisEnterprise``): TLS only and >= 1.2, Microsoft
Entra only (no access keys), no public network access, high availability where required (prod),
and its audit trail and metrics in a Log Analytics workspace. Checkov has no check for
``redisEnterprise`` (docs/checkov.md): these are the gate."""

from __future__ import annotations

from audit import DIAGNOSTIC_SETTING, _enabled_categories, _settings_for, _to_workspace
from kit import MANDATORY, MISSING, config, get, schema, violation
from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

CLUSTER = "azure-native:redisenterprise:RedisEnterprise"
DATABASE = "azure-native:redisenterprise:Database"
TLS_ORDER = {"1.0": 0, "1.1": 1, "1.2": 2, "1.3": 3}
CONNECTION_EVENTS = "ConnectionEvents"


def _tls(args, report):
    if args.resource_type == DATABASE:
        protocol = get(args.props, "clientProtocol")
        if protocol != "Encrypted":
            violation(
                report,
                DATABASE,
                args.name,
                "clientProtocol",
                protocol,
                "set client_protocol=redisenterprise.Protocol.ENCRYPTED (TLS only; set it explicitly)",
            )
    elif args.resource_type == CLUSTER:
        minimum = config(args).get("minimumTlsVersion", "1.2")
        version = get(args.props, "minimumTlsVersion")
        if TLS_ORDER.get(str(version), -1) < TLS_ORDER[minimum]:
            violation(
                report,
                CLUSTER,
                args.name,
                "minimumTlsVersion",
                version,
                f"set minimum_tls_version to '{minimum}' or newer (redisenterprise.TlsVersion)",
            )


redis_tls = ResourceValidationPolicy(
    name="redis-tls-only",
    description="Azure Managed Redis databases speak TLS only, and the cluster refuses TLS below 1.2.",
    validate=_tls,
    enforcement_level=MANDATORY,
    config_schema=schema({"minimumTlsVersion": {"type": "string", "enum": ["1.2", "1.3"], "default": "1.2"}}),
)


def _entra_only(args, report):
    if args.resource_type != DATABASE:
        return
    keys = get(args.props, "accessKeysAuthentication")
    if keys != "Disabled":
        violation(
            report,
            DATABASE,
            args.name,
            "accessKeysAuthentication",
            keys,
            "set access_keys_authentication=redisenterprise.AccessKeysAuthentication.DISABLED (Entra tokens only;"
            " grant a service with `redis: true` in its services entry)",
        )


redis_entra_only = ResourceValidationPolicy(
    name="redis-no-access-keys",
    description="Azure Managed Redis databases accept Microsoft Entra tokens only: access keys are disabled.",
    validate=_entra_only,
    enforcement_level=MANDATORY,
)


def _private(args, report):
    if args.resource_type != CLUSTER:
        return
    access = get(args.props, "publicNetworkAccess")
    if access != "Disabled":
        violation(
            report,
            CLUSTER,
            args.name,
            "publicNetworkAccess",
            access,
            "set public_network_access=redisenterprise.PublicNetworkAccess.DISABLED (private endpoint only)",
        )


redis_private = ResourceValidationPolicy(
    name="redis-not-public",
    description="Azure Managed Redis is reachable only through its private endpoint.",
    validate=_private,
    enforcement_level=MANDATORY,
)


def _high_availability(args, report):
    if args.resource_type != CLUSTER or not config(args).get("requireHighAvailability", False):
        return
    ha = get(args.props, "highAvailability")
    if ha != "Enabled":
        violation(
            report,
            CLUSTER,
            args.name,
            "highAvailability",
            ha,
            "set event-backbone:redis.highAvailability: true (replicated shards; it cannot be turned on later:"
            " a new cluster)",
        )


redis_high_availability = ResourceValidationPolicy(
    name="redis-high-availability",
    description="Where required (prod), Azure Managed Redis replicates its shards (highAvailability Enabled).",
    validate=_high_availability,
    enforcement_level=MANDATORY,
    config_schema=schema({"requireHighAvailability": {"type": "boolean", "default": True}}),
)


def _diagnostics(args, report):
    """The database sends ConnectionEvents, the cluster its metrics, to a workspace."""
    settings = [r for r in args.resources if r.resource_type == DIAGNOSTIC_SETTING]
    for target in args.resources:
        if target.resource_type not in (CLUSTER, DATABASE):
            continue
        mine = [d for d in _settings_for(target, settings) if _to_workspace(d)]
        if target.resource_type == DATABASE:
            enabled = set().union(*(_enabled_categories(d) for d in mine)) if mine else set()
            ok, what, fix = (
                CONNECTION_EVENTS in enabled,
                "its ConnectionEvents logs in a Log Analytics workspace",
                "add a monitor.DiagnosticSetting on the database's id with the ConnectionEvents category and"
                " workspace_id = the stack's workspace (components/redis.py)",
            )
            shown = sorted(enabled) if mine else MISSING
        else:
            metrics = [
                m
                for d in mine
                for m in get(d.props, "metrics", []) or []
                if get(m, "enabled", False) is True and get(m, "category", "") == "AllMetrics"
            ]
            ok, what, fix = (
                bool(metrics),
                "its metrics (AllMetrics) in a Log Analytics workspace",
                "add a monitor.DiagnosticSetting on the cluster's id with the AllMetrics category enabled and"
                " workspace_id = the stack's workspace (components/redis.py)",
            )
            shown = "not enabled" if mine else MISSING
        if not ok:
            violation(report, target.resource_type, target.name, what, shown, fix, target.urn)


redis_diagnostics = StackValidationPolicy(
    name="redis-diagnostics",
    description="Azure Managed Redis sends its connection events and metrics to a Log Analytics workspace.",
    validate=_diagnostics,
    enforcement_level=MANDATORY,
)

POLICIES = [redis_tls, redis_entra_only, redis_private, redis_high_availability, redis_diagnostics]
