"""Each policy: the compliant resource (as the prod stack records it) passes, and each way of
violating it is caught with a message naming the resource, property, value and fix."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from typing import Any

import access
import assignable_roles
import audit
import backups
import database_access
import edge
import hardening
import images
import managed_redis
import monitoring
import pytest
import replicas
import tls
from conftest import ROOT, unwrap
from pulumi_policy import PolicyResource, PolicyResourceOptions, ResourceValidationArgs, StackValidationArgs
from test_settings import stack_doc

CONFIG = {
    stack: json.loads((ROOT / "policies" / f"config.{stack}.json").read_text()) for stack in ("dev", "prod", "prod-dr")
}


def opts(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], None, [], None)


def defaults(policy) -> dict:
    schema = policy.config_schema.properties if policy.config_schema else {}
    return {k: v["default"] for k, v in schema.items() if "default" in v}


def check(
    policy, typ: str, props: dict, *, name: str = "res", protect: bool = False, config: dict | None = None
) -> list[str]:
    messages: list[str] = []
    cfg = {**defaults(policy), **(config or {})}
    policy.validate(
        ResourceValidationArgs(typ, props, f"urn:{name}", name, opts(protect), None, cfg),
        lambda m, u=None: messages.append(m),
    )
    return messages


def check_stack(policy, resources: list[tuple[str, dict, str]], config: dict | None = None) -> list[str]:
    messages: list[str] = []
    res = [PolicyResource(t, p, f"urn:{n}", n, opts(), None, None, [], {}) for t, p, n in resources]
    cfg = {**defaults(policy), **(config or {})}
    policy.validate(StackValidationArgs(res, cfg), lambda m, u=None: messages.append(m))
    return messages


def recorded(planned, type_suffix: str, name: str | None = None) -> tuple[str, dict]:
    reg = planned["prod"].one(type_suffix, name)
    return reg.type, unwrap(reg.inputs)


def mutated(props: dict, path: str, value: Any = ...) -> dict:
    props = copy.deepcopy(props)
    node = props
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return props


def one(messages: list[str], *words: str) -> None:
    assert len(messages) == 1, messages
    for word in (*words, "Fix:"):
        assert word in messages[0], (word, messages[0])


# ------------------------------------------------------------------------- TLS
REPLICA_PREFIXES = ("replica-", "dr-replica")  # components/postgres_replicas.py (tests/test_postgres_replicas.py)


def pg_resources(planned) -> list[tuple[str, dict, str]]:
    """The primary and its parameters (prod's replicas have their own tests)."""
    out = []
    for suffix in ("dbforpostgresql:Server", "dbforpostgresql:Configuration"):
        for reg in planned["prod"].of_type(suffix):
            if not reg.name.startswith(REPLICA_PREFIXES):
                out.append((reg.type, unwrap(reg.inputs), reg.name))
    return out


def test_postgres_tls_enforced(planned):
    resources = pg_resources(planned)
    assert check_stack(tls.postgres_tls, resources, CONFIG["prod"]["postgres-tls-enforced"]) == []
    off = [
        (t, mutated(p, "value", "off") if p.get("configurationName") == "require_secure_transport" else p, n)
        for t, p, n in resources
    ]
    one(check_stack(tls.postgres_tls, off), "require-secure-transport", "'off'")
    old = [
        (t, mutated(p, "value", "TLSv1.1") if p.get("configurationName") == "ssl_min_protocol_version" else p, n)
        for t, p, n in resources
    ]
    one(check_stack(tls.postgres_tls, old), "ssl_min_protocol_version", "'TLSv1.1'")
    missing = [r for r in resources if r[1].get("configurationName") != "require_secure_transport"]
    one(check_stack(tls.postgres_tls, missing), "require_secure_transport", "not set")
    one(check_stack(tls.postgres_tls, resources, {"minimumTlsVersion": "TLSv1.3"}), "'TLSv1.2'", "TLSv1.3")


def test_postgres_not_public(planned):
    typ, props = recorded(planned, "dbforpostgresql:Server", "server")
    assert check(tls.postgres_private, typ, props) == []
    one(
        check(tls.postgres_private, typ, mutated(props, "network.publicNetworkAccess", "Enabled")),
        "publicNetworkAccess",
        "'Enabled'",
    )
    one(check(tls.postgres_private, typ, mutated(props, "network.publicNetworkAccess")), "not set")


def test_broker_tls(planned):
    typ, props = recorded(planned, "RabbitmqCluster")
    assert check(tls.broker_tls, typ, props, config=CONFIG["prod"]["broker-tls"]) == []
    one(
        check(
            tls.broker_tls,
            typ,
            mutated(props, "spec.tls.disableNonTLSListeners", False),
            config=CONFIG["prod"]["broker-tls"],
        ),
        "disableNonTLSListeners",
        "false",
    )
    assert (
        check(
            tls.broker_tls,
            typ,
            mutated(props, "spec.tls.disableNonTLSListeners", False),
            config=CONFIG["dev"]["broker-tls"],
        )
        == []
    )
    no_tls = mutated(mutated(props, "spec.tls.secretName"), "spec.tls.disableNonTLSListeners", True)
    one(check(tls.broker_tls, typ, no_tls), "spec.tls.secretName")


def edge_resources(planned, stack: str = "prod") -> list[tuple[str, dict, str]]:
    suffixes = (
        "gateway.networking.k8s.io/v1:Gateway",
        "gateway.networking.k8s.io/v1:HTTPRoute",
        "cert-manager.io/v1:Certificate",
        "cert-manager.io/v1:ClusterIssuer",
        "servicenetworking:TrafficControllerInterface",
        "servicenetworking:SecurityPoliciesInterface",
        "network:WebApplicationFirewallPolicy",
        "alb.networking.azure.io/v1:WebApplicationFirewallPolicy",
    )
    return [(r.type, unwrap(r.inputs), r.name) for sfx in suffixes for r in planned[stack].of_type(sfx)]


def replaced(resources, name: str, path: str, value=...) -> list[tuple[str, dict, str]]:
    return [(t, mutated(p, path, value) if n == name else p, n) for t, p, n in resources]


def test_edge_https_only(planned):
    res = edge_resources(planned)
    assert check_stack(edge.edge_https, res) == []
    # an HTTPS listener whose certificate is not from the stack's issuer
    foreign = replaced(res, "certificate-grafana", "spec.issuerRef.name", "someone-elses-issuer")
    one(check_stack(edge.edge_https, foreign), "certificateRefs", "'grafana-tls'", "ClusterIssuer")
    # a listener without a certificate
    gw = next(p for t, p, n in res if n == "gateway")
    listeners = copy.deepcopy(gw["spec"]["listeners"])
    del listeners[1]["tls"]
    one(check_stack(edge.edge_https, replaced(res, "gateway", "spec.listeners", listeners)), "tls", "not set")
    # a plain-HTTP route serving the UI on port 80 instead of redirecting
    leaking = replaced(res, "https-redirect", "spec.rules", [{"backendRefs": [{"name": "grafana", "port": 80}]}])
    one(check_stack(edge.edge_https, leaking), "https-redirect", "plain-HTTP listener 'http'")
    # the Grafana route moved onto the HTTP listener
    moved = replaced(
        res, "route-grafana", "spec.parentRefs", [{"name": "edge", "namespace": "edge", "sectionName": "http"}]
    )
    one(check_stack(edge.edge_https, moved), "route-grafana", "Fix:")
    # a TCP listener
    tcp = copy.deepcopy(gw["spec"]["listeners"])
    tcp.append({"name": "raw", "port": 5672, "protocol": "TCP"})
    one(check_stack(edge.edge_https, replaced(res, "gateway", "spec.listeners", tcp)), "protocol", "'TCP'")


def test_edge_waf(planned):
    res = edge_resources(planned)
    prod_cfg = CONFIG["prod"]["edge-waf"]
    assert check_stack(edge.edge_waf, res, prod_cfg) == []
    detection = replaced(res, "waf-policy", "policySettings.mode", "Detection")
    one(check_stack(edge.edge_waf, detection, prod_cfg), "policySettings.mode", "'Detection'")
    assert check_stack(edge.edge_waf, detection, CONFIG["dev"]["edge-waf"]) == []
    assert check_stack(edge.edge_waf, edge_resources(planned, "dev"), CONFIG["dev"]["edge-waf"]) == []
    one(check_stack(edge.edge_waf, replaced(res, "waf-policy", "customRules", []), prod_cfg), "RateLimitRule")
    one(
        check_stack(edge.edge_waf, replaced(res, "waf-policy", "managedRules.managedRuleSets", []), prod_cfg),
        "managedRuleSets",
    )
    no_waf = [r for r in res if r[0] not in (edge.WAF_POLICY, edge.SECURITY_POLICY)]
    one(check_stack(edge.edge_waf, no_waf, prod_cfg), "securityPolicies", "not set")
    unattached = [r for r in res if r[0] != edge.WAF_ATTACHMENT]
    one(check_stack(edge.edge_waf, unattached, prod_cfg), "Gateway", "targetRef")


def test_no_plaintext_exposure(planned):
    svc = "kubernetes:core/v1:Service"
    assert check(edge.no_plaintext_exposure, svc, {"spec": {"type": "ClusterIP"}}) == []
    one(check(edge.no_plaintext_exposure, svc, {"spec": {"type": "LoadBalancer"}}), "spec.type", "'LoadBalancer'")
    ingress = {
        "spec": {
            "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}],
            "tls": [{"hosts": ["a.example.com", "b.example.com"], "secretName": "t"}],
        }
    }
    typ = "kubernetes:networking.k8s.io/v1:Ingress"
    assert check(edge.no_plaintext_exposure, typ, ingress) == []
    one(check(edge.no_plaintext_exposure, typ, mutated(ingress, "spec.tls")), "spec.tls")
    partial = mutated(ingress, "spec.tls", [{"hosts": ["a.example.com"], "secretName": "t"}])
    one(check(edge.no_plaintext_exposure, typ, partial), "b.example.com")
    rtype, release = recorded(planned, "helm.sh/v3:Release", "kube-prometheus-stack")
    assert check(edge.no_plaintext_exposure, rtype, release) == []
    exposed = mutated(release, "values.grafana.ingress", {"enabled": True, "hosts": ["grafana.events.example.com"]})
    one(check(edge.no_plaintext_exposure, rtype, exposed), "values.grafana.ingress.tls", "grafana.events.example.com")
    lb = mutated(release, "values.grafana.service", {"type": "LoadBalancer"})
    one(check(edge.no_plaintext_exposure, rtype, lb), "values.grafana.service.type", "'LoadBalancer'")


def test_aks_api_server_restricted(planned):
    typ, props = recorded(planned, "containerservice:ManagedCluster")
    assert check(tls.aks_api, typ, props) == []
    one(check(tls.aks_api, typ, mutated(props, "apiServerAccessProfile.authorizedIPRanges", [])), "authorizedIPRanges")
    one(
        check(tls.aks_api, typ, mutated(props, "apiServerAccessProfile.authorizedIPRanges", ["0.0.0.0/0"])),
        "'0.0.0.0/0'",
    )
    private = mutated(
        mutated(props, "apiServerAccessProfile.authorizedIPRanges", []),
        "apiServerAccessProfile.enablePrivateCluster",
        True,
    )
    assert check(tls.aks_api, typ, private) == []


def test_keyvault_not_public(planned):
    typ, props = recorded(planned, "keyvault:Vault")
    assert check(tls.keyvault_private, typ, props) == []
    one(
        check(tls.keyvault_private, typ, mutated(props, "properties.networkAcls.defaultAction", "Allow")),
        "defaultAction",
        "'Allow'",
    )
    one(
        check(tls.keyvault_private, typ, mutated(props, "properties.networkAcls.ipRules", [{"value": "0.0.0.0/0"}])),
        "ipRules",
    )
    assert check(tls.keyvault_private, typ, mutated(props, "properties.publicNetworkAccess", "Disabled")) == []


def test_storage_account_secure_transport():
    typ = "azure-native:storage:StorageAccount"
    good = {"enableHttpsTrafficOnly": True, "minimumTlsVersion": "TLS1_2"}
    assert check(tls.storage_account_tls, typ, good) == []
    one(check(tls.storage_account_tls, typ, mutated(good, "enableHttpsTrafficOnly", False)), "enableHttpsTrafficOnly")
    one(check(tls.storage_account_tls, typ, mutated(good, "minimumTlsVersion", "TLS1_0")), "'TLS1_0'")
    one(check(tls.storage_account_tls, typ, mutated(good, "minimumTlsVersion")), "not set")


# ------------------------------------------------------------------------- database access
def entra_resources(planned, stack: str = "prod") -> list[tuple[str, dict, str]]:
    out = []
    for suffix in ("dbforpostgresql:Server", "dbforpostgresql:AdministratorsMicrosoftEntra"):
        for reg in planned[stack].of_type(suffix):
            if not reg.name.startswith(REPLICA_PREFIXES):
                out.append((reg.type, unwrap(reg.inputs), reg.name))
    return out


def test_postgres_entra_auth(planned):
    policy = database_access.postgres_entra
    prod_cfg = CONFIG["prod"]["postgres-entra-auth"]
    resources = entra_resources(planned)
    assert len(resources) == 3  # the server, the admin group, the bootstrap identity
    assert check_stack(policy, resources, prod_cfg) == []
    server_type = "azure-native:dbforpostgresql:Server"
    with_password = [
        (t, mutated(p, "authConfig.passwordAuth", "Enabled") if t == server_type else p, n) for t, p, n in resources
    ]
    one(check_stack(policy, with_password, prod_cfg), "authConfig.passwordAuth", "'Enabled'", "postgres.passwordAuth")
    assert check_stack(policy, with_password, CONFIG["dev"]["postgres-entra-auth"]) == []
    no_admins = [r for r in resources if r[0] == server_type]
    one(check_stack(policy, no_admins, prod_cfg), "Entra administrators", "not set")
    other_server = [
        (t, mutated(p, "serverName", "another-server") if t != server_type else p, n) for t, p, n in resources
    ]
    one(check_stack(policy, other_server, prod_cfg), "Entra administrators")
    no_entra = [
        (t, mutated(p, "authConfig.activeDirectoryAuth", "Disabled") if t == server_type else p, n)
        for t, p, n in resources
    ]
    one(check_stack(policy, no_entra, prod_cfg), "activeDirectoryAuth", "'Disabled'")
    # dev keeps its password (allowed there) but still has its Entra administrators
    assert check_stack(policy, entra_resources(planned, "dev"), CONFIG["dev"]["postgres-entra-auth"]) == []


# ------------------------------------------------------------------------- backups
def test_postgres_backup_retention(planned):
    typ, props = recorded(planned, "dbforpostgresql:Server", "server")
    cfg = CONFIG["prod"]["postgres-backup-retention"]
    assert check(backups.postgres_backups, typ, props, config=cfg) == []
    one(
        check(backups.postgres_backups, typ, mutated(props, "backup.backupRetentionDays", 14), config=cfg),
        "backupRetentionDays",
        "14",
        "30",
    )
    one(
        check(backups.postgres_backups, typ, mutated(props, "backup.geoRedundantBackup", "Disabled"), config=cfg),
        "geoRedundantBackup",
    )
    assert (
        check(
            backups.postgres_backups,
            typ,
            mutated(props, "backup.geoRedundantBackup", "Disabled"),
            config=CONFIG["dev"]["postgres-backup-retention"],
        )
        == []
    )


def test_keyvault_soft_delete_and_purge_protection(planned):
    typ, props = recorded(planned, "keyvault:Vault")
    assert check(backups.keyvault_recoverable, typ, props) == []
    one(
        check(backups.keyvault_recoverable, typ, mutated(props, "properties.enablePurgeProtection")),
        "enablePurgeProtection",
    )
    one(
        check(backups.keyvault_recoverable, typ, mutated(props, "properties.enableSoftDelete", False)),
        "enableSoftDelete",
    )
    one(
        check(backups.keyvault_recoverable, typ, mutated(props, "properties.softDeleteRetentionInDays", 7)),
        "softDeleteRetentionInDays",
    )


def test_broker_persistent_storage(planned):
    (ctype, cluster), (stype, sc) = recorded(planned, "RabbitmqCluster"), recorded(planned, "StorageClass")
    assert check_stack(backups.broker_storage, [(ctype, cluster, "cluster"), (stype, sc, "sc")]) == []
    one(
        check_stack(
            backups.broker_storage, [(ctype, cluster, "cluster"), (stype, mutated(sc, "reclaimPolicy", "Delete"), "sc")]
        ),
        "reclaimPolicy",
        "'Delete'",
    )
    one(check_stack(backups.broker_storage, [(ctype, cluster, "cluster")]), "storageClassName")
    empty = mutated(mutated(cluster, "spec.persistence.storage"), "spec.persistence.emptyDir", {})
    one(check_stack(backups.broker_storage, [(ctype, empty, "cluster"), (stype, sc, "sc")]), "spec.persistence.storage")


def test_observability_persistent_storage(planned):
    cfg = CONFIG["prod"]["observability-persistent-storage"]
    rtype, kps = recorded(planned, "helm.sh/v3:Release", "kube-prometheus-stack")
    _, jaeger = recorded(planned, "helm.sh/v3:Release", "jaeger")
    assert check(backups.observability_storage, rtype, kps, config=cfg) == []
    assert check(backups.observability_storage, rtype, jaeger, config=cfg) == []
    one(
        check(
            backups.observability_storage,
            rtype,
            mutated(kps, "values.prometheus.prometheusSpec.storageSpec"),
            config=cfg,
        ),
        "prometheus",
    )
    one(
        check(
            backups.observability_storage,
            rtype,
            mutated(kps, "values.alertmanager.alertmanagerSpec.storage"),
            config=cfg,
        ),
        "alertmanager",
    )
    one(
        check(
            backups.observability_storage, rtype, mutated(kps, "values.grafana.persistence.enabled", False), config=cfg
        ),
        "grafana",
    )
    _, dev_jaeger = (
        planned["dev"].one("helm.sh/v3:Release", "jaeger").type,
        unwrap(planned["dev"].one("helm.sh/v3:Release", "jaeger").inputs),
    )
    one(check(backups.observability_storage, rtype, dev_jaeger, config=cfg), "jaeger")
    assert (
        check(
            backups.observability_storage, rtype, dev_jaeger, config=CONFIG["dev"]["observability-persistent-storage"]
        )
        == []
    )


def test_stateful_resources_protected(planned):
    cfg = CONFIG["prod"]["stateful-resources-protected"]
    typ, props = recorded(planned, "dbforpostgresql:Server", "server")
    assert check(backups.stateful_protected, typ, props, protect=True, config=cfg) == []
    one(check(backups.stateful_protected, typ, props, protect=False, config=cfg), "protect option", "false")
    assert (
        check(
            backups.stateful_protected, typ, props, protect=False, config=CONFIG["dev"]["stateful-resources-protected"]
        )
        == []
    )
    assert check(backups.stateful_protected, "azure-native:network:VirtualNetwork", {}, protect=False, config=cfg) == []


# ------------------------------------------------------------------------- hardening
@pytest.mark.parametrize(
    "policy,path,value,word",
    [
        (hardening.aks_local_accounts, "disableLocalAccounts", False, "disableLocalAccounts"),
        (
            hardening.aks_secret_rotation,
            "addonProfiles.azureKeyvaultSecretsProvider.config.enableSecretRotation",
            "false",
            "enableSecretRotation",
        ),
        (hardening.aks_upgrade_channel, "autoUpgradeProfile.upgradeChannel", "none", "upgradeChannel"),
        (hardening.aks_upgrade_channel, "autoUpgradeProfile.upgradeChannel", ..., "not set"),
        (hardening.aks_network_policy, "networkProfile.networkPolicy", ..., "networkPolicy"),
    ],
    ids=lambda v: getattr(v, "name", None),
)
def test_aks_hardening(planned, policy, path, value, word):
    typ, props = recorded(planned, "containerservice:ManagedCluster")
    assert check(policy, typ, props) == []
    one(check(policy, typ, mutated(props, path, value)), word)


def test_keyvault_secret_expiry(planned):
    typ, props = recorded(planned, "keyvault:Secret", "postgres-admin-secret")
    assert check(hardening.keyvault_secret_expiry, typ, props) == []
    one(check(hardening.keyvault_secret_expiry, typ, mutated(props, "properties.attributes.expires")), "expires")
    messages = check(hardening.keyvault_secret_expiry, typ, props)
    assert not any(props["properties"]["value"] in m for m in messages)


# ------------------------------------------------------------------------- the pack, through the protocol
def test_every_policy_is_in_the_pack_and_mandatory():
    from dryrun.policy_host import PolicyHost

    with PolicyHost(ROOT / "policies") as host:
        names = {p.name: p for p in host.info.policies}
        assert host.info.name == "event-backbone"
    packs = (
        access,
        audit,
        tls,
        backups,
        hardening,
        database_access,
        edge,
        assignable_roles,
        managed_redis,
        replicas,
        images,
        monitoring,
    )
    expected = {p.name for pack in packs for p in pack.POLICIES}
    assert set(names) == expected and len(expected) >= 15
    assert all(p.enforcementLevel == 1 for p in names.values())  # MANDATORY


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_real_stacks_pass_the_gate_through_the_protocol(planned, stack):
    from dryrun.policy_host import run_pack

    findings = run_pack(
        ROOT / "policies", ROOT / "policies" / f"config.{stack}.json", planned[stack].result.registrations
    )
    assert [f for f in findings if f.enforcement_level == "mandatory"] == []


def test_config_with_unknown_properties_is_refused():
    from dryrun.policy_host import PolicyHost

    with PolicyHost(ROOT / "policies") as host:
        with pytest.raises(ValueError, match="minimumRetentionDay"):
            host.configure({"postgres-backup-retention": {"minimumRetentionDay": 30}})


def test_gate_trips_on_a_broken_copy_of_prod(tmp_path):
    """A prod plan made from a dev-shaped stack file (7-day backups, no geo-redundancy,
    plaintext broker, nothing protected): `make plan` fails with the violations."""
    import yaml

    doc = stack_doc("dev")
    broken = tmp_path / "Pulumi.prod.yaml"
    broken.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "dryrun", "prod", "--stack-file", str(broken), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "policy-report.json").read_text())
    violated = {f["policy"] for f in report if f["enforcementLevel"] == "mandatory"}
    assert {
        "postgres-backup-retention",
        "broker-tls",
        "stateful-resources-protected",
        "observability-persistent-storage",
        "postgres-entra-auth",
    } <= violated
    for finding in report:
        assert set(finding) == {"policyPack", "policy", "enforcementLevel", "urn", "message"}
        assert finding["urn"].startswith("urn:pulumi:prod::event-backbone::")
        assert "Fix:" in finding["message"]
    assert "[mandatory] postgres-backup-retention" in proc.stdout


