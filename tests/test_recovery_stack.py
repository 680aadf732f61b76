"""prod's recovery stack (Pulumi.prod-dr.yaml, components/recovery.py): the platform rebuilt in
prod's DR region around prod's promoted geo-replica. Planned here from prod's own planned outputs
(the StackReference the real CLI resolves from the backend), checked against both stack files,
validated, and gated by the policy pack."""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import json

import k8s_schemas
import pytest
import yaml
from conftest import ROOT, Planned, unwrap
from test_access import check, matrix_of, stack_services
from test_settings import errors, mutate
from test_stack_files import plan

from dryrun.runner import run_stack

REF = "organization/event-backbone/prod"
PG = "dbforpostgresql:"


@pytest.fixture(scope="module")
def recovery(planned, tmp_path_factory) -> Planned:
    refs = {REF: planned["prod"].result.outputs}
    return Planned(run_stack("prod-dr", references=refs), tmp_path_factory.mktemp("build") / "prod-dr")


@pytest.fixture(scope="module")
def dr(planned) -> dict:
    """prod's disasterRecovery output: what the recovery stack reads."""
    return unwrap(planned["prod"].result.outputs["disasterRecovery"])


def config(stack: str) -> dict:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]


# ------------------------------------------------------------------ the plan
def test_no_server_is_created_and_prods_promoted_geo_replica_is_the_one_configured(recovery, planned, dr):
    types = {r.type for r in recovery.result.registrations}
    for absent in ("Server", "Database", "VirtualEndpoint"):
        assert f"azure-native:dbforpostgresql:{absent}" not in types
    pg = [r for r in recovery.result.registrations if PG in r.type]
    assert pg, "nothing is set on the promoted server"
    for r in pg:
        i = unwrap(r.inputs)
        assert (i["resourceGroupName"], i["serverName"]) == (dr["resourceGroupName"], dr["serverName"]), r.name
    # the promoted server gets what prod set on its geo-replica: TLS, audit and shared memory
    mine = {
        i["configurationName"]: i["value"]
        for i in (unwrap(r.inputs) for r in recovery.of_type("dbforpostgresql:Configuration"))
    }
    prods = {
        i["configurationName"]: i["value"]
        for i in (unwrap(r.inputs) for r in planned["prod"].of_type("dbforpostgresql:Configuration"))
        if i["serverName"] == dr["serverName"]
    }
    assert mine == prods and mine["require_secure_transport"] == "on"
    # nothing this stack sets there is undone when it is destroyed (its own bootstrap identity's
    # administrator goes with the identity)
    for r in pg + recovery.of_type("security:AdvancedThreatProtection"):
        assert r.retain_on_delete is ("RecoveredPostgres" in (r.parent or "")), r.name
    assert recovery.of_type("security:AdvancedThreatProtection")[0].inputs["resourceId"] == dr["serverId"]
    # the stack read prod's outputs through a StackReference (what the CLI resolves from the backend)
    assert ("pulumi:pulumi:StackReference", {"name": REF}) in recovery.result.invokes
    assert recovery.result.outputs["postgresFqdn"] == dr["fqdn"]


def test_everything_else_is_its_own_in_the_dr_region(recovery, dr):
    s = recovery.settings
    assert s.location == dr["region"] == "northeurope"
    locations = {
        unwrap(r.inputs).get("location")
        for r in recovery.result.registrations
        if r.type.startswith("azure-native:") and unwrap(r.inputs).get("location")
    }
    assert locations <= {"northeurope", "global", "Global"}, locations
    # what it touches outside its own resource group: the promoted server, the DR VNet's side of
    # the peering (ebb-prod-dr-rg, in this region) and a link on prod's private DNS zone (global)
    outside = sorted(
        (r.type.split(":")[-1], r.name)
        for r in recovery.result.registrations
        if isinstance(unwrap(r.inputs).get("resourceGroupName"), str)
        and not unwrap(r.inputs)["resourceGroupName"].startswith(f"{s.name_prefix}-")
    )
    pg = sorted((r.type.split(":")[-1], r.name) for r in recovery.result.registrations if PG in r.type)
    assert outside == sorted(
        pg + [("VirtualNetworkPeering", "peering-from-dr"), ("VirtualNetworkLink", "dns-replaced-postgres-link")]
    )
    # and no name of prod's: its own resource group, cluster, vault
    assert recovery.result.outputs["resourceGroupName"] == "ebbdr-prod-rg"
    assert recovery.result.outputs["aksClusterName"].startswith("ebbdr-prod-")


