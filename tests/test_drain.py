"""A drain of any single node (an upgrade, a pool swap) leaves every platform component that must
stay up serving. Reasoned over the rendered values as planned: enough replicas, a disruption budget
that lets the drain proceed yet keeps one ready, and a hard spread so no node holds two replicas.

The eviction API evicts a pod only while the PDB allows it; AKS drains up to maxSurge nodes at
once, so the PDB (not the one-node assumption) is what keeps a replica up when several drain."""

from __future__ import annotations

from dataclasses import dataclass

import k8s_schemas
import pytest
from test_helm_values import releases

HOSTNAME, ZONE = "kubernetes.io/hostname", "topology.kubernetes.io/zone"


@dataclass
class Component:
    name: str
    replicas: int
    min_available: int | None  # PDB minAvailable, or
    max_unavailable: int | None  # PDB maxUnavailable (None, None: no PDB)
    one_per_node: bool  # a hard rule (anti-affinity / DoNotSchedule spread) keeps replicas apart


def allowed_disruptions(c: Component) -> int:
    if c.min_available is not None:
        return c.replicas - c.min_available
    if c.max_unavailable is not None:
        return c.max_unavailable
    return c.replicas  # no PDB: everything may go at once


def serving_through_drain(c: Component) -> list[str]:
    """Why a drain could stop `c` (empty: it keeps serving)."""
    why = []
    if c.replicas < 2:
        why.append("one replica: the drain stops it")
    if c.min_available is None and c.max_unavailable is None:
        why.append("no PodDisruptionBudget: parallel drains may evict every replica")
    elif allowed_disruptions(c) >= c.replicas:
        why.append("the PDB allows every replica to go")
    elif allowed_disruptions(c) < 1:
        why.append("the PDB allows no eviction: the drain blocks until its timeout")
    if not c.one_per_node:
        why.append("no hard spread: one node may hold every replica")
    return why


def _hard_operator_spread(spec: dict) -> bool:
    return spec.get("podAntiAffinity") == "hard" and spec.get("podAntiAffinityTopologyKey") in (HOSTNAME, ZONE)


