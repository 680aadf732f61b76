"""Broker as recorded for both stacks, validated against the Kubernetes and CRD schemas,
and the topology's config rules."""

from __future__ import annotations

import copy
import json

import k8s_schemas
import pytest
from conftest import unwrap
from pulumi.runtime import rpc
from test_settings import errors, mutate

from components.render import broker as render


def manifests(stack) -> dict[tuple[str, str], dict]:
    """The broker's objects (the services' landing zones have policies of the same names)."""
    return {
        (m["kind"], m["metadata"]["name"]): m
        for m in k8s_schemas.recorded_manifests(stack)
        if m["metadata"].get("namespace") in (None, stack.settings.broker.namespace)
        and m["metadata"]["name"] not in stack.settings.services
    }


# ------------------------------------------------------------------ schemas
def test_every_kubernetes_object_validates_against_its_schema(stack):
    found = manifests(stack)
    assert {
        "RabbitmqCluster",
        "ServiceMonitor",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "StorageClass",
        "Namespace",
        "Secret",
    } <= {k for k, _ in found}
    for (kind, name), manifest in found.items():
        assert k8s_schemas.errors(manifest, stack.settings.aks.kubernetes_version) == [], f"{kind}/{name}"


@pytest.mark.parametrize(
    "kind,name,path,value",
    [
        ("RabbitmqCluster", "rabbitmq", ("spec", "persistence", "storageClass"), "typo"),
        ("RabbitmqCluster", "rabbitmq", ("spec", "replicas"), "three"),
        ("ServiceMonitor", "rabbitmq", ("spec", "endpoints", 0, "scheme"), "ftp"),
        ("NetworkPolicy", "default-deny-ingress", ("spec", "podSelectr"), {}),
        ("PodDisruptionBudget", "rabbitmq", ("spec", "maxUnavailabe"), 1),
        ("StorageClass", "rabbitmq-premium-zrs", ("reclaimPolicy",), 7),
    ],
)
def test_schema_validation_catches_mistakes(planned, kind, name, path, value):
    stack = planned["prod"]
    manifest = copy.deepcopy(manifests(stack)[(kind, name)])
    node = manifest
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    assert k8s_schemas.errors(manifest, stack.settings.aks.kubernetes_version) != []


# ------------------------------------------------------------------ cluster
def cluster(stack) -> dict:
    return manifests(stack)[("RabbitmqCluster", stack.settings.broker.cluster_name)]


def test_replicas_per_environment_spread_across_zones(planned):
    assert cluster(planned["dev"])["spec"]["replicas"] == 1
    prod = cluster(planned["prod"])["spec"]
    assert prod["replicas"] == 3
    [spread] = prod["override"]["statefulSet"]["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["whenUnsatisfiable"] == "DoNotSchedule" and spread["maxSkew"] == 1
    anti = prod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "kubernetes.io/hostname"


def test_persistent_volumes_on_zone_redundant_retain_storage(stack):
    spec = cluster(stack)["spec"]
    b = stack.settings.broker
    assert spec["persistence"] == {"storageClassName": b.storage_class, "storage": b.storage_size}
    sc = manifests(stack)[("StorageClass", b.storage_class)]
    assert sc["parameters"]["skuName"] == "Premium_ZRS"
    assert sc["reclaimPolicy"] == "Retain"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc["allowVolumeExpansion"] is True


def test_resources_requests_and_memory_limit(stack):
    res = cluster(stack)["spec"]["resources"]
    b = stack.settings.broker.resources
    assert res["requests"] == {"cpu": b.cpu_request, "memory": b.memory}
    assert res["limits"]["memory"] == b.memory


def test_tls_listener_and_plaintext_only_in_dev(planned):
    for name, disabled in (("dev", False), ("prod", True)):
        tls = cluster(planned[name])["spec"]["tls"]
        assert tls == {"secretName": "rabbitmq-tls", "caSecretName": "rabbitmq-ca", "disableNonTLSListeners": disabled}
    secret = planned["prod"].one("core/v1:Secret", "tls-secret")
    assert secret.inputs["type"] == "kubernetes.io/tls"
    assert rpc.is_rpc_secret(secret.inputs["stringData"])


def test_certificate_names_cover_the_service_and_the_nodes(stack):
    csr = stack.inputs("tls:index/certRequest:CertRequest")
    assert render.service_host(stack.settings) in csr["dnsNames"]
    assert f"*.rabbitmq-nodes.{stack.settings.broker.namespace}.svc" in csr["dnsNames"]
    cert = stack.inputs("tls:index/locallySignedCert:LocallySignedCert")
    assert "server_auth" in cert["allowedUses"]
    assert cert["earlyRenewalHours"] > 0


def test_prometheus_plugin_and_definitions_loaded_at_boot(stack):
    spec = cluster(stack)["spec"]
    assert "rabbitmq_prometheus" in spec["rabbitmq"]["additionalPlugins"]
    assert f"load_definitions = {render.DEFINITIONS_DIR}/definitions.json" in spec["rabbitmq"]["additionalConfig"]
    pod = spec["override"]["statefulSet"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "definitions", "secret": {"secretName": "rabbitmq-definitions"}}]
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == render.DEFINITIONS_DIR
    assert spec["secretBackend"] == {"externalSecret": {"name": "rabbitmq-admin"}}


