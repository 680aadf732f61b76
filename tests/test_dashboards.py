"""Dashboards as code: the panels asked for, valid PromQL (promtool), only known metrics."""

from __future__ import annotations

import json
import re
import subprocess
from importlib.metadata import version

from conftest import ROOT, require_tool
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard
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


def test_the_dashboards(stack):
    boards = D.dashboards(stack.settings)
    assert set(boards) == {"event-pipeline", "dead-letter-queues", "slos", "broker", "sagas", "services"}
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
    # issue 22: saga duration percentiles, timeouts, in flight; the service table's signals
    for word in ("duration p50 / p95 / p99", "timeouts", "in flight"):
        assert any(word in t for t in titles["sagas"]), word
    for word in ("P95", "Error ratio", "Throughput", "CPU"):
        assert any(word in t for t in titles["services"]), word


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


# --- what the typed builder (grafana-foundation-sdk) is trusted with, checked ---


def test_the_pinned_sdk_is_the_one_installed():
    """The boards' schema comes from the SDK build: the pin in requirements.txt is what runs."""
    pins = dict(line.split("==", 1) for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line)
    assert version("grafana-foundation-sdk") == pins["grafana-foundation-sdk"]


def test_boards_carry_the_schema_version_of_the_sdk(stack):
    """schemaVersion is the SDK model's (Grafana 12: 41), not a number written by hand."""
    for name, board in D.dashboards(stack.settings).items():
        assert board["schemaVersion"] == Dashboard().schema_version >= 41, name


def _leaves(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, node


def _unknown_to_the_schema(board: dict) -> set:
    """Leaves the SDK's typed model (dashboard, panel options, Prometheus query) does not keep."""
    register_default_plugins()  # panel and data-query types decode into their own models
    back = json.loads(JSONEncoder().encode(Dashboard.from_json(board)))
    return set(_leaves(board)) - set(_leaves(back))


def test_every_field_is_known_to_grafanas_typed_model(stack):
    for name, board in D.dashboards(stack.settings).items():
        assert not _unknown_to_the_schema(board), name


def test_a_field_outside_the_schema_is_noticed(stack):
    board = D.dashboards(stack.settings)["event-pipeline"]
    board["panels"][0]["targets"][0]["exprr"] = "up"
    board["panels"][1]["gridpos"] = {"x": 0}
    assert {path for path, _ in _unknown_to_the_schema(board)} == {
        ".panels[0].targets[0].exprr",
        ".panels[1].gridpos.x",
    }


def test_panel_ids_and_ref_ids_are_unique(stack):
    for name, board in D.dashboards(stack.settings).items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)) and all(i > 0 for i in ids), (name, ids)
        for p in board["panels"]:
            refs = [t["refId"] for t in p.get("targets", [])]
            assert len(refs) == len(set(refs)), (name, p["title"], refs)


def _overlaps(panels: list[dict]) -> list[tuple[str, str]]:
    found = []
    for i, a in enumerate(panels):
        for b in panels[i + 1 :]:
            ga, gb = a["gridPos"], b["gridPos"]
            if (
                ga["x"] < gb["x"] + gb["w"]
                and gb["x"] < ga["x"] + ga["w"]
                and ga["y"] < gb["y"] + gb["h"]
                and gb["y"] < ga["y"] + ga["h"]
            ):
                found.append((a["title"], b["title"]))
    return found


def test_panels_fit_the_grid_and_do_not_overlap(stack):
    for name, board in D.dashboards(stack.settings).items():
        for p in board["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0, (name, p["title"], g)
            assert g["x"] + g["w"] <= 24, (name, p["title"], g)
        assert not _overlaps(board["panels"]), name


def test_overlap_check_catches_an_overlap():
    a = {"title": "a", "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8}}
    b = {"title": "b", "gridPos": {"x": 11, "y": 7, "w": 6, "h": 8}}
    c = {"title": "c", "gridPos": {"x": 12, "y": 0, "w": 12, "h": 8}}
    assert _overlaps([a, b, c]) == [("a", "b"), ("b", "c")]
    assert _overlaps([a, c]) == []


def test_every_query_names_the_prometheus_datasource_by_uid(stack):
    """Panels and targets point at the board's `datasource` variable (a Prometheus data source);
    text panels query nothing."""
    for name, board in D.dashboards(stack.settings).items():
        (var,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
        assert var["query"] == "prometheus"
        ref = {"type": "prometheus", "uid": "${" + var["name"] + "}"}
        for p in board["panels"]:
            if p["type"] == "text":
                assert "targets" not in p and p["options"]["mode"] == "markdown", (name, p["title"])
                continue
            assert p["type"] in ("timeseries", "stat"), (name, p["title"])
            assert p["datasource"] == ref, (name, p["title"])
            assert p["targets"], (name, p["title"])
            for t in p["targets"]:
                assert t["datasource"] == ref and t["expr"], (name, p["title"], t)


def _by_labels(expr: str) -> set[str]:
    return {x.strip() for group in re.findall(r"by \(([^)]*)\)", expr) for x in group.split(",")}


def test_titles_and_legends_read_sensibly(stack):
    """Titles are plain text; every {{label}} in a legend is a label the query's series keep
    (its `by` clause, or for a recorded series the recording rule's `by` and labels)."""
    recorded = {
        r["record"]: _by_labels(r["expr"]) | set(r.get("labels", {}))
        for g in R.rule_groups(stack.settings)
        for r in g["rules"]
        if "record" in r
    }
    for name, board in D.dashboards(stack.settings).items():
        assert board["title"] and board["uid"].startswith("eb-")
        for p in board["panels"]:
            assert p["title"] and p["title"].strip() == p["title"], (name, p["title"])
            assert not set("{}$") & set(p["title"]), (name, p["title"])
            for t in p.get("targets", []):
                kept = _by_labels(t["expr"])
                if not kept:
                    kept = set().union(*(recorded.get(m, set()) for m in metric_names(t["expr"])))
                for label in re.findall(r"{{(\w+)}}", t["legendFormat"]):
                    assert label in kept, (name, p["title"], label, t["expr"])
