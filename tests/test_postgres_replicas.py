"""The data tier at production shape (components/postgres_replicas.py): prod's read replica behind
the virtual endpoint pair and its DR geo-replica in a peered VNet, validated settings, the services'
database contract, and the three replica policies tripped through the analyzer protocol."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
from conftest import ROOT, unwrap
from test_settings import errors, mutate

from components.render import artefacts, database_contract
from components.settings import rules

PG = "dbforpostgresql:Server"


def servers(stack) -> dict[str, dict]:
    return {r.name: unwrap(r.inputs) for r in stack.of_type(PG)}


def params_of(stack, server_name: str) -> dict[str, str]:
    return {
        p["configurationName"]: p["value"]
        for p in (unwrap(r.inputs) for r in stack.of_type("dbforpostgresql:Configuration"))
        if p["serverName"] == server_name
    }


# ------------------------------------------------------------------ the plan
def test_prod_has_a_replica_a_virtual_endpoint_and_a_dr_replica_in_the_paired_region(planned):
    prod = planned["prod"]
    s = servers(prod)
    assert set(s) == {"server", "replica-1", "dr-replica"}
    primary, replica, dr = s["server"], s["replica-1"], s["dr-replica"]
    assert primary["tags"]["disasterRecoveryRegion"] == "northeurope"
    for r, location, role in ((replica, "westeurope", "AsyncReplica"), (dr, "northeurope", "GeoAsyncReplica")):
        assert r["createMode"] == "Replica"
        assert r["replica"] == {"role": role}
        assert r["location"] == location
        assert r["sourceServerResourceId"].endswith("/" + primary["serverName"])
        # parity: the same SKU, tier and storage, autogrow on; no backup or HA block (unsupported)
        assert r["sku"] == primary["sku"]
        assert r["storage"] == primary["storage"] == {"storageSizeGB": 256, "autoGrow": "Enabled"}
        assert "backup" not in r and "highAvailability" not in r and "administratorLoginPassword" not in r
        assert r["authConfig"] == primary["authConfig"]
        assert r["network"]["publicNetworkAccess"] == "Disabled"
        assert r["network"]["privateDnsZoneArmResourceId"] == primary["network"]["privateDnsZoneArmResourceId"]
    assert replica["network"]["delegatedSubnetResourceId"] == primary["network"]["delegatedSubnetResourceId"]
    assert replica["availabilityZone"] == "3"  # neither the primary's zone (1) nor its standby's (2)
    assert dr["network"]["delegatedSubnetResourceId"].endswith("/subnets/snet-postgres-dr")
    assert dr["resourceGroupName"] == "ebb-prod-dr-rg"
    # the replicas carry the primary's parameters: TLS, audit, shared memory
    mine = params_of(prod, primary["serverName"])
    assert mine["max_connections"] == "859"
    for r in (replica, dr):
        assert params_of(prod, r["serverName"]) == mine
    ve = prod.inputs("dbforpostgresql:VirtualEndpoint")
    assert ve["endpointType"] == "ReadWrite"
    assert ve["serverName"] == primary["serverName"] and ve["members"] == [replica["serverName"]]
    assert ve["virtualEndpointName"] == "ebb-prod-pg"


def test_replicas_are_protected_locked_and_send_their_logs(planned):
    prod = planned["prod"]
    for r in prod.of_type(PG):
        assert r.protect, r.name
    locked = {r.name for r in prod.of_type("ManagementLockByScope")}
    assert {"lock-postgres-replica-1", "lock-postgres-dr-replica"} <= locked
    for name in ("replica-1", "dr-replica"):
        urn = prod.one(PG, name).urn
        assert urn in prod.one("ManagementLockByScope", f"lock-postgres-{name}").dependencies
        assert urn in prod.one("monitor:DiagnosticSetting", f"diag-postgres-{name}").dependencies
    assert prod.one("resources:ResourceGroup", "dr-rg").protect


def test_one_operation_at_a_time_on_the_primary(planned):
    """Creating a replica puts the primary into an updating state: the replica waits for the
    primary's last operations (its Entra administrator, after the parameters) and its databases,
    the virtual endpoint for the replica, the DR replica for both and for its network paths."""
    prod = planned["prod"]
    urn = {r.name: r.urn for r in prod.result.registrations}
    first = prod.one(PG, "replica-1").dependencies
    assert {urn["entra-admin-group"], urn["db-bloodbank"], urn["db-candystore"]} <= set(first)
    assert urn["ssl-min-protocol-version"] in prod.one("AdministratorsMicrosoftEntra", "entra-admin-group").dependencies
    assert urn["replica-1-ssl-min-protocol-version"] in prod.one("VirtualEndpoint").dependencies
    dr = prod.one(PG, "dr-replica").dependencies
    assert urn["virtual-endpoint"] in dr
    assert {urn["peering-primary-to-dr"], urn["peering-dr-to-primary"], urn["dns-postgres-dr-link"]} <= set(dr)


def test_dr_network_is_small_peered_both_ways_and_resolves_the_private_zone(planned):
    prod = planned["prod"]
    vnet = prod.inputs("network:VirtualNetwork", "dr-vnet")
    assert vnet["location"] == "northeurope"
    assert vnet["addressSpace"] == {"addressPrefixes": ["10.51.0.0/24"]}
    (subnet,) = vnet["subnets"]
    assert subnet["addressPrefix"] == "10.51.0.0/26"
    assert subnet["delegations"][0]["serviceName"] == "Microsoft.DBforPostgreSQL/flexibleServers"
    peerings = {r.name: unwrap(r.inputs) for r in prod.of_type("network:VirtualNetworkPeering")}
    assert peerings["peering-primary-to-dr"]["virtualNetworkName"] == "ebb-prod-vnet"
    assert peerings["peering-dr-to-primary"]["virtualNetworkName"] == "ebb-prod-dr-vnet"
    for p in peerings.values():
        assert p["allowVirtualNetworkAccess"] is True and p["useRemoteGateways"] is False
    link = prod.inputs("privatedns:VirtualNetworkLink", "dns-postgres-dr-link")
    assert link["privateZoneName"] == "ebb-prod-pg.private.postgres.database.azure.com"
    assert link["virtualNetwork"]["id"].endswith("/ebb-prod-dr-vnet")
    # 5432 both ways between the two PostgreSQL subnets, nothing else from a VNet
    dr_rules = {r["name"]: r for r in prod.inputs("NetworkSecurityGroup", "dr-nsg-postgres")["securityRules"]}
    assert dr_rules["allow-postgres-from-primary"]["sourceAddressPrefix"] == "10.50.16.0/24"
    assert dr_rules["allow-postgres-from-primary"]["destinationPortRange"] == "5432"
    assert dr_rules["deny-vnet-inbound"]["access"] == "Deny"
    primary_rules = {r["name"]: r for r in prod.inputs("NetworkSecurityGroup", "nsg-postgres")["securityRules"]}
    assert primary_rules["allow-postgres-from-dr-replica"]["sourceAddressPrefix"] == "10.51.0.0/26"
    assert primary_rules["allow-postgres-from-dr-replica"]["priority"] < primary_rules["deny-vnet-inbound"]["priority"]


def test_dev_has_no_replica_no_endpoint_no_dr(planned):
    dev = planned["dev"]
    assert [r.name for r in dev.of_type(PG)] == ["server"]
    assert dev.of_type("VirtualEndpoint") == [] and dev.of_type("VirtualNetworkPeering") == []
    assert "disasterRecoveryRegion" not in servers(dev)["server"]["tags"]
    rules_ = {r["name"] for r in dev.inputs("NetworkSecurityGroup", "nsg-postgres")["securityRules"]}
    assert "allow-postgres-from-dr-replica" not in rules_


# ------------------------------------------------------------------ the services' database contract
def test_each_service_contract_names_the_writer_and_reader_of_the_plan(planned):
    prod = planned["prod"]
    outputs = unwrap(prod.doc["outputs"])
    contracts = database_contract.database_contracts(prod.settings)
    assert set(contracts) == set(prod.settings.databases) == {"bloodbank", "candystore"}
    files = artefacts(prod.settings)  # what `make plan` writes
    for svc, c in contracts.items():
        assert json.loads(files[f"postgres/clients/{svc}.json"]) == c
        assert c["role"] == f"svc-{svc}" and c["database"] == svc
        assert c["writer"]["host"] == outputs["postgresWriterHost"] == "ebb-prod-pg.writer.postgres.database.azure.com"
        assert c["reader"]["host"] == outputs["postgresReaderHost"] == "ebb-prod-pg.reader.postgres.database.azure.com"
        assert c["writer"]["targetSessionAttrs"] == "read-write"
        assert c["reader"]["targetSessionAttrs"] == "read-only"
        assert c["tls"]["sslmode"] == "verify-full"
        assert c["disasterRecovery"]["region"] == "northeurope"
    for c in database_contract.database_contracts(planned["dev"].settings).values():
        assert c["writer"]["host"] is None and c["writer"]["hostFrom"] == "stack output postgresFqdn"
        assert c["reader"] is None


# ------------------------------------------------------------------ validation, one line per problem
@pytest.mark.parametrize(
    "stack,key,value,line",
    [
        (
            "dev",
            "postgres.readReplicas",
            {"count": 1},
            "Pulumi.dev.yaml: event-backbone:postgres.readReplicas.count needs postgres.skuTier GeneralPurpose or"
            " MemoryOptimized (Burstable servers cannot have read replicas) (got 1)",
        ),
        (
            "prod",
            "postgres.readReplicas.skuName",
            "Standard_D2ds_v5",
            "Pulumi.prod.yaml: event-backbone:postgres.readReplicas.skuName must equal postgres.skuName"
            " (Standard_D4ds_v5): promotion to primary needs the same compute (got 'Standard_D2ds_v5')",
        ),
        (
            "prod",
            "postgres.readReplicas.storageSizeGb",
            512,
            "Pulumi.prod.yaml: event-backbone:postgres.readReplicas.storageSizeGb must equal postgres.storageSizeGb"
            " (256): promotion to primary needs the same storage (got 512)",
        ),
        (
            "prod",
            "postgres.readReplicas.storageAutoGrow",
            False,
            "Pulumi.prod.yaml: event-backbone:postgres.readReplicas.storageAutoGrow must be true: the primary grows"
            " its storage automatically, and a replica of a primary with autogrow must have it too (got false)",
        ),
        (
            "prod",
            "postgres.readReplicas.parameters",
            {"maxConnections": 500},
            "Pulumi.prod.yaml: event-backbone:postgres.readReplicas.parameters.maxConnections must be at least"
            " postgres.parameters.maxConnections (859): a hot standby with a smaller max_connections stops"
            " replaying WAL (got 500)",
        ),
        (
            "prod",
            "postgres.disasterRecovery.parameters",
            {"maxWalSenders": 20},
            "Pulumi.prod.yaml: event-backbone:postgres.disasterRecovery.parameters.maxWalSenders needs"
            " postgres.parameters.maxWalSenders set too: a replica's max_wal_senders must be at least the"
            " primary's, which is otherwise Azure's SKU default and unknown here (got 20)",
        ),
        (
            "prod",
            "postgres.disasterRecovery.region",
            "westeurope",
            "Pulumi.prod.yaml: event-backbone:postgres.disasterRecovery.region must be another region than location"
            " (westeurope) (got 'westeurope')",
        ),
        (
            "prod",
            "postgres.disasterRecovery.region",
            "eastus",
            "Pulumi.prod.yaml: event-backbone:postgres.disasterRecovery.region must be the Azure pair of location"
            " westeurope (northeurope) (got 'eastus')",
        ),
        (
            "prod",
            "postgres.disasterRecovery",
            {"region": "northeurope", "addressSpace": "10.50.0.0/24", "postgresSubnet": "10.50.0.0/26"},
            "Pulumi.prod.yaml: event-backbone:postgres.disasterRecovery.addressSpace must not overlap"
            " network.addressSpace 10.50.0.0/16 (the two VNets are peered) (got '10.50.0.0/24')",
        ),
        (
            "prod",
            "postgres.disasterRecovery.postgresSubnet",
            "10.52.0.0/26",
            "Pulumi.prod.yaml: event-backbone:postgres.disasterRecovery.postgresSubnet must lie inside"
            " postgres.disasterRecovery.addressSpace 10.51.0.0/24 (got '10.52.0.0/26')",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 45 else None,
)
def test_replica_settings_are_validated_before_anything_exists(stack, key, value, line):
    assert errors(stack, mutate(stack, key, value)) == [line]


def test_replica_settings_without_a_count_are_not_dropped_silently():
    text = mutate("prod", "postgres.readReplicas", {"count": 0, "availabilityZones": ["3"]})
    assert errors("prod", text) == [
        "Pulumi.prod.yaml: event-backbone:postgres.readReplicas.count must be at least 1 when other"
        " postgres.readReplicas settings are given (they would otherwise be ignored) (got 0)"
    ]


def test_region_pairs_are_symmetric_where_both_are_listed():
    for a, b in rules.REGION_PAIRS.items():
        if b in rules.REGION_PAIRS:
            assert rules.REGION_PAIRS[b] == a, (a, b)


# ------------------------------------------------------------------ the policies, through the protocol
def _mandatory(registrations, stack: str = "prod") -> list:
    from dryrun.policy_host import run_pack

    findings = run_pack(ROOT / "policies", ROOT / "policies" / f"config.{stack}.json", registrations)
    return [f for f in findings if f.enforcement_level == "mandatory"]


def _change(planned, name: str, edit) -> list:
    regs = []
    for r in planned["prod"].result.registrations:
        if r.name == name:
            inputs = copy.deepcopy(r.inputs)
            changed = edit(inputs)
            if changed is None:
                continue
            r = dataclasses.replace(r, inputs=changed)
        regs.append(r)
    return regs


def _set(path: str, value):
    def edit(inputs):
        node = inputs
        *parents, last = path.split(".")
        for part in parents:
            node = node[part]
        if value is ...:
            node.pop(last)
        else:
            node[last] = value
        return inputs

    return edit


def test_the_real_plans_pass_the_replica_policies(planned):
    for stack in ("dev", "prod"):
        assert _mandatory(planned[stack].result.registrations, stack) == []


def test_a_replica_with_weaker_tls_than_its_primary_is_refused(planned):
    found = _mandatory(_change(planned, "replica-1-require-secure-transport", _set("value", "off")))
    # the general TLS policy refuses 'off' too; parity names the replica and the primary's value
    assert {f.policy for f in found} == {"postgres-replica-parity", "postgres-tls-enforced"}
    (f,) = [f for f in found if f.policy == "postgres-replica-parity"]
    assert "'replica-1'" in f.message and "require_secure_transport" in f.message and "'off'" in f.message
    # a replica still at TLSv1.2 when the primary went to TLSv1.3: only parity sees it
    found = _mandatory(_change(planned, "ssl-min-protocol-version", _set("value", "TLSv1.3")))
    assert sorted((f.policy, "'TLSv1.2'" in f.message) for f in found) == [("postgres-replica-parity", True)] * 2
    found = _mandatory(_change(planned, "dr-replica-ssl-min-protocol-version", lambda i: None))
    assert sorted((f.policy, "ssl_min_protocol_version" in f.message) for f in found) == [
        ("postgres-replica-parity", True),
        ("postgres-tls-enforced", True),
    ]


def test_a_public_replica_is_refused(planned):
    found = _mandatory(_change(planned, "dr-replica", _set("network.publicNetworkAccess", "Enabled")))
    assert "postgres-replica-parity" in {f.policy for f in found}
    assert any("publicNetworkAccess" in f.message and "'dr-replica'" in f.message for f in found)
    found = _mandatory(_change(planned, "replica-1", _set("network.privateDnsZoneArmResourceId", "/other/zone")))
    assert [f.policy for f in found] == ["postgres-replica-parity"]


def test_prod_replicas_without_a_virtual_endpoint_are_refused(planned):
    found = _mandatory(_change(planned, "virtual-endpoint", lambda i: None))
    assert [f.policy for f in found] == ["postgres-virtual-endpoint"]
    assert "VirtualEndpoint" in found[0].message and "Fix:" in found[0].message
    # an endpoint whose member is not a replica does not count
    found = _mandatory(_change(planned, "virtual-endpoint", _set("members", ["somewhere-else"])))
    assert [f.policy for f in found] == ["postgres-virtual-endpoint"]


def test_a_configured_dr_region_without_its_geo_replica_is_refused(planned):
    regs = [r for r in planned["prod"].result.registrations if not r.name.startswith("dr-replica")]
    found = _mandatory(regs)
    assert "postgres-dr-replica" in {f.policy for f in found}
    assert any("geo-replica in northeurope" in f.message for f in found)
    # prod requires a DR region: a primary without the setting (its tag) is refused too
    found = _mandatory(_change(planned, "server", _set("tags.disasterRecoveryRegion", ...)))
    assert [f.policy for f in found] == ["postgres-dr-replica"]
    assert "postgres.disasterRecovery" in found[0].message
