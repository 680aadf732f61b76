"""promtool unit tests for every alert, generated from the stack settings.

For each alert: a breaching scenario in which it must fire with exactly these labels and
annotations, and a healthy one in which it must not. For the burn-rate alerts also the
timing the issue asks for: after an hour of healthy traffic, an error rate of 50x the
budget pages (ErrorBudgetBurnFast) within 20 minutes; a 10-minute spike does not trigger
ErrorBudgetBurnSlow (nor the fast burn).
"""

from __future__ import annotations

import re

from components.render import rules as R
from components.settings import Slo, StackSettings

SERVICE = "candystore"


# ----------------------------------------------------------------------------- series helpers
def counter(*segments: tuple[float, int]) -> str:
    """A counter growing by `rate` per minute for `minutes`, segment after segment
    (promtool's expanding notation, one sample a minute from t=0)."""
    parts, value, first = [], 0.0, True
    for rate, minutes in segments:
        if first:
            parts.append(f"0+{rate:g}x{minutes}")
            value = rate * minutes
            first = False
        else:
            value += rate
            parts.append(f"{value:g}+{rate:g}x{minutes - 1}")
            value += rate * (minutes - 1)
    return " ".join(parts)


def gauge(*segments: tuple[float, int]) -> str:
    parts = []
    for i, (v, minutes) in enumerate(segments):
        parts.append(f"{v:g}x{minutes if i == 0 else minutes - 1}")
    return " ".join(parts)


# ----------------------------------------------------------------------------- templates
def humanize_percentage(v: float) -> str:
    return f"{v * 100:.4g}%"


def humanize_duration(v: float) -> str:
    if v >= 1:
        return f"{v:.4g}s"  # enough for the values these scenarios produce (1 s to 60 s)
    return f"{v * 1000:.4g}ms"


def expand(template: str, labels: dict, value: float | None) -> str:
    """Prometheus alert templating, for what our annotations use."""

    def one(match: re.Match) -> str:
        expr = match.group(1).strip()
        if expr.startswith("$labels."):
            return labels.get(expr[len("$labels.") :], "")
        parts = [p.strip() for p in expr.split("|")]
        assert parts[0] == "$value", expr
        if len(parts) == 1:
            return f"{value:g}"
        return {"humanizePercentage": humanize_percentage, "humanizeDuration": humanize_duration}[parts[1]](value)

    return re.sub(r"\{\{(.*?)\}\}", one, template)


def expected(s: StackSettings, alert: str, labels: dict, value: float | None = None, slo: str | None = None) -> dict:
    rule = next(r for r in R.alerts(s) if r["alert"] == alert and (slo is None or r["labels"].get("slo") == slo))
    all_labels = {**labels, **rule["labels"]}
    return {
        "exp_labels": all_labels,
        "exp_annotations": {k: expand(v, all_labels, value) for k, v in rule["annotations"].items()},
    }


def case(series: dict[str, str], checks: list[tuple[int, str, list[dict]]], name: str) -> dict:
    return {
        "name": name,
        "interval": "1m",
        "input_series": [{"series": k, "values": v} for k, v in series.items()],
        "alert_rule_test": [{"eval_time": f"{t}m", "alertname": a, "exp_alerts": exp} for t, a, exp in checks],
    }


# ----------------------------------------------------------------------------- SLO series
def slo_series(s: StackSettings, slo: Slo, segments: list[tuple[float, int]], per_minute: int = 1000) -> dict[str, str]:
    """Series for one SLO; each segment is (error fraction, minutes)."""
    m = s.observability.metrics
    svc = f'{m.service_label}="{SERVICE}"'
    if slo.kind in ("publish-success", "storage-success"):
        metric = m.events_published if slo.kind == "publish-success" else m.events_stored
        return {
            f'{metric}{{{svc},{m.outcome_label}="{m.success_value}"}}': counter(
                *[(per_minute * (1 - f), n) for f, n in segments]
            ),
            f'{metric}{{{svc},{m.outcome_label}="{m.failure_value}"}}': counter(
                *[(per_minute * f, n) for f, n in segments]
            ),
        }
    if slo.kind in ("latency", "saga-duration"):
        le = f"{slo.latency_threshold_seconds:g}"
        base = m.end_to_end_latency
        if slo.kind == "saga-duration":
            # as Prometheus 3 stores it (an integer bound gets ".0"), with the saga label
            le, base = (le + ".0" if "." not in le else le), m.saga_duration
            svc = f'{svc},{m.saga_label}="order"'
        return {
            f'{base}_bucket{{{svc},le="{le}"}}': counter(*[(per_minute * (1 - f), n) for f, n in segments]),
            f'{base}_bucket{{{svc},le="+Inf"}}': counter(*[(per_minute, n) for f, n in segments]),
            f"{base}_count{{{svc}}}": counter(*[(per_minute, n) for f, n in segments]),
        }
    # broker availability: error fraction 1 = target down
    return {
        f'up{{{R.broker_selector(s)},service="{s.broker.cluster_name}",instance="10.0.0.1:15691"}}': gauge(
            *[(0 if f >= 1 else 1, n) for f, n in segments]
        )
    }


