"""Alertmanager routing: critical -> PagerDuty, warning -> Slack, Watchdog -> a dead-man's
switch; grouping by alertname/service/queue; warnings inhibited by a critical alert of the
same service. Credentials are read from files mounted from a Kubernetes secret, so the
configuration itself carries none (build/<stack>/alertmanager/alertmanager.yaml)."""

from __future__ import annotations

from typing import Any

from ..settings import StackSettings

RECEIVERS_SECRET = "alertmanager-receivers"
SECRET_DIR = f"/etc/alertmanager/secrets/{RECEIVERS_SECRET}"
# key in the Kubernetes secret -> the Alerting setting that provides it
SECRET_KEYS = {
    "pagerduty-routing-key": "pagerduty_routing_key",
    "slack-webhook-url": "slack_webhook_url",
    "deadmans-switch-url": "deadmans_switch_url",
}
PAGERDUTY, SLACK, DEADMANS, NULL = "pagerduty", "slack", "deadmans-switch", "null"


def configured(s: StackSettings) -> dict[str, str]:
    """Secret key -> configured value, for the receivers this stack has."""
    a = s.observability.alerting
    return {key: getattr(a, attr) for key, attr in SECRET_KEYS.items() if getattr(a, attr)}


def receiver_for(s: StackSettings, severity: str) -> str:
    """Where an alert of this severity goes (falls back when a receiver is not configured)."""
    keys = configured(s)
    if severity == "critical":
        return PAGERDUTY if "pagerduty-routing-key" in keys else (SLACK if "slack-webhook-url" in keys else NULL)
    if severity == "warning":
        return SLACK if "slack-webhook-url" in keys else NULL
    return NULL


def config(s: StackSettings) -> dict:
    keys = configured(s)
    a = s.observability.alerting
    receivers: list[dict[str, Any]] = [{"name": NULL}]
    if "pagerduty-routing-key" in keys:
        receivers.append(
            {
                "name": PAGERDUTY,
                "pagerduty_configs": [
                    {
                        "routing_key_file": f"{SECRET_DIR}/pagerduty-routing-key",
                        "send_resolved": True,
                        "severity": "critical",
                        "description": "{{ .CommonLabels.alertname }}: {{ .CommonAnnotations.summary }}",
                        "details": {
                            "runbook": "{{ .CommonAnnotations.runbook_url }}",
                            "service": f"{{{{ .CommonLabels.{s.observability.metrics.service_label} }}}}",
                        },
                    }
                ],
            }
        )
    if "slack-webhook-url" in keys:
        receivers.append(
            {
                "name": SLACK,
                "slack_configs": [
                    {
                        "api_url_file": f"{SECRET_DIR}/slack-webhook-url",
                        "channel": a.slack_channel,
                        "send_resolved": True,
                        "title": "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} "
                        f"{{{{ .CommonLabels.{s.observability.metrics.service_label} }}}}",
                        "text": "{{ range .Alerts }}*{{ .Annotations.summary }}*\n{{ .Annotations.description }}\n"
                        "<{{ .Annotations.runbook_url }}|runbook>\n{{ end }}",
                    }
                ],
            }
        )
    if "deadmans-switch-url" in keys:
        receivers.append(
            {
                "name": DEADMANS,
                "webhook_configs": [
                    {
                        "url_file": f"{SECRET_DIR}/deadmans-switch-url",  # Alertmanager >= 0.26 (the chart runs 0.34)
                        "send_resolved": False,
                    }
                ],
            }
        )
    routes = [
        {
            "receiver": DEADMANS if "deadmans-switch-url" in keys else NULL,
            "matchers": ['alertname="Watchdog"'],
            "group_wait": "0s",
            "group_interval": "1m",
            "repeat_interval": "1m",
        },
        {
            "receiver": NULL,
            "matchers": ['alertname="InfoInhibitor"'],
        },
    ]
    for severity in ("critical", "warning"):
        routes.append({"receiver": receiver_for(s, severity), "matchers": [f'severity="{severity}"']})
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": receiver_for(s, "warning") if keys else NULL,  # unlabelled alerts are not lost
            "group_by": ["alertname", s.observability.metrics.service_label, "queue"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": routes,
        },
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": [s.observability.metrics.service_label],
            }
        ],
        "receivers": receivers,
    }
