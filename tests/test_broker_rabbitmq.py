"""Proof on a real RabbitMQ (Debian's rabbitmq-server): the rendered topology routes,
dead-letters, refuses, isolates and survives restarts as designed.

One throwaway node on loopback ports, with the broker settings the cluster gets
(additionalConfig), imports through the management HTTP API the rendered definitions of a
proof topology: the dev stack's services plus probe services with short TTL / small limits.
The dev stack's own definitions are imported into their vhost as well. (Loading the
definitions at boot, as the cluster does, is proven on the TLS node: test_broker_tls.py.)
"""

from __future__ import annotations

import hashlib
import re
import secrets
import subprocess
import time

import pika
import pika.exceptions
import pytest
import yaml
from conftest import ROOT, require_tool
from tools.rabbitmq_node import SERVER, RabbitNode

from components import settings as S
from components.render import broker as render
from dryrun.runner import config_from_yaml

pytestmark = pytest.mark.rabbitmq

PROBES = {
    "probe-ttl": {"bindings": ["probe.ttl.*"], "overrides": {"messageTtlMs": 1000}},
    "probe-limit": {"bindings": ["probe.limit.*"], "overrides": {"deliveryLimit": 2}},
    "probe-full": {"bindings": ["probe.full.*"], "overrides": {"maxLength": 5}},
    "probe-durable": {"bindings": ["probe.durable.*"], "overrides": {"maxLength": 20000}},
}


def proof_settings() -> S.StackSettings:
    """The dev stack file with the '#' audit consumer left out (so that unroutable keys
    exist), probe services added, and its own vhost."""
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    broker = doc["config"]["event-backbone:broker"]
    services = {k: v for k, v in doc["config"]["event-backbone:services"].items() if "#" not in v.get("bindings", [])}
    doc["config"]["event-backbone:services"] = {**services, **PROBES}
    broker["topology"]["vhost"] = "events-proof"
    config, _ = config_from_yaml(yaml.safe_dump(doc))
    return S.from_config_map(config, "dev")


def real_definitions(s: S.StackSettings, passwords: dict[str, str]) -> dict:
    hashes = {u: render.password_hash(pw, render.stable_salt(u, 0)) for u, pw in passwords.items()}
    return render.definitions(s, hashes)


class Broker:
    def __init__(self, node: RabbitNode, settings: S.StackSettings, passwords: dict[str, str]):
        self.node, self.s, self.passwords = node, settings, passwords
        self.t = settings.broker.topology

    def connect(self, user: str, vhost: str | None = None) -> pika.BlockingConnection:
        params = pika.ConnectionParameters(
            host="127.0.0.1",
            port=self.node.amqp_port,
            virtual_host=vhost or self.s.vhost,
            credentials=pika.PlainCredentials(user, self.passwords[user]),
            connection_attempts=3,
            retry_delay=1,
        )
        return pika.BlockingConnection(params)

    def channel(self, user: str, vhost: str | None = None):
        conn = self.connect(user, vhost)
        ch = conn.channel()
        ch.confirm_delivery()
        return conn, ch

    def publish(self, ch, key: str, body: bytes, *, mandatory: bool = True) -> None:
        ch.basic_publish(
            self.t.exchange, key, body, properties=pika.BasicProperties(delivery_mode=2), mandatory=mandatory
        )

    def publish_and_reject(self, key: str, body: bytes, consumer: str, queue: str) -> None:
        """svc-bloodbank publishes; the consumer takes the message and rejects it without requeue."""
        conn, ch = self.channel("svc-bloodbank")
        self.publish(ch, key, body)
        conn.close()
        conn, ch = self.channel(consumer)
        method, _, got = ch.basic_get(queue)
        assert got == body
        ch.basic_reject(method.delivery_tag, requeue=False)
        conn.close()

    def drain(self, queue: str, vhost: str | None = None) -> list[tuple]:
        conn = self.connect(render.ADMIN_USER, vhost)
        ch = conn.channel()
        got = []
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                break
            got.append((method, props, body))
        conn.close()
        return got

    def wait_for(self, queue: str, count: int = 1, timeout: float = 20) -> list[tuple]:
        deadline, got = time.time() + timeout, []
        while time.time() < deadline:
            got += self.drain(queue)
            if len(got) >= count:
                return got
            time.sleep(0.3)
        return got


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    require_tool(SERVER)
    s = proof_settings()
    passwords = {u: secrets.token_urlsafe(24) for u in render.users_and_secrets(s)}
    work = tmp_path_factory.mktemp("rabbitmq")
    # The additionalConfig the RabbitmqCluster gets, without the boot-time import.
    config = "\n".join(
        line for line in render.additional_config(s).splitlines() if not line.startswith("load_definitions")
    )
    node = RabbitNode(work / "node", extra_config=config, admin=("guest", "guest"))
    try:
        node.start()
        node.import_definitions(real_definitions(s, passwords))
        node.admin = (render.ADMIN_USER, passwords[render.ADMIN_USER])  # the imported administrator from now on
        yield Broker(node, s, passwords)
    finally:
        node.close()