def test_definitions_secret_carries_hashes_of_the_generated_passwords(stack):
    reg = stack.one("core/v1:Secret", "definitions-secret")
    assert rpc.is_rpc_secret(reg.inputs["stringData"])
    defs = json.loads(stack.inputs("core/v1:Secret", "definitions-secret")["stringData"]["definitions.json"])
    passwords = {r.name.removesuffix("-password"): r for r in stack.of_type("randomPassword:RandomPassword")}
    assert {u["name"] for u in defs["users"]} == set(render.users_and_secrets(stack.settings))
    # Every hash verifies against the (mock) generated password of its Key Vault secret.
    generated = stack.result.generated_secrets
    for user in defs["users"]:
        salt = render.stable_salt(user["name"], 0)
        assert any(render.password_hash(pw, salt) == user["password_hash"] for pw in generated), user["name"]
    assert passwords  # the passwords exist as random resources


def test_broker_cluster_and_namespace_protected_in_prod(planned):
    for name, expected in (("prod", True), ("dev", False)):
        assert planned[name].one("RabbitmqCluster").protect is expected
        namespaces = {r.inputs["metadata"]["name"]: r for r in planned[name].of_type("core/v1:Namespace")}
        assert {"messaging", "monitoring"} <= set(namespaces)
        assert all(namespaces[n].protect is expected for n in ("messaging", "monitoring"))  # they hold the volumes


def test_operator_is_pinned(stack):
    operator = stack.inputs("yaml/v2:ConfigFile", "cluster-operator")
    assert f"/v{stack.settings.broker.operator_version}/cluster-operator.yml" in operator["file"]


# ------------------------------------------------------------------ network
def test_namespace_denies_ingress_by_default(stack):
    policies = {name: m for (kind, name), m in manifests(stack).items() if kind == "NetworkPolicy"}
    deny = policies["default-deny-ingress"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for name, policy in policies.items():
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), f"{name} admits traffic from anywhere"
            assert rule.get("ports"), f"{name} admits every port"


def test_amqp_only_from_event_service_namespaces(planned):
    for name, ports in (("prod", [5671]), ("dev", [5671, 5672])):
        stack = planned[name]
        rule = manifests(stack)[("NetworkPolicy", "allow-amqp-from-event-services")]["spec"]["ingress"][0]
        assert rule["from"] == [
            {
                "namespaceSelector": {
                    "matchLabels": {stack.settings.broker.event_services_label: "true"},
                    # exactly the services' namespaces
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "In",
                            "values": sorted(stack.settings.services),
                        }
                    ],
                }
            }
        ]
        assert [p["port"] for p in rule["ports"]] == ports


