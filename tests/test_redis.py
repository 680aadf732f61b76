"""Azure Managed Redis in the plan (components/redis.py): the settings' rules, the resources and
their security settings, who gets access (only services with `redis: true`, each its own
identity), the landing zones' NetworkPolicies and the NSG, the client contract, and the mandatory
policies (policies/managed_redis.py), each tripped through the analyzer protocol."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml
from conftest import ROOT, unwrap
from test_policies import _pack_findings
from test_settings import stack_doc

from components import settings as S
from components.render import redis as render
from components.render.landing import network_policies

CLUSTER = "redisenterprise:RedisEnterprise"
DATABASE = "redisenterprise:Database"
ASSIGNMENT = "redisenterprise:AccessPolicyAssignment"


# ------------------------------------------------------------------ settings
def _doc(stack: str, **changes) -> dict:
    """A copy of the real stack file; ``changes``: ``redis__sku="x"`` (``__`` for dots), None deletes."""
    doc = copy.deepcopy(stack_doc(stack))
    for path, value in changes.items():
        top, *rest = path.split("__")
        node = doc["config"].setdefault(f"event-backbone:{top}", {})
        for part in rest[:-1]:
            node = node[part]
        if value is None:
            node.pop(rest[-1], None) if rest else doc["config"].pop(f"event-backbone:{top}")
        else:
            node[rest[-1]] = value
    return doc


def errors(stack: str, doc: dict) -> list[str]:
    from dryrun.runner import config_from_yaml

    config, _ = config_from_yaml(yaml.safe_dump(doc, sort_keys=False))
    try:
        S.from_config_map(config, stack)
    except S.ConfigError as exc:
        return exc.lines[: len(exc.problems)]
    return []


def test_redis_is_off_unless_a_service_asks_or_the_stack_enables_it():
    doc = _doc("dev", services__bloodbank__redis=False)
    assert errors("dev", doc) == [
        "Pulumi.dev.yaml: event-backbone:redis is configured but nothing uses it: no service has `redis: true`"
        " and redis.enabled is false; set redis.enabled: true or remove the section"
    ]
    assert errors("dev", _doc("dev", services__bloodbank__redis=False, redis=None)) == []
    assert errors("dev", _doc("dev", services__bloodbank__redis=False, redis__enabled=True)) == []


def test_prod_requires_high_availability_and_a_known_client_limit():
    doc = _doc("prod", redis__highAvailability=False, redis__maxConnectedClients=None)
    assert errors("prod", doc) == [
        "Pulumi.prod.yaml: event-backbone:redis.highAvailability must be true in prod (replicated shards, zone"
        " redundant; cannot be turned on later) (got false)",
        "Pulumi.prod.yaml: event-backbone:redis.maxConnectedClients is required when Redis is on: the connection"
        " limit Microsoft publishes for Balanced_B1 (the connected-clients alert is a share of it)",
    ]


def test_a_setting_that_would_be_ignored_is_an_error():
    assert errors("prod", _doc("prod", redis__persistence="aof")) == [
        "Pulumi.prod.yaml: event-backbone:redis.rdbFrequency applies only with redis.persistence 'rdb' (it is"
        " 'aof'); remove it or set persistence: rdb (got '1h')"
    ]
    assert errors("prod", _doc("prod", redis__persistence="aof", redis__rdbFrequency=None)) == []


def test_redis_keys_are_read_strictly():
    doc = _doc("prod", redis__clusteringPolicy="OSSCluster", redis__evictionPolicie="AllKeysLRU")
    doc["config"]["event-backbone:redis"]["sku"] = "Enterprise_E10"
    lines = errors("prod", doc)
    assert any(
        "event-backbone:redis.clusteringPolicy must be one of" in line and "OSSCluster" in line for line in lines
    )
    assert any("redis.evictionPolicie is not a known key; did you mean 'evictionPolicy'?" in line for line in lines)
    assert any("event-backbone:redis.sku must be one of" in line and "Enterprise_E10" in line for line in lines)
    assert all(line.startswith("Pulumi.prod.yaml: ") for line in lines)


# ------------------------------------------------------------------ the plan
def test_the_cluster_and_database_are_private_tls_only_and_entra_only(stack):
    cluster = unwrap(stack.one(CLUSTER).inputs)
    database = unwrap(stack.one(DATABASE).inputs)
    assert cluster["publicNetworkAccess"] == "Disabled" and cluster["minimumTlsVersion"] == "1.2"
    assert database["clientProtocol"] == "Encrypted" and database["accessKeysAuthentication"] == "Disabled"
    assert database["databaseName"] == "default" and database["port"] == render.PORT
    assert database["clusteringPolicy"] == "EnterpriseCluster" and database["evictionPolicy"] == "VolatileLRU"
    prod = stack.stack == "prod"
    assert cluster["highAvailability"] == ("Enabled" if prod else "Disabled")
    assert cluster["sku"]["name"] == ("Balanced_B1" if prod else "Balanced_B0")
    persistence = database["persistence"]
    assert not (persistence["aofEnabled"] and persistence["rdbEnabled"])  # at most one
    assert persistence == (
        {"rdbEnabled": True, "rdbFrequency": "1h", "aofEnabled": False}
        if prod
        else {"aofEnabled": False, "rdbEnabled": False}
    )
    assert stack.one(CLUSTER).protect is prod and stack.one(DATABASE).protect is prod
    locks = [unwrap(r.inputs)["scope"] for r in stack.of_type("authorization:ManagementLockByScope")]
    assert (stack.one(CLUSTER).urn in stack.one("ManagementLockByScope", "lock-redis").dependencies) if prod else True
    assert len(locks) == len(set(locks))  # one lock per resource; how many in all: tests/test_hardening.py
    assert ("lock-redis" in {r.name for r in stack.of_type("authorization:ManagementLockByScope")}) is prod


def test_private_endpoint_and_dns_zone(stack):
    pe = unwrap(stack.one("network:PrivateEndpoint", "redis-pe").inputs)
    (conn,) = pe["privateLinkServiceConnections"]
    assert conn["groupIds"] == ["redisEnterprise"] and "/subnets/snet-private-endpoints" in pe["subnet"]["id"]
    zone = unwrap(stack.one("privatedns:PrivateZone", "dns-redis").inputs)
    assert zone["privateZoneName"] == "privatelink.redis.azure.net"
    link = unwrap(stack.one("privatedns:VirtualNetworkLink", "dns-redis-link").inputs)
    assert "/virtualNetworks/" in link["virtualNetwork"]["id"] and link["registrationEnabled"] is False
    group = unwrap(stack.one("network:PrivateDnsZoneGroup", "redis-pe-dns").inputs)
    assert group["privateDnsZoneConfigs"][0]["privateDnsZoneId"].endswith("/privatelink.redis.azure.net")
    nsg = unwrap(stack.one("network:NetworkSecurityGroup", "nsg-endpoints").inputs)
    rule = next(r for r in nsg["securityRules"] if r["name"] == "allow-redis-from-aks")
    assert rule["destinationPortRange"] == "10000" and rule["sourceAddressPrefix"] == stack.settings.network.aks_subnet
    assert rule["priority"] < next(r for r in nsg["securityRules"] if r["name"] == "deny-vnet-inbound")["priority"]


def test_only_services_that_ask_get_access_each_its_own_identity(stack):
    s = stack.settings
    assert s.redis_services == ["bloodbank"]
    (assignment,) = stack.of_type(ASSIGNMENT)
    inputs = unwrap(assignment.inputs)
    identities = {r.urn: r.name for r in stack.of_type("managedidentity:UserAssignedIdentity")}
    assert [identities[d] for d in assignment.dependencies if d in identities] == ["id-bloodbank"]
    assert inputs["accessPolicyName"] == "default" and inputs["databaseName"] == "default"
    for svc in s.services:
        names = {p["metadata"]["name"] for p in network_policies(s, svc)}
        assert ("allow-redis" in names) == (svc in s.redis_services), svc
    (policy,) = [p for p in network_policies(s, "bloodbank") if p["metadata"]["name"] == "allow-redis"]
    assert policy["spec"]["egress"] == [
        {"to": [{"ipBlock": {"cidr": s.network.endpoints_subnet}}], "ports": [{"protocol": "TCP", "port": 10000}]}
    ]
    configmaps = [
        r for r in stack.of_type("core/v1:ConfigMap") if r.name.endswith("-redis") and "dashboard" not in r.name
    ]
    assert [unwrap(r.inputs)["metadata"]["namespace"] for r in configmaps] == ["bloodbank"]
    data = unwrap(configmaps[0].inputs)["data"]
    assert data["REDIS_PORT"] == "10000" and data["REDIS_TLS"] == "true" and data["REDIS_KEY_PREFIX"] == "bloodbank:"
    assert data["REDIS_USERNAME"] == inputs["user"]["objectId"] and data["REDIS_HOST"].endswith(".redis.azure.net")


def test_no_redis_at_all_when_nobody_asks(planned):
    from dryrun.runner import run_stack

    text = (ROOT / "Pulumi.dev.yaml").read_text()
    text = text.replace("      redis: true  #", "      redis: false  #")
    start = text.index("  # Azure Managed Redis for the services")
    end = text.index("  event-backbone:registry:")
    result = run_stack("dev", stack_text=text[:start] + text[end:])
    assert not [r for r in result.registrations if "redis" in r.type.lower() or "redis" in r.name.lower()]
    nsg = next(r for r in result.registrations if r.name == "nsg-endpoints")
    assert all(rule["name"] != "allow-redis-from-aks" for rule in nsg.inputs["securityRules"])


def test_diagnostics_and_alerts(stack):
    database, cluster = stack.one(DATABASE), stack.one(CLUSTER)
    settings = {r.name: r for r in stack.of_type("monitor:DiagnosticSetting")}
    db_diag, cluster_diag = settings["diag-redis-database"], settings["diag-redis-cluster"]
    assert database.urn in db_diag.dependencies and cluster.urn in cluster_diag.dependencies
    assert unwrap(db_diag.inputs)["logs"] == [{"category": "ConnectionEvents", "enabled": True}]
    assert unwrap(cluster_diag.inputs)["metrics"] == [{"category": "AllMetrics", "enabled": True}]
    down = stack.one("monitor:MetricAlert", "alert-RedisDown")
    mine = [r for r in stack.of_type("monitor:MetricAlert") if r.name.startswith("alert-Redis") and r is not down]
    alerts = {r.name: unwrap(r.inputs) for r in mine}
    # the availability alert: critical, to the group Alertmanager's routing picks for critical
    from components.render.db_alerts import receiver_for

    d = unwrap(down.inputs)
    (dc,) = d["criteria"]["allOf"]
    assert d["severity"] == 0 and d["enabled"] is True and d["scopes"] == [cluster_id(stack)]
    assert (dc["metricName"], dc["operator"], dc["threshold"]) == ("connectedclients", "LessThan", 1)
    critical = stack.one("monitor:ActionGroup", f"action-group-{receiver_for(stack.settings, 'critical')}")
    assert critical.urn in down.dependencies and cluster.urn in down.dependencies
    assert (ROOT / "docs" / "runbooks" / "RedisDown.md").is_file() and "RedisDown.md" in d["description"]
    # warnings, to the action group Alertmanager's routing picks for a warning (Slack), as every
    # Azure alert of the stack (tests/test_db_alerts.py)
    group = stack.one("monitor:ActionGroup", "action-group-slack")
    assert all(group.urn in r.dependencies and cluster.urn in r.dependencies for r in mine)
    assert all(a["severity"] == 2 for a in alerts.values())
    assert set(alerts) == {f"alert-{a[0]}" for a in __import__("components.redis").redis.ALERTS}
    limit = stack.settings.redis.max_connected_clients
    for name, a in alerts.items():
        (criterion,) = a["criteria"]["allOf"]
        (action,) = a["actions"]
        assert "/actionGroups/" in action["actionGroupId"] and a["scopes"] == [cluster_id(stack)]
        assert (ROOT / "docs" / "runbooks" / f"{name.removeprefix('alert-')}.md").is_file(), name
        assert f"docs/runbooks/{name.removeprefix('alert-')}.md" in a["description"]
        if name == "alert-RedisConnectedClientsHigh":
            assert criterion["metricName"] == "connectedclients" and criterion["threshold"] == int(limit * 0.8)


def cluster_id(stack) -> str:
    r = stack.one(CLUSTER)
    return (
        next(
            unwrap(d.inputs)["resourceUri"]
            for d in stack.of_type("DiagnosticSetting")
            if d.name == "diag-redis-cluster"
        )
        or r.urn
    )


def test_the_client_contract_has_the_redis_section():
    from prod_broker import prod_settings

    from components.render import broker as broker_render
    from components.render import clients

    prod = prod_settings()
    contracts = clients.client_contracts(prod, broker_render.definitions(prod, broker_render.placeholder_hashes(prod)))
    redis = contracts["bloodbank"]["redis"]
    assert redis["port"] == 10000 and redis["tls"]["required"] and redis["tls"]["minimumVersion"] == "1.2"
    assert redis["auth"]["scope"] == "https://redis.azure.com/.default"
    assert "object ID" in redis["auth"]["username"]
    assert redis["keys"]["prefix"] == "bloodbank:" and redis["kubernetes"]["configMap"] == "bloodbank-redis"
    assert [svc for svc, c in contracts.items() if c["redis"]] == ["bloodbank"]
    doc = (ROOT / "docs" / "services.md").read_text()
    for word in ("REDIS_HOST", "https://redis.azure.com/.default", "object ID", "10000", "bloodbank:"):
        assert word in doc, word


# ------------------------------------------------------------------ the policies, through the protocol
def _changed(planned, type_suffix: str, stack: str = "prod", **changes):
    """The stack's registrations with the one resource of ``type_suffix`` changed (None deletes)."""
    regs = list(planned[stack].result.registrations)
    index = next(i for i, r in enumerate(regs) if r.type.endswith(type_suffix))
    inputs = copy.deepcopy(regs[index].inputs)
    for key, value in changes.items():
        if value is None:
            inputs.pop(key, None)
        else:
            inputs[key] = value
    regs[index] = dataclasses.replace(regs[index], inputs=inputs)
    return regs


