"""Prometheus rules: SLO error-ratio recording rules, multi-window multi-burn-rate alerts
(Google SRE workbook, ch. 5) and the pipeline/broker threshold alerts. One rules file
(``build/<stack>/prometheus/rules.yaml``), deployed as one PrometheusRule; proven with
promtool in tests."""

from __future__ import annotations

from ..settings import Slo, StackSettings

WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
RECORD = "slo:sli_error:ratio_rate{window}"
# (long window, short window, burn-rate factor) pairs; budget consumed: 2 % in 1 h, 5 % in 6 h ...
FAST = (("1h", "5m", 14.4), ("6h", "30m", 6.0))
SLOW = (("1d", "2h", 3.0), ("3d", "6h", 1.0))


def budget(slo: Slo) -> float:
    return round(1 - slo.objective_percent / 100, 10)


def broker_selector(s: StackSettings) -> str:
    return f'job="{s.broker.cluster_name}",namespace="{s.broker.namespace}"'


def in_cluster_broker(s: StackSettings) -> bool:
    return s.broker.backend == "in-cluster"


def slos(s: StackSettings) -> list[Slo]:
    """The SLOs that apply to this stack (broker availability only where we run the broker)."""
    return [x for x in s.observability.slos if x.kind != "broker-availability" or in_cluster_broker(s)]


def error_ratio(s: StackSettings, slo: Slo, window: str) -> str:
    m = s.observability.metrics
    by = f"sum by ({m.service_label})"
    outcomes = f'{m.outcome_label}=~"{m.success_value}|{m.failure_value}"'
    failed = f'{m.outcome_label}="{m.failure_value}"'
    if slo.kind in ("publish-success", "storage-success"):
        metric = m.events_published if slo.kind == "publish-success" else m.events_stored
        return f"{by} (rate({metric}{{{failed}}}[{window}]))\n/\n{by} (rate({metric}{{{outcomes}}}[{window}]))"
    if slo.kind == "latency":
        le = f'le="{slo.latency_threshold_seconds:g}"'
        return (
            f"1 - (\n  {by} (rate({m.end_to_end_latency}_bucket{{{le}}}[{window}]))\n  /\n"
            f"  {by} (rate({m.end_to_end_latency}_count[{window}]))\n)"
        )
    if slo.kind == "saga-duration":
        # sagas slower than the threshold; Prometheus 3 stores an integer bucket bound as "30.0"
        le = le_matcher(slo.latency_threshold_seconds or 0)
        return (
            f"1 - (\n  {by} (rate({m.saga_duration}_bucket{{{le}}}[{window}]))\n  /\n"
            f"  {by} (rate({m.saga_duration}_count[{window}]))\n)"
        )
    # broker availability: the share of scrapes in the window where the broker answered; the
    # Prometheus operator labels targets with their Kubernetes `service`
    expr = f"1 - avg by (service) (avg_over_time(up{{{broker_selector(s)}}}[{window}]))"
    if m.service_label != "service":
        expr = f'label_replace({expr}, "{m.service_label}", "$1", "service", "(.*)")'
    return expr


def le_matcher(bound: float) -> str:
    """A bucket bound as scraped by Prometheus 2 ("30") or 3 (which normalises it to "30.0")."""
    text = f"{bound:g}"
    return f'le=~"{text}|{text}[.]0"' if "." not in text and "e" not in text else f'le="{text}"'


def recording_rules(s: StackSettings) -> list[dict]:
    return [
        {"record": RECORD.format(window=w), "expr": error_ratio(s, slo, w), "labels": {"slo": slo.name}}
        for slo in slos(s)
        for w in WINDOWS
    ]


def _annotations(s: StackSettings, alert: str, summary: str, description: str) -> dict:
    base = s.observability.alerting.runbook_base_url.rstrip("/")
    return {"summary": summary, "description": description, "runbook_url": f"{base}/{alert}.md"}


