"""PostgreSQL Flexible Server 16: private access only, TLS enforced by explicit server
parameters, backups (geo-redundant in prod), zone-redundant HA in prod, one database per
service, Entra auth alongside a generated admin password."""

from __future__ import annotations

import pulumi
from pulumi_azure_native import dbforpostgresql

from .network import Network
from .settings import StackSettings


def tls_parameters(s: StackSettings) -> dict[str, str]:
    """Server parameters that make TLS mandatory; each is its own Configuration resource
    so that a policy (and a reviewer) sees them explicitly rather than trusting defaults."""
    return {
        "require_secure_transport": "on",
        "ssl_min_protocol_version": s.postgres.ssl_min_protocol_version,
    }


class Postgres(pulumi.ComponentResource):
    server_name: pulumi.Output[str]
    fqdn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        net: Network,
        admin_password: pulumi.Output[str],
        client: pulumi.Output,
        suffix: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:Postgres", name, None, opts)
        s = settings
        pg = s.postgres
        tags = {**s.tags, "environment": s.environment, "managedBy": "pulumi"}

        ha = (
            dbforpostgresql.HighAvailabilityArgs(
                mode=pg.high_availability, standby_availability_zone=pg.standby_availability_zone
            )
            if pg.high_availability != "Disabled"
            else dbforpostgresql.HighAvailabilityArgs(mode="Disabled")
        )
        server = dbforpostgresql.Server(
            "server",
            dbforpostgresql.ServerArgs(
                resource_group_name=net.resource_group_name,
                server_name=pg.server_name or suffix.apply(lambda x: f"{s.name_prefix}-{s.environment}-pg-{x}"),
                location=s.location,
                version=pg.version,
                sku=dbforpostgresql.SkuArgs(name=pg.sku_name, tier=pg.sku_tier),
                storage=dbforpostgresql.StorageArgs(storage_size_gb=pg.storage_size_gb, auto_grow="Enabled"),
                backup=dbforpostgresql.BackupArgs(
                    backup_retention_days=pg.backup_retention_days,
                    geo_redundant_backup="Enabled" if pg.geo_redundant_backup else "Disabled",
                ),
                high_availability=ha,
                availability_zone=pg.availability_zone,
                network=dbforpostgresql.NetworkArgs(
                    delegated_subnet_resource_id=net.postgres_subnet_id,
                    private_dns_zone_arm_resource_id=net.postgres_dns_zone_id,
                    public_network_access="Disabled",
                ),
                auth_config=dbforpostgresql.AuthConfigArgs(
                    active_directory_auth="Enabled",
                    password_auth="Enabled",
                    tenant_id=client.tenant_id,
                ),
                administrator_login=pg.admin_login,
                administrator_login_password=admin_password,
                maintenance_window=dbforpostgresql.MaintenanceWindowArgs(
                    custom_window="Enabled",
                    day_of_week=pg.maintenance_window.day_of_week,
                    start_hour=pg.maintenance_window.start_hour,
                    start_minute=pg.maintenance_window.start_minute,
                ),
                tags=tags,
            ),
            # The server needs its DNS zone linked to the VNet before it can be created.
            opts=pulumi.ResourceOptions(parent=self, protect=s.protect, depends_on=[net]),
        )

        # Azure applies one parameter change at a time per server: chain them.
        previous: list[pulumi.Resource] = [server]
        for param, value in tls_parameters(s).items():
            previous = [
                dbforpostgresql.Configuration(
                    param.replace("_", "-"),
                    dbforpostgresql.ConfigurationArgs(
                        resource_group_name=net.resource_group_name,
                        server_name=server.name,
                        configuration_name=param,
                        value=value,
                        source="user-override",
                    ),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=previous),
                )
            ]

        for db in pg.databases:
            dbforpostgresql.Database(
                f"db-{db}",
                dbforpostgresql.DatabaseArgs(
                    resource_group_name=net.resource_group_name,
                    server_name=server.name,
                    database_name=db,
                    charset="UTF8",
                    collation="en_US.utf8",
                ),
                opts=pulumi.ResourceOptions(parent=self, protect=s.protect, depends_on=previous),
            )

        self.server_name = server.name
        self.fqdn = server.fully_qualified_domain_name
        self.register_outputs({"serverName": self.server_name, "fqdn": self.fqdn})
