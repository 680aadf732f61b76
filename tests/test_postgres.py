"""PostgreSQL flexible server: private, TLS-only, backed up, HA in prod, protected in prod."""

from __future__ import annotations

from pulumi.runtime import rpc


def server(stack) -> dict:
    return stack.inputs("dbforpostgresql:Server")


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


def test_entra_auth_alongside_a_secret_password(stack):
    raw = stack.one("dbforpostgresql:Server").inputs
    assert rpc.is_rpc_secret(raw["administratorLoginPassword"])
    auth = server(stack)["authConfig"]
    assert auth["activeDirectoryAuth"] == "Enabled"
    assert auth["passwordAuth"] == "Enabled"


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
    assert dbs == sorted(stack.settings.postgres.databases)
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
