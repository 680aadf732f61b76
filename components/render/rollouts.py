"""Progressive delivery: the Argo Rollouts release (values checked against the chart's defaults in
tests), its namespace, and the ClusterAnalysisTemplates that gate every promotion on the SLOs.

The analysis reads the metric contract (``observability.metrics``), the same names the burn-rate
rules read (render/rules.py), restricted to the new version's pods by the revision label
(``rollouts.analysis.revisionLabel``, the pod's ``rollouts-pod-template-hash``). Each query drops
NaN (``>= 0``), so "no data" - no series, or series without traffic (0/0) - is an empty result:
neither the success nor the failure condition holds and the measurement is Inconclusive, which
pauses the rollout for a human (``inconclusiveLimit``) instead of promoting or aborting it.
tests/test_rollouts.py proves every query with promtool on synthetic series."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..settings import StackSettings
from .helm_values import Chart, prometheus_url
from .images import chart_image

CHART = Chart("argo-rollouts", "argo-rollouts", "2.41.0", "https://argoproj.github.io/argo-helm")

# Rollout analysis arguments: the service (the contract's service label) and the new pods' hash.
ARG_SERVICE = "service-name"
ARG_REVISION = "canary-hash"
ERROR_RATIO_TEMPLATE = "event-error-ratio"
LATENCY_TEMPLATE = "event-latency-p99"
POD_SECURITY = "restricted"  # the chart's defaults already run non-root, read-only, no capabilities


@dataclass(frozen=True)
class AnalysisMetric:
    template: str
    name: str
    threshold: float  # the measured value must not exceed it
    unit: str

    def success_condition(self) -> str:
        return f"len(result) > 0 && result[0] <= {self.threshold:g}"

    def failure_condition(self) -> str:
        return f"len(result) > 0 && result[0] > {self.threshold:g}"

    def promql_success(self, query: str) -> str:
        """The success condition in PromQL (a sample iff Argo would count a success)."""
        return f"({query}) <= {self.threshold:g}"

    def promql_failure(self, query: str) -> str:
        return f"({query}) > {self.threshold:g}"


def metrics(s: StackSettings) -> list[AnalysisMetric]:
    a = s.rollouts.analysis
    return [
        AnalysisMetric(ERROR_RATIO_TEMPLATE, "error-ratio", round(a.max_error_percent / 100, 10), "ratio"),
        AnalysisMetric(LATENCY_TEMPLATE, "latency-p99", round(a.max_p99_latency_ms / 1000, 10), "seconds"),
    ]


def _selector(s: StackSettings, service: str, revision: str) -> str:
    m = s.observability.metrics
    return f'{m.service_label}="{service}",{s.rollouts.analysis.revision_label}="{revision}"'


def error_ratio_query(s: StackSettings, service: str, revision: str) -> str:
    """Failed / all outcomes of events the new pods published or stored, over the rate window. Each
    counter is summed on its own (rate() drops the name, so one selector over both would collide)
    and a service that only publishes or only stores counts 0 for the other."""
    m, w = s.observability.metrics, s.rollouts.analysis.rate_window
    sel = _selector(s, service, revision)
    failed = f'{m.outcome_label}="{m.failure_value}"'
    outcomes = f'{m.outcome_label}=~"{m.success_value}|{m.failure_value}"'

    def total(matcher: str) -> str:
        return " + ".join(
            f"(sum(rate({name}{{{sel},{matcher}}}[{w}])) or vector(0))"
            for name in (m.events_published, m.events_stored)
        )

    return f"(\n  ({total(failed)})\n  /\n  ({total(outcomes)})\n) >= 0"


def latency_p99_query(s: StackSettings, service: str, revision: str) -> str:
    """p99 of the new pods' end-to-end latency (histogram), over the rate window."""
    m, w = s.observability.metrics, s.rollouts.analysis.rate_window
    sel = _selector(s, service, revision)
    return f"histogram_quantile(0.99,\n  sum by (le) (rate({m.end_to_end_latency}_bucket{{{sel}}}[{w}]))\n) >= 0"


def query(s: StackSettings, metric: AnalysisMetric, service: str, revision: str) -> str:
    fn = error_ratio_query if metric.template == ERROR_RATIO_TEMPLATE else latency_p99_query
    return fn(s, service, revision)


def cluster_analysis_templates(s: StackSettings) -> list[dict]:
    a = s.rollouts.analysis
    out = []
    for metric in metrics(s):
        out.append(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "ClusterAnalysisTemplate",
                "metadata": {
                    "name": metric.template,
                    "labels": {"app.kubernetes.io/part-of": "event-backbone"},
                },
                "spec": {
                    "args": [{"name": ARG_SERVICE}, {"name": ARG_REVISION}],
                    "metrics": [
                        {
                            "name": metric.name,
                            "interval": a.interval,
                            "count": a.count,
                            "failureLimit": a.failure_limit,
                            "inconclusiveLimit": a.inconclusive_limit,
                            "successCondition": metric.success_condition(),
                            "failureCondition": metric.failure_condition(),
                            "provider": {
                                "prometheus": {
                                    "address": prometheus_url(s),
                                    "timeout": 30,
                                    "query": query(
                                        s, metric, f"{{{{args.{ARG_SERVICE}}}}}", f"{{{{args.{ARG_REVISION}}}}}"
                                    ),
                                }
                            },
                        }
                    ],
                },
            }
        )
    return out


def namespace(s: StackSettings) -> dict:
    labels = {"app.kubernetes.io/part-of": "event-backbone"}
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = POD_SECURITY
        labels[f"pod-security.kubernetes.io/{mode}-version"] = "latest"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": s.rollouts.namespace, "labels": labels}}


def controller_values(s: StackSettings, registry: Any = None) -> dict:
    """``registry``: the stack's registry login server (images through its cache)."""
    r = s.rollouts
    replicas = r.controller.replicas
    pods = {"app.kubernetes.io/name": CHART.chart, "app.kubernetes.io/instance": CHART.release}
    controller: dict = {
        "replicas": replicas,  # leader election: one active, the others stand by
        "pdb": {"enabled": replicas > 1, "minAvailable": 1},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "metrics": {"enabled": True, "serviceMonitor": {"enabled": True}},
    }
    if registry is not None:
        controller["image"] = chart_image("quay.io", "argoproj/argo-rollouts", registry)
    if replicas > 1:
        controller["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway" if key == "topology.kubernetes.io/zone" else "DoNotSchedule",
                "labelSelector": {"matchLabels": dict(pods)},
            }
            for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
        ]
    return {
        "installCRDs": True,
        "keepCRDs": True,  # uninstalling the controller must not delete every Rollout
        "controller": controller,
        "dashboard": {
            "enabled": False,  # `kubectl argo rollouts` instead: no extra UI to expose
            **(
                {"image": chart_image("quay.io", "argoproj/kubectl-argo-rollouts", registry)}
                if registry is not None
                else {}
            ),
        },
    }