def _policies(findings) -> list[tuple[str, str]]:
    return [(f.policy, f.message) for f in findings]


def test_the_real_plans_pass_the_redis_policies(planned):
    for stack in ("dev", "prod"):
        assert _pack_findings(planned, planned[stack].result.registrations, stack) == []


@pytest.mark.parametrize(
    ("type_suffix", "changes", "policy", "words"),
    [
        (DATABASE, {"clientProtocol": "Plaintext"}, "redis-tls-only", ["clientProtocol", "'Plaintext'"]),
        (DATABASE, {"clientProtocol": None}, "redis-tls-only", ["clientProtocol", "not set"]),
        (CLUSTER, {"minimumTlsVersion": "1.1"}, "redis-tls-only", ["minimumTlsVersion", "'1.1'"]),
        (DATABASE, {"accessKeysAuthentication": "Enabled"}, "redis-no-access-keys", ["'Enabled'"]),
        (DATABASE, {"accessKeysAuthentication": None}, "redis-no-access-keys", ["not set"]),
        (CLUSTER, {"publicNetworkAccess": "Enabled"}, "redis-not-public", ["publicNetworkAccess", "'Enabled'"]),
        (CLUSTER, {"highAvailability": "Disabled"}, "redis-high-availability", ["highAvailability", "'Disabled'"]),
    ],
)
def test_each_redis_policy_trips_through_the_protocol(planned, type_suffix, changes, policy, words):
    findings = _policies(_pack_findings(planned, _changed(planned, type_suffix, **changes)))
    assert [p for p, _ in findings] == [policy], findings
    message = findings[0][1]
    for word in (*words, "Fix:"):
        assert word in message, (word, message)


