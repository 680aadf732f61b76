"""Grafana dashboards as code: event pipeline, dead-letter queues, SLOs, broker, sagas, services.

Built with Grafana's typed builders (grafana-foundation-sdk, its "next" build: Grafana's main
branch, the 12.x line; dashboard schemaVersion 41) and provisioned as ConfigMaps that the Grafana sidecar picks up.
Panel queries use only metrics from the service metric contract, the RabbitMQ exporter and
our recording rules; tests check every query with promtool."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus, stat, text, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import DataSourceRef
from grafana_foundation_sdk.models.text import TextMode

from ..settings import StackSettings
from . import rules as R

# Every panel and query names the Prometheus data source by UID through the board's
# `datasource` variable, so the boards work whatever UID the data source has in a cluster.
DATASOURCE_VARIABLE = "datasource"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${" + DATASOURCE_VARIABLE + "}")
PANEL_HEIGHT = 8

Query = tuple[str, str]  # (PromQL expression, legend format)
PanelBuilder = timeseries.Panel | stat.Panel | text.Panel


class _Board:
    """Collects panel builders; ids are assigned in order and the SDK lays panels out
    left to right on its 24-column grid, wrapping to a new row when a row is full."""

    def __init__(self, uid: str, title: str, tags: list[str]):
        self.uid, self.title, self.tags = uid, title, tags
        self.panels: list[PanelBuilder] = []

    def panel(
        self,
        title: str,
        exprs: Sequence[Query],
        unit: str = "short",
        kind: type[timeseries.Panel] | type[stat.Panel] = timeseries.Panel,
        width: int = 12,
        description: str = "",
    ) -> None:
        panel = kind().title(title).datasource(DATASOURCE).height(PANEL_HEIGHT).span(width).unit(unit)
        if description:
            panel.description(description)
        for i, (expr, legend) in enumerate(exprs):
            panel.with_target(
                prometheus.Dataquery().ref_id(chr(ord("A") + i)).datasource(DATASOURCE).expr(expr).legend_format(legend)
            )
        self.panels.append(panel)

    def text(self, title: str, content: str, width: int = 12) -> None:
        self.panels.append(
            text.Panel().title(title).height(PANEL_HEIGHT).span(width).mode(TextMode.MARKDOWN).content(content)
        )

    def json(self) -> dict[str, Any]:
        board = (
            gd.Dashboard(self.title)
            .uid(self.uid)
            .tags(["event-backbone", *self.tags])
            .version(1)
            .readonly()
            .timezone("browser")
            .time("now-6h", "now")
            .refresh("30s")
            .annotations([])  # else the SDK writes `"annotations": {}`; Grafana's own boards carry a list
            .with_variable(gd.DatasourceVariable(DATASOURCE_VARIABLE).label("Prometheus").type("prometheus"))
        )
        for i, panel in enumerate(self.panels, start=1):
            board.with_panel(panel.id(i))
        return json.loads(JSONEncoder().encode(board.build()))


def event_pipeline(s: StackSettings) -> dict[str, Any]:
    m = s.observability.metrics
    svc, outcome = m.service_label, m.outcome_label
    d = _Board("eb-pipeline", "Event pipeline health", ["pipeline"])
    d.panel(
        "Publish rate by service and outcome",
        [(f"sum by ({svc}, {outcome}) (rate({m.events_published}[5m]))", f"{{{{{svc}}}}} {{{{{outcome}}}}}")],
        "ops",
    )
    d.panel(
        "Publish success ratio by service",
        [
            (
                f'sum by ({svc}) (rate({m.events_published}{{{outcome}="{m.success_value}"}}[5m])) / '
                f"sum by ({svc}) (rate({m.events_published}[5m]))",
                f"{{{{{svc}}}}}",
            )
        ],
        "percentunit",
    )
    d.panel(
        "Store success ratio by service",
        [
            (
                f'sum by ({svc}) (rate({m.events_stored}{{{outcome}="{m.success_value}"}}[5m])) / '
                f"sum by ({svc}) (rate({m.events_stored}[5m]))",
                f"{{{{{svc}}}}}",
            )
        ],
        "percentunit",
    )
    d.panel(
        "End-to-end latency p50 / p99",
        [
            (
                f"histogram_quantile(0.5, sum by ({svc}, le) (rate({m.end_to_end_latency}_bucket[5m])))",
                f"p50 {{{{{svc}}}}}",
            ),
            (
                f"histogram_quantile(0.99, sum by ({svc}, le) (rate({m.end_to_end_latency}_bucket[5m])))",
                f"p99 {{{{{svc}}}}}",
            ),
        ],
        "s",
    )
    d.panel(
        "Queue depth by queue",
        [(f'sum by (vhost, queue) ({m.queue_messages}{{queue!~"dlq\\\\..+"}})', "{{queue}}")],
        "short",
    )
    d.panel(
        "Consumers by queue",
        [('sum by (vhost, queue) (rabbitmq_detailed_queue_consumers{queue!~"dlq\\\\..+"})', "{{queue}}")],
        "short",
    )
    return d.json()


def dead_letters(s: StackSettings) -> dict[str, Any]:
    m = s.observability.metrics
    d = _Board("eb-dlq", "Dead-letter queues", ["dlq"])
    d.panel(
        "Depth by dead-letter queue",
        [(f'sum by (vhost, queue) ({m.queue_messages}{{queue=~"dlq\\\\..+"}})', "{{queue}}")],
        "short",
    )
    d.panel(
        "Dead-letter rate by reason",
        [
            (f"sum(rate(rabbitmq_global_messages_dead_lettered_{reason}_total[5m]))", reason)
            for reason in ("rejected", "delivery_limit", "expired", "maxlen")
        ],
        "ops",
        description="Messages dead-lettered per second across the broker, by why they were dead-lettered.",
    )
    d.panel(
        "Dead letters confirmed into the DLQs (at-least-once)",
        [("sum(rate(rabbitmq_global_messages_dead_lettered_confirmed_total[5m]))", "confirmed")],
        "ops",
    )
    d.text(
        "Oldest message age",
        "Not available: RabbitMQ's Prometheus plugin exports no per-queue head-message age. "
        "Peek at `dlq.*` with the [DLQ runbook]"
        "(https://github.com/event-backbone/event-backbone/blob/main/docs/runbooks/dead-letter-queue.md): "
        "the `x-death[0].time` header of the first message is its age.",
    )
    return d.json()


def slos(s: StackSettings) -> dict[str, Any]:
    days = s.observability.slo_window_days
    d = _Board("eb-slo", "Service level objectives", ["slo"])
    for slo in R.slos(s):
        b = R.budget(slo)
        ratio = R.RECORD.format(window="5m") + f'{{slo="{slo.name}"}}'
        d.panel(
            f"{slo.name}: error budget remaining ({days} d, objective {slo.objective_percent:g}%)",
            [(f"1 - avg_over_time({ratio}[{days}d]) / {b:g}", "{{service}}")],
            "percentunit",
            width=8,
        )
        d.panel(
            f"{slo.name}: burn rate by window",
            [(R.RECORD.format(window=w) + f'{{slo="{slo.name}"}} / {b:g}', f"{w} {{{{service}}}}") for w in R.WINDOWS],
            "short",
            width=16,
            description="1 = spending the budget exactly over the SLO window; 14.4 and 6 page, 3 and 1 warn.",
        )
    return d.json()


def broker(s: StackSettings) -> dict[str, Any]:
    d = _Board("eb-broker", "RabbitMQ broker", ["broker"])
    d.panel(
        "Nodes",
        [("count(count by (rabbitmq_node) (rabbitmq_identity_info))", "nodes")],
        "short",
        kind=stat.Panel,
        width=6,
    )
    d.panel(
        "Alarms (1 = publishers blocked)",
        [
            ("max(rabbitmq_alarms_memory_used_watermark)", "memory"),
            ("max(rabbitmq_alarms_free_disk_space_watermark)", "disk"),
        ],
        "short",
        kind=stat.Panel,
        width=6,
    )
    d.panel("Connections", [("sum(rabbitmq_connections)", "connections")], "short", width=12)
    d.panel(
        "Memory used / high watermark",
        [
            ("sum by (instance) (rabbitmq_process_resident_memory_bytes)", "used {{instance}}"),
            ("sum by (instance) (rabbitmq_resident_memory_limit_bytes)", "watermark {{instance}}"),
        ],
        "bytes",
    )
    d.panel(
        "Free disk / limit",
        [
            ("sum by (instance) (rabbitmq_disk_space_available_bytes)", "free {{instance}}"),
            ("sum by (instance) (rabbitmq_disk_space_available_limit_bytes)", "limit {{instance}}"),
        ],
        "bytes",
    )
    return d.json()


def sagas(s: StackSettings) -> dict[str, Any]:
    """Saga duration percentiles, timeouts and in-flight sagas (render/saga.py's recording rules)."""
    m = s.observability.metrics
    legend = f"{{{{{m.service_label}}}}} {{{{{m.saga_label}}}}}"
    d = _Board("eb-sagas", "Sagas", ["sagas"])
    d.panel(
        "Saga duration p50 / p95 / p99",
        [(f"saga:duration_seconds:p{q}_5m", f"p{q} {legend}") for q in (50, 95, 99)],
        "s",
        width=24,
    )
    d.panel("Sagas in flight", [("saga:in_flight", legend)], "short")
    d.panel(
        "Saga timeouts (share of started)",
        [("saga:timed_out:rate5m / saga:started:rate5m", legend)],
        "percentunit",
        description=f"Alert SagaTimeoutsHigh above {s.observability.thresholds.saga_timeout_max_percent:g}%.",
    )
    d.panel(
        "Sagas by outcome",
        [
            (f"sum by ({m.service_label}, {m.saga_label}) (saga:{outcome}:rate5m)", f"{outcome} {legend}")
            for outcome in ("started", "completed", "compensated", "timed_out")
        ],
        "ops",
        width=24,
    )
    return d.json()


def services(s: StackSettings) -> dict[str, Any]:
    """The service alert table's signals (render/service_alerts.py's recording rules)."""
    svc = f"{{{{{s.observability.metrics.span_service_label}}}}}"  # the span metrics' own service label
    t = s.observability.thresholds
    d = _Board("eb-services", "Services", ["services"])
    d.panel(
        "Response time P95 (server and consumer spans)",
        [("service:request_duration_seconds:p95_5m", svc)],
        "s",
        description=f"Pages above {t.request_p95_seconds * 1000:g} ms for 5 minutes (ServiceLatencyP95High).",
    )
    d.panel(
        "Database query P95 (the services' database client)",
        [("service:db_client_operation_duration_seconds:p95_5m", f"{{{{{s.observability.metrics.service_label}}}}}")],
        "s",
        description=f"Pages above {t.db_query_p95_seconds * 1000:g} ms for 5 minutes (DatabaseQueryLatencyP95High).",
    )
    d.panel(
        "Error ratio",
        [("service:request_errors:ratio_rate5m", svc)],
        "percentunit",
        description=f"Pages above {t.request_error_max_percent:g}% for 2 minutes (ServiceErrorRateHigh).",
    )
    d.panel(
        "Throughput against yesterday's",
        [("service:requests:rate5m", f"now {svc}"), ("service:requests:baseline", f"this hour yesterday {svc}")],
        "reqps",
        description=f"A ticket under {t.throughput_min_baseline_percent}% of the baseline (ServiceThroughputLow).",
    )
    d.panel(
        "Pod CPU / requests, memory / limits",
        [
            ("max by (namespace) (namespace_pod_container:cpu_usage:ratio_requests)", "cpu {{namespace}}"),
            ("max by (namespace) (namespace_pod_container:memory_working_set:ratio_limits)", "memory {{namespace}}"),
        ],
        "percentunit",
    )
    return d.json()


def dashboards(s: StackSettings) -> dict[str, dict[str, Any]]:
    boards = {
        "event-pipeline": event_pipeline(s),
        "dead-letter-queues": dead_letters(s),
        "slos": slos(s),
        "sagas": sagas(s),
        "services": services(s),
    }
    if R.in_cluster_broker(s):
        boards["broker"] = broker(s)
    return boards


def queries(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
