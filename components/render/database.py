"""Pure render of the PostgreSQL bootstrap: database access by identity.

For each service with a database, one PostgreSQL role (``svc-<service>``, as the broker
users are named) mapped to that service's managed identity, which OWNS its own database and
nothing else: no SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS, no membership in
any role, ``REVOKE ALL ON DATABASE ... FROM PUBLIC`` (so no other role can connect to it) and
no ``CREATE`` for PUBLIC on its ``public`` schema (PostgreSQL 15+ default, stated explicitly).

The output is one psql script, run by the bootstrap Job as the bootstrap identity (a
Microsoft Entra administrator of the server) with a token, connected to the ``postgres``
database, where Azure's ``pgaadauth_*`` functions live. Every statement is idempotent
(DO blocks that check the catalog first; ``CREATE DATABASE``, which cannot run inside a DO
block, through psql's ``\\gexec`` on a query that returns nothing when the database exists):
running it again changes nothing.

The one Azure-only statement is the Entra principal creation,
``pg_catalog.pgaadauth_create_principal_with_oid(roleName, objectId, 'service', isAdmin,
isMfa)``, which only exists on Azure Database for PostgreSQL. It is isolated in
:func:`entra_principal`; ``principal="local"`` substitutes :func:`local_principal` (a plain
``CREATE ROLE ... LOGIN``) so that tests/test_database_grants.py runs the rest of the script,
unchanged, on a real PostgreSQL from Debian's package.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .images import pull

MAINTENANCE_DB = "postgres"
ROLE_PREFIX = "svc-"
ENTRA_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
# What the role must never have; the bootstrap refuses to continue if it finds any of these.
FORBIDDEN_ATTRIBUTES = ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls")

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")

Principal = Literal["entra", "local"]
# A value the render only places into a manifest: a str, or a Pulumi Output[str] the
# component passes through unchanged (the render never looks inside it).
Value = Any


@dataclass(frozen=True)
class DatabaseGrant:
    """One service's database access: its database, its role, and (on Azure) the Entra
    object (principal) id of the managed identity the role is mapped to."""

    service: str
    object_id: str | None = None

    @property
    def database(self) -> str:
        return self.service

    @property
    def role(self) -> str:
        return role_name(self.service)


def role_name(service: str) -> str:
    return f"{ROLE_PREFIX}{service}"


def ident(name: str) -> str:
    """A quoted SQL identifier. Names are validated first: this never quotes user input
    into something else."""
    if not _NAME.match(name):
        raise ValueError(f"not a safe PostgreSQL name: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# ----------------------------------------------------------------- the Azure-only part
def entra_principal(role: str, object_id: str, rebind: bool = False) -> str:
    """Creates the role mapped to a managed identity (Entra object type ``service``), unless
    it exists; a role of that name mapped to ANOTHER object id is an error, not a takeover.
    Only Azure Database for PostgreSQL has ``pgaadauth_create_principal_with_oid``.

    ``rebind`` (a recovery stack, docs/disaster-recovery.md): the promoted geo-replica carries the
    replaced stack's roles, mapped to that stack's identities; each is re-mapped to this stack's
    identity by its pgaadauth security label (``aadauth,oid=<object id>,type=service``), with a
    notice naming the old mapping. Nothing else about the role changes."""
    if not _UUID.match(object_id):
        raise ValueError(f"{role}: object id {object_id!r} is not a UUID")
    label = f"aadauth,oid={object_id.lower()},type=service"
    mismatch = (
        f"""    RAISE WARNING 'role % was mapped to %: re-mapping it to this stack''s identity', {literal(role)}, label;
    EXECUTE format('SECURITY LABEL FOR pgaadauth ON ROLE %I IS %L', {literal(role)}, {literal(label)});"""
        if rebind
        else f"""    RAISE EXCEPTION 'role % is mapped to another Entra principal (%)', {literal(role)}, label;"""
    )
    return f"""DO $bootstrap$
DECLARE
  label text;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {literal(role)}) THEN
    -- (roleName, objectId, objectType 'service' = managed identity, isAdmin, isMfa)
    PERFORM pg_catalog.pgaadauth_create_principal_with_oid(
      {literal(role)}, {literal(object_id)}, 'service', false, false);
  END IF;
  SELECT l.label INTO label FROM pg_catalog.pg_seclabels l
   WHERE l.provider = 'pgaadauth' AND l.objtype = 'role' AND l.objname = {literal(ident(role))};
  IF label IS NOT NULL AND position({literal("oid=" + object_id.lower())} IN lower(label)) = 0 THEN
{mismatch}
  END IF;
