"""TLS and exposure: nothing speaks plaintext where TLS is expected, nothing is public that
should be private."""

from __future__ import annotations

import ipaddress

from kit import MANDATORY, MISSING, config, get, schema, violation
from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

TLS_ORDER = {"TLSv1": 0, "TLSv1.1": 1, "TLSv1.2": 2, "TLSv1.3": 3}
PG_CONFIG = "azure-native:dbforpostgresql:Configuration"
PG_SERVER = "azure-native:dbforpostgresql:Server"
PG_ADMIN = "azure-native:dbforpostgresql:AdministratorsMicrosoftEntra"


def _postgres_tls(args: StackValidationArgs, report: ReportViolation):
    """Every flexible server has require_secure_transport=on and ssl_min_protocol_version at
    least the configured minimum, as explicit Configuration resources: each server the stack
    creates, and each it administers without creating it (an Entra administrator on a server
    outside the plan: a recovery stack's promoted geo-replica, components/recovery.py)."""
    minimum = config(args).get("minimumTlsVersion", "TLSv1.2")
    servers = [r for r in args.resources if r.resource_type == PG_SERVER]
    names = {str(get(r.props, "serverName", r.name)) for r in servers}
    subjects = [(r, str(get(r.props, "serverName", r.name))) for r in servers]
    for r in args.resources:  # one subject per administered server not in the plan
        if r.resource_type == PG_ADMIN and str(get(r.props, "serverName", "")) not in names:
            names.add(str(get(r.props, "serverName", "")))
            subjects.append((r, str(get(r.props, "serverName", ""))))
    params: dict[str, dict[str, PolicyResource]] = {}
    for r in args.resources:
        if r.resource_type == PG_CONFIG:
            params.setdefault(str(get(r.props, "serverName", "")), {})[str(get(r.props, "configurationName", ""))] = r
    for server, server_name in subjects:
        mine = params.get(server_name, {})
        secure = mine.get("require_secure_transport")
        if secure is None:
            violation(
                report,
                server.resource_type,
                server.name,
                "the server parameter require_secure_transport",
                MISSING,
                "add a dbforpostgresql.Configuration require_secure_transport = 'on' for this server",
                server.urn,
            )
        elif str(get(secure.props, "value", "")).lower() != "on":
            violation(
                report,
                PG_CONFIG,
                secure.name,
                "value of require_secure_transport",
                get(secure.props, "value"),
                "set it to 'on' (clients must use TLS)",
                secure.urn,
            )
        version = mine.get("ssl_min_protocol_version")
        if version is None:
            violation(
                report,
                server.resource_type,
                server.name,
                "the server parameter ssl_min_protocol_version",
                MISSING,
                f"add a dbforpostgresql.Configuration ssl_min_protocol_version = '{minimum}' for this server",
                server.urn,
            )
        elif TLS_ORDER.get(str(get(version.props, "value", "")), -1) < TLS_ORDER[minimum]:
            violation(
                report,
                PG_CONFIG,
                version.name,
                "value of ssl_min_protocol_version",
                get(version.props, "value"),
                f"set it to '{minimum}' or newer (event-backbone:postgres.sslMinProtocolVersion)",
                version.urn,
            )


postgres_tls = StackValidationPolicy(
    name="postgres-tls-enforced",
    description="PostgreSQL requires TLS (require_secure_transport=on) at or above the minimum protocol version.",
    validate=_postgres_tls,
    enforcement_level=MANDATORY,
    config_schema=schema(
        {"minimumTlsVersion": {"type": "string", "enum": ["TLSv1.2", "TLSv1.3"], "default": "TLSv1.2"}}
    ),
)


def _postgres_private(args, report):
    if args.resource_type != PG_SERVER:
        return
    value = get(args.props, "network.publicNetworkAccess")
    if value != "Disabled":
        violation(
            report,
            args.resource_type,
            args.name,
            "network.publicNetworkAccess",
            value,
            "set it to 'Disabled' and use the delegated subnet and private DNS zone",
        )


postgres_private = ResourceValidationPolicy(
    name="postgres-not-public",
    description="PostgreSQL flexible servers are reachable only through the VNet.",
    validate=_postgres_private,
    enforcement_level=MANDATORY,
)


def _is_rabbitmq_cluster(args) -> bool:
    return args.resource_type == "kubernetes:rabbitmq.com/v1beta1:RabbitmqCluster"


