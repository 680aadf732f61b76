"""Alertmanager routing proven with the real amtool of the release the stack pins (the testing root's
prometheus-alertmanager 0.33)."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from conftest import require_tool

from components.render import alertmanager as AM
from components.render import rules as R
from components.render import to_yaml


@pytest.fixture
def config_file(stack, tmp_path):
    """The rendered configuration as the chart deploys it, byte for byte: amtool is the
    release the stack pins (0.33), which knows every field (the webhook's ``url_file`` too)."""
    path = tmp_path / "alertmanager.yaml"
    path.write_text(to_yaml(AM.config(stack.settings)))
    return path


def test_the_webhook_reads_its_url_from_the_secret(stack):
    hooks = [h for r in AM.config(stack.settings)["receivers"] for h in r.get("webhook_configs", [])]
    assert hooks or stack.stack == "dev"  # dev has no dead-man's switch
    assert all(set(h) == {"url_file", "send_resolved"} for h in hooks)
    assert all(h["url_file"] == f"{AM.SECRET_DIR}/deadmans-switch-url" for h in hooks)


def test_amtool_check_config(config_file):
    amtool = require_tool("amtool")
    proc = subprocess.run([amtool, "check-config", str(config_file)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def route(amtool: str, config_file, *labels: str) -> str:
    proc = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config_file}", *labels], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("severity", ["critical", "warning"])
def test_each_severity_reaches_its_receiver(stack, config_file, severity):
    amtool = require_tool("amtool")
    expected = AM.receiver_for(stack.settings, severity)
    for alert in {a["alert"] for a in R.alerts(stack.settings) if a["labels"]["severity"] == severity}:
        assert (
            route(amtool, config_file, f"alertname={alert}", f"severity={severity}", "service=candystore") == expected
        )


def test_prod_pages_critical_and_slacks_warnings(planned, tmp_path):
    amtool = require_tool("amtool")
    path = tmp_path / "prod.yaml"
    path.write_text(to_yaml(AM.config(planned["prod"].settings)))
    assert route(amtool, path, "alertname=BrokerDown", "severity=critical") == "pagerduty"
    assert route(amtool, path, "alertname=DeadLetterQueueBacklog", "severity=warning", "queue=dlq.all") == "slack"
    assert route(amtool, path, "alertname=Watchdog", "severity=none") == "deadmans-switch"
    assert route(amtool, path, "alertname=SomethingUnlabelled") == "slack"  # nothing is lost


def test_dev_without_pagerduty_sends_critical_to_slack(planned, tmp_path):
    amtool = require_tool("amtool")
    path = tmp_path / "dev.yaml"
    path.write_text(to_yaml(AM.config(planned["dev"].settings)))
    assert route(amtool, path, "alertname=BrokerDown", "severity=critical") == "slack"
    assert route(amtool, path, "alertname=Watchdog", "severity=none") == "null"


def test_grouping_and_inhibition(stack):
    config = AM.config(stack.settings)
    assert config["route"]["group_by"] == ["alertname", "service", "queue"]
    assert config["inhibit_rules"] == [
        {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'], "equal": ["service"]}
    ]


def test_credentials_come_from_files_only(planned):
    config = AM.config(planned["prod"].settings)
    text = json.dumps(config)
    assert "dryrun-secure-placeholder" not in text
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["pagerduty"]["pagerduty_configs"][0]["routing_key_file"].startswith(AM.SECRET_DIR)
    assert receivers["slack"]["slack_configs"][0]["api_url_file"].startswith(AM.SECRET_DIR)
    # ... and the files come from a secret that the Alertmanager pods mount
    values = planned["prod"].inputs("helm.sh/v3:Release", "kube-prometheus-stack")["values"]
    assert values["alertmanager"]["alertmanagerSpec"]["secrets"] == [AM.RECEIVERS_SECRET]
    secret = planned["prod"].one("core/v1:Secret", "alertmanager-receivers")
    from pulumi.runtime import rpc

    assert rpc.is_rpc_secret(secret.inputs["stringData"])
    assert set(planned["prod"].inputs("core/v1:Secret", "alertmanager-receivers")["stringData"]) == set(AM.SECRET_KEYS)


def test_build_file_is_the_rendered_config(stack, tmp_path):
    from dryrun import plan

    plan.write_artefacts(stack.result, tmp_path)
    assert yaml.safe_load((tmp_path / "alertmanager" / "alertmanager.yaml").read_text()) == AM.config(stack.settings)