END
$bootstrap$;"""


def local_principal(role: str) -> str:
    """The test's stand-in for :func:`entra_principal`: a plain login role."""
    return f"""DO $bootstrap$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {literal(role)}) THEN
    EXECUTE format('CREATE ROLE %I LOGIN', {literal(role)});
  END IF;
END
$bootstrap$;"""


# ----------------------------------------------------------------- the portable part
def _least_privilege(role: str) -> str:
    """The role logs in and can do nothing server-wide. CREATEROLE/CREATEDB are removed when
    present; attributes only a superuser can change, and any role membership, stop the run."""
    checks = "\n".join(
        f"  IF r.{attr} THEN RAISE EXCEPTION 'role % has {attr[3:].upper()}: refusing', r.rolname; END IF;"
        for attr in ("rolsuper", "rolreplication", "rolbypassrls")
    )
    return f"""DO $bootstrap$
DECLARE
  r pg_catalog.pg_roles%ROWTYPE;
  member_of text;
BEGIN
  SELECT * INTO r FROM pg_catalog.pg_roles WHERE rolname = {literal(role)};
{checks}
  IF r.rolcreaterole OR r.rolcreatedb OR NOT r.rolcanlogin OR r.rolconnlimit <> -1 THEN
    EXECUTE format('ALTER ROLE %I LOGIN NOCREATEROLE NOCREATEDB CONNECTION LIMIT -1', r.rolname);
  END IF;
  SELECT string_agg(m.roleid::regrole::text, ', ' ORDER BY m.roleid::regrole::text) INTO member_of
    FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid;
  IF member_of IS NOT NULL THEN
    RAISE EXCEPTION 'role % is a member of other roles (%): refusing', r.rolname, member_of;
  END IF;
END
$bootstrap$;"""


def _bootstrap_may_act_as(role: str) -> str:
    """``ALTER DATABASE ... OWNER TO`` needs the bootstrap role to be able to SET ROLE to the
    new owner, and connecting to a database whose CONNECT is revoked from PUBLIC needs the
    owner's privileges: the bootstrap role is made a member of the service role (once; on
    PostgreSQL 16 a membership without SET or INHERIT does not count). The bootstrap
    identity is an Entra administrator of the server anyway. On PostgreSQL 16 a CREATEROLE
    role (Azure's administrator is one, not a superuser) may grant only roles it has ADMIN
    OPTION on: those it created itself, or those granted to it that way. A role someone else
    created stops the run with a message saying so (tests/test_database_grants.py, on 16)."""
    return f"""DO $bootstrap$
BEGIN
  IF current_setting('server_version_num')::int >= 160000
     AND NOT pg_catalog.pg_has_role(current_user, {literal(role)}, 'SET')
     AND NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
     AND NOT EXISTS (SELECT FROM pg_catalog.pg_auth_members m
                      WHERE m.roleid = {literal(role)}::regrole AND m.member = current_user::regrole
                        AND m.admin_option) THEN
    RAISE EXCEPTION 'role % was created by another role and % has no ADMIN OPTION on it: on PostgreSQL 16 '
      'it cannot make itself a member, so it cannot hand the database over (drop the role and let this '
      'identity create it, or grant it ADMIN OPTION on the role as a role that has it)', {literal(role)}, current_user;
  END IF;
  IF NOT pg_catalog.pg_has_role(current_user, {literal(role)}, 'USAGE') THEN
    EXECUTE format('GRANT %I TO %I', {literal(role)}, current_user);
  ELSIF current_setting('server_version_num')::int >= 160000 THEN
    IF NOT pg_catalog.pg_has_role(current_user, {literal(role)}, 'SET') THEN
      EXECUTE format('GRANT %I TO %I', {literal(role)}, current_user);
    END IF;
  END IF;
END
$bootstrap$;"""


def _database(database: str, role: str) -> str:
    return f"""SELECT format('CREATE DATABASE %I OWNER %I', {literal(database)}, {literal(role)})
 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = {literal(database)}) \\gexec
DO $bootstrap$
BEGIN
  IF (SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database WHERE datname = {literal(database)})
     <> {literal(role)} THEN
    EXECUTE format('ALTER DATABASE %I OWNER TO %I', {literal(database)}, {literal(role)});
  END IF;
END
$bootstrap$;
REVOKE ALL ON DATABASE {ident(database)} FROM PUBLIC;
\\connect {ident(database)}
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
\\connect {MAINTENANCE_DB}"""


