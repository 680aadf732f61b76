"""Broker settings: the RabbitMQ cluster (in-cluster or CloudAMQP) and its event topology
(exchange, dead-letter exchange, queue defaults; each service's side lives in `services`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import Gibibytes, Model, ServiceName

# Topic-exchange binding pattern: dot-separated words, each a literal word, '*' or '#'.
BindingPattern = Annotated[str, Field(pattern=r"^(\*|#|[a-z0-9_-]+)(\.(\*|#|[a-z0-9_-]+))*$")]
ObjectName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,120}$")]  # queue / exchange / vhost
Quantity = Annotated[str, Field(pattern=r"^\d+(\.\d+)?(m)?$")]
Memory = Annotated[str, Field(pattern=r"^\d+(Mi|Gi)$")]
DAY_MS = 86_400_000


class QueueDefaults(Model):
    message_ttl_ms: int = Field(default=DAY_MS, ge=1000, le=30 * DAY_MS)
    max_length: int = Field(default=10_000, ge=1, le=10_000_000)
    delivery_limit: int = Field(default=5, ge=1, le=100)


class QueueOverrides(Model):
    message_ttl_ms: Annotated[int, Field(ge=1000, le=30 * DAY_MS)] | None = None
    max_length: Annotated[int, Field(ge=1, le=10000000)] | None = None
    delivery_limit: Annotated[int, Field(ge=1, le=100)] | None = None
    dead_letter_exchange: ObjectName | None = None


class ServiceTopology(Model):
    """A service's side of the topology (the keys of a ``services.<name>`` entry)."""

    queue: ObjectName | None = None  # default: <service>.events
    bindings: list[BindingPattern] = Field(default_factory=list)  # none: a publisher only
    dead_letter_queue: bool = False  # a dlq.<service> queue of its own, besides dlq.all
    overrides: QueueOverrides = QueueOverrides()


class Topology(Model):
    vhost: ObjectName | None = None  # default: events-<environment>
    exchange: ObjectName = "bloodbank.events.v1"
    dead_letter_exchange: ObjectName = "bloodbank.events.dlq"
    dead_letter_retention_days: int = Field(default=7, ge=1, le=90)
    defaults: QueueDefaults = QueueDefaults()
    # Each service's queue, bindings and dead-letter queue live in its `services.<name>` entry.


class BrokerResources(Model):
    cpu_request: Quantity = "500m"
    cpu_limit: Quantity | None = None
    memory: Memory = "2Gi"  # request = limit: RabbitMQ sizes its memory alarm from it


class CloudAmqpSettings(Model):
    plan: str = "penguin-1"
    region: str = "azure-arm::westeurope"
    pagerduty_routing_key: str | None = None  # a secure value in the stack file
    slack_webhook_url: str | None = None  # a secure value in the stack file
    dlq_alarm_messages: int = Field(default=1000, ge=1)
    disk_alarm_percent: int = Field(default=80, ge=10, le=95)
    memory_alarm_percent: int = Field(default=80, ge=10, le=95)


# An image pinned to a version tag (starting with a digit: never `latest`) or to a digest.
PinnedImage = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9./_-]*(:[0-9][A-Za-z0-9._-]*|@sha256:[0-9a-f]{64})$")]
PERF_TEST_IMAGE = "pivotalrabbitmq/perf-test:2.25.0"  # RabbitMQ PerfTest, release v2.25.0


class LoadTestResources(Model):
    cpu_request: Quantity = "1"
    cpu_limit: Quantity = "2"
    memory: Memory = "1Gi"  # request = limit


class LoadTestSettings(Model):
    """An opt-in RabbitMQ PerfTest run as a Kubernetes Job against the in-cluster broker
    (docs/runbooks/load-test.md). Off unless ``enabled: true``."""

    enabled: bool = False
    namespace: ServiceName = "loadtest"
    image: PinnedImage = PERF_TEST_IMAGE
    producers: int = Field(default=10, ge=1, le=500)
    consumers: int = Field(default=10, ge=1, le=500)
    rate: int = Field(default=50, ge=1, le=100_000)  # messages per second, per producer
    duration_seconds: int = Field(default=300, ge=10, le=86_400)
    message_size: int = Field(default=1000, ge=12, le=1_048_576)  # bytes; PerfTest's minimum is 12
    queues: int = Field(default=2, ge=1, le=100)  # perf-test-1 .. perf-test-<queues>
    confirm: int = Field(default=100, ge=1, le=10_000)  # max unconfirmed publishes per producer
    resources: LoadTestResources = LoadTestResources()


class BrokerSettings(Model):
    backend: Literal["in-cluster", "cloudamqp"] = "in-cluster"
    namespace: ServiceName = "messaging"
    cluster_name: ServiceName = "rabbitmq"
    # The latest Cluster Operator release; its preStop path (await_online_quorum_plus_one, drain)
    # is proven on 4.3 by the rolling-restart proof. The image is the RabbitMQ release the proofs
    # run (tests/test_versions.py fails when the two differ in major.minor).
    operator_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = "2.22.3"
    image: str = "rabbitmq:4.3.6-management"
    replicas: int = Field(default=3, ge=1, le=7)
    storage_size: Gibibytes = "20Gi"
    storage_class: ServiceName = "rabbitmq-premium-zrs"
    resources: BrokerResources = BrokerResources()
    plaintext_listener: bool = False
    event_services_label: Annotated[str, Field(pattern=r"^[a-z0-9./-]+$")] = "event-backbone.io/event-services"
    monitoring_namespace: ServiceName = "monitoring"
    topology: Topology = Topology()
    cloudamqp: CloudAmqpSettings | None = None
    load_test: LoadTestSettings = LoadTestSettings()