def _broker_tls(args, report):
    if not _is_rabbitmq_cluster(args):
        return
    if not get(args.props, "spec.tls.secretName", ""):
        violation(
            report,
            args.resource_type,
            args.name,
            "spec.tls.secretName",
            get(args.props, "spec.tls.secretName"),
            "serve AMQPS: set spec.tls.secretName (and caSecretName) to the stack-issued certificate's secret",
        )
    if (
        config(args).get("requirePlaintextDisabled", True)
        and get(args.props, "spec.tls.disableNonTLSListeners") is not True
    ):
        violation(
            report,
            args.resource_type,
            args.name,
            "spec.tls.disableNonTLSListeners",
            get(args.props, "spec.tls.disableNonTLSListeners"),
            "set it to true (event-backbone:broker.plaintextListener: false): AMQPS only",
        )


broker_tls = ResourceValidationPolicy(
    name="broker-tls",
    description="The RabbitMQ cluster serves AMQPS; where required (prod) its plaintext listeners are off.",
    validate=_broker_tls,
    enforcement_level=MANDATORY,
    config_schema=schema({"requirePlaintextDisabled": {"type": "boolean", "default": True}}),
)


def _open_to_internet(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def _aks_api(args, report):
    if args.resource_type != "azure-native:containerservice:ManagedCluster":
        return
    profile = get(args.props, "apiServerAccessProfile", {}) or {}
    ranges = list(profile.get("authorizedIPRanges") or [])
    if profile.get("enablePrivateCluster") is True:
        return
    if not ranges:
        violation(
            report,
            args.resource_type,
            args.name,
            "apiServerAccessProfile.authorizedIPRanges",
            ranges or MISSING,
            "list the allowed CIDRs (event-backbone:aks.apiServer.authorizedIpRanges) or set privateCluster: true",
        )
    for cidr in ranges:
        if _open_to_internet(cidr):
            violation(
                report,
                args.resource_type,
                args.name,
                "apiServerAccessProfile.authorizedIPRanges",
                cidr,
                "remove the 0.0.0.0/0 range: the API server must not be open to the internet",
            )


aks_api = ResourceValidationPolicy(
    name="aks-api-server-restricted",
    description="The AKS API server is private or limited to authorized IP ranges.",
    validate=_aks_api,
    enforcement_level=MANDATORY,
)


def _keyvault_private(args, report):
    if args.resource_type != "azure-native:keyvault:Vault":
        return
    props = get(args.props, "properties", {}) or {}
    if get(props, "publicNetworkAccess") == "Disabled":
        return
    action = get(props, "networkAcls.defaultAction")
    if action != "Deny":
        violation(
            report,
            args.resource_type,
            args.name,
            "properties.networkAcls.defaultAction",
            action,
            "set it to 'Deny' and allow only the deployment ranges (event-backbone:keyVault.allowedIpRanges)",
        )
    for rule in get(props, "networkAcls.ipRules", []) or []:
        if _open_to_internet(str(rule.get("value", ""))):
            violation(
                report,
                args.resource_type,
                args.name,
                "properties.networkAcls.ipRules",
                rule.get("value"),
                "remove the 0.0.0.0/0 rule",
            )


keyvault_private = ResourceValidationPolicy(
    name="keyvault-not-public",
    description="Key Vault denies public network access by default (private endpoint plus listed ranges only).",
    validate=_keyvault_private,
    enforcement_level=MANDATORY,
)


def _storage_account(args, report):
    if args.resource_type != "azure-native:storage:StorageAccount":
        return
    https = get(args.props, "enableHttpsTrafficOnly")
    if https is False:
        violation(report, args.resource_type, args.name, "enableHttpsTrafficOnly", https, "set it to true")
    version = get(args.props, "minimumTlsVersion")
    if version not in ("TLS1_2", "TLS1_3"):
        violation(report, args.resource_type, args.name, "minimumTlsVersion", version, "set it to 'TLS1_2' or newer")


storage_account_tls = ResourceValidationPolicy(
    name="storage-account-secure-transport",
    description="Storage accounts accept HTTPS only with TLS 1.2 or newer.",
    validate=_storage_account,
    enforcement_level=MANDATORY,
)

# Ingresses and the public edge: policies/edge.py (edge-https-only, edge-waf, no-plaintext-exposure).
POLICIES = [postgres_tls, postgres_private, broker_tls, aks_api, keyvault_private, storage_account_tls]
