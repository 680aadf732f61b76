"""Database access by identity: PostgreSQL is reached with Entra ID tokens, administered by
Entra principals, and (where required: prod) no password opens it."""

from __future__ import annotations

from kit import MANDATORY, MISSING, config, get, replica_source, schema, violation
from pulumi_policy import StackValidationPolicy

PG_SERVER = "azure-native:dbforpostgresql:Server"
PG_ENTRA_ADMINS = (
    "azure-native:dbforpostgresql:AdministratorsMicrosoftEntra",
    "azure-native:dbforpostgresql:Administrator",
)


def _postgres_entra(args, report):
    require_no_password = bool(config(args).get("requirePasswordAuthDisabled", False))
    admins: dict[str, int] = {}
    for r in args.resources:
        if r.resource_type in PG_ENTRA_ADMINS and get(r.props, "objectId") is not MISSING:
            key = str(get(r.props, "serverName", ""))
            admins[key] = admins.get(key, 0) + 1
    for server in args.resources:
        if server.resource_type != PG_SERVER:
            continue
        if get(server.props, "authConfig.activeDirectoryAuth") != "Enabled":
            violation(
                report,
                PG_SERVER,
                server.name,
                "authConfig.activeDirectoryAuth",
                get(server.props, "authConfig.activeDirectoryAuth"),
                "set it to 'Enabled': services and people sign in with Entra ID tokens",
                server.urn,
            )
        if require_no_password and get(server.props, "authConfig.passwordAuth") != "Disabled":
            violation(
                report,
                PG_SERVER,
                server.name,
                "authConfig.passwordAuth",
                get(server.props, "authConfig.passwordAuth"),
                "set it to 'Disabled' (event-backbone:postgres.passwordAuth: false); the generated admin password"
                " is break-glass only (docs/runbooks/postgres-break-glass.md)",
                server.urn,
            )
        # A read replica has its primary's Entra administrators (roles replicate physically).
        admins_of = replica_source(server.props) or str(get(server.props, "serverName", server.name))
        if not admins.get(admins_of):
            violation(
                report,
                PG_SERVER,
                server.name,
                "its Microsoft Entra administrators",
                MISSING,
                "add a dbforpostgresql.AdministratorsMicrosoftEntra for this server"
                " (event-backbone:postgres.entraAdminGroup)",
                server.urn,
            )


postgres_entra = StackValidationPolicy(
    name="postgres-entra-auth",
    description="PostgreSQL has Entra authentication and an Entra administrator; password authentication is off"
    " where required.",
    validate=_postgres_entra,
    enforcement_level=MANDATORY,
    config_schema=schema({"requirePasswordAuthDisabled": {"type": "boolean", "default": False}}),
)

POLICIES = [postgres_entra]
