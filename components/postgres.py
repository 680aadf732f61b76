"""PostgreSQL Flexible Server 16: private access only, TLS enforced by explicit server
parameters, backups (geo-redundant in prod), zone-redundant HA in prod, one database per
service, and database access by identity:

* :class:`Postgres` (Azure side): Entra authentication on, password authentication off in
  prod (``postgres.passwordAuth``), the platform admin group as Entra administrator, and the
  generated admin password readable only by the deployer and that group (break-glass,
  docs/runbooks/postgres-break-glass.md).
* :class:`PostgresBootstrap` (cluster side): a user-assigned identity that is the second
  Entra administrator, federated to the ``platform-bootstrap/postgres-bootstrap`` service
  account, and a Job that runs the rendered bootstrap SQL (components/render/database.py)
  with a token: each service's managed identity becomes a role that owns its database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import dbforpostgresql, managedidentity, security

from . import rbac
from .kube import apply_manifest
from .network import Network
from .render import database as render
from .settings import StackSettings
from .vault import Vault


def tls_parameters(s: StackSettings) -> dict[str, str]:
    """Server parameters that make TLS mandatory; each is its own Configuration resource
    so that a policy (and a reviewer) sees them explicitly rather than trusting defaults."""
    return {
        "require_secure_transport": "on",
        "ssl_min_protocol_version": s.postgres.ssl_min_protocol_version,
    }


# Audit and abuse protection: log every connection and disconnection and each checkpoint
# (PostgreSQLLogs in the workspace), and throttle repeated failed sign-ins per IP.
AUDIT_PARAMETERS = {
    "connection_throttle.enable": "on",
    "log_connections": "on",
    "log_disconnections": "on",
    "log_checkpoints": "on",
}


# The primary's tag naming the disaster-recovery region (postgres.disasterRecovery.region).
DR_REGION_TAG = "disasterRecoveryRegion"


def server_parameters(s: StackSettings, shared_memory: Mapping[str, int]) -> dict[str, str]:
    """Every server parameter the stack sets on a server, in the order they are applied:
    shared-memory sizes, audit, then TLS last (later operations wait for the TLS ones)."""
    return {
        **{k: str(v) for k, v in sorted(shared_memory.items())},
        **AUDIT_PARAMETERS,
        **tls_parameters(s),
    }


class Postgres(pulumi.ComponentResource):
    server_name: pulumi.Output[str]
    fqdn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        net: Network,
        vault: Vault,
        client: pulumi.Output,
        suffix: pulumi.Output[str],
        databases: Sequence[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:Postgres", name, None, opts)
        s = settings
        pg = s.postgres
        admin_secret = vault.secrets[ADMIN_SECRET]
        tags = {**s.tags, "environment": s.environment, "managedBy": "pulumi"}
        # what the replicas and the DR replica are checked against (policies/replicas.py)
        server_tags = dict(tags)
        if pg.disaster_recovery is not None:
            server_tags[DR_REGION_TAG] = pg.disaster_recovery.region

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
                    active_directory_auth=dbforpostgresql.MicrosoftEntraAuth.ENABLED,
                    password_auth=dbforpostgresql.PasswordBasedAuth.ENABLED
                    if pg.password_auth
                    else dbforpostgresql.PasswordBasedAuth.DISABLED,
                    tenant_id=client.tenant_id,
                ),
                # Kept for break-glass only (docs/runbooks/postgres-break-glass.md).
                administrator_login=pg.admin_login,
                administrator_login_password=admin_secret.value,
                maintenance_window=dbforpostgresql.MaintenanceWindowArgs(
                    custom_window="Enabled",
                    day_of_week=pg.maintenance_window.day_of_week,
                    start_hour=pg.maintenance_window.start_hour,
                    start_minute=pg.maintenance_window.start_minute,
                ),
                tags=server_tags,
            ),
            # The server needs its DNS zone linked to the VNet before it can be created.
            opts=pulumi.ResourceOptions(parent=self, protect=s.protect, depends_on=[net]),
        )

        # Azure applies one parameter change at a time per server: chain them.
        previous: list[pulumi.Resource] = [server]
        # audit parameters first: the TLS ones stay last, later operations wait for them
        for param, value in server_parameters(s, pg.parameters.values()).items():
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

        if pg.defender:
            # Defender for open-source relational databases on this server (the SDK exposes the
            # resource-level Microsoft.Security/advancedThreatProtectionSettings, not the
            # flexible server's own advancedThreatProtectionSettings child).
            security.AdvancedThreatProtection(
                "defender",
                security.AdvancedThreatProtectionArgs(resource_id=server.id, setting_name="current", is_enabled=True),
                opts=pulumi.ResourceOptions(parent=self),
            )

        # The platform admin group administers the server through Entra ID.
        self.admins: list[pulumi.Resource] = []
        if pg.entra_admin_group is not None:
            group = pg.entra_admin_group
            previous = [
                dbforpostgresql.AdministratorsMicrosoftEntra(
                    "entra-admin-group",
                    dbforpostgresql.AdministratorsMicrosoftEntraArgs(
                        resource_group_name=net.resource_group_name,
                        server_name=server.name,
                        object_id=group.object_id,
                        principal_name=group.display_name,
                        principal_type=dbforpostgresql.PrincipalType.GROUP,
                        tenant_id=client.tenant_id,
                    ),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=previous),
                )
            ]
            self.admins = list(previous)

            # Break-glass: besides the deployer (Secrets Officer on the vault, to write it),
            # only the admin group reads the generated admin password, on that secret alone.
            rbac.grant(
                "admin-group-reads-break-glass-password",
                role=rbac.KEY_VAULT_SECRETS_USER,
                principal_id=group.object_id,
                scope=pulumi.Output.all(vault.vault_id, admin_secret.uri).apply(
                    lambda args: f"{args[0]}/secrets/{ADMIN_SECRET}"
                ),
                client=client,
                description="platform admins read the PostgreSQL break-glass password",
                opts=pulumi.ResourceOptions(parent=self),
                principal_type="Group",
            )

        self.databases: list[pulumi.Resource] = []
        for db in databases:
            self.databases.append(
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
            )

        self.server = server
        self.server_name = server.name
        self.server_id = server.id
        self.resource_group_name = net.resource_group_name
        self.fqdn = server.fully_qualified_domain_name
        self.tenant_id = client.tenant_id
        # Azure applies one change at a time per server: later operations wait for these.
        self.last_operations = previous
        self.register_outputs({"serverName": self.server_name, "fqdn": self.fqdn})


class DatabaseServer(Protocol):
    """What the bootstrap, diagnostics, alerts and locks need of a server: :class:`Postgres`,
    or a recovery stack's promoted geo-replica (components/recovery.py)."""

    server_name: pulumi.Output[str]
    server_id: pulumi.Output[str]
    resource_group_name: pulumi.Output[str]
    fqdn: pulumi.Output[str]
    tenant_id: pulumi.Output[str]
    last_operations: list[pulumi.Resource]
    databases: list[pulumi.Resource]