def _burn(slo: Slo, pairs) -> str:
    b = budget(slo)
    clauses = []
    for long, short, factor in pairs:
        threshold = f"({factor:g} * {b:g})"
        clauses.append(
            f'(\n  {RECORD.format(window=long)}{{slo="{slo.name}"}} > {threshold}\n  and\n'
            f'  {RECORD.format(window=short)}{{slo="{slo.name}"}} > {threshold}\n)'
        )
    return "\nor\n".join(clauses)


def who(s: StackSettings) -> str:
    """The alert template for the service an alert is about (the contract's label name)."""
    return f"{{{{ $labels.{s.observability.metrics.service_label} }}}}"


def slo_alerts(s: StackSettings) -> list[dict]:
    out = []
    for slo in slos(s):
        who = globals()["who"](s)
        out.append(
            {
                "alert": "ErrorBudgetBurnFast",
                "expr": _burn(slo, FAST),
                # no `for`: the 5m/30m short windows already ignore blips. After six healthy hours a
                # 5 % error rate (50x budget) pages at minute 18 (promtool); a `for: 2m` would move
                # that to minute 20, the edge of the 20-minute requirement.
                "labels": {"severity": "critical", "slo": slo.name},
                "annotations": _annotations(
                    s,
                    "ErrorBudgetBurnFast",
                    f"{slo.name}: {who} burns its error budget fast",
                    f"{who} is spending the {slo.objective_percent:g}% {slo.name} budget "
                    "at 6x-14.4x the sustainable rate (1h/5m or 6h/30m windows); "
                    f"at this pace the {s.observability.slo_window_days}-day budget is gone in days.",
                ),
            }
        )
        out.append(
            {
                "alert": "ErrorBudgetBurnSlow",
                "expr": _burn(slo, SLOW),
                "for": "15m",
                "labels": {"severity": "warning", "slo": slo.name},
                "annotations": _annotations(
                    s,
                    "ErrorBudgetBurnSlow",
                    f"{slo.name}: {who} burns its error budget steadily",
                    f"{who} is spending the {slo.objective_percent:g}% {slo.name} budget at 1x-3x the sustainable rate "
                    f"(1d/2h or 3d/6h windows).",
                ),
            }
        )
    return out


def pipeline_alerts(s: StackSettings) -> list[dict]:
    o = s.observability
    m, t = o.metrics, o.thresholds
    svc = m.service_label
    ok = f'{m.outcome_label}="{m.success_value}"'
    outcomes = f'{m.outcome_label}=~"{m.success_value}|{m.failure_value}"'
    minimum = t.success_rate_min_percent / 100

    def success_rate(metric: str) -> str:
        return (
            f"sum by ({svc}) (rate({metric}{{{ok}}}[5m]))\n/\n"
            f"sum by ({svc}) (rate({metric}{{{outcomes}}}[5m]))\n< {minimum:g}"
        )

    return [
        {
            "alert": "EventPublishSuccessRateLow",
            "expr": success_rate(m.events_published),
            "for": "1m",
            "labels": {"severity": "critical"},
            "annotations": _annotations(
                s,
                "EventPublishSuccessRateLow",
                f"{who(s)} fails to publish events",
                f"Only {{{{ $value | humanizePercentage }}}} of publishes by {who(s)} succeeded over 5 minutes "
                f"(minimum {t.success_rate_min_percent:g}%).",
            ),
        },
        {
            "alert": "EventStorageSuccessRateLow",
            "expr": success_rate(m.events_stored),
            "for": "1m",
            "labels": {"severity": "critical"},
            "annotations": _annotations(
                s,
                "EventStorageSuccessRateLow",
                f"{who(s)} fails to store events",
                f"Only {{{{ $value | humanizePercentage }}}} of stores by {who(s)} succeeded over 5 minutes "
                f"(minimum {t.success_rate_min_percent:g}%).",
            ),
        },
        {
            "alert": "EventEndToEndLatencyHigh",
            "expr": f"histogram_quantile(0.99, sum by ({svc}, le) (rate({m.end_to_end_latency}_bucket[5m])))\n"
            f"> {t.e2e_p99_seconds:g}",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": _annotations(
                s,
                "EventEndToEndLatencyHigh",
                f"{who(s)}: p99 end-to-end latency is high",
                f"p99 end-to-end latency of {who(s)} is {{{{ $value | humanizeDuration }}}} "
                f"(threshold {t.e2e_p99_seconds:g}s) for 5 minutes.",
            ),
        },
    ]


