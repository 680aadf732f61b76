"""Benchmark: confirmed, persistent publish latency and throughput on the rendered topology.

    .venv/bin/python bench/broker.py [--messages 5000] [--window 64]

Starts a throwaway RabbitMQ node on loopback ports (tests/tools/rabbitmq_node.py) that boots
with the dev stack's rendered definitions, then publishes persistent messages to the events
exchange as svc-bloodbank with publisher confirms, routed to the audit consumer's quorum
queue (bound with '#'):
- single: one message at a time, each waiting for its confirm (the strictest publisher);
- batched: up to --window messages in flight, confirms handled as they arrive.
Latency is publish -> confirm per message. Loopback, one node, this machine's disk: it
measures the broker and the topology, not the network of a real cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import pika  # noqa: E402
from pika.spec import Basic  # noqa: E402
from tools.rabbitmq_node import RabbitNode  # noqa: E402

from components import settings as S  # noqa: E402
from components.render import broker as render  # noqa: E402
from dryrun.runner import config_from_yaml  # noqa: E402

KEY = "bench.load.published"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def single(params: pika.ConnectionParameters, exchange: str, n: int, body: bytes) -> tuple[list[float], float]:
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2)
    latencies = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        ch.basic_publish(exchange, KEY, body, properties=props, mandatory=True)
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - start
    conn.close()
    return latencies, elapsed


def batched(
    params: pika.ConnectionParameters, exchange: str, n: int, body: bytes, window: int
) -> tuple[list[float], float, int]:
    state = {"next": 0, "tag": 0, "sent": {}, "lat": [], "nacks": 0, "start": 0.0, "end": 0.0}
    props = pika.BasicProperties(delivery_mode=2)

    def publish_more(ch):
        while len(state["sent"]) < window and state["next"] < n:
            state["next"] += 1
            state["tag"] += 1
            state["sent"][state["tag"]] = time.perf_counter()
            ch.basic_publish(exchange, KEY, body, properties=props)

    def on_confirm(frame, ch, conn):
        now = time.perf_counter()
        m = frame.method
        tags = [t for t in state["sent"] if t <= m.delivery_tag] if m.multiple else [m.delivery_tag]
        for t in tags:
            state["lat"].append(now - state["sent"].pop(t))
        if isinstance(m, Basic.Nack):
            state["nacks"] += len(tags)
        if state["next"] >= n and not state["sent"]:
            state["end"] = now
            conn.close()
        else:
            publish_more(ch)

    def on_channel(ch, conn):
        ch.confirm_delivery(lambda frame: on_confirm(frame, ch, conn))
        state["start"] = time.perf_counter()
        publish_more(ch)

    def on_open(conn):
        conn.channel(on_open_callback=lambda ch: on_channel(ch, conn))

    conn = pika.SelectConnection(params, on_open_callback=on_open, on_close_callback=lambda c, r: c.ioloop.stop())
    conn.ioloop.start()
    return state["lat"], state["end"] - state["start"], state["nacks"]


def report(name: str, lat: list[float], elapsed: float, n: int) -> dict:
    ms = [x * 1000 for x in lat]
    row = {
        "mode": name,
        "messages": n,
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.mean(ms), 2),
        "throughput_msg_s": round(n / elapsed),
    }
    print(
        f"{name:8s} n={n:6d}  p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  max {row['max_ms']:7.2f} ms  "
        f"mean {row['mean_ms']:6.2f} ms  {row['throughput_msg_s']:6d} msg/s"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--size", type=int, default=1024, help="message body bytes")
    args = parser.parse_args()

    s = S.from_config_map(config_from_yaml((ROOT / "Pulumi.dev.yaml").read_text())[0], "dev")
    passwords = {u: secrets.token_urlsafe(24) for u in render.users_and_secrets(s)}
    hashes = {u: render.password_hash(p, render.stable_salt(u, 0)) for u, p in passwords.items()}
    body = os.urandom(args.size)
    with tempfile.TemporaryDirectory() as work:
        defs = Path(work) / "definitions"
        defs.mkdir()
        (defs / "definitions.json").write_text(json.dumps(render.definitions(s, hashes)))
        config = render.additional_config(s).replace(render.DEFINITIONS_DIR, str(defs))
        node = RabbitNode(
            Path(work) / "node", extra_config=config, admin=(render.ADMIN_USER, passwords[render.ADMIN_USER])
        )
        try:
            node.start()
            overview = node.api("GET", "/api/overview")
            assert overview and node.amqp_port, "the node started without its management API or plaintext listener"
            version = overview["rabbitmq_version"]
            params = pika.ConnectionParameters(
                "127.0.0.1", node.amqp_port, s.vhost, pika.PlainCredentials("svc-bloodbank", passwords["svc-bloodbank"])
            )
            queue = s.services["audit"].queue or "audit.events"
            print(
                f"RabbitMQ {version} on {platform.machine()}, {os.cpu_count()} cores; "
                f"persistent {args.size}-byte messages, publisher confirms, quorum queue '{queue}'"
            )
            lat, elapsed = single(params, s.broker.topology.exchange, args.messages, body)
            report("single", lat, elapsed, args.messages)
            node.api("DELETE", f"/api/queues/{RabbitNode.vhost_path(s.vhost)}/audit.events/contents")
            lat, elapsed, nacks = batched(params, s.broker.topology.exchange, args.messages, body, args.window)
            report(f"window{args.window}", lat, elapsed, args.messages)
            if nacks:
                print(f"  {nacks} nacks")
        finally:
            node.close()


if __name__ == "__main__":
    main()
