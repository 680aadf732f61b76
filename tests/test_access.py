"""The access matrix (build/<stack>/access.{json,md}) is derived from the recorded plan, and each
service's row touches only its own things, in the real stacks and in a hidden stack with more
services (the isolation is not a property of the four services we happen to have)."""

from __future__ import annotations

import copy
import json
import re

import k8s_schemas
import pytest
import yaml
from conftest import ROOT, Planned

from components.render import artefacts
from components.render.broker import queue_plans
from dryrun import access
from dryrun.runner import run_stack

DNS = "namespace kube-system, pods k8s-app=kube-dns : 53/UDP, 53/TCP"
OTLP = (
    "namespace monitoring, pods app.kubernetes.io/instance=otel-collector,"
    " app.kubernetes.io/name=opentelemetry-collector : 4317/TCP, 4318/TCP"
)
PUBLIC_HTTPS = "public addresses (0.0.0.0/0 except 6 private ranges) : 443/TCP"


def matrix_of(planned: Planned) -> dict:
    definitions = json.loads(artefacts(planned.settings)["rabbitmq/definitions.json"])
    return access.matrix(planned.doc, definitions)


def isolation_problems(
    m: dict,
    services: dict,
    exchange: str,
    postgres_subnet: str,
    broker_ports: list[int],
    endpoints_subnet: str = "",
    postgres_label: str = " (subnet snet-postgres)",
) -> list[str]:
    """Everything a service's row may touch is its own (or the shared CA, exchange, DNS,
    collector, PostgreSQL subnet when it has a database, public HTTPS for Entra ID)."""
    problems = []
    rows = {r["identity"]: r for r in m["identities"]}
    for svc, cfg in services.items():
        r = rows.get(f"service {svc}")
        if r is None:
            problems.append(f"{svc}: no row")
            continue
        own_secrets = {f"broker-{svc}", f"broker-{svc}-url", "broker-ca-cert"}
        if set(r["secretsReadable"]) != own_secrets or any(g["scope"] != "secret" for g in r["keyVault"]):
            problems.append(f"{svc}: secrets {r['secretsReadable']} / {r['keyVault']}")
        queue = cfg.get("queue") or f"{svc}.events"
        own_queues = {queue, f"dlq.{svc}"} if cfg.get("bindings") else set()
        if [b["user"] for b in r["broker"]] != [f"svc-{svc}"]:
            problems.append(f"{svc}: broker users {[b['user'] for b in r['broker']]}")
        for b in r["broker"]:
            for kind in ("configure", "write", "read"):
                if not set(b[kind]["queues"]) <= own_queues:
                    problems.append(f"{svc}: {kind} queues {b[kind]['queues']}")
            if b["configure"]["exchanges"] or b["write"]["exchanges"] != [exchange]:
                problems.append(f"{svc}: exchanges {b['configure']['exchanges']} / {b['write']['exchanges']}")
        expected_db = [f"owns {svc} (role svc-{svc})"] if cfg.get("database") else []
        if r["database"] != expected_db:
            problems.append(f"{svc}: database {r['database']}")
        expected_redis = [("default", "default", f"{svc}:")] if cfg.get("redis") else []
        if [(x["accessPolicy"], x["database"], x["keyPrefix"]) for x in r["redis"]] != expected_redis or not all(
            x["clusterInPlan"] for x in r["redis"]
        ):
            problems.append(f"{svc}: redis {r['redis']}")
        if [n["namespace"] for n in r["network"]] != [svc]:
            problems.append(f"{svc}: namespaces {[n['namespace'] for n in r['network']]}")
        for n in r["network"]:
            ports = ", ".join(f"{p}/TCP" for p in broker_ports)
            allowed = {DNS, OTLP, PUBLIC_HTTPS, f"namespace messaging, pods app.kubernetes.io/name=rabbitmq : {ports}"}
            if cfg.get("database"):
                allowed.add(f"{postgres_subnet}{postgres_label} : 5432/TCP")
            if cfg.get("redis"):  # Azure Managed Redis's private endpoint, its TLS port only
                allowed.add(f"{endpoints_subnet} (subnet snet-private-endpoints) : 10000/TCP")
            if n["defaultDeny"] != ["Egress", "Ingress"] or set(n["egress"]) != allowed:
                problems.append(f"{svc}: egress {n['defaultDeny']} {sorted(set(n['egress']) ^ allowed)}")
            if n["ingress"] != ["namespace monitoring : metrics/TCP"]:
                problems.append(f"{svc}: ingress {n['ingress']}")
    for secret, readers in m["secretReaders"].items():
        services_reading = [x for x in readers if x.startswith("service ")]
        if secret != "broker-ca-cert" and len(services_reading) > 1:
            problems.append(f"{secret}: read by {services_reading}")
    wide = {r["identity"] for r in m["identities"] for g in r["keyVault"] if g["secret"] == "*"}
    if wide != {"deployer"}:
        problems.append(f"vault-wide readers: {sorted(wide)}")
    return problems


