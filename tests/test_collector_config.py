"""The two collector tiers' configurations as the collector would load them (tests/collector_config.py:
the checks of `otelcol validate`, since no collector binary is installable offline), and the
wiring between the tiers: what the gateway routes to is what the sampler listens on."""

from __future__ import annotations

import copy

import collector_config as C
import pytest
from test_helm_values import chart_keys, releases, user_values

from components.render import helm_values as H

KEYS, _ = chart_keys("opentelemetry-collector-0.170.0")
TIERS = {"gateway": H.OTEL_COLLECTOR.release, "sampler": H.OTEL_SAMPLER.release}


@pytest.mark.parametrize("tier", TIERS)
def test_each_tier_would_load(stack, tier):
    values = user_values(releases(stack)[TIERS[tier]])
    checked = C.validate(values, KEYS)
    assert checked.problems == []
    # only the chart's own preset name is a deprecated alias (the chart rewrites it)
    assert set(checked.deprecated) <= {"processors.k8sattributes"}


def test_the_gateway_routes_to_what_the_sampler_receives(stack):
    found = releases(stack)
    gateway, sampler = user_values(found[TIERS["gateway"]]), user_values(found[TIERS["sampler"]])
    targets = C.resolver_targets(gateway)
    service = f"{H.collector_service(H.OTEL_SAMPLER)}.{stack.settings.observability.namespace}"
    assert {s for s, _ in targets} == {service}
    assert {port for _, port in targets} == C.receiver_ports(sampler, KEYS) == {4317, H.SPANMETRICS_PORT}


def test_services_reach_the_gateway_on_the_ports_it_receives(stack):
    from components.render.landing import OTLP_PORTS

    gateway = user_values(releases(stack)[TIERS["gateway"]])
    assert set(OTLP_PORTS) == C.receiver_ports(gateway, KEYS) == {4317, 4318}


def _broken(values: dict, path: tuple, value) -> dict:
    broken = copy.deepcopy(values)
    node = broken
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return broken


@pytest.mark.parametrize(
    "tier,path,value,problem",
    [
        (
            "sampler",
            ("config", "service", "pipelines", "traces", "processors"),
            ["memory_limiter", "tail_samplng", "batch"],
            "service.pipelines.traces.processors: tail_samplng is not defined",
        ),
        (
            "sampler",
            ("config", "processors", "tail_samplng"),
            {},
            "processors.tail_samplng: no such processor in otelcol-k8s 0.158.0",
        ),
        (
            "sampler",
            ("config", "service", "pipelines", "metrics", "receivers"),
            ["otlp"],
            "connectors.span_metrics: must be an exporter in one pipeline and a receiver in another",
        ),
        (
            "sampler",
            ("ports", "otlp-spanmetrics", "enabled"),
            False,
            f"receivers.otlp/spanmetrics.protocols.grpc: port {H.SPANMETRICS_PORT} is not an enabled container port",
        ),
        (
            "sampler",
            ("config", "service", "pipelines", "logs"),
            {},
            "service.pipelines.logs: needs at least one of receivers",
        ),
        (
            "gateway",
            ("config", "service", "pipelines", "metrics", "exporters"),
            ["load_balancing/traces"],
            "exporters.load_balancing/traces: routing_key 'traceID' does not route metrics",
        ),
        (
            "gateway",
            ("config", "service", "pipelines", "traces", "processors"),
            ["batch", "memory_limiter"],
            "service.pipelines.traces.processors: memory_limiter must come first",
        ),
        (
            "gateway",
            ("config", "service", "pipelines", "logs"),
            ...,
            "service.pipelines.logs: the chart's default pipeline is left in place unstated",
        ),
    ],
)
def test_the_checks_catch_a_broken_configuration(planned, tier, path, value, problem):
    values = user_values(releases(planned["prod"])[TIERS[tier]])
    assert C.validate(values, KEYS).problems == []
    if value is ...:  # a default pipeline left to the chart: drop ours
        broken = copy.deepcopy(values)
        del broken["config"]["service"]["pipelines"]["logs"]
    else:
        broken = _broken(values, path, value)
    assert problem in C.validate(broken, KEYS).problems


def test_the_type_table_is_the_pinned_image(planned):
    """The collector image is the chart's appVersion, the one the type table describes."""
    for tier in TIERS.values():
        image = releases(planned["prod"])[tier]["values"]["image"]
        assert "tag" not in image  # the chart's appVersion (0.158.0) is the tag
        assert image["repository"].endswith("otel/opentelemetry-collector-k8s")


def test_without_the_deletions_file_the_sampler_would_keep_the_charts_log_pipeline(planned):
    """The deletions must travel as a YAML file: the recorded `values` alone (what the Python SDK
    sends, nulls dropped) leave the chart's default log pipeline in the sampler."""
    recorded = releases(planned["prod"])[TIERS["sampler"]]
    assert "logs" not in recorded["values"]["config"]["service"]["pipelines"]
    problems = C.validate(recorded["values"], KEYS).problems
    assert "service.pipelines.logs: the chart's default pipeline is left in place unstated" in problems
    assert C.validate(user_values(recorded), KEYS).problems == []
