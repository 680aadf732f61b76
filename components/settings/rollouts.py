"""Progressive delivery settings: the Argo Rollouts controller and the SLO analysis that gates
every canary / blue-green promotion (thresholds from the DevOps template's rollback criteria)."""

from __future__ import annotations

from pydantic import Field

from .base import Model, ServiceName
from .observability import Duration, LabelName


class RolloutsController(Model):
    replicas: int = Field(default=1, ge=1, le=5)  # prod: at least 2 (rules.py), with a PodDisruptionBudget


class RolloutAnalysis(Model):
    """What a ClusterAnalysisTemplate measures on the new version's pods and when it fails."""

    max_error_percent: float = Field(default=2.0, gt=0, le=50)
    max_p99_latency_ms: int = Field(default=500, ge=1, le=60000)
    # the metric label that carries the pod's `rollouts-pod-template-hash` (copied by the service's
    # PodMonitor: relabel __meta_kubernetes_pod_label_rollouts_pod_template_hash to this label)
    revision_label: LabelName = "rollouts_pod_template_hash"
    rate_window: Duration = "2m"
    interval: Duration = "1m"
    count: int = Field(default=5, ge=1, le=120)
    failure_limit: int = Field(default=1, ge=0, le=10)
    inconclusive_limit: int = Field(default=1, ge=0, le=10)


class RolloutsSettings(Model):
    enabled: bool = True
    namespace: ServiceName = "argo-rollouts"
    controller: RolloutsController = RolloutsController()
    analysis: RolloutAnalysis = RolloutAnalysis()