def slo_labels(s: StackSettings, slo: Slo) -> dict:
    label = s.observability.metrics.service_label
    if slo.kind == "broker-availability":  # the target's Kubernetes `service`, copied to the contract's label
        return {"slo": slo.name, "service": s.broker.cluster_name, label: s.broker.cluster_name}
    return {"slo": slo.name, label: SERVICE}


def slo_cases(s: StackSettings) -> list[dict]:
    out = []
    for slo in R.slos(s):
        b = R.budget(slo)
        labels = slo_labels(s, slo)
        fast = expected(s, "ErrorBudgetBurnFast", labels, slo=slo.name)
        slow = expected(s, "ErrorBudgetBurnSlow", labels, slo=slo.name)
        if slo.kind == "broker-availability":
            # an outage: the broker stops answering after an hour
            out.append(
                case(
                    slo_series(s, slo, [(0, 60), (1, 30)]),
                    [(60, "ErrorBudgetBurnFast", []), (75, "ErrorBudgetBurnFast", [fast])],
                    f"{slo.name}: outage pages",
                )
            )
            out.append(
                case(
                    slo_series(s, slo, [(0, 180)]),
                    [
                        (60, "ErrorBudgetBurnFast", []),
                        (180, "ErrorBudgetBurnFast", []),
                        (180, "ErrorBudgetBurnSlow", []),
                    ],
                    f"{slo.name}: healthy stays silent",
                )
            )
            continue
        breach = min(50 * b, 1.0)
        # After 60 healthy minutes, 50x the budget pages within 20 minutes (the 1h/5m pair
        # crosses 14.4x about 17 minutes in; with only an hour of history the 6h/30m pair
        # can cross 6x earlier still).
        out.append(
            case(
                slo_series(s, slo, [(0, 60), (breach, 40)]),
                [
                    (60, "ErrorBudgetBurnFast", []),
                    (80, "ErrorBudgetBurnFast", [fast]),
                ],
                f"{slo.name}: {breach:.1%} errors page within 20 minutes",
            )
        )
        # After six healthy hours the 6h/30m pair cannot cross early: the 1h/5m pair pages,
        # once the 1h window is past 14.4x (about 17 minutes in) and within 20 minutes.
        out.append(
            case(
                slo_series(s, slo, [(0, 360), (breach, 30)]),
                [
                    (360 + 15, "ErrorBudgetBurnFast", []),
                    (360 + 20, "ErrorBudgetBurnFast", [fast]),
                ],
                f"{slo.name}: after six healthy hours, {breach:.1%} errors page between minute 15 and 20",
            )
        )
        # 5x the budget, sustained: the slow burn warns (and the fast one stays quiet).
        out.append(
            case(
                slo_series(s, slo, [(5 * b, 180)]),
                [(180, "ErrorBudgetBurnSlow", [slow]), (180, "ErrorBudgetBurnFast", [])],
                f"{slo.name}: 5x budget warns",
            )
        )
        out.append(
            case(
                slo_series(s, slo, [(0, 180)]),
                [(180, "ErrorBudgetBurnFast", []), (180, "ErrorBudgetBurnSlow", [])],
                f"{slo.name}: healthy stays silent",
            )
        )
    return out


HISTORY = 540  # minutes of healthy traffic before the spike: the 3d/6h pair needs > 500


def spike_cases(s: StackSettings) -> list[dict]:
    """A 10-minute spike of 50x the budget after 9 healthy hours: neither burn alert fires,
    at any point in the 3 hours after (2h and 6h windows included)."""
    out = []
    for slo in R.slos(s):
        if slo.kind == "broker-availability":
            continue
        breach = min(50 * R.budget(slo), 1.0)
        spike = case(
            slo_series(s, slo, [(0, HISTORY), (breach, 10), (0, 180)]), [], f"{slo.name}: 10-minute spike stays quiet"
        )
        spike["alert_rule_test"] = [
            {"eval_time": f"{HISTORY + t}m", "alertname": a, "exp_alerts": []}
            for t in (5, 10, 20, 40, 70, 120, 190)
            for a in ("ErrorBudgetBurnSlow", "ErrorBudgetBurnFast")
        ]
        out.append(spike)
    return out


