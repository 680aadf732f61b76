"""Benchmark: the reference client (clients/python EventClient) against a bare client, as a
ratio measured in the same run on the same cluster (issue 18, point 4). Not a test: a measurement.

    .venv/bin/python bench/client_ratio.py [--rounds 4] [--connections 50] [--rate 2]

What it does (loopback only, bounded, stops by itself):
- boots one throwaway 3-node cluster (tests/tools/rabbitmq_cluster.py) with the prod stack's
  rendered definitions and configuration, AMQPS only with the stack's certificate names (as
  tests/test_client_cluster.py does: the reference client speaks AMQPS only);
- runs the two clients alternately, --rounds times (order ref, bare / bare, ref / ...), each in a
  fresh client process (one asyncio loop), as svc-bloodbank publishing to the events exchange
  with key order.load.created (routed to candystore.events and audit.events), over
  --connections connections spread round-robin over the three nodes:
  * reference: ``EventClient.publish`` (persistent, confirms, mandatory, message id and
    created-at header, the metric contract, retry on nack or connection loss);
  * bare: aio-pika, the same library, one channel with publisher confirms per connection,
    ``exchange.publish`` of a persistent message, awaiting its confirm (up to 30 s, the reference
    client's publish deadline); no retry, no id, no metrics; a failure is only counted;
- each client gets the same two phases:
  * open loop: --rate publishes/s per connection on a fixed schedule (random phase; each publish
    its own task, so a slow confirm does not slow the schedule): the same offered load for both;
    confirm latency (publish call -> confirm) p50/p99/max and the achieved confirms/s;
  * closed loop: --inflight publishes in flight per connection, each awaiting its confirm, as
    fast as they come back: the throughput each client can reach, and its latency;
  each phase runs in a fresh client process; the first --warmup seconds of each phase are left
  out; the source queues are purged (admin) before each phase so that both clients see the same
  queue lengths and none fills up (candystore.events: x-max-length 10 000, reject-publish); client
  CPU seconds per 1000 confirms are measured in the client process; a round where either client
  saw an error (a nack, a failed publish) is marked invalid and left out of the medians;
- prints and writes bench/results/client_ratio.json: per round and client the figures, and the
  ratios reference / bare per round and their median, with the machine line and the load
  average at the start and the end. Absolute figures move with the machine's load; the ratios
  of one run are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
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
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "clients" / "python")]

KEY = "order.load.created"
SOURCE_QUEUES = ("candystore.events", "audit.events")
# The bare client waits this long for a confirm, then counts an error (it never retries): as long
# as the reference client's publish_deadline, so that a slow confirm on a loaded machine is
# latency for both, not an error for one of them.
BARE_CONFIRM_TIMEOUT = 30.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def stats(latencies: list[float], seconds: float) -> dict:
    ms = [v * 1000 for v in latencies]
    return {
        "confirmed": len(ms),
        "per_second": round(len(ms) / seconds, 1),
        "p50_ms": round(pct(ms, 0.5), 2),
        "p99_ms": round(pct(ms, 0.99), 2),
        "max_ms": round(max(ms), 2) if ms else None,
        "mean_ms": round(statistics.fmean(ms), 2) if ms else None,
    }


# ============================================================================ client process
def client_process(spec: dict, results: Any) -> None:
    from prod_broker import cluster_dns

    try:
        with cluster_dns():  # the certificate's names resolve to 127.0.0.1 in this process
            out = asyncio.run(client_main(spec))
    except Exception as exc:  # report, never hang the parent
        out = {"error": repr(exc)}
    results.put(out)


async def client_main(spec: dict) -> dict:
    import ssl

    import aio_pika
    from event_client import Contract, EventClient, Metrics
    from prometheus_client import CollectorRegistry

    kind, urls, n = spec["kind"], spec["urls"], spec["connections"]
    contract = Contract.from_dict(spec["contract"])
    body = json.dumps({"pad": "x" * spec["size"]}).encode()
    errors: dict[str, int] = {}

    def error(exc: BaseException) -> None:
        key = type(exc).__name__
        errors[key] = errors.get(key, 0) + 1

    publish: list[Any] = []  # one coroutine function per connection: await it -> confirmed
    closers: list[Any] = []
    if kind == "reference":
        metrics = Metrics(contract, CollectorRegistry())
        for c in range(n):
            client = EventClient(urls[c % 3 :] + urls[: c % 3], contract, cafile=spec["cafile"], metrics=metrics)
            await client.channel()

            async def publish_reference(client=client) -> None:
                await client.publish(KEY, body)

            publish.append(publish_reference)
            closers.append(client.close)
    else:
        tls = ssl.create_default_context(cafile=spec["cafile"])
        for c in range(n):
            connection = await aio_pika.connect(urls[c % 3], ssl_context=tls, timeout=10)
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(contract.exchange, ensure=True)  # passive, as the reference

            async def publish_bare(exchange=exchange) -> None:
                message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await exchange.publish(message, KEY, timeout=BARE_CONFIRM_TIMEOUT)

            publish.append(publish_bare)
            closers.append(connection.close)

    async def timed(pub, samples: list[tuple[float, float]]) -> None:
        start = time.monotonic()
        try:
            await pub()
        except Exception as exc:  # bare: no retry; reference: PublishFailed after its deadline
            error(exc)
            return
        samples.append((start, time.monotonic() - start))

    out: dict[str, Any] = {"kind": kind}
    if spec["phase"] == "open_loop":
        await open_loop(spec, publish, timed, out)
    else:
        await closed_loop(spec, publish, timed, out)
    out["errors"] = errors
    for close in closers:
        try:
            await asyncio.wait_for(close(), timeout=5)
        except Exception as exc:  # a close that fails changes no figure
            error(exc)
    return out


async def open_loop(spec: dict, publish: list[Any], timed, out: dict) -> None:
    """The same offered load for both: spec['rate'] publishes/s per connection on a fixed
    schedule, each publish its own task (a slow confirm does not slow the schedule)."""
    n = len(publish)
    samples: list[tuple[float, float]] = []
    interval = 1.0 / spec["rate"]
    begin = time.monotonic()
    end = begin + spec["open_s"]
    tasks: set[asyncio.Task] = set()

    async def schedule(pub) -> None:
        at = begin + random.random() * interval
        while at < end:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            task = asyncio.ensure_future(timed(pub, samples))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            at += interval

    cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    await asyncio.gather(*(schedule(p) for p in publish))
    if tasks:
        await asyncio.wait(set(tasks), timeout=30)
    cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu0
    kept = [lat for t, lat in samples if t >= begin + spec["warmup"]]
    out["open_loop"] = stats(kept, spec["open_s"] - spec["warmup"]) | {
        "offered_per_second": round(n * spec["rate"], 1),
        "cpu_s_per_1000_confirms": round(1000 * cpu / max(1, len(samples)), 3),
    }


async def closed_loop(spec: dict, publish: list[Any], timed, out: dict) -> None:
    """spec['inflight'] publishes in flight per connection, each awaiting its confirm."""
    n = len(publish)
    closed: list[tuple[float, float]] = []
    begin = time.monotonic()
    end = begin + spec["closed_s"]

    async def pump(pub) -> None:
        while time.monotonic() < end:
            await timed(pub, closed)

    cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    await asyncio.gather(*(pump(p) for p in publish for _ in range(spec["inflight"])))
    cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu0
    kept = [lat for t, lat in closed if begin + spec["warmup"] <= t < end]
    out["closed_loop"] = stats(kept, spec["closed_s"] - spec["warmup"]) | {
        "in_flight": n * spec["inflight"],
        "cpu_s_per_1000_confirms": round(1000 * cpu / max(1, len(closed)), 3),
    }


# ============================================================================ the run
def machine() -> dict:
    from broker_load import machine as load_machine

    return load_machine()


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def run(args: argparse.Namespace) -> dict:
    from prod_broker import ProdBroker, prod_settings
    from test_broker_tls import issue_certificates
    from tools.rabbitmq_cluster import RabbitCluster

    from components.render import broker as render
    from components.render import clients

    s = prod_settings()
    work = Path(tempfile.mkdtemp(prefix="client-ratio-"))
    load_start = os.getloadavg()
    files = issue_certificates(work, render.server_dns_names(s))
    cluster = RabbitCluster.for_stack(work / "cluster", s, tls=files, plaintext=False)
    rounds: list[dict] = []
    try:
        cluster.start()
        overview = cluster.api("GET", "/api/overview")
        print(f"cluster up in {cluster.boot_seconds:.1f}s: RabbitMQ {overview['rabbitmq_version']}", flush=True)
        definitions = render.definitions(s, render.placeholder_hashes(s))
        contracts = clients.client_contracts(s, definitions)
        broker = ProdBroker(s, cluster.nodes, files, cluster.passwords, definitions, contracts, cluster=cluster)
        ctx = mp.get_context("spawn")
        spec_base = {
            "urls": broker.node_urls("bloodbank"),
            "contract": contracts["bloodbank"],
            "cafile": str(files.cacert),
            "connections": args.connections,
            "rate": args.rate,
            "inflight": args.inflight,
            "open_s": args.open_seconds,
            "closed_s": args.closed_seconds,
            "warmup": args.warmup,
            "size": args.size,
        }
        for r in range(args.rounds):
            order = ("reference", "bare") if r % 2 == 0 else ("bare", "reference")
            this: dict[str, Any] = {"order": list(order)}
            for kind in order:
                got: dict[str, Any] = {"kind": kind, "errors": {}, "load_average_1m_at_start": {}}
                for phase in ("open_loop", "closed_loop"):
                    # empty queues before each phase: candystore.events holds at most 10 000
                    # (x-overflow reject-publish), and a full queue nacks
                    for q in SOURCE_QUEUES:
                        cluster.purge(q)
                    results = ctx.Queue()
                    load = os.getloadavg()[0]
                    spec = spec_base | {"kind": kind, "phase": phase}
                    p = ctx.Process(target=client_process, args=(spec, results), daemon=True)
                    p.start()
                    try:
                        part = results.get(timeout=args.open_seconds + args.closed_seconds + 120)
                    finally:
                        p.join(timeout=15)
                        if p.is_alive():
                            p.kill()  # by PID: multiprocessing's own handle
                            p.join(timeout=5)
                    if "error" in part:
                        raise RuntimeError(f"{kind} client failed: {part['error']}")
                    got[phase] = part[phase]
                    got["errors"][phase] = part["errors"]
                    got["load_average_1m_at_start"][phase] = round(load, 2)
                this[kind] = got
                ol, cl = got["open_loop"], got["closed_loop"]
                print(
                    f"round {r + 1} {kind:9s}: open {ol['per_second']}/s p99 {ol['p99_ms']} ms; "
                    f"closed {cl['per_second']}/s p99 {cl['p99_ms']} ms; errors {got['errors']}; "
                    f"load {got['load_average_1m_at_start']}",
                    flush=True,
                )
            ref, bare = this["reference"], this["bare"]
            # a nack or a failed publish makes the two clients do different work: say so
            this["valid (no client saw an error)"] = not any(e for c in (ref, bare) for e in c["errors"].values())
            this["ratio reference / bare"] = {
                f"{phase} {field}": ratio(ref[phase][field], bare[phase][field])
                for phase in ("open_loop", "closed_loop")
                for field in ("per_second", "p50_ms", "p99_ms", "cpu_s_per_1000_confirms")
            }
            rounds.append(this)
    finally:
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)
    keys = list(rounds[0]["ratio reference / bare"])
    median = {}
    valid = [r for r in rounds if r["valid (no client saw an error)"]]
    for k in keys:
        values = [v for r in valid if (v := r["ratio reference / bare"][k]) is not None]
        median[k] = round(statistics.median(values), 3) if values else None
    return {
        "machine": machine(),
        "load_average_start_end": [list(load_start), list(os.getloadavg())],
        "command": "python bench/client_ratio.py " + " ".join(sys.argv[1:]),
        "rabbitmq": {"version": overview["rabbitmq_version"], "erlang": overview["erlang_version"]},
        "cluster": {"nodes": len(cluster.nodes), "boot_seconds": round(cluster.boot_seconds, 1), "amqps": True},
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "clients": {
            "reference": "clients/python/event_client.py EventClient.publish (aio-pika; retries, id, metrics)",
            "bare": "aio-pika exchange.publish on a confirm channel, persistent, no retry",
        },
        "median ratio reference / bare over the rounds": median,
        "rounds without any client error (the median is over these)": len(valid),
        "rounds": rounds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4, help="rounds; each runs both clients, order alternating")
    ap.add_argument("--connections", type=int, default=50, help="publishing connections per client")
    ap.add_argument("--rate", type=float, default=2.0, help="open loop: publishes/s per connection")
    ap.add_argument("--inflight", type=int, default=1, help="closed loop: publishes in flight per connection")
    ap.add_argument("--open-seconds", type=float, default=20.0)
    ap.add_argument("--closed-seconds", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds left out at the start of each phase")
    ap.add_argument("--size", type=int, default=256, help="padding bytes per message")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "client_ratio.json")
    args = ap.parse_args()
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
