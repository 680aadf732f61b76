"""PostgreSQL flexible server: private, TLS-only, backed up, HA in prod, protected in prod."""

from __future__ import annotations

import copy
import hashlib
import json

import k8s_schemas
import pytest
from pulumi.runtime import rpc

from components.render import database as render


def server(stack) -> dict:
    """The primary (prod also has read replicas and a DR replica: tests/test_postgres_replicas.py)."""
    return stack.inputs("dbforpostgresql:Server", "server")


def test_version_and_private_access_only(stack):
    s = server(stack)
    assert s["version"] == "16"
    assert s["network"]["publicNetworkAccess"] == "Disabled"
    assert s["network"]["delegatedSubnetResourceId"].endswith("/subnets/snet-postgres")
    assert s["network"]["privateDnsZoneArmResourceId"].endswith(".postgres.database.azure.com")


def test_backups_per_environment(planned):
    prod, dev = server(planned["prod"]), server(planned["dev"])
    assert dev["backup"] == {"backupRetentionDays": 7, "geoRedundantBackup": "Disabled"}
    assert prod["backup"] == {"backupRetentionDays": 35, "geoRedundantBackup": "Enabled"}


def test_zone_redundant_ha_in_prod(planned):
    prod = server(planned["prod"])
    assert prod["highAvailability"] == {"mode": "ZoneRedundant", "standbyAvailabilityZone": "2"}
    assert prod["availabilityZone"] == "1"
    assert server(planned["dev"])["highAvailability"]["mode"] == "Disabled"


def test_storage_autogrow_and_custom_maintenance(stack):
    s = server(stack)
    assert s["storage"]["autoGrow"] == "Enabled"
    mw = stack.settings.postgres.maintenance_window
    assert s["maintenanceWindow"] == {
        "customWindow": "Enabled",
        "dayOfWeek": mw.day_of_week,
        "startHour": mw.start_hour,
        "startMinute": mw.start_minute,
    }


def test_entra_auth_on_password_auth_off_in_prod(planned):
    for name, password in (("prod", "Disabled"), ("dev", "Enabled")):
        stack = planned[name]
        raw = stack.one("dbforpostgresql:Server", "server").inputs
        assert rpc.is_rpc_secret(raw["administratorLoginPassword"])  # break-glass only
        auth = server(stack)["authConfig"]
        assert auth["activeDirectoryAuth"] == "Enabled"
        assert auth["passwordAuth"] == password, name
        assert auth["tenantId"]


def mock_principal_id(resource_name: str) -> str:
    """What dryrun/mocks.py answers as a user-assigned identity's principal id."""
    d = hashlib.md5(resource_name.encode()).hexdigest()
    return f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:32]}"


def identities(stack) -> dict[str, dict]:
    return {r.inputs["resourceName"]: r.inputs for r in stack.of_type("managedidentity:UserAssignedIdentity")}


def test_entra_administrators_are_the_admin_group_and_the_bootstrap_identity(stack):
    group = stack.settings.postgres.entra_admin_group
    admins = {
        r.name: stack.inputs("AdministratorsMicrosoftEntra", r.name)
        for r in stack.of_type("AdministratorsMicrosoftEntra")
    }
    assert set(admins) == {"entra-admin-group", "entra-admin-bootstrap"}
    assert admins["entra-admin-group"]["objectId"] == group.object_id
    assert admins["entra-admin-group"]["principalName"] == group.display_name
    assert admins["entra-admin-group"]["principalType"] == "group"
    login = stack.settings.name("id", "pg-bootstrap")
    assert login in identities(stack)
    boot = admins["entra-admin-bootstrap"]
    assert boot["principalType"] == "servicePrincipal"
    assert boot["principalName"] == login
    assert boot["objectId"] == mock_principal_id(login)
    server_name = server(stack)["serverName"]
    assert {a["serverName"] for a in admins.values()} == {server_name}
    # one server operation at a time: the admins wait for the TLS parameters, then each other
    assert any(
        d.endswith("::ssl-min-protocol-version")
        for d in stack.one("AdministratorsMicrosoftEntra", "entra-admin-group").dependencies
    )
    assert any(
        d.endswith("::entra-admin-group")
        for d in stack.one("AdministratorsMicrosoftEntra", "entra-admin-bootstrap").dependencies
    )


def bootstrap_manifests(stack) -> dict[str, dict]:
    return {
        m["kind"]: m
        for m in k8s_schemas.recorded_manifests(stack)
        if m["metadata"].get("namespace") == render.NAMESPACE or m["metadata"]["name"] == render.NAMESPACE
        if m["kind"] != "NetworkPolicy"
    }


