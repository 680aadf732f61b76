"""Service landing zones: one `services.<name>` entry gives a service its namespace, identity,
secrets, network isolation, quota, scrape config, autoscaling and database (issue 9)."""

from __future__ import annotations

import k8s_schemas
import pytest
import yaml
from conftest import unwrap
from test_settings import errors, mutate

from components import rbac
from components import settings as S
from components.render import landing
from dryrun.mocks import PlatformMocks


# ------------------------------------------------------------------ the services map
def test_everything_derives_from_the_services_map(stack):
    s = stack.settings
    assert s.databases == [svc for svc, cfg in s.services.items() if cfg.database]
    assert set(s.databases) == {"bloodbank", "candystore"}
    assert {f"broker-{svc}" for svc in s.services} <= set(s.secret_names())
    created = {r.inputs.get("databaseName") for r in stack.of_type("dbforpostgresql:Database")}
    assert created == set(s.databases)


@pytest.mark.parametrize(
    "change,expected",
    [
        (
            dict(key="services.candystore.scaling.minReplicas", value=9),
            "Pulumi.dev.yaml: event-backbone:services.candystore.scaling.minReplicas must not exceed"
            " services.candystore.scaling.maxReplicas (4) (got 9)",
        ),
        (
            dict(key="services.candystore.scaling.maxReplicas", value=9),
            "Pulumi.dev.yaml: event-backbone:services.candystore.scaling.maxReplicas must not exceed"
            " services.candystore.resources.pods (8), the namespace's pod quota (got 9)",
        ),
        (
            dict(key="services.bloodbank.scaling", value={"deployment": "bloodbank", "maxReplicas": 2}),
            "Pulumi.dev.yaml: event-backbone:services.bloodbank.scaling needs a queue to scale on:"
            " list the service's bindings",
        ),
        (
            dict(key="services.bloodbank.resources.defaultMemoryLimit", value="8Gi"),
            "Pulumi.dev.yaml: event-backbone:services.bloodbank.resources.defaultMemoryLimit must not exceed 4Gi"
            " (got '8Gi')",
        ),
        (
            dict(key="services.audit.database", value="maybe"),
            "Pulumi.dev.yaml: event-backbone:services.audit.database must be true or false (got 'maybe')",
        ),
        (
            dict(key="services.ca-cert", value={"bindings": []}),
            "Pulumi.dev.yaml: event-backbone:services.ca-cert is a reserved name (a platform namespace or a"
            " platform secret's name); rename the service",
        ),
        (
            dict(key="services.monitoring", value={"bindings": []}),
            "Pulumi.dev.yaml: event-backbone:services.monitoring is a reserved name (a platform namespace or a"
            " platform secret's name); rename the service",
        ),
    ],
    ids=lambda v: v["key"] if isinstance(v, dict) else None,
)
def test_bad_service_entries_give_one_line_each(change, expected):
    assert errors("dev", mutate("dev", **change)) == [expected]


def test_no_services_is_an_error():
    assert errors("dev", mutate("dev", "services", {})) == [
        "Pulumi.dev.yaml: event-backbone:services must list at least one service (got {})"
    ]


def test_the_old_places_are_gone():
    # broker.topology.services and postgres.databases moved into services.<name>
    lines = errors("dev", mutate("dev", "broker.topology.services", {"x": {}}))
    assert len(lines) == 1 and lines[0].startswith("Pulumi.dev.yaml: event-backbone:broker.topology.services ")
    lines = errors("dev", mutate("dev", "postgres.databases", ["bloodbank"]))
    assert len(lines) == 1 and lines[0].startswith("Pulumi.dev.yaml: event-backbone:postgres.databases ")
    assert "services" in S.StackSettings.model_fields


# ------------------------------------------------------------------ per-service landing zone
def landing_manifests(stack, svc: str) -> list[dict]:
    return [
        m
        for m in k8s_schemas.recorded_manifests(stack)
        if m["metadata"].get("namespace") == svc or (m["kind"] == "Namespace" and m["metadata"]["name"] == svc)
    ]


def by_kind(stack, svc: str) -> dict[tuple[str, str], dict]:
    return {(m["kind"], m["metadata"]["name"]): m for m in landing_manifests(stack, svc)}