def test_metrics_only_from_monitoring(planned):
    rule = manifests(planned["prod"])[("NetworkPolicy", "allow-metrics-from-monitoring")]["spec"]["ingress"][0]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert [p["port"] for p in rule["ports"]] == [render.PROMETHEUS_TLS]


def test_pdb_keeps_a_quorum(stack):
    pdb = manifests(stack)[("PodDisruptionBudget", "rabbitmq")]["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "rabbitmq"}}}


def test_service_monitor_scrapes_per_queue_metrics(planned):
    for name in ("dev", "prod"):
        sm = manifests(planned[name])[("ServiceMonitor", "rabbitmq")]["spec"]
        detailed = [e for e in sm["endpoints"] if e["path"] == "/metrics/detailed"]
        assert detailed and "queue_coarse_metrics" in detailed[0]["params"]["family"]
    prod = manifests(planned["prod"])[("ServiceMonitor", "rabbitmq")]["spec"]["endpoints"]
    assert all(e["scheme"] == "https" and e["tlsConfig"]["ca"]["secret"]["name"] == "rabbitmq-ca" for e in prod)


# ------------------------------------------------------------------ secrets and outputs
def test_connection_strings_only_in_key_vault(stack):
    for svc in stack.settings.services:
        reg = stack.one("keyvault:Secret", f"broker-{svc}-url-secret")
        props = stack.inputs("keyvault:Secret", f"broker-{svc}-url-secret")["properties"]
        assert rpc.is_rpc_secret(reg.inputs["properties"])
        assert props["value"].startswith(f"amqps://svc-{svc}:")
        assert props["attributes"]["expires"] > 0
    outputs = stack.doc["outputs"]
    assert outputs["brokerAmqpsEndpoint"] == render.amqps_endpoint(stack.settings)
    assert outputs["brokerManagementUrl"].startswith("https://")
    assert all(
        uri == "[secret]" or uri.startswith("https://") for uri in outputs["brokerConnectionStringSecretUris"].values()
    )


def test_build_definitions_use_placeholders(stack, tmp_path):
    from dryrun import plan

    plan.write_artefacts(stack.result, tmp_path)
    defs = json.loads((tmp_path / "rabbitmq" / "definitions.json").read_text())
    assert {u["password_hash"] for u in defs["users"]} == {render.PLACEHOLDER_HASH}


# ------------------------------------------------------------------ topology render
def test_consumer_queue_defaults(stack):
    t = stack.settings.broker.topology
    plans = {p.service: p for p in render.queue_plans(t, stack.settings.services)}
    args = plans["candystore"].arguments
    assert args == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "bloodbank.events.dlq",
        "x-dead-letter-routing-key": "dlq.candystore",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-message-ttl": 86_400_000,
        "x-max-length": 10_000,
        "x-delivery-limit": t.defaults.delivery_limit,
    }
    assert "bloodbank" not in plans  # a publisher only: no queue


def test_dead_letter_side(stack):
    defs = render.definitions(stack.settings, render.placeholder_hashes(stack.settings))
    t = stack.settings.broker.topology
    queues = {q["name"]: q for q in defs["queues"]}
    assert queues["dlq.all"]["arguments"]["x-message-ttl"] == t.dead_letter_retention_days * 86_400_000
    assert {"source": t.dead_letter_exchange, "destination": "dlq.all", "routing_key": "#"}.items() <= [
        b for b in defs["bindings"] if b["destination"] == "dlq.all"
    ][0].items()
    for svc, cfg in stack.settings.services.items():
        assert (f"dlq.{svc}" in queues) is cfg.dead_letter_queue


