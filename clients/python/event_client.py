"""Reference client for the event backbone's broker (aio-pika).

What a service needs, and nothing more:

- connects over AMQPS, trusting only the stack's CA (``ca.crt`` from the ``<svc>-broker``
  Secret), to every broker node in turn (round-robin) and reconnects to the next node when
  its connection is lost;
- declares *passively*: the platform owns exchanges, queues and bindings (``Contract``, read
  from ``build/<stack>/rabbitmq/clients/<service>.json``);
- publishes persistent messages with publisher confirms; a ``basic.nack`` (full queue,
  leader election) or a lost connection means "not stored yet": it retries, on another node
  if the connection went, until ``publish_deadline``; an unroutable message is an error;
- consumes with manual acks: the handler returns -> ack; it raises -> reject without requeue,
  so the broker dead-letters the message (``x-death`` says why); it raises ``Requeue`` ->
  ``basic.reject(requeue=True)``, back to the queue (the queue's delivery limit dead-letters it
  after a few tries; a nack with requeue would stop counting on RabbitMQ 4.3);
- handles each message id once: redeliveries happen (a lost ack, a publisher's retry after
  a lost confirm), so ids already handled are acked without calling the handler again;
- emits the metric contract: ``events_published_total{service,outcome}`` and
  ``event_end_to_end_latency_seconds{service}`` (names and required buckets from the contract);
- optionally tracks correlation (``correlation=CorrelationTracker(...)``, correlation.py, on
  Azure Managed Redis): a child event inherits its parent's correlation id (AMQP
  ``correlation_id``, header ``event-parent-id``), recorded once the broker has confirmed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aio_pika
import aiormq.exceptions
import redis.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractIncomingMessage
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

if TYPE_CHECKING:
    from correlation import CorrelationTracker

log = logging.getLogger("event_client")

NACKS_BEFORE_RECONNECT = 3
CREATED_AT_HEADER = "event-created-at-ms"  # set by the publisher; the consumer measures end-to-end latency from it
PARENT_HEADER = "event-parent-id"  # the event that caused this one (correlation tracking)
# Redis trouble while tracking correlation: logged and counted, never fails a publish.
REDIS_ERRORS = (redis.exceptions.RedisError, ConnectionError, OSError, asyncio.TimeoutError)
# Connection-level trouble: reconnect (to the next node) and retry.
CONNECTION_ERRORS = (
    aiormq.exceptions.AMQPConnectionError,  # includes ConnectionClosed
    aiormq.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)
# The contract is broken (wrong credentials, a missing exchange or queue): retrying cannot help.
CONTRACT_ERRORS = (
    aiormq.exceptions.ProbableAuthenticationError,
    aiormq.exceptions.ChannelAccessRefused,
    aiormq.exceptions.ChannelNotFoundEntity,
    aiormq.exceptions.ChannelPreconditionFailed,
)


class Requeue(Exception):
    """Raise from a handler for a transient failure: the message goes back to the queue."""


class PublishFailed(Exception):
    """The broker did not confirm the message before the deadline (or could not route it)."""


@dataclass(frozen=True)
class Contract:
    """The parts of ``rabbitmq/clients/<service>.json`` the client uses."""

    service: str
    exchange: str
    queue: str | None
    metrics: dict

    @classmethod
    def load(cls, path: str | Path) -> Contract:
        doc = json.loads(Path(path).read_text())
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: dict) -> Contract:
        queue = doc["queue"]["name"] if doc.get("queue") else None
        return cls(service=doc["service"], exchange=doc["exchange"]["name"], queue=queue, metrics=doc["metrics"])


class Metrics:
    """The metric contract, with the names and required buckets the contract file carries."""

    def __init__(self, contract: Contract, registry: CollectorRegistry = REGISTRY):
        pub, lat = contract.metrics["eventsPublished"], contract.metrics["endToEndLatency"]
        self.service = contract.service
        self._outcomes = pub["outcomes"]
        self.published = Counter(
            pub["name"], "Events this service tried to publish, by outcome", pub["labels"], registry=registry
        )
        buckets = sorted({*Histogram.DEFAULT_BUCKETS[:-1], *lat["requiredBuckets"]})
        self.latency = Histogram(
            lat["name"],
            "Time from an event's creation to its processing",
            lat["labels"],
            buckets=buckets,
            registry=registry,
        )

    def publish_outcome(self, confirmed: bool) -> None:
        self.published.labels(self.service, self._outcomes["confirmed" if confirmed else "failed"]).inc()

    def processed(self, message: AbstractIncomingMessage) -> None:
        created_ms = (message.headers or {}).get(CREATED_AT_HEADER)
        if isinstance(created_ms, (int, float)):
            self.latency.labels(self.service).observe(max(0.0, time.time() - created_ms / 1000))


class EventClient:
    """One AMQPS connection to one of ``urls`` at a time. Use one client for publishing and
    another for consuming (flow control on a publishing connection must not stall consumers)."""

    def __init__(
        self,
        urls: Sequence[str],
        contract: Contract,
        *,
        cafile: str | Path,
        metrics: Metrics | None = None,
        confirm_timeout: float = 5.0,
        publish_deadline: float = 30.0,
        prefetch: int = 32,
        remember_ids: int = 100_000,
        correlation: CorrelationTracker | None = None,
    ):
        if not urls:
            raise ValueError("no broker URL")
        self.urls = list(urls)
        self.contract = contract
        self.metrics = metrics or Metrics(contract)
        self.confirm_timeout, self.publish_deadline, self.prefetch = confirm_timeout, publish_deadline, prefetch
        self._tls = ssl.create_default_context(cafile=str(cafile))  # verifies the chain and the host name
        self._next = 0
        self.current: int | None = None  # index in ``urls`` of the node this client is connected to
        self._lock = asyncio.Lock()
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._closing: set[asyncio.Future] = set()
        self._lost = asyncio.Event()  # set when the current connection closes, for whatever reason
        self._handled: OrderedDict[str, None] = OrderedDict()
        self._remember = remember_ids
        self._in_hand = 0  # deliveries being handled right now
        self.correlation = correlation
        self.stats = {"connects": 0, "nacks": 0, "connection_losses": 0, "duplicates": 0, "dead_lettered": 0}
        self.stats["correlation_errors"] = 0

    # ------------------------------------------------------------------ connection
    async def channel(self) -> AbstractChannel:
        """An open channel, connecting round-robin to the next node that accepts."""
        async with self._lock:
            if self._channel is not None and not self._channel.is_closed and not self._lost.is_set():
                return self._channel
            await self._drop()
            delay = 0.2
            while True:
                url = self.urls[self._next % len(self.urls)]
                self._next += 1
                try:
                    connection = await aio_pika.connect(url, ssl_context=self._tls, timeout=10)
                except CONTRACT_ERRORS:
                    raise
                except CONNECTION_ERRORS as exc:
                    log.warning("broker %s unreachable (%s); trying the next node", _safe(url), exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                self._lost = asyncio.Event()
                connection.close_callbacks.add(_setter(self._lost))
                self._connection = connection  # from here on, _drop() closes it on any failure
                try:
                    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                    await channel.set_qos(prefetch_count=self.prefetch)
                    self._exchange = await channel.get_exchange(self.contract.exchange, ensure=True)  # passive
                except CONTRACT_ERRORS:
                    await self._drop()
                    raise
                except CONNECTION_ERRORS as exc:
                    log.warning("broker %s failed during setup (%s); trying the next node", _safe(url), exc)
                    await self._drop()
                    continue
                self._channel = channel
                self.current = (self._next - 1) % len(self.urls)
                self.stats["connects"] += 1
                return channel

    async def _drop(self) -> None:
        connection, self._connection, self._channel, self._exchange = self._connection, None, None, None
        if connection is None or connection.is_closed:
            return
        # A node that died never answers connection.close (and the close cannot be cancelled):
        # close in the background, never wait for it.
        closing = asyncio.ensure_future(connection.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        await asyncio.wait([closing], timeout=2)

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    # ------------------------------------------------------------------ publishing
    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None = None,
        created_at: float | None = None,
        parent_id: str | None = None,
    ) -> str:
        """Publish until the broker confirms; returns the message id (keep it: it is the
        consumers' de-duplication key). Raises PublishFailed after ``publish_deadline``.
        ``parent_id``: the event that caused this one (correlation tracking)."""
        message_id = message_id or uuid.uuid4().hex
        headers: dict = {CREATED_AT_HEADER: int((created_at or time.time()) * 1000)}
        correlation_id = None
        if self.correlation is not None:
            correlation_id = await self._correlation_for(parent_id, message_id)
        if parent_id:
            headers[PARENT_HEADER] = parent_id
        message = aio_pika.Message(
            body,
            message_id=message_id,
            correlation_id=correlation_id,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=headers,
        )
        deadline, delay, nacks = time.monotonic() + self.publish_deadline, 0.05, 0
        while True:
            try:
                await self.channel()
                assert self._exchange is not None
                await self._exchange.publish(message, routing_key, mandatory=True, timeout=self.confirm_timeout)
                self.metrics.publish_outcome(True)
                if self.correlation is not None and correlation_id is not None:
                    await self._record(message_id, correlation_id, parent_id, routing_key)
                return message_id
            except aiormq.exceptions.PublishError as exc:  # returned: no queue is bound for this key
                self.metrics.publish_outcome(False)
                raise PublishFailed(f"{routing_key}: unroutable ({exc})") from exc
            except aiormq.exceptions.DeliveryError as exc:  # basic.nack: not stored (queue full, leader moving)
                self.stats["nacks"] += 1
                nacks += 1
                log.info("publish of %s nacked (%r); retrying", message_id, exc)
                if nacks % NACKS_BEFORE_RECONNECT == 0:
                    # A channel opened while a quorum queue elected its leader can stay nacked
                    # (measured on RabbitMQ 3.10): a fresh connection, on the next node, is not.
                    async with self._lock:
                        await self._drop()
            except CONTRACT_ERRORS:
                self.metrics.publish_outcome(False)
                raise
            except CONNECTION_ERRORS as exc:  # confirm lost with the connection: retry on the next node
                self.stats["connection_losses"] += 1
                log.warning("publish of %s interrupted (%r); reconnecting", message_id, exc)
                async with self._lock:
                    await self._drop()
            if time.monotonic() > deadline:
                self.metrics.publish_outcome(False)
                raise PublishFailed(f"{message_id}: not confirmed within {self.publish_deadline}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _correlation_for(self, parent_id: str | None, message_id: str) -> str:
        assert self.correlation is not None
        try:
            return await self.correlation.correlation_for(parent_id, message_id)
        except REDIS_ERRORS as exc:  # best-effort: the event matters, its correlation less
            self.stats["correlation_errors"] += 1
            log.warning("correlation lookup for %s failed (%r)", parent_id, exc)
            return message_id

    async def _record(self, message_id: str, correlation_id: str, parent_id: str | None, key: str) -> None:
        assert self.correlation is not None
        try:
            await self.correlation.record(message_id, correlation_id, parent_id, key)
        except REDIS_ERRORS as exc:
            self.stats["correlation_errors"] += 1
            log.warning("correlation of %s not recorded (%r)", message_id, exc)

    # ------------------------------------------------------------------ consuming
    async def consume(self, handler: Callable[[AbstractIncomingMessage], Awaitable[None]], stop: asyncio.Event) -> None:
        """Deliver the service's queue to ``handler`` until ``stop`` is set, reconnecting
        (round-robin) whenever the connection is lost."""
        if not self.contract.queue:
            raise ValueError(f"{self.contract.service} has no queue: it only publishes")
        while not stop.is_set():
            try:
                channel = await self.channel()
                queue = await channel.get_queue(self.contract.queue, ensure=True)  # passive

                async def on_message(message: AbstractIncomingMessage) -> None:
                    await self._deliver(message, handler)

                tag = await queue.consume(on_message)
                closed = asyncio.ensure_future(self._lost.wait())
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait([closed, stopped], return_when=asyncio.FIRST_COMPLETED)
                for f in (closed, stopped):
                    f.cancel()
                if stop.is_set():  # graceful: no new deliveries, let the ones in hand finish and ack
                    await queue.cancel(tag)
                    await self._settled(timeout=10)
                else:
                    self.stats["connection_losses"] += 1
                    log.warning("consumer connection lost; reconnecting")
            except CONTRACT_ERRORS:
                raise
            except CONNECTION_ERRORS as exc:
                self.stats["connection_losses"] += 1
                log.warning("consumer connection failed (%r); reconnecting", exc)
                async with self._lock:
                    await self._drop()
                await asyncio.sleep(0.2)
        await self.close()

    async def _settled(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._in_hand and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _deliver(self, message: AbstractIncomingMessage, handler) -> None:
        key = message.message_id or ""  # a message without an id cannot be de-duplicated
        self._in_hand += 1
        try:
            # Deliveries run concurrently: an id is claimed before its handler runs, so a copy
            # arriving meanwhile (or later, as a redelivery) is acked without running it again.
            if key and key in self._handled:
                self.stats["duplicates"] += 1
                await message.ack()
                return
            if key:
                self._handled[key] = None
                while len(self._handled) > self._remember:
                    self._handled.popitem(last=False)
            try:
                await handler(message)
            except Requeue:
                self._handled.pop(key, None)
                # reject, not nack: from RabbitMQ 4.3 only a reject counts towards the delivery limit
                await message.reject(requeue=True)
                return
            except Exception:
                self._handled.pop(key, None)
                log.exception("handler failed on %s; dead-lettering it", key)
                self.stats["dead_lettered"] += 1
                await message.reject(requeue=False)  # to the dead-letter exchange, with x-death
                return
            self.metrics.processed(message)
            await message.ack()
        except CONNECTION_ERRORS as exc:  # the ack was lost with the connection: the broker redelivers
            log.warning("could not settle %s (%r); it will be redelivered", key, exc)
        finally:
            self._in_hand -= 1


def _setter(event: asyncio.Event):
    return lambda *_: event.set()


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    head, _, tail = url.rpartition("@")
    return f"{head.split('://')[0]}://***@{tail}" if head else url
