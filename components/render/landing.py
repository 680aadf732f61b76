"""Pure renders of a service's landing zone: its namespace, ServiceAccount, SecretProviderClass,
NetworkPolicies, ResourceQuota, LimitRange and PodMonitor (components/landing.py wires them).

Naming contract (shared with the other parts of the platform, docs/landing-zones.md): service
``<svc>`` gets namespace ``<svc>``, ServiceAccount ``<svc>``, SecretProviderClass
``<svc>-secrets`` mounted at ``/mnt/secrets`` and synced to the Secret ``<svc>-broker`` (keys
``url``, ``password``, ``ca.crt``); its pods expose the metric contract on the container port
named ``metrics`` at ``/metrics``. No Pulumi here: values that are only known at deploy time
(client ids, the vault's name) are passed through untouched.
"""

from __future__ import annotations

from typing import Any

from ..settings import StackSettings
from . import broker as broker_render
from . import helm_values
from . import redis as redis_render

PART_OF = {"app.kubernetes.io/part-of": "event-backbone"}
SERVICE_LABEL = "event-backbone.io/service"
MOUNT_PATH = "/mnt/secrets"
METRICS_PORT_NAME = "metrics"
METRICS_PATH = "/metrics"
OTLP_PORTS = (4317, 4318)  # gRPC, HTTP
POSTGRES_PORT = 5432
HTTPS = 443
DNS_PORT = 53
CA_SECRET = "broker-ca-cert"
# Addresses that are never Entra ID's: RFC 1918, link-local (the instance metadata service
# 169.254.169.254 included), carrier-grade NAT (AKS overlay pod CIDRs often live there),
# loopback and "this network".
NON_PUBLIC = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8"]
# The opentelemetry-collector chart's pod selector labels (release otel-collector).
COLLECTOR_POD = {"app.kubernetes.io/name": "opentelemetry-collector", "app.kubernetes.io/instance": "otel-collector"}
KUBE_DNS_POD = {"k8s-app": "kube-dns"}

Value = Any  # a str, or a Pulumi Output[str] the component passes through unchanged


def secret_names(s: StackSettings, svc: str) -> dict[str, str]:
    """Key in the synced Secret ``<svc>-broker`` -> the Key Vault secret it comes from. These,
    and only these, are the secrets the service's identity may read."""
    names = {"url": f"broker-{svc}-url", "password": f"broker-{svc}"}
    if s.broker.backend == "in-cluster":  # CloudAMQP presents a publicly trusted certificate
        names["ca.crt"] = CA_SECRET
    return names


def synced_secret_name(svc: str) -> str:
    return f"{svc}-broker"


def labels(svc: str) -> dict[str, str]:
    return {**PART_OF, SERVICE_LABEL: svc}


def namespace(s: StackSettings, svc: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": svc,
            "labels": {
                **labels(svc),
                # the broker admits AMQP(S) from namespaces with this label AND a service's name
                s.broker.event_services_label: "true",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/audit": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
            },
        },
    }


def service_account(svc: str, client_id: Value) -> dict:
    """Federated (workload identity) to the service's own user-assigned identity. Pods opt in
    with the label ``azure.workload.identity/use: "true"``."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": svc,
            "namespace": svc,
            "labels": labels(svc),
            "annotations": {"azure.workload.identity/client-id": client_id},
        },
        "automountServiceAccountToken": False,
    }


def _objects(names: dict[str, str]) -> str:
    """The azure provider's ``objects`` parameter (a YAML string): each Key Vault secret
    mounted under its key's name (objectAlias)."""
    lines = ["array:"]
    for alias, name in names.items():
        lines += ["  - |", f"    objectName: {name}", "    objectType: secret", f"    objectAlias: {alias}"]
    return "\n".join(lines) + "\n"


def secret_provider_class(s: StackSettings, svc: str, client_id: Value, vault_name: Value, tenant_id: Value) -> dict:
    names = secret_names(s, svc)
    return {
        "apiVersion": "secrets-store.csi.x-k8s.io/v1",
        "kind": "SecretProviderClass",
        "metadata": {"name": f"{svc}-secrets", "namespace": svc, "labels": labels(svc)},
        "spec": {
            "provider": "azure",
            "parameters": {
                "usePodIdentity": "false",
                "useVMManagedIdentity": "false",
                "clientID": client_id,  # workload identity: the service's own identity
                "keyvaultName": vault_name,
                "tenantId": tenant_id,
                "objects": _objects(names),
            },
            # Synced while a pod mounts the volume at /mnt/secrets, for env vars.
            "secretObjects": [
                {
                    "secretName": synced_secret_name(svc),
                    "type": "Opaque",
                    "labels": labels(svc),
                    "data": [{"objectName": alias, "key": alias} for alias in names],
                }
            ],
        },
    }