# ----------------------------------------------------------------------------- threshold alerts
def threshold_cases(s: StackSettings) -> list[dict]:
    m, t, b = s.observability.metrics, s.observability.thresholds, s.broker
    svc = f'{m.service_label}="{SERVICE}"'
    who = {m.service_label: SERVICE}
    out = []
    low = t.success_rate_min_percent / 100 - 0.01  # one point under the minimum
    for alert, metric in (
        ("EventPublishSuccessRateLow", m.events_published),
        ("EventStorageSuccessRateLow", m.events_stored),
    ):

        def series(metric: str, success_fraction: float):
            return {
                f'{metric}{{{svc},{m.outcome_label}="{m.success_value}"}}': counter((1000 * success_fraction, 20)),
                f'{metric}{{{svc},{m.outcome_label}="{m.failure_value}"}}': counter(
                    (1000 * (1 - success_fraction), 20)
                ),
            }

        out.append(case(series(metric, low), [(10, alert, [expected(s, alert, who, low)])], f"{alert} fires"))
        out.append(case(series(metric, 0.999), [(10, alert, [])], f"{alert} healthy"))

    lat = m.end_to_end_latency

    def latency(under_1s: float, under_2s: float):
        return {
            f'{lat}_bucket{{{svc},le="0.5"}}': counter((0, 20)),
            f'{lat}_bucket{{{svc},le="1"}}': counter((100 * under_1s, 20)),
            f'{lat}_bucket{{{svc},le="2"}}': counter((100 * under_2s, 20)),
            f'{lat}_bucket{{{svc},le="+Inf"}}': counter((100, 20)),
            f"{lat}_count{{{svc}}}": counter((100, 20)),
        }

    # all events between 1 s and 2 s: p99 = 1 + (2 - 1) * 99/100 = 1.99 s
    out.append(
        case(
            latency(0, 1),
            [
                (4, "EventEndToEndLatencyHigh", []),
                (12, "EventEndToEndLatencyHigh", [expected(s, "EventEndToEndLatencyHigh", who, 1.99)]),
            ],
            "EventEndToEndLatencyHigh fires after 5 minutes",
        )
    )
    out.append(case(latency(1, 1), [(12, "EventEndToEndLatencyHigh", [])], "EventEndToEndLatencyHigh healthy"))

    out.append(
        case({'up{job="x"}': gauge((1, 5))}, [(3, "Watchdog", [expected(s, "Watchdog", {})])], "Watchdog always fires")
    )

    if not R.in_cluster_broker(s):
        return out
    ns, vhost = b.namespace, s.vhost
    dlq = s.observability.metrics.queue_messages
    over = t.dlq_backlog_messages + 500
    out.append(
        case(
            {
                f'{dlq}{{vhost="{vhost}",queue="dlq.all",namespace="{ns}",pod="p0"}}': gauge((over, 15)),
                f'{dlq}{{vhost="{vhost}",queue="candystore.events",namespace="{ns}",pod="p0"}}': gauge((50000, 15)),
            },
            [
                (3, "DeadLetterQueueBacklog", []),
                (
                    10,
                    "DeadLetterQueueBacklog",
                    [
                        expected(
                            s,
                            "DeadLetterQueueBacklog",
                            {"vhost": vhost, "queue": "dlq.all", m.service_label: "all"},
                            over,
                        )
                    ],
                ),
            ],
            "DeadLetterQueueBacklog fires on a DLQ only",
        )
    )
    out.append(
        case(
            {f'{dlq}{{vhost="{vhost}",queue="dlq.candystore",namespace="{ns}",pod="p0"}}': gauge((10, 15))},
            [(10, "DeadLetterQueueBacklog", [])],
            "DeadLetterQueueBacklog healthy",
        )
    )

    up = (
        f'up{{{R.broker_selector(s)},service="{b.cluster_name}",'
        f'instance="10.0.0.1:15691",pod="{b.cluster_name}-server-0"}}'
    )
    target = {
        "job": b.cluster_name,
        "namespace": ns,
        "instance": "10.0.0.1:15691",
        "pod": f"{b.cluster_name}-server-0",
        "service": b.cluster_name,
    }
    out.append(
        case(
            {up: gauge((1, 3), (0, 7))},
            [(3, "BrokerDown", []), (7, "BrokerDown", [expected(s, "BrokerDown", target, 0)])],
            "BrokerDown fires after 2 minutes",
        )
    )
    out.append(
        case(
            {'up{job="other"}': gauge((1, 6))},
            [(5, "BrokerDown", [expected(s, "BrokerDown", {"job": b.cluster_name, "namespace": ns}, 1)])],
            "BrokerDown fires when the broker's target is absent",
        )
    )
    out.append(case({up: gauge((1, 10))}, [(8, "BrokerDown", [])], "BrokerDown healthy"))

    ready = f'kube_statefulset_status_replicas_ready{{namespace="{ns}",statefulset="{b.cluster_name}-server"}}'
    sts = {"namespace": ns, "statefulset": f"{b.cluster_name}-server"}
    out.append(
        case(
            {ready: gauge((b.replicas - 1, 10))},
            [(8, "BrokerNodeCountLow", [expected(s, "BrokerNodeCountLow", sts, b.replicas - 1)])],
            "BrokerNodeCountLow fires",
        )
    )
    out.append(case({ready: gauge((b.replicas, 10))}, [(8, "BrokerNodeCountLow", [])], "BrokerNodeCountLow healthy"))

    inst = "10.0.0.1:15691"
    for alert, metric in (
        ("BrokerDiskAlarm", "rabbitmq_alarms_free_disk_space_watermark"),
        ("BrokerMemoryAlarm", "rabbitmq_alarms_memory_used_watermark"),
    ):
        series = f'{metric}{{namespace="{ns}",instance="{inst}"}}'
        out.append(
            case({series: gauge((1, 5))}, [(3, alert, [expected(s, alert, {"instance": inst}, 1)])], f"{alert} fires")
        )
        out.append(case({series: gauge((0, 5))}, [(3, alert, [])], f"{alert} healthy"))

    pvc = f"persistence-{b.cluster_name}-server-0"
    free_low = t.volume_free_min_percent / 200  # half the minimum

    def volume(free):
        return {
            f'kubelet_volume_stats_available_bytes{{namespace="{ns}",persistentvolumeclaim="{pvc}"}}': gauge(
                (1000 * free, 20)
            ),
            f'kubelet_volume_stats_capacity_bytes{{namespace="{ns}",persistentvolumeclaim="{pvc}"}}': gauge((1000, 20)),
        }

    out.append(
        case(
            volume(free_low),
            [
                (
                    15,
                    "BrokerVolumeSpaceLow",
                    [expected(s, "BrokerVolumeSpaceLow", {"namespace": ns, "persistentvolumeclaim": pvc}, free_low)],
                )
            ],
            "BrokerVolumeSpaceLow fires",
        )
    )
    out.append(case(volume(0.6), [(15, "BrokerVolumeSpaceLow", [])], "BrokerVolumeSpaceLow healthy"))

    high = (t.memory_high_percent + 10) / 100

    def memory(used):
        return {
            f'rabbitmq_process_resident_memory_bytes{{namespace="{ns}",instance="{inst}"}}': gauge((1000 * used, 20)),
            f'rabbitmq_resident_memory_limit_bytes{{namespace="{ns}",instance="{inst}"}}': gauge((1000, 20)),
        }

    out.append(
        case(
            memory(high),
            [(15, "BrokerMemoryHigh", [expected(s, "BrokerMemoryHigh", {"instance": inst}, high)])],
            "BrokerMemoryHigh fires",
        )
    )
    out.append(case(memory(0.5), [(15, "BrokerMemoryHigh", [])], "BrokerMemoryHigh healthy"))
    return out


