"""Helm values against the pinned charts' own defaults (Helm ignores unknown keys silently)
and the collector's values.schema.json; the releases as recorded."""

from __future__ import annotations

import copy
import json
from functools import cache

import grafana_ini_keys
import jsonschema
import pytest
from conftest import ROOT
from pulumi.runtime import rpc

from components.render import helm_values as H

CHARTS = ROOT / "tests" / "reference" / "charts"
# Subtrees that are documents of their own, not chart switches: each is checked by the real
# consumer instead (amtool for the Alertmanager config, the collector schema's `config:
# {type: object}` for the collector config).
FREE_FORM = {
    # grafana.ini: checked against Grafana's documented settings (tests/grafana_ini_keys.py)
    "kube-prometheus-stack": {"alertmanager.config", "grafana.grafana.ini"},
    "opentelemetry-collector": {"config"},
}
# Keys a chart documents only as comments in its values.yaml (the extract holds the keys its
# defaults set): each is checked against the upstream file by test_commented_keys_are_upstream.
COMMENTED = {"opentelemetry-collector": {"podDisruptionBudget.maxUnavailable": "#   maxUnavailable: 1"}}
# The same for the Grafana subchart (its values.yaml): maps whose entries are ours (the pods'
# workload identity label, the ServiceAccount's client-id annotation), the lines as written.
GRAFANA_COMMENTED_MAPS = {"podLabels": "# podLabels: {}", "serviceAccount.annotations": "  #  annotations:"}
# Maps whose entry names are ours, typed by the chart's values.schema.json (`patternProperties`
# with `additionalProperties: false` entries): test_collector_values_match_the_chart_schema checks them.
SCHEMA_MAPS = {"opentelemetry-collector": {"ports"}}
# The image keys of two kube-prometheus-stack subcharts the reference extract does not hold
# (prometheus-community's kube-state-metrics and prometheus-node-exporter charts: `image:
# {registry, repository, tag}`), set to pull through the stack's registry.
SUBCHART_IMAGE_KEYS = {
    "kube-prometheus-stack": {
        f"{sub}.image{key}"
        for sub in ("kube-state-metrics", "prometheus-node-exporter")
        for key in ("", ".registry", ".repository")
    }
}


@cache
def chart_keys(name: str) -> tuple[set, set]:
    doc = json.loads((CHARTS / f"{name}.keys.json").read_text())
    return set(doc["keys"]), set(doc["openMaps"])


def paths(values: dict, prefix: str = ""):
    for k, v in values.items():
        path = f"{prefix}.{k}" if prefix else k
        yield path
        if isinstance(v, dict):
            yield from paths(v, path)


def unknown_keys(chart: H.Chart, values: dict) -> list[str]:
    keys, open_maps = chart_keys(f"{chart.chart}-{chart.version}")
    free = FREE_FORM.get(chart.chart, set()) | SCHEMA_MAPS.get(chart.chart, set())
    keys = keys | SUBCHART_IMAGE_KEYS.get(chart.chart, set()) | set(COMMENTED.get(chart.chart, {}))
    sub_keys, sub_open = chart_keys("grafana-12.11.1") if chart.chart == "kube-prometheus-stack" else (set(), set())
    bad = []
    for path in paths(values):

        def covered(p, known, opened, extra_free=()):
            return p in known or any(p == o or p.startswith(o + ".") for o in (*opened, *extra_free))

        if covered(path, keys, open_maps, free):
            continue
        grafana_open = set(GRAFANA_COMMENTED_MAPS) if chart.chart == "kube-prometheus-stack" else set()
        if path.startswith("grafana.") and covered(path[len("grafana.") :], sub_keys, sub_open, grafana_open):
            continue  # the Grafana subchart's own values
        bad.append(path)
    return bad


@pytest.mark.parametrize("chart", H.CHARTS, ids=lambda c: c.release)
def test_every_key_exists_in_the_pinned_chart(stack, chart):
    assert unknown_keys(chart, H.all_values(stack.settings)[chart]) == []
    # with every image through the registry, and as recorded in the plan
    assert unknown_keys(chart, H.all_values(stack.settings, registry="acr.azurecr.io")[chart]) == []
    assert unknown_keys(chart, releases(stack)[chart.release]["values"]) == []


