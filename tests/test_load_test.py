"""The opt-in broker load test (broker.loadTest): off in both real stacks; switched on in a copy
of each, the PerfTest Job, its namespace, Secret and NetworkPolicies validate against the
Kubernetes schemas, follow the restricted Pod Security profile, take their parameters from the
settings and carry no password in plaintext; the perf-test user reaches only its own names.
(The user's permissions on a real RabbitMQ: tests/test_load_test_rabbitmq.py.)"""

from __future__ import annotations

import json
import re

import k8s_schemas
import pytest
import yaml
from conftest import Planned
from pulumi.runtime import rpc
from test_settings import errors, mutate

from components import settings as S
from components.render import broker as broker_render
from components.render import load_test as render
from dryrun.runner import run_stack

PARAMS = {
    "enabled": True,
    "producers": 40,
    "consumers": 80,
    "rate": 25,
    "durationSeconds": 900,
    "messageSize": 2048,
    "queues": 4,
    "confirm": 64,
}


def enabled_text(stack: str) -> str:
    return mutate(stack, "broker.loadTest", PARAMS)


@pytest.fixture(scope="module")
def on(tmp_path_factory) -> dict[str, Planned]:
    """Both stacks with the load test switched on (and non-default parameters)."""
    out = tmp_path_factory.mktemp("load-test")
    return {stack: Planned(run_stack(stack, stack_text=enabled_text(stack)), out / stack) for stack in ("dev", "prod")}


@pytest.fixture(params=["dev", "prod"])
def planned_on(request, on) -> Planned:
    return on[request.param]


def manifests(stack: Planned) -> dict[tuple[str, str, str], dict]:
    return {
        (m["kind"], m["metadata"].get("namespace", ""), m["metadata"]["name"]): m
        for m in k8s_schemas.recorded_manifests(stack)
    }


def job(stack: Planned) -> dict:
    return manifests(stack)[("Job", stack.settings.broker.load_test.namespace, render.NAME)]


def definitions(stack: Planned) -> dict:
    return json.loads(stack.inputs("core/v1:Secret", "definitions-secret")["stringData"]["definitions.json"])


# ------------------------------------------------------------------ off by default
def test_off_in_both_real_stacks(stack):
    s = stack.settings
    assert s.broker.load_test.enabled is False
    assert not [r for r in stack.result.registrations if r.name.startswith("load-test")]
    assert all(
        m["kind"] != "Job" or m["metadata"]["name"] != render.NAME for m in k8s_schemas.recorded_manifests(stack)
    )
    assert S.LOAD_TEST_USER not in {u["name"] for u in definitions(stack)["users"]}
    # The password exists either way: Key Vault's purge protection would block re-creating it.
    assert "broker-perf-test" in s.secret_names()
    stack.one("keyvault:Secret", "broker-perf-test-secret")


# ------------------------------------------------------------------ schemas and shape
def test_every_object_validates_against_its_schema(planned_on):
    found = manifests(planned_on)
    lt_ns = planned_on.settings.broker.load_test.namespace
    ours = {k: m for k, m in found.items() if k[1] == lt_ns or k[2] in (lt_ns, "allow-amqps-from-load-test")}
    assert {k[0] for k in ours} == {"Namespace", "Secret", "NetworkPolicy", "Job"}
    for (kind, ns, name), manifest in found.items():
        assert k8s_schemas.errors(manifest, planned_on.settings.aks.kubernetes_version) == [], f"{kind} {ns}/{name}"