def stack_services(stack: str) -> dict:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["event-backbone:services"]


def check(planned: Planned, services: dict) -> list[str]:
    s = planned.settings
    ports = [5671] + ([5672] if s.broker.plaintext_listener else [])
    return isolation_problems(
        matrix_of(planned),
        services,
        s.broker.topology.exchange,
        s.database_subnet,
        ports,
        s.network.endpoints_subnet,
        # a recovery stack's server is in the replaced stack's DR subnet, outside this stack's VNet
        " (subnet snet-postgres)" if s.recovery is None else "",
    )


def test_each_service_row_touches_only_its_own_things(stack):
    assert check(stack, stack_services(stack.stack)) == []
    m = matrix_of(stack)
    kinds = {r["kind"] for r in m["identities"]}
    assert kinds == {"service", "platform", "group", "deployer"}
    keda = next(r for r in m["identities"] if r["identity"] == "platform keda")
    assert keda["secretsReadable"] == ["broker-ca-cert", "broker-keda-monitor-url"]
    (monitor,) = keda["broker"]
    assert monitor["user"] == "keda-monitor" and monitor["tags"] == []
    assert all(monitor[k]["queues"] == [] and monitor[k]["exchanges"] == [] for k in ("configure", "read"))
    # write on exactly the services' queues (RabbitMQ 4.3's passive declare needs a permission),
    # on no exchange: it can read a depth, not publish (tests/test_broker_rabbitmq.py proves it)
    queues = sorted(p.queue for p in queue_plans(stack.settings.broker.topology, stack.settings.services))
    assert sorted(monitor["write"]["queues"]) == queues and monitor["write"]["exchanges"] == []


def test_the_matrix_comes_from_the_plan_not_the_settings(planned):
    """A grant added to the recorded plan (not to the settings) shows up, and the check trips."""
    prod = planned["prod"]
    doc = copy.deepcopy(prod.doc)
    grant = next(r for r in doc["resources"] if r["name"] == "candystore-reads-broker-candystore")
    rogue = copy.deepcopy(grant)
    rogue["name"], rogue["urn"] = "rogue", grant["urn"] + "-rogue"
    rogue["inputs"]["scope"] = grant["inputs"]["scope"].replace("broker-candystore", "broker-bloodbank-url")
    doc["resources"].append(rogue)
    definitions = json.loads(artefacts(prod.settings)["rabbitmq/definitions.json"])
    m = access.matrix(doc, definitions)
    s = prod.settings
    problems = isolation_problems(
        m,
        stack_services("prod"),
        s.broker.topology.exchange,
        s.network.postgres_subnet,
        [5671],
        s.network.endpoints_subnet,
    )
    assert any(p.startswith("candystore: secrets") for p in problems)
    assert any("broker-bloodbank-url: read by" in p for p in problems)
    candystore = next(r for r in m["identities"] if r["identity"] == "service candystore")
    assert "svc-bloodbank" in [b["user"] for b in candystore["broker"]]  # resolved through the secret's tags


