"""docs/services.md, run: every code block marked ``# snippet: <name>`` is executed against a
real RabbitMQ shaped like prod (AMQPS only, the rendered prod definitions loaded at boot), as
the service it is written for. The seed-style blocks (before the change) fail with exactly the
errors the page documents; the changed blocks connect, consume and dead-letter."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import textwrap
import types
import uuid

import aio_pika
import aiormq.exceptions
import pytest
from conftest import ROOT, require_tool
from prod_broker import ProdBroker, cluster_dns, prod_broker
from tools.rabbitmq_node import SERVER

pytestmark = pytest.mark.rabbitmq

DOC = ROOT / "docs" / "services.md"
SNIPPET = re.compile(r"```python\n# snippet: ([a-z-]+)\n(.*?)```", re.S)
VHOST = "events-prod"


def snippets() -> dict[str, str]:
    found = SNIPPET.findall(DOC.read_text())
    names = [name for name, _ in found]
    assert len(names) == len(set(names)), f"duplicate snippet names in {DOC.name}"
    return dict(found)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    require_tool(SERVER)
    with prod_broker(tmp_path_factory.mktemp("rabbitmq-migration")) as b, cluster_dns():
        yield b


def namespace(b: ProdBroker, service: str, **extra) -> dict:
    """What the service's code sees: its settings from the landing zone's Secret, the modules."""
    contract = b.contracts[service]
    settings = types.SimpleNamespace(
        rabbit_url=b.url(service),  # the Secret's `url`, pointed at the test node's port
        ca_file=str(b.tls.cacert),  # /mnt/secrets/ca.crt
        exchange_name=contract["exchange"]["name"],
        queue_name=contract["queue"]["name"] if contract["queue"] else None,
    )
    return {"aio_pika": aio_pika, "ssl": ssl, "json": json, "settings": settings, **extra}


async def run(name: str, ns: dict) -> dict:
    """Run one block of the page as the body of an async function; its variables land in ``ns``."""
    source = "async def __snippet():\n" + textwrap.indent(snippets()[name], "    ") + "\n    return locals()\n"
    exec(compile(source, f"{DOC.name}#{name}", "exec"), ns)
    found = await ns["__snippet"]()
    ns.update(found)
    return found


async def connected(b: ProdBroker, service: str, **extra) -> dict:
    ns = namespace(b, service, **extra)
    await run("connect", ns)
    return ns


def test_every_block_is_run_by_this_test():
    assert set(snippets()) == {
        "seed-connect",
        "connect",
        "seed-candystore",
        "candystore",
        "candystore-arguments",
        "seed-consumer",
        "seed-consumer-queue",
        "consumer",
        "publish",
    }


def test_before_the_seed_connection_does_not_trust_the_broker(broker):
    with pytest.raises(aiormq.exceptions.AMQPConnectionError) as exc:
        asyncio.run(run("seed-connect", namespace(broker, "candystore")))
    assert "CERTIFICATE_VERIFY_FAILED" in str(exc.value)
    assert "self-signed certificate in certificate chain" in str(exc.value)


def test_candystore_declaration_before_and_after(broker):
    before = broker.vhost_definitions()

    async def go():
        ns = await connected(broker, "candystore")
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as exc:
            await run("seed-candystore", ns)
        assert str(exc.value.args[0]) == (
            f"PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-strategy' for queue 'candystore.events' in "
            f"vhost '{VHOST}': received none but current is the value 'at-least-once' of type 'longstr'"
        )
        await ns["connection"].close()
        for after in ("candystore", "candystore-arguments"):
            ns = await connected(broker, "candystore")
            await run(after, ns)
            assert ns["queue"].name == "candystore.events"
            await ns["connection"].close()
        return ns

    ns = asyncio.run(go())
    # the page's literal arguments are exactly what the platform publishes for candystore
    assert ns["queue_args"] == broker.contracts["candystore"]["queue"]["arguments"]
    assert broker.vhost_definitions() == before


def test_seed_consumer_before(broker):
    async def go():
        ns = await connected(broker, "transcription")
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as exc:
            await run("seed-consumer", ns)
        assert str(exc.value.args[0]) == (
            f"ACCESS_REFUSED - configure access to exchange 'bloodbank.events.v1' in vhost '{VHOST}' refused for user "
            "'svc-transcription'"
        )
        await ns["connection"].close()
        # its queue declaration on its own, with the service's queue and with a name of its own
        ns = await connected(broker, "transcription")
        ns["exchange"] = await ns["channel"].get_exchange("bloodbank.events.v1")
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as exc:
            await run("seed-consumer-queue", ns)
        assert str(exc.value.args[0]) == (
            f"PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-exchange' for queue 'transcription.voice' in "
            f"vhost '{VHOST}': received none but current is the value 'bloodbank.events.dlq' of type 'longstr'"
        )
        await ns["connection"].close()
        ns = await connected(broker, "transcription")
        ns["settings"].queue_name = "my_service_queue"
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as exc:
            await run("seed-consumer-queue", ns)
        assert str(exc.value.args[0]) == (
            f"ACCESS_REFUSED - configure access to queue 'my_service_queue' in vhost '{VHOST}' refused for user "
            "'svc-transcription'"
        )
        await ns["connection"].close()

    asyncio.run(go())


def test_after_the_consumer_connects_consumes_and_dead_letters(broker):
    handled: list[dict] = []

    async def handle(body: dict) -> None:
        if body["poison"]:
            raise ValueError("cannot transcribe this")
        handled.append(body)

    async def go():
        consumer = await connected(broker, "transcription", handle=handle)
        await run("consumer", consumer)
        publisher = await connected(broker, "bloodbank")
        events = [{"event_id": uuid.uuid4().hex, "poison": poison} for poison in (False, True, False)]
        for event in events:
            publisher["event"] = event
            await run("publish", publisher)
        deadline = asyncio.get_running_loop().time() + 30
        while len(handled) < 2 or not (dead := broker.take("dlq.transcription")):
            assert asyncio.get_running_loop().time() < deadline, f"handled {handled}"
            await asyncio.sleep(0.2)
        await consumer["connection"].close()
        await publisher["connection"].close()
        return events, dead

    events, dead = asyncio.run(go())
    assert [e["event_id"] for e in handled] == [e["event_id"] for e in events if not e["poison"]]
    ((message,),) = [dead]
    assert message["properties"]["message_id"] == events[1]["event_id"]
    (death,) = message["properties"]["headers"]["x-death"]
    assert (death["queue"], death["reason"], death["exchange"]) == (
        "transcription.voice",
        "rejected",
        "bloodbank.events.v1",
    )
    assert broker.take("transcription.voice") == []
    broker.take("audit.events")