# ------------------------------------------------------------------------- access (issue 9)
def _pack_findings(planned, registrations, stack: str = "prod") -> list:
    from dryrun.policy_host import run_pack

    findings = run_pack(ROOT / "policies", ROOT / "policies" / f"config.{stack}.json", registrations)
    return [f for f in findings if f.enforcement_level == "mandatory"]


def _tampered(planned, name: str, **changes):
    """The prod registrations with one resource's inputs changed (a copy under a new name when
    `copy_as` is given)."""
    import dataclasses

    regs = list(planned["prod"].result.registrations)
    index = next(i for i, r in enumerate(regs) if r.name == name)
    original = regs[index]
    inputs = copy.deepcopy(original.inputs)
    copy_as = changes.pop("copy_as", None)
    for path, value in changes.items():
        node = inputs
        *parents, last = path.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    changed = dataclasses.replace(
        original,
        inputs=inputs,
        name=copy_as or original.name,
        urn=original.urn.rsplit("::", 1)[0] + "::" + (copy_as or original.name),
    )
    if copy_as:
        regs.append(changed)
    else:
        regs[index] = changed
    return regs


def test_access_policies_pass_on_the_real_plans_and_see_every_grant(planned):
    for stack in ("dev", "prod"):
        assert _pack_findings(planned, planned[stack].result.registrations, stack) == []
    grants = planned["prod"].of_type("authorization:RoleAssignment")
    assert any(r.name == "candystore-reads-broker-candystore" for r in grants)


