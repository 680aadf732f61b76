"""The service alert table of the DevOps plan, adapted to the platform's metric contract
(docs/monitoring.md has the table and where each row lives):

* response time P95 > 200 ms for 5 min -> page, error rate > 1 % for 2 min -> page, throughput
  < 50 % of a recorded baseline -> a ticket (warning, Slack): from the span metrics the sampler
  tier computes from every span before sampling (``traces_span_metrics_*``, by the span's service),
  restricted to a service's inbound work: server spans (HTTP/gRPC requests) and consumer spans
  (messages taken from the broker);
* query response time P95 > 100 ms for 5 min -> page: from the services' own database client
  histogram (OpenTelemetry ``db.client.operation.duration``), Azure having no query latency;
* pod CPU > 80 % of its requests for 10 min, memory > 85 % of its limits for 5 min (warning: the
  team's "autoscale" and "alert the team") from cAdvisor and kube-state-metrics, in the services'
  namespaces only;
* failed auth > 100/min -> block the source: the edge WAF's per-client rate limit does the
  blocking; its alert is an Azure Monitor one (render/db_alerts.py: edge_alerts)."""

from __future__ import annotations

from ..settings import StackSettings

INBOUND = 'span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER"'
ERROR = 'status_code="STATUS_CODE_ERROR"'


def _to_service(s: StackSettings, expr: str, source: str) -> str:
    """Copies label ``source`` to the contract's service label (routing and inhibition use it)."""
    label = s.observability.metrics.service_label
    if source == label:
        return expr
    return f'label_replace(\n  {expr},\n  "{label}", "$1", "{source}", "(.*)"\n)'


def namespaces(s: StackSettings) -> str:
    return "|".join(sorted(s.services)) or "none"


def baseline_offset(s: StackSettings) -> str:
    return "1d"  # the same hour yesterday


def recording_rules(s: StackSettings) -> list[dict]:
    m = s.observability.metrics
    src = m.span_service_label
    by = f"sum by ({src})"
    calls = f"{m.span_calls}{{{INBOUND}}}"
    ns = f'namespace=~"{namespaces(s)}"'
    per_container = "sum by (namespace, pod, container)"
    return [
        {"record": "service:requests:rate5m", "expr": _to_service(s, f"{by} (rate({calls}[5m]))", src)},
        {"record": "service:requests:rate1h", "expr": _to_service(s, f"{by} (rate({calls}[1h]))", src)},
        # the baseline: the service's hourly request rate at this time yesterday
        {
            "record": "service:requests:baseline",
            "expr": f"sum by ({', '.join(dict.fromkeys((src, m.service_label)))}) "
            f"(service:requests:rate1h offset {baseline_offset(s)})",
        },
        {
            "record": "service:request_errors:ratio_rate5m",
            "expr": _to_service(
                s,
                f"{by} (rate({m.span_calls}{{{INBOUND},{ERROR}}}[5m]))\n  /\n  {by} (rate({calls}[5m]))",
                src,
            ),
        },
        {
            "record": "service:request_duration_seconds:p95_5m",
            "expr": _to_service(
                s,
                f"histogram_quantile(0.95, sum by ({src}, le) (rate({m.span_duration_ms}_bucket{{{INBOUND}}}[5m])))"
                " / 1000",
                src,
            ),
        },
        # the services' own database client histogram (OpenTelemetry db.client.operation.duration)
        {
            "record": "service:db_client_operation_duration_seconds:p95_5m",
            "expr": f"histogram_quantile(0.95, sum by ({m.service_label}, le) "
            f"(rate({m.db_client_duration}_bucket[5m])))",
        },
        {
            "record": "namespace_pod_container:cpu_usage:ratio_requests",
            "expr": (
                f'{per_container} (rate(container_cpu_usage_seconds_total{{{ns},container!=""}}[5m]))\n'
                "  /\n"
                f'  {per_container} (kube_pod_container_resource_requests{{{ns},resource="cpu"}})'
            ),
        },
        {
            "record": "namespace_pod_container:memory_working_set:ratio_limits",
            "expr": (
                f'{per_container} (container_memory_working_set_bytes{{{ns},container!=""}})\n'
                "  /\n"
                f'  {per_container} (kube_pod_container_resource_limits{{{ns},resource="memory"}})'
            ),
        },
    ]


