"""Services: one entry per bounded context (``services.<name>``) holds everything the stack
creates for it: its broker side (queue, bindings, dead-letter queue, queue overrides), whether
it owns a database, how it scales on its queue's depth, and its namespace's resource quota.
The broker topology, the databases and each service's landing zone derive from this map."""

from __future__ import annotations

from pydantic import Field

from .base import Model, ServiceName
from .broker import Memory, Quantity, ServiceTopology
from .images import GitHubRepository


class ServiceScaling(Model):
    """A KEDA ScaledObject on the service's own queue (QueueLength)."""

    deployment: ServiceName  # the Deployment in the service's namespace that KEDA scales
    min_replicas: int = Field(default=1, ge=0, le=1000)
    max_replicas: int = Field(default=10, ge=1, le=1000)
    target_queue_length: int = Field(default=100, ge=1, le=1_000_000)  # ready messages per replica
    polling_interval_seconds: int = Field(default=15, ge=5, le=300)
    cooldown_period_seconds: int = Field(default=300, ge=30, le=3600)


class ServiceResources(Model):
    """The namespace's ResourceQuota (totals) and LimitRange (per-container defaults)."""

    requests_cpu: Quantity = "2"
    requests_memory: Memory = "4Gi"
    limits_cpu: Quantity = "8"
    limits_memory: Memory = "8Gi"
    pods: int = Field(default=20, ge=1, le=1000)
    default_cpu_request: Quantity = "100m"
    default_memory_request: Memory = "128Mi"
    default_cpu_limit: Quantity = "1"
    default_memory_limit: Memory = "512Mi"


class ServiceSettings(ServiceTopology):
    """One service. The broker keys (queue, bindings, deadLetterQueue, overrides) are the
    service's side of the topology; the exchange, DLX and queue defaults stay under broker."""

    database: bool = False  # a PostgreSQL database owned by the service's identity
    # Azure Managed Redis: an access-policy assignment for the service's own identity, egress to
    # the private endpoint on 10000, a ConfigMap <svc>-redis; its keys are `<svc>:*` (docs/redis.md)
    redis: bool = False
    scaling: ServiceScaling | None = None
    resources: ServiceResources = ServiceResources()
    # the GitHub repository its images are built in (default <registry.images.githubOwner>/<name>)
    repository: GitHubRepository | None = None


# Names a service must not take: platform namespaces, and names whose secrets would collide
# with the platform's (broker-<svc> vs broker-admin / broker-ca-cert / broker-keda-monitor).
RESERVED_SERVICE_NAMES = (
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "gatekeeper-system",
    "rabbitmq-system",
    "platform-bootstrap",
    "admin",
    "ca-cert",
    "keda-monitor",
    "monitoring-node-exporter",
)


def cpu_millis(q: str) -> int:
    return int(float(q[:-1])) if q.endswith("m") else int(float(q) * 1000)


def memory_mebibytes(q: str) -> int:
    return int(q[:-2]) * (1024 if q.endswith("Gi") else 1)


Services = dict[ServiceName, ServiceSettings]
__all__ = ["RESERVED_SERVICE_NAMES", "ServiceResources", "ServiceScaling", "ServiceSettings", "Services"]