def test_permissions_are_least_privilege(stack):
    perms = {
        p["user"]: p
        for p in render.permissions(stack.settings.broker.topology, stack.settings.services, stack.settings.vhost)
    }
    assert perms["svc-bloodbank"] == {
        "user": "svc-bloodbank",
        "vhost": stack.settings.vhost,
        "configure": "^$",
        "write": r"^(bloodbank\.events\.v1)$",
        "read": r"^(bloodbank\.events\.v1)$",
    }
    assert perms["svc-candystore"]["configure"] == r"^(candystore\.events|dlq\.candystore)$"
    assert ".*" not in json.dumps(list(perms.values()))


# ------------------------------------------------------------------ topology config errors
@pytest.mark.parametrize(
    "change,expected",
    [
        (
            dict(key="services.candystore.bindings", value=["order..created"]),
            "Pulumi.dev.yaml: event-backbone:services.candystore.bindings[0] must be a binding "
            "pattern: dot-separated words of a-z, 0-9, _ or -, each word may be * or # (got 'order..created')",
        ),
        (
            dict(key="services.audit.queue", value="transcription.voice"),
            "Pulumi.dev.yaml: event-backbone:services.audit.queue must not claim queue "
            "'transcription.voice', which service 'transcription' already uses (got 'transcription.voice')",
        ),
        (
            dict(key="broker.topology.defaults.messageTtlMs", value=0),
            "Pulumi.dev.yaml: event-backbone:broker.topology.defaults.messageTtlMs must be between 1000 and "
            "2592000000 (got 0)",
        ),
        (
            dict(key="services.audit.overrides.deadLetterExchange", value="nowhere.dlx"),
            "Pulumi.dev.yaml: event-backbone:services.audit.overrides.deadLetterExchange must name "
            "the declared dead-letter exchange 'bloodbank.events.dlq' (got 'nowhere.dlx')",
        ),
        (
            dict(key="broker.replicas", value=2),
            "Pulumi.dev.yaml: event-backbone:broker.replicas must be odd (quorum queues need a majority) (got 2)",
        ),
        (
            dict(key="services.candystore.queue", value="dlq.mine"),
            "Pulumi.dev.yaml: event-backbone:services.candystore.queue must not use the reserved "
            "dlq.* names or an exchange's name (got 'dlq.mine')",
        ),
    ],
    ids=lambda v: v["key"] if isinstance(v, dict) else None,
)
def test_bad_topology_config(change, expected):
    assert errors("dev", mutate("dev", **change)) == [expected]


def test_prod_broker_rules():
    assert errors("prod", mutate("prod", "broker.plaintextListener", True)) == [
        "Pulumi.prod.yaml: event-backbone:broker.plaintextListener must be false in prod (AMQPS only) (got true)"
    ]
    assert errors("prod", mutate("prod", "broker.replicas", 1)) == [
        "Pulumi.prod.yaml: event-backbone:broker.replicas must be at least 3 in prod (one broker per zone) (got 1)"
    ]


def test_cloudamqp_backend_needs_its_settings():
    assert errors("dev", mutate("dev", "broker.backend", "cloudamqp")) == [
        "Pulumi.dev.yaml: event-backbone:broker.cloudamqp is required when broker.backend is 'cloudamqp'"
    ]


def test_operator_namespace_is_labelled_for_pod_security(stack):
    """The release manifest creates rabbitmq-system; a NamespacePatch applied after it carries
    the Pod Security labels (the manifest's own Namespace object gets them by a transform)."""
    from components.render import broker as B

    manifest = stack.one("yaml/v2:ConfigFile", "cluster-operator")
    patch = stack.one("core/v1:NamespacePatch", "operator-namespace-pod-security")
    assert manifest.urn in patch.dependencies
    meta = unwrap(patch.inputs)["metadata"]
    assert meta["name"] == B.OPERATOR_NAMESPACE == "rabbitmq-system"
    assert meta["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert meta["labels"]["pod-security.kubernetes.io/audit"] == "restricted"
    assert meta["labels"]["pod-security.kubernetes.io/warn"] == "restricted"
