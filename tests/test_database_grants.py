"""Database access by identity, proven on a real PostgreSQL 16 (the major the stack's Flexible
Server runs: the pgserver wheel; a throwaway cluster on 127.0.0.1 stopped by PID:
tests/tools/postgres_node.py).

The bootstrap SQL is the one the Job runs (components/render/database.py), executed by a
role shaped like an Azure Entra administrator: LOGIN CREATEDB CREATEROLE, member of an
``azure_pg_admin`` role, not a superuser. Azure's ``pgaadauth_create_principal_with_oid``
does not exist outside Azure: the local render substitutes a plain ``CREATE ROLE ... LOGIN``
for it, everything else is the same script. One database is pre-created owned by
``azure_pg_admin`` (standing in for one the ARM ``Database`` resource created), the others are
created by the script. A second cluster runs the Entra render itself against a stand-in for the Azure
function (it creates a plain login role), so that script is executed too.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, require_tool
from tools import toolchain
from tools.postgres_node import PostgresNode, bin_dir

from components.render.database import DatabaseGrant, bootstrap_sql, role_name

pytestmark = pytest.mark.postgres

# The stacks' databases plus others up to the eight bounded contexts the review counts.
STACK_DATABASES = sorted(
    {
        svc
        for stack in ("dev", "prod")
        for svc, cfg in yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"][
            "event-backbone:services"
        ].items()
        if cfg.get("database")
    }
)
SERVICES = sorted({*STACK_DATABASES, "transcription", "audit", "billing", "catalog", "notifications", "search"})
PRECREATED = STACK_DATABASES[0]  # stands in for one ARM created: owned by azure_pg_admin
BOOTSTRAP = "bootstrap"

AZURE_LIKE = f"""
CREATE ROLE azure_pg_admin NOLOGIN;
CREATE ROLE {BOOTSTRAP} LOGIN CREATEDB CREATEROLE IN ROLE azure_pg_admin;
CREATE DATABASE "{PRECREATED}" OWNER azure_pg_admin;
"""

# Everything the bootstrap could change, as plain rows (no OIDs), for before/after comparison.
SNAPSHOT = """
SELECT 'role', rolname, concat_ws(',', rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,
       rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil) FROM pg_roles
UNION ALL
SELECT 'member', pg_get_userbyid(roleid),
       concat_ws(',', pg_get_userbyid(member), pg_get_userbyid(grantor), admin_option) FROM pg_auth_members
UNION ALL
SELECT 'database', datname, concat_ws(',', pg_get_userbyid(datdba), datacl::text, datconnlimit, datallowconn)
  FROM pg_database
UNION ALL
SELECT 'setting', coalesce(pg_get_userbyid(setrole), '-'), setconfig::text FROM pg_db_role_setting
ORDER BY 1, 2, 3
"""
SCHEMA_SNAPSHOT = """
SELECT nspname, pg_get_userbyid(nspowner), coalesce(nspacl::text, '-') FROM pg_namespace
 WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ORDER BY 1
"""

# What the Azure function looks like from SQL; the stand-in creates a plain login role. It is
# SECURITY DEFINER (owned by the cluster's superuser, as Azure's runs as a role the customer
# has not got), so on PostgreSQL 16 the caller is not the new role's creator and gets no ADMIN
# OPTION on it by itself. Whether Azure's function grants its caller ADMIN OPTION is not
# documented where we could find it: ``{admin}`` is the stand-in's choice, and both are run.
ENTRA_STAND_IN = """
CREATE FUNCTION pg_catalog.pgaadauth_create_principal_with_oid(
  roleName text, objectId text, objectType text, isAdmin boolean, isMfa boolean)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $f$
BEGIN
  IF objectType <> 'service' OR isAdmin OR isMfa THEN RAISE EXCEPTION 'unexpected arguments'; END IF;
  EXECUTE format('CREATE ROLE %I LOGIN', roleName);
  {admin}
  RETURN 'Created role for ' || roleName;