def test_high_availability_is_not_required_in_dev(planned):
    assert _pack_findings(planned, _changed(planned, CLUSTER, "dev", highAvailability="Disabled"), "dev") == []
    findings = _pack_findings(planned, _changed(planned, CLUSTER, "dev", highAvailability="Disabled"), "prod")
    assert "redis-high-availability" in [f.policy for f in findings]


@pytest.mark.parametrize("setting", ["diag-redis-database", "diag-redis-cluster"])
def test_missing_diagnostics_trip_through_the_protocol(planned, setting):
    regs = [r for r in planned["prod"].result.registrations if r.name != setting]
    findings = _policies(_pack_findings(planned, regs))
    assert [p for p, _ in findings] == ["redis-diagnostics"], findings
    assert ("ConnectionEvents" if setting.endswith("database") else "AllMetrics") in findings[0][1]
    # a setting that exists but does not carry the category trips as well
    regs = list(planned["prod"].result.registrations)
    i = next(i for i, r in enumerate(regs) if r.name == "diag-redis-database")
    inputs = copy.deepcopy(regs[i].inputs)
    inputs["logs"] = [{"category": "ConnectionEvents", "enabled": False}]
    regs[i] = dataclasses.replace(regs[i], inputs=inputs)
    assert [f.policy for f in _pack_findings(planned, regs)] == ["redis-diagnostics"]