def test_every_landing_object_passes_its_schema(stack):
    version = stack.settings.aks.kubernetes_version
    kinds = set()
    for svc in stack.settings.services:
        for m in landing_manifests(stack, svc):
            kinds.add(m["kind"])
            assert k8s_schemas.errors(m, version) == [], f"{svc}: {m['kind']}/{m['metadata']['name']}"
    assert {"Namespace", "ServiceAccount", "SecretProviderClass", "NetworkPolicy", "ResourceQuota"} <= kinds
    assert {"LimitRange", "PodMonitor"} <= kinds
    for kind in ("SecretProviderClass", "PodMonitor"):
        assert any(
            k8s_schemas.has_crd(m["apiVersion"], m["kind"])
            for m in k8s_schemas.recorded_manifests(stack)
            if m["kind"] == kind
        )


def test_a_broken_landing_object_is_caught_by_the_schema(stack):
    spc = by_kind(stack, "candystore")[("SecretProviderClass", "candystore-secrets")]
    broken = {**spc, "spec": {**spc["spec"], "secretObjects": [{"secretName": "x", "data": [{"key": 1}]}]}}
    assert k8s_schemas.errors(broken, stack.settings.aks.kubernetes_version) != []


def test_namespace_is_restricted_and_labelled_for_the_broker(stack):
    for svc in stack.settings.services:
        labels = by_kind(stack, svc)[("Namespace", svc)]["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        assert labels[stack.settings.broker.event_services_label] == "true"


def test_own_identity_federated_for_exactly_its_service_account(stack):
    creds = [unwrap(r.inputs) for r in stack.of_type("managedidentity:FederatedIdentityCredential")]
    for svc in stack.settings.services:
        mine = [c for c in creds if c["resourceName"] == stack.settings.name("id", svc)]
        assert [c["subject"] for c in mine] == [f"system:serviceaccount:{svc}:{svc}"]
        assert mine[0]["audiences"] == ["api://AzureADTokenExchange"]
        sa = by_kind(stack, svc)[("ServiceAccount", svc)]
        # the mocks give an identity the same GUID as client and principal id
        assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"] == landing_principal(stack, svc)


def test_key_vault_grants_are_each_of_its_own_secrets(stack):
    grants = [unwrap(r.inputs) for r in stack.of_type("authorization:RoleAssignment")]
    for svc in stack.settings.services:
        principal = landing_principal(stack, svc)
        mine = [g for g in grants if g["principalId"] == principal]
        scopes = sorted(g["scope"].rsplit("/secrets/", 1)[1] for g in mine)
        assert scopes == sorted(landing.secret_names(stack.settings, svc).values()), svc
        for g in mine:
            assert g["roleDefinitionId"].endswith(rbac.KEY_VAULT_SECRETS_USER)
            assert "/providers/microsoft.keyvault/vaults/" in g["scope"].lower() and "/secrets/" in g["scope"]


def landing_principal(stack, svc: str) -> str:
    return PlatformMocks._azure_outputs("UserAssignedIdentity", stack.settings.name("id", svc), {})["principalId"]


def test_secret_provider_class_mounts_its_own_secrets_through_its_own_identity(stack):
    for svc in stack.settings.services:
        spc = by_kind(stack, svc)[("SecretProviderClass", f"{svc}-secrets")]["spec"]
        assert spc["provider"] == "azure"
        assert spc["parameters"]["clientID"] == landing_principal(stack, svc)  # mock: client id = principal id
        objects = yaml.safe_load(spc["parameters"]["objects"])["array"]
        names = {yaml.safe_load(o)["objectAlias"]: yaml.safe_load(o)["objectName"] for o in objects}
        assert names == landing.secret_names(stack.settings, svc)
        assert set(names) == {"url", "password", "ca.crt"}
        synced = spc["secretObjects"][0]
        assert synced["secretName"] == f"{svc}-broker"
        assert {d["key"] for d in synced["data"]} == {"url", "password", "ca.crt"}


def test_quota_limits_and_pod_monitor_follow_the_settings(stack):
    for svc, cfg in stack.settings.services.items():
        objs = by_kind(stack, svc)
        hard = objs[("ResourceQuota", "quota")]["spec"]["hard"]
        assert hard["requests.cpu"] == cfg.resources.requests_cpu and hard["pods"] == str(cfg.resources.pods)
        assert hard["services.loadbalancers"] == "0"
        lr = objs[("LimitRange", "defaults")]["spec"]["limits"][0]
        assert lr["default"]["memory"] == cfg.resources.default_memory_limit
        pm = objs[("PodMonitor", svc)]["spec"]
        assert pm["podMetricsEndpoints"][0]["port"] == "metrics" and pm["podMetricsEndpoints"][0]["path"] == "/metrics"
        assert pm["namespaceSelector"] == {"matchNames": [svc]}


def test_network_policies_default_deny_and_database_only_when_asked(stack):
    s = stack.settings
    for svc, cfg in s.services.items():
        pols = {name: m["spec"] for (kind, name), m in by_kind(stack, svc).items() if kind == "NetworkPolicy"}
        assert pols["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        assert ("allow-postgres" in pols) is cfg.database
        if cfg.database:
            rule = pols["allow-postgres"]["egress"][0]
            assert rule["to"] == [{"ipBlock": {"cidr": s.network.postgres_subnet}}]
            assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
        entra = pols["allow-entra-id"]["egress"][0]
        assert entra["ports"] == [{"protocol": "TCP", "port": 443}]
        assert "10.0.0.0/8" in entra["to"][0]["ipBlock"]["except"]
        ingress = [r for p in pols.values() for r in p.get("ingress", [])]
        assert ingress == [
            {
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                "ports": [{"protocol": "TCP", "port": "metrics"}],
            }
        ]


def test_broker_admits_exactly_the_service_namespaces(stack):
    pol = next(
        m for m in k8s_schemas.recorded_manifests(stack) if m["metadata"]["name"] == "allow-amqp-from-event-services"
    )
    peers = pol["spec"]["ingress"][0]["from"]
    names = [e for p in peers for e in p["namespaceSelector"].get("matchExpressions", [])]
    assert names == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(stack.settings.services)}
    ]