END $f$;
REVOKE ALL ON FUNCTION pg_catalog.pgaadauth_create_principal_with_oid(text, text, text, boolean, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_catalog.pgaadauth_create_principal_with_oid(text, text, text, boolean, boolean)
  TO azure_pg_admin;
"""

FIGURES: dict[str, float | int] = {}


def snapshot(pg: PostgresNode) -> list[tuple[str, ...]]:
    rows = pg.rows(SNAPSHOT)
    for db in SERVICES:
        rows += [("schema", db, *r) for r in pg.rows(SCHEMA_SNAPSHOT, db=db)]
    return rows


def require_postgres() -> None:
    found = bin_dir()  # the pgserver wheel's PostgreSQL 16, never the host's
    require_tool(str(found / "pg_ctl") if found else "pgserver's pg_ctl (requirements.txt)")


@pytest.fixture(scope="module")
def pg():
    require_postgres()
    node = PostgresNode()
    try:
        node.start()
        FIGURES["start_s"] = node.started_in or 0.0
        node.psql(AZURE_LIKE)
        script = bootstrap_sql([DatabaseGrant(s) for s in SERVICES], principal="local")
        t0 = time.perf_counter()
        node.psql(script, user=BOOTSTRAP)
        FIGURES["first_run_s"] = time.perf_counter() - t0
        node.script = script  # type: ignore[attr-defined]
        yield node
    finally:
        node.close()


def test_each_service_role_owns_its_database_and_reads_and_writes(pg):
    for svc in SERVICES:
        role = role_name(svc)
        out = pg.psql(
            """
            CREATE TABLE orders (id bigserial PRIMARY KEY, item text NOT NULL);
            INSERT INTO orders (item) SELECT 'item-' || g FROM generate_series(1, 100) g;
            UPDATE orders SET item = item || '-shipped' WHERE id <= 10;
            DELETE FROM orders WHERE id > 90;
            SELECT count(*), count(*) FILTER (WHERE item LIKE '%-shipped') FROM orders;
            SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database();
            DROP TABLE orders;
            """,
            user=role,
            db=svc,
        ).stdout.splitlines()
        assert out == ["90\t10", role], (svc, out)
    FIGURES["own_db_read_write_ok"] = len(SERVICES)


def test_no_role_can_connect_to_another_services_database(pg):
    pairs = [(svc, other) for svc in SERVICES for other in SERVICES if other != svc]
    with ThreadPoolExecutor(max_workers=4) as pool:
        procs = list(pool.map(lambda p: pg.psql("SELECT 1", user=role_name(p[0]), db=p[1], check=False), pairs))
    for (svc, other), proc in zip(pairs, procs, strict=True):
        assert proc.returncode != 0, f"{svc} connected to {other}"
        assert f'permission denied for database "{other}"' in proc.stderr, proc.stderr
    assert len(pairs) == len(SERVICES) * (len(SERVICES) - 1)
    FIGURES["cross_db_connections_denied"] = len(pairs)


FORBIDDEN = (
    ("CREATE ROLE intruder LOGIN", "permission denied to create role"),
    ("CREATE DATABASE intruder", "permission denied to create database"),
    ("CREATE TABLE public.intruder (x int)", "permission denied for schema public"),
    ("ALTER ROLE current_user CREATEDB", "permission denied"),
    ("SET ROLE bootstrap", "permission denied to set role"),
)


def test_service_roles_cannot_create_roles_databases_or_objects_outside_their_database(pg):
    refused = 0
    for svc in SERVICES:
        # one session, every statement attempted (ON_ERROR_STOP off): each must fail in turn
        script = "\\set ON_ERROR_STOP off\n" + "".join(
            f"{sql};\nSELECT 'reached:{i}';\n" for i, (sql, _) in enumerate(FORBIDDEN)
        )
        proc = pg.psql(script, user=role_name(svc), db="postgres", check=False)
        errors = [line for line in proc.stderr.splitlines() if "ERROR:" in line]
        assert len(errors) == len(FORBIDDEN), (svc, proc.stderr)
        for (sql, expected), error in zip(FORBIDDEN, errors, strict=True):
            assert expected in error, (svc, sql, error)
            refused += 1
        assert proc.stdout.split() == [f"reached:{i}" for i in range(len(FORBIDDEN))]
    attrs = pg.rows(
        "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin "
        "FROM pg_roles WHERE rolname LIKE 'svc-%' ORDER BY 1"
    )
    assert attrs == [(role_name(s), "f", "f", "f", "f", "f", "t") for s in SERVICES]
    # member of nothing; only the bootstrap role is a member of the service roles
    assert pg.rows("SELECT 1 FROM pg_auth_members WHERE pg_get_userbyid(member) LIKE 'svc-%'") == []
    members = pg.rows(
        "SELECT DISTINCT pg_get_userbyid(member) FROM pg_auth_members WHERE pg_get_userbyid(roleid) LIKE 'svc-%'"
    )
    assert members == [(BOOTSTRAP,)]
    FIGURES["forbidden_statements_refused"] = refused


def test_databases_are_closed_to_public_and_owned_by_their_role(pg):
    rows = dict(
        (r[0], r[1:]) for r in pg.rows("SELECT datname, pg_get_userbyid(datdba), datacl::text FROM pg_database")
    )
    for svc in SERVICES:
        owner, acl = rows[svc]
        assert owner == role_name(svc)
        assert acl == f'{{"\\"{owner}\\"=CTc/\\"{owner}\\""}}', acl  # no "=...": nothing for PUBLIC
        schema = pg.rows(SCHEMA_SNAPSHOT, db=svc)
        assert (
            "public",
            "pg_database_owner",
            "{pg_database_owner=UC/pg_database_owner,=U/pg_database_owner}",
        ) in schema


def test_rerunning_the_bootstrap_changes_nothing(pg):
    before = snapshot(pg)
    t0 = time.perf_counter()
    proc = pg.psql(pg.script, user=BOOTSTRAP)
    FIGURES["second_run_s"] = time.perf_counter() - t0
    after = snapshot(pg)
    assert proc.stdout.strip() == ""
    assert after == before
    FIGURES["catalog_rows_compared"] = len(before)


def test_drift_is_repaired_and_dangerous_roles_stop_the_run(pg):
    svc = SERVICES[-1]
    role = role_name(svc)
    pg.psql(f'ALTER ROLE "{role}" CREATEDB CREATEROLE; GRANT ALL ON DATABASE "{svc}" TO PUBLIC')
    pg.psql(pg.script, user=BOOTSTRAP)
    assert pg.rows(f"SELECT rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = '{role}'") == [("f", "f")]
    assert pg.psql("SELECT 1", user=role_name(SERVICES[0]), db=svc, check=False).returncode != 0
    pg.psql(f'ALTER ROLE "{role}" SUPERUSER')
    try:
        proc = pg.psql(pg.script, user=BOOTSTRAP, check=False)
        assert proc.returncode != 0 and f"role {role} has SUPER: refusing" in proc.stderr, proc.stderr
    finally:
        pg.psql(f'ALTER ROLE "{role}" NOSUPERUSER')
    pg.psql(f'GRANT pg_read_all_data TO "{role}"')
    try:
        proc = pg.psql(pg.script, user=BOOTSTRAP, check=False)
        assert proc.returncode != 0 and f"role {role} is a member of other roles (pg_read_all_data)" in proc.stderr, (
            proc.stderr
        )
    finally:
        pg.psql(f'REVOKE pg_read_all_data FROM "{role}"')


GRANTS_ADMIN = "EXECUTE format('GRANT %I TO %I WITH ADMIN OPTION', roleName, session_user);"


def entra_stand_in(admin: str) -> str:
    return ENTRA_STAND_IN.replace("{admin}", admin)


def test_the_entra_render_runs_against_a_stand_in_for_the_azure_function():
    require_postgres()
    grants = [DatabaseGrant(s, f"00000000-0000-0000-0000-{i:012d}") for i, s in enumerate(SERVICES[:3])]
    script = bootstrap_sql(grants)  # principal="entra": the script the Job runs on Azure
    assert script.count("pgaadauth_create_principal_with_oid(") == len(grants)
    with PostgresNode() as node:
        node.psql(AZURE_LIKE + entra_stand_in(GRANTS_ADMIN))
        path = node.dir / "bootstrap.sql"  # as the Job runs it: psql --file
        path.write_text(script)
        path.chmod(0o644)
        node.psql(file=path, user=BOOTSTRAP)
        before = node.rows(SNAPSHOT)
        node.psql(script, user=BOOTSTRAP)  # the role exists now: the function is not called again
        assert node.rows(SNAPSHOT) == before
        roles = node.rows("SELECT rolname FROM pg_roles WHERE rolname LIKE 'svc-%' ORDER BY 1")
        assert roles == [(g.role,) for g in grants]
        for g in grants:
            assert node.psql("SELECT current_user", user=g.role, db=g.database).stdout.strip() == g.role


def test_a_role_created_by_another_role_stops_the_run_on_16():
    """PostgreSQL 16: without ADMIN OPTION on a role it did not create, a CREATEROLE
    administrator cannot make itself a member, so it cannot hand the database over. The
    bootstrap says so and stops before anything is half done (no database for that role)."""
    require_postgres()
    grant = DatabaseGrant(SERVICES[0], "00000000-0000-0000-0000-000000000001")
    with PostgresNode() as node:
        assert int(node.rows("SHOW server_version_num")[0][0]) >= 160000
        node.psql(AZURE_LIKE + entra_stand_in(""))
        proc = node.psql(bootstrap_sql([grant]), user=BOOTSTRAP, check=False)
        assert proc.returncode != 0
        assert f"role {grant.role} was created by another role and {BOOTSTRAP} has no ADMIN OPTION" in proc.stderr
        owners = node.rows(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{grant.database}'")
        assert (grant.role,) not in owners


def label_provider(node: PostgresNode) -> Path:
    """tests/tools/pgaadauth_label.c built against the pgserver wheel's server headers, in the
    node's directory (readable by the server's user)."""
    gcc = require_tool("gcc")
    found = bin_dir()
    assert found is not None
    include = subprocess.run(
        [str(found / "pg_config"), "--includedir-server"], capture_output=True, text=True, check=True
    ).stdout.strip()
    out = node.dir / "pgaadauth_label.so"
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-O2", f"-I{include}", "-o", str(out), str(ROOT / "tests/tools/pgaadauth_label.c")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    out.chmod(0o755)
    return out


def labels(node: PostgresNode) -> list[tuple[str, ...]]:
    return node.rows("SELECT objname, provider, label FROM pg_seclabels WHERE objtype = 'role' ORDER BY 1")


def test_a_role_mapped_to_another_identity_stops_the_run_and_a_recovery_stack_remaps_it():
    """The promoted geo-replica carries prod's roles, labelled (pgaadauth) with prod's identities.
    The normal bootstrap refuses such a role; a recovery stack's (``rebind``) re-labels it to its
    own identity, as the bootstrap role (CREATEROLE, ADMIN OPTION on the role), and the normal
    bootstrap then accepts the new mapping. PostgreSQL outside Azure has no pgaadauth label
    provider: tests/tools/pgaadauth_label.c stands in for it (labels on roles only)."""
    require_postgres()
    old = DatabaseGrant(SERVICES[0], "00000000-0000-0000-0000-000000000001")
    new = DatabaseGrant(SERVICES[0], "00000000-0000-0000-0000-0000000000ff")
    with PostgresNode() as node:
        provider = label_provider(node)
        node.psql(
            AZURE_LIKE
            + entra_stand_in(GRANTS_ADMIN)
            + f"\nALTER ROLE {BOOTSTRAP} SET session_preload_libraries = '{provider}';"
        )
        node.psql(bootstrap_sql([old]), user=BOOTSTRAP)
        # as prod's bootstrap left it on Azure: the role labelled with prod's identity
        node.psql(
            f"LOAD '{provider}';"
            f" SECURITY LABEL FOR pgaadauth ON ROLE \"{old.role}\" IS 'aadauth,oid={old.object_id},type=service'"
        )
        assert node.psql(bootstrap_sql([old]), user=BOOTSTRAP, check=False).returncode == 0  # its own: fine
        refused = node.psql(bootstrap_sql([new]), user=BOOTSTRAP, check=False)
        assert refused.returncode != 0
        assert f"role {old.role} is mapped to another Entra principal (aadauth,oid={old.object_id}" in refused.stderr
        assert labels(node) == [(f'"{old.role}"', "pgaadauth", f"aadauth,oid={old.object_id},type=service")]
        before = node.rows(SNAPSHOT)
        remap = node.psql(bootstrap_sql([new], rebind=True), user=BOOTSTRAP, check=False)
        assert remap.returncode == 0, remap.stderr
        assert f"WARNING:  role {old.role} was mapped to aadauth,oid={old.object_id}" in remap.stderr
        assert labels(node) == [(f'"{old.role}"', "pgaadauth", f"aadauth,oid={new.object_id},type=service")]
        assert node.rows(SNAPSHOT) == before  # the role, its database, its grants: unchanged
        # the stack's identity is the role's now: the normal run accepts it, and warns no more
        again = node.psql(bootstrap_sql([new]), user=BOOTSTRAP, check=False)
        assert again.returncode == 0 and "WARNING" not in again.stderr
        assert node.psql(bootstrap_sql([new], rebind=True), user=BOOTSTRAP).stderr.count("WARNING") == 0


def test_report(pg):
    """One line with the figures of this run (pytest -s shows it)."""
    assert FIGURES.get("catalog_rows_compared", 0) > 0
    print(
        f"\npostgres proof (PostgreSQL {toolchain.postgres_version()}, pgserver wheel): {len(SERVICES)} services; "
        + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in FIGURES.items())
    )