class PostgresBootstrap(pulumi.ComponentResource):
    """The bootstrap identity (an Entra administrator of the server) and the Job that maps
    each service's managed identity to the role owning its database."""

    client_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        net: Network,
        postgres: DatabaseServer,
        provider: k8s.Provider,
        oidc_issuer_url: pulumi.Output[str],
        principals: Mapping[str, pulumi.Input[str]],
        registry: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """``principals``: database (= service) name -> Entra object (principal) id of the
        managed identity that owns it; ``registry``: the stack's registry login server."""
        super().__init__("event-backbone:platform:PostgresBootstrap", name, None, opts)
        s = settings
        child = pulumi.ResourceOptions(parent=self)
        login = bootstrap_login(s)

        identity = managedidentity.UserAssignedIdentity(
            "bootstrap-identity",
            resource_group_name=net.resource_group_name,
            resource_name_=login,
            location=s.location,
            tags={**s.tags, "environment": s.environment},
            opts=child,
        )
        federation = managedidentity.FederatedIdentityCredential(
            "bootstrap-federation",
            resource_group_name=net.resource_group_name,
            resource_name_=identity.name,
            federated_identity_credential_resource_name=f"{render.NAMESPACE}-{render.SERVICE_ACCOUNT}",
            issuer=oidc_issuer_url,
            subject=f"system:serviceaccount:{render.NAMESPACE}:{render.SERVICE_ACCOUNT}",
            audiences=["api://AzureADTokenExchange"],
            opts=child,
        )
        admin = dbforpostgresql.AdministratorsMicrosoftEntra(
            "entra-admin-bootstrap",
            dbforpostgresql.AdministratorsMicrosoftEntraArgs(
                resource_group_name=postgres.resource_group_name,
                server_name=postgres.server_name,
                object_id=identity.principal_id,
                principal_name=login,
                principal_type=dbforpostgresql.PrincipalType.SERVICE_PRINCIPAL,
                tenant_id=postgres.tenant_id,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=postgres.last_operations),
        )

        names = sorted(principals)
        grants = pulumi.Output.all(*[principals[n] for n in names]).apply(
            lambda ids: [render.DatabaseGrant(n, str(i)) for n, i in zip(names, ids, strict=True)]
        )
        rebind = s.recovery is not None  # a recovery stack re-maps the promoted server's roles
        sql = grants.apply(lambda g: render.bootstrap_sql(g, rebind=rebind))
        kube = pulumi.ResourceOptions(parent=self, provider=provider)
        ns = apply_manifest("namespace", render.bootstrap_namespace(), kube)
        in_ns = pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[ns]))
        for policy in render.bootstrap_network_policies(s.database_subnet):
            apply_manifest(f"netpol-{policy['metadata']['name']}", policy, in_ns)
        sa = apply_manifest("service-account", render.bootstrap_service_account(identity.client_id), in_ns)
        script = apply_manifest(
            "bootstrap-sql", render.bootstrap_sql_configmap(sql, grants.apply(render.grants_json)), in_ns
        )
        apply_manifest(
            "bootstrap-job",
            render.bootstrap_job(
                name=sql.apply(render.job_name), server_fqdn=postgres.fqdn, login=login, registry=registry
            ),
            pulumi.ResourceOptions.merge(
                in_ns,
                pulumi.ResourceOptions(
                    depends_on=[sa, script, federation, admin, *postgres.databases], delete_before_replace=True
                ),
            ),
        )
        self.client_id = identity.client_id
        self.register_outputs({"clientId": self.client_id})


ADMIN_SECRET = "postgres-admin"


def bootstrap_login(s: StackSettings) -> str:
    """The bootstrap identity's name, which is also its PostgreSQL login (Entra admin role)."""
    return s.name("id", "pg-bootstrap")
