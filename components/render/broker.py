"""Pure renders for the broker: topology -> RabbitMQ definitions, and the Kubernetes
objects (RabbitmqCluster, StorageClass, PodDisruptionBudget, NetworkPolicies,
ServiceMonitor). No Pulumi here: tests, ``make plan`` and a real RabbitMQ check these."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..settings import LOAD_TEST_PERMISSION, LOAD_TEST_USER, ServiceTopology, StackSettings, Topology
from . import labelled_namespace, pod_security_labels
from .images import pull

HASHING = "rabbit_password_hashing_sha256"
# Definitions imported at boot stop RabbitMQ from creating its default user, so the
# definitions carry the administrator the Cluster Operator logs in as (same credential,
# handed to the operator through spec.secretBackend.externalSecret).
ADMIN_USER = "platform-admin"
DEFINITIONS_DIR = "/etc/rabbitmq/definitions"
# The queue-depth reader KEDA's rabbitmq scaler signs in as (components/landing.py).
MONITOR_USER = "keda-monitor"
MONITOR_SECRET = "broker-keda-monitor"
PLACEHOLDER_HASH = "[password-hash]"

AMQP, AMQPS = 5672, 5671
MANAGEMENT, MANAGEMENT_TLS = 15672, 15671
PROMETHEUS, PROMETHEUS_TLS = 15692, 15691
EPMD, DIST, CLI_DIST = 4369, 25672, "35672-35682"


# ----------------------------------------------------------------- topology
@dataclass(frozen=True)
class QueuePlan:
    service: str
    queue: str
    bindings: tuple[str, ...]
    arguments: dict
    dead_letter_queue: str | None


def user_name(service: str) -> str:
    return f"svc-{service}"


def queue_plans(t: Topology, services: Mapping[str, ServiceTopology]) -> list[QueuePlan]:
    """One plan per consuming service (services with bindings); ``services`` is the stack's
    ``services`` map (each entry's broker side)."""
    plans = []
    for service, cfg in services.items():
        if not cfg.bindings:
            continue
        o, d = cfg.overrides, t.defaults
        arguments = {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": o.dead_letter_exchange or t.dead_letter_exchange,
            "x-dead-letter-routing-key": replay_key(service),
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-message-ttl": o.message_ttl_ms or d.message_ttl_ms,
            "x-max-length": o.max_length or d.max_length,
            "x-delivery-limit": o.delivery_limit or d.delivery_limit,
        }
        plans.append(
            QueuePlan(
                service=service,
                queue=cfg.queue or f"{service}.events",
                bindings=tuple(cfg.bindings),
                arguments=arguments,
                dead_letter_queue=f"dlq.{service}" if cfg.dead_letter_queue else None,
            )
        )
    return plans


def replay_key(service: str) -> str:
    return f"dlq.{service}"


def _alternation(names: list[str]) -> str:
    return "^(" + "|".join(re.escape(n) for n in names) + ")$" if names else "^$"


def permissions(t: Topology, services: Mapping[str, ServiceTopology], vhost: str) -> list[dict]:
    """Least privilege per service user: configure only its own queues, write to the events
    exchange (publish) and its own queue (bind), read its own queues and the events exchange
    (bind source). Nothing else: no other queue, no declaring exchanges."""
    by_service = {p.service: p for p in queue_plans(t, services)}
    out = []
    for service in services:
        plan = by_service.get(service)
        own = [plan.queue] + ([plan.dead_letter_queue] if plan and plan.dead_letter_queue else []) if plan else []
        out.append(
            {
                "user": user_name(service),
                "vhost": vhost,
                "configure": _alternation(own),
                "write": _alternation([t.exchange] + own[:1]),
                "read": _alternation([t.exchange] + own),
            }
        )
    return out


def load_test_permissions(s: StackSettings) -> dict:
    """The load test's user (broker.loadTest, render/load_test.py) reaches exactly its own exchange
    `perf-test` and queues `perf-test-<n>`: nothing of the services' queues or the events exchange."""
    p = LOAD_TEST_PERMISSION
    return {"user": LOAD_TEST_USER, "vhost": s.vhost, "configure": p, "write": p, "read": p}


def definitions(s: StackSettings, password_hashes: Mapping[str, str]) -> dict:
    """RabbitMQ definitions (the format of ``rabbitmqctl export_definitions``)."""
    t, vhost = s.broker.topology, s.vhost
    retention_ms = t.dead_letter_retention_days * 86_400_000
    plans = queue_plans(t, s.services)

    def exchange(name: str) -> dict:
        return {
            "name": name,
            "vhost": vhost,
            "type": "topic",
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        }

    def queue(name: str, arguments: dict) -> dict:
        return {"name": name, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": arguments}

    def binding(source: str, destination: str, key: str) -> dict:
        return {
            "source": source,
            "vhost": vhost,
            "destination": destination,
            "destination_type": "queue",
            "routing_key": key,
            "arguments": {},
        }

    dlq_args = {"x-queue-type": "quorum", "x-message-ttl": retention_ms}
    queues = [queue(p.queue, p.arguments) for p in plans]
    queues.append(queue("dlq.all", dlq_args))
    bindings = [binding(t.exchange, p.queue, key) for p in plans for key in p.bindings]
    # Replay binding: dead letters carry the routing key dlq.<service>, so shovelling them
    # back to the events exchange returns each one to exactly the queue it came from.
    bindings += [binding(t.exchange, p.queue, replay_key(p.service)) for p in plans]
    bindings.append(binding(t.dead_letter_exchange, "dlq.all", "#"))
    for p in plans:
        if p.dead_letter_queue:
            queues.append(queue(p.dead_letter_queue, dlq_args))
            bindings.append(binding(t.dead_letter_exchange, p.dead_letter_queue, f"dlq.{p.service}"))
    admin = {"user": ADMIN_USER, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
    return {
        "users": [
            {
                "name": ADMIN_USER,
                "password_hash": password_hashes[ADMIN_USER],
                "hashing_algorithm": HASHING,
                "tags": ["administrator"],
            }
        ]
        + [
            {
                "name": user_name(svc),
                "password_hash": password_hashes[user_name(svc)],
                "hashing_algorithm": HASHING,
                "tags": [],
            }
            for svc in s.services
        ]
        + [
            {
                "name": MONITOR_USER,
                "password_hash": password_hashes[MONITOR_USER],
                "hashing_algorithm": HASHING,
                "tags": [],  # AMQP passive declare only: no management access at all
            }
        ]
        + [
            {"name": u, "password_hash": password_hashes[u], "hashing_algorithm": HASHING, "tags": []}
            for u in [LOAD_TEST_USER]
            if s.broker.load_test.enabled
        ],
        "vhosts": [{"name": vhost}],
        "permissions": [admin]
        + permissions(t, s.services, vhost)
        + [monitor_permissions(vhost, [p.queue for p in plans])]
        + ([load_test_permissions(s)] if s.broker.load_test.enabled else []),
        "topic_permissions": [],
        "parameters": [],
        "global_parameters": [],
        "policies": [],
        "exchanges": [exchange(t.exchange), exchange(t.dead_letter_exchange)],
        "queues": queues,
        "bindings": bindings,
    }


def monitor_permissions(vhost: str, queues: Sequence[str]) -> dict:
    """The queue-depth reader (KEDA's rabbitmq scaler, which reads the depth with a passive
    ``queue.declare`` over AMQP). Up to 3.13 a passive declare needed no permission; 4.2.6 and
    4.3.0 check ``configure`` for it (rabbitmq-server #16085) and later releases accept any one
    permission on the queue (#16272). ``configure`` or ``read`` would let it delete, purge or
    consume, so it gets ``write`` on exactly the services' queues and nothing else: on a queue,
    ``write`` only makes it a binding's destination, and binding also needs ``read`` on the
    exchange, which it has on none. So it can neither declare, bind, delete, publish, consume
    nor purge (proven on the RabbitMQ the stack deploys: tests/test_broker_rabbitmq.py)."""
    write = "^(" + "|".join(re.escape(q) for q in sorted(queues)) + ")$" if queues else "^$"
    return {"user": MONITOR_USER, "vhost": vhost, "configure": "^$", "write": write, "read": "^$"}


def users_and_secrets(s: StackSettings) -> dict[str, str]:
    """RabbitMQ user -> the Key Vault secret holding its password."""
    users = {
        ADMIN_USER: "broker-admin",
        **{user_name(svc): f"broker-{svc}" for svc in s.services},
        MONITOR_USER: MONITOR_SECRET,
    }
    if s.broker.load_test.enabled:  # its secret exists either way (StackSettings.secret_names)
        users[LOAD_TEST_USER] = f"broker-{LOAD_TEST_USER}"
    return users


def placeholder_hashes(s: StackSettings) -> dict[str, str]:
    return {user: PLACEHOLDER_HASH for user in users_and_secrets(s)}


def password_hash(password: str, salt: bytes) -> str:
    """rabbit_password_hashing_sha256: base64(salt ++ sha256(salt ++ utf8(password)))."""
    if len(salt) != 4:
        raise ValueError("RabbitMQ uses a 4-byte salt")
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def stable_salt(user: str, rotation: int) -> bytes:
    """A salt that changes with the user and its rotation only, so an unchanged password
    does not show up as a diff on every preview."""
    return hashlib.sha256(f"{user}:{rotation}".encode()).digest()[:4]


# ----------------------------------------------------------------- endpoints
def service_host(s: StackSettings) -> str:
    return f"{s.broker.cluster_name}.{s.broker.namespace}.svc.cluster.local"


def server_dns_names(s: StackSettings) -> list[str]:
    b = s.broker
    return [
        f"{b.cluster_name}.{b.namespace}.svc",
        service_host(s),
        f"*.{b.cluster_name}-nodes.{b.namespace}.svc",
        f"*.{b.cluster_name}-nodes.{b.namespace}.svc.cluster.local",
    ]


def amqps_endpoint(s: StackSettings, host: str | None = None) -> str:
    return f"amqps://{host or service_host(s)}:{AMQPS}/{urllib.parse.quote(s.vhost, safe='')}"


def management_url(s: StackSettings) -> str:
    return f"https://{service_host(s)}:{MANAGEMENT_TLS}/"


def connection_string(
    s: StackSettings, service: str, password: str, host: str | None = None, user: str | None = None
) -> str:
    """The AMQPS URI of a service's user (or of ``user``, e.g. the queue-depth reader)."""
    quoted = urllib.parse.quote(user or user_name(service), safe="")
    vhost = urllib.parse.quote(s.vhost, safe="")
    return f"amqps://{quoted}:{urllib.parse.quote(password, safe='')}@{host or service_host(s)}:{AMQPS}/{vhost}"


# ----------------------------------------------------------------- RabbitMQ config
def tls_config_lines() -> list[str]:
    """TLS settings of the AMQPS listener (the operator adds certificate paths and ports)."""
    return [
        "ssl_options.versions.1 = tlsv1.3",
        "ssl_options.versions.2 = tlsv1.2",
        "ssl_options.honor_cipher_order = true",
        "ssl_options.honor_ecc_order = true",
        "ssl_options.verify = verify_none",
        "ssl_options.fail_if_no_peer_cert = false",
    ]


def additional_config(s: StackSettings) -> str:
    """Every key is one RabbitMQ 4.3 applies (tests/test_versions.py boots a 4.3 node on it). No
    ``cluster_partition_handling``: 4.3's metadata store is Khepri (Raft), where partition
    handling strategies have no effect; the operator's own defaults still carry the line, which
    4.3 accepts and ignores."""
    lines = [
        f"load_definitions = {DEFINITIONS_DIR}/definitions.json",
        "disk_free_limit.absolute = 2GB",
        "queue_leader_locator = balanced",
        *tls_config_lines(),
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- Kubernetes objects
def labels(s: StackSettings) -> dict:
    return {"app.kubernetes.io/name": s.broker.cluster_name, "app.kubernetes.io/part-of": "event-backbone"}


def selector(s: StackSettings) -> dict:
    # The cluster operator labels the pods with app.kubernetes.io/name=<cluster name>.
    return {"app.kubernetes.io/name": s.broker.cluster_name}


def namespace(s: StackSettings) -> dict:
    """The broker's namespace. Baseline enforced (as before): the RabbitMQ pods' securityContext
    comes from the Cluster Operator's defaults, not from anything pinned here, so restricted
    cannot be shown; restricted is audited and warned."""
    return labelled_namespace(s.broker.namespace, "baseline")


OPERATOR_NAMESPACE = "rabbitmq-system"  # fixed by the Cluster Operator's release manifest


def operator_namespace_labels() -> dict[str, str]:
    """Pod Security for the Cluster Operator's namespace. Baseline enforced: the release manifest
    is fetched by URL at deploy time and not in the pinned references, so its Deployment's
    securityContext cannot be checked against restricted here; restricted is audited and warned."""
    return pod_security_labels("baseline")


def label_operator_namespace(kind: str, props: dict) -> dict | None:
    """The manifest's own Namespace object with the Pod Security labels added (its other labels
    kept); None for any other object. The broker component applies this as a transform on the
    release manifest, so the namespace is labelled when it is created, before the operator's pod."""
    meta = props.get("metadata") or {}
    if kind != "kubernetes:core/v1:Namespace" or meta.get("name") != OPERATOR_NAMESPACE:
        return None
    labels = {**(meta.get("labels") or {}), **operator_namespace_labels()}
    return {**props, "metadata": {**meta, "labels": labels}}


def operator_namespace_patch() -> dict:
    """The same labels as a NamespacePatch (server-side apply of these labels only, the manifest
    keeps owning the namespace): visible in the plan and to the policy gate, and it puts the
    labels back if someone re-applies the upstream manifest by hand."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": OPERATOR_NAMESPACE, "labels": operator_namespace_labels()},
    }


def storage_class(s: StackSettings) -> dict:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": s.broker.storage_class, "labels": {"app.kubernetes.io/part-of": "event-backbone"}},
        "provisioner": "disk.csi.azure.com",
        "parameters": {"skuName": "Premium_ZRS", "cachingMode": "None"},
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }


def rabbitmq_cluster(
    s: StackSettings, tls_secret: str, ca_secret: str, definitions_secret: str, admin_secret: str, registry: Any = None
) -> dict:
    b = s.broker
    resources = {
        "requests": {"cpu": b.resources.cpu_request, "memory": b.resources.memory},
        "limits": {"memory": b.resources.memory},
    }
    if b.resources.cpu_limit:
        resources["limits"]["cpu"] = b.resources.cpu_limit
    return {
        "apiVersion": "rabbitmq.com/v1beta1",
        "kind": "RabbitmqCluster",
        "metadata": {"name": b.cluster_name, "namespace": b.namespace, "labels": labels(s)},
        "spec": {
            "replicas": b.replicas,
            "image": pull(b.image, registry),
            "persistence": {"storageClassName": b.storage_class, "storage": b.storage_size},
            "resources": resources,
            "tls": {
                "secretName": tls_secret,
                "caSecretName": ca_secret,
                "disableNonTLSListeners": not b.plaintext_listener,
            },
            "secretBackend": {"externalSecret": {"name": admin_secret}},
            "rabbitmq": {
                "additionalPlugins": ["rabbitmq_prometheus", "rabbitmq_shovel", "rabbitmq_shovel_management"],
                "additionalConfig": additional_config(s),
            },
            "affinity": {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": selector(s)}, "topologyKey": "kubernetes.io/hostname"}
                    ]
                }
            },
            "terminationGracePeriodSeconds": 604800,  # let quorum queues hand over leadership
            "override": {
                "statefulSet": {
                    "spec": {
                        "template": {
                            "spec": {
                                "topologySpreadConstraints": [
                                    {
                                        "maxSkew": 1,
                                        "topologyKey": "topology.kubernetes.io/zone",
                                        "whenUnsatisfiable": "DoNotSchedule" if b.replicas > 1 else "ScheduleAnyway",
                                        "labelSelector": {"matchLabels": selector(s)},
                                    }
                                ],
                                "containers": [
                                    {
                                        "name": "rabbitmq",
                                        "volumeMounts": [
                                            {"name": "definitions", "mountPath": DEFINITIONS_DIR, "readOnly": True}
                                        ],
                                    }
                                ],
                                "volumes": [{"name": "definitions", "secret": {"secretName": definitions_secret}}],
                            }
                        }
                    }
                }
            },
        },
    }


def pod_disruption_budget(s: StackSettings) -> dict:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": s.broker.cluster_name, "namespace": s.broker.namespace, "labels": labels(s)},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(s)}},
    }


def network_policies(s: StackSettings) -> list[dict]:
    b = s.broker
    ns = b.namespace

    def policy(name: str, spec: dict) -> dict:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/part-of": "event-backbone"}},
            "spec": spec,
        }

    def ports(*numbers) -> list[dict]:
        out = []
        for n in numbers:
            if isinstance(n, str):
                lo, hi = n.split("-")
                out.append({"protocol": "TCP", "port": int(lo), "endPort": int(hi)})
            else:
                out.append({"protocol": "TCP", "port": n})
        return out

    amqp = [AMQPS] + ([AMQP] if b.plaintext_listener else [])
    metrics = [PROMETHEUS_TLS] + ([PROMETHEUS] if b.plaintext_listener else [])
    management = [MANAGEMENT_TLS] + ([MANAGEMENT] if b.plaintext_listener else [])
    return [
        policy("default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}),
        policy(
            "allow-amqp-from-event-services",
            {
                "podSelector": {"matchLabels": selector(s)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        # exactly the services' namespaces: the label alone is not enough
                        # (anyone allowed to label a namespace could set it)
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {b.event_services_label: "true"},
                                    "matchExpressions": [
                                        {
                                            "key": "kubernetes.io/metadata.name",
                                            "operator": "In",
                                            "values": sorted(s.services),
                                        }
                                    ],
                                }
                            }
                        ],
                        "ports": ports(*amqp),
                    }
                ],
            },
        ),
        policy(
            "allow-amqps-from-keda",
            {
                # KEDA's operator (AKS add-on) reads the services' queue depths as keda-monitor
                "podSelector": {"matchLabels": selector(s)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                                "podSelector": {"matchLabels": {"app": "keda-operator"}},
                            }
                        ],
                        "ports": ports(AMQPS),
                    }
                ],
            },
        ),
        policy(
            "allow-metrics-from-monitoring",
            {
                "podSelector": {"matchLabels": selector(s)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": b.monitoring_namespace}
                                }
                            }
                        ],
                        "ports": ports(*metrics),
                    }
                ],
            },
        ),
        policy(
            "allow-cluster-peers",
            {
                "podSelector": {"matchLabels": selector(s)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": selector(s)}}],
                        "ports": ports(EPMD, DIST, CLI_DIST, *amqp, *management),
                    }
                ],
            },
        ),
        policy(
            "allow-management-from-operator",
            {
                "podSelector": {"matchLabels": selector(s)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "rabbitmq-system"}}}
                        ],
                        "ports": ports(*management),
                    }
                ],
            },
        ),
    ]


PATH_LABEL = {"sourceLabels": ["__metrics_path__"], "targetLabel": "metrics_path"}


def service_monitor(s: StackSettings, ca_secret: str) -> dict:
    """Scrapes the aggregated metrics and the per-queue family the DLQ alerts need."""
    b = s.broker
    tls = not b.plaintext_listener
    common: dict[str, Any] = {
        "port": "prometheus-tls" if tls else "prometheus",
        "scheme": "https" if tls else "http",
        "interval": "30s",
    }
    if tls:
        common["tlsConfig"] = {"ca": {"secret": {"name": ca_secret, "key": "ca.crt"}}, "serverName": service_host(s)}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": b.cluster_name,
            "namespace": b.namespace,
            "labels": {**labels(s), "release": "kube-prometheus-stack"},
        },
        "spec": {
            "selector": {"matchLabels": selector(s)},
            "namespaceSelector": {"matchNames": [b.namespace]},
            # Both endpoints are the same port of the same pod: without a label of its own,
            # their `up` series are one series written by two scrapes (it flaps, samples are
            # dropped; tests/test_alert_drill.py), so each target carries its metrics path.
            "endpoints": [
                {**common, "path": "/metrics", "relabelings": [PATH_LABEL]},
                {
                    **common,
                    "path": "/metrics/detailed",
                    "params": {"family": ["queue_coarse_metrics", "queue_consumer_count"]},
                    "relabelings": [PATH_LABEL],
                },
            ],
        },
    }


def operator_workload(obj: dict, login: str) -> dict:
    """The Cluster Operator's release manifest, one object at a time, with every image through
    the registry: the Deployment's container and init-container images and the ``*_IMAGE``
    defaults it passes on (``DEFAULT_RABBITMQ_IMAGE``, ``DEFAULT_USER_UPDATER_IMAGE``).
    Anything else is returned unchanged."""
    if obj.get("kind") != "Deployment":
        return obj
    obj = json.loads(json.dumps(obj))
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        if "image" in container:
            container["image"] = pull(container["image"], login)
        for env in container.get("env", []):
            if env.get("name", "").endswith("_IMAGE") and env.get("value"):
                env["value"] = pull(env["value"], login)
    return obj
