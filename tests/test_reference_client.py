"""The reference client (clients/python/event_client.py) against a real prod-shaped RabbitMQ:
AMQPS with the stack's CA and the cluster's host names, the rendered prod definitions loaded
at boot, the services' own users and their contract files.

Proven: publish with confirms -> consume with manual ack; a failing handler dead-letters to
dlq.<service> and dlq.all with x-death; a handler that keeps asking for a retry ends in the DLQ
at the delivery limit; a redelivery (ack lost with the connection, or a
publisher's duplicate) reaches the handler once; a publisher that loses its connection
mid-stream, or is told no (basic.nack from a full queue), retries and loses nothing; a dead
node in the URL list is skipped; contract errors fail fast; the metric contract is emitted."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from conftest import ROOT, require_tool
from prod_broker import ProdBroker, cluster_dns, prod_broker
from prometheus_client import CollectorRegistry
from tools.rabbitmq_node import CTL, SERVER, RabbitNode, free_port

sys.path.insert(0, str(ROOT / "clients" / "python"))
import aiormq.exceptions  # noqa: E402
from event_client import Contract, EventClient, Metrics, PublishFailed, Requeue  # noqa: E402

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    require_tool(SERVER)
    with prod_broker(tmp_path_factory.mktemp("rabbitmq-client")) as b, cluster_dns():
        yield b


def make_client(b: ProdBroker, service: str, registry: CollectorRegistry, urls=None, **kw) -> EventClient:
    contract = Contract.from_dict(b.contracts[service])
    return EventClient(
        urls or b.node_urls(service), contract, cafile=b.tls.cacert, metrics=Metrics(contract, registry), **kw
    )


def kill_connections(b: ProdBroker, user: str) -> None:
    """The broker closes every connection of ``user`` at once (as a node shutdown or a network
    cut would end them), through rabbitmqctl: the management API's connection list lags."""
    subprocess.run(
        [CTL, "-n", b.node.name, "close_all_user_connections", user, "test: connection lost"],
        env=b.node.env,
        check=True,
        capture_output=True,
        timeout=60,
    )


async def wait_until(predicate, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_publish_consume_dead_letter_and_metrics(broker):
    published, consumed = CollectorRegistry(), CollectorRegistry()  # two services, two processes
    handled: list[str] = []

    async def handler(message):
        if json.loads(message.body)["poison"]:
            raise ValueError("cannot process this order")
        handled.append(message.message_id)

    async def run():
        publisher = make_client(broker, "bloodbank", published)
        consumer = make_client(broker, "candystore", consumed)
        ids = {}
        for i in range(20):
            body = json.dumps({"n": i, "poison": i % 5 == 0}).encode()
            ids[await publisher.publish("order.cart.created", body)] = i % 5 == 0
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.consume(handler, stop))
        await wait_until(lambda: len(handled) + consumer.stats["dead_lettered"] >= 20)
        stop.set()
        await task
        await publisher.close()
        return ids, consumer

    ids, consumer = asyncio.run(run())
    good = {i for i, poison in ids.items() if not poison}
    poisoned = {i for i, poison in ids.items() if poison}
    assert sorted(handled) == sorted(good) and len(handled) == 16
    assert consumer.stats["dead_lettered"] == 4
    dead = broker.take("dlq.candystore")
    assert {m["properties"]["message_id"] for m in dead} == poisoned
    for m in dead:
        (death,) = m["properties"]["headers"]["x-death"]
        assert (death["queue"], death["reason"]) == ("candystore.events", "rejected")
    shared = {m["properties"]["message_id"] for m in broker.take("dlq.all")}
    assert poisoned <= shared
    assert broker.take("candystore.events") == []
    # the metric contract
    assert published.get_sample_value("events_published_total", {"service": "bloodbank", "outcome": "success"}) == 20
    assert consumed.get_sample_value("event_end_to_end_latency_seconds_count", {"service": "candystore"}) == 16
    under_half = consumed.get_sample_value(
        "event_end_to_end_latency_seconds_bucket", {"service": "candystore", "le": "0.5"}
    )
    assert under_half is not None and 0 <= under_half <= 16


