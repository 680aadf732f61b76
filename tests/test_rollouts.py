"""Progressive delivery: the Argo Rollouts release (pinned, values against the chart's defaults),
its namespace, and the SLO ClusterAnalysisTemplates - valid against the CRD schema and proven with
the real promtool on synthetic series of a canary next to its stable version."""

from __future__ import annotations

import subprocess

import k8s_schemas
import pytest
import yaml
from conftest import require_tool
from promtool_cases import counter
from test_helm_values import releases, unknown_keys
from test_settings import errors, mutate

from components.render import rollouts as RO
from components.render import to_yaml
from components.render.helm_values import prometheus_url

SERVICE = "candystore"
CANARY, STABLE = "c4n4ry7f", "st4b1e9d"
MINUTES = 15
EVAL = "10m"


# ----------------------------------------------------------------------------- the release
def test_controller_values_exist_in_the_pinned_chart(stack):
    assert unknown_keys(RO.CHART, RO.controller_values(stack.settings)) == []


def test_a_typo_in_the_controller_values_is_caught(planned):
    values = RO.controller_values(planned["prod"].settings)
    values["controller"]["pdb"]["minAvailabel"] = 1
    assert unknown_keys(RO.CHART, values) == ["controller.pdb.minAvailabel"]


def test_release_is_pinned_in_its_own_restricted_namespace(stack):
    r = releases(stack)[RO.CHART.release]
    assert (r["chart"], r["version"], r["repositoryOpts"]["repo"]) == (RO.CHART.chart, "2.41.0", RO.CHART.repo)
    assert r["namespace"] == stack.settings.rollouts.namespace == "argo-rollouts"
    assert r["atomic"] is True and r["values"]["installCRDs"] is True and r["values"]["keepCRDs"] is True
    ns = stack.inputs("core/v1:Namespace", "rollouts-namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert not k8s_schemas.errors(RO.namespace(stack.settings), stack.settings.aks.kubernetes_version)


def test_prod_runs_two_controllers_with_a_pdb_spread_over_nodes(planned):
    prod = releases(planned["prod"])[RO.CHART.release]["values"]["controller"]
    assert prod["replicas"] == 2 and prod["pdb"] == {"enabled": True, "minAvailable": 1}
    spread = {c["topologyKey"]: c["whenUnsatisfiable"] for c in prod["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"] == "DoNotSchedule"  # never both on the node being drained
    dev = releases(planned["dev"])[RO.CHART.release]["values"]["controller"]
    assert dev["replicas"] == 1 and dev["pdb"]["enabled"] is False  # a PDB of 1/1 would block every drain


def test_prod_needs_two_controller_replicas():
    text = mutate("prod", "rollouts.controller.replicas", 1)
    assert errors("prod", text) == [
        "Pulumi.prod.yaml: event-backbone:rollouts.controller.replicas must be at least 2 in prod"
        " (a node drain must not stop every rollout; a PDB keeps one) (got 1)"
    ]


# ----------------------------------------------------------------------------- the templates
def test_templates_match_the_crd_schema_and_are_planned(stack):
    s = stack.settings
    templates = RO.cluster_analysis_templates(s)
    assert [t["metadata"]["name"] for t in templates] == [RO.ERROR_RATIO_TEMPLATE, RO.LATENCY_TEMPLATE]
    for t in templates:
        assert k8s_schemas.custom_resource_errors(t) == []
        metric = t["spec"]["metrics"][0]
        assert metric["provider"]["prometheus"]["address"] == prometheus_url(s)
        assert {a["name"] for a in t["spec"]["args"]} == {RO.ARG_SERVICE, RO.ARG_REVISION}
    planned = {
        m["metadata"]["name"]: m
        for m in k8s_schemas.recorded_manifests(stack)
        if m.get("kind") == "ClusterAnalysisTemplate"
    }
    assert planned == {t["metadata"]["name"]: t for t in templates}


def test_a_wrong_field_fails_the_schema(planned):
    t = RO.cluster_analysis_templates(planned["prod"].settings)[0]
    t["spec"]["metrics"][0]["provider"]["prometheus"]["adress"] = "x"
    assert k8s_schemas.custom_resource_errors(t)


def test_thresholds_and_names_come_from_the_settings():
    from components import settings as S
    from dryrun.runner import config_from_yaml

    text = mutate("prod", "rollouts.analysis", {"maxErrorPercent": 1, "maxP99LatencyMs": 250, "revisionLabel": "rev"})
    s = S.from_config_map(config_from_yaml(text)[0], "prod")
    err, lat = RO.cluster_analysis_templates(s)
    assert err["spec"]["metrics"][0]["successCondition"] == "len(result) > 0 && result[0] <= 0.01"
    assert lat["spec"]["metrics"][0]["failureCondition"] == "len(result) > 0 && result[0] > 0.25"
    assert 'rev="{{args.canary-hash}}"' in lat["spec"]["metrics"][0]["provider"]["prometheus"]["query"]
    m = s.observability.metrics
    q = err["spec"]["metrics"][0]["provider"]["prometheus"]["query"]
    assert m.events_published in q and m.events_stored in q and f'{m.outcome_label}="{m.failure_value}"' in q


# ----------------------------------------------------------------------------- promtool proof
def record(metric: RO.AnalysisMetric) -> str:
    return f"rollout_analysis:{metric.name.replace('-', '_')}"


def outcomes(s, revision: str, per_minute: float, error_fraction: float) -> dict[str, str]:
    """Published and stored events of one revision's pod, `error_fraction` of them failed
    (names and labels from the metric contract in the settings)."""
    m, rev = s.observability.metrics, s.rollouts.analysis.revision_label
    out = {}
    for metric in (m.events_published, m.events_stored):
        for outcome, share in ((m.success_value, 1 - error_fraction), (m.failure_value, error_fraction)):
            labels = (
                f'{m.service_label}="{SERVICE}",{m.outcome_label}="{outcome}",{rev}="{revision}",'
                f'pod="{SERVICE}-{revision}-x1"'
            )
            out[f"{metric}{{{labels}}}"] = counter((per_minute * share, MINUTES))
    return out


BUCKETS = ("0.1", "0.25", "0.5", "1", "+Inf")


def latency(s, revision: str, per_minute: float, upper: str) -> dict[str, str]:
    """Every event of one revision's pod takes between the bucket below `upper` and `upper`."""
    m, rev = s.observability.metrics, s.rollouts.analysis.revision_label
    out = {}
    for le in BUCKETS:
        inside = BUCKETS.index(le) >= BUCKETS.index(upper)
        labels = f'{m.service_label}="{SERVICE}",{rev}="{revision}",le="{le}"'
        out[f"{m.end_to_end_latency}_bucket{{{labels}}}"] = counter((per_minute if inside else 0, MINUTES))
    return out


def p99_between(lower: float, upper: float) -> float:
    return lower + (upper - lower) * 0.99


def verdict_case(s, name: str, series: dict, expect: dict[str, float | None]) -> dict:
    """`expect`: per analysis metric, the measured value (pass or fail by the threshold) or None
    for no data (neither condition holds: Inconclusive)."""
    tests = []
    for metric in RO.metrics(s):
        value = expect[metric.name]
        sample = [{"labels": record(metric), "value": value}]
        passes = value is not None and value <= metric.threshold
        fails = value is not None and value > metric.threshold
        tests.append(
            {"expr": metric.promql_success(record(metric)), "eval_time": EVAL, "exp_samples": sample if passes else []}
        )
        tests.append(
            {"expr": metric.promql_failure(record(metric)), "eval_time": EVAL, "exp_samples": sample if fails else []}
        )
    return {
        "name": name,
        "interval": "1m",
        "input_series": [{"series": k, "values": v} for k, v in series.items()],
        "promql_expr_test": tests,
    }


def proof(s) -> tuple[dict, dict]:
    rules = {
        "groups": [
            {
                "name": "rollout-analysis",
                "rules": [{"record": record(m), "expr": RO.query(s, m, SERVICE, CANARY)} for m in RO.metrics(s)],
            }
        ]
    }
    # the stable version is unhealthy throughout: the canary's verdict must not read its pods
    stable = {**outcomes(s, STABLE, 1000, 0.2), **latency(s, STABLE, 1000, "+Inf")}
    healthy_lat = p99_between(0.1, 0.25)
    cases = [
        verdict_case(
            s,
            "healthy canary passes",
            {**stable, **outcomes(s, CANARY, 100, 0.01), **latency(s, CANARY, 100, "0.25")},
            {"error-ratio": 0.01, "latency-p99": healthy_lat},
        ),
        verdict_case(
            s,
            "a canary at exactly the error threshold passes",
            {**stable, **outcomes(s, CANARY, 100, 0.02), **latency(s, CANARY, 100, "0.25")},
            {"error-ratio": 0.02, "latency-p99": healthy_lat},
        ),
        verdict_case(
            s,
            "3 % errors fail",
            {**stable, **outcomes(s, CANARY, 100, 0.03), **latency(s, CANARY, 100, "0.25")},
            {"error-ratio": 0.03, "latency-p99": healthy_lat},
        ),
        verdict_case(
            s,
            "a slow canary fails",
            {**stable, **outcomes(s, CANARY, 100, 0.0), **latency(s, CANARY, 100, "1")},
            {"error-ratio": 0.0, "latency-p99": p99_between(0.5, 1)},
        ),
        verdict_case(
            s,
            "no series of the new pods: inconclusive",
            stable,
            {"error-ratio": None, "latency-p99": None},
        ),
        verdict_case(
            s,
            "new pods without traffic (0/0): inconclusive",
            {**stable, **outcomes(s, CANARY, 0, 0.0), **latency(s, CANARY, 0, "0.25")},
            {"error-ratio": None, "latency-p99": None},
        ),
    ]
    return rules, {"rule_files": ["rollout-analysis.yaml"], "evaluation_interval": "1m", "tests": cases}


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_promtool_proves_the_analysis(planned, tmp_path, name):
    promtool = require_tool("promtool")
    s = planned[name].settings
    rules, tests = proof(s)
    (tmp_path / "rollout-analysis.yaml").write_text(to_yaml(rules))
    (tmp_path / "tests.yaml").write_text(to_yaml(tests))
    check = subprocess.run(
        [promtool, "check", "rules", "rollout-analysis.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


def test_promtool_proves_the_analysis_with_a_renamed_contract(tmp_path):
    """A team with other metric names changes the stack file; the analysis follows (promtool)."""
    promtool = require_tool("promtool")
    from components import settings as S
    from dryrun.runner import config_from_yaml

    text = mutate(
        "prod",
        "observability.metrics",
        {
            "eventsPublished": "bus_publishes_total",
            "endToEndLatency": "bus_latency_seconds",
            "serviceLabel": "app",
            "outcomeLabel": "result",
            "successValue": "ok",
            "failureValue": "error",
        },
    )
    s = S.from_config_map(config_from_yaml(text)[0], "prod")
    rules, tests = proof(s)
    assert "bus_publishes_total" in to_yaml(rules) and "events_published_total" not in to_yaml(rules)
    (tmp_path / "rollout-analysis.yaml").write_text(to_yaml(rules))
    (tmp_path / "tests.yaml").write_text(to_yaml(tests))
    proc = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


def test_promtool_catches_a_wrong_verdict(planned, tmp_path):
    """The proof can fail: claiming that 3 % errors pass is refuted by promtool."""
    promtool = require_tool("promtool")
    s = planned["prod"].settings
    rules, tests = proof(s)
    bad = next(c for c in tests["tests"] if c["name"] == "3 % errors fail")
    bad["promql_expr_test"][0]["exp_samples"], bad["promql_expr_test"][1]["exp_samples"] = (
        bad["promql_expr_test"][1]["exp_samples"],
        bad["promql_expr_test"][0]["exp_samples"],
    )
    tests["tests"] = [bad]
    (tmp_path / "rollout-analysis.yaml").write_text(to_yaml(rules))
    (tmp_path / "tests.yaml").write_text(to_yaml(tests))
    proc = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0


def test_the_templates_are_written_by_the_plan(planned, tmp_path):
    from dryrun import plan

    written = plan.write_artefacts(planned["prod"].result, tmp_path)
    assert "rollouts/cluster-analysis-templates.yaml" in written
    docs = list(yaml.safe_load_all((tmp_path / "rollouts" / "cluster-analysis-templates.yaml").read_text()))
    assert docs == RO.cluster_analysis_templates(planned["prod"].settings)
