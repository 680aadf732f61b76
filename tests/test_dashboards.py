"""Dashboards as code: the panels asked for, valid PromQL (promtool), only known metrics."""

from __future__ import annotations

import json
import subprocess

from conftest import require_tool
from promql import metric_names

from components.render import dashboards as D
from components.render import rules as R
from components.render import to_yaml

# What the exporters of kube-prometheus-stack do not serve and services must: the contract.
BROKER_PREFIXES = ("rabbitmq_",)


def allowed_metrics(s) -> set[str]:
    m = s.observability.metrics
    contract = {
        m.events_published,
        m.events_stored,
        f"{m.end_to_end_latency}_bucket",
        f"{m.end_to_end_latency}_count",
        f"{m.end_to_end_latency}_sum",
        m.queue_messages,
    }
    recorded = {r["record"] for g in R.rule_groups(s) for r in g["rules"] if "record" in r}
    return contract | recorded


def test_the_four_dashboards(stack):
    boards = D.dashboards(stack.settings)
    assert set(boards) == {"event-pipeline", "dead-letter-queues", "slos", "broker"}
    titles = {name: [p["title"] for p in b["panels"]] for name, b in boards.items()}
    assert any("success ratio" in t for t in titles["event-pipeline"])
    assert any("Queue depth" in t for t in titles["event-pipeline"]) and any(
        "Consumers" in t for t in titles["event-pipeline"]
    )
    assert any("p50 / p99" in t for t in titles["event-pipeline"])
    assert any("Depth by dead-letter" in t for t in titles["dead-letter-queues"])
    assert any("Dead-letter rate" in t for t in titles["dead-letter-queues"])
    assert any("Oldest message age" in t for t in titles["dead-letter-queues"])
    for slo in R.slos(stack.settings):
        assert any(t.startswith(f"{slo.name}: error budget remaining") for t in titles["slos"])
        assert any(t.startswith(f"{slo.name}: burn rate") for t in titles["slos"])
    for word in ("Nodes", "Memory", "disk", "Connections"):
        assert any(word.lower() in t.lower() for t in titles["broker"]), word


def test_every_query_is_valid_promql(stack, tmp_path):
    promtool = require_tool("promtool")
    exprs = [q for b in D.dashboards(stack.settings).values() for q in D.queries(b)]
    assert len(exprs) > 20
    scratch = {
        "groups": [
            {
                "name": "dashboard-queries",
                "rules": [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "queries.yaml"
    path.write_text(to_yaml(scratch))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout


def test_promtool_rejects_a_broken_query(tmp_path):
    promtool = require_tool("promtool")
    path = tmp_path / "broken.yaml"
    path.write_text(
        to_yaml({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum by (service (rate(x[5m]))"}]}]})
    )
    assert subprocess.run([promtool, "check", "rules", str(path)], capture_output=True).returncode != 0


def test_queries_use_only_contract_broker_and_recorded_metrics(stack):
    allowed = allowed_metrics(stack.settings)
    for name, board in D.dashboards(stack.settings).items():
        for expr in D.queries(board):
            for metric in metric_names(expr):
                assert metric in allowed or metric.startswith(BROKER_PREFIXES), f"{name}: {metric} in {expr}"


def test_metric_name_extraction():
    assert metric_names('sum by (service) (rate(events_published_total{outcome="x"}[5m])) / 0.001') == {
        "events_published_total"
    }
    assert metric_names("histogram_quantile(0.99, sum by (service, le) (rate(a_bucket[5m])))") == {"a_bucket"}
    assert metric_names('1 - avg_over_time(slo:sli_error:ratio_rate5m{slo="x"}[30d]) / 0.01') == {
        "slo:sli_error:ratio_rate5m"
    }


def test_dashboards_are_configmaps_for_the_sidecar(stack):
    maps = {r.name: stack.inputs("core/v1:ConfigMap", r.name) for r in stack.of_type("core/v1:ConfigMap")}
    for name, board in D.dashboards(stack.settings).items():
        cm = maps[f"dashboard-{name}"]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == stack.settings.observability.namespace
        assert json.loads(cm["data"][f"{name}.json"]) == board