def test_a_vault_wide_grant_to_anyone_but_the_deployer_is_refused(planned):
    grant = unwrap(planned["prod"].one("authorization:RoleAssignment", "candystore-reads-broker-candystore").inputs)
    vault_scope = grant["scope"].rsplit("/secrets/", 1)[0]
    found = _pack_findings(
        planned, _tampered(planned, "candystore-reads-broker-candystore", scope=vault_scope, copy_as="rogue-grant")
    )
    assert {f.policy for f in found} == {"keyvault-no-vault-wide-data-access", "service-identity-own-secrets"}
    assert any("rogue-grant" in f.message and "Fix:" in f.message for f in found)
    # wider than the vault: the resource group
    rg_scope = vault_scope.split("/providers/")[0]
    found = _pack_findings(
        planned, _tampered(planned, "candystore-reads-broker-candystore", scope=rg_scope, copy_as="rogue-rg-grant")
    )
    assert "keyvault-no-vault-wide-data-access" in {f.policy for f in found}


def test_a_service_identity_granted_another_service_secret_is_refused(planned):
    grant = unwrap(planned["prod"].one("authorization:RoleAssignment", "candystore-reads-broker-candystore").inputs)
    other = grant["scope"].replace("/secrets/broker-candystore", "/secrets/broker-bloodbank-url")
    found = _pack_findings(
        planned, _tampered(planned, "candystore-reads-broker-candystore", scope=other, copy_as="candystore-steals")
    )
    assert [f.policy for f in found] == ["service-identity-own-secrets"]
    assert "candystore" in found[0].message and "broker-bloodbank-url" in found[0].message