def queue_names(b: Broker) -> set[str]:
    return {p.queue for p in render.queue_plans(b.t, b.s.services)}


# ---------------------------------------------------------------------------- the node
def test_node_listens_on_loopback_only(broker):
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    mine = [
        line
        for line in out.splitlines()
        if any(
            f":{p} " in line
            for p in (
                broker.node.amqp_port,
                broker.node.mgmt_port,
                broker.node.prom_port,
                broker.node.dist_port,
                broker.node.epmd_port,
            )
        )
    ]
    assert mine, out
    for line in mine:
        local = line.split()[3]
        assert local.startswith(("127.", "[::1]:")), line  # IPv4 or IPv6 loopback only


def test_imported_definitions_have_the_rendered_arguments(broker):
    vhost = RabbitNode.vhost_path(broker.s.vhost)
    expected = {p.queue: p.arguments for p in render.queue_plans(broker.t, broker.s.services)}
    deadline, queues = time.time() + 30, {}
    while time.time() < deadline and set(queues) != set(expected) | {"dlq.all", "dlq.candystore"}:
        queues = {q["name"]: q for q in broker.node.api("GET", f"/api/queues/{vhost}")}  # lags boot briefly
        time.sleep(0.5)
    assert set(expected) | {"dlq.all", "dlq.candystore"} == set(queues)
    for name, arguments in expected.items():
        assert queues[name]["arguments"] == arguments, name
        assert queues[name]["durable"] is True and queues[name]["type"] == "quorum"
    exchanges = {x["name"]: x for x in broker.node.api("GET", f"/api/exchanges/{vhost}")}
    for name in (broker.t.exchange, broker.t.dead_letter_exchange):
        assert exchanges[name]["type"] == "topic" and exchanges[name]["durable"] is True


# ---------------------------------------------------------------------------- 1. routing
@pytest.mark.parametrize(
    "key,expected",
    [
        ("transcription.voice.completed", {"transcription.voice"}),
        ("order.cart.created", {"candystore.events"}),
        ("inventory.stock.reserved.eu", {"candystore.events"}),
        ("probe.full.one", {"probe-full.events"}),
        ("dlq.transcription", {"transcription.voice"}),  # the replay binding
    ],
)
def test_event_reaches_exactly_the_bound_queues(broker, key, expected):
    conn, ch = broker.channel("svc-bloodbank")
    body = f"{key}:{secrets.token_hex(4)}".encode()
    broker.publish(ch, key, body)
    conn.close()
    reached = {q for q in queue_names(broker) if any(m[2] == body for m in broker.drain(q))}
    assert reached == expected


def test_unroutable_event_is_returned_to_a_mandatory_publisher(broker):
    conn, ch = broker.channel("svc-bloodbank")
    with pytest.raises(pika.exceptions.UnroutableError):
        broker.publish(ch, "nobody.listens.here", b"lost?")
    conn.close()