def service_sql(grant: DatabaseGrant, principal: Principal = "entra", rebind: bool = False) -> str:
    if principal == "entra":
        if not grant.object_id:
            raise ValueError(f"{grant.service}: an Entra principal needs the identity's object id")
        create = entra_principal(grant.role, grant.object_id, rebind)
    else:
        create = local_principal(grant.role)
    return "\n".join(
        [
            f"-- {grant.service}: role {grant.role} owns database {grant.database}, nothing else",
            create,
            _least_privilege(grant.role),
            _bootstrap_may_act_as(grant.role),
            _database(grant.database, grant.role),
        ]
    )


def bootstrap_sql(grants: Sequence[DatabaseGrant], principal: Principal = "entra", rebind: bool = False) -> str:
    """The whole psql script (run connected to the ``postgres`` database); ``rebind``: a
    recovery stack's, re-mapping existing roles to its identities (:func:`entra_principal`)."""
    services = [g.service for g in grants]
    dupes = sorted({s for s in services if services.count(s) > 1})
    if dupes:
        raise ValueError(f"services listed twice: {', '.join(dupes)}")
    for g in grants:
        ident(g.database)  # validates the name
        ident(g.role)
    header = [
        "-- Rendered by components/render/database.py. Idempotent: running it again changes nothing.",
        "-- Principals: "
        + ("Entra managed identities (pgaadauth)" if principal == "entra" else "plain login roles (test stand-in)"),
        "\\set ON_ERROR_STOP on",
        "SET client_min_messages = warning;",
    ]
    if rebind:
        header.insert(2, "-- Recovery stack: existing roles are re-mapped to this stack's identities.")
    body = [service_sql(g, principal, rebind) for g in sorted(grants, key=lambda g: g.service)]
    return "\n".join(header + body) + "\n"


# ----------------------------------------------------------------- the bootstrap Job
NAMESPACE = "platform-bootstrap"
SERVICE_ACCOUNT = "postgres-bootstrap"
SQL_CONFIGMAP = "postgres-bootstrap-sql"
# Pinned images: the Azure CLI gets the token, psql (PostgreSQL 16 client, libpq 16 for
# sslrootcert=system) runs the script. The psql image must carry the system CA bundle.
AZURE_CLI_IMAGE = "mcr.microsoft.com/azure-cli:2.67.0"
PSQL_IMAGE = "postgres:16.6-bookworm"
ENTRA_RESOURCE = "https://ossrdbms-aad.database.windows.net"
POSTGRES_PORT = 5432
RUN_AS = 65532
_PART_OF = {"app.kubernetes.io/part-of": "event-backbone"}
_JOB_LABELS = {"app.kubernetes.io/name": "postgres-bootstrap", **_PART_OF}


def bootstrap_namespace() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {
                **_PART_OF,
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/audit": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
            },
        },
    }


def bootstrap_service_account(client_id: Value) -> dict:
    """Federated (workload identity) to the bootstrap user-assigned identity."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": SERVICE_ACCOUNT,
            "namespace": NAMESPACE,
            "labels": _PART_OF,
            "annotations": {"azure.workload.identity/client-id": client_id},
        },
        "automountServiceAccountToken": False,
    }


GRANTS_ANNOTATION = "event-backbone.io/database-grants"


def grants_json(grants: Sequence[DatabaseGrant]) -> str:
    """The grants as data, for readers of the recorded plan (the access matrix): which role,
    mapped to which Entra object, owns which database."""
    return json.dumps(
        [
            {"service": g.service, "database": g.database, "role": g.role, "objectId": g.object_id}
            for g in sorted(grants, key=lambda g: g.service)
        ],
        separators=(",", ":"),
    )


def bootstrap_sql_configmap(sql: Value, grants: Value) -> dict:
    """``sql``: :func:`bootstrap_sql`; ``grants``: :func:`grants_json` of the same grants."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": SQL_CONFIGMAP,
            "namespace": NAMESPACE,
            "labels": _PART_OF,
            "annotations": {GRANTS_ANNOTATION: grants},
        },
        "data": {"bootstrap.sql": sql},
    }


def job_name(sql: str) -> str:
    """The Job's pod template is immutable: a new script is a new Job (name from its hash)."""
    return f"postgres-bootstrap-{hashlib.sha256(sql.encode()).hexdigest()[:10]}"


