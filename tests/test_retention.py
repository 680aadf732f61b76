"""Retention: 90 days of application logs (table-level where the workspace differs), a year of
metrics by remote write to an Azure Monitor workspace - the Prometheus configuration checked with
the real promtool of the testing root."""

from __future__ import annotations

import json
import subprocess

import yaml
from conftest import require_tool, unwrap

from components.render import helm_values as H
from components.render import prometheus_config as P
from components.render import rules as R
from components.render import to_yaml
from components.retention import (
    MONITORING_DATA_READER,
    MONITORING_METRICS_PUBLISHER,
    MONITORING_READER,
    remote_write_url,
)
from dryrun.mocks import SUBSCRIPTION

# Debian's prometheus package builds without Entra ID (Azure AD) remote-write authentication
# (debian/patches: Disable-Azure-AD-authentication-support.patch): its promtool refuses the field.
DEBIAN_NO_AZUREAD = "field azuread not found in type config.plain"
# upstream's schema of the block (prometheus/storage/remote/azuread: AzureADConfig, SDKConfig)
AZUREAD_KEYS = {"cloud", "sdk"}
CLOUDS = {"AzurePublic", "AzureChina", "AzureGovernment"}


def outputs(reg) -> dict:
    """What the recording mocks answered for a registration (dryrun/mocks.py: its name rule)."""
    from dryrun import mocks as M

    inputs = unwrap(reg.inputs)
    kind = reg.type.split(":")[2]
    name = next((inputs[k] for k in M._NAME_INPUTS if isinstance(inputs.get(k), str)), reg.name)
    return {"name": name, **M.PlatformMocks._azure_outputs(kind, name, inputs)}


def release_values(stack) -> dict:
    inputs = stack.inputs("helm.sh/v3:Release", H.KUBE_PROMETHEUS_STACK.release)
    return yaml.safe_load(inputs["values"]) if isinstance(inputs.get("values"), str) else inputs["values"]


