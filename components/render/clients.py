"""The per-service client contract: what one service needs to connect to the broker, read
back from the rendered RabbitMQ definitions (``broker.definitions``) so that it cannot
disagree with what the broker loads. ``make plan`` writes one file per service user to
``build/<stack>/rabbitmq/clients/<service>.json``.

The rule it encodes: the platform owns exchanges, queues and bindings. A service declares
the exchange and its queue *passively* (or its queue with exactly ``queue.arguments``);
anything else is refused by the broker (docs/services.md lists the errors)."""

from __future__ import annotations

import re

from ..settings import StackSettings
from . import broker
from . import redis as redis_render

SERVICE_USER_PREFIX = "svc-"
# Shared naming conventions (BRIEF): each service's landing zone delivers its broker
# credentials through these Kubernetes objects.
SECRET_KEYS = {"url": "url", "password": "password", "caCert": "ca.crt"}
MOUNT_PATH = "/mnt/secrets"
CA_CERT_SECRET = "broker-ca-cert"


def node_hosts(s: StackSettings) -> list[str]:
    """Each broker pod's own name (Cluster Operator: StatefulSet ``<cluster>-server`` behind the
    headless service ``<cluster>-nodes``); the server certificate covers them by wildcard."""
    b = s.broker
    return [
        f"{b.cluster_name}-server-{i}.{b.cluster_name}-nodes.{b.namespace}.svc.cluster.local" for i in range(b.replicas)
    ]


def _allows(pattern: str, name: str) -> bool:
    return re.fullmatch(pattern, name) is not None


def _metrics(s: StackSettings) -> dict:
    m = s.observability.metrics
    latency_slos = sorted(
        {slo.latency_threshold_seconds for slo in s.observability.slos if slo.latency_threshold_seconds}
    )
    return {
        "eventsPublished": {
            "name": m.events_published,
            "type": "counter",
            "labels": [m.service_label, m.outcome_label],
            "outcomes": {"confirmed": m.success_value, "failed": m.failure_value},
        },
        "endToEndLatency": {
            "name": m.end_to_end_latency,
            "type": "histogram",
            "labels": [m.service_label],
            # the latency SLO's threshold and the p99 alert's threshold must be bucket bounds
            "requiredBuckets": sorted({*latency_slos, s.observability.thresholds.e2e_p99_seconds}),
        },
    }


def _endpoint(s: StackSettings) -> dict:
    if s.broker.backend != "in-cluster":  # the managed broker's host is known only after `pulumi up`
        return {"endpoint": None, "nodes": [], "port": broker.AMQPS}
    return {
        "endpoint": broker.amqps_endpoint(s),
        "nodes": [broker.amqps_endpoint(s, host=h) for h in node_hosts(s)],
        "port": broker.AMQPS,
    }


def client_contracts(s: StackSettings, definitions: dict) -> dict[str, dict]:
    """service -> its contract, derived from the rendered ``definitions`` (not from the
    settings layout): the service's user, its permissions, the exchanges, queues and bindings
    those permissions reach."""
    (vhost,) = (v["name"] for v in definitions["vhosts"])
    permissions = {p["user"]: p for p in definitions["permissions"] if p["vhost"] == vhost}
    queues = {q["name"]: q for q in definitions["queues"] if q["vhost"] == vhost}
    bindings = [b for b in definitions["bindings"] if b["vhost"] == vhost]
    exchanges = {e["name"]: e for e in definitions["exchanges"] if e["vhost"] == vhost}
    endpoint, metrics = _endpoint(s), _metrics(s)

    contracts = {}
    for user in (u["name"] for u in definitions["users"]):
        if not user.startswith(SERVICE_USER_PREFIX):
            continue
        service = user.removeprefix(SERVICE_USER_PREFIX)
        perm = permissions[user]
        (exchange,) = (e for e in exchanges.values() if _allows(perm["write"], e["name"]))
        own = [q for name, q in queues.items() if _allows(perm["configure"], name)]
        consumer = [q for q in own if "x-dead-letter-exchange" in q["arguments"]]
        queue = consumer[0] if consumer else None
        dead_letter = None
        if queue:
            args = queue["arguments"]
            dlx, dl_key = args["x-dead-letter-exchange"], args["x-dead-letter-routing-key"]
            to_dlx = [b for b in bindings if b["source"] == dlx]
            dead_letter = {
                "exchange": dlx,
                "routingKey": dl_key,
                "strategy": args.get("x-dead-letter-strategy"),
                # dlq.<service> when it has its own (readable by the service), and the shared
                # queues every dead letter reaches (dlq.all: platform only)
                "queue": next(
                    (b["destination"] for b in to_dlx if b["routing_key"] == dl_key and b["destination"] in queues),
                    None,
                ),
                "sharedQueues": sorted(b["destination"] for b in to_dlx if b["routing_key"] == "#"),
            }
        replay = dead_letter["routingKey"] if dead_letter else None
        keys = sorted(
            b["routing_key"]
            for b in bindings
            if queue and b["destination"] == queue["name"] and b["source"] == exchange["name"]
        )
        contracts[service] = {
            "service": service,
            "user": user,
            "vhost": vhost,
            "role": "consumer and publisher" if queue else "publisher",
            "exchange": {
                "name": exchange["name"],
                "type": exchange["type"],
                "durable": exchange["durable"],
                "declare": "passive",
            },
            "queue": None
            if queue is None
            else {
                "name": queue["name"],
                "durable": queue["durable"],
                "declare": "passive, or exactly these arguments",
                "arguments": queue["arguments"],
                "bindings": [k for k in keys if k != replay],
                # dead letters shovelled back to the exchange return to this queue only
                "replayBinding": replay if replay in keys else None,
            },
            "deadLetter": dead_letter,
            "permissions": {k: perm[k] for k in ("configure", "write", "read")},
            "amqps": endpoint,
            "credentials": {
                "keyVault": {
                    "password": f"broker-{service}",
                    "connectionString": f"broker-{service}-url",
                    "caCertificate": CA_CERT_SECRET,
                },
                "kubernetes": {
                    "namespace": service,
                    "serviceAccount": service,
                    "secretProviderClass": f"{service}-secrets",
                    "secret": f"{service}-broker",
                    "secretKeys": SECRET_KEYS,
                    "mountPath": MOUNT_PATH,
                },
            },
            "metrics": metrics,
            # Azure Managed Redis, for a service with `redis: true` (components/render/redis.py)
            "redis": redis_render.contract(s, service) if s.services[service].redis else None,
        }
    return contracts