# ------------------------------------------------------------------ autoscaling on queue depth
def test_keda_add_on_is_on(stack):
    profile = stack.inputs("containerservice:ManagedCluster")["workloadAutoScalerProfile"]
    assert profile == {"keda": {"enabled": True}}


def test_scaled_services_get_a_scaled_object_on_their_own_queue(stack):
    s = stack.settings
    keda_id = PlatformMocks._azure_outputs("UserAssignedIdentity", s.name("id", "keda"), {})["clientId"]
    for svc, cfg in s.services.items():
        objs = by_kind(stack, svc)
        if cfg.scaling is None:
            assert not any(kind in ("ScaledObject", "TriggerAuthentication") for kind, _ in objs)
            continue
        so = objs[("ScaledObject", svc)]["spec"]
        assert so["scaleTargetRef"]["name"] == cfg.scaling.deployment
        assert (so["minReplicaCount"], so["maxReplicaCount"]) == (cfg.scaling.min_replicas, cfg.scaling.max_replicas)
        (trigger,) = so["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"] == {
            "protocol": "amqp",
            "mode": "QueueLength",
            "value": str(cfg.scaling.target_queue_length),
            "queueName": cfg.queue or f"{svc}.events",
        }
        auth = objs[("TriggerAuthentication", trigger["authenticationRef"]["name"])]["spec"]
        kv = auth["azureKeyVault"]
        assert kv["podIdentity"] == {"provider": "azure-workload", "identityId": keda_id}
        assert {x["parameter"]: x["name"] for x in kv["secrets"]} == {
            "host": "broker-keda-monitor-url",
            "ca": "broker-ca-cert",
        }
        tls = auth["configMapTargetRef"][0]
        assert objs[("ConfigMap", tls["name"])]["data"][tls["key"]] == "enable"
    assert s.scaled_services


def test_keda_identity_reads_only_the_monitor_url_and_the_ca(stack):
    s = stack.settings
    principal = PlatformMocks._azure_outputs("UserAssignedIdentity", s.name("id", "keda"), {})["principalId"]
    grants = [unwrap(r.inputs) for r in stack.of_type("authorization:RoleAssignment")]
    mine = sorted(g["scope"].rsplit("/secrets/", 1)[1] for g in grants if g["principalId"] == principal)
    assert mine == ["broker-ca-cert", "broker-keda-monitor-url"]
    creds = [unwrap(r.inputs) for r in stack.of_type("managedidentity:FederatedIdentityCredential")]
    assert [c["subject"] for c in creds if c["resourceName"] == s.name("id", "keda")] == [
        "system:serviceaccount:kube-system:keda-operator"
    ]
    url = stack.inputs("keyvault:Secret", "broker-keda-monitor-url-secret")["properties"]["value"]
    assert url.startswith("amqps://keda-monitor:") and url.endswith(f":5671/{s.vhost}")


def test_broker_admits_the_keda_operator_on_amqps_only(stack):
    pol = next(
        m
        for m in k8s_schemas.recorded_manifests(stack)
        if m["metadata"]["name"] == "allow-amqps-from-keda" and m["metadata"]["namespace"] == "messaging"
    )
    (rule,) = pol["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5671}]
    assert rule["from"][0]["podSelector"] == {"matchLabels": {"app": "keda-operator"}}