def _policy(svc: str, name: str, spec: dict) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": svc, "labels": labels(svc)},
        "spec": spec,
    }


def _in_namespace(namespace: str, pods: dict | None = None) -> dict:
    peer: dict = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
    if pods is not None:
        peer["podSelector"] = {"matchLabels": pods}
    return peer


def _tcp(*ports: int | str) -> list[dict]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def broker_ports(s: StackSettings) -> list[int]:
    return [broker_render.AMQPS] + ([broker_render.AMQP] if s.broker.plaintext_listener else [])


def network_policies(s: StackSettings, svc: str) -> list[dict]:
    """Default deny in and out, then exactly what a service needs."""
    o = s.observability
    cfg = s.services[svc]
    egress_to_broker: dict
    if s.broker.backend == "in-cluster":
        egress_to_broker = {
            "to": [_in_namespace(s.broker.namespace, broker_render.selector(s))],
            "ports": _tcp(*broker_ports(s)),
        }
    else:  # CloudAMQP: a public endpoint, AMQPS only
        egress_to_broker = {
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": NON_PUBLIC}}],
            "ports": _tcp(broker_render.AMQPS),
        }
    policies = [
        _policy(svc, "default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        _policy(
            svc,
            "allow-dns",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [_in_namespace("kube-system", KUBE_DNS_POD)],
                        "ports": [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}],
                    }
                ],
            },
        ),
        _policy(svc, "allow-broker", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [egress_to_broker]}),
        _policy(
            svc,
            "allow-otlp",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{"to": [_in_namespace(o.namespace, COLLECTOR_POD)], "ports": _tcp(*OTLP_PORTS)}],
            },
        ),
        # Workload identity exchanges the pod's service-account token for an Entra ID token at
        # login.microsoftonline.com (and the CSI driver, which reads Key Vault for the pod, runs
        # on the node, outside this policy). A NetworkPolicy cannot name an FQDN and Entra's
        # addresses are many and change: HTTPS is allowed to public addresses only (0.0.0.0/0
        # except the private, link-local and CGNAT ranges), so nothing inside the VNet, the
        # cluster or the node's metadata endpoint is reachable over 443. An FQDN-aware policy
        # (Cilium/ACNS) or an egress firewall can narrow this to Entra's hosts.
        _policy(
            svc,
            "allow-entra-id",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": NON_PUBLIC}}], "ports": _tcp(HTTPS)}],
            },
        ),
        _policy(
            svc,
            "allow-metrics-from-monitoring",
            {
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [_in_namespace(o.namespace)], "ports": _tcp(METRICS_PORT_NAME)}],
            },
        ),
    ]
    if cfg.redis:  # Azure Managed Redis's private endpoint, TLS port only (components/render/redis.py)
        policies.append(redis_render.egress_policy(s, svc, labels(svc)))
    if cfg.database:
        policies.append(
            _policy(
                svc,
                "allow-postgres",
                {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": s.database_subnet}}], "ports": _tcp(POSTGRES_PORT)}],
                },
            )
        )
    return policies


def resource_quota(s: StackSettings, svc: str) -> dict:
    r = s.services[svc].resources
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "quota", "namespace": svc, "labels": labels(svc)},
        "spec": {
            "hard": {
                "requests.cpu": r.requests_cpu,
                "requests.memory": r.requests_memory,
                "limits.cpu": r.limits_cpu,
                "limits.memory": r.limits_memory,
                "pods": str(r.pods),
                # a service is reached through the broker: no load balancers or node ports
                "services.loadbalancers": "0",
                "services.nodeports": "0",
            }
        },
    }


def limit_range(s: StackSettings, svc: str) -> dict:
    """Containers without requests/limits get these (the quota requires them to be set)."""
    r = s.services[svc].resources
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "defaults", "namespace": svc, "labels": labels(svc)},
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": {"cpu": r.default_cpu_request, "memory": r.default_memory_request},
                    "default": {"cpu": r.default_cpu_limit, "memory": r.default_memory_limit},
                }
            ]
        },
    }