def test_bootstrap_objects_validate_against_the_schemas(stack):
    objects = [
        m
        for m in k8s_schemas.recorded_manifests(stack)
        if render.NAMESPACE in (m["metadata"].get("namespace"), m["metadata"]["name"])
    ]
    assert sorted(m["kind"] for m in objects) == [
        "ConfigMap",
        "Job",
        "Namespace",
        "NetworkPolicy",
        "NetworkPolicy",
        "ServiceAccount",
    ]
    for m in objects:
        assert k8s_schemas.errors(m, stack.settings.aks.kubernetes_version) == [], m["kind"]


@pytest.mark.parametrize(
    "path,value",
    [
        (("spec", "template", "spec", "containers", 0, "securityContext", "runAsNonRoot"), "yes"),
        (("spec", "template", "spec", "serviceAcountName"), "postgres-bootstrap"),
        (("spec", "backofLimit"), 3),
    ],
)
def test_schema_validation_catches_job_mistakes(planned, path, value):
    stack = planned["prod"]
    job = copy.deepcopy(bootstrap_manifests(stack)["Job"])
    node = job
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    assert k8s_schemas.errors(job, stack.settings.aks.kubernetes_version) != []


def test_bootstrap_namespace_is_pod_security_restricted_and_the_job_complies(stack):
    objs = bootstrap_manifests(stack)
    labels = objs["Namespace"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = objs["Job"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["initContainers"] + pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True, c["name"]
        assert "@" not in c["image"] and ":" in c["image"] and not c["image"].endswith(":latest")
    assert not any(v.get("hostPath") for v in pod["volumes"])


def test_bootstrap_job_runs_as_the_federated_bootstrap_identity_with_a_token(stack):
    objs = bootstrap_manifests(stack)
    sa, job = objs["ServiceAccount"], objs["Job"]
    login = stack.settings.name("id", "pg-bootstrap")
    feds = {r.inputs["subject"]: r.inputs for r in stack.of_type("FederatedIdentityCredential")}
    fed = feds[f"system:serviceaccount:{render.NAMESPACE}:{render.SERVICE_ACCOUNT}"]
    assert fed["resourceName"] == login
    assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"] == mock_principal_id(login)
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    token = pod["spec"]["initContainers"][0]["command"][-1]
    assert "--federated-token" in token and "https://ossrdbms-aad.database.windows.net" in token
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["PGUSER"] == login and env["PGDATABASE"] == "postgres"
    assert env["PGHOST"].endswith(".postgres.database.azure.com")
    assert env["PGSSLMODE"] == "verify-full"
    assert "PGPASSWORD" not in env  # the token is read from a memory volume at run time
    deps = stack.one("batch/v1:Job").dependencies
    for needed in ("::entra-admin-bootstrap", "::bootstrap-federation", "::bootstrap-sql", "::service-account"):
        assert any(d.endswith(needed) for d in deps), needed
    for db in stack.settings.databases:
        assert any(d.endswith(f"::db-{db}") for d in deps), db


def test_bootstrap_sql_maps_each_service_identity_to_its_database(stack):
    cm = bootstrap_manifests(stack)["ConfigMap"]
    sql = cm["data"]["bootstrap.sql"]
    dbs = stack.settings.databases
    ids = identities(stack)
    expected = render.bootstrap_sql(
        [render.DatabaseGrant(db, mock_principal_id(stack.settings.name("id", db))) for db in dbs]
    )
    assert sql == expected
    for db in dbs:
        assert stack.settings.name("id", db) in ids
        assert f"'{render.role_name(db)}', '{mock_principal_id(stack.settings.name('id', db))}', 'service'" in sql
    assert bootstrap_manifests(stack)["Job"]["metadata"]["name"] == render.job_name(sql)
    grants = json.loads(cm["metadata"]["annotations"][render.GRANTS_ANNOTATION])
    assert grants == [
        {
            "service": db,
            "database": db,
            "role": f"svc-{db}",
            "objectId": mock_principal_id(stack.settings.name("id", db)),
        }
        for db in sorted(dbs)
    ]


def test_bootstrap_network_policy_denies_all_but_dns_postgres_and_entra(stack):
    pols = {
        m["metadata"]["name"]: m["spec"]
        for m in k8s_schemas.recorded_manifests(stack)
        if m["kind"] == "NetworkPolicy" and m["metadata"]["namespace"] == render.NAMESPACE
    }
    assert pols["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    egress = pols["allow-bootstrap-egress"]["egress"]
    pg_rule = [r for r in egress if r["ports"] == [{"protocol": "TCP", "port": 5432}]]
    assert pg_rule[0]["to"] == [{"ipBlock": {"cidr": stack.settings.network.postgres_subnet}}]
    https = [r for r in egress if r["ports"] == [{"protocol": "TCP", "port": 443}]][0]
    assert "10.0.0.0/8" in https["to"][0]["ipBlock"]["except"]
    assert "ingress" not in pols["allow-bootstrap-egress"]


def secret_readers(stack, secret: str) -> set[str]:
    """Principals holding a Key Vault data-plane role whose scope covers the secret."""
    readers = set()
    for r in stack.of_type("authorization:RoleAssignment"):
        a = stack.inputs("authorization:RoleAssignment", r.name)
        role = a["roleDefinitionId"].rsplit("/", 1)[-1]
        if role not in ("4633458b-17de-408a-b874-0445c86b69e6", "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"):
            continue
        scope = a["scope"]
        if "/vaults/" in scope and (scope.endswith(f"/secrets/{secret}") or "/secrets/" not in scope):
            readers.add(r.name)
    return readers


def test_break_glass_password_grant_is_scoped_to_the_admin_group_and_that_secret(stack):
    grant = stack.inputs("authorization:RoleAssignment", "admin-group-reads-break-glass-password")
    assert grant["principalId"] == stack.settings.postgres.entra_admin_group.object_id
    assert grant["principalType"] == "Group"
    assert grant["scope"].endswith("/secrets/postgres-admin")
    assert grant["roleDefinitionId"].endswith("/4633458b-17de-408a-b874-0445c86b69e6")  # Secrets User


def test_only_the_deployer_and_the_admin_group_can_read_the_break_glass_password(stack):
    assert secret_readers(stack, "postgres-admin") == {
        "deployer-secrets-officer",
        "admin-group-reads-break-glass-password",
    }


def test_tls_enforced_by_explicit_parameters(stack):
    params = {
        r.name: stack.inputs("dbforpostgresql:Configuration", r.name)
        for r in stack.of_type("dbforpostgresql:Configuration")
    }
    by_name = {p["configurationName"]: p for p in params.values()}
    assert by_name["require_secure_transport"]["value"] == "on"
    assert by_name["ssl_min_protocol_version"]["value"] in ("TLSv1.2", "TLSv1.3")
    assert all(p["source"] == "user-override" for p in by_name.values())
    # Azure applies one parameter at a time: the second waits for the first.
    second = stack.one("dbforpostgresql:Configuration", "ssl-min-protocol-version")
    assert any(d.endswith("::require-secure-transport") for d in second.dependencies)


def test_one_database_per_service(stack):
    dbs = sorted(
        stack.inputs("dbforpostgresql:Database", r.name)["databaseName"]
        for r in stack.of_type("dbforpostgresql:Database")
    )
    assert dbs == sorted(stack.settings.databases)
    admins = [r.urn for r in stack.of_type("AdministratorsMicrosoftEntra") if r.name == "entra-admin-group"]
    for r in stack.of_type("dbforpostgresql:Database"):
        assert set(admins) <= set(r.dependencies)
    for r in stack.of_type("dbforpostgresql:Database"):
        assert r.inputs["charset"] == "UTF8"


def test_stateful_resources_protected_in_prod_only(planned):
    for stack, expected in (("prod", True), ("dev", False)):
        p = planned[stack]
        for suffix in (
            "dbforpostgresql:Server",
            "dbforpostgresql:Database",
            "keyvault:Vault",
            "operationalinsights:Workspace",
            "resources:ResourceGroup",
        ):
            for r in p.of_type(suffix):
                assert r.protect is expected, f"{stack}: {r.type} {r.name} protect={r.protect}"


# ------------------------------------------------------------------ the SQL render itself
def test_render_refuses_unsafe_names_missing_ids_and_duplicates():
    with pytest.raises(ValueError, match="not a safe PostgreSQL name"):
        render.bootstrap_sql(
            [render.DatabaseGrant('x"; DROP DATABASE postgres; --', "0" * 8 + "-0000-0000-0000-" + "0" * 12)]
        )
    with pytest.raises(ValueError, match="needs the identity's object id"):
        render.bootstrap_sql([render.DatabaseGrant("bloodbank")])
    with pytest.raises(ValueError, match="is not a UUID"):
        render.bootstrap_sql([render.DatabaseGrant("bloodbank", "bloodbank'); DROP ROLE x; --")])
    with pytest.raises(ValueError, match="listed twice"):
        render.bootstrap_sql([render.DatabaseGrant("a-b"), render.DatabaseGrant("a-b")], principal="local")


def test_only_the_principal_statement_differs_between_azure_and_the_test():
    oid = "0b6f5b7e-1111-2222-3333-444455556666"
    azure = render.bootstrap_sql([render.DatabaseGrant("bloodbank", oid)]).splitlines()
    local = render.bootstrap_sql([render.DatabaseGrant("bloodbank", oid)], principal="local").splitlines()
    entra = render.entra_principal("svc-bloodbank", oid).splitlines()
    plain = render.local_principal("svc-bloodbank").splitlines()
    start = azure.index(entra[0])
    assert azure[start : start + len(entra)] == entra
    assert local[start : start + len(plain)] == plain
    rest_azure = azure[:start] + azure[start + len(entra) :]
    rest_local = local[:start] + local[start + len(plain) :]
    assert [line for line in rest_azure if not line.startswith("-- Principals:")] == [
        line for line in rest_local if not line.startswith("-- Principals:")
    ]
    assert sum("pgaadauth" in line for line in local) == 0
