"""Database (and vault) alerts that Azure evaluates: metric alerts with thresholds computed from
the SKU at plan time, action groups reaching Alertmanager's receivers, the policy that requires an
availability alert on every stateful prod resource (tripped through the analyzer protocol)."""

from __future__ import annotations

import json
import re

import pytest
from conftest import ROOT, unwrap
from test_settings import mutate

from components import settings as S
from components.render import alertmanager as AM
from components.render import db_alerts as D
from components.settings.pg_skus import max_connections
from dryrun.runner import config_from_yaml, run_stack

DB_METRICS = {"active_connections", "cpu_percent", "memory_percent", "storage_percent", "is_db_alive"}


def alerts(stack) -> dict[str, dict]:
    return {r.name: unwrap(r.inputs) for r in stack.of_type("monitor:MetricAlert")}


def criterion(alert: dict) -> dict:
    (c,) = alert["criteria"]["allOf"]
    return c


def test_the_plan_has_every_database_alert_on_the_server(stack):
    found = alerts(stack)
    server = stack.one("dbforpostgresql:Server", "server")  # the primary (replicas: their own alerts)
    server_id = f"/providers/Microsoft.Dbforpostgresql/servers/{unwrap(server.inputs)['serverName']}"
    on_server = {criterion(a)["metricName"] for a in found.values() if a["scopes"][0].endswith(server_id)}
    assert on_server == DB_METRICS
    for a in found.values():
        assert a["enabled"] is True and a["autoMitigate"] is True and a["location"] == "global"
        assert a["criteria"]["odataType"] == "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria"
        assert re.match(r"^PT\d+M$", a["windowSize"]) and re.match(r"^PT\d+M$", a["evaluationFrequency"])
        assert "Runbook: https://" in a["description"]


def test_the_connection_threshold_is_80_percent_of_the_skus_max_connections(stack):
    s = stack.settings
    conn = alerts(stack)["alert-postgresconnectionshigh"]  # the primary's (replicas have their own)
    limit = max_connections(s.postgres.sku_name)
    assert limit is not None
    assert criterion(conn)["threshold"] == limit * 80 // 100
    assert str(limit) in conn["description"] and s.postgres.sku_name in conn["description"]


@pytest.mark.parametrize(
    "sku,limit", [("Standard_B1ms", 50), ("Standard_B2ms", 859), ("Standard_D4ds_v5", 1718), ("Standard_E8ds_v5", 5000)]
)
def test_the_documented_max_connections(sku, limit):
    assert max_connections(sku) == limit


def test_changing_the_sku_changes_the_planned_threshold():
    """A real plan of prod with a bigger SKU: the threshold follows (1718 -> 3437 connections)."""
    before = run_stack("prod")
    after = run_stack("prod", stack_text=mutate("prod", "postgres.skuName", "Standard_D8ds_v5"))

    def threshold(result) -> float:
        (conn,) = [
            unwrap(r.inputs)
            for r in result.registrations
            if r.type.endswith("monitor:MetricAlert") and r.name == "alert-postgresconnectionshigh"
        ]
        return criterion(conn)["threshold"]

    assert threshold(before) == 1374  # 80 % of D4ds_v5's 1718
    assert threshold(after) == 2749  # 80 % of D8ds_v5's 3437


def test_an_unknown_sku_is_refused_before_anything_is_planned():
    with pytest.raises(S.ConfigError) as err:
        S.from_config_map(config_from_yaml(mutate("prod", "postgres.skuName", "Standard_D3ds_v5"))[0], "prod")
    lines = [p.line("Pulumi.prod.yaml") for p in err.value.problems]
    assert any(
        line.startswith("Pulumi.prod.yaml: event-backbone:postgres.skuName must be a flexible server SKU")
        and "(got 'Standard_D3ds_v5')" in line
        for line in lines
    ), lines


def test_prod_needs_the_azure_side_receivers():
    text = mutate("prod", "observability.alerting.pagerdutyAzureIntegrationKey", delete=True)
    with pytest.raises(S.ConfigError) as err:
        S.from_config_map(config_from_yaml(text)[0], "prod")
    assert any("alerting.pagerdutyAzureIntegrationKey is required in prod" in p.line("x") for p in err.value.problems)


def test_replicas_get_the_same_alerts_and_replication_lag(planned):
    s = planned["prod"].settings
    replica = D.Server("replica-1", "Standard_D2ds_v5", role="replica")
    specs = D.database_alerts(s, [D.primary(s), replica])
    by_target: dict[str, set[str]] = {}
    for a in specs:
        by_target.setdefault(a.target, set()).add(a.metric)
    assert by_target["primary"] == DB_METRICS
    assert by_target["replica-1"] == DB_METRICS | {"physical_replication_delay_in_seconds"}
    conn = next(a for a in specs if a.target == "replica-1" and a.metric == "active_connections")
    assert conn.threshold == 859 * 80 // 100  # the replica's own SKU


def test_severities_route_like_alertmanager(stack):
    """Each Azure alert goes to the action group standing for the receiver Alertmanager picks for
    its severity; dev (no PagerDuty) sends critical ones to Slack, as Alertmanager does."""
    s = stack.settings
    groups = {r.name: unwrap(r.inputs) for r in stack.of_type("monitor:ActionGroup")}
    for spec in D.database_alerts(s, [D.primary(s)]) + D.vault_alerts(s):
        assert D.receiver_for(s, spec.severity) == AM.receiver_for(s, spec.severity), spec.name
    for name, alert in alerts(stack).items():
        severity = {0: "critical", 2: "warning"}[alert["severity"]]
        receiver = AM.receiver_for(s, severity)
        (action,) = alert["actions"]
        assert action["actionGroupId"].endswith(f"/action-group-{receiver}"), name
    expected = {"action-group-slack"} | ({"action-group-pagerduty"} if stack.stack == "prod" else set())
    assert set(groups) - {"cost-action-group"} == expected  # the budget has its own (components/budget.py)
    if stack.stack == "dev":
        assert D.receiver_for(s, "critical") == AM.SLACK


