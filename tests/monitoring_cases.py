"""promtool cases for the saga and service-table alerts (issue 22): each fires on a breaching
series with exactly its labels and rendered annotations and stays silent on a healthy one. Part
of promtool_cases.test_file, so tests/test_alerts_promtool.py runs them with every other alert."""

from __future__ import annotations

from promtool_cases import SERVICE, case, counter, expected, gauge

from components.settings import StackSettings

SAGA = "order"


def saga_cases(s: StackSettings) -> list[dict]:
    m = s.observability.metrics
    sel = f'{m.service_label}="{SERVICE}",{m.saga_label}="{SAGA}"'
    who = {m.service_label: SERVICE, m.saga_label: SAGA}

    def series(timed_out_per_minute: float) -> dict[str, str]:
        return {
            f"{m.saga_started}{{{sel}}}": counter((100, 30)),
            f"{m.saga_completed}{{{sel}}}": counter((100 - timed_out_per_minute, 30)),
            f"{m.saga_timed_out}{{{sel}}}": counter((timed_out_per_minute, 30)),
            f"{m.saga_in_flight}{{{sel}}}": gauge((40, 30)),
        }

    return [
        case(
            series(5),  # 5 % of the sagas time out
            [
                (3, "SagaTimeoutsHigh", []),
                (20, "SagaTimeoutsHigh", [expected(s, "SagaTimeoutsHigh", who, 0.05)]),
            ],
            "SagaTimeoutsHigh fires after 5 minutes",
        ),
        case(series(0.5), [(20, "SagaTimeoutsHigh", [])], "SagaTimeoutsHigh healthy at 0.5 %"),
    ]


