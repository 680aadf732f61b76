"""Every image the stack runs comes through its registry (issue 12 item 4): the image keys of
every Helm release (each one the pinned chart's defaults define), the pod specs of the Jobs and
the RabbitmqCluster as recorded in the plan name the registry or mcr.microsoft.com, and every
upstream they are cached from has a cache rule."""

from __future__ import annotations

import re

import pytest
from conftest import unwrap
from test_helm_values import SUBCHART_IMAGE_KEYS, chart_keys, releases, unknown_keys

from components.render import broker as B
from components.render import edge as E
from components.render import helm_values as H
from components.render import rollouts as RO
from components.render import signing as SG
from components.render.images import CACHE_PREFIXES, MCR, cached_image, pull

CHARTS = {c.release: c for c in (*H.CHARTS, RO.CHART, E.CERT_MANAGER)}
# Charts whose images name no registry key: the repository carries the full reference.
REPOSITORY_ONLY = {"opentelemetry-collector": ["image.repository"]}


def login(stack) -> str:
    return stack.inputs("containerregistry:Registry")["registryName"] + ".azurecr.io"


def get(values: dict, path: str):
    node = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def image_registry_keys(chart) -> list[str]:
    """Each `<...image...>.registry` key of the pinned chart (and of its Grafana subchart)."""
    keys, _ = chart_keys(f"{chart.chart}-{chart.version}")
    keys = set(keys) | SUBCHART_IMAGE_KEYS.get(chart.chart, set())
    if chart.chart == "kube-prometheus-stack":
        keys |= {f"grafana.{k}" for k in chart_keys("grafana-12.11.1")[0]}
    found = []
    for key in sorted(keys):
        parent, _, leaf = key.rpartition(".")
        if leaf == "registry" and re.search(r"image", parent, re.I) and not parent.startswith("global"):
            found.append(key)
    return found


def chart_references(chart, values: dict) -> dict[str, str]:
    """key -> the image reference the chart renders from our values (tags: the chart's own)."""
    refs = {}
    if chart.chart == "cert-manager":  # <imageRegistry>/<imageNamespace>/<name> for every component
        refs["imageRegistry"] = f"{values['imageRegistry']}/jetstack/cert-manager-controller"
    for key in REPOSITORY_ONLY.get(chart.chart, []):
        refs[key] = get(values, key)
    for key in image_registry_keys(chart):
        parent = key.rpartition(".")[0]
        registry, repository = get(values, key), get(values, f"{parent}.repository")
        refs[parent] = f"{registry}/{repository}" if registry and repository else f"<unset: {key}>"
    return refs


def pod_images(inputs, path: str = ""):
    """(path, image) of every `image` string in a recorded Kubernetes object."""
    if isinstance(inputs, dict):
        for k, v in inputs.items():
            if k == "image" and isinstance(v, str):
                yield f"{path}.{k}", v
            else:
                yield from pod_images(v, f"{path}.{k}")
    elif isinstance(inputs, list):
        for i, v in enumerate(inputs):
            yield from pod_images(v, f"{path}[{i}]")


def all_references(stack) -> dict[str, str]:
    refs = {}
    for name, r in releases(stack).items():
        if name == E.ALB_CONTROLLER.release:
            continue  # Microsoft's chart from mcr.microsoft.com: its images are mcr's
        if name == SG.RATIFY_CHART.release:  # no chart extract in tests/reference: its two image keys
            for key in ("image.repository", "image.crdRepository"):
                refs[f"Release {name}: {key}"] = get(r["values"], key)
            continue
        for key, ref in chart_references(CHARTS[name], r["values"]).items():
            refs[f"Release {name}: {key}"] = ref
    for reg in stack.result.registrations:
        if reg.type.startswith("kubernetes:") and not reg.type.startswith("kubernetes:helm.sh"):
            for path, ref in pod_images(unwrap(reg.inputs)):
                refs[f"{reg.type.split(':')[-1]} {reg.name}: {path}"] = ref
    return refs


def allowed(ref: str, login_server: str) -> bool:
    return ref.startswith((f"{login_server}/", f"{MCR}/"))


def test_every_image_comes_through_the_registry_or_mcr(stack):
    refs = all_references(stack)
    # what the stack runs, whatever its options: the Prometheus stack, the collector, Jaeger,
    # the broker, the PostgreSQL bootstrap (and the rollouts controller, cert-manager, PerfTest
    # where enabled)
    for must in (
        "Release kube-prometheus-stack: prometheus.prometheusSpec.image",
        "Release kube-prometheus-stack: grafana.image",
        "Release kube-prometheus-stack: kube-state-metrics.image",
        "Release otel-collector: image.repository",
        "Release jaeger: jaeger.image",
        "RabbitmqCluster cluster: .spec.image",
        "Job bootstrap-job: .spec.template.spec.containers[0].image",
    ):
        assert must in refs, must
    login_server = login(stack)
    assert [f"{k} = {v}" for k, v in refs.items() if not allowed(v, login_server)] == []
    # the broker image and PerfTest keep their pinned tags
    assert refs["RabbitmqCluster cluster: .spec.image"] == cached_image(stack.settings.broker.image, login_server)
    if stack.settings.broker.load_test.enabled:
        jobs = [v for k, v in refs.items() if k.startswith("Job load-test-job")]
        assert jobs and set(jobs) == {cached_image(stack.settings.broker.load_test.image, login_server)}


