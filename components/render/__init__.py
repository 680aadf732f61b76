"""Pure renders: settings in, data out. ``artefacts`` lists every generated file that
``make plan`` writes under ``build/<stack>/`` (secrets as placeholders)."""

from __future__ import annotations

import json

import yaml

from ..settings import StackSettings


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None  # multi-line PromQL as block scalars
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(data) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


POD_SECURITY_PREFIX = "pod-security.kubernetes.io/"


def pod_security_labels(enforce: str) -> dict[str, str]:
    """Pod Security Admission labels for a namespace the stack creates: ``enforce`` at the level
    its workloads need, ``audit`` and ``warn`` always at restricted (so every gap from restricted
    shows up in the audit log and in kubectl's warnings), all against the latest policy version."""
    if enforce not in ("restricted", "baseline", "privileged"):
        raise ValueError(f"unknown Pod Security level {enforce!r}")
    labels = {}
    for mode, level in (("enforce", enforce), ("audit", "restricted"), ("warn", "restricted")):
        labels[f"{POD_SECURITY_PREFIX}{mode}"] = level
        labels[f"{POD_SECURITY_PREFIX}{mode}-version"] = "latest"
    return labels


def labelled_namespace(name: str, enforce: str) -> dict:
    """A Namespace manifest carrying the stack's part-of label and its Pod Security labels."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/part-of": "event-backbone", **pod_security_labels(enforce)},
        },
    }


def artefacts(s: StackSettings) -> dict[str, str]:
    from . import (
        alertmanager,
        broker,
        clients,
        dashboards,
        database_contract,
        db_alerts,
        helm_values,
        prometheus_config,
        rollouts,
        rules,
    )

    definitions = broker.definitions(s, broker.placeholder_hashes(s))
    files = {
        "rabbitmq/definitions.json": json.dumps(definitions, indent=2) + "\n",
        "prometheus/rules.yaml": to_yaml(rules.rules_file(s)),
        "alertmanager/alertmanager.yaml": to_yaml(alertmanager.config(s)),
        # what the operator writes for our part of Prometheus's configuration (remote write)
        "prometheus/prometheus.yaml": to_yaml(prometheus_config.config(s, ["rules.yaml"])),
        # the Azure Monitor alerts with their computed thresholds and receivers (no credential)
        "azure-monitor/metric-alerts.json": json.dumps(
            db_alerts.summary_table(
                s,
                db_alerts.database_alerts(s, [db_alerts.primary(s)])
                + db_alerts.vault_alerts(s)
                + (db_alerts.edge_alerts(s) if s.edge.enabled else []),
            ),
            indent=2,
        )
        + "\n",
    }
    # one contract per service user, read back from the same definitions
    for service, contract in clients.client_contracts(s, definitions).items():
        files[f"rabbitmq/clients/{service}.json"] = json.dumps(contract, indent=2) + "\n"
    for service, contract in database_contract.database_contracts(s).items():
        files[f"postgres/clients/{service}.json"] = json.dumps(contract, indent=2) + "\n"
    for chart, values in helm_values.all_values(s).items():
        files[f"helm/{chart.release}/values.yaml"] = to_yaml(values)
    if s.rollouts.enabled:
        files[f"helm/{rollouts.CHART.release}/values.yaml"] = to_yaml(rollouts.controller_values(s))
        files["rollouts/cluster-analysis-templates.yaml"] = "---\n".join(
            to_yaml(t) for t in rollouts.cluster_analysis_templates(s)
        )
    for name, board in dashboards.dashboards(s).items():
        files[f"grafana/dashboards/{name}.json"] = json.dumps(board, indent=2) + "\n"
    from . import redis  # Azure Monitor metrics, not Prometheus: outside dashboards()

    for name, board in redis.boards(s).items():
        files[f"grafana/dashboards/{name}.json"] = json.dumps(board, indent=2) + "\n"
    return files
