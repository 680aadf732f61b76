"""Benchmark: 1000 concurrent AMQP clients against a 3-node cluster with the prod topology,
with a node killed mid-run (issue 11, item 3). Not a test: a measurement.

    .venv/bin/pip install -r bench/requirements.txt     # matplotlib, for the plot
    .venv/bin/python bench/broker_load.py [--publishers 800] [--consumers 200] [--rate 0.25]

What it does (loopback only, bounded, stops by itself):
- boots a throwaway 3-node cluster (tests/tools/rabbitmq_cluster.py) with the prod stack's
  rendered definitions and configuration, as the Cluster Operator does;
- starts --workers client processes (pika's asyncio adapter, one event loop each, so that the
  client is not one saturated Python process); together they hold --publishers publishing
  connections (svc-bloodbank, confirms on, persistent, each at --rate messages/s with a
  random phase, key order.load.created) and --consumers consuming connections, half on
  candystore.events (svc-candystore), half on audit.events (svc-audit), manual acks;
  connections are spread round-robin over the three nodes;
- a nack or a lost connection means: publish the same message again on the next node (the
  client rule); latency is always counted from the first attempt, as the application sees it;
- after --kill-at seconds of load it SIGKILLs the node holding candystore.events' leader,
  restarts it --down seconds later, and keeps the load on until --duration;
- publish-confirm latency (first attempt -> confirm) and end-to-end latency (first attempt
  -> delivery to a consumer), p50/p99/max and throughput, per phase (steady, node down,
  after it is back), lost and duplicate counts per queue, each client process's event-loop
  lag (so a saturated client shows up), and the machine line;
- after the clients stop, reads out as the administrator the two source queues AND dlq.all and
  every dlq.<svc> (a quorum queue dead-letters a message that expires, is rejected or is
  returned more than x-delivery-limit times): a dead-lettered id is counted "not lost:
  dead-lettered (<x-death reason>)", only an id that is in none of them is "lost"; duplicated
  and lost ids are listed with each delivery (time, redelivered flag, x-delivery-count, node);
- per queue, when the redeliveries and the deliveries over 5 s end to end happened and when those
  were published (delivery_timing_per_queue: on RabbitMQ 4.x a quorum queue keeps what its
  consumers on a lost node hold until the node is back or consumer_disconnected_timeout expires);
- writes bench/results/broker_load.json and docs/broker-load.png (latency over time with
  the kill and the return marked).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

KEY = "order.load.created"
QUEUES = {"candystore.events": "svc-candystore", "audit.events": "svc-audit"}


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ============================================================================ client process
def worker(spec: dict, results: Any) -> None:
    """One client process: an asyncio loop holding spec['publishers'] + consumers connections."""
    raise_fd_limit()
    import pika
    import pika.exceptions
    from pika.adapters.asyncio_connection import AsyncioConnection
    from pika.spec import Basic

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    ports: list[int] = spec["ports"]
    t0, t_end, drain_end = spec["t0"], spec["t_end"], spec["drain_end"]
    confirms: list[tuple[float, float]] = []  # (wall time of confirm, latency)
    e2e: dict[str, list[tuple[float, float]]] = {q: [] for q in QUEUES}
    received: dict[str, list[int]] = {q: [] for q in QUEUES}
    # per queue: deliveries flagged redelivered, and the highest x-delivery-count header seen
    # (a quorum queue counts every return of a delivered-but-unacked message, e.g. when its
    # consumer's connection dies; past x-delivery-limit the message is dead-lettered)
    redelivered = {q: 0 for q in QUEUES}
    # per delivery, parallel to received: (wall time, redelivered flag, x-delivery-count, port)
    received_meta: dict[str, list[tuple[float, bool, int, int]]] = {q: [] for q in QUEUES}
    max_delivery_count = {q: 0 for q in QUEUES}
    channel_closes: dict[str, int] = {}
    confirmed_ids: list[int] = []
    confirmed_at: list[float] = []
    confirm_info: dict[int, dict] = {}
    attempts: dict[int, int] = {}
    counts = {
        "published": 0,
        "republished": 0,
        "nacks": 0,
        "connection_losses": 0,
        "consumer_connection_losses": 0,
        "connect_failures": 0,
    }
    lag: list[float] = []
    finished = asyncio.Event()
    connected = {"publishers": 0, "consumers": 0}

    consumer_ports: list[int] = spec["consumer_ports"]

    def params(user: str, node: int, among: list[int] = ports) -> pika.ConnectionParameters:
        return pika.ConnectionParameters(
            host="127.0.0.1",
            port=among[node % len(among)],
            virtual_host=spec["vhost"],
            credentials=pika.PlainCredentials(user, spec["passwords"][user]),
            heartbeat=30,
            socket_timeout=10,
            connection_attempts=1,
        )

    def close_connection(ch, reason) -> None:
        """A channel closed under a live connection: close the connection, which reconnects."""
        key = f"{type(reason).__name__}: {reason}"[:120]
        channel_closes[key] = channel_closes.get(key, 0) + 1
        conn = ch.connection
        if conn.is_open:
            conn.close()

    class Publisher:
        def __init__(self, k: int):
            self.k, self.node, self.seq = k, k, 0
            self.ch = None
            self.tag = 0
            self.opened = 0.0
            self.outstanding: dict[int, tuple[int, float, bytes]] = {}
            self.retry: list[tuple[int, float, bytes]] = []
            self.connect()

        def connect(self) -> None:
            AsyncioConnection(
                params("svc-bloodbank", self.node),
                on_open_callback=self.on_open,
                on_open_error_callback=self.on_error,
                on_close_callback=self.on_close,
                custom_ioloop=loop,
            )

        def on_open(self, conn) -> None:
            conn.channel(on_open_callback=self.on_channel)

        def on_channel(self, ch) -> None:
            ch.add_on_close_callback(close_connection)
            ch.confirm_delivery(ack_nack_callback=self.on_confirm, callback=lambda _: self.ready(ch))

        def ready(self, ch) -> None:
            self.ch, self.tag, self.opened = ch, 0, time.time()
            connected["publishers"] += 1
            pending, self.retry = self.retry, []
            for msg in pending:
                counts["republished"] += 1
                self.send(msg)

        def on_error(self, _conn, _exc) -> None:
            counts["connect_failures"] += 1
            self.reconnect()

        def on_close(self, _conn, _exc) -> None:
            if self.ch is not None:
                connected["publishers"] -= 1
                counts["connection_losses"] += 1
            self.ch = None
            self.retry += list(self.outstanding.values())
            self.outstanding.clear()
            self.reconnect()

        def reconnect(self) -> None:
            self.node += 1
            if time.time() < drain_end:
                loop.call_later(0.5, self.connect)

        def send(self, msg: tuple[int, float, bytes]) -> None:
            if self.ch is None or not self.ch.is_open:
                self.retry.append(msg)
                return
            try:
                self.ch.basic_publish(spec["exchange"], KEY, msg[2], properties=pika.BasicProperties(delivery_mode=2))
            except pika.exceptions.AMQPError:  # the connection is going down: on_close reconnects
                self.retry.append(msg)
                return
            self.tag += 1
            self.outstanding[self.tag] = msg
            attempts[msg[0]] = attempts.get(msg[0], 0) + 1

        def publish_new(self) -> None:
            msg_id = (spec["index"] << 40) | (self.k << 24) | self.seq
            self.seq += 1
            first = time.time()
            body = json.dumps({"id": msg_id, "t": first, "pad": "x" * spec["size"]}).encode()
            counts["published"] += 1
            self.send((msg_id, first, body))

        def on_confirm(self, frame) -> None:
            method = frame.method
            tags = (
                [t for t in self.outstanding if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
            )
            now = time.time()
            nack = isinstance(method, Basic.Nack)
            for t in tags:
                msg = self.outstanding.pop(t, None)
                if msg is None:
                    continue
                if nack:
                    counts["nacks"] += 1
                    counts["republished"] += 1
                    self.send(msg)
                else:
                    confirms.append((now, now - msg[1]))
                    confirmed_ids.append(msg[0])
                    confirmed_at.append(now)
                    confirm_info[msg[0]] = {
                        "published_s_after_t0": round(msg[1] - t0, 3),
                        "attempts": attempts[msg[0]],
                        "port": ports[self.node % len(ports)],
                        "channel_opened_s_after_t0": round(self.opened - t0, 2),
                        "multiple_ack": bool(method.multiple),
                    }

        async def run(self) -> None:
            interval = 1.0 / spec["rate"]
            await asyncio.sleep(max(0.0, t0 - time.time()) + random.random() * interval)
            while time.time() < t_end:
                self.publish_new()
                await asyncio.sleep(interval)

    class Consumer:
        def __init__(self, k: int, queue: str):
            self.k, self.node, self.queue, self.user = k, k, queue, QUEUES[queue]
            self.up = False
            self.conn: Any = None
            self.connect()

        def connect(self) -> None:
            self.conn = AsyncioConnection(
                params(self.user, self.node, consumer_ports),
                on_open_callback=lambda c: c.channel(on_open_callback=self.on_channel),
                on_open_error_callback=self.on_error,
                on_close_callback=self.on_close,
                custom_ioloop=loop,
            )

        def on_channel(self, ch) -> None:
            ch.add_on_close_callback(close_connection)
            ch.basic_qos(
                prefetch_count=spec["prefetch"], callback=lambda _: ch.basic_consume(self.queue, self.on_message)
            )
            self.up = True
            connected["consumers"] += 1

        def on_message(self, ch, method, props, body) -> None:
            now = time.time()
            doc = json.loads(body)
            e2e[self.queue].append((now, now - doc["t"]))
            received[self.queue].append(doc["id"])
            if method.redelivered:
                redelivered[self.queue] += 1
            count = int((props.headers or {}).get("x-delivery-count", 0))
            received_meta[self.queue].append(
                (now, bool(method.redelivered), count, consumer_ports[self.node % len(consumer_ports)])
            )
            max_delivery_count[self.queue] = max(max_delivery_count[self.queue], count)
            ch.basic_ack(method.delivery_tag)

        def on_error(self, _conn, _exc) -> None:
            counts["connect_failures"] += 1
            self.reconnect()

        def on_close(self, _conn, _exc) -> None:
            if self.up and not finished.is_set():  # not the clean close at the end
                connected["consumers"] -= 1
                counts["connection_losses"] += 1
                counts["consumer_connection_losses"] += 1
            self.up = False
            self.reconnect()

        def reconnect(self) -> None:
            self.node += 1
            if time.time() < drain_end and not finished.is_set():
                loop.call_later(0.5, self.connect)

    async def monitor() -> None:
        while time.time() < drain_end:
            t = time.monotonic()
            await asyncio.sleep(0.1)
            lag.append(time.monotonic() - t - 0.1)

    async def main() -> dict:
        mon = asyncio.ensure_future(monitor())
        offset = spec["index"]
        pubs, cons = [], []
        queues = list(QUEUES)
        # connections opened gradually, spread round-robin over the nodes
        for k in range(spec["consumers"]):
            cons.append(Consumer(offset + k, queues[k % len(queues)]))
            await asyncio.sleep(spec["stagger"])
        for k in range(spec["publishers"]):
            pubs.append(Publisher(offset + k))
            await asyncio.sleep(spec["stagger"])
        await asyncio.sleep(max(0.0, t0 - time.time()))
        at_start = dict(connected)
        await asyncio.gather(*(p.run() for p in pubs))
        # wait for outstanding confirms, then for consumers to catch up, bounded by drain_end
        while time.time() < drain_end and any(p.outstanding or p.retry for p in pubs):
            await asyncio.sleep(0.2)
        quiet = 0.0
        last = sum(len(v) for v in received.values())
        while time.time() < drain_end and quiet < 3.0:
            await asyncio.sleep(0.5)
            now = sum(len(v) for v in received.values())
            quiet = quiet + 0.5 if now == last else 0.0
            last = now
        finished.set()
        for c in cons:  # a clean close returns any unacked delivery to its queue at once
            if c.conn.is_open:
                c.conn.close()
        await asyncio.sleep(1.0)
        mon.cancel()
        return {
            "index": spec["index"],
            "connected_at_start": at_start,
            "unconfirmed_at_end": sum(len(p.outstanding) + len(p.retry) for p in pubs),
            "counts": counts,
            "confirms": confirms,
            "confirmed_ids": confirmed_ids,
            "confirmed_at": confirmed_at,
            "confirm_info": confirm_info,
            "e2e": e2e,
            "received": received,
            "redelivered": redelivered,
            "received_meta": received_meta,
            "max_delivery_count": max_delivery_count,
            "channel_closes": channel_closes,
            "loop_lag": lag,
            "cpu_seconds": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
        }

    try:
        out = loop.run_until_complete(main())
    except Exception as exc:  # report, never hang the parent
        out = {"index": spec["index"], "error": repr(exc)}
    results.put(out)


# ============================================================================ statistics
def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(samples: list[tuple[float, float]], start: float, end: float) -> dict:
    lat = [v for t, v in samples if start <= t < end]
    ms = [v * 1000 for v in lat]
    return {
        "count": len(ms),
        "per_second": round(len(ms) / (end - start), 1) if end > start else None,
        "p50_ms": round(pct(ms, 0.50), 1),
        "p99_ms": round(pct(ms, 0.99), 1),
        "max_ms": round(max(ms), 1) if ms else None,
        "mean_ms": round(statistics.fmean(ms), 1) if ms else None,
    }


def machine() -> dict:
    model = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor(),
    )
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(), "system": platform.platform()}


# ============================================================================ the run
def run(args: argparse.Namespace) -> dict:
    from tools.rabbitmq_cluster import RabbitCluster

    from components import settings as S
    from dryrun.runner import config_from_yaml

    fd_limit = raise_fd_limit()  # inherited by the broker nodes and the client processes
    prod = S.from_config_map(config_from_yaml((ROOT / "Pulumi.prod.yaml").read_text())[0], "prod")
    work = Path(tempfile.mkdtemp(prefix="broker-load-"))
    cluster = RabbitCluster.for_stack(work / "cluster", prod)
    procs: list[Any] = []
    events: dict[str, float] = {}
    try:
        cluster.start()
        overview = cluster.api("GET", "/api/overview")
        print(f"cluster up in {cluster.boot_seconds:.1f}s: RabbitMQ {overview['rabbitmq_version']}", flush=True)
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        connect_s = (args.publishers + args.consumers) / args.workers * args.stagger
        t0 = time.time() + connect_s + args.settle
        t_end = t0 + args.duration
        drain_end = t_end + args.drain
        passwords = {u: cluster.passwords[u] for u in ("svc-bloodbank", *QUEUES.values())}
        consumer_ports = cluster.amqp_ports()
        if args.consumers_avoid_victim:  # no consumer on the node that will be killed
            consumer_ports = [p for i, p in enumerate(consumer_ports) if i != cluster.leader("candystore.events")]
        for w in range(args.workers):
            spec = {
                "index": w,
                "ports": cluster.amqp_ports(),
                "consumer_ports": consumer_ports,
                "vhost": cluster.vhost,
                "exchange": prod.broker.topology.exchange,
                "passwords": passwords,
                "publishers": args.publishers // args.workers + (w < args.publishers % args.workers),
                "consumers": args.consumers // args.workers + (w < args.consumers % args.workers),
                "rate": args.rate,
                "prefetch": args.prefetch,
                "size": args.size,
                "stagger": args.stagger,
                "t0": t0,
                "t_end": t_end,
                "drain_end": drain_end,
            }
            p = ctx.Process(target=worker, args=(spec, results), daemon=True)
            p.start()
            procs.append(p)
        print(f"{args.workers} client processes connecting; load from t0 for {args.duration}s", flush=True)
        time.sleep(max(0.0, t0 + args.kill_at - 1 - time.time()))
        connections = len(cluster.api("GET", "/api/connections?columns=name"))  # the API lags a few seconds
        print(f"t0+{time.time() - t0:.1f}s: {connections} client connections on the cluster", flush=True)
        time.sleep(max(0.0, t0 + args.kill_at - time.time()))
        victim = cluster.leader("candystore.events")
        leaders = {q: cluster.nodes[cluster.leader(q)].name for q in QUEUES}
        killed_port = cluster.nodes[victim].amqp_port
        events["kill"] = time.time()
        cluster.kill(victim)
        print(
            f"t0+{events['kill'] - t0:.1f}s: SIGKILL {cluster.nodes[victim].name} (candystore.events leader)",
            flush=True,
        )
        cluster.wait_for_leader("candystore.events", not_on=victim, timeout=30)
        events["new_leader_seen"] = time.time()
        time.sleep(max(0.0, events["kill"] + args.down - time.time()))
        events["restart"] = time.time()
        cluster.restart(victim)
        events["back"] = time.time()
        cluster.wait_for_members("candystore.events", 3, timeout=120)
        events["members_3"] = time.time()
        print(f"t0+{events['back'] - t0:.1f}s: node back; 3 members at t0+{events['members_3'] - t0:.1f}s", flush=True)
        out = []
        deadline = drain_end + 60
        while len(out) < len(procs) and time.time() < deadline:
            try:
                out.append(results.get(timeout=5))
            except Exception:  # queue.Empty: keep waiting until the deadline
                continue
        for p in procs:
            p.join(timeout=10)
        errors = [r["error"] for r in out if "error" in r]
        if errors or len(out) < len(procs):
            raise RuntimeError(f"client processes failed: {errors} ({len(out)}/{len(procs)} reported)")
        leftover = drain_leftover(cluster)
        result = report(args, cluster, overview, out, t0, t_end, events, connections, fd_limit, leftover, killed_port)
        result["leaders_before_the_kill"] = leaders
        result["killed_node"] = cluster.nodes[victim].name
        if args.keep:
            result["broker_logs"] = str(work / "cluster")  # node<N>/log/*.log
        return result
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()  # by PID: multiprocessing's own handle
                p.join(timeout=5)
        cluster.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)  # ~90 MB of node data per run


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _epoch(value: Any) -> float | None:
    """x-death 'time' (an AMQP timestamp, whole seconds) as epoch seconds."""
    if value is None:
        return None
    if hasattr(value, "timestamp"):  # pika decodes it as a naive datetime in UTC
        import datetime as dt

        return value.replace(tzinfo=dt.UTC).timestamp()
    return float(value)


def drain_leftover(cluster) -> dict:
    """Read out, as the administrator, after the clients stopped, every queue a confirmed id can
    have ended up in, so that 'lost' means lost, not late and not dead-lettered:
    - the two source queues (consumers behind at the end of the drain window, requeues);
    - dlq.all and every dlq.<svc>: a quorum queue dead-letters a message that expired
      (x-message-ttl), was rejected, or was returned more than x-delivery-limit times
      (every return of a delivered-but-unacked message counts, e.g. when its consumer's
      connection dies). Each dead letter is attributed to its source queue with the reason,
      count and time of its x-death entry for that queue."""
    import pika

    from components.render import broker as render

    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=cluster.amqp_ports()[0],
        virtual_host=cluster.vhost,
        credentials=pika.PlainCredentials(render.ADMIN_USER, cluster.passwords[render.ADMIN_USER]),
    )
    # the broker's own view first: a dead letter still held by its source queue (at-least-once
    # dead-lettering keeps it there until the DLQ confirms it) is not visible over AMQP
    stats = {}
    for q in [*QUEUES, *(q for q in cluster.queue_names() if q.startswith("dlq."))]:
        info = cluster.queue(q)
        stats[q] = {k: v for k, v in info.items() if k.startswith("messages") and not k.endswith("_details")}
        stats[q] |= {k: v for k, v in info.items() if "dlx" in k or "dead" in k}
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    queued: dict[str, list[int]] = {q: [] for q in QUEUES}
    dead: dict[str, dict[int, dict]] = {q: {} for q in QUEUES}
    dlq_counts: dict[str, int] = {}
    dlqs = [q for q in cluster.queue_names() if q.startswith("dlq.")]
    ch.basic_qos(prefetch_count=1000)
    deadline = time.monotonic() + 300  # bounded; a queue of 10^5 messages drains in well under that
    for q in [*QUEUES, *dlqs]:
        # 3 s without a delivery: empty (requeues of the clients' unacked deliveries included)
        for method, props, body in ch.consume(q, auto_ack=True, inactivity_timeout=3.0):
            if method is None or time.monotonic() > deadline:
                break
            msg_id = json.loads(body or b"{}")["id"]
            if q in QUEUES:
                queued[q].append(msg_id)
                continue
            dlq_counts[q] = dlq_counts.get(q, 0) + 1
            headers: Any = (props.headers or {}) if props else {}
            deaths: list[dict[str, Any]] = headers.get("x-death", [])
            for death in deaths:
                source = _text(death.get("queue", ""))
                if source not in QUEUES:
                    continue
                entry = dead[source].setdefault(
                    msg_id,
                    {
                        "reason": _text(death.get("reason", "")),
                        "count": int(death.get("count", 0)),
                        "time": _epoch(death.get("time")),
                        "in": [],
                    },
                )
                entry["in"].append(q)
        ch.cancel()
    conn.close()
    return {"queued": queued, "dead_lettered": dead, "dlq_messages": dlq_counts, "queue_stats": stats}


def _merge(counters: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counters:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return dict(sorted(total.items(), key=lambda kv: -kv[1]))


def timing_of_deliveries(out: list[dict], t0: float) -> dict[str, dict]:
    """When redeliveries and late deliveries (over 5 s end to end) happened, per queue. A queue
    returns the unacked messages of a dead node's consumers only once it treats those consumers
    as gone: this shows when that was (e2e and received_meta are parallel, one row a delivery)."""
    delivery_timing: dict[str, dict] = {}
    for q in QUEUES:
        rows = [
            (t, lat, redel)
            for r in out
            for (t, lat), (_, redel, _, _) in zip(r["e2e"][q], r["received_meta"][q], strict=True)
        ]
        redel_t = sorted(t - t0 for t, _, redel in rows if redel)
        late = sorted((t - t0, lat, redel) for t, lat, redel in rows if lat > 5.0)
        delivery_timing[q] = {
            "redelivered deliveries: first / last s after t0": (
                [round(redel_t[0], 2), round(redel_t[-1], 2)] if redel_t else None
            ),
            "redelivered deliveries: end-to-end p50 / max ms": (
                [
                    round(pct([lat * 1000 for _, lat, redel in rows if redel], 0.5), 1),
                    round(max(lat * 1000 for _, lat, redel in rows if redel), 1),
                ]
                if redel_t
                else None
            ),
            "deliveries over 5 s end to end": len(late),
            "  of them flagged redelivered": sum(1 for *_, redel in late if redel),
            "  delivered first / last s after t0": [round(late[0][0], 2), round(late[-1][0], 2)] if late else None,
            "  published first / last s after t0": (
                [round(min(t - lat for t, lat, _ in late), 2), round(max(t - lat for t, lat, _ in late), 2)]
                if late
                else None
            ),
        }
    return delivery_timing


def report(args, cluster, overview, out, t0, t_end, events, connections, fd_limit, leftover, killed_port) -> dict:
    confirms = [s for r in out for s in r["confirms"]]
    e2e = {q: [s for r in out for s in r["e2e"][q]] for q in QUEUES}
    all_e2e = [s for q in QUEUES for s in e2e[q]]
    confirmed = {i for r in out for i in r["confirmed_ids"]}
    confirm_info = {int(i): v for r in out for i, v in r["confirm_info"].items()}
    confirmed_at = {i: t for r in out for i, t in zip(r["confirmed_ids"], r["confirmed_at"], strict=True)}
    phases = {
        "steady (before the kill)": (t0 + args.warmup, events["kill"]),
        "node down (kill -> node back)": (events["kill"], events["back"]),
        "after the node is back": (events["back"], t_end),
        "whole run": (t0, t_end + args.drain),
    }
    per_queue = {}
    deliveries_of: dict[str, dict[int, list[dict]]] = {q: {} for q in QUEUES}
    for q in QUEUES:
        for r in out:
            for i, (t, redel, count, port) in zip(r["received"][q], r["received_meta"][q], strict=True):
                deliveries_of[q].setdefault(i, []).append(
                    {"s_after_t0": round(t - t0, 3), "redelivered": redel, "x_delivery_count": count, "port": port}
                )
    delivery_timing = timing_of_deliveries(out, t0)
    for q in QUEUES:
        ids = [i for r in out for i in r["received"][q]]
        unique = set(ids)
        queued = set(leftover["queued"][q])
        dead = leftover["dead_lettered"][q]
        reasons: dict[str, int] = {}
        for d in dead.values():
            reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
        undelivered_dead = sorted((confirmed & set(dead)) - unique - queued, key=lambda i: confirmed_at[i])
        lost = sorted(confirmed - unique - queued - set(dead), key=lambda i: confirmed_at[i])
        per_queue[q] = {
            "deliveries": len(ids),
            "unique": len(unique),
            "duplicates": len(ids) - len(unique),
            "duplicated ids with their deliveries (first 20)": [
                {"id": i, "confirmed_s_after_t0": round(confirmed_at[i] - t0, 2) if i in confirmed_at else None}
                | {"deliveries": d}
                | {
                    k: v
                    for k, v in confirm_info.get(i, {}).items()
                    if k in ("published_s_after_t0", "attempts", "port")
                }
                for i, d in sorted(deliveries_of[q].items(), key=lambda kv: kv[1][0]["s_after_t0"])
                if len(d) > 1
            ][:20],
            "deliveries flagged redelivered": sum(r["redelivered"][q] for r in out),
            "highest x-delivery-count seen by a consumer": max(r["max_delivery_count"][q] for r in out),
            "still queued when the clients stopped (read out after)": len(queued),
            "dead-lettered (read out of the DLQs), by x-death reason": reasons,
            "not lost: dead-lettered, never delivered to a consumer": len(undelivered_dead),
            "dead-lettered ids never delivered (first 20)": [
                {
                    "id": i,
                    "confirmed_s_after_t0": round(confirmed_at[i] - t0, 2),
                    "dead_lettered_s_after_t0 (x-death, whole seconds)": (
                        round(dead[i]["time"] - t0) if dead[i]["time"] is not None else None
                    ),
                    "reason": dead[i]["reason"],
                    "x_death_count": dead[i]["count"],
                    "found_in": dead[i]["in"],
                    **confirm_info.get(i, {}),
                }
                for i in undelivered_dead[:20]
            ],
            "lost (confirmed, neither delivered nor queued nor dead-lettered)": len(lost),
            "lost ids (first 20)": [
                {
                    "id": i,
                    "confirmed_s_after_t0": round(confirmed_at[i] - t0, 2),
                    "deliveries_from_the_other_queue": {o: deliveries_of[o].get(i, []) for o in QUEUES if o != q},
                    **confirm_info.get(i, {}),
                }
                for i in lost[:20]
            ],
        }
    counts = {k: sum(r["counts"][k] for r in out) for k in out[0]["counts"]}
    lag = [v * 1000 for r in out for v in r["loop_lag"]]
    return {
        "machine": machine(),
        "command": "python bench/broker_load.py " + " ".join(sys.argv[1:]),
        "rabbitmq": {"version": overview["rabbitmq_version"], "erlang": overview["erlang_version"]},
        "cluster": {
            "nodes": len(cluster.nodes),
            "boot_seconds": round(cluster.boot_seconds, 1),
            "topology": "prod (Pulumi.prod.yaml), definitions loaded at boot",
        },
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "fd_limit": fd_limit,
        "client_connections_before_the_kill (management API)": connections,
        "connected_at_t0_by_clients": {
            k: sum(r["connected_at_start"][k] for r in out) for k in ("publishers", "consumers")
        },
        "events_seconds_after_t0": {k: round(v - t0, 2) for k, v in events.items()},
        "killed_node_amqp_port": killed_port,
        "publish_confirm_latency": {name: summary(confirms, a, b) for name, (a, b) in phases.items()},
        "end_to_end_latency": {name: summary(all_e2e, a, b) for name, (a, b) in phases.items()},
        "end_to_end_latency_per_queue_whole_run": {
            q: summary(e2e[q], phases["whole run"][0], phases["whole run"][1]) for q in QUEUES
        },
        "counts": counts
        | {"confirmed": len(confirmed), "unconfirmed_at_end": sum(r["unconfirmed_at_end"] for r in out)},
        "per_queue": per_queue,
        "delivery_timing_per_queue": delivery_timing,
        "dlq_messages_read_out": leftover["dlq_messages"],
        "queue_stats_before_the_read_out (management API)": leftover["queue_stats"],
        "channel_closes_by_reason (publishers and consumers)": _merge([r["channel_closes"] for r in out]),
        "client_processes": {
            "count": len(out),
            "cpu_seconds": [round(r["cpu_seconds"], 1) for r in out],
            "event_loop_lag_ms": {
                "p50": round(pct(lag, 0.5), 1),
                "p99": round(pct(lag, 0.99), 1),
                "max": round(max(lag), 1),
            },
        },
        "_series": {"confirms": confirms, "e2e": all_e2e, "t0": t0},
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series, t0 = result["_series"], result["_series"]["t0"]
    ev = result["events_seconds_after_t0"]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(13, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for name, samples, color in (
        ("publish → confirm", series["confirms"], "tab:blue"),
        ("end to end", series["e2e"], "tab:orange"),
    ):
        by_second: dict[int, list[float]] = {}
        for t, v in samples:
            by_second.setdefault(int(t - t0), []).append(v * 1000)
        xs = sorted(by_second)
        ax.plot(xs, [pct(by_second[x], 0.5) for x in xs], color=color, label=f"{name} p50")
        ax.plot(xs, [pct(by_second[x], 0.99) for x in xs], color=color, linestyle="--", label=f"{name} p99")
        ax.plot(xs, [max(by_second[x]) for x in xs], color=color, linestyle=":", alpha=0.6, label=f"{name} max")
        if name.startswith("publish"):
            ax2.plot(xs, [len(by_second[x]) for x in xs], color=color, label="confirms/s")
        else:
            ax2.plot(xs, [len(by_second[x]) for x in xs], color=color, label="deliveries/s (2 queues)")
    ax.axhline(100, color="grey", linewidth=0.8, label="requirement 100 ms")
    marks = (("kill", "red", "node SIGKILLed"), ("restart", "purple", "restart begins"), ("back", "green", "node back"))
    for a in (ax, ax2):
        for key, color, _ in marks:
            a.axvline(ev[key], color=color, linewidth=1.2)
    top = ax2.get_xaxis_transform()  # x in data, y in axes fraction
    for key, color, text in marks:
        ax2.text(ev[key], 0.92, f" {text}", color=color, va="top", fontsize=8, transform=top)
    ax.set_yscale("log")
    ax.set_ylabel("latency per second (ms, log)")
    m = result["machine"]
    p = result["parameters"]
    n_conn = sum(result["connected_at_t0_by_clients"].values())
    ax.set_title(
        f"{n_conn} AMQP connections on a 3-node RabbitMQ {result['rabbitmq']['version']} "
        f"cluster (prod topology), {p['publishers']} publishers × {p['rate']}/s\n"
        f"{m['nproc']} cores {m['cpu']}, Python {m['python']}, loopback, shared machine",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax2.set_ylabel("per second")
    ax2.set_xlabel("seconds after the load started")
    ax2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--publishers", type=int, default=800)
    ap.add_argument("--consumers", type=int, default=200)
    ap.add_argument("--rate", type=float, default=0.25, help="messages per second per publisher")
    ap.add_argument("--prefetch", type=int, default=100, help="consumer prefetch (basic.qos) per channel")
    ap.add_argument("--size", type=int, default=256, help="padding bytes per message")
    ap.add_argument("--workers", type=int, default=4, help="client processes")
    ap.add_argument("--duration", type=float, default=100.0, help="seconds of load")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of load left out of the steady phase")
    ap.add_argument("--kill-at", type=float, default=35.0, help="seconds of load before the SIGKILL")
    ap.add_argument("--down", type=float, default=20.0, help="seconds the node stays down")
    ap.add_argument(
        "--drain", type=float, default=20.0, help="seconds allowed after the load for confirms and deliveries"
    )
    ap.add_argument("--stagger", type=float, default=0.01, help="seconds between connection opens per process")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds between the last connection open and the load")
    ap.add_argument(
        "--consumers-avoid-victim",
        action="store_true",
        help="consumers connect only to the nodes not holding candystore.events' leader (the one killed)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the cluster's data and node logs (path in the result)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "broker_load.json")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "broker-load.png")
    args = ap.parse_args()
    assert args.kill_at + args.down < args.duration, "the node must be back before the load ends"
    result = run(args)
    plot(result, args.plot)
    series = result.pop("_series")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    del series
    printable = {k: v for k, v in result.items() if k not in ("parameters",)}
    print(json.dumps(printable, indent=2))
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