# ---------------------------------------------------------------------------- 2. dead letters
def test_rejected_message_lands_in_dlq_all_with_x_death(broker):
    broker.publish_and_reject("transcription.voice.failed", b"poison-1", "svc-transcription", "transcription.voice")
    [(_, props, body)] = [m for m in broker.wait_for("dlq.all") if m[2] == b"poison-1"]
    death = props.headers["x-death"][0]
    assert death["queue"] == "transcription.voice"
    assert death["reason"] == "rejected"
    assert death["exchange"] == broker.t.exchange


def test_per_service_dlq_gets_its_own_dead_letters(broker):
    broker.publish_and_reject("order.cart.broken", b"poison-2", "svc-candystore", "candystore.events")
    assert [m[2] for m in broker.wait_for("dlq.candystore")] == [b"poison-2"]
    assert b"poison-2" in [m[2] for m in broker.wait_for("dlq.all")]


def test_delivery_limit_ends_a_poison_loop_in_the_dlq(broker):
    conn, ch = broker.channel("svc-bloodbank")
    broker.publish(ch, "probe.limit.loop", b"poison-3")
    conn.close()
    conn = broker.connect("svc-probe-limit")
    ch = conn.channel()
    deliveries = 0
    for _ in range(20):
        method, _, _ = ch.basic_get("probe-limit.events")
        if method is None:
            time.sleep(0.2)
            if ch.basic_get("probe-limit.events")[0] is None:
                break
            continue
        deliveries += 1
        # reject, not nack: both count on 3.x/4.1/4.2, only reject counts from 4.3 on
        ch.basic_reject(method.delivery_tag, requeue=True)
    conn.close()
    assert 2 <= deliveries <= 4
    [(_, props, _)] = [m for m in broker.wait_for("dlq.all") if m[2] == b"poison-3"]
    assert props.headers["x-death"][0]["reason"] == "delivery_limit"
    assert props.headers["x-death"][0]["queue"] == "probe-limit.events"


# ---------------------------------------------------------------------------- 3. TTL
def test_expired_message_is_dead_lettered(broker):
    conn, ch = broker.channel("svc-bloodbank")
    broker.publish(ch, "probe.ttl.tick", b"stale-1")
    conn.close()
    found = [m for m in broker.wait_for("dlq.all", timeout=30) if m[2] == b"stale-1"]
    assert found, "the expired message never reached dlq.all"
    death = found[0][1].headers["x-death"][0]
    assert (death["reason"], death["queue"]) == ("expired", "probe-ttl.events")


# ---------------------------------------------------------------------------- 4. max length
def test_full_queue_refuses_publishes_with_a_nack(broker):
    """A quorum queue at x-max-length nacks publishes (reject-publish); 3.10 checked the length
    *before* an enqueue and could hold one message over the limit, which the bound allows.
    From the first nack on every publish is nacked, and every acked message is in the queue:
    nothing is dropped silently."""
    limit = 5
    broker.drain("probe-full.events")
    conn, ch = broker.channel("svc-bloodbank")
    acked, nacked = [], []
    for i in range(limit + 5):
        body = f"fill-{i}".encode()
        try:
            broker.publish(ch, "probe.full.fill", body)
            assert not nacked, "a publish was accepted after the queue had refused one"
            acked.append(body)
        except pika.exceptions.NackError:
            nacked.append(body)
    conn.close()
    assert nacked, "the full queue never refused a publish"
    assert limit <= len(acked) <= limit + 1
    assert [m[2] for m in broker.drain("probe-full.events")] == acked


# ---------------------------------------------------------------------------- 5. isolation
def test_service_user_may_consume_its_own_queue(broker):
    conn, ch = broker.channel("svc-candystore")
    ch.basic_get("candystore.events")  # no exception: allowed
    assert ch.is_open
    conn.close()