def alerts(s: StackSettings) -> list[dict]:
    from .rules import _annotations, who

    t = s.observability.thresholds
    svc = s.observability.metrics.service_label
    low = t.throughput_min_baseline_percent / 100

    def pod(ratio: str) -> str:
        # a service's pods run in the namespace named after it: that is its service label
        return f'label_replace({ratio}, "{svc}", "$1", "namespace", "(.*)")' if svc != "namespace" else ratio

    return [
        {
            "alert": "ServiceLatencyP95High",
            "expr": f"service:request_duration_seconds:p95_5m > {t.request_p95_seconds:g}",
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": _annotations(
                s,
                "ServiceLatencyP95High",
                f"{who(s)}: P95 response time is high",
                f"P95 of {who(s)}'s requests and messages handled is {{{{ $value | humanizeDuration }}}} "
                f"(threshold {t.request_p95_seconds * 1000:g} ms) for 5 minutes.",
            ),
        },
        {
            "alert": "DatabaseQueryLatencyP95High",
            "expr": f"service:db_client_operation_duration_seconds:p95_5m > {t.db_query_p95_seconds:g}",
            "for": "5m",
            "labels": {"severity": "critical"},  # the team's table: latency pages
            "annotations": _annotations(
                s,
                "DatabaseQueryLatencyP95High",
                f"{who(s)}: P95 database query time is high",
                f"P95 of {who(s)}'s database queries is {{{{ $value | humanizeDuration }}}} "
                f"(threshold {t.db_query_p95_seconds * 1000:g} ms) for 5 minutes.",
            ),
        },
        {
            "alert": "ServiceErrorRateHigh",
            "expr": f"service:request_errors:ratio_rate5m > {t.request_error_max_percent / 100:g}",
            "for": "2m",
            "labels": {"severity": "critical"},
            "annotations": _annotations(
                s,
                "ServiceErrorRateHigh",
                f"{who(s)} fails requests",
                f"{{{{ $value | humanizePercentage }}}} of {who(s)}'s requests and messages handled failed "
                f"(threshold {t.request_error_max_percent:g}%) for 2 minutes.",
            ),
        },
        {
            "alert": "ServiceThroughputLow",
            "expr": (
                f"service:requests:rate5m < {low:g} * service:requests:baseline\n"
                f"and\nservice:requests:baseline > {t.throughput_baseline_min_rps:g}"
            ),
            "for": "15m",
            # a ticket, not a page: warning goes to Slack
            "labels": {"severity": "warning", "action": "ticket"},
            "annotations": _annotations(
                s,
                "ServiceThroughputLow",
                f"{who(s)} handles less than {t.throughput_min_baseline_percent}% of its usual traffic",
                f"{who(s)} handles {{{{ $value }}}} requests/s, under {t.throughput_min_baseline_percent}% of "
                f"its rate at this hour {baseline_offset(s)} ago, for 15 minutes: investigate upstream.",
            ),
        },
        {
            "alert": "PodCpuHigh",
            "expr": pod("namespace_pod_container:cpu_usage:ratio_requests") + f" > {t.pod_cpu_request_percent / 100:g}",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": _annotations(
                s,
                "PodCpuHigh",
                "{{ $labels.pod }} uses more CPU than it requests",
                "{{ $labels.container }} in {{ $labels.namespace }}/{{ $labels.pod }} uses "
                f"{{{{ $value | humanizePercentage }}}} of its CPU request (threshold {t.pod_cpu_request_percent}%) "
                "for 10 minutes: scale out, or raise the request.",
            ),
        },
        {
            "alert": "PodMemoryHigh",
            "expr": pod("namespace_pod_container:memory_working_set:ratio_limits")
            + f" > {t.pod_memory_limit_percent / 100:g}",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": _annotations(
                s,
                "PodMemoryHigh",
                "{{ $labels.pod }} is close to its memory limit",
                "{{ $labels.container }} in {{ $labels.namespace }}/{{ $labels.pod }} uses "
                f"{{{{ $value | humanizePercentage }}}} of its memory limit (threshold {t.pod_memory_limit_percent}%) "
                "for 5 minutes: at the limit it is OOM-killed.",
            ),
        },
    ]
