"""The client contract and the reference client on a 3-node cluster shaped like prod
(tests/tools/rabbitmq_cluster.py: the operator's defaults, the rendered prod config and
definitions at boot, AMQPS only with the stack's certificate names, quorum queues with a
member on every node).

- the contract proof of test_client_contract.py, run unchanged against the cluster;
- issue 11, 2d: publishers keep publishing while the node holding the queue's leader is
  SIGKILLed: the one connected to that node loses its connection and retries on another node,
  the one on a surviving node rides out the election (any basic.nack is retried); every
  confirmed message is in the queue afterwards."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
from conftest import ROOT, require_tool
from prod_broker import ProdBroker, cluster_dns, prod_settings
from prometheus_client import CollectorRegistry
from test_broker_tls import issue_certificates

# the contract proof, collected again here with this module's `broker` (the cluster)
from test_client_contract import (  # noqa: F401
    test_a_publisher_declares_no_queue,
    test_declaring_the_exchange_is_access_refused,
    test_declaring_the_queue_with_other_arguments_is_a_precondition_failure,
    test_declaring_the_queue_with_the_published_arguments_changes_nothing,
    test_passive_declarations_succeed,
)
from tools.rabbitmq_cluster import RabbitCluster
from tools.rabbitmq_node import SERVER

from components.render import broker as render
from components.render import clients

sys.path.insert(0, str(ROOT / "clients" / "python"))
from event_client import Contract, EventClient, Metrics  # noqa: E402

pytestmark = [pytest.mark.rabbitmq, pytest.mark.cluster]
QUEUE = "transcription.voice"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    require_tool(SERVER)
    s = prod_settings()
    work = tmp_path_factory.mktemp("rabbitmq-cluster-client")
    files = issue_certificates(work, render.server_dns_names(s))
    cluster = RabbitCluster.for_stack(work / "cluster", s, tls=files, plaintext=False)
    try:
        cluster.start()
        assert len(cluster.nodes) == s.broker.replicas == 3
        definitions = render.definitions(s, render.placeholder_hashes(s))
        contracts = clients.client_contracts(s, definitions)
        with cluster_dns():
            yield ProdBroker(s, cluster.nodes, files, cluster.passwords, definitions, contracts, cluster=cluster)
    finally:
        cluster.close()


def test_the_contract_names_every_node(broker):
    for c in broker.contracts.values():
        assert len(c["amqps"]["nodes"]) == len(broker.nodes) == 3
        assert len(broker.node_urls(c["service"])) == 3


def test_publishers_lose_nothing_when_the_leaders_node_is_killed(broker):
    cluster = broker.cluster
    leader = cluster.leader(QUEUE)
    follower = (leader + 1) % 3
    urls = broker.node_urls("bloodbank")
    contract = Contract.from_dict(broker.contracts["bloodbank"])
    metrics = Metrics(contract, CollectorRegistry())

    def client(first: int) -> EventClient:  # round-robin starting at node `first`
        return EventClient(urls[first:] + urls[:first], contract, cafile=broker.tls.cacert, metrics=metrics)

    async def run():
        on_leader, on_follower = client(leader), client(follower)
        confirmed: dict[str, list[str]] = {"on the leader's node": [], "on a surviving node": []}
        stop = asyncio.Event()

        async def pump(c: EventClient, ids: list[str]) -> None:
            while not stop.is_set() and len(ids) < 3000:
                ids.append(await c.publish("transcription.voice.completed", json.dumps({"n": len(ids)}).encode()))

        async def wait(predicate, timeout: float) -> None:
            deadline = asyncio.get_running_loop().time() + timeout
            while not predicate():
                assert asyncio.get_running_loop().time() < deadline, {k: len(v) for k, v in confirmed.items()}
                await asyncio.sleep(0.05)

        pairs = list(zip((on_leader, on_follower), confirmed.values(), strict=True))
        tasks = [asyncio.create_task(pump(c, ids)) for c, ids in pairs]
        await wait(lambda: all(len(ids) >= 100 for ids in confirmed.values()), 60)
        assert on_leader.current == 0 and on_follower.current == 0  # on the nodes intended
        before = {k: len(v) for k, v in confirmed.items()}
        await asyncio.to_thread(cluster.kill, leader)
        await wait(lambda: all(len(confirmed[k]) >= before[k] + 200 for k in confirmed), 90)
        stop.set()
        await asyncio.gather(*tasks)
        for c in (on_leader, on_follower):
            await c.close()
        return confirmed, before, on_leader, on_follower

    confirmed, before, on_leader, on_follower = asyncio.run(run())
    cluster.restart(leader)
    cluster.wait_for_members(QUEUE, 3, timeout=90)
    got = [m["properties"]["message_id"] for m in broker.take(QUEUE)]
    broker.take("audit.events")
    sent = [i for ids in confirmed.values() for i in ids]
    per = ", ".join(f"{k}: {before[k]} before the kill, {len(v)} in all" for k, v in confirmed.items())
    print(
        f"confirmed {len(sent)} ({per}); "
        f"in the queue {len(got)}, distinct {len(set(got))}, duplicates {len(got) - len(set(got))}; "
        f"publisher on the killed node {on_leader.stats}, on a surviving node {on_follower.stats}"
    )
    assert len(set(sent)) == len(sent)
    assert set(got) == set(sent), f"lost {len(set(sent) - set(got))} confirmed messages"
    assert on_leader.stats["connection_losses"] >= 1 and on_leader.stats["connects"] >= 2
    assert on_leader.current != 0  # it moved to another node


def test_a_consumer_whose_node_is_killed_moves_on_and_handles_each_id_once(broker):
    """A transcription consumer connected to the node holding its queue's leader: the node is
    SIGKILLed mid-stream; the consumer reconnects to another node, the unacked messages are
    redelivered there, and the handler sees every confirmed id exactly once."""
    cluster = broker.cluster
    cluster.wait_for_members(QUEUE, 3, timeout=90)
    leader = cluster.leader(QUEUE)

    def client(service: str, first: int) -> EventClient:
        urls = broker.node_urls(service)
        contract = Contract.from_dict(broker.contracts[service])
        return EventClient(
            urls[first:] + urls[:first],
            contract,
            cafile=broker.tls.cacert,
            metrics=Metrics(contract, CollectorRegistry()),
        )

    async def run():
        consumer, publisher = client("transcription", leader), client("bloodbank", (leader + 1) % 3)
        handled: list[str] = []
        sent: list[str] = []

        async def handle(message) -> None:
            handled.append(message.message_id)
            await asyncio.sleep(0.002)  # some work: deliveries are in flight when the node dies

        async def wait(predicate, timeout: float) -> None:
            deadline = asyncio.get_running_loop().time() + timeout
            while not predicate():
                assert asyncio.get_running_loop().time() < deadline, (len(sent), len(handled), consumer.stats)
                await asyncio.sleep(0.05)

        stop = asyncio.Event()
        consuming = asyncio.create_task(consumer.consume(handle, stop))
        for i in range(600):
            sent.append(await publisher.publish("transcription.voice.completed", json.dumps({"n": i}).encode()))
            if i == 300:
                await wait(lambda: len(handled) >= 100, 30)
                assert consumer.current == 0
                await asyncio.to_thread(cluster.kill, leader)
        await wait(lambda: set(handled) >= set(sent), 90)
        stop.set()
        await consuming
        await publisher.close()
        return sent, handled, consumer

    sent, handled, consumer = asyncio.run(run())
    cluster.restart(leader)
    cluster.wait_for_members(QUEUE, 3, timeout=90)
    # What is still queued once the killed node is back can only be a redelivery of an id already
    # handled: a delivery whose ack died with the node. A 4.x quorum queue holds the messages checked
    # out to a consumer on an unreachable node until that node is back (or
    # consumer-disconnected-timeout, 60 s: docs/broker-cluster.md), so they return after the restart,
    # when this consumer has stopped (2026-12-03: 1 in a CI run, 2 in a local one); a running client
    # acks them as duplicates without calling the handler.
    late = [m["properties"]["message_id"] for m in broker.take(QUEUE)]
    broker.take("audit.events")
    print(
        f"sent {len(sent)}, handled {len(handled)} distinct {len(set(handled))}, consumer {consumer.stats},"
        f" redelivered after the restart {len(late)}"
    )
    assert sorted(handled) == sorted(set(sent))  # every confirmed id, each handled once
    assert set(late) <= set(handled), f"queued but never handled: {sorted(set(late) - set(handled))}"
    assert consumer.stats["connection_losses"] >= 1 and consumer.current != 0