@pytest.mark.parametrize("action", ["other-queue", "declare-exchange", "declare-queue"])
def test_service_user_is_refused_outside_its_own_resources(broker, action):
    conn = broker.connect("svc-candystore")
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        if action == "other-queue":
            ch.basic_get("transcription.voice")
        elif action == "declare-exchange":
            ch.exchange_declare("rogue.exchange", exchange_type="fanout")
        else:
            ch.queue_declare("rogue.queue")
    assert exc.value.reply_code == 403
    assert "ACCESS_REFUSED" in exc.value.reply_text
    conn.close()


# ---------------------------------------------------------------------------- the DLQ runbook
def test_runbook_replay_shovels_dead_letters_back_to_their_queue(broker):
    """docs/runbooks/dead-letter-queue.md: inspect, replay with a shovel to the events
    exchange, purge."""
    broker.drain("dlq.candystore")
    broker.publish_and_reject("order.cart.replayed", b"replay-me", "svc-candystore", "candystore.events")
    vhost = RabbitNode.vhost_path(broker.s.vhost)
    # inspect (requeue, so the message stays)
    deadline, peeked = time.time() + 20, []
    while time.time() < deadline and not peeked:
        peeked = broker.node.api(
            "POST",
            f"/api/queues/{vhost}/dlq.candystore/get",
            {"count": 10, "ackmode": "ack_requeue_true", "encoding": "auto"},
        )
        time.sleep(0.3)
    assert [m["payload"] for m in peeked] == ["replay-me"]
    assert peeked[0]["routing_key"] == "dlq.candystore"
    assert peeked[0]["properties"]["headers"]["x-death"][0]["queue"] == "candystore.events"
    # replay: a one-shot dynamic shovel back to the events exchange
    broker.node.api(
        "PUT",
        f"/api/parameters/shovel/{vhost}/replay-candystore",
        {
            "value": {
                "src-protocol": "amqp091",
                "src-uri": f"amqp:///{vhost}",
                "src-queue": "dlq.candystore",
                "src-delete-after": "queue-length",
                "dest-protocol": "amqp091",
                "dest-uri": f"amqp:///{vhost}",
                "dest-exchange": broker.t.exchange,
                "ack-mode": "on-confirm",
            }
        },
    )
    replayed = broker.wait_for("candystore.events")
    assert [m[2] for m in replayed] == [b"replay-me"]
    assert replayed[0][1].headers["x-death"][0]["reason"] == "rejected"  # history kept
    assert broker.drain("dlq.candystore") == []
    # purge what is left in dlq.all
    broker.node.api("DELETE", f"/api/queues/{vhost}/dlq.all/contents")
    assert broker.drain("dlq.all") == []


# ---------------------------------------------------------------------------- metrics
def test_per_queue_metrics_for_the_dlq_alerts(broker):
    series = f'rabbitmq_detailed_queue_messages{{vhost="{broker.s.vhost}",queue="dlq.all"}}'
    deadline, text = time.time() + 30, ""
    while time.time() < deadline and series not in text:  # metrics lag queue creation
        text = broker.node.metrics("/metrics/detailed?family=queue_coarse_metrics")
        time.sleep(1)
    assert series in text