def test_every_upstream_used_has_a_cache_rule(stack):
    rules = {
        r["targetRepository"]: r["sourceRepository"]
        for r in (stack.inputs("containerregistry:CacheRule", c.name) for c in stack.of_type("CacheRule"))
    }
    login_server = login(stack)
    refs = all_references(stack).values()
    used = {ref.split("/")[1] for ref in refs if ref.startswith(f"{login_server}/")}
    assert {"docker", "quay", "ghcr", "k8s"} <= used  # the Prometheus stack alone pulls from all four
    upstream = {prefix: host for host, prefix in CACHE_PREFIXES.items()}
    for prefix in used:
        assert rules.get(f"{prefix}/*") == f"{upstream[prefix]}/*", f"{prefix}: no cache rule"
    # the rest is pulled directly from mcr.microsoft.com
    assert {ref.split("/")[0] for ref in refs if not ref.startswith(f"{login_server}/")} <= {MCR}


def test_the_checks_catch_an_upstream_reference(planned):
    prod = planned["prod"]
    login_server = login(prod)
    assert not allowed("quay.io/prometheus/prometheus:v3", login_server)
    assert not allowed(f"{login_server}.evil.example/x:1", login_server)
    values = H.all_values(prod.settings)[H.KUBE_PROMETHEUS_STACK]  # no registry: the chart's defaults
    refs = chart_references(H.KUBE_PROMETHEUS_STACK, values)
    assert refs["grafana.image"] == "<unset: grafana.image.registry>"


@pytest.mark.parametrize("chart", list(CHARTS.values()), ids=lambda c: c.release)
def test_the_walk_finds_each_charts_image_keys(chart):
    keys = image_registry_keys(chart)
    if chart.chart in REPOSITORY_ONLY or chart.chart == "cert-manager":
        assert keys == []
    else:
        assert keys, chart.chart  # the walk finds the chart's image keys


def test_recorded_values_only_use_chart_keys(stack):
    for name, r in releases(stack).items():
        if name in CHARTS:
            assert unknown_keys(CHARTS[name], r["values"]) == [], name


def test_pull_keeps_tags_and_mcr():
    assert pull("pivotalrabbitmq/perf-test:2.25.0", "acr.azurecr.io") == (
        "acr.azurecr.io/docker/pivotalrabbitmq/perf-test:2.25.0"
    )
    assert pull("mcr.microsoft.com/azure-cli:2.67.0", "acr.azurecr.io") == "mcr.microsoft.com/azure-cli:2.67.0"
    assert pull("postgres:16.6-bookworm", None) == "postgres:16.6-bookworm"


def test_cluster_operator_deployment_is_rewritten():
    """The release manifest's Deployment (rabbitmq/cluster-operator, cluster-operator.yml)."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "rabbitmq-cluster-operator", "namespace": "rabbitmq-system"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "operator",
                            "image": "rabbitmqoperator/cluster-operator:2.22.3",
                            "env": [
                                {"name": "OPERATOR_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "x"}}},
                                {"name": "DEFAULT_RABBITMQ_IMAGE", "value": "rabbitmq:4.1.4-management"},
                                {"name": "DEFAULT_USER_UPDATER_IMAGE", "value": "rabbitmqoperator/u:1.0.8"},
                                {"name": "DEFAULT_IMAGE_PULL_SECRETS", "value": ""},
                            ],
                        }
                    ]
                }
            }
        },
    }
    out = B.operator_workload(deployment, "acr.azurecr.io")
    container = out["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "acr.azurecr.io/docker/rabbitmqoperator/cluster-operator:2.22.3"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DEFAULT_RABBITMQ_IMAGE"] == "acr.azurecr.io/docker/library/rabbitmq:4.1.4-management"
    assert env["DEFAULT_USER_UPDATER_IMAGE"] == "acr.azurecr.io/docker/rabbitmqoperator/u:1.0.8"
    assert env["DEFAULT_IMAGE_PULL_SECRETS"] == "" and env["OPERATOR_NAMESPACE"] is None
    # the input is left alone; other kinds pass through
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].startswith("rabbitmqoperator/")
    crd = {"kind": "CustomResourceDefinition", "spec": {"image": "x"}}
    assert B.operator_workload(crd, "acr.azurecr.io") is crd


def test_workloads_wait_for_the_cache_rules_and_acr_pull(stack):
    """The first pull goes through a cache rule with the nodes' AcrPull: both exist first."""
    needed = {r.urn for r in stack.of_type("containerregistry:CacheRule")}
    needed |= {r.urn for r in stack.of_type("authorization:RoleAssignment") if r.name == "kubelet-acr-pull"}
    assert len(needed) == len(stack.settings.registry.cache_upstreams) + 1
    pulling = [*stack.of_type("helm.sh/v3:Release"), stack.one("rabbitmq.com/v1beta1:RabbitmqCluster")]
    pulling += [r for r in stack.of_type("batch/v1:Job") if r.name == "bootstrap-job"]
    for r in pulling:
        if r.name != E.ALB_CONTROLLER.release:
            assert needed <= set(r.dependencies), r.name