@pytest.mark.parametrize(
    "chart,path",
    [
        (H.KUBE_PROMETHEUS_STACK, ("prometheus", "prometheusSpec", "retentionn")),
        (H.KUBE_PROMETHEUS_STACK, ("grafana", "persistance")),
        (H.JAEGER, ("jaeger", "replica")),
        (H.OTEL_COLLECTOR, ("presets", "kubernetesAttribute")),
        (H.OTEL_SAMPLER, ("podDisruptionBudget", "maxUnavailabel")),
    ],
)
def test_a_typo_is_caught(planned, chart, path):
    values = copy.deepcopy(H.all_values(planned["prod"].settings)[chart])
    node = values
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = True
    assert unknown_keys(chart, values) == [".".join(path)]


def schema_for_user_values(schema: dict, defaults: set, prefix: str = "") -> dict:
    """Helm validates defaults merged with our values; a property the chart's defaults
    already provide need not be in ours, so it is dropped from `required` (only there)."""
    schema = dict(schema)
    if "required" in schema:
        schema["required"] = [r for r in schema["required"] if (f"{prefix}.{r}" if prefix else r) not in defaults]
    if "properties" in schema:
        schema["properties"] = {
            k: schema_for_user_values(v, defaults, f"{prefix}.{k}" if prefix else k)
            for k, v in schema["properties"].items()
        }
    return schema


def test_commented_keys_are_upstream():
    """The keys allowed from comments are in the pinned chart's values.yaml as written."""
    from test_reference import UPSTREAM

    if not UPSTREAM.is_dir():
        pytest.skip("../shared/reference is not beside this clone (CI has it)")
    for chart in H.CHARTS:
        text = (UPSTREAM / "charts" / f"{chart.chart}-{chart.version}" / "values.yaml").read_text()
        for key, line in COMMENTED.get(chart.chart, {}).items():
            assert line in text.splitlines(), (chart.chart, key)
    text = (UPSTREAM / "charts" / "grafana-12.11.1" / "values.yaml").read_text()
    for key, line in GRAFANA_COMMENTED_MAPS.items():
        assert line in text.splitlines(), ("grafana", key)


@pytest.mark.parametrize("render", [H.collector, H.sampler], ids=["gateway", "sampler"])
def test_collector_values_match_the_chart_schema(stack, render):
    keys, _ = chart_keys("opentelemetry-collector-0.170.0")
    schema = schema_for_user_values(
        json.loads((CHARTS / "opentelemetry-collector-0.170.0.schema.json").read_text()), keys
    )
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(render(stack.settings))]
    assert errors == []
    broken = render(stack.settings)
    broken["mode"] = "sidecar"
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))
    broken = render(stack.settings)
    broken["ports"]["otlp"] = {"enabled": True, "containerPort": 4317, "servicePrt": 4317}  # a typo in a port entry
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def releases(stack) -> dict:
    return {r.name: stack.inputs("helm.sh/v3:Release", r.name) for r in stack.of_type("helm.sh/v3:Release")}


def user_values(release: dict) -> dict:
    """What Helm gets from a recorded release: its valueYamlFiles (the null deletions: the
    Python SDK drops nulls from `values`), then `values` over them."""
    import yaml

    merged: dict = {}
    for asset in release.get("valueYamlFiles", []):
        merged = _merge(merged, yaml.safe_load(asset.text))
    return _merge(merged, release["values"])


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_recorded_releases_carry_every_rendered_value_and_deletion(stack):
    """Nothing rendered is lost on the way to Helm: the recorded values plus the deletions file
    are the rendered values, nulls included."""
    found = releases(stack)
    for chart, rendered in H.all_values(stack.settings, registry="x").items():
        recorded = user_values(found[chart.release])
        _, deleted = H.split_deletions(rendered)
        assert H.split_deletions(recorded)[1] == deleted
        assert ("valueYamlFiles" in found[chart.release]) == bool(deleted)
    sampler = user_values(found["otel-sampler"])
    assert sampler["config"]["service"]["pipelines"]["logs"] is None
    assert sampler["config"]["receivers"]["otlp"]["protocols"]["http"] is None


def test_releases_are_pinned(stack):
    found = releases(stack)
    for chart in H.CHARTS:
        r = found[chart.release]
        assert (r["chart"], r["version"], r["repositoryOpts"]["repo"]) == (chart.chart, chart.version, chart.repo)
        assert r["namespace"] == stack.settings.observability.namespace
        assert r["atomic"] is True


