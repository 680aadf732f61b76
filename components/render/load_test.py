"""Pure renders for the opt-in broker load test (``broker.loadTest``): RabbitMQ's own load tool,
PerfTest, as a Kubernetes Job in a namespace of its own, against the in-cluster broker over
AMQPS, as the ``perf-test`` user that reaches only the ``perf-test`` exchange and the
``perf-test-<n>`` queues. No Pulumi here: tests check these against the Kubernetes schemas and
the user's permissions on a real RabbitMQ. Runbook: docs/runbooks/load-test.md."""

from __future__ import annotations

import urllib.parse
from typing import Any

from ..settings import LOAD_TEST_PERMISSION, LOAD_TEST_USER, StackSettings
from . import broker as broker_render
from .images import pull

NAME = "perf-test"  # the Job, its pods' app label, its exchange and its queues' prefix
EXCHANGE = "perf-test"
QUEUE_PATTERN = "perf-test-%d"  # Java printf: perf-test-1 .. perf-test-<queues>
PERMISSION = LOAD_TEST_PERMISSION  # exactly the names job_args makes PerfTest use
SECRET = "perf-test-broker"  # keys: url (AMQPS URI with the password), ca.crt
CA_MOUNT = "/etc/perf-test/broker"
TRUSTSTORE_DIR = "/truststore"
TRUSTSTORE = f"{TRUSTSTORE_DIR}/broker-ca.p12"
# A PKCS12 trust store must have a password; it protects nothing here (the store holds only the
# public CA certificate), so it is a constant rather than a secret.
TRUSTSTORE_PASSWORD = "public-ca-only"
PREFETCH = 200  # consumer prefetch (--qos): bounded, as the services' consumers are
STARTUP_TIMEOUT_SECONDS = 600  # PerfTest retries the first connection this long (user not yet imported)
ENV_PREFIX = "PERF_TEST_"  # PerfTest reads options from PERF_TEST_<OPTION> (here only the URI)
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "event-backbone"}
SELECTOR = {"app.kubernetes.io/name": NAME}


def user_name() -> str:
    return LOAD_TEST_USER


def secret_name() -> str:
    """The Key Vault secret with the user's password (generated like every broker password)."""
    return f"broker-{LOAD_TEST_USER}"


def permissions(s: StackSettings) -> dict:
    return broker_render.load_test_permissions(s)


def connection_string(s: StackSettings, password: str) -> str:
    user = urllib.parse.quote(LOAD_TEST_USER, safe="")
    secret = urllib.parse.quote(password, safe="")
    vhost = urllib.parse.quote(s.vhost, safe="")
    return f"amqps://{user}:{secret}@{broker_render.service_host(s)}:{broker_render.AMQPS}/{vhost}"


def job_args(s: StackSettings) -> list[str]:
    """PerfTest's command line (the URI comes from the Secret through PERF_TEST_URI)."""
    lt = s.broker.load_test
    return [
        "--id",
        f"{NAME}-{s.environment}",
        "--producers",
        str(lt.producers),
        "--consumers",
        str(lt.consumers),
        "--rate",
        str(lt.rate),
        "--time",
        str(lt.duration_seconds),
        "--size",
        str(lt.message_size),
        "--exchange",
        EXCHANGE,
        "--queue-pattern",
        QUEUE_PATTERN,
        "--queue-pattern-from",
        "1",
        "--queue-pattern-to",
        str(lt.queues),
        "--quorum-queue",
        "--confirm",
        str(lt.confirm),
        "--flag",
        "persistent",
        "--qos",
        str(PREFETCH),
        "--servers-startup-timeout",
        str(STARTUP_TIMEOUT_SECONDS),
        "--use-default-ssl-context",
        "--metrics-format",
        "compact",
    ]


def namespace(s: StackSettings) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": s.broker.load_test.namespace,
            "labels": {
                "app.kubernetes.io/part-of": "event-backbone",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            },
        },
    }


