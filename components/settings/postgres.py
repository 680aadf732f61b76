"""PostgreSQL Flexible Server settings: SKU, storage, backups, high availability, and who signs
in how (Entra administrators, password authentication). Which services own a database is
`services.<name>.database`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from .base import Cidr, Model, Uuid, Zone, check_cidr


class PostgresMaintenance(Model):
    day_of_week: int = Field(default=0, ge=0, le=6)  # 0 = Sunday, as ARM counts
    start_hour: int = Field(default=3, ge=0, le=23)
    start_minute: int = Field(default=0, ge=0, le=59)


class EntraAdminGroup(Model):
    """The platform admin group, a Microsoft Entra administrator of the server. It signs in
    with its display name as PostgreSQL user and an Entra token, and reads the break-glass
    password (docs/runbooks/postgres-break-glass.md)."""

    object_id: Uuid
    display_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}$")]


# Server parameters that size shared memory: a replica (hot standby) must have each at least the
# primary's value, or it stops replaying WAL (PostgreSQL "Hot Standby" administration; Azure
# Database for PostgreSQL read replicas, "Server parameters"). Keys as the stack file spells them.
SHARED_MEMORY_PARAMETERS = {
    "maxConnections": "max_connections",
    "maxPreparedTransactions": "max_prepared_transactions",
    "maxLocksPerTransaction": "max_locks_per_transaction",
    "maxWalSenders": "max_wal_senders",
    "maxWorkerProcesses": "max_worker_processes",
}


class SharedMemoryParameters(Model):
    """Explicit values of the shared-memory server parameters (unset: Azure's default for the SKU)."""

    max_connections: int | None = Field(default=None, ge=25, le=5000)
    max_prepared_transactions: int | None = Field(default=None, ge=0, le=262143)
    max_locks_per_transaction: int | None = Field(default=None, ge=10, le=8388608)
    max_wal_senders: int | None = Field(default=None, ge=5, le=100)
    max_worker_processes: int | None = Field(default=None, ge=2, le=262143)

    def values(self) -> dict[str, int]:
        """server parameter name -> value, for the ones set."""
        return {name: v for name, v in self.model_dump().items() if v is not None}


class ReadReplicas(Model):
    """Same-region read replicas (``createMode: Replica``) behind one virtual endpoint pair.
    Replicas are promoted to primary with a switchover, which needs the same tier, SKU and
    storage as the primary: unset, these are the primary's; set, they must equal it."""

    count: int = Field(default=0, ge=0, le=5)  # Azure: at most five replicas per primary
    sku_name: str | None = None
    storage_size_gb: int | None = Field(default=None, ge=32, le=16384)
    storage_auto_grow: bool = True
    # each at least the primary's (postgres.parameters); unset: the primary's
    parameters: SharedMemoryParameters = SharedMemoryParameters()
    # availability zones of the replicas, one per replica in turn (unset: the primary's standby zone)
    availability_zones: list[Zone] = Field(default_factory=list)
    # Base name of the writer/reader host pair (<name>.writer|reader.postgres.database.azure.com):
    # a DNS name, unique across Azure (unset: <prefix>-<env>-pg). Azure refuses a taken one.
    virtual_endpoint_name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")] | None = None


class DisasterRecovery(Model):
    """A geo-replica (``GeoAsyncReplica``) in the paired region, in its own small VNet peered
    with the primary's and linked to the PostgreSQL private DNS zone (docs/disaster-recovery.md)."""

    region: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]+$")]
    address_space: Cidr
    postgres_subnet: Cidr
    sku_name: str | None = None
    storage_size_gb: int | None = Field(default=None, ge=32, le=16384)
    parameters: SharedMemoryParameters = SharedMemoryParameters()
    # the cluster subnet (network.aksSubnet) of the recovery stack that rebuilds this one in the DR
    # region (`recovery`): the DR subnet's NSG lets 5432 in from it ahead of time, so a failover
    # writes nothing here
    recovery_aks_subnet: Cidr | None = None

    @field_validator("address_space", "postgres_subnet")
    @classmethod
    def _valid_cidr(cls, v: str) -> str:
        return check_cidr(v)

    @field_validator("recovery_aks_subnet")
    @classmethod
    def _valid_optional_cidr(cls, v: str | None) -> str | None:
        return None if v is None else check_cidr(v)


class PostgresSettings(Model):
    version: Literal["16"] = "16"
    sku_name: str = "Standard_D2ds_v5"
    sku_tier: Literal["Burstable", "GeneralPurpose", "MemoryOptimized"] = "GeneralPurpose"
    storage_size_gb: int = Field(default=128, ge=32, le=16384)
    backup_retention_days: int = Field(default=7, ge=7, le=35)
    geo_redundant_backup: bool = False
    high_availability: Literal["Disabled", "SameZone", "ZoneRedundant"] = "Disabled"
    availability_zone: Zone = "1"
    standby_availability_zone: Zone = "2"
    ssl_min_protocol_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    admin_login: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{2,30}$")] = "pgadmin"
    # Set to adopt a server restored under another name (docs/runbooks/postgres-restore.md).
    server_name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")] | None = None
    maintenance_window: PostgresMaintenance = PostgresMaintenance()
    # Entra ID sign-in is always on; password sign-in (the generated admin password) must be
    # off in prod and is break-glass only where on.
    password_auth: bool = True
    entra_admin_group: EntraAdminGroup | None = None
    # Microsoft Defender for open-source relational databases on this server.
    defender: bool = True
    # Shared-memory server parameters of the primary (replicas get at least these).
    parameters: SharedMemoryParameters = SharedMemoryParameters()
    read_replicas: ReadReplicas = ReadReplicas()
    disaster_recovery: DisasterRecovery | None = None