def tracing_cases(s: StackSettings) -> list[dict]:
    """Spans lost by either collector tier, under the counter names with and without `_total`."""
    ns = s.observability.namespace
    job = "otel-sampler-opentelemetry-collector"
    out = []
    for metric in ("otelcol_exporter_send_failed_spans_total", "otelcol_receiver_refused_spans"):
        series = {f'{metric}{{namespace="{ns}",job="{job}",exporter="otlp_grpc/jaeger"}}': counter((120, 20))}
        out.append(
            case(
                series,
                [
                    (5, "TracingSpansLost", []),
                    (15, "TracingSpansLost", [expected(s, "TracingSpansLost", {"job": job}, 2)]),
                ],
                f"TracingSpansLost fires after 10 minutes ({metric})",
            )
        )
    healthy = {
        # a collector that lost spans once, long ago, and nothing since
        f'otelcol_exporter_send_failed_spans_total{{namespace="{ns}",job="{job}"}}': counter((50, 2), (0, 20)),
        # the same counter elsewhere (not our collectors)
        'otelcol_exporter_send_failed_spans_total{namespace="other",job="x"}': counter((120, 22)),
    }
    out.append(case(healthy, [(20, "TracingSpansLost", [])], "TracingSpansLost healthy"))
    return out


def test_file(s: StackSettings, rules_path: str) -> dict:
    import monitoring_cases

    cases = slo_cases(s) + threshold_cases(s) + tracing_cases(s) + monitoring_cases.cases(s)
    return {"rule_files": [rules_path], "evaluation_interval": "1m", "tests": cases}