def broker_alerts(s: StackSettings) -> list[dict]:
    if not in_cluster_broker(s):
        return []  # CloudAMQP's own alarms cover the managed broker (components/cloudamqp.py)
    o, b = s.observability, s.broker
    m, t = o.metrics, o.thresholds
    sel = broker_selector(s)
    ns = f'namespace="{b.namespace}"'
    svc = {m.service_label: b.cluster_name}  # so a critical broker alert inhibits its warnings
    return [
        {
            "alert": "DeadLetterQueueBacklog",
            "expr": (
                f'label_replace(\n  max by (vhost, queue) ({m.queue_messages}{{queue=~"dlq\\\\..+"}}),\n'
                f'  "{m.service_label}", "$1", "queue", "dlq\\\\.(.+)"\n) > {t.dlq_backlog_messages}'
            ),
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": _annotations(
                s,
                "DeadLetterQueueBacklog",
                "Dead letters pile up in {{ $labels.queue }}",
                "{{ $labels.queue }} in vhost {{ $labels.vhost }} holds {{ $value }} messages "
                f"(threshold {t.dlq_backlog_messages}) for 5 minutes.",
            ),
        },
        {
            "alert": "BrokerDown",
            "expr": f"up{{{sel}}} == 0\nor\nabsent(up{{{sel}}})",
            "for": "2m",
            "labels": {"severity": "critical", **svc},
            "annotations": _annotations(
                s,
                "BrokerDown",
                "RabbitMQ is not answering scrapes",
                "The broker's metrics endpoint {{ $labels.instance }} has been down (or absent) for 2 minutes.",
            ),
        },
        {
            "alert": "BrokerNodeCountLow",
            "expr": (
                f'kube_statefulset_status_replicas_ready{{{ns},statefulset="{b.cluster_name}-server"}}\n< {b.replicas}'
            ),
            "for": "5m",
            "labels": {"severity": "warning", **svc},
            "annotations": _annotations(
                s,
                "BrokerNodeCountLow",
                "Fewer RabbitMQ nodes are ready than configured",
                f"{{{{ $value }}}} of {b.replicas} broker nodes are ready for 5 minutes.",
            ),
        },
        {
            "alert": "BrokerDiskAlarm",
            "expr": f"max by (instance) (rabbitmq_alarms_free_disk_space_watermark{{{ns}}}) == 1",
            "for": "1m",
            "labels": {"severity": "critical", **svc},
            "annotations": _annotations(
                s,
                "BrokerDiskAlarm",
                "RabbitMQ disk alarm: publishers are blocked",
                "{{ $labels.instance }} is below its free disk limit; RabbitMQ blocks every publishing connection.",
            ),
        },
        {
            "alert": "BrokerMemoryAlarm",
            "expr": f"max by (instance) (rabbitmq_alarms_memory_used_watermark{{{ns}}}) == 1",
            "for": "1m",
            "labels": {"severity": "critical", **svc},
            "annotations": _annotations(
                s,
                "BrokerMemoryAlarm",
                "RabbitMQ memory alarm: publishers are blocked",
                "{{ $labels.instance }} is above its memory high watermark; "
                "RabbitMQ blocks every publishing connection.",
            ),
        },
        {
            "alert": "BrokerVolumeSpaceLow",
            "expr": (
                f'kubelet_volume_stats_available_bytes{{{ns},persistentvolumeclaim=~"persistence-{b.cluster_name}-server-.*"}}\n/\n'
                f'kubelet_volume_stats_capacity_bytes{{{ns},persistentvolumeclaim=~"persistence-{b.cluster_name}-server-.*"}}\n'
                f"< {t.volume_free_min_percent / 100:g}"
            ),
            "for": "10m",
            "labels": {"severity": "warning", **svc},
            "annotations": _annotations(
                s,
                "BrokerVolumeSpaceLow",
                "A RabbitMQ volume is filling up",
                "{{ $labels.persistentvolumeclaim }} has {{ $value | humanizePercentage }} free "
                f"(minimum {t.volume_free_min_percent}%).",
            ),
        },
        {
            "alert": "BrokerMemoryHigh",
            "expr": (
                f"max by (instance) (rabbitmq_process_resident_memory_bytes{{{ns}}})\n/\n"
                f"max by (instance) (rabbitmq_resident_memory_limit_bytes{{{ns}}})\n> {t.memory_high_percent / 100:g}"
            ),
            "for": "10m",
            "labels": {"severity": "warning", **svc},
            "annotations": _annotations(
                s,
                "BrokerMemoryHigh",
                "RabbitMQ memory is close to its high watermark",
                "{{ $labels.instance }} uses {{ $value | humanizePercentage }} of its memory high watermark "
                f"(warning at {t.memory_high_percent}%).",
            ),
        },
    ]