def service_cases(s: StackSettings) -> list[dict]:
    m, t = s.observability.metrics, s.observability.thresholds
    span = f'{m.span_service_label}="{SERVICE}",span_kind="SPAN_KIND_SERVER",span_name="POST /orders"'
    who = {m.span_service_label: SERVICE, m.service_label: SERVICE}
    out = []

    def durations(slow: bool) -> dict[str, str]:
        # per minute, 100 requests: all between 250 and 500 ms (p95 487.5 ms) or all under 100 ms
        b = f"{m.span_duration_ms}_bucket"
        return {
            f'{b}{{{span},le="100.0"}}': counter((0 if slow else 100, 20)),
            f'{b}{{{span},le="250.0"}}': counter((0 if slow else 100, 20)),
            f'{b}{{{span},le="500.0"}}': counter((100, 20)),
            f'{b}{{{span},le="+Inf"}}': counter((100, 20)),
            # an outbound client span, slow, of the same service: not its response time
            f'{b}{{{m.span_service_label}="{SERVICE}",span_kind="SPAN_KIND_CLIENT",le="+Inf"}}': counter((100, 20)),
        }

    out.append(
        case(
            durations(slow=True),
            [
                (4, "ServiceLatencyP95High", []),
                (12, "ServiceLatencyP95High", [expected(s, "ServiceLatencyP95High", who, 0.4875)]),
            ],
            "ServiceLatencyP95High fires after 5 minutes",
        )
    )
    out.append(case(durations(slow=False), [(12, "ServiceLatencyP95High", [])], "ServiceLatencyP95High healthy"))

    def queries(slow: bool) -> dict[str, str]:
        # per minute, 100 queries: all between 100 and 250 ms (p95 242.5 ms) or all under 50 ms
        b = f"{m.db_client_duration}_bucket"
        q = f'{m.service_label}="{SERVICE}",db_system_name="postgresql",db_operation_name="SELECT"'
        return {
            f'{b}{{{q},le="0.05"}}': counter((0 if slow else 100, 20)),
            f'{b}{{{q},le="0.1"}}': counter((0 if slow else 100, 20)),
            f'{b}{{{q},le="0.25"}}': counter((100, 20)),
            f'{b}{{{q},le="+Inf"}}': counter((100, 20)),
        }

    db_who = {m.service_label: SERVICE}
    out.append(
        case(
            queries(slow=True),
            [
                (4, "DatabaseQueryLatencyP95High", []),
                (12, "DatabaseQueryLatencyP95High", [expected(s, "DatabaseQueryLatencyP95High", db_who, 0.2425)]),
            ],
            "DatabaseQueryLatencyP95High fires after 5 minutes",
        )
    )
    out.append(
        case(queries(slow=False), [(12, "DatabaseQueryLatencyP95High", [])], "DatabaseQueryLatencyP95High healthy")
    )

    def calls(errors_per_minute: float) -> dict[str, str]:
        return {
            f'{m.span_calls}{{{span},status_code="STATUS_CODE_UNSET"}}': counter((100 - errors_per_minute, 20)),
            f'{m.span_calls}{{{span},status_code="STATUS_CODE_ERROR"}}': counter((errors_per_minute, 20)),
        }

    out.append(
        case(
            calls(5),
            [
                (1, "ServiceErrorRateHigh", []),
                (6, "ServiceErrorRateHigh", [expected(s, "ServiceErrorRateHigh", who, 0.05)]),
            ],
            "ServiceErrorRateHigh fires after 2 minutes",
        )
    )
    out.append(case(calls(0.5), [(6, "ServiceErrorRateHigh", [])], "ServiceErrorRateHigh healthy at 0.5 %"))

    ns = SERVICE
    pod = {"namespace": ns, "pod": f"{ns}-0", "container": "app"}
    labels = ",".join(f'{k}="{v}"' for k, v in pod.items())

    def cpu(cores: float) -> dict[str, str]:
        return {
            f'container_cpu_usage_seconds_total{{{labels},id="/x",image="app"}}': counter((60 * cores, 20)),
            f'kube_pod_container_resource_requests{{{labels},resource="cpu",unit="core"}}': gauge((1, 20)),
            # the monitoring stack's own pods are not the services'
            'container_cpu_usage_seconds_total{namespace="monitoring",pod="p",container="c"}': counter((60, 20)),
            'kube_pod_container_resource_requests{namespace="monitoring",pod="p",container="c",resource="cpu"}': gauge(
                (0.1, 20)
            ),
        }

    high = (t.pod_cpu_request_percent + 10) / 100
    out.append(
        case(
            cpu(high),
            [
                (5, "PodCpuHigh", []),
                (16, "PodCpuHigh", [expected(s, "PodCpuHigh", {**pod, m.service_label: ns}, high)]),
            ],
            "PodCpuHigh fires after 10 minutes, in a service's namespace only",
        )
    )
    out.append(case(cpu(0.5), [(16, "PodCpuHigh", [])], "PodCpuHigh healthy"))

    def memory(used: float) -> dict[str, str]:
        return {
            f'container_memory_working_set_bytes{{{labels},id="/x"}}': gauge((1000 * used, 20)),
            f'kube_pod_container_resource_limits{{{labels},resource="memory",unit="byte"}}': gauge((1000, 20)),
        }

    mem = (t.pod_memory_limit_percent + 5) / 100
    out.append(
        case(
            memory(mem),
            [
                (3, "PodMemoryHigh", []),
                (8, "PodMemoryHigh", [expected(s, "PodMemoryHigh", {**pod, m.service_label: ns}, mem)]),
            ],
            "PodMemoryHigh fires after 5 minutes",
        )
    )
    out.append(case(memory(0.5), [(8, "PodMemoryHigh", [])], "PodMemoryHigh healthy"))
    return out


# Alerts whose cases need a day of history: proven on their own rule groups
# (tests/test_monitoring_promtool.py), not in the one promtool run of every other alert.
LONG = {"ServiceThroughputLow"}
LONG_GROUPS = ("event-backbone-service-recording", "event-backbone-services")


def throughput_cases(s: StackSettings) -> list[dict]:
    m = s.observability.metrics
    span = f'{m.span_service_label}="{SERVICE}",span_kind="SPAN_KIND_SERVER",span_name="POST /orders"'
    who = {m.span_service_label: SERVICE, m.service_label: SERVICE}
    out = []
    # a day and an hour at 10 requests/s (so that the hour-long baseline window is whole), then
    # 2/s (20 % of this hour yesterday): a ticket after 15 minutes
    day = 1440 + 60
    inbound = f'{m.span_calls}{{{span},status_code="STATUS_CODE_UNSET"}}'
    out.append(
        case(
            {inbound: counter((600, day), (120, 60))},
            [
                (day - 30, "ServiceThroughputLow", []),
                (day + 10, "ServiceThroughputLow", []),
                (day + 30, "ServiceThroughputLow", [expected(s, "ServiceThroughputLow", who, 2)]),
            ],
            "ServiceThroughputLow fires when traffic falls under half of yesterday's",
        )
    )
    out.append(
        case(
            {inbound: counter((600, day + 60))},
            [(day + 30, "ServiceThroughputLow", [])],
            "ServiceThroughputLow healthy at yesterday's rate",
        )
    )
    return out


def cases(s: StackSettings) -> list[dict]:
    return saga_cases(s) + service_cases(s)