def test_every_broker_metric_in_rules_and_dashboards_is_served(broker):
    """The rules and dashboards read rabbitmq_* metrics: the real exporter must serve each
    one, on the endpoints and families the ServiceMonitor scrapes."""
    from urllib.parse import urlencode

    from promql import metric_names

    from components.render import dashboards as D
    from components.render import rules as R

    endpoints = render.service_monitor(broker.s, "ca")["spec"]["endpoints"]
    served = set()
    for e in endpoints:
        query = urlencode([("family", f) for f in e.get("params", {}).get("family", [])])
        text = broker.node.metrics(e["path"] + (f"?{query}" if query else ""))
        served |= {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    used = {m for r in R.rule_groups(broker.s) for x in r["rules"] for m in metric_names(x["expr"])}
    used |= {m for b in D.dashboards(broker.s).values() for q in D.queries(b) for m in metric_names(q)}
    wanted = {m for m in used if m.startswith("rabbitmq_")}
    assert "rabbitmq_detailed_queue_messages" in wanted and len(wanted) > 8
    assert wanted - served == set()


# ---------------------------------------------------------------------------- HTTP import
def test_dev_stack_definitions_import_through_the_http_api(broker):
    dev = S.from_config_map(config_from_yaml((ROOT / "Pulumi.dev.yaml").read_text())[0], "dev")
    # Users are node-wide: keep the passwords of users both topologies share.
    passwords = {u: broker.passwords.get(u) or secrets.token_urlsafe(24) for u in render.users_and_secrets(dev)}
    broker.node.import_definitions(real_definitions(dev, passwords))
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=broker.node.amqp_port,
        virtual_host=dev.vhost,
        credentials=pika.PlainCredentials("svc-bloodbank", passwords["svc-bloodbank"]),
    )
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish(dev.broker.topology.exchange, "anything.at.all", b"audited", mandatory=True)
    conn.close()
    vhost = RabbitNode.vhost_path(dev.vhost)
    got = broker.node.api(
        "POST",
        f"/api/queues/{vhost}/audit.events/get",
        {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"},
    )
    assert [m["payload"] for m in got] == ["audited"]


# ---------------------------------------------------------------------------- 6. durability (last: restarts the node)
def test_confirmed_persistent_messages_survive_restart_and_sigkill(broker):
    n = 10_000
    conn, ch = broker.channel("svc-bloodbank")
    digest = hashlib.sha256()
    for i in range(n):
        body = f"event-{i:05d}-{secrets.token_hex(8)}".encode()
        broker.publish(ch, "probe.durable.saved", body)  # returns once confirmed
        digest.update(body)
    conn.close()

    broker.node.stop()
    broker.node.start()
    conn = broker.connect(render.ADMIN_USER)
    assert conn.channel().queue_declare("probe-durable.events", passive=True).method.message_count == n
    conn.close()

    broker.node.kill()
    broker.node.start()
    bodies = [m[2] for m in broker.drain("probe-durable.events")]
    assert len(bodies) == n
    after = hashlib.sha256()
    for body in bodies:  # quorum queues keep FIFO order
        after.update(body)
    assert after.hexdigest() == digest.hexdigest()


# ---------------------------------------------------------------------------- KEDA's queue-depth reader
KEDA_QUEUE = "candystore.events"


def _keda_depth(broker: Broker, queue: str) -> int:
    """What KEDA's rabbitmq scaler does with protocol amqp: connect as the reader and
    passively declare the queue; the declare-ok carries the ready-message count."""
    conn = broker.connect(render.MONITOR_USER)
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()


def test_keda_monitor_reads_the_queue_depth_the_way_the_scaler_does(broker):
    broker.drain(KEDA_QUEUE)
    assert _keda_depth(broker, KEDA_QUEUE) == 0
    conn, ch = broker.channel("svc-bloodbank")
    for i in range(7):
        broker.publish(ch, f"order.keda{i}.created", b"scale me")
    conn.close()
    deadline, depth = time.time() + 10, -1
    while time.time() < deadline and depth != 7:
        depth = _keda_depth(broker, KEDA_QUEUE)
        time.sleep(0.2)
    assert depth == 7
    assert len(broker.drain(KEDA_QUEUE)) == 7
    assert _keda_depth(broker, KEDA_QUEUE) == 0


KEDA_REFUSED = {
    "publish-to-events": lambda b, ch: (ch.confirm_delivery(), b.publish(ch, "order.keda.created", b"x")),
    "publish-to-default-exchange": lambda b, ch: (ch.confirm_delivery(), ch.basic_publish("", KEDA_QUEUE, b"x")),
    "get": lambda b, ch: ch.basic_get(KEDA_QUEUE),
    "consume": lambda b, ch: (ch.basic_consume(KEDA_QUEUE, lambda *a: None), ch.connection.process_data_events(1)),
    "purge": lambda b, ch: ch.queue_purge(KEDA_QUEUE),
    "delete-queue": lambda b, ch: ch.queue_delete(KEDA_QUEUE),
    "declare-queue": lambda b, ch: ch.queue_declare("keda.rogue"),
    "declare-exchange": lambda b, ch: ch.exchange_declare("keda.rogue", exchange_type="fanout"),
    "bind": lambda b, ch: ch.queue_bind(KEDA_QUEUE, b.t.exchange, "keda.#"),
    "unbind": lambda b, ch: ch.queue_unbind(KEDA_QUEUE, b.t.exchange, "order.*.*"),
}


@pytest.mark.parametrize("action", sorted(KEDA_REFUSED))
def test_keda_monitor_can_neither_publish_consume_nor_change_anything(broker, action):
    before = broker.node.api("GET", f"/api/queues/{RabbitNode.vhost_path(broker.s.vhost)}/{KEDA_QUEUE}")
    conn, ch = broker.connect(render.MONITOR_USER), None
    try:
        ch = conn.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
            KEDA_REFUSED[action](broker, ch)
        assert exc.value.reply_code == 403 and "ACCESS_REFUSED" in exc.value.reply_text
    finally:
        if conn.is_open:
            conn.close()
    after = broker.node.api("GET", f"/api/queues/{RabbitNode.vhost_path(broker.s.vhost)}/{KEDA_QUEUE}")
    assert (after["arguments"], after["durable"]) == (before["arguments"], before["durable"])
    bindings = broker.node.api("GET", f"/api/queues/{RabbitNode.vhost_path(broker.s.vhost)}/{KEDA_QUEUE}/bindings")
    assert not any("keda" in b["routing_key"] for b in bindings)
    assert any(b["routing_key"] == "order.*.*" for b in bindings)


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/api/queues"),
        ("GET", "/api/overview"),
        ("PUT", "/api/queues/{vhost}/keda.rogue"),
        ("DELETE", "/api/queues/{vhost}/" + KEDA_QUEUE),
        ("POST", "/api/definitions"),
    ],
)
def test_keda_monitor_has_no_management_access(broker, method, path):
    import urllib.error

    auth = (render.MONITOR_USER, broker.passwords[render.MONITOR_USER])
    body = {} if method in ("PUT", "POST") else None
    with pytest.raises(urllib.error.HTTPError) as exc:
        broker.node.api(method, path.format(vhost=RabbitNode.vhost_path(broker.s.vhost)), body, auth=auth)
    assert exc.value.code == 401  # no management tag: the HTTP API refuses the user outright
    assert broker.node.api("GET", f"/api/queues/{RabbitNode.vhost_path(broker.s.vhost)}/{KEDA_QUEUE}")


def test_keda_monitor_rendered_as_deployed(broker):
    defs = render.definitions(broker.s, render.placeholder_hashes(broker.s))
    user = next(u for u in defs["users"] if u["name"] == render.MONITOR_USER)
    perm = next(p for p in defs["permissions"] if p["user"] == render.MONITOR_USER)
    assert user["tags"] == []
    queues = sorted(p.queue for p in render.queue_plans(broker.s.broker.topology, broker.s.services))
    assert KEDA_QUEUE in queues
    # write on exactly the services' queues (what 4.3 needs for a passive declare), nothing else
    expected = ("^$", "^(" + "|".join(re.escape(q) for q in queues) + ")$", "^$")
    assert (perm["configure"], perm["write"], perm["read"]) == expected
    assert re.fullmatch(perm["write"], KEDA_QUEUE) and not re.fullmatch(perm["write"], "dlq.all")
    assert not re.fullmatch(perm["write"], broker.s.broker.topology.exchange) and not re.fullmatch(perm["write"], "")
    live = broker.node.api("GET", f"/api/users/{render.MONITOR_USER}/permissions")
    assert [(p["configure"], p["write"], p["read"]) for p in live if p["vhost"] == broker.s.vhost] == [expected]