# The token is fetched with the pod's federated service-account token (workload identity
# injects AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE) and handed to psql
# through a memory-backed volume, never an environment variable or a log line.
TOKEN_SCRIPT = f"""set -eu
az login --service-principal --username "$AZURE_CLIENT_ID" --tenant "$AZURE_TENANT_ID" \\
  --federated-token "$(cat "$AZURE_FEDERATED_TOKEN_FILE")" --allow-no-subscriptions --output none
az account get-access-token --resource {ENTRA_RESOURCE} --query accessToken --output tsv > /run/token/pgpass.tmp
mv /run/token/pgpass.tmp /run/token/token
"""
PSQL_SCRIPT = """set -eu
PGPASSWORD="$(cat /run/token/token)" exec psql --no-psqlrc --set ON_ERROR_STOP=1 --file /etc/bootstrap/bootstrap.sql
"""


def _container_security() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def bootstrap_job(*, name: Value, server_fqdn: Value, login: str, registry: Value = None) -> dict:
    """Runs the rendered SQL as the bootstrap identity (an Entra administrator of the server,
    PostgreSQL login ``login``) with a token for ``ossrdbms-aad``, TLS verified."""
    resources = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": _JOB_LABELS},
        "spec": {
            "backoffLimit": 4,
            "activeDeadlineSeconds": 900,
            "template": {
                "metadata": {"labels": {**_JOB_LABELS, "azure.workload.identity/use": "true"}},
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "automountServiceAccountToken": False,
                    "restartPolicy": "Never",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS,
                        "runAsGroup": RUN_AS,
                        "fsGroup": RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": [
                        {
                            "name": "entra-token",
                            "image": pull(AZURE_CLI_IMAGE, registry),
                            "imagePullPolicy": "Always",
                            "command": ["/bin/sh", "-c", TOKEN_SCRIPT],
                            "env": [
                                {"name": "HOME", "value": "/tmp"},
                                {"name": "AZURE_CONFIG_DIR", "value": "/tmp/.azure"},
                            ],
                            "securityContext": _container_security(),
                            "resources": resources,
                            "volumeMounts": [
                                {"name": "token", "mountPath": "/run/token"},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "containers": [
                        {
                            "name": "psql",
                            "image": pull(PSQL_IMAGE, registry),
                            "imagePullPolicy": "Always",
                            "command": ["/bin/sh", "-c", PSQL_SCRIPT],
                            "env": [
                                {"name": "PGHOST", "value": server_fqdn},
                                {"name": "PGPORT", "value": str(POSTGRES_PORT)},
                                {"name": "PGDATABASE", "value": MAINTENANCE_DB},
                                {"name": "PGUSER", "value": login},
                                {"name": "PGSSLMODE", "value": "verify-full"},
                                {"name": "PGSSLROOTCERT", "value": "system"},
                                {"name": "PGAPPNAME", "value": "postgres-bootstrap"},
                                {"name": "HOME", "value": "/tmp"},
                            ],
                            "securityContext": _container_security(),
                            "resources": resources,
                            "volumeMounts": [
                                {"name": "token", "mountPath": "/run/token", "readOnly": True},
                                {"name": "sql", "mountPath": "/etc/bootstrap", "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "token", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                        {"name": "sql", "configMap": {"name": SQL_CONFIGMAP}},
                    ],
                },
            },
        },
    }


def bootstrap_network_policies(postgres_subnet: str) -> list[dict]:
    """Default deny in and out; out: cluster DNS, PostgreSQL (5432 to the delegated subnet),
    and HTTPS for the Entra token endpoint. A plain NetworkPolicy cannot name an FQDN
    (login.microsoftonline.com): 443 is allowed to any address outside the private ranges,
    so the Job can reach Entra ID but nothing inside the VNet or the cluster over 443."""

    def policy(name: str, spec: dict) -> dict:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": _PART_OF},
            "spec": spec,
        }

    private = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]
    return [
        policy("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        policy(
            "allow-bootstrap-egress",
            {
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "postgres-bootstrap"}},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    },
                    {
                        "to": [{"ipBlock": {"cidr": postgres_subnet}}],
                        "ports": [{"protocol": "TCP", "port": POSTGRES_PORT}],
                    },
                    {
                        "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": private}}],
                        "ports": [{"protocol": "TCP", "port": 443}],
                    },
                ],
            },
        ),
    ]