# The collectors' own counters of spans lost: refused at a receiver (memory limiter), not queued
# (sending queue full) or failed after the exporter's retries. The collector's Prometheus
# exposition names counters with `_total` (the OTel SDK exporter); older builds did not.
LOST_SPANS = "otelcol_(receiver_refused|exporter_enqueue_failed|exporter_send_failed)_spans(_total)?"


def tracing_alerts(s: StackSettings) -> list[dict]:
    """Both collector tiers run in the observability namespace; nothing else there exports
    otelcol_* metrics."""
    lost = f'{{__name__=~"{LOST_SPANS}",namespace="{s.observability.namespace}"}}'
    return [
        {
            "alert": "TracingSpansLost",
            "expr": f"sum by (job) (rate({lost}[5m])) > 0",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": _annotations(
                s,
                "TracingSpansLost",
                "The trace pipeline is losing spans",
                "{{ $labels.job }} has refused or dropped {{ $value }} spans/s for 10 minutes "
                "(refused by its memory limiter, its sending queue full, or an export failed after its retries).",
            ),
        }
    ]


def watchdog(s: StackSettings) -> dict:
    return {
        "alert": "Watchdog",
        "expr": "vector(1)",
        "labels": {"severity": "none"},
        "annotations": _annotations(
            s,
            "Watchdog",
            "Alerting pipeline heartbeat",
            "Always firing. If the dead-man's switch stops receiving it, Prometheus or Alertmanager is broken.",
        ),
    }


def rule_groups(s: StackSettings) -> list[dict]:
    from . import saga, service_alerts

    groups = [
        {"name": "event-backbone-slo-recording", "interval": "1m", "rules": recording_rules(s)},
        {"name": "event-backbone-slo-alerts", "rules": slo_alerts(s)},
        {"name": "event-backbone-pipeline", "rules": pipeline_alerts(s)},
        {"name": "event-backbone-broker", "rules": broker_alerts(s)},
        {"name": "event-backbone-tracing", "rules": tracing_alerts(s)},
        {"name": "event-backbone-saga-recording", "interval": "1m", "rules": saga.recording_rules(s)},
        {"name": "event-backbone-saga", "rules": saga.alerts(s)},
        {"name": "event-backbone-service-recording", "interval": "1m", "rules": service_alerts.recording_rules(s)},
        {"name": "event-backbone-services", "rules": service_alerts.alerts(s)},
        {"name": "event-backbone-meta", "rules": [watchdog(s)]},
    ]
    return [g for g in groups if g["rules"]]


def rules_file(s: StackSettings) -> dict:
    return {"groups": rule_groups(s)}


def alerts(s: StackSettings) -> list[dict]:
    return [r for g in rule_groups(s) for r in g["rules"] if "alert" in r]


def prometheus_rule(s: StackSettings) -> dict:
    o = s.observability
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "event-backbone",
            "namespace": o.namespace,
            "labels": {"app.kubernetes.io/part-of": "event-backbone", "release": "kube-prometheus-stack"},
        },
        "spec": rules_file(s),
    }