def test_schema_validation_catches_a_mistake_in_the_job(planned_on):
    manifest = job(planned_on)
    manifest["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    assert k8s_schemas.errors(manifest, planned_on.settings.aks.kubernetes_version) != []


def arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_perf_test_parameters_come_from_the_settings(planned_on):
    lt = planned_on.settings.broker.load_test
    assert (lt.producers, lt.consumers, lt.queues) == (PARAMS["producers"], PARAMS["consumers"], PARAMS["queues"])
    container = job(planned_on)["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    # the pinned PerfTest image, pulled through the stack's registry (tests/test_images.py)
    registry = planned_on.inputs("containerregistry:Registry")["registryName"] + ".azurecr.io"
    assert lt.image == S.PERF_TEST_IMAGE
    assert container["image"] == f"{registry}/docker/{lt.image}"
    assert arg(args, "--producers") == str(lt.producers)
    assert arg(args, "--consumers") == str(lt.consumers)
    assert arg(args, "--rate") == str(lt.rate)
    assert arg(args, "--time") == str(lt.duration_seconds)
    assert arg(args, "--size") == str(lt.message_size)
    assert arg(args, "--confirm") == str(lt.confirm)
    assert arg(args, "--queue-pattern") == "perf-test-%d"
    assert (arg(args, "--queue-pattern-from"), arg(args, "--queue-pattern-to")) == ("1", str(lt.queues))
    assert arg(args, "--exchange") == "perf-test"
    assert arg(args, "--flag") == "persistent"
    assert arg(args, "--metrics-format") == "compact"
    assert {"--quorum-queue", "--use-default-ssl-context"} <= set(args)
    # Every name PerfTest will use is inside the user's permission.
    names = [arg(args, "--exchange")] + [arg(args, "--queue-pattern") % i for i in range(1, lt.queues + 1)]
    assert all(re.match(render.PERMISSION, n) for n in names), names
    spec = job(planned_on)["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] > lt.duration_seconds
    assert job(planned_on)["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}


def test_restricted_pod_security(planned_on):
    lt = planned_on.settings.broker.load_test
    ns = manifests(planned_on)[("Namespace", "", lt.namespace)]["metadata"]["labels"]
    assert ns["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = job(planned_on)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    containers = pod["initContainers"] + pod["containers"]
    assert len(containers) == 2
    for c in containers:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], c["name"]
        assert c["image"].endswith(f"/docker/{lt.image}")
    main = pod["containers"][0]["resources"]
    assert main == {
        "requests": {"cpu": lt.resources.cpu_request, "memory": lt.resources.memory},
        "limits": {"cpu": lt.resources.cpu_limit, "memory": lt.resources.memory},
    }
    assert {v["name"] for v in pod["volumes"]} == {"truststore", "tmp", "broker-ca"}
    assert all("hostPath" not in v for v in pod["volumes"])


# ------------------------------------------------------------------ credentials
def test_uri_reaches_the_pod_only_through_the_secret(planned_on):
    s = planned_on.settings
    container = job(planned_on)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["PERF_TEST_URI"] == {
        "name": "PERF_TEST_URI",
        "valueFrom": {"secretKeyRef": {"name": render.SECRET, "key": "url"}},
    }
    assert env["RABBITMQ_PERF_TEST_ENV_PREFIX"]["value"] == "PERF_TEST_"
    assert "amqp" not in json.dumps(container["args"])  # no URI on the command line
    reg = planned_on.one("core/v1:Secret", "load-test-broker-secret")
    assert rpc.is_rpc_secret(reg.inputs["stringData"])
    data = planned_on.inputs("core/v1:Secret", "load-test-broker-secret")["stringData"]
    password = planned_on.inputs("keyvault:Secret", "broker-perf-test-secret")["properties"]["value"]
    assert password in planned_on.result.generated_secrets
    assert data["url"] == render.connection_string(s, password)
    assert data["url"].startswith(f"amqps://perf-test:{password}@{broker_render.service_host(s)}:5671/")
    assert data["ca.crt"]  # the stack's CA, which the init container turns into the JVM's trust store


def test_no_password_in_plaintext_inputs_or_plan(planned_on):
    password = planned_on.inputs("keyvault:Secret", "broker-perf-test-secret")["properties"]["value"]
    assert password not in (planned_on.out_dir / "plan.json").read_text()

    def plaintext(value) -> str:
        if rpc.is_rpc_secret(value):
            return ""
        if isinstance(value, dict):
            return " ".join(plaintext(v) for v in value.values())
        if isinstance(value, list):
            return " ".join(plaintext(v) for v in value)
        return str(value)

    for reg in planned_on.result.registrations:
        if reg.type != "azure-native:keyvault:Secret":
            assert password not in plaintext(reg.inputs), f"{reg.type} {reg.name}"


def test_definitions_carry_the_user_with_its_generated_password(planned_on):
    defs = definitions(planned_on)
    [user] = [u for u in defs["users"] if u["name"] == S.LOAD_TEST_USER]
    assert user["tags"] == []  # no management access
    password = planned_on.inputs("keyvault:Secret", "broker-perf-test-secret")["properties"]["value"]
    assert user["password_hash"] == broker_render.password_hash(password, broker_render.stable_salt("perf-test", 0))
    [perm] = [p for p in defs["permissions"] if p["user"] == S.LOAD_TEST_USER]
    assert perm == {
        "user": "perf-test",
        "vhost": planned_on.settings.vhost,
        "configure": render.PERMISSION,
        "write": render.PERMISSION,
        "read": render.PERMISSION,
    }


def test_permission_reaches_none_of_the_topology(planned_on):
    defs = definitions(planned_on)
    names = [x["name"] for x in defs["exchanges"] + defs["queues"]]
    assert "bloodbank.events.v1" in names and "dlq.all" in names
    for name in names:
        assert not re.match(render.PERMISSION, name), name
    for name in ("perf-test", "perf-test-1", "perf-test-100"):
        assert re.match(render.PERMISSION, name)
    for name in ("perf-test-x", "perf-test.events", "xperf-test-1", "perf-test-1.events"):
        assert not re.match(render.PERMISSION, name)


# ------------------------------------------------------------------ network
def test_network_policies_admit_only_amqps_between_perf_test_and_the_broker(planned_on):
    s = planned_on.settings
    lt_ns, broker_ns = s.broker.load_test.namespace, s.broker.namespace
    found = manifests(planned_on)
    deny = found[("NetworkPolicy", lt_ns, "default-deny")]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    out = found[("NetworkPolicy", lt_ns, "allow-amqps-to-broker")]["spec"]["egress"]
    assert out == [
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": broker_ns}},
                    "podSelector": {"matchLabels": broker_render.selector(s)},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 5671}],
        }
    ]
    dns = found[("NetworkPolicy", lt_ns, "allow-dns")]["spec"]["egress"][0]
    assert {p["port"] for p in dns["ports"]} == {53}
    # No ingress rule at all in the load test's namespace.
    assert not any(
        found[("NetworkPolicy", lt_ns, n)]["spec"].get("ingress") for n in ("allow-amqps-to-broker", "allow-dns")
    )
    admit = found[("NetworkPolicy", broker_ns, "allow-amqps-from-load-test")]["spec"]
    assert admit["podSelector"] == {"matchLabels": broker_render.selector(s)}
    assert admit["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": lt_ns}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "perf-test"}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 5671}],  # AMQPS only, also where dev listens in plaintext
        }
    ]
    # The pods the policies select are the Job's pods.
    assert job(planned_on)["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "perf-test"


# ------------------------------------------------------------------ config errors
@pytest.mark.parametrize(
    "key,value,expected",
    [
        (
            "broker.loadTest.producers",
            0,
            "Pulumi.dev.yaml: event-backbone:broker.loadTest.producers must be between 1 and 500 (got 0)",
        ),
        (
            "broker.loadTest.durationSeconds",
            5,
            "Pulumi.dev.yaml: event-backbone:broker.loadTest.durationSeconds must be between 10 and 86400 (got 5)",
        ),
        (
            "broker.loadTest.messageSize",
            4,
            "Pulumi.dev.yaml: event-backbone:broker.loadTest.messageSize must be between 12 and 1048576 (got 4)",
        ),
        (
            "broker.loadTest.image",
            "pivotalrabbitmq/perf-test:latest",
            "Pulumi.dev.yaml: event-backbone:broker.loadTest.image must be an image pinned to a version tag "
            "(`repo:1.2.3`) or a digest (got 'pivotalrabbitmq/perf-test:latest')",
        ),
        (
            "broker.loadTest.namespace",
            "messaging",
            "Pulumi.dev.yaml: event-backbone:broker.loadTest.namespace must differ from broker.namespace's "
            "namespace (got 'messaging')",
        ),
        (
            "broker.loadTest.queues",
            20,
            "Pulumi.dev.yaml: event-backbone:broker.loadTest.queues must not exceed broker.loadTest.producers (10): "
            "every queue needs one (got 20)",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("broker.") else None,
)
def test_bad_load_test_config(key, value, expected):
    text = mutate("dev", "broker.loadTest.enabled", True)
    doc = yaml.safe_load(text)
    node = doc["config"]["event-backbone:broker"]["loadTest"]
    node[key.rsplit(".", 1)[1]] = value
    got = errors("dev", yaml.safe_dump(doc, sort_keys=False))
    assert expected in got and len(got) == (2 if key.endswith("queues") else 1), got


def test_the_load_test_needs_the_in_cluster_broker():
    doc = yaml.safe_load(mutate("dev", "broker.loadTest.enabled", True))
    doc["config"]["event-backbone:broker"]["backend"] = "cloudamqp"
    doc["config"]["event-backbone:broker"]["cloudamqp"] = {"plan": "penguin-1"}
    assert errors("dev", yaml.safe_dump(doc, sort_keys=False)) == [
        "Pulumi.dev.yaml: event-backbone:broker.loadTest.enabled must be false when broker.backend is not "
        "'in-cluster' (the load test runs in the cluster) (got true)"
    ]


def test_the_load_test_names_are_reserved():
    assert errors("dev", mutate("dev", "services.perf-test", {"bindings": []})) == [
        "Pulumi.dev.yaml: event-backbone:services.perf-test is reserved for the load test's user "
        "(Key Vault secret broker-perf-test)"
    ]
    assert errors("dev", mutate("dev", "services.audit.queue", "perf-test-7")) == [
        "Pulumi.dev.yaml: event-backbone:services.audit.queue must not use the load test's names "
        "(perf-test, perf-test-<n>) (got 'perf-test-7')"
    ]
