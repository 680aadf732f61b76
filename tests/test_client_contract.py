"""The broker contract for services (issue 10): the per-service contract files agree with the
definitions they are read back from, and on a real prod-shaped RabbitMQ (AMQPS, prod
definitions loaded at boot) every service user can do exactly what its contract says:

- passive declarations of the exchange and of its queue succeed;
- declaring its queue with the published arguments succeeds and changes nothing;
- declaring the exchange (non-passive) fails with ACCESS_REFUSED;
- declaring its queue with other arguments fails with PRECONDITION_FAILED inequivalent arg.
"""

from __future__ import annotations

import json
import re
import ssl

import pika
import pika.exceptions
import pytest
from conftest import require_tool
from prod_broker import ProdBroker, prod_broker, prod_settings
from tools.rabbitmq_node import SERVER

from components.render import broker as render
from components.render import clients
from dryrun import plan as plan_mod

PROD = prod_settings()
PROD_CONTRACTS = clients.client_contracts(PROD, render.definitions(PROD, render.placeholder_hashes(PROD)))
CONSUMERS = sorted(svc for svc, c in PROD_CONTRACTS.items() if c["queue"])
PUBLISHERS = sorted(svc for svc, c in PROD_CONTRACTS.items() if not c["queue"])


# ---------------------------------------------------------------------------- the artefact
@pytest.fixture
def written(stack):
    """build/<stack>/ as `make plan` writes it (through the one checked writer)."""
    names = plan_mod.write_artefacts(stack.result, stack.out_dir)
    return stack, names


def test_make_plan_writes_one_contract_per_service_user(written):
    stack, names = written
    defs = json.loads((stack.out_dir / "rabbitmq/definitions.json").read_text())
    # the platform's own users (admin, the queue-depth reader) get no client contract
    users = {u["name"] for u in defs["users"]} - {render.ADMIN_USER, render.MONITOR_USER}
    files = {n for n in names if n.startswith("rabbitmq/clients/")}
    assert users, "no service user rendered"
    assert all(u.startswith("svc-") for u in users), users
    assert files == {f"rabbitmq/clients/{u.removeprefix('svc-')}.json" for u in users}


def test_contracts_agree_with_the_definitions(written):
    stack, _ = written
    out = stack.out_dir / "rabbitmq"
    defs = json.loads((out / "definitions.json").read_text())
    queues = {q["name"]: q for q in defs["queues"]}
    exchanges = {e["name"]: e for e in defs["exchanges"]}
    perms = {p["user"]: p for p in defs["permissions"]}
    consumers = 0
    for path in sorted((out / "clients").glob("*.json")):
        c = json.loads(path.read_text())
        svc, user = c["service"], c["user"]
        assert path.stem == svc and user == render.user_name(svc)
        assert c["vhost"] == stack.settings.vhost == defs["vhosts"][0]["name"]
        assert c["permissions"] == {k: perms[user][k] for k in ("configure", "write", "read")}
        ex = exchanges[c["exchange"]["name"]]
        assert (ex["type"], ex["durable"]) == (c["exchange"]["type"], c["exchange"]["durable"]) == ("topic", True)
        # the service may publish to the exchange but not (re)declare it
        assert re.fullmatch(c["permissions"]["write"], ex["name"])
        assert not re.fullmatch(c["permissions"]["configure"], ex["name"])
        assert c["credentials"]["keyVault"]["password"] == render.users_and_secrets(stack.settings)[user]
        assert c["credentials"]["keyVault"]["caCertificate"] == "broker-ca-cert"
        k8s = c["credentials"]["kubernetes"]
        assert (k8s["namespace"], k8s["secret"], k8s["secretProviderClass"], k8s["mountPath"]) == (
            svc,
            f"{svc}-broker",
            f"{svc}-secrets",
            "/mnt/secrets",
        )
        assert set(k8s["secretKeys"].values()) == {"url", "password", "ca.crt"}
        assert c["amqps"]["endpoint"] == render.amqps_endpoint(stack.settings)
        assert len(c["amqps"]["nodes"]) == stack.settings.broker.replicas
        if c["queue"] is None:
            assert c["permissions"]["configure"] == "^$"  # a publisher declares nothing
            continue
        consumers += 1
        q = c["queue"]
        assert queues[q["name"]]["arguments"] == q["arguments"]
        assert queues[q["name"]]["durable"] is q["durable"] is True
        bound = {
            b["routing_key"]
            for b in defs["bindings"]
            if b["destination"] == q["name"] and b["source"] == c["exchange"]["name"]
        }
        assert bound == {*q["bindings"], q["replayBinding"]}
        assert q["bindings"], f"{svc}: a consumer queue without bindings"
        dl = c["deadLetter"]
        assert (dl["exchange"], dl["routingKey"]) == (
            q["arguments"]["x-dead-letter-exchange"],
            q["arguments"]["x-dead-letter-routing-key"],
        )
        assert dl["sharedQueues"] == ["dlq.all"]
        if dl["queue"]:
            assert any(
                b["source"] == dl["exchange"]
                and b["destination"] == dl["queue"]
                and b["routing_key"] == dl["routingKey"]
                for b in defs["bindings"]
            )
            assert re.fullmatch(c["permissions"]["read"], dl["queue"])
        for verb in ("configure", "read"):
            assert re.fullmatch(c["permissions"][verb], q["name"])
    assert consumers >= 2