def check_config(promtool: str, tmp_path, doc: dict, stack) -> subprocess.CompletedProcess:
    (tmp_path / "rules.yaml").write_text(to_yaml(R.rules_file(stack.settings)))
    (tmp_path / "prometheus.yaml").write_text(to_yaml(doc))
    return subprocess.run(
        [promtool, "check", "config", "prometheus.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def test_the_prometheus_configuration_passes_promtool(stack, tmp_path):
    promtool = require_tool("promtool")
    doc = P.config(stack.settings, ["rules.yaml"])
    (write,) = doc["remote_write"]
    assert write["url"].endswith("/streams/Microsoft-PrometheusMetrics/api/v1/write?api-version=2023-04-24")
    assert set(write["azuread"]) == AZUREAD_KEYS and write["azuread"]["cloud"] in CLOUDS
    assert set(write["azuread"]["sdk"]) == {"tenant_id"}
    proc = check_config(promtool, tmp_path, doc, stack)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 and DEBIAN_NO_AZUREAD in out:
        # everything but the azuread block, with the same promtool (and the rules it references)
        stripped = json.loads(json.dumps(doc))
        stripped["remote_write"][0].pop("azuread")
        proc = check_config(promtool, tmp_path, stripped, stack)
        out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "is valid prometheus config file syntax" in out and "SUCCESS" in out


def test_promtool_catches_a_wrong_remote_write_key(stack, tmp_path):
    promtool = require_tool("promtool")
    doc = P.config(stack.settings, ["rules.yaml"])
    doc["remote_write"][0].pop("azuread")
    doc["remote_write"][0]["queue_config"]["max_shardz"] = 10
    proc = check_config(promtool, tmp_path, doc, stack)
    assert proc.returncode != 0 and "max_shardz" in proc.stdout + proc.stderr


def test_prometheus_remote_writes_with_its_own_identity(stack):
    """The Helm values carry the DCR's endpoint, the Entra SDK sign-in and the workload identity;
    the identity is federated to Prometheus's ServiceAccount and may only publish to that DCR."""
    values = release_values(stack)
    spec = values["prometheus"]["prometheusSpec"]
    (write,) = spec["remoteWrite"]
    dce = stack.inputs("monitor:DataCollectionEndpoint")
    dcr_reg = stack.one("monitor:DataCollectionRule")
    dce_out = outputs(stack.one("monitor:DataCollectionEndpoint"))
    dcr_out = outputs(dcr_reg)
    assert write["url"] == remote_write_url(dce_out["metricsIngestion"]["endpoint"], dcr_out["immutableId"])
    assert write["azureAd"]["cloud"] == "AzurePublic" and set(write["azureAd"]["sdk"]) == {"tenantId"}
    assert spec["podMetadata"]["labels"]["azure.workload.identity/use"] == "true"
    identity = stack.one("managedidentity:UserAssignedIdentity", "prometheus-remote-write-identity")
    annotations = values["prometheus"]["serviceAccount"]["annotations"]
    assert annotations["azure.workload.identity/client-id"] == outputs(identity)["clientId"]
    fed = stack.inputs("managedidentity:FederatedIdentityCredential", "prometheus-remote-write-federation")
    ns = stack.settings.observability.namespace
    assert fed["subject"] == f"system:serviceaccount:{ns}:{H.prometheus_service_account()}"
    grant = stack.inputs("authorization:RoleAssignment", "prometheus-publishes-metrics")
    assert grant["roleDefinitionId"].endswith(MONITORING_METRICS_PUBLISHER)
    # the rule only, not the workspace or the group
    assert grant["scope"].endswith(f"/dataCollectionRules/{dcr_out['name']}"), grant["scope"]
    rule = unwrap(dcr_reg.inputs)
    (flow,) = rule["dataFlows"]
    assert flow["streams"] == ["Microsoft-PrometheusMetrics"]
    amw = stack.one("monitor:AzureMonitorWorkspace")
    account = rule["destinations"]["monitoringAccounts"][0]["accountResourceId"]
    assert account.endswith(f"/azureMonitorWorkspaces/{outputs(amw)['name']}"), account
    assert amw.protect == stack.settings.protect
    assert dce["kind"] == "Linux"


def test_grafana_reads_azure_monitor_and_the_workspace_with_its_own_identity(planned):
    """Grafana's identity is federated to Grafana's ServiceAccount and holds exactly two grants:
    Monitoring Reader on the stack's resource group, Monitoring Data Reader on the Azure Monitor
    workspace; its pods carry the workload identity label, its ServiceAccount the client ID, and
    the long-term data source queries that workspace's endpoint."""
    assert MONITORING_READER == "43d0d8ad-25c7-4714-9337-8ba259a9fe05"
    assert MONITORING_DATA_READER == "b0d8363b-8ddd-447d-831f-62ca05bff136"
    for stack in planned.values():
        identity = stack.one("managedidentity:UserAssignedIdentity", "grafana-identity")
        principal = outputs(identity)["principalId"]
        fed = stack.inputs("managedidentity:FederatedIdentityCredential", "grafana-federation")
        ns = stack.settings.observability.namespace
        assert fed["subject"] == f"system:serviceaccount:{ns}:kube-prometheus-stack-grafana"
        assert fed["subject"] == f"system:serviceaccount:{ns}:{H.grafana_service_account()}"
        assert fed["audiences"] == ["api://AzureADTokenExchange"]
        assert fed["resourceName"] == outputs(identity)["name"]
        grants = {
            (g["roleDefinitionId"].rsplit("/", 1)[-1], g["scope"])
            for g in (unwrap(r.inputs) for r in stack.of_type("authorization:RoleAssignment"))
            if g["principalId"] == principal
        }
        # the stack's resource group itself: not the subscription, not the AKS node group
        (reader_scope,) = [scope for role, scope in grants if role == MONITORING_READER]
        assert reader_scope == f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{stack.settings.name('rg')}"
        amw = stack.one("monitor:AzureMonitorWorkspace")
        (data_scope,) = [scope for role, scope in grants if role == MONITORING_DATA_READER]
        assert data_scope.endswith(f"/providers/Microsoft.Monitor/azureMonitorWorkspaces/{outputs(amw)['name']}")
        assert grants == {(MONITORING_READER, reader_scope), (MONITORING_DATA_READER, data_scope)}

        grafana = release_values(stack)["grafana"]
        assert grafana["podLabels"] == {"azure.workload.identity/use": "true"}
        assert grafana["serviceAccount"]["annotations"] == {
            "azure.workload.identity/client-id": outputs(identity)["clientId"]
        }
        sources = {d["uid"]: d for d in grafana["additionalDataSources"]}
        endpoint = outputs(amw)["metrics"]["prometheusQueryEndpoint"]
        assert sources[H.LONG_TERM_METRICS_UID]["url"] == endpoint
        assert endpoint.endswith(".prometheus.monitor.azure.com")
        assert sources[H.AZURE_MONITOR_UID]["jsonData"]["subscriptionId"] == SUBSCRIPTION


def test_application_logs_keep_90_days(stack):
    s = stack.settings
    tables = {unwrap(r.inputs)["tableName"]: unwrap(r.inputs) for r in stack.of_type("operationalinsights:Table")}
    if s.aks.log_retention_days == 90:  # prod: the workspace already keeps 90 days
        assert tables == {}
    else:  # dev: the workspace keeps 30, the application logs' table 90
        assert s.aks.log_retention_days != 90
        t = tables["ContainerLogV2"]
        assert t["retentionInDays"] == t["totalRetentionInDays"] == 90