def pod_monitor(s: StackSettings, svc: str) -> dict:
    """Scrapes every pod of the service that declares a container port named ``metrics``
    (the metric contract: events_published_total, event_end_to_end_latency_seconds, ...)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {
            "name": svc,
            "namespace": svc,
            "labels": {**labels(svc), "release": helm_values.KUBE_PROMETHEUS_STACK.release},
        },
        "spec": {
            "selector": {},  # every pod in the namespace; only those with a `metrics` port are scraped
            "namespaceSelector": {"matchNames": [svc]},
            "podMetricsEndpoints": [
                {
                    "port": METRICS_PORT_NAME,
                    "path": METRICS_PATH,
                    "interval": "30s",
                    "scheme": "http",
                    # the contract's service label comes from the namespace, not from the pod
                    "relabelings": [
                        {
                            "action": "replace",
                            "sourceLabels": ["__meta_kubernetes_namespace"],
                            "targetLabel": s.observability.metrics.service_label,
                        }
                    ],
                }
            ],
        },
    }


# ----------------------------------------------------------------- autoscaling (KEDA add-on)
# KEDA's rabbitmq scaler, protocol amqp: it connects as the queue-depth reader and reads the
# ready-message count with a passive queue.declare, which RabbitMQ answers without any
# permission. The HTTP protocol would need the management API and a management tag
# (`monitoring` shows every vhost's queues, connections and channels): not used.
KEDA_NAMESPACE = "kube-system"
KEDA_SERVICE_ACCOUNT = "keda-operator"  # the AKS add-on's operator, which resolves TriggerAuthentications
KEDA_OPERATOR_POD = {"app": "keda-operator"}
MONITOR_URL_SECRET = "broker-keda-monitor-url"


def keda_secret_names(s: StackSettings) -> list[str]:
    """The Key Vault secrets KEDA's identity may read: the monitor's connection string (its
    password inside) and, in-cluster, the broker's CA certificate."""
    return [MONITOR_URL_SECRET] + ([CA_SECRET] if s.broker.backend == "in-cluster" else [])


def trigger_auth_name(svc: str) -> str:
    return f"{svc}-queue-depth"


def keda_tls_configmap(svc: str) -> dict:
    """The scaler's ``tls`` parameter (a TriggerAuthentication takes no literal values)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{svc}-keda-rabbitmq", "namespace": svc, "labels": labels(svc)},
        "data": {"tls": "enable"},
    }


def trigger_authentication(s: StackSettings, svc: str, vault_uri: Value, keda_client_id: Value) -> dict:
    """Reads the monitor's connection string (and the CA) from Key Vault as KEDA's own
    identity (workload identity of the keda-operator service account)."""
    secrets = [{"parameter": "host", "name": MONITOR_URL_SECRET}]
    if s.broker.backend == "in-cluster":
        secrets.append({"parameter": "ca", "name": CA_SECRET})
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": trigger_auth_name(svc), "namespace": svc, "labels": labels(svc)},
        "spec": {
            "azureKeyVault": {
                "vaultUri": vault_uri,
                "podIdentity": {"provider": "azure-workload", "identityId": keda_client_id},
                "secrets": secrets,
            },
            "configMapTargetRef": [{"parameter": "tls", "name": f"{svc}-keda-rabbitmq", "key": "tls"}],
        },
    }


def scaled_object(s: StackSettings, svc: str) -> dict:
    cfg = s.services[svc]
    sc = cfg.scaling
    if sc is None:
        raise ValueError(f"{svc} has no scaling settings")
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": svc, "namespace": svc, "labels": labels(svc)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": sc.deployment},
            "minReplicaCount": sc.min_replicas,
            "maxReplicaCount": sc.max_replicas,
            "pollingInterval": sc.polling_interval_seconds,
            "cooldownPeriod": sc.cooldown_period_seconds,
            "triggers": [
                {
                    "type": "rabbitmq",
                    "metadata": {
                        "protocol": "amqp",
                        "mode": "QueueLength",
                        "value": str(sc.target_queue_length),
                        "queueName": cfg.queue or f"{svc}.events",
                    },
                    "authenticationRef": {"name": trigger_auth_name(svc)},
                }
            ],
        },
    }


def autoscaling(s: StackSettings, svc: str, vault_uri: Value, keda_client_id: Value) -> list[dict]:
    if s.services[svc].scaling is None:
        return []
    return [keda_tls_configmap(svc), trigger_authentication(s, svc, vault_uri, keda_client_id), scaled_object(s, svc)]


def manifests(
    s: StackSettings,
    svc: str,
    client_id: Value,
    vault_name: Value,
    tenant_id: Value,
    vault_uri: Value = None,
    keda_client_id: Value = None,
    redis_host: Value = None,
    principal_id: Value = None,
) -> list[dict]:
    """Every Kubernetes object of one service's landing zone, namespace first. ``redis_host`` and
    ``principal_id`` (the Redis username): for a service with ``redis: true``."""
    redis = [redis_render.configmap(svc, redis_host, principal_id, labels(svc))] if s.services[svc].redis else []
    return [
        namespace(s, svc),
        service_account(svc, client_id),
        secret_provider_class(s, svc, client_id, vault_name, tenant_id),
        *network_policies(s, svc),
        resource_quota(s, svc),
        limit_range(s, svc),
        pod_monitor(s, svc),
        *autoscaling(s, svc, vault_uri, keda_client_id),
        *redis,
    ]
