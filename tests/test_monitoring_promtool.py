"""The throughput-against-baseline alert with the real promtool: its baseline is yesterday's rate,
so its cases carry a day of history and run on the service rule groups alone (in parallel with
the one promtool run of every other alert, tests/test_alerts_promtool.py)."""

from __future__ import annotations

import subprocess

import monitoring_cases
from conftest import require_tool

from components.render import rules as R
from components.render import to_yaml


def test_throughput_against_the_recorded_baseline(stack, tmp_path):
    promtool = require_tool("promtool")
    groups = [g for g in R.rule_groups(stack.settings) if g["name"] in monitoring_cases.LONG_GROUPS]
    assert len(groups) == 2
    (tmp_path / "rules.yaml").write_text(to_yaml({"groups": groups}))
    cases = monitoring_cases.throughput_cases(stack.settings)
    assert {t["alertname"] for c in cases for t in c["alert_rule_test"]} == monitoring_cases.LONG
    (tmp_path / "tests.yaml").write_text(
        to_yaml({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": cases})
    )
    proc = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]


def test_a_broken_baseline_is_caught(stack, tmp_path):
    """The cases can fail: with a baseline that is the current rate (no history) it never fires."""
    promtool = require_tool("promtool")
    groups = [g for g in R.rule_groups(stack.settings) if g["name"] in monitoring_cases.LONG_GROUPS]
    for rule in groups[0]["rules"]:
        if rule.get("record") == "service:requests:baseline":
            rule["expr"] = "service:requests:rate5m"
    (tmp_path / "rules.yaml").write_text(to_yaml({"groups": groups}))
    cases = monitoring_cases.throughput_cases(stack.settings)[:1]
    (tmp_path / "tests.yaml").write_text(
        to_yaml({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": cases})
    )
    proc = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode != 0 and "ServiceThroughputLow" in proc.stdout + proc.stderr