def test_prometheus_storage_retention_and_selectors(planned):
    for name, retention in (("dev", "7d"), ("prod", "30d")):
        spec = releases(planned[name])["kube-prometheus-stack"]["values"]["prometheus"]["prometheusSpec"]
        assert spec["retention"] == retention
        claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
        assert claim["resources"]["requests"]["storage"] == planned[name].settings.observability.prometheus.storage_size
        assert (
            spec["ruleSelectorNilUsesHelmValues"] is False and spec["serviceMonitorSelectorNilUsesHelmValues"] is False
        )


def test_alertmanager_storage_and_replicas(planned):
    assert (
        releases(planned["prod"])["kube-prometheus-stack"]["values"]["alertmanager"]["alertmanagerSpec"]["replicas"]
        == 2
    )
    for name in ("dev", "prod"):
        spec = releases(planned[name])["kube-prometheus-stack"]["values"]["alertmanager"]["alertmanagerSpec"]
        assert spec["storage"]["volumeClaimTemplate"]["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_grafana_persistence_admin_secret_sidecar_datasources(stack):
    grafana = releases(stack)["kube-prometheus-stack"]["values"]["grafana"]
    assert grafana["persistence"]["enabled"] is True
    assert grafana["admin"] == {
        "existingSecret": "grafana-admin",
        "userKey": "admin-user",
        "passwordKey": "admin-password",
    }
    assert grafana["sidecar"]["dashboards"]["enabled"] is True
    assert [d["type"] for d in grafana["additionalDataSources"]] == [
        "jaeger",
        "grafana-azure-monitor-datasource",
        "prometheus",
    ]
    admin = stack.one("core/v1:Secret", "grafana-admin")
    assert rpc.is_rpc_secret(admin.inputs["stringData"])
    password = stack.inputs("core/v1:Secret", "grafana-admin")["stringData"]["admin-password"]
    assert password in stack.result.generated_secrets  # the generated Key Vault secret


def test_grafana_azure_data_sources_sign_in_with_workload_identity(planned):
    """Azure Monitor (uid azure-monitor: the Redis board's) and the Azure Monitor workspace's
    PromQL endpoint (uid long-term-metrics), both with the pod's workload identity; grafana.ini
    turns workload identity and the Prometheus data source's Azure authentication on; the pods are
    labelled for the webhook and the ServiceAccount names the identity's client ID."""
    from components.render import redis as R

    for stack in planned.values():
        grafana = releases(stack)["kube-prometheus-stack"]["values"]["grafana"]
        sources = {d["uid"]: d for d in grafana["additionalDataSources"]}
        azure = sources["azure-monitor"]
        assert azure["type"] == "grafana-azure-monitor-datasource" and azure["access"] == "proxy"
        assert azure["jsonData"]["azureAuthType"] == "workloadidentity"
        assert azure["jsonData"]["cloudName"] == "azuremonitor"
        assert "secureJsonData" not in azure and "clientId" not in azure["jsonData"]  # no secret, no app
        archive = sources["long-term-metrics"]
        assert archive["type"] == "prometheus" and archive["access"] == "proxy"
        assert archive["jsonData"]["azureCredentials"] == {"authType": "workloadidentity"}
        assert archive["url"].startswith("https://") and archive["url"].endswith(".prometheus.monitor.azure.com")
        assert "secureJsonData" not in archive
        assert H.AZURE_MONITOR_UID == R.AZURE_DATASOURCE_UID == "azure-monitor"
        ini = grafana["grafana.ini"]
        assert ini["azure"] == {"workload_identity_enabled": True}
        assert ini["auth"]["azure_auth_enabled"] is True
        assert grafana_ini_keys.unknown(ini) == []
        assert grafana["podLabels"] == {"azure.workload.identity/use": "true"}
        client_id = grafana["serviceAccount"]["annotations"]["azure.workload.identity/client-id"]
        assert client_id not in (H.GRAFANA_CLIENT_ID_PLACEHOLDER, "")


def test_no_archive_no_long_term_data_source(planned):
    s = planned["dev"].settings
    off = s.model_copy(
        update={
            "observability": s.observability.model_copy(
                update={"retention": s.observability.retention.model_copy(update={"long_term_metrics": False})}
            )
        }
    )
    assert [d["uid"] for d in H.azure_data_sources(off, "sub", None)] == ["azure-monitor"]
    assert [d["uid"] for d in H.azure_data_sources(s, "sub", "https://x")] == ["azure-monitor", "long-term-metrics"]


def test_grafana_is_never_served_by_an_ingress(stack):
    """Grafana is reached through the Gateway (tests/test_edge.py), never a chart Ingress."""
    assert releases(stack)["kube-prometheus-stack"]["values"]["grafana"]["ingress"] == {"enabled": False}


def test_grafana_ini_uses_only_documented_settings(stack):
    ini = releases(stack)["kube-prometheus-stack"]["values"]["grafana"]["grafana.ini"]
    assert "auth.azuread" in ini
    assert grafana_ini_keys.unknown(ini) == []
    typo = copy.deepcopy(ini)
    typo["auth.azuread"]["allowed_group"] = "x"
    typo["auth.basics"] = {"enabled": False}
    assert grafana_ini_keys.unknown(typo) == ["auth.azuread.allowed_group", "auth.basics"]


def test_grafana_entra_sign_in(planned):
    prod = planned["prod"]
    si = prod.settings.observability.grafana.sign_in
    assert si is not None
    grafana = releases(prod)["kube-prometheus-stack"]["values"]["grafana"]
    ini = grafana["grafana.ini"]
    host = prod.settings.observability.grafana.hostname
    assert ini["server"]["root_url"] == f"https://{host}/"
    azure = ini["auth.azuread"]
    tenant = "11111111-1111-1111-1111-111111111111"  # the mocks' client config tenant
    assert azure["enabled"] is True and azure["client_id"] == si.client_id
    assert azure["auth_url"] == f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize"
    assert azure["allowed_organizations"] == tenant
    assert "client_secret" not in azure  # from the environment, i.e. a Kubernetes secret
    mapping = azure["org_mapping"].split()
    assert mapping[0] == f"{si.admin_group_object_id}:1:Admin"
    assert mapping[1:] == [f"{g}:1:Viewer" for g in si.viewer_group_object_ids]
    assert set(azure["allowed_groups"].split()) == {si.admin_group_object_id, *si.viewer_group_object_ids}
    # prod: no login form, no basic auth; dev keeps the local admin login
    assert ini["auth"]["disable_login_form"] is True and ini["auth.basic"]["enabled"] is False
    dev_ini = releases(planned["dev"])["kube-prometheus-stack"]["values"]["grafana"]["grafana.ini"]
    assert dev_ini["auth"]["disable_login_form"] is False and dev_ini["auth.basic"]["enabled"] is True
    ref = grafana["envValueFrom"]["GF_AUTH_AZUREAD_CLIENT_SECRET"]["secretKeyRef"]
    assert ref == {"name": H.GRAFANA_ENTRA_SECRET, "key": "client-secret"}
    secret = prod.one("core/v1:Secret", H.GRAFANA_ENTRA_SECRET)
    assert rpc.is_rpc_secret(secret.inputs["stringData"])
    stored = [r for r in prod.of_type("keyvault:Secret") if r.name == "grafana-entra-client-secret-secret"]
    props = stored[0].inputs["properties"]
    assert len(stored) == 1 and (rpc.is_rpc_secret(props) or rpc.is_rpc_secret(props["value"]))


def test_collector_pipeline(planned):
    """Gateway: OTLP in, Kubernetes attributes, every span routed twice to the sampler (by trace
    ID for tail sampling, by service for span metrics); sampler: tail sampling to Jaeger, span
    metrics to Prometheus's OTLP endpoint, exports retried from a queue."""
    for name, pct in (("dev", 100), ("prod", 10)):
        found = releases(planned[name])
        gateway, sampler = found["otel-collector"]["values"], found["otel-sampler"]["values"]
        for values in (gateway, sampler):
            assert values["mode"] == "deployment"
            # the k8s distribution, through the stack's registry (tests/test_images.py)
            assert values["image"]["repository"].endswith(".azurecr.io/docker/otel/opentelemetry-collector-k8s")
        cfg = gateway["config"]
        assert set(cfg["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
        traces = cfg["service"]["pipelines"]["traces"]
        assert traces["processors"][0] == "memory_limiter" and "k8sattributes" in traces["processors"]
        assert "tail_sampling" not in cfg.get("processors", {})  # a gateway replica sees part of a trace
        by = {cfg["exporters"][e]["routing_key"]: cfg["exporters"][e] for e in traces["exporters"]}
        sampler_svc = f"otel-sampler-opentelemetry-collector.{planned[name].settings.observability.namespace}"
        assert {k: v["resolver"] for k, v in by.items()} == {
            "traceID": {"k8s": {"service": sampler_svc, "ports": [4317]}},
            "service": {"k8s": {"service": sampler_svc, "ports": [H.SPANMETRICS_PORT]}},
        }
        for exporter in by.values():  # a batch whose sampler replica went away is re-routed, not dropped
            assert exporter["sending_queue"]["enabled"] and exporter["retry_on_failure"]["enabled"]

        cfg = sampler["config"]
        policies = {p["type"]: p for p in cfg["processors"]["tail_sampling"]["policies"]}
        assert policies["probabilistic"]["probabilistic"]["sampling_percentage"] == pct
        assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
        assert policies["latency"]["latency"]["threshold_ms"] > 0
        pipelines = cfg["service"]["pipelines"]
        assert pipelines["traces"]["receivers"] == ["otlp"]  # the trace-ID-routed stream
        assert "tail_sampling" in pipelines["traces"]["processors"]
        assert pipelines["traces"]["exporters"] == ["otlp_grpc/jaeger"]
        # span metrics only from the service-routed stream (each service on one replica)
        assert pipelines["traces/spanmetrics"] == {
            "receivers": ["otlp/spanmetrics"],
            "processors": ["memory_limiter", "batch"],
            "exporters": ["span_metrics"],
        }
        assert cfg["receivers"]["otlp/spanmetrics"]["protocols"]["grpc"]["endpoint"].endswith(f":{H.SPANMETRICS_PORT}")
        assert sampler["ports"]["otlp-spanmetrics"]["containerPort"] == H.SPANMETRICS_PORT
        assert pipelines["metrics"]["receivers"] == ["span_metrics"]
        # to every Prometheus replica (a push through the Service would reach one of them)
        replicas = planned[name].settings.observability.prometheus.replicas
        for pipeline in (pipelines["metrics"], gateway["config"]["service"]["pipelines"]["metrics"]):
            endpoints = {cfg["exporters"][e]["endpoint"] for e in pipeline["exporters"]}
            assert len(endpoints) == replicas == len(pipeline["exporters"])
            assert all(".prometheus-operated." in e and e.endswith(":9090/api/v1/otlp") for e in endpoints)
        for exporter in cfg["exporters"].values():
            assert exporter["retry_on_failure"]["enabled"] and exporter["sending_queue"]["enabled"]
        # only the gateway talks to the Kubernetes API
        assert sampler["serviceAccount"]["automountServiceAccountToken"] is False
        assert "presets" not in sampler and gateway["presets"]["kubernetesAttributes"]["enabled"]


def test_the_gateway_may_only_read_the_samplers_endpoints(planned):
    """The k8s resolver's access: a Role (not a ClusterRole) to read EndpointSlices in the
    monitoring namespace, bound to the gateway's ServiceAccount alone."""
    stack = planned["prod"]
    ns = stack.settings.observability.namespace
    role = stack.inputs("kubernetes:rbac.authorization.k8s.io/v1:Role")
    binding = stack.inputs("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
    assert role["metadata"]["namespace"] == ns
    assert role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": H.collector_service(H.OTEL_COLLECTOR), "namespace": ns}
    ]
    assert not stack.of_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")


def test_jaeger_memory_in_dev_badger_on_a_volume_in_prod(planned):
    dev = releases(planned["dev"])["jaeger"]["values"]
    assert "memory" in dev["userconfig"]["extensions"]["jaeger_storage"]["backends"]["primary_store"]
    prod = releases(planned["prod"])["jaeger"]["values"]
    badger = prod["userconfig"]["extensions"]["jaeger_storage"]["backends"]["primary_store"]["badger"]
    assert (
        badger["ephemeral"] is False
        and badger["ttl"]["spans"] == planned["prod"].settings.observability.jaeger.retention
    )
    assert prod["jaeger"]["extraVolumes"][0]["persistentVolumeClaim"]["claimName"] == H.JAEGER_BADGER_PVC
    pvc = planned["prod"].one("core/v1:PersistentVolumeClaim")
    assert pvc.protect is True
    assert not planned["dev"].of_type("core/v1:PersistentVolumeClaim")


def test_build_values_files(stack, tmp_path):
    import yaml

    from dryrun import plan

    written = plan.write_artefacts(stack.result, tmp_path)
    for chart in H.CHARTS:
        assert f"helm/{chart.release}/values.yaml" in written
        assert (
            yaml.safe_load((tmp_path / "helm" / chart.release / "values.yaml").read_text())
            == H.all_values(stack.settings)[chart]
        )
