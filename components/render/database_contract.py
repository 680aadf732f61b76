"""The per-service database contract: where a service with a database (``services.<name>.database``)
connects, as whom, and how it sends reads to a replica. ``make plan`` writes one file per such
service to ``build/<stack>/postgres/clients/<service>.json`` (docs/disaster-recovery.md).

Writes go to the **writer** host, reads that tolerate replication lag may go to the **reader**
host. With read replicas both are the virtual endpoint pair, which follows a switchover: services
never change their configuration when a replica is promoted. Without replicas (dev) there is
only the server itself, whose name is known after ``pulumi up`` (stack output ``postgresFqdn``).

Read-only use needs no role of its own: the replica is a physical copy, so the role the bootstrap
Job made (``svc-<service>``), its ownership and its grants exist there as on the primary, and every
transaction on a replica is read-only (a write fails with SQLSTATE 25006). A service expresses its
read-only use by connecting to the reader host with ``target_session_attrs=read-only``; writers set
``target_session_attrs=read-write``, so a connection never lands on a server that cannot write."""

from __future__ import annotations

from ..settings import StackSettings
from . import database

PORT = database.POSTGRES_PORT
VE_HOST_SUFFIX = ".postgres.database.azure.com"


def endpoint_name(s: StackSettings) -> str:
    """Base name of the virtual endpoint pair (components/postgres_replicas.py uses the same)."""
    return s.postgres.read_replicas.virtual_endpoint_name or s.name("pg")


def hosts(s: StackSettings) -> dict[str, str | None]:
    """``writer`` and ``reader`` host names (None where not known before ``pulumi up``)."""
    if s.postgres.read_replicas.count:
        base = endpoint_name(s)
        return {"writer": f"{base}.writer{VE_HOST_SUFFIX}", "reader": f"{base}.reader{VE_HOST_SUFFIX}"}
    return {"writer": None, "reader": None}


def _tls(s: StackSettings) -> dict:
    return {
        "sslmode": "verify-full",
        "sslrootcert": "system",
        "minimumProtocol": s.postgres.ssl_min_protocol_version,
        # open point (docs/disaster-recovery.md): not verifiable offline
        "unverified": "that the server certificate names the virtual endpoint hosts"
        if s.postgres.read_replicas.count
        else None,
    }


def database_contracts(s: StackSettings) -> dict[str, dict]:
    """service -> its database contract."""
    h = hosts(s)
    replicas = s.postgres.read_replicas.count
    dr = s.postgres.disaster_recovery
    contracts: dict[str, dict] = {}
    for service in s.databases:
        grant = database.DatabaseGrant(service)
        writer = {
            "host": h["writer"],
            "hostFrom": "virtual endpoint (follows a switchover)" if replicas else "stack output postgresFqdn",
            "port": PORT,
            "targetSessionAttrs": "read-write",
        }
        reader = (
            {
                "host": h["reader"],
                "hostFrom": "virtual endpoint (targets the first read replica; the former primary after a switchover)",
                "port": PORT,
                "targetSessionAttrs": "read-only",
                "consistency": "asynchronous replication: reads may lag the writer (seconds, more under load)",
            }
            if replicas
            else None
        )
        contracts[service] = {
            "service": service,
            "database": grant.database,
            "role": grant.role,
            "writer": writer,
            "reader": reader,
            "readOnlyUse": (
                "the same role on the reader host: the role, its database and grants replicate physically;"
                " every transaction there is read-only (a write fails with SQLSTATE 25006)"
                if replicas
                else "no read replica in this stack: read from the writer"
            ),
            "tls": _tls(s),
            "authentication": {
                "method": "Microsoft Entra access token as password (workload identity)",
                "scope": database.ENTRA_SCOPE,
                "user": grant.role,
            },
            "disasterRecovery": {
                "recoveryOf": s.recovery.replaces,
                "mechanism": f"this stack runs on the promoted geo-replica of stack {s.recovery.replaces!r}"
                " (docs/disaster-recovery.md, runbook C); its host is this stack's postgresFqdn",
            }
            if s.recovery is not None
            else None
            if dr is None
            else {
                "region": dr.region,
                "mechanism": "geo-replica promoted, then the DR stack rebuilt from this code"
                " (docs/disaster-recovery.md); the writer host changes with it",
            },
        }
    return contracts
