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
    free = FREE_FORM.get(chart.chart, set())
    keys = keys | SUBCHART_IMAGE_KEYS.get(chart.chart, set())
    sub_keys, sub_open = chart_keys("grafana-12.11.1") if chart.chart == "kube-prometheus-stack" else (set(), set())
    bad = []
    for path in paths(values):

        def covered(p, known, opened, extra_free=()):
            return p in known or any(p == o or p.startswith(o + ".") for o in (*opened, *extra_free))

        if covered(path, keys, open_maps, free):
            continue
        if path.startswith("grafana.") and covered(path[len("grafana.") :], sub_keys, sub_open):
            continue  # the Grafana subchart's own values
        bad.append(path)
    return bad


@pytest.mark.parametrize("chart", H.CHARTS, ids=lambda c: c.chart)
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


def test_collector_values_match_the_chart_schema(stack):
    keys, _ = chart_keys("opentelemetry-collector-0.170.0")
    schema = schema_for_user_values(
        json.loads((CHARTS / "opentelemetry-collector-0.170.0.schema.json").read_text()), keys
    )
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(H.collector(stack.settings))]
    assert errors == []
    broken = H.collector(stack.settings)
    broken["mode"] = "sidecar"
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def releases(stack) -> dict:
    return {r.name: stack.inputs("helm.sh/v3:Release", r.name) for r in stack.of_type("helm.sh/v3:Release")}


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
    assert [d["type"] for d in grafana["additionalDataSources"]] == ["jaeger"]
    admin = stack.one("core/v1:Secret", "grafana-admin")
    assert rpc.is_rpc_secret(admin.inputs["stringData"])
    password = stack.inputs("core/v1:Secret", "grafana-admin")["stringData"]["admin-password"]
    assert password in stack.result.generated_secrets  # the generated Key Vault secret


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
    for name, pct in (("dev", 100), ("prod", 10)):
        values = releases(planned[name])["otel-collector"]["values"]
        assert values["mode"] == "deployment"
        # the k8s distribution, through the stack's registry (tests/test_images.py)
        assert values["image"]["repository"].endswith(".azurecr.io/docker/otel/opentelemetry-collector-k8s")
        cfg = values["config"]
        assert set(cfg["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
        policies = {p["type"]: p for p in cfg["processors"]["tail_sampling"]["policies"]}
        assert policies["probabilistic"]["probabilistic"]["sampling_percentage"] == pct
        assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
        assert policies["latency"]["latency"]["threshold_ms"] > 0
        traces = cfg["service"]["pipelines"]["traces"]
        assert traces["processors"][0] == "memory_limiter" and "k8sattributes" in traces["processors"]
        assert traces["exporters"] == ["otlp_grpc/jaeger"]
        assert "spanmetrics" in cfg["service"]["pipelines"]["metrics"]["receivers"]
        assert cfg["exporters"]["otlphttp/prometheus"]["endpoint"].endswith("/api/v1/otlp")


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
