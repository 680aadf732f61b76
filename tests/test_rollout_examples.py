"""The ready-to-copy examples in docs/examples/: valid against the Rollout / PodMonitor CRD schemas
(the pod templates also as the built-in PodTemplateSpec), wired to the stack's analysis templates."""

from __future__ import annotations

import k8s_schemas
import yaml
from conftest import ROOT

from components.render import rollouts as RO

EXAMPLES = ROOT / "docs" / "examples"


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def rollout(name: str) -> dict:
    return next(d for d in docs(name) if d["kind"] == "Rollout")


def as_deployment(r: dict) -> dict:
    """The Rollout's pod template checked as what it is, a Deployment's (strict built-in schema)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": r["metadata"],
        "spec": {
            "replicas": r["spec"]["replicas"],
            "selector": r["spec"]["selector"],
            "template": r["spec"]["template"],
        },
    }


def test_every_example_validates(planned):
    version = planned["prod"].settings.aks.kubernetes_version
    files = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
    assert {"canary-rollout.yaml", "bluegreen-rollout.yaml", "podmonitor.yaml"} <= set(files)
    for name in files:
        for d in docs(name):
            assert k8s_schemas.errors(d, version) == [], f"{name}: {d['kind']}"
            if d["kind"] == "Rollout":
                assert k8s_schemas.builtin_errors(as_deployment(d), version) == [], name
                labels = d["spec"]["template"]["metadata"]["labels"]
                assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_a_broken_rollout_fails_the_schema():
    r = rollout("canary-rollout.yaml")
    r["spec"]["strategy"]["canary"]["steps"][0] = {"setWieght": 10}
    assert k8s_schemas.custom_resource_errors(r)


def test_a_broken_pod_template_fails_the_builtin_schema(planned):
    r = rollout("bluegreen-rollout.yaml")
    r["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    assert k8s_schemas.builtin_errors(as_deployment(r), planned["prod"].settings.aks.kubernetes_version)


def analysis_refs(analysis: dict, s) -> None:
    names = {t["metadata"]["name"] for t in RO.cluster_analysis_templates(s)}
    assert {t["templateName"] for t in analysis["templates"]} == names
    assert all(t["clusterScope"] is True for t in analysis["templates"])
    args = {a["name"]: a for a in analysis["args"]}
    assert set(args) == {RO.ARG_SERVICE, RO.ARG_REVISION}
    assert args[RO.ARG_REVISION]["valueFrom"] == {"podTemplateHashValue": "Latest"}  # the new version's pods


def test_canary_goes_10_50_100_with_pauses_and_analysis(planned):
    s = planned["prod"].settings
    steps = rollout("canary-rollout.yaml")["spec"]["strategy"]["canary"]["steps"]
    kinds = [next(iter(step)) for step in steps]
    assert [step["setWeight"] for step in steps if "setWeight" in step] == [10, 50, 100]
    # between two weights: a pause, then the analysis
    assert kinds == ["setWeight", "pause", "analysis", "setWeight", "pause", "analysis", "setWeight"]
    for step in steps:
        if "analysis" in step:
            analysis_refs(step["analysis"], s)


def test_blue_green_has_a_preview_service_and_promotes_after_analysis(planned):
    s = planned["prod"].settings
    r = rollout("bluegreen-rollout.yaml")
    bg = r["spec"]["strategy"]["blueGreen"]
    services = {d["metadata"]["name"] for d in docs("bluegreen-rollout.yaml") if d["kind"] == "Service"}
    assert {bg["activeService"], bg["previewService"]} == services and bg["activeService"] != bg["previewService"]
    assert bg["autoPromotionEnabled"] is True and "autoPromotionSeconds" not in bg  # promotion waits for the analysis
    analysis_refs(bg["prePromotionAnalysis"], s)


def test_podmonitor_copies_the_revision_label_the_analysis_reads(planned):
    label = planned["prod"].settings.rollouts.analysis.revision_label
    (pm,) = docs("podmonitor.yaml")
    relabel = pm["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert {"sourceLabels": ["__meta_kubernetes_pod_label_rollouts_pod_template_hash"], "targetLabel": label} in relabel