def test_receivers_credentials_are_secrets_in_the_plan(planned):
    from pulumi.runtime import rpc

    raw = {r.name: r.inputs for r in planned["prod"].of_type("monitor:ActionGroup")}
    doc = json.dumps(planned["prod"].doc)
    # the receiver lists carry the secret (the SDK marks the whole list once an item is secret)
    assert rpc.is_rpc_secret(raw["action-group-pagerduty"]["webhookReceivers"])
    assert rpc.is_rpc_secret(raw["action-group-slack"]["emailReceivers"])
    assert "events.pagerduty.com/integration" not in doc
    plan = (planned["prod"].out_dir / "plan.json").read_text()
    assert "dryrun-secure-placeholder" not in plan


def test_the_policy_trips_through_the_protocol_without_an_availability_alert(planned):
    """The prod plan passes the gate; without the database's availability alert, or with its
    action group removed, the mandatory policy names the server."""
    import dataclasses

    from dryrun.policy_host import run_pack

    def findings(regs) -> list:
        out = run_pack(ROOT / "policies", ROOT / "policies" / "config.prod.json", regs)
        return [f for f in out if f.policy == "stateful-resources-availability-alert"]

    regs = list(planned["prod"].result.registrations)
    assert findings(regs) == []
    no_down = [r for r in regs if r.name != "alert-postgresdown"]
    (f,) = findings(no_down)
    assert f.enforcement_level == "mandatory" and "dbforpostgresql:Server 'server'" in f.message
    assert "is_db_alive" in f.message and "Fix:" in f.message
    silent = [
        dataclasses.replace(r, inputs={k: v for k, v in r.inputs.items() if k != "actions"})
        if r.name == "alert-keyvaultavailabilitylow"
        else r
        for r in regs
    ]
    (f,) = findings(silent)
    assert "keyvault:Vault 'vault'" in f.message
    # Redis: without RedisDown the cluster is named; the connected-clients-high warning on the
    # same metric (a "greater than") does not stand in for it
    assert any(r.name == "alert-RedisConnectedClientsHigh" for r in regs)
    (f,) = findings([r for r in regs if r.name != "alert-RedisDown"])
    assert "redisenterprise:RedisEnterprise 'redis-cluster'" in f.message and "connectedclients" in f.message
    # the in-cluster broker: without its rule group on the Azure Monitor workspace, or with the
    # alert's action group removed, the RabbitmqCluster is named
    assert any(r.type.endswith("RabbitmqCluster") for r in regs)
    (f,) = findings([r for r in regs if r.name != "broker-availability-rules"])
    assert "RabbitmqCluster 'cluster'" in f.message and "outside the cluster" in f.message

    def no_action(r):
        rules = [{k: v for k, v in rule.items() if k != "actions"} for rule in r.inputs["rules"]]
        return dataclasses.replace(r, inputs={**r.inputs, "rules": rules})

    (f,) = findings([no_action(r) if r.name == "broker-availability-rules" else r for r in regs])
    assert "RabbitmqCluster 'cluster'" in f.message
    # dev does not require it
    dev = run_pack(
        ROOT / "policies", ROOT / "policies" / "config.dev.json", [r for r in regs if "alert-" not in r.name]
    )
    assert [x for x in dev if x.policy == "stateful-resources-availability-alert"] == []


def test_every_azure_alert_has_a_runbook(planned):
    s = planned["prod"].settings
    replica = D.Server("r", s.postgres.sku_name, role="replica")
    for spec in D.database_alerts(s, [D.primary(s), replica]) + D.vault_alerts(s):
        path = ROOT / "docs" / "runbooks" / f"{spec.name}.md"
        assert path.is_file(), path
        text = path.read_text()
        assert re.search(r"(?im)^#+ .*check", text) and re.search(r"(?im)^#+ .*(do|act|fix|mitigat)", text), path


def test_the_broker_is_watched_from_azure(planned):
    """Azure evaluates the broker's alert on the remote-written metrics: no samples for 5 minutes
    or fewer nodes up than the replicas pages (the critical action group)."""
    from components.render.db_alerts import receiver_for

    p = planned["prod"]
    s = p.settings
    group = p.one("alertsmanagement:PrometheusRuleGroup", "broker-availability-rules")
    g = unwrap(group.inputs)
    amw = p.one("monitor:AzureMonitorWorkspace", "metrics-workspace")
    critical = p.one("monitor:ActionGroup", f"action-group-{receiver_for(s, 'critical')}")
    assert amw.urn in group.dependencies and critical.urn in group.dependencies and g["enabled"] is True
    (rule,) = g["rules"]
    sel = f'job="{s.broker.cluster_name}",namespace="{s.broker.namespace}"'
    assert rule["alert"] == "BrokerDownSeenFromAzure" and rule["labels"] == {"severity": "critical"}
    assert rule["expression"] == f"absent_over_time(up{{{sel}}}[5m])\nor\nsum(up{{{sel}}}) < {s.broker.replicas}"
    assert (ROOT / "docs" / "runbooks" / "BrokerDownSeenFromAzure.md").is_file()