def test_redeliveries_reach_the_handler_once(broker):
    """The ack of the first message is lost with the connection (the broker redelivers it), and
    one message is published twice with the same id: the handler sees each id once."""
    calls: list[str] = []

    async def run():
        publisher = make_client(broker, "bloodbank", CollectorRegistry())
        consumer = make_client(broker, "candystore", CollectorRegistry())
        first = await publisher.publish("order.cart.created", b"{}")
        await publisher.publish("order.cart.updated", b"{}", message_id=first)  # a publisher's retry
        second = await publisher.publish("order.cart.paid", b"{}")

        async def handler(message):
            calls.append(message.message_id)
            if len(calls) == 1:  # handled, but the connection dies before the ack
                await asyncio.to_thread(kill_connections, broker, "svc-candystore")

        stop = asyncio.Event()
        task = asyncio.create_task(consumer.consume(handler, stop))
        try:
            await wait_until(lambda: consumer.stats["duplicates"] >= 2 and second in calls)
        except AssertionError as exc:
            raise AssertionError(f"{consumer.stats} {calls} {first} {second}") from exc
        stop.set()
        await task
        await publisher.close()
        return first, second, consumer

    first, second, consumer = asyncio.run(run())
    assert sorted(calls) == sorted([first, second])
    assert consumer.stats["duplicates"] == 2  # the redelivery after the lost ack + the duplicate publish
    assert consumer.stats["connects"] == 2
    assert broker.take("candystore.events") == []


def test_requeue_ends_in_the_dlq_at_the_delivery_limit(broker):
    """A handler that keeps raising ``Requeue`` (a transient failure that never clears) gets the
    message back a bounded number of times: the client rejects with requeue, which counts towards
    the queue's x-delivery-limit on every RabbitMQ version (a nack with requeue stops counting on
    4.3), and the broker dead-letters it with reason delivery_limit."""
    queue = next(q for q in broker.vhost_definitions()["queues"] if q["name"] == "candystore.events")
    limit = queue["arguments"]["x-delivery-limit"]
    calls: list[str] = []

    async def handler(message):
        calls.append(message.message_id)
        raise Requeue("downstream not ready")

    async def run():
        publisher = make_client(broker, "bloodbank", CollectorRegistry())
        consumer = make_client(broker, "candystore", CollectorRegistry())
        message_id = await publisher.publish("order.cart.created", b"{}")
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.consume(handler, stop))
        dead: list[dict] = []

        def dead_lettered() -> bool:
            dead.extend(broker.take("dlq.candystore"))
            return any(m["properties"]["message_id"] == message_id for m in dead)

        await wait_until(dead_lettered)
        stop.set()
        await task
        await publisher.close()
        return message_id, dead

    message_id, dead = asyncio.run(run())
    assert 2 <= len(calls) <= limit + 1 and set(calls) == {message_id}
    (found,) = [m for m in dead if m["properties"]["message_id"] == message_id]
    (death,) = found["properties"]["headers"]["x-death"]
    assert (death["queue"], death["reason"]) == ("candystore.events", "delivery_limit")
    broker.take("dlq.all")
    assert broker.take("candystore.events") == []


def test_publisher_loses_nothing_when_its_connection_dies_mid_stream(broker):
    """Confirmed publishing while the broker drops the publisher's connection twice, with a
    dead node first in the URL list: every confirmed id is in the queue (a retried publish
    whose confirm was lost may be there twice: consumers dedupe by id)."""
    registry = CollectorRegistry()
    dead = broker.url("bloodbank", host="rabbitmq-server-9.rabbitmq-nodes.messaging.svc.cluster.local").replace(
        f":{broker.node.amqps_port}/", f":{free_port()}/"
    )

    async def run():
        publisher = make_client(broker, "bloodbank", registry, urls=[dead, *broker.node_urls("bloodbank")])
        confirmed: list[str] = []

        async def chaos():
            for _ in range(2):
                start = len(confirmed)
                await wait_until(lambda start=start: len(confirmed) >= start + 50)
                await asyncio.to_thread(kill_connections, broker, "svc-bloodbank")

        killer = asyncio.create_task(chaos())
        while not killer.done() or len(confirmed) < 200:
            body = json.dumps({"n": len(confirmed)}).encode()
            confirmed.append(await publisher.publish("transcription.voice.completed", body))
        await killer
        await publisher.close()
        return confirmed, publisher

    confirmed, publisher = asyncio.run(run())
    assert publisher.stats["connects"] == 3 and publisher.stats["connection_losses"] == 2
    got = [m["properties"]["message_id"] for m in broker.take("transcription.voice")]
    broker.take("audit.events")
    assert set(got) == set(confirmed) and len(set(confirmed)) == len(confirmed) >= 200
    print(f"{len(confirmed)} confirmed, {len(got)} in the queue ({len(got) - len(set(got))} duplicates)")
    assert registry.get_sample_value("events_published_total", {"service": "bloodbank", "outcome": "success"}) == len(
        confirmed
    )