def test_a_namespace_without_pod_security_enforce_is_refused(planned):
    ns = unwrap(planned["prod"].one("core/v1:Namespace", "audit-namespace").inputs)
    labels = {k: v for k, v in ns["metadata"]["labels"].items() if k != "pod-security.kubernetes.io/enforce"}
    found = _pack_findings(planned, _tampered(planned, "audit-namespace", metadata__labels=labels))
    assert [f.policy for f in found] == ["namespace-pod-security"]
    assert "'audit'" in found[0].message
    privileged = {**labels, "pod-security.kubernetes.io/enforce": "privileged"}
    found = _pack_findings(planned, _tampered(planned, "audit-namespace", metadata__labels=privileged))
    assert [f.policy for f in found] == ["namespace-pod-security"]


def test_every_namespace_the_stack_creates_has_an_enforce_level(planned):
    for stack in ("dev", "prod"):
        for reg in planned[stack].of_type("core/v1:Namespace"):
            labels = unwrap(reg.inputs)["metadata"]["labels"]
            assert labels["pod-security.kubernetes.io/enforce"] in ("restricted", "baseline", "privileged"), reg.name
    names = {unwrap(r.inputs)["metadata"]["name"] for r in planned["prod"].of_type("core/v1:Namespace")}
    assert {"monitoring", "monitoring-node-exporter", "messaging", "platform-bootstrap"} <= names