def test_markdown_and_summary_line(planned):
    m = matrix_of(planned["prod"])
    md = access.markdown(m)
    assert md.count("\n| service ") == 4 and "| deployer |" in md
    assert "## Who can read each secret" in md
    line = access.summary_line(m)
    assert line.startswith("access: ") and "vault-wide readers: deployer;" in line


# ------------------------------------------------------------------ a hidden stack with more services
EXTRA = {
    "billing": {"bindings": ["order.*.paid"], "deadLetterQueue": True, "database": True},
    "catalog": {"bindings": ["catalog.#"], "database": True, "scaling": {"deployment": "catalog", "maxReplicas": 5}},
    "notifications": {"queue": "notify.all", "bindings": ["#.failed"]},
    "search": {"bindings": []},
    "shipping": {
        "bindings": ["order.*.shipped", "inventory.*"],
        "scaling": {"deployment": "shipper", "minReplicas": 0, "maxReplicas": 3, "targetQueueLength": 5},
    },
    "reporting": {"bindings": [], "database": True},
}


@pytest.fixture(scope="module")
def hidden(tmp_path_factory):
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    services = doc["config"]["event-backbone:services"]
    services.update(copy.deepcopy(EXTRA))
    result = run_stack("prod", stack_text=yaml.safe_dump(doc, sort_keys=False))
    return Planned(result, tmp_path_factory.mktemp("hidden")), services


def test_a_hidden_stack_with_more_services_gets_the_same_isolation(hidden):
    planned, services = hidden
    assert len(planned.settings.services) == 10
    assert check(planned, services) == []


def test_the_hidden_stack_passes_the_policies_and_the_schemas(hidden):
    from dryrun.policy_host import run_pack

    planned, services = hidden
    findings = run_pack(ROOT / "policies", ROOT / "policies" / "config.prod.json", planned.result.registrations)
    assert [f for f in findings if f.enforcement_level == "mandatory"] == []
    version = planned.settings.aks.kubernetes_version
    landed = [m for m in k8s_schemas.recorded_manifests(planned) if m["metadata"].get("namespace") in services]
    assert {m["kind"] for m in landed} >= {"ScaledObject", "TriggerAuthentication", "SecretProviderClass", "PodMonitor"}
    for m in landed:
        assert k8s_schemas.errors(m, version) == [], f"{m['kind']}/{m['metadata']['name']}"
    broker_rule = next(
        m for m in k8s_schemas.recorded_manifests(planned) if m["metadata"]["name"] == "allow-amqp-from-event-services"
    )
    admitted = broker_rule["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert admitted == sorted(services)


def test_every_identity_has_its_own_row_and_every_role_is_named(stack):
    """A grant *on* an identity (Managed Identity Operator on the kubelet identity) must not make
    that identity look like the grantee: each user-assigned identity gets its own row, the
    deployer is one row, and no grant is left unattributed or shown as a bare GUID."""
    m = matrix_of(stack)
    identities = [r for r in stack.result.registrations if r.type == access.IDENTITY]
    rows = [r for r in m["identities"] if r["kind"] in ("service", "platform")]
    assert len(rows) == len(identities)
    assert len({r["principal"] for r in rows}) == len(rows), "two identities share a principal"
    assert [r["identity"] for r in m["identities"]].count("deployer") == 1
    kubelet = next(r for r in rows if r["identity"] == "platform kubelet")
    assert [g["role"] for g in kubelet["otherRoles"]] == ["AcrPull"]
    guid = re.compile(r"^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$")
    for r in m["identities"]:
        for g in r["otherRoles"] + r["keyVault"]:
            assert not guid.match(g["role"]), (r["identity"], g)