def test_the_path_to_the_promoted_server_is_peered_resolved_and_allowed_ahead_of_time(recovery, planned, dr):
    s = recovery.settings
    peer = {r.name: unwrap(r.inputs) for r in recovery.of_type("network:VirtualNetworkPeering")}
    assert peer["peering-to-dr"]["remoteVirtualNetwork"]["id"] == dr["virtualNetworkId"]
    assert peer["peering-from-dr"]["virtualNetworkName"] == dr["virtualNetworkName"]
    assert all(p["allowForwardedTraffic"] is False and p["useRemoteGateways"] is False for p in peer.values())
    link = recovery.inputs("privatedns:VirtualNetworkLink", "dns-replaced-postgres-link")
    assert (link["resourceGroupName"], link["privateZoneName"]) == (
        dr["privateDnsZoneResourceGroupName"],
        dr["privateDnsZoneName"],
    )
    # prod's DR subnet lets 5432 in from this stack's cluster subnet, and from nothing else new
    nsg = planned["prod"].inputs("network:NetworkSecurityGroup", "dr-nsg-postgres")
    (rule,) = [r for r in nsg["securityRules"] if r["name"] == "allow-postgres-from-recovery-stack"]
    assert (rule["sourceAddressPrefix"], rule["destinationPortRange"]) == (s.network.aks_subnet, "5432")
    assert rule["destinationAddressPrefix"] == dr["postgresSubnet"]
    # the pods' egress to PostgreSQL goes to the promoted server's subnet, not this stack's own
    cidrs = set()
    for r in recovery.of_type("NetworkPolicy"):
        for e in unwrap(r.inputs).get("spec", {}).get("egress", []):
            if any(p.get("port") == 5432 for p in e.get("ports", [])):
                cidrs |= {t["ipBlock"]["cidr"] for t in e.get("to", []) if "ipBlock" in t}
    assert cidrs == {dr["postgresSubnet"]}