def test_a_helm_release_creating_its_own_namespace_is_refused(planned):
    found = _pack_findings(planned, _tampered(planned, "cert-manager", createNamespace=True))
    assert [f.policy for f in found] == ["namespace-pod-security"]
    assert "createNamespace is true" in found[0].message and "'cert-manager'" in found[0].message


def test_an_unlabelled_operator_namespace_patch_is_refused(planned):
    found = _pack_findings(planned, _tampered(planned, "operator-namespace-pod-security", metadata__labels={}))
    assert [f.policy for f in found] == ["namespace-pod-security"]
    assert "NamespacePatch 'rabbitmq-system'" in found[0].message


UPSTREAM_OPERATOR_NAMESPACE = {  # the Namespace object of the Cluster Operator's release manifest
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {"name": "rabbitmq-system", "labels": {"app.kubernetes.io/part-of": "rabbitmq"}},
}


def test_a_manifest_carrying_an_unlabelled_namespace_is_refused():
    from components.render import broker as B

    policy = access.namespace_pod_security
    # a ConfigFile's objects reach the pack as resources of their own (named <file>:<object>)
    child = ("kubernetes:core/v1:Namespace", UPSTREAM_OPERATOR_NAMESPACE, "cluster-operator:rabbitmq-system")
    [message] = check_stack(policy, [child])
    assert "Namespace 'rabbitmq-system'" in message and "is not set" in message
    # the broker's transform labels that object as it is created: the same check passes
    labelled = B.label_operator_namespace("kubernetes:core/v1:Namespace", copy.deepcopy(UPSTREAM_OPERATOR_NAMESPACE))
    assert labelled is not None and labelled["metadata"]["labels"]["app.kubernetes.io/part-of"] == "rabbitmq"
    assert check_stack(policy, [(child[0], labelled, child[2])]) == []
    assert B.label_operator_namespace("kubernetes:apps/v1:Deployment", {"metadata": {"name": "x"}}) is None
    # an inline manifest (ConfigGroup objs) with an unlabelled Namespace
    group = ("kubernetes:yaml/v2:ConfigGroup", {"objs": [UPSTREAM_OPERATOR_NAMESPACE]}, "operator")
    [message] = check_stack(policy, [group])
    assert "ConfigGroup 'rabbitmq-system'" in message and "objs[0]" in message
    assert check_stack(policy, [(group[0], {"objs": [labelled]}, group[2])]) == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_namespace_the_workloads_use_is_a_labelled_namespace_in_the_plan(planned, stack):
    """Helm release namespaces, the namespaces of every namespaced object (custom resources
    included) and the operator manifest's namespace: each is created (Namespace) or labelled
    (NamespacePatch) by the stack with a Pod Security enforce level, audit and warn restricted.
    kube-system is AKS's own (add-ons) and not the stack's to label; so is gatekeeper-system, the
    Azure Policy add-on's (Ratify runs there beside its Gatekeeper, components/images.py)."""
    from components.render import broker as B

    p = planned[stack]
    used: dict[str, str] = {B.OPERATOR_NAMESPACE: "cluster-operator manifest"}
    for reg in p.result.registrations:
        if not reg.type.startswith("kubernetes:"):
            continue
        inputs = unwrap(reg.inputs)
        if reg.type == "kubernetes:helm.sh/v3:Release":
            used[inputs["namespace"]] = reg.name
            assert not inputs.get("createNamespace"), reg.name
        elif isinstance(inputs.get("metadata"), dict) and inputs["metadata"].get("namespace"):
            used.setdefault(inputs["metadata"]["namespace"], reg.name)
    used.pop("kube-system", None)
    assert used.pop("gatekeeper-system", None) in (None, "ratify")  # nothing of ours but Ratify there
    labelled = {}
    for reg in p.of_type("core/v1:Namespace") + p.of_type("core/v1:NamespacePatch"):
        meta = unwrap(reg.inputs)["metadata"]
        labelled[meta["name"]] = meta["labels"]
    assert {"monitoring", "messaging", B.OPERATOR_NAMESPACE} <= set(used)
    if p.settings.edge.enabled:
        assert {"azure-alb-system", "cert-manager", "edge"} <= set(used)
    for ns, user in sorted(used.items()):
        assert ns in labelled, f"{ns} (used by {user}) is not a labelled Namespace in the {stack} plan"
        labels = labelled[ns]
        assert labels["pod-security.kubernetes.io/enforce"] in ("restricted", "baseline", "privileged"), ns
        assert labels["pod-security.kubernetes.io/audit"] == labels["pod-security.kubernetes.io/warn"] == "restricted"


