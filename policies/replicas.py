"""Read replicas and disaster recovery of PostgreSQL: a replica is as private and as strict about
TLS as its primary, a primary with same-region replicas has the virtual endpoint pair that a
switchover needs and services connect to, and a configured DR region has its geo-replica."""

from __future__ import annotations

from kit import MANDATORY, MISSING, config, get, is_replica, replica_source, schema, violation
from pulumi_policy import PolicyResource, StackValidationPolicy

PG_SERVER = "azure-native:dbforpostgresql:Server"
PG_CONFIG = "azure-native:dbforpostgresql:Configuration"
PG_VIRTUAL_ENDPOINT = "azure-native:dbforpostgresql:VirtualEndpoint"
TLS_PARAMETERS = ("require_secure_transport", "ssl_min_protocol_version")
DR_REGION_TAG = "disasterRecoveryRegion"  # components/postgres.py: the primary names its DR region


def _name(server: PolicyResource) -> str:
    return str(get(server.props, "serverName", server.name))


def _parameters(args) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for r in args.resources:
        if r.resource_type == PG_CONFIG:
            out.setdefault(str(get(r.props, "serverName", "")), {})[str(get(r.props, "configurationName", ""))] = get(
                r.props, "value"
            )
    return out


def _servers(args) -> tuple[dict[str, PolicyResource], list[tuple[PolicyResource, str | None]]]:
    """(primaries by name, [(replica, its source's name)])."""
    primaries: dict[str, PolicyResource] = {}
    replicas: list[tuple[PolicyResource, str | None]] = []
    for r in args.resources:
        if r.resource_type != PG_SERVER:
            continue
        if is_replica(r.props):
            replicas.append((r, replica_source(r.props)))
        else:
            primaries[_name(r)] = r
    return primaries, replicas


def _replica_parity(args, report):
    """Each replica: its source is in the stack; require_secure_transport and
    ssl_min_protocol_version set on it to exactly the primary's values (a replica keeps the
    parameters it was created with, and later changes on the primary do not reach it); private
    access only, in a delegated subnet, registered in the primary's private DNS zone."""
    primaries, replicas = _servers(args)
    params = _parameters(args)
    for replica, source in replicas:
        primary = primaries.get(source or "")
        if primary is None:
            violation(
                report,
                PG_SERVER,
                replica.name,
                "sourceServerResourceId (a primary of this stack)",
                get(replica.props, "sourceServerResourceId"),
                "create replicas of the stack's own primary (components/postgres_replicas.py)",
                replica.urn,
            )
            continue
        mine, theirs = params.get(_name(replica), {}), params.get(_name(primary), {})
        for param in TLS_PARAMETERS:
            if mine.get(param, MISSING) != theirs.get(param, MISSING):
                violation(
                    report,
                    PG_SERVER,
                    replica.name,
                    f"the server parameter {param}",
                    mine.get(param, MISSING),
                    f"set it to the primary's value ({theirs.get(param, 'not set')}) with a dbforpostgresql."
                    "Configuration on the replica: a replica keeps what it had at creation",
                    replica.urn,
                )
        access = get(replica.props, "network.publicNetworkAccess")
        if access != "Disabled":
            violation(
                report,
                PG_SERVER,
                replica.name,
                "network.publicNetworkAccess",
                access,
                "set it to 'Disabled': a replica is as private as its primary (delegated subnet, private DNS zone)",
                replica.urn,
            )
        if get(replica.props, "network.delegatedSubnetResourceId") is MISSING:
            violation(
                report,
                PG_SERVER,
                replica.name,
                "network.delegatedSubnetResourceId",
                MISSING,
                "place the replica in a subnet delegated to Microsoft.DBforPostgreSQL/flexibleServers",
                replica.urn,
            )
        zone = get(replica.props, "network.privateDnsZoneArmResourceId")
        if zone != get(primary.props, "network.privateDnsZoneArmResourceId"):
            violation(
                report,
                PG_SERVER,
                replica.name,
                "network.privateDnsZoneArmResourceId",
                zone,
                "use the primary's private DNS zone (linked to every VNet that reaches the servers)",
                replica.urn,
            )


replica_parity = StackValidationPolicy(
    name="postgres-replica-parity",
    description="PostgreSQL read replicas keep their primary's TLS parameters and private access.",
    validate=_replica_parity,
    enforcement_level=MANDATORY,
)


def _virtual_endpoint(args, report):
    """Where required (prod): a primary with same-region replicas has a ReadWrite virtual
    endpoint whose member is one of those replicas (the writer/reader hosts services use, and
    what a switchover to the replica needs)."""
    if not config(args).get("requireVirtualEndpoint", False):
        return
    primaries, replicas = _servers(args)
    endpoints = [r for r in args.resources if r.resource_type == PG_VIRTUAL_ENDPOINT]
    for name, primary in primaries.items():
        location = get(primary.props, "location")
        local = [_name(r) for r, source in replicas if source == name and get(r.props, "location") == location]
        if not local:
            continue
        ok = [
            e
            for e in endpoints
            if str(get(e.props, "serverName", "")) == name
            and get(e.props, "endpointType") == "ReadWrite"
            and any(m in local for m in get(e.props, "members", []) or [])
        ]
        if not ok:
            violation(
                report,
                PG_SERVER,
                primary.name,
                "its virtual endpoint (ReadWrite, a member among its replicas)",
                MISSING,
                f"add a dbforpostgresql.VirtualEndpoint on this server with endpoint_type ReadWrite and members"
                f" [{local[0]}]; services read the writer/reader hosts from their database contract",
                primary.urn,
            )


virtual_endpoint = StackValidationPolicy(
    name="postgres-virtual-endpoint",
    description="A PostgreSQL primary with read replicas has a writer/reader virtual endpoint (where required).",
    validate=_virtual_endpoint,
    enforcement_level=MANDATORY,
    config_schema=schema({"requireVirtualEndpoint": {"type": "boolean", "default": False}}),
)


def _dr_replica(args, report):
    """A primary tagged with its DR region has a geo-replica there; where required (prod) every
    primary names its DR region."""
    require = bool(config(args).get("requireDisasterRecovery", False))
    primaries, replicas = _servers(args)
    for name, primary in primaries.items():
        region = get(primary.props, f"tags.{DR_REGION_TAG}")
        if region is MISSING:
            if require:
                violation(
                    report,
                    PG_SERVER,
                    primary.name,
                    f"tags.{DR_REGION_TAG}",
                    MISSING,
                    "configure event-backbone:postgres.disasterRecovery (the paired region, its network): prod"
                    " keeps a geo-replica there (docs/disaster-recovery.md)",
                    primary.urn,
                )
            continue
        there = [r for r, source in replicas if source == name and get(r.props, "location") == region]
        if not there:
            violation(
                report,
                PG_SERVER,
                primary.name,
                f"its geo-replica in {region}",
                MISSING,
                f"add a dbforpostgresql.Server with create_mode Replica, source_server_resource_id = this server's"
                f" id and location {region} (components/postgres_replicas.py does so)",
                primary.urn,
            )


dr_replica = StackValidationPolicy(
    name="postgres-dr-replica",
    description="A PostgreSQL primary with a disaster-recovery region has a geo-replica there; required in prod.",
    validate=_dr_replica,
    enforcement_level=MANDATORY,
    config_schema=schema({"requireDisasterRecovery": {"type": "boolean", "default": False}}),
)

POLICIES = [replica_parity, virtual_endpoint, dr_replica]