def test_the_bootstrap_remaps_each_services_role_to_this_stacks_identity(recovery, dr):
    cm = recovery.inputs("ConfigMap", "bootstrap-sql")
    sql = next(iter(cm["data"].values()))
    grants = json.loads(cm["metadata"]["annotations"]["event-backbone.io/database-grants"])
    assert {g["database"] for g in grants} == set(recovery.settings.databases) == {"bloodbank", "candystore"}
    for g in grants:
        assert f"aadauth,oid={g['objectId'].lower()},type=service" in sql
    assert sql.count("SECURITY LABEL FOR pgaadauth") == len(grants)
    assert "mapped to another Entra principal" not in sql
    admin = recovery.inputs("dbforpostgresql:AdministratorsMicrosoftEntra", "entra-admin-bootstrap")
    assert admin["serverName"] == dr["serverName"]
    job = recovery.inputs("Job", "bootstrap-job")
    env = {e["name"]: e.get("value") for c in job["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    assert dr["fqdn"] in json.dumps(env) or dr["fqdn"] in json.dumps(job)


def test_each_service_still_owns_only_its_database_and_reaches_only_its_things(recovery):
    """The access matrix of the recovery plan: each service identity owns its database (re-mapped
    on the promoted server) and touches nothing of another service's."""
    assert check(recovery, stack_services("prod-dr")) == []
    rows = {r["identity"]: r for r in matrix_of(recovery)["identities"] if r["kind"] == "service"}
    for svc in recovery.settings.databases:
        assert any(f"owns {svc} " in d for d in rows[f"service {svc}"]["database"]), rows


# ------------------------------------------------------------------ the two stack files in step
# What the recovery stack may say differently from prod; everything else must be prod's (a
# service, a broker or an alert setting added to prod and not here would be missing after a failover).
DIFFERENT = {
    "azure-native:location",
    "event-backbone:location",
    "event-backbone:namePrefix",
    "event-backbone:tags",
    "event-backbone:network",
    "event-backbone:edge",
    "event-backbone:postgres",
    "event-backbone:recovery",
}


def test_the_recovery_stack_file_is_prods_but_for_region_names_network_and_postgres():
    prod, rec = config("prod"), config("prod-dr")
    assert set(prod) | {"event-backbone:recovery"} == set(rec)
    for key in sorted(set(prod) - DIFFERENT):
        assert rec[key] == prod[key], f"Pulumi.prod-dr.yaml {key} differs from Pulumi.prod.yaml"
    dr = prod["event-backbone:postgres"]["disasterRecovery"]
    assert rec["event-backbone:location"] == rec["azure-native:location"] == dr["region"]
    assert rec["event-backbone:recovery"] == {"replaces": "prod", "postgresSubnet": dr["postgresSubnet"]}
    assert rec["event-backbone:network"]["aksSubnet"] == dr["recoveryAksSubnet"]
    assert rec["event-backbone:namePrefix"] != prod["event-backbone:namePrefix"]
    assert {k: v for k, v in rec["event-backbone:tags"].items() if k != "recoveryOf"} == prod["event-backbone:tags"]
    # the edge is prod's but in this stack's VNet
    assert {k: v for k, v in rec["event-backbone:edge"].items() if k != "subnet"} == {
        k: v for k, v in prod["event-backbone:edge"].items() if k != "subnet"
    }
    # the network is prod's shape in another, non-overlapping range
    mine, theirs = rec["event-backbone:network"], prod["event-backbone:network"]
    assert set(mine) == set(theirs)
    assert not ipaddress.ip_network(mine["addressSpace"]).overlaps(ipaddress.ip_network(theirs["addressSpace"]))
    assert not ipaddress.ip_network(mine["addressSpace"]).overlaps(ipaddress.ip_network(dr["addressSpace"]))
    # the postgres keys it keeps are prod's values: what is set on the promoted server, its SKU
    pg = rec["event-backbone:postgres"]
    assert {k: prod["event-backbone:postgres"][k] for k in pg} == pg


def test_a_replaced_stack_that_does_not_match_stops_the_preview(planned):
    outputs = copy.deepcopy(planned["prod"].result.outputs)
    outputs["disasterRecovery"]["region"] = "westeurope"
    outputs["disasterRecovery"]["recoveryAksSubnet"] = "10.60.0.0/20"
    with pytest.raises(Exception) as exc:
        run_stack("prod-dr", references={REF: outputs})
    text = str(exc.value)
    assert "stack 'prod' does not match this recovery stack" in text
    assert "location is 'northeurope', the replaced stack's DR region is 'westeurope'" in text
    assert "network.aksSubnet is '10.52.0.0/20', the replaced stack's DR NSG lets in '10.60.0.0/20'" in text


@pytest.mark.parametrize(
    "stack,key,value,line",
    [
        (
            "prod-dr",
            "postgres.highAvailability",
            "ZoneRedundant",
            "Pulumi.prod-dr.yaml: event-backbone:postgres.highAvailability does not apply to a recovery stack: its"
            " server is the promoted geo-replica of stack 'prod', shaped by that stack's file (allowed here:"
            " postgres.entraAdminGroup, postgres.defender, postgres.sslMinProtocolVersion, postgres.parameters,"
            " postgres.skuName) (got 'ZoneRedundant')",
        ),
        (
            "prod-dr",
            "recovery.postgresSubnet",
            "10.52.16.0/26",
            "Pulumi.prod-dr.yaml: event-backbone:recovery.postgresSubnet must not overlap network.addressSpace"
            " 10.52.0.0/16 (this stack's VNet is peered with the DR VNet) (got '10.52.16.0/26')",
        ),
        (
            "prod",
            "postgres.disasterRecovery.recoveryAksSubnet",
            "10.51.0.128/25",
            "Pulumi.prod.yaml: event-backbone:postgres.disasterRecovery.recoveryAksSubnet must not overlap"
            " postgres.disasterRecovery.addressSpace 10.51.0.0/24 (the recovery stack's VNet is peered with the"
            " DR VNet) (got '10.51.0.128/25')",
        ),
    ],
    ids=["server-shape-refused", "subnet-overlap", "prod-recovery-subnet-overlap"],
)
def test_recovery_settings_are_validated_before_anything_exists(stack, key, value, line):
    assert errors(stack, mutate(stack, key, value)) == [line]


def test_the_real_stack_file_validates_with_prods_entra_group_required():
    text = mutate("prod-dr", "postgres.entraAdminGroup", delete=True)
    assert errors("prod-dr", text) == [
        "Pulumi.prod-dr.yaml: event-backbone:postgres.entraAdminGroup is required in prod (the Microsoft Entra"
        " group that administers PostgreSQL)"
    ]


# ------------------------------------------------------------------ policies
def _mandatory(registrations) -> list:
    from dryrun.policy_host import run_pack

    findings = run_pack(ROOT / "policies", ROOT / "policies" / "config.prod-dr.json", registrations)
    return [f for f in findings if f.enforcement_level == "mandatory"]


def test_the_recovery_plan_passes_the_policy_pack(recovery):
    assert _mandatory(recovery.result.registrations) == []


def test_dropping_tls_on_the_promoted_server_is_refused(recovery):
    """The server is not in the plan, but the stack administers it: TLS must be set there."""
    regs = [r for r in recovery.result.registrations if r.name != "require-secure-transport"]
    (f,) = _mandatory(regs)
    assert f.policy == "postgres-tls-enforced"
    assert "require_secure_transport" in f.message and "entra-admin-bootstrap" in f.message
    weaker = [
        dataclasses.replace(r, inputs={**r.inputs, "value": "TLSv1"}) if r.name == "ssl-min-protocol-version" else r
        for r in recovery.result.registrations
    ]
    (f,) = _mandatory(weaker)
    assert f.policy == "postgres-tls-enforced" and "'TLSv1'" in f.message


def test_make_plan_of_a_broken_recovery_file_names_that_file_and_the_key(tmp_path, capsys):
    """`make plan STACK=prod-dr` plans prod first (for its outputs), then validates this file."""
    text = (ROOT / "Pulumi.prod-dr.yaml").read_text()
    text = text.replace("    replaces: prod\n", "    replaces: prod\n    region: northeurope\n")
    assert plan(tmp_path, "prod-dr", text, capsys) == [
        f"{tmp_path}/copy-prod-dr.yaml: event-backbone:recovery.region is not a known key; allowed keys:"
        " postgresSubnet, replaces",
        f"{tmp_path}/copy-prod-dr.yaml: 1 further cross-key/environment check waits on the errors above and"
        " runs once they are fixed",
    ]


def test_every_kubernetes_object_of_the_recovery_stack_validates_against_its_schema(recovery):
    """The same renderers as prod's, with this stack's CIDRs, names and server: each object against
    the pinned Kubernetes schemas (builtin kinds) or the pinned CRDs (kubernetes-validate, ../shared)."""
    version = recovery.settings.aks.kubernetes_version
    found = k8s_schemas.recorded_manifests(recovery)
    assert len(found) > 50
    assert {m["kind"] for m in found} >= {"Job", "NetworkPolicy", "RabbitmqCluster", "ConfigMap"}
    for m in found:
        assert k8s_schemas.errors(m, version) == [], f"{m['kind']}/{m['metadata']['name']}"
