"""Proof on a real RabbitMQ (Debian's rabbitmq-server) that the load test's user is least
privilege: with the dev stack's rendered definitions (broker.loadTest switched on) imported,
``perf-test`` does what PerfTest does on its own names (declare the ``perf-test`` exchange and
``perf-test-<n>`` quorum queues, bind, publish with confirms, consume) and is refused on
everything of the services: their queues, the events exchange, the dead-letter side, other names,
other vhosts. The services' users cannot reach its queues either."""

from __future__ import annotations

import secrets
import urllib.error

import pika
import pika.exceptions
import pytest
from conftest import require_tool
from test_settings import mutate
from tools.rabbitmq_node import SERVER, RabbitNode

from components import settings as S
from components.render import broker as render
from components.render import load_test
from dryrun.runner import config_from_yaml

pytestmark = pytest.mark.rabbitmq

MESSAGES = 200


def settings() -> S.StackSettings:
    config, _ = config_from_yaml(mutate("dev", "broker.loadTest.enabled", True))
    return S.from_config_map(config, "dev")


class Node:
    def __init__(self, node: RabbitNode, s: S.StackSettings, passwords: dict[str, str]):
        self.node, self.s, self.passwords = node, s, passwords

    def connect(self, user: str, vhost: str | None = None) -> pika.BlockingConnection:
        assert self.node.amqp_port is not None  # the node listens in plaintext on loopback
        return pika.BlockingConnection(
            pika.ConnectionParameters(
                host="127.0.0.1",
                port=self.node.amqp_port,
                virtual_host=vhost or self.s.vhost,
                credentials=pika.PlainCredentials(user, self.passwords[user]),
                connection_attempts=3,
                retry_delay=1,
            )
        )


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    require_tool(SERVER)
    s = settings()
    passwords = {u: secrets.token_urlsafe(24) for u in render.users_and_secrets(s)}
    assert S.LOAD_TEST_USER in passwords
    hashes = {u: render.password_hash(pw, render.stable_salt(u, 0)) for u, pw in passwords.items()}
    config = "\n".join(
        line for line in render.additional_config(s).splitlines() if not line.startswith("load_definitions")
    )
    node = RabbitNode(tmp_path_factory.mktemp("rabbitmq-load-test") / "node", extra_config=config)
    try:
        node.start()
        node.import_definitions(render.definitions(s, hashes))
        node.admin = (render.ADMIN_USER, passwords[render.ADMIN_USER])
        yield Node(node, s, passwords)
    finally:
        node.close()


def test_perf_test_user_publishes_and_consumes_on_its_own_queues(broker):
    """What PerfTest does with the Job's arguments: the exchange, quorum queues perf-test-1..N
    bound to it, persistent publishes with confirms, consumption with acks."""
    queues = [load_test.QUEUE_PATTERN % i for i in range(1, 3)]
    conn = broker.connect(S.LOAD_TEST_USER)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare(load_test.EXCHANGE, exchange_type="direct", durable=True)
    for q in queues:
        ch.queue_declare(q, durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_bind(q, load_test.EXCHANGE, routing_key=q)
    for i in range(MESSAGES):
        q = queues[i % len(queues)]
        # BlockingChannel with confirms: returns once the broker confirmed (raises on nack/return)
        ch.basic_publish(load_test.EXCHANGE, q, f"m{i}".encode(), pika.BasicProperties(delivery_mode=2), mandatory=True)
    got = []
    for q in queues:
        while True:
            method, _, body = ch.basic_get(q)
            if method is None:
                break
            ch.basic_ack(method.delivery_tag)
            got.append(body)
    conn.close()
    print(f"perf-test user: {MESSAGES} confirmed, {len(got)} consumed over {len(queues)} quorum queues")
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(MESSAGES))
    info = broker.node.api("GET", f"/api/queues/{broker.node.vhost_path(broker.s.vhost)}/{queues[0]}")
    assert info["type"] == "quorum" and info["durable"] is True


REFUSED = {
    "publish to the events exchange": lambda ch, s: ch.basic_publish(
        s.broker.topology.exchange, "order.cart.created", b"x"
    ),
    "publish to the dead-letter exchange": lambda ch, s: ch.basic_publish(
        s.broker.topology.dead_letter_exchange, "dlq.candystore", b"x"
    ),
    "consume a service queue": lambda ch, s: ch.basic_get("candystore.events"),
    "consume another service queue": lambda ch, s: ch.basic_get("transcription.voice"),
    "consume dlq.all": lambda ch, s: ch.basic_get("dlq.all"),
    "purge a service queue": lambda ch, s: ch.queue_purge("audit.events"),
    "delete a service queue": lambda ch, s: ch.queue_delete("audit.events"),
    "bind its queue to the events exchange": lambda ch, s: ch.queue_bind(
        "perf-test-1", s.broker.topology.exchange, routing_key="#"
    ),
    "declare a queue outside perf-test-<n>": lambda ch, s: ch.queue_declare("perf-test-extra", durable=True),
    "declare an exchange of another name": lambda ch, s: ch.exchange_declare("perf-test.fanout", "fanout"),
}


@pytest.mark.parametrize("action", list(REFUSED))
def test_perf_test_user_is_refused_on_the_services_resources(broker, action):
    conn = broker.connect(S.LOAD_TEST_USER)
    ch = conn.channel()
    ch.confirm_delivery()
    # perf-test-1 exists for the bind attempt
    ch.queue_declare("perf-test-1", durable=True, arguments={"x-queue-type": "quorum"})
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        REFUSED[action](ch, broker.s)
    assert exc.value.reply_code == 403, exc.value
    assert "ACCESS_REFUSED" in exc.value.reply_text
    conn.close()
    # nothing of the services changed
    stats = broker.node.api("GET", f"/api/queues/{broker.node.vhost_path(broker.s.vhost)}/audit.events")
    assert stats["name"] == "audit.events"


def test_perf_test_user_has_no_other_vhost_and_no_management(broker):
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        broker.connect(S.LOAD_TEST_USER, vhost="/")
    with pytest.raises(urllib.error.HTTPError) as exc:
        broker.node.api("GET", "/api/overview", auth=(S.LOAD_TEST_USER, broker.passwords[S.LOAD_TEST_USER]))
    assert exc.value.code == 401


def test_service_users_cannot_reach_the_load_test_queues(broker):
    conn = broker.connect(S.LOAD_TEST_USER)
    conn.channel().queue_declare("perf-test-2", durable=True, arguments={"x-queue-type": "quorum"})
    conn.close()
    for user in ("svc-candystore", "svc-bloodbank"):
        conn = broker.connect(user)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
            conn.channel().basic_get("perf-test-2")
        assert exc.value.reply_code == 403
        conn.close()
