"""Observability settings: the metric contract, SLOs, alert thresholds and routing, and the
Prometheus / Alertmanager / Grafana / Jaeger / tracing deployments."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import Gibibytes, Model, ServiceName, Uuid

Duration = Annotated[str, Field(pattern=r"^\d+(s|m|h|d)$")]
MetricName = Annotated[str, Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
LabelName = Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]


class MetricContract(Model):
    """What services emit (README: the metric contract) and what the broker exporter serves."""

    events_published: MetricName = "events_published_total"
    events_stored: MetricName = "events_stored_total"
    end_to_end_latency: MetricName = "event_end_to_end_latency_seconds"
    queue_messages: MetricName = "rabbitmq_detailed_queue_messages"
    service_label: LabelName = "service"
    outcome_label: LabelName = "outcome"
    success_value: str = "success"
    failure_value: str = "failure"
    # Sagas (docs/monitoring.md: the saga contract): counters by `service` and `saga` (the saga
    # type, a bounded set of names; never an instance id), a duration histogram of finished sagas
    # and a gauge of the sagas in flight.
    saga_label: LabelName = "saga"
    saga_started: MetricName = "saga_started_total"
    saga_completed: MetricName = "saga_completed_total"
    saga_compensated: MetricName = "saga_compensated_total"
    saga_timed_out: MetricName = "saga_timed_out_total"
    saga_duration: MetricName = "saga_duration_seconds"
    saga_in_flight: MetricName = "saga_in_flight"
    # Inbound work of every service (HTTP/gRPC server spans and message consumer spans) from the
    # collector's span metrics (components/render/helm_values.py: span_metrics connector, pushed
    # to Prometheus over OTLP): calls by status code, duration histogram in milliseconds.
    span_calls: MetricName = "traces_span_metrics_calls_total"
    span_duration_ms: MetricName = "traces_span_metrics_duration_milliseconds"
    span_service_label: LabelName = "service_name"
    # Each service's database client operations (queries): the OpenTelemetry semantic convention
    # histogram `db.client.operation.duration` (unit s), as Prometheus names it over OTLP, by the
    # contract's service label: the query P95 of the team's table (Azure has no query latency).
    db_client_duration: MetricName = "db_client_operation_duration_seconds"


class Slo(Model):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{2,40}$")]
    kind: Literal["publish-success", "storage-success", "latency", "broker-availability", "saga-duration"]
    objective_percent: float = Field(ge=90, le=99.999)
    latency_threshold_seconds: float | None = Field(default=None, gt=0)


def default_slos() -> list[Slo]:
    return [
        Slo(name="event-publish-success", kind="publish-success", objective_percent=99.9),
        Slo(name="event-storage-success", kind="storage-success", objective_percent=99.9),
        Slo(name="event-e2e-latency", kind="latency", objective_percent=99.0, latency_threshold_seconds=0.5),
        Slo(name="broker-availability", kind="broker-availability", objective_percent=99.9),
        Slo(name="saga-duration", kind="saga-duration", objective_percent=99.0, latency_threshold_seconds=30),
    ]


class Thresholds(Model):
    dlq_backlog_messages: int = Field(default=1000, ge=1)
    success_rate_min_percent: float = Field(default=99.5, ge=50, le=100)
    e2e_p99_seconds: float = Field(default=1.0, gt=0, alias="e2eP99Seconds")  # not to_camel's "e2EP99Seconds"
    volume_free_min_percent: int = Field(default=20, ge=5, le=50)
    memory_high_percent: int = Field(default=80, ge=50, le=99)
    # sagas and the service alert table (docs/monitoring.md)
    saga_timeout_max_percent: float = Field(default=1, gt=0, le=50)
    request_p95_seconds: float = Field(default=0.2, gt=0)
    db_query_p95_seconds: float = Field(default=0.1, gt=0)  # DatabaseQueryLatencyP95High
    request_error_max_percent: float = Field(default=1, gt=0, le=50)
    throughput_min_baseline_percent: int = Field(default=50, ge=10, le=90)
    throughput_baseline_min_rps: float = Field(default=1, ge=0)  # below this baseline: no throughput alert
    pod_cpu_request_percent: int = Field(default=80, ge=50, le=200)
    pod_memory_limit_percent: int = Field(default=85, ge=50, le=99)
    waf_blocks_per_minute: int = Field(default=0, ge=0)  # blocked requests a minute tolerated before alerting


class Alerting(Model):
    pagerduty_routing_key: str | None = None  # secure value
    slack_webhook_url: str | None = None  # secure value
    slack_channel: Annotated[str, Field(pattern=r"^#[a-z0-9_-]+$")] = "#event-backbone-alerts"
    deadmans_switch_url: str | None = None  # secure value (e.g. a healthchecks.io ping URL)
    # Azure Monitor's action groups reach the same PagerDuty service and Slack channel: the key of a
    # "Microsoft Azure" integration on that PagerDuty service (its Events API v2 routing key above
    # cannot parse Azure's alert payload) and the channel's email address (Slack's incoming webhooks
    # cannot either). Both secure values.
    pagerduty_azure_integration_key: str | None = None
    slack_channel_email: str | None = None
    runbook_base_url: str = "https://github.com/event-backbone/event-backbone/blob/main/docs/runbooks"


# The Prometheus and Alertmanager releases the proofs run (promtool, amtool and both servers of
# the alert drill, from the testing root): pinned over the chart's defaults (88.5.3: Prometheus
# v3.14.0, Alertmanager v0.34.0), which nothing here can run. Prometheus 3.5 is its long-term
# support line. tests/test_versions.py fails when these and the proofs differ in major.minor.
ImageTag = Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+$")]


class DatabaseAlertSettings(Model):
    """Azure Monitor metric alerts on each PostgreSQL flexible server (and read replica): evaluated
    by Azure, so they fire when the cluster that runs Prometheus is down."""

    connections_percent: int = Field(default=80, ge=50, le=95)  # of the SKU's max_connections
    cpu_percent: int = Field(default=80, ge=50, le=99)
    memory_percent: int = Field(default=85, ge=50, le=99)
    storage_percent: int = Field(default=85, ge=50, le=95)
    replication_lag_seconds: int = Field(default=300, ge=10, le=3600)


class RetentionSettings(Model):
    """Application logs in Log Analytics (table-level where the workspace default differs) and
    metrics for a year: Prometheus remote-writes to an Azure Monitor workspace (managed
    Prometheus keeps 18 months); docs/monitoring.md says why not Thanos."""

    application_log_days: int = Field(default=90, ge=30, le=730)
    long_term_metrics: bool = True


class PrometheusSettings(Model):
    retention: Duration = "7d"
    storage_size: Gibibytes = "50Gi"
    replicas: int = Field(default=1, ge=1, le=3)
    image_tag: ImageTag = "v3.5.3"


class AlertmanagerSettings(Model):
    replicas: int = Field(default=1, ge=1, le=5)
    storage_size: Gibibytes = "5Gi"
    image_tag: ImageTag = "v0.33.1"


class GrafanaSignIn(Model):
    """Entra ID sign-in (Grafana's auth.azuread) with an app registration made outside the
    stack: its client ID, and its client secret as a secure value (stored in Key Vault).
    Members of the admin group get Grafana's Admin role, of the viewer groups Viewer; nobody
    else may sign in. The generated local admin password stays in Key Vault for break-glass."""

    client_id: Uuid
    client_secret: str | None = None  # secure value
    admin_group_object_id: Uuid
    viewer_group_object_ids: list[Uuid] = Field(default_factory=list)
    local_admin_login: bool = True  # the login form and basic auth; must be false in prod


class GrafanaSettings(Model):
    storage_size: Gibibytes = "10Gi"
    # Served over HTTPS through the edge (edge.enabled) at this name, inside edge.dnsZone.
    hostname: Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")] | None = None
    sign_in: GrafanaSignIn | None = None


class JaegerSettings(Model):
    storage: Literal["memory", "badger"] = "memory"
    retention: Duration = "72h"
    storage_size: Gibibytes = "20Gi"


class TracingSettings(Model):
    sampling_percentage: float = Field(default=100, gt=0, le=100)
    slow_trace_threshold_ms: int = Field(default=1000, ge=1)


class CollectorSettings(Model):
    """The OpenTelemetry Collector in two tiers. The gateway is the OTLP endpoint services send to
    (adds the Kubernetes attributes, routes spans); the sampler receives every span of a trace on
    one replica (routed by trace ID: tail sampling) and every span of a service on one replica
    (routed by service: span metrics without two replicas writing the same series)."""

    gateway_replicas: int = Field(default=1, ge=1, le=10)
    sampler_replicas: int = Field(default=1, ge=1, le=10)


class ObservabilitySettings(Model):
    namespace: ServiceName = "monitoring"
    storage_class: ServiceName = "managed-csi-premium"
    slo_window_days: int = Field(default=30, ge=7, le=90)
    metrics: MetricContract = MetricContract()
    slos: list[Slo] = Field(default_factory=default_slos)
    thresholds: Thresholds = Thresholds()
    alerting: Alerting = Alerting()
    prometheus: PrometheusSettings = PrometheusSettings()
    alertmanager: AlertmanagerSettings = AlertmanagerSettings()
    grafana: GrafanaSettings = GrafanaSettings()
    jaeger: JaegerSettings = JaegerSettings()
    tracing: TracingSettings = TracingSettings()
    collector: CollectorSettings = CollectorSettings()
    database_alerts: DatabaseAlertSettings = DatabaseAlertSettings()
    retention: RetentionSettings = RetentionSettings()
