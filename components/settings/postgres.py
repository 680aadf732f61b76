"""PostgreSQL Flexible Server settings: SKU, storage, backups, high availability, and who signs
in how (Entra administrators, password authentication). Which services own a database is
`services.<name>.database`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import Model, Uuid, Zone


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