# ------------------------------------------------------------------------- audit trail
def stack_resources(planned, stack: str = "prod", change=None) -> list[PolicyResource]:
    """The recorded stack as the engine hands it to a stack policy: custom resources with their
    dependencies resolved to resources. ``change(type, name, props)`` may return new props or
    None to drop the resource."""
    regs = [r for r in planned[stack].result.registrations if r.custom]
    by_urn: dict[str, PolicyResource] = {}
    for r in regs:
        props = unwrap(r.inputs)
        if change is not None:
            props = change(r.type, r.name, copy.deepcopy(props))
            if props is None:
                continue
        by_urn[r.urn] = PolicyResource(r.type, props, r.urn, r.name, opts(r.protect), None, None, [], {})
    for r in regs:
        if r.urn in by_urn:
            by_urn[r.urn].dependencies = [by_urn[d] for d in r.dependencies if d in by_urn]
    return list(by_urn.values())


def run_stack_policy(policy, resources: list[PolicyResource], config: dict | None = None) -> list[str]:
    messages: list[str] = []
    policy.validate(
        StackValidationArgs(resources, {**defaults(policy), **(config or {})}), lambda m, u=None: messages.append(m)
    )
    return messages


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_diagnostic_settings_to_workspace(planned, stack):
    policy = audit.diagnostic_settings
    assert run_stack_policy(policy, stack_resources(planned, stack)) == []

    def drop_vault_setting(typ, name, props):
        return None if name == "diag-vault" else props

    one(run_stack_policy(policy, stack_resources(planned, stack, drop_vault_setting)), "keyvault:Vault", "not set")

    def no_guard(typ, name, props):
        if name == "diag-cluster":
            props["logs"] = [log for log in props["logs"] if log["category"] != "guard"]
        return props

    one(run_stack_policy(policy, stack_resources(planned, stack, no_guard)), "diag-cluster", "guard")

    def guard_disabled(typ, name, props):
        if name == "diag-cluster":
            for log in props["logs"]:
                log["enabled"] = log["category"] != "guard"
        return props

    one(run_stack_policy(policy, stack_resources(planned, stack, guard_disabled)), "guard")

    def drop_workspace(typ, name, props):
        if typ == audit.WORKSPACE:
            return None  # no workspace dependency left ...
        if name == "diag-postgres":
            props.pop("workspaceId")  # ... and no workspace id: the setting goes nowhere useful
        return props

    one(run_stack_policy(policy, stack_resources(planned, stack, drop_workspace)), "dbforpostgresql:Server", "not set")


