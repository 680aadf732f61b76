"""The part of the Prometheus configuration this stack decides, as the operator writes it from
the Prometheus resource the chart renders (prometheusSpec): global settings, the rule files and
the remote write to the Azure Monitor workspace (``azureAd`` -> ``azuread``, ``queueConfig`` ->
``queue_config``, camelCase -> snake_case, as prometheus-operator's config generator does).
``build/<stack>/prometheus/prometheus.yaml``; tests check it with the real promtool
(``promtool check config``) of the testing root."""

from __future__ import annotations

import re
from typing import Any

from ..settings import StackSettings
from . import helm_values

# kube-prometheus-stack's defaults for prometheusSpec (scrapeInterval/evaluationInterval: "30s")
SCRAPE_INTERVAL = "30s"
EVALUATION_INTERVAL = "30s"


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def _convert(value: Any) -> Any:
    if isinstance(value, dict):
        return {("azuread" if k == "azureAd" else _snake(k)): _convert(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_convert(v) for v in value]
    return value


def config(
    s: StackSettings,
    rule_files: list[str],
    url: str = helm_values.REMOTE_WRITE_URL_PLACEHOLDER,
    tenant_id: str = helm_values.TENANT_PLACEHOLDER,
) -> dict:
    doc: dict[str, Any] = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "evaluation_interval": EVALUATION_INTERVAL,
            "external_labels": {
                "prometheus": f"{s.observability.namespace}/{helm_values.KUBE_PROMETHEUS_STACK.release}-prometheus",
                "prometheus_replica": "$(POD_NAME)",
            },
        },
        "rule_files": rule_files,
    }
    writes = [_convert(w) for w in helm_values.remote_write(s, url, tenant_id)]
    if writes:
        doc["remote_write"] = writes
    return doc