def job(s: StackSettings, registry: Any = None) -> dict:
    lt = s.broker.load_test
    security = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    resources = {
        "requests": {"cpu": lt.resources.cpu_request, "memory": lt.resources.memory},
        "limits": {"cpu": lt.resources.cpu_limit, "memory": lt.resources.memory},
    }
    small = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}
    mounts = [{"name": "truststore", "mountPath": TRUSTSTORE_DIR}, {"name": "tmp", "mountPath": "/tmp"}]
    java_options = " ".join(
        [
            f"-Djavax.net.ssl.trustStore={TRUSTSTORE}",
            "-Djavax.net.ssl.trustStoreType=PKCS12",
            f"-Djavax.net.ssl.trustStorePassword={TRUSTSTORE_PASSWORD}",
            "-XX:MaxRAMPercentage=75",
        ]
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": NAME,
            "namespace": lt.namespace,
            "labels": LABELS,
            # `pulumi up` returns once the Job exists; the run is read with kubectl (runbook).
            "annotations": {"pulumi.com/skipAwait": "true"},
        },
        "spec": {
            "backoffLimit": 0,  # a failed run is read, not silently repeated
            "activeDeadlineSeconds": lt.duration_seconds + STARTUP_TIMEOUT_SECONDS + 300,
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 2000,  # the image's perf-test user
                        "runAsGroup": 2000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    # The JVM trusts the stack's CA through a PKCS12 trust store made from ca.crt.
                    "initContainers": [
                        {
                            "name": "truststore",
                            "image": pull(lt.image, registry),
                            "command": ["sh", "-c"],
                            "args": [
                                'exec "$JAVA_HOME/bin/keytool" -importcert -noprompt -alias broker-ca'
                                f" -file {CA_MOUNT}/ca.crt -keystore {TRUSTSTORE} -storetype PKCS12"
                                f" -storepass {TRUSTSTORE_PASSWORD}"
                            ],
                            "securityContext": security,
                            "resources": small,
                            "volumeMounts": [*mounts, {"name": "broker-ca", "mountPath": CA_MOUNT, "readOnly": True}],
                        }
                    ],
                    "containers": [
                        {
                            "name": NAME,
                            "image": pull(lt.image, registry),
                            "args": job_args(s),
                            "env": [
                                {"name": "RABBITMQ_PERF_TEST_ENV_PREFIX", "value": ENV_PREFIX},
                                {
                                    "name": f"{ENV_PREFIX}URI",
                                    "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "url"}},
                                },
                                {"name": "JAVA_TOOL_OPTIONS", "value": java_options},
                            ],
                            "securityContext": security,
                            "resources": resources,
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": [
                        {"name": "truststore", "emptyDir": {"sizeLimit": "1Mi"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                        {
                            "name": "broker-ca",
                            "secret": {"secretName": SECRET, "items": [{"key": "ca.crt", "path": "ca.crt"}]},
                        },
                    ],
                },
            },
        },
    }


def network_policies(s: StackSettings) -> list[dict]:
    """In the load test's namespace: nothing in, and out only AMQPS to the broker pods and DNS."""
    ns = s.broker.load_test.namespace

    def policy(name: str, spec: dict) -> dict:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/part-of": "event-backbone"}},
            "spec": spec,
        }

    return [
        policy("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        policy(
            "allow-amqps-to-broker",
            {
                "podSelector": {"matchLabels": SELECTOR},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": s.broker.namespace}
                                },
                                "podSelector": {"matchLabels": broker_render.selector(s)},
                            }
                        ],
                        "ports": [{"protocol": "TCP", "port": broker_render.AMQPS}],
                    }
                ],
            },
        ),
        policy(
            "allow-dns",
            {
                "podSelector": {"matchLabels": SELECTOR},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    }
                ],
            },
        ),
    ]


def broker_ingress_policy(s: StackSettings) -> dict:
    """In the broker's namespace (which denies ingress by default): AMQPS from the PerfTest pods
    of the load test's namespace only, even where the broker also listens in plaintext."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "allow-amqps-from-load-test",
            "namespace": s.broker.namespace,
            "labels": {"app.kubernetes.io/part-of": "event-backbone"},
        },
        "spec": {
            "podSelector": {"matchLabels": broker_render.selector(s)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": s.broker.load_test.namespace}
                            },
                            "podSelector": {"matchLabels": SELECTOR},
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": broker_render.AMQPS}],
                }
            ],
        },
    }