def components(planned) -> list[Component]:
    kps = releases(planned)["kube-prometheus-stack"]["values"]
    out = []
    for name, spec_key in (("prometheus", "prometheusSpec"), ("alertmanager", "alertmanagerSpec")):
        pdb = kps[name].get("podDisruptionBudget", {})
        spec = kps[name][spec_key]
        out.append(
            Component(
                name,
                spec["replicas"],
                pdb.get("minAvailable") if pdb.get("enabled") else None,
                None,
                _hard_operator_spread(spec),
            )
        )
    ctl = releases(planned)["argo-rollouts"]["values"]["controller"]
    spread = ctl.get("topologySpreadConstraints", [])
    out.append(
        Component(
            "argo-rollouts",
            ctl["replicas"],
            ctl["pdb"].get("minAvailable") if ctl["pdb"]["enabled"] else None,
            None,
            any(
                c["topologyKey"] == HOSTNAME and c["whenUnsatisfiable"] == "DoNotSchedule" and c["maxSkew"] == 1
                for c in spread
            ),
        )
    )
    for tier, release in (("otel-gateway", "otel-collector"), ("otel-sampler", "otel-sampler")):
        values = releases(planned)[release]["values"]
        pdb = values.get("podDisruptionBudget", {})
        out.append(
            Component(
                tier,
                values["replicaCount"],
                pdb.get("minAvailable") if pdb.get("enabled") else None,
                pdb.get("maxUnavailable") if pdb.get("enabled") else None,
                any(
                    c["topologyKey"] == HOSTNAME
                    and c["whenUnsatisfiable"] == "DoNotSchedule"
                    and c["maxSkew"] == 1
                    and c["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == release
                    for c in values.get("topologySpreadConstraints", [])
                ),
            )
        )
    manifests = k8s_schemas.recorded_manifests(planned)
    cluster = next((m for m in manifests if m["kind"] == "RabbitmqCluster"), None)
    if cluster is not None:
        pdb = next(
            m
            for m in manifests
            if m["kind"] == "PodDisruptionBudget" and m["metadata"]["name"] == cluster["metadata"]["name"]
        )
        rules = cluster["spec"]["affinity"]["podAntiAffinity"].get("requiredDuringSchedulingIgnoredDuringExecution", [])
        out.append(
            Component(
                "rabbitmq",
                cluster["spec"]["replicas"],
                pdb["spec"].get("minAvailable"),
                pdb["spec"].get("maxUnavailable"),
                any(r["topologyKey"] in (HOSTNAME, ZONE) for r in rules),
            )
        )
    return out


def test_prod_platform_keeps_serving_through_any_single_node_drain(planned):
    found = components(planned["prod"])
    assert {c.name for c in found} == {
        "prometheus",
        "alertmanager",
        "argo-rollouts",
        "otel-gateway",
        "otel-sampler",
        "rabbitmq",
    }
    assert {c.name: serving_through_drain(c) for c in found} == {c.name: [] for c in found}


def test_prometheus_and_alertmanager_are_spread_over_zones_in_prod(planned):
    kps = releases(planned["prod"])["kube-prometheus-stack"]["values"]
    for name, spec_key in (("prometheus", "prometheusSpec"), ("alertmanager", "alertmanagerSpec")):
        assert kps[name][spec_key]["podAntiAffinityTopologyKey"] == ZONE  # a zone outage leaves one too


@pytest.mark.parametrize(
    "broken,reason",
    [
        (dict(replicas=1, min_available=None), "one replica: the drain stops it"),
        (dict(min_available=None), "no PodDisruptionBudget: parallel drains may evict every replica"),
        (dict(min_available=2), "the PDB allows no eviction: the drain blocks until its timeout"),
        (dict(one_per_node=False), "no hard spread: one node may hold every replica"),
    ],
)
def test_the_reasoning_catches_what_would_stop_a_component(broken, reason):
    good = Component("x", 2, 1, None, True)
    assert serving_through_drain(good) == []
    assert reason in serving_through_drain(Component(**{**good.__dict__, **broken}))


def test_no_budget_blocks_a_drain(stack):
    """Single-replica components (dev; Grafana, Jaeger) get no PDB: a PDB of 1 of 1
    would block every node drain until AKS's drain timeout fails the upgrade."""
    for c in components(stack):
        if c.min_available is not None or c.max_unavailable is not None:
            assert allowed_disruptions(c) >= 1, c
    kps = releases(stack)["kube-prometheus-stack"]["values"]
    assert "podDisruptionBudget" not in kps["grafana"]


def test_dev_collector_is_one_replica_per_tier_without_a_budget(planned):
    found = {c.name: c for c in components(planned["dev"])}
    for tier in ("otel-gateway", "otel-sampler"):
        assert (found[tier].replicas, found[tier].min_available, found[tier].max_unavailable) == (1, None, None)


def test_collector_tiers_spread_over_zones_in_prod(planned):
    """Two replicas of a tier never share a node, nor a zone when the cluster has several."""
    for release in ("otel-collector", "otel-sampler"):
        spread = releases(planned["prod"])[release]["values"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread if c["whenUnsatisfiable"] == "DoNotSchedule"} == {HOSTNAME, ZONE}
        assert all(c.get("matchLabelKeys") == ["pod-template-hash"] for c in spread)


def test_prod_needs_two_prometheus_replicas():
    from test_settings import errors, mutate

    text = mutate("prod", "observability.prometheus.replicas", 1)
    assert errors("prod", text) == [
        "Pulumi.prod.yaml: event-backbone:observability.prometheus.replicas must be at least 2 in prod"
        " (alerts keep being evaluated while a node drains) (got 1)"
    ]


@pytest.mark.parametrize("key", ["gatewayReplicas", "samplerReplicas"])
def test_prod_needs_two_replicas_of_each_collector_tier(key):
    from test_settings import errors, mutate

    text = mutate("prod", f"observability.collector.{key}", 1)
    assert errors("prod", text) == [
        f"Pulumi.prod.yaml: event-backbone:observability.collector.{key} must be at least 2 in prod"
        " (tracing keeps serving while a node drains) (got 1)"
    ]