def test_contract_carries_the_metric_contract(written):
    stack, _ = written
    m = stack.settings.observability.metrics
    c = json.loads(next((stack.out_dir / "rabbitmq/clients").glob("*.json")).read_text())
    assert c["metrics"]["eventsPublished"]["name"] == m.events_published == "events_published_total"
    assert c["metrics"]["endToEndLatency"]["name"] == m.end_to_end_latency == "event_end_to_end_latency_seconds"
    assert 0.5 in c["metrics"]["endToEndLatency"]["requiredBuckets"]  # the latency SLO's threshold


# ---------------------------------------------------------------------------- on a real broker
@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    require_tool(SERVER)
    with prod_broker(tmp_path_factory.mktemp("rabbitmq-contract")) as b:
        assert b.contracts == PROD_CONTRACTS
        yield b


def channel(b: ProdBroker, service: str):
    """Connect as the service, over AMQPS, trusting only the stack's CA, checking the host name."""
    context = ssl.create_default_context(cafile=str(b.tls.cacert))
    params = pika.URLParameters(b.url(service))
    params.host = "127.0.0.1"
    params.ssl_options = pika.SSLOptions(context, server_hostname=render.service_host(b.settings))
    conn = pika.BlockingConnection(params)
    return conn, conn.channel()


def refused(b: ProdBroker, service: str, declare) -> pika.exceptions.ChannelClosedByBroker:
    conn, ch = channel(b, service)
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
            declare(ch)
        return exc.value
    finally:
        conn.close()


@pytest.mark.rabbitmq
@pytest.mark.parametrize("service", sorted(PROD_CONTRACTS))
def test_passive_declarations_succeed(broker, service):
    c = broker.contracts[service]
    conn, ch = channel(broker, service)
    ch.exchange_declare(c["exchange"]["name"], passive=True)
    if c["queue"]:
        ok = ch.queue_declare(c["queue"]["name"], passive=True)
        assert ok.method.queue == c["queue"]["name"]
        if c["deadLetter"]["queue"]:
            ch.queue_declare(c["deadLetter"]["queue"], passive=True)
    assert ch.is_open
    conn.close()


@pytest.mark.rabbitmq
@pytest.mark.parametrize("service", CONSUMERS)
def test_declaring_the_queue_with_the_published_arguments_changes_nothing(broker, service):
    q = broker.contracts[service]["queue"]
    before = broker.vhost_definitions()
    conn, ch = channel(broker, service)
    ok = ch.queue_declare(q["name"], durable=True, arguments=q["arguments"])
    assert ok.method.queue == q["name"]
    conn.close()
    assert broker.vhost_definitions() == before


@pytest.mark.rabbitmq
@pytest.mark.parametrize("service", sorted(PROD_CONTRACTS))
def test_declaring_the_exchange_is_access_refused(broker, service):
    ex = broker.contracts[service]["exchange"]
    err = refused(broker, service, lambda ch: ch.exchange_declare(ex["name"], exchange_type="topic", durable=True))
    assert err.reply_code == 403
    assert err.reply_text == (
        f"ACCESS_REFUSED - configure access to exchange '{ex['name']}' in vhost '{broker.settings.vhost}' "
        f"refused for user '{render.user_name(service)}'"
    )


@pytest.mark.rabbitmq
@pytest.mark.parametrize("service", CONSUMERS)
def test_declaring_the_queue_with_other_arguments_is_a_precondition_failure(broker, service):
    q = broker.contracts[service]["queue"]
    before = broker.vhost_definitions()
    # no arguments at all (the RabbitMQ doc's consumer), and one argument off (a different TTL)
    err = refused(broker, service, lambda ch: ch.queue_declare(q["name"], durable=True))
    assert err.reply_code == 406
    assert err.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-exchange' for queue '{q['name']}' in vhost "
        f"'{broker.settings.vhost}': received none but current is the value "
        f"'{q['arguments']['x-dead-letter-exchange']}' of type 'longstr'"
    )
    other = {**q["arguments"], "x-message-ttl": q["arguments"]["x-message-ttl"] + 1000}
    err = refused(broker, service, lambda ch: ch.queue_declare(q["name"], durable=True, arguments=other))
    assert err.reply_code == 406
    assert err.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q['name']}' in vhost "
        f"'{broker.settings.vhost}': received '{other['x-message-ttl']}' "
        f"but current is '{q['arguments']['x-message-ttl']}'"
    )
    assert broker.vhost_definitions() == before


@pytest.mark.rabbitmq
@pytest.mark.parametrize("service", PUBLISHERS)
def test_a_publisher_declares_no_queue(broker, service):
    err = refused(broker, service, lambda ch: ch.queue_declare(f"{service}.events", durable=True))
    assert err.reply_code == 403
    assert err.reply_text.startswith(f"ACCESS_REFUSED - configure access to queue '{service}.events'")