def test_postgres_audit_parameters(planned):
    resources = pg_resources(planned)
    params = {p["configurationName"]: p["value"] for t, p, n in resources if t.endswith("Configuration")}
    assert {k: params.get(k) for k in audit.AUDIT_PARAMETERS} == dict.fromkeys(audit.AUDIT_PARAMETERS, "on")
    assert check_stack(audit.postgres_audit, resources) == []
    off = [
        (t, mutated(p, "value", "off") if p.get("configurationName") == "log_disconnections" else p, n)
        for t, p, n in resources
    ]
    one(check_stack(audit.postgres_audit, off), "log_disconnections", "'off'")
    missing = [r for r in resources if r[1].get("configurationName") != "connection_throttle.enable"]
    one(check_stack(audit.postgres_audit, missing), "connection_throttle.enable", "not set")


def test_aks_defender(planned):
    cfg = CONFIG["prod"]["aks-defender"]
    typ, props = recorded(planned, "containerservice:ManagedCluster")
    assert check(hardening.aks_defender, typ, props, config=cfg) == []
    one(check(hardening.aks_defender, typ, mutated(props, "securityProfile.defender"), config=cfg), "defender")
    unbound = mutated(props, "securityProfile.defender.logAnalyticsWorkspaceResourceId")
    one(check(hardening.aks_defender, typ, unbound, config=cfg), "securityProfile.defender")
    dev_typ, dev_props = (
        planned["dev"].one("containerservice:ManagedCluster").type,
        planned["dev"].inputs("containerservice:ManagedCluster"),
    )
    assert "defender" not in dev_props["securityProfile"]
    assert check(hardening.aks_defender, dev_typ, dev_props, config=CONFIG["dev"]["aks-defender"]) == []
    one(check(hardening.aks_defender, dev_typ, dev_props, config=cfg), "aks.defender")


