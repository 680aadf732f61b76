"""broker.backend: cloudamqp provisions a dedicated instance with alarms and applies the
same rendered topology through the RabbitMQ provider."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import ROOT, Planned, unwrap
from pulumi.runtime import rpc

from components.render import broker as render
from dryrun.runner import run_stack


@pytest.fixture(scope="module")
def cloud(tmp_path_factory) -> Planned:
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    broker = doc["config"]["event-backbone:broker"]
    broker["backend"] = "cloudamqp"
    broker["cloudamqp"] = {
        "plan": "penguin-3",
        "region": "azure-arm::westeurope",
        "pagerdutyRoutingKey": {"secure": "v1:AAAA"},
        "slackWebhookUrl": {"secure": "v1:BBBB"},
    }
    return Planned(run_stack("prod", stack_text=yaml.safe_dump(doc, sort_keys=False)), tmp_path_factory.mktemp("cloud"))


def test_instance_from_config_and_protected_in_prod(cloud):
    inst = cloud.one("cloudamqp:index/instance:Instance")
    assert (inst.inputs["plan"], inst.inputs["region"]) == ("penguin-3", "azure-arm::westeurope")
    assert inst.protect is True


def test_no_in_cluster_broker(cloud):
    kinds = {r.type for r in cloud.result.registrations}
    assert not any("rabbitmq.com" in k for k in kinds)
    broker_ns = cloud.settings.broker.namespace
    assert not [r for r in cloud.of_type("NetworkPolicy") if r.inputs["metadata"]["namespace"] == broker_ns]


def test_alarms_for_dlq_disk_and_memory_notify_pagerduty_and_slack(cloud):
    alarms = {r.name: cloud.inputs("alarm:Alarm", r.name) for r in cloud.of_type("alarm:Alarm")}
    assert set(alarms) == {"dlq-depth", "disk", "memory"}
    assert alarms["dlq-depth"]["queueRegex"] == r"^dlq\..*"
    assert alarms["dlq-depth"]["valueThreshold"] == 1000
    for alarm in alarms.values():
        assert len(alarm["recipients"]) == 2 and alarm["enabled"] is True
    notifications = {r.inputs["type"]: r for r in cloud.of_type("notification:Notification")}
    assert set(notifications) == {"pagerduty", "slack"}
    assert all(rpc.is_rpc_secret(n.inputs["value"]) for n in notifications.values())


def whole_number(value) -> bool:
    """An integer as the engine carries it (its wire has one number type), not an id string."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()


def test_instance_and_recipient_ids_are_ints_as_the_provider_takes_them(cloud):
    """The provider's instance_id and alarm recipients are integers; a Pulumi resource id is a
    string, so the component converts both (a string here is what the real provider rejects)."""
    notifications = cloud.of_type("notification:Notification")
    alarms = cloud.of_type("alarm:Alarm")
    instance_ids = {r.inputs["instanceId"] for r in notifications + alarms}
    assert len(instance_ids) == 1 and whole_number(next(iter(instance_ids)))
    for alarm in alarms:
        recipients = alarm.inputs["recipients"]
        assert len(set(recipients)) == len(notifications) == 2
        assert all(whole_number(r) for r in recipients)
    plan = json.loads((cloud.out_dir / "plan.json").read_text())
    planned = [r for r in plan["resources"] if r["type"] == "cloudamqp:index/alarm:Alarm"]
    assert planned and all(isinstance(r["inputs"]["instanceId"], int) for r in planned)
    assert all(isinstance(x, int) for r in planned for x in r["inputs"]["recipients"])


def test_same_topology_as_the_render(cloud):
    defs = render.definitions(cloud.settings, render.placeholder_hashes(cloud.settings))
    queues = {r.inputs["name"]: unwrap(r.inputs) for r in cloud.of_type("queue:Queue")}
    assert set(queues) == {q["name"] for q in defs["queues"]}
    for q in defs["queues"]:
        assert json.loads(queues[q["name"]]["settings"]["argumentsJson"]) == q["arguments"]
    bindings = {
        (r.inputs["source"], r.inputs["destination"], r.inputs["routingKey"]) for r in cloud.of_type("binding:Binding")
    }
    assert bindings == {(b["source"], b["destination"], b["routing_key"]) for b in defs["bindings"]}
    perms = {r.inputs["user"]: unwrap(r.inputs)["permissions"] for r in cloud.of_type("permissions:Permissions")}
    for p in defs["permissions"]:
        if p["user"] != render.ADMIN_USER:
            assert perms[p["user"]] == {"configure": p["configure"], "write": p["write"], "read": p["read"]}


def test_user_passwords_and_connection_strings_are_secrets(cloud):
    for user in cloud.of_type("user:User"):
        assert rpc.is_rpc_secret(user.inputs["password"])
    url = cloud.inputs("keyvault:Secret", "broker-candystore-url-secret")["properties"]["value"]
    assert url.startswith("amqps://svc-candystore:") and ".rmq.cloudamqp.com:5671/" in url
    text = (cloud.out_dir / "plan.json").read_text()
    assert not any(secret in text for secret in cloud.result.generated_secrets)