def test_unprotected_or_unlocked_redis_trips_in_prod(planned):
    regs = list(planned["prod"].result.registrations)
    i = next(i for i, r in enumerate(regs) if r.type.endswith(CLUSTER))
    regs[i] = dataclasses.replace(regs[i], protect=False)
    assert "stateful-resources-protected" in [f.policy for f in _pack_findings(planned, regs)]
    regs = [r for r in planned["prod"].result.registrations if r.name != "lock-redis"]
    assert [f.policy for f in _pack_findings(planned, regs)] == ["stateful-resources-locked"]


# ------------------------------------------------------------------ dashboard
def test_the_redis_board_shows_the_alerting_metrics_from_azure_monitor(stack):
    from components.render import redis as R

    board = R.boards(stack.settings)["redis"]
    assert [p["title"] for p in board["panels"]] == ["Server load", "Memory used", "Connected clients", "Errors"]
    assert not [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    alert_metrics = {a[1] for a in __import__("components.redis").redis.ALERTS}
    metrics = set()
    for p in board["panels"]:
        # the data source the Helm values provision (uid azure-monitor), not a variable
        assert p["datasource"] == {"type": "grafana-azure-monitor-datasource", "uid": "azure-monitor"}
        (t,) = p["targets"]
        assert t["datasource"] == p["datasource"]
        query = t["azureMonitor"]
        assert query["metricNamespace"] == "Microsoft.Cache/redisEnterprise"
        assert query["resources"][0]["resourceGroup"] == stack.settings.name("rg")
        metrics.add(query["metricName"])
    assert metrics == alert_metrics
    configmaps = [r for r in stack.of_type("core/v1:ConfigMap") if r.name == "dashboard-redis"]
    assert len(configmaps) == 1 and "redis.json" in unwrap(configmaps[0].inputs)["data"]


# ------------------------------------------------------------------ the access matrix
def test_the_access_matrix_shows_who_can_reach_redis_from_the_plan(planned):
    from test_access import matrix_of

    from dryrun import access

    prod = planned["prod"]
    m = matrix_of(prod)
    holders = {r["identity"]: r["redis"] for r in m["identities"] if r["redis"]}
    assert list(holders) == ["service bloodbank"]
    (entry,) = holders["service bloodbank"]
    assert entry["accessPolicy"] == "default" and entry["keyPrefix"] == "bloodbank:" and entry["clusterInPlan"]
    md = access.markdown(m)
    assert "| Redis (access policy; keys) |" in md and "keys `bloodbank:*`" in md
    assert access.summary_line(m).endswith("; Redis: service bloodbank")

    # a rogue assignment for candystore's identity, added to the recorded plan, shows up
    import json

    from components.render import artefacts

    doc = copy.deepcopy(prod.doc)
    grant = next(r for r in doc["resources"] if r["type"].endswith(ASSIGNMENT))
    candystore = next(r for r in m["identities"] if r["identity"] == "service candystore")
    rogue = copy.deepcopy(grant)
    rogue["urn"] += "-rogue"
    rogue["inputs"]["user"]["objectId"] = candystore["principal"]
    doc["resources"].append(rogue)
    m2 = access.matrix(doc, json.loads(artefacts(prod.settings)["rabbitmq/definitions.json"]))
    row = next(r for r in m2["identities"] if r["identity"] == "service candystore")
    assert [x["keyPrefix"] for x in row["redis"]] == [None]  # reaches Redis, has no prefix of its own