def test_aks_host_encryption(planned):
    cfg = CONFIG["prod"]["aks-host-encryption"]
    typ, props = recorded(planned, "containerservice:ManagedCluster")
    assert check(hardening.aks_host_encryption, typ, props, config=cfg) == []
    off = copy.deepcopy(props)
    off["agentPoolProfiles"][0]["enableEncryptionAtHost"] = False
    one(
        check(hardening.aks_host_encryption, typ, off, config=cfg),
        "agentPoolProfiles.0.enableEncryptionAtHost",
        "false",
    )
    ptyp, pool = recorded(planned, "containerservice:AgentPool", "user-pool")
    assert check(hardening.aks_host_encryption, ptyp, pool, config=cfg) == []
    one(check(hardening.aks_host_encryption, ptyp, mutated(pool, "enableEncryptionAtHost"), config=cfg), "not set")


def test_stateful_resources_locked(planned):
    policy = hardening.stateful_locked
    cfg = CONFIG["prod"]["stateful-resources-locked"]
    assert run_stack_policy(policy, stack_resources(planned, "prod"), cfg) == []

    def unlock_vault(typ, name, props):
        return None if name == "lock-vault" else props

    one(run_stack_policy(policy, stack_resources(planned, "prod", unlock_vault), cfg), "keyvault:Vault", "lock")

    def read_level_none(typ, name, props):
        if name == "lock-registry":
            props["level"] = "NotSpecified"
        return props

    one(run_stack_policy(policy, stack_resources(planned, "prod", read_level_none), cfg), "containerregistry:Registry")
    # dev has no locks and does not require them
    assert run_stack_policy(policy, stack_resources(planned, "dev"), CONFIG["dev"]["stateful-resources-locked"]) == []
    # the five stateful resources, and Azure Managed Redis (dev has it: bloodbank asks for it)
    assert len(run_stack_policy(policy, stack_resources(planned, "dev"), cfg)) == 6
