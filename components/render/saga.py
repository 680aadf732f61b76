"""Sagas: recording rules and the timeout alert over the saga contract (settings
``observability.metrics.saga*``, docs/monitoring.md). The duration SLO is an ordinary SLO of kind
``saga-duration`` (render/rules.py: its burn-rate alerts are the same template as every SLO's).

Labels are kept small: the contract's service label and ``saga`` (the saga type: a bounded set of
names per service, never an instance or a customer id)."""

from __future__ import annotations

from ..settings import StackSettings

QUANTILES = (0.5, 0.95, 0.99)


def by(s: StackSettings, *extra: str) -> str:
    m = s.observability.metrics
    return f"sum by ({', '.join((m.service_label, m.saga_label, *extra))})"


def recording_rules(s: StackSettings) -> list[dict]:
    m = s.observability.metrics
    rules = [
        {"record": f"saga:{name}:rate5m", "expr": f"{by(s)} (rate({metric}[5m]))"}
        for name, metric in (
            ("started", m.saga_started),
            ("completed", m.saga_completed),
            ("compensated", m.saga_compensated),
            ("timed_out", m.saga_timed_out),
        )
    ]
    rules.append({"record": "saga:in_flight", "expr": f"{by(s)} ({m.saga_in_flight})"})
    for q in QUANTILES:
        rules.append(
            {
                "record": f"saga:duration_seconds:p{round(q * 100)}_5m",
                "expr": f"histogram_quantile({q:g}, {by(s, 'le')} (rate({m.saga_duration}_bucket[5m])))",
            }
        )
    return rules


def alerts(s: StackSettings) -> list[dict]:
    from .rules import _annotations, who

    m, t = s.observability.metrics, s.observability.thresholds
    share = t.saga_timeout_max_percent / 100
    saga = f"{{{{ $labels.{m.saga_label} }}}}"
    return [
        {
            "alert": "SagaTimeoutsHigh",
            "expr": f"{by(s)} (rate({m.saga_timed_out}[10m]))\n/\n{by(s)} (rate({m.saga_started}[10m]))\n> {share:g}",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": _annotations(
                s,
                "SagaTimeoutsHigh",
                f"{who(s)}: {saga} sagas time out",
                f"{{{{ $value | humanizePercentage }}}} of the {saga} sagas that {who(s)} started in the last 10 "
                f"minutes timed out (threshold {t.saga_timeout_max_percent:g}%): each one left steps to compensate.",
            ),
        }
    ]
