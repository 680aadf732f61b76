"""Alert rules proven with the real promtool (Debian package `prometheus`)."""

from __future__ import annotations

import re
import subprocess

import monitoring_cases
import promtool_cases
from conftest import ROOT, require_tool

from components.render import rules as R
from components.render import to_yaml


def write_rules(stack, tmp_path):
    path = tmp_path / f"rules-{stack.stack}.yaml"
    path.write_text(to_yaml(R.rules_file(stack.settings)))
    return path


def test_promtool_check_rules(stack, tmp_path):
    promtool = require_tool("promtool")
    path = write_rules(stack, tmp_path)
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_for_every_alert(stack, tmp_path):
    promtool = require_tool("promtool")
    rules = write_rules(stack, tmp_path)
    doc = promtool_cases.test_file(stack.settings, rules.name)
    tested = {t["alertname"] for c in doc["tests"] for t in c["alert_rule_test"]}
    firing = {t["alertname"] for c in doc["tests"] for t in c["alert_rule_test"] if t["exp_alerts"]}
    silent = {t["alertname"] for c in doc["tests"] for t in c["alert_rule_test"] if not t["exp_alerts"]} | {"Watchdog"}
    # (the throughput alert needs a day of history: tests/test_monitoring_promtool.py)
    names = {a["alert"] for a in R.alerts(stack.settings)} - monitoring_cases.LONG
    assert names == tested == firing, "every alert needs a firing case"
    assert names <= silent, "every alert needs a healthy case"
    (tmp_path / "tests.yaml").write_text(to_yaml(doc))
    proc = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]


def test_a_ten_minute_spike_does_not_trigger_the_burn_alerts(planned, tmp_path):
    """The burn logic is the same template for every stack; proven once, on prod."""
    promtool = require_tool("promtool")
    stack = planned["prod"]
    rules = write_rules(stack, tmp_path)
    cases = promtool_cases.spike_cases(stack.settings)
    assert len(cases) == len([x for x in R.slos(stack.settings) if x.kind != "broker-availability"]) >= 3
    procs = []
    for i, c in enumerate(cases):  # one promtool per case: they run in parallel
        (tmp_path / f"spike-{i}.yaml").write_text(
            to_yaml({"rule_files": [rules.name], "evaluation_interval": "1m", "tests": [c]})
        )
        procs.append(
            subprocess.Popen(
                [promtool, "test", "rules", f"spike-{i}.yaml"],
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for p in procs:
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, out[-6000:]


def test_every_alert_is_documented(stack):
    for alert in R.alerts(stack.settings):
        for key in ("severity",):
            assert alert["labels"].get(key), alert["alert"]
        for key in ("summary", "description", "runbook_url"):
            assert alert["annotations"].get(key), f"{alert['alert']} lacks {key}"
        name = alert["annotations"]["runbook_url"].rsplit("/", 1)[-1]
        assert name == f"{alert['alert']}.md"
        runbook = ROOT / "docs" / "runbooks" / name
        assert runbook.is_file(), f"missing {runbook}"
        text = runbook.read_text()
        assert re.search(r"(?im)^#+ .*check", text) and re.search(r"(?im)^#+ .*(do|act|fix|mitigat)", text), (
            f"{name} must say what to check and what to do"
        )


def test_burn_thresholds_follow_the_budget(stack):
    for slo in R.slos(stack.settings):
        fast = next(
            a
            for a in R.alerts(stack.settings)
            if a["alert"] == "ErrorBudgetBurnFast" and a["labels"]["slo"] == slo.name
        )
        b = R.budget(slo)
        assert f"(14.4 * {b:g})" in fast["expr"] and f"(6 * {b:g})" in fast["expr"]
        assert "slo:sli_error:ratio_rate1h" in fast["expr"] and "slo:sli_error:ratio_rate5m" in fast["expr"]


def test_metric_and_label_names_are_settings(tmp_path):
    """A team that names its metrics differently changes the stack file, not the rules."""
    promtool = require_tool("promtool")
    from test_settings import mutate

    from components import settings as S
    from dryrun.runner import config_from_yaml

    text = mutate(
        "prod",
        "observability.metrics",
        {
            "eventsPublished": "bus_publishes_total",
            "serviceLabel": "app",
            "outcomeLabel": "result",
            "successValue": "ok",
            "failureValue": "error",
        },
    )
    s = S.from_config_map(config_from_yaml(text)[0], "prod")
    rendered = to_yaml(R.rules_file(s))
    assert "bus_publishes_total" in rendered and "events_published_total" not in rendered
    assert 'result="error"' in rendered and "sum by (app)" in rendered
    path = tmp_path / "rules.yaml"
    path.write_text(rendered)
    doc = promtool_cases.test_file(s, path.name)
    doc["tests"] = [t for t in doc["tests"] if "publish" in t["name"].lower()]
    assert doc["tests"]
    (tmp_path / "tests.yaml").write_text(to_yaml(doc))
    proc = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