def test_a_nacked_publish_is_retried_until_confirmed(broker):
    """A full queue (reject-publish) nacks; the client retries; draining the queue lets every
    publish through. The queue is made small with a policy (min(policy, argument) applies)."""
    registry = CollectorRegistry()
    vhost = RabbitNode.vhost_path(broker.settings.vhost)
    broker.node.api(
        "PUT",
        f"/api/policies/{vhost}/test-small-queue",
        {"pattern": r"^transcription\.voice$", "definition": {"max-length": 2}, "apply-to": "queues", "priority": 1},
    )
    try:

        async def run():
            publisher = make_client(broker, "bloodbank", registry, publish_deadline=60)
            tasks = []
            while publisher.stats["nacks"] == 0:  # until the queue is full (the policy applies within moments)
                assert len(tasks) < 400, "no publish was ever nacked"
                body = json.dumps({"n": len(tasks)}).encode()
                tasks.append(asyncio.create_task(publisher.publish("transcription.voice.completed", body)))
                await asyncio.sleep(0.02)
            drained: list[str] = []
            while not all(t.done() for t in tasks):
                drained += [
                    m["properties"]["message_id"] for m in await asyncio.to_thread(broker.take, "transcription.voice")
                ]
                await asyncio.sleep(0.2)
            drained += [m["properties"]["message_id"] for m in broker.take("transcription.voice")]
            await publisher.close()
            return [t.result() for t in tasks], drained, publisher

        ids, drained, publisher = asyncio.run(run())
    finally:
        broker.node.api("DELETE", f"/api/policies/{vhost}/test-small-queue")
        broker.take("audit.events")
    assert publisher.stats["nacks"] > 0
    assert set(drained) == set(ids) and len(set(ids)) == len(ids) > 2
    print(f"{len(ids)} publishes, {publisher.stats['nacks']} nacks retried, {len(drained)} messages drained")
    assert registry.get_sample_value("events_published_total", {"service": "bloodbank", "outcome": "success"}) == len(
        ids
    )


def test_contract_errors_fail_fast(broker):
    """A queue the platform did not create, or a wrong password: raised at once, not retried."""

    async def run():
        wrong = Contract.from_dict({**broker.contracts["candystore"], "queue": {"name": "nope.events"}})
        consumer = EventClient(
            broker.node_urls("candystore"), wrong, cafile=broker.tls.cacert, metrics=Metrics(wrong, CollectorRegistry())
        )
        # RabbitMQ 4.3 checks permissions before existence on a passive declare (no enumeration
        # of queues one may not use), so a queue that is not the service's is ACCESS_REFUSED
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="configure access to queue 'nope.events'"):
            await asyncio.wait_for(consumer.consume(lambda m: asyncio.sleep(0), asyncio.Event()), 10)
        await consumer.close()
        bad = broker.url("candystore").replace(broker.passwords["svc-candystore"], "wrong-password", 1)
        client = EventClient([bad], wrong, cafile=broker.tls.cacert, metrics=Metrics(wrong, CollectorRegistry()))
        with pytest.raises(aiormq.exceptions.ProbableAuthenticationError):
            await asyncio.wait_for(client.publish("order.cart.created", b"{}"), 10)

    asyncio.run(run())


def test_an_unroutable_publish_fails_at_once(broker):
    """With the '#' audit binding taken away for a moment, a key nobody binds is returned
    (mandatory) and the client reports it instead of retrying."""
    vhost = RabbitNode.vhost_path(broker.settings.vhost)
    path = f"/api/bindings/{vhost}/e/bloodbank.events.v1/q/audit.events"
    broker.node.api("DELETE", f"{path}/%23")
    registry = CollectorRegistry()
    try:

        async def run():
            publisher = make_client(broker, "bloodbank", registry)
            with pytest.raises(PublishFailed, match="unroutable"):
                await asyncio.wait_for(publisher.publish("nobody.listens.here", b"{}"), 10)
            await publisher.close()

        asyncio.run(run())
    finally:
        broker.node.api("POST", path, {"routing_key": "#"})
    assert registry.get_sample_value("events_published_total", {"service": "bloodbank", "outcome": "failure"}) == 1
