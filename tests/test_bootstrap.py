"""The bootstrap (bootstrap/): its settings, the rights of each identity as its offline plan records
them, the files generated from the main plans and from its outputs, and its policy gate."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys

import pytest
import yaml
from bootstrap_plan import bootstrap_plan
from conftest import ROOT, Planned, unwrap

from bootstrap import generate, roles
from bootstrap.policies.rules import condition_roles
from bootstrap.program import DECRYPT_DATA_ACTIONS, GITHUB_ISSUER, PREVIEW_ENVIRONMENTS
from dryrun.runner import config_from_yaml, run_stack

STACK_FILE = ROOT / "bootstrap" / "Pulumi.platform.yaml"
NEEDS = roles.read_needs()


def stack_settings() -> dict:
    return yaml.safe_load(STACK_FILE.read_text())["config"]


def principals() -> dict[str, str]:
    out = bootstrap_plan().outputs
    ids = {f"deploy-{env}": e["deployPrincipalId"] for env, e in out["environments"].items()}
    ids["preview"] = out["preview"]["principalId"]
    return ids


def rights(principal: str) -> set[tuple[str, str]]:
    """(role GUID, scope) of every grant to one principal."""
    return {(g["role"], g["scope"]) for g in bootstrap_plan().grants().values() if g["principalId"] == principal}


def sub(env: str) -> str:
    return f"/subscriptions/{stack_settings()['event-backbone-bootstrap:environments'][env]['subscriptionId']}"


def container(env: str) -> str:
    (account,) = bootstrap_plan().of_type("storage:StorageAccount")
    rid = (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ebb-boot-rg/providers/"
        f"Microsoft.Storage/storageAccounts/{unwrap(account.inputs)['accountName']}"
    )
    return f"{rid}/blobServices/default/containers/state-{env}"


def key(env: str) -> str:
    (vault,) = bootstrap_plan().of_type("keyvault:Vault")
    vault_name = unwrap(vault.inputs)["vaultName"]
    return (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ebb-boot-rg/providers/"
        f"Microsoft.Keyvault/vaults/{vault_name}/keys/pulumi-{env}"
    )


# ------------------------------------------------------------------------- identities and their rights
def test_each_identity_is_federated_to_exactly_its_own_github_subject():
    plan = bootstrap_plan()
    cfg = stack_settings()
    gh = cfg["event-backbone-bootstrap:github"]
    slug = f"{gh['owner']}/{gh['repository']}"
    envs = cfg["event-backbone-bootstrap:environments"]
    creds = {r.name: unwrap(r.inputs) for r in plan.of_type("managedidentity:FederatedIdentityCredential")}
    expected = {f"fic-deploy-{env}": f"repo:{slug}:environment:{t['githubEnvironment']}" for env, t in envs.items()}
    expected["fic-preview"] = f"repo:{slug}:pull_request"
    assert {n: c["subject"] for n, c in creds.items()} == expected
    for c in creds.values():
        assert c["issuer"] == GITHUB_ISSUER and c["audiences"] == ["api://AzureADTokenExchange"]
    # one credential per identity: no second subject can log in as any of them
    assert sorted(c["resourceName"] for c in creds.values()) == sorted(
        unwrap(r.inputs)["resourceName"] for r in plan.of_type("managedidentity:UserAssignedIdentity")
    )


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_deploy_identity_rights_are_exactly_what_its_stack_needs(env):
    expected = {
        (roles.CONTRIBUTOR, sub(env)),
        (roles.AKS_RBAC_CLUSTER_ADMIN, sub(env)),
        (roles.custom_role_guid(f"deploy-{env}-authorization-writes"), sub(env)),
        (roles.RBAC_ADMINISTRATOR, sub(env)),
        (roles.STORAGE_BLOB_DATA_CONTRIBUTOR, container(env)),
        (roles.KEY_VAULT_CRYPTO_USER, key(env)),
    }
    assert rights(principals()[f"deploy-{env}"]) == expected
    grants = bootstrap_plan().grants()
    admin = grants[f"deploy-{env}-rbac-administrator"]
    # the condition names exactly the roles the main plan assigns (main-stack-needs.json)
    assert condition_roles(admin["condition"]) == NEEDS[env]["roleDefinitionIds"]
    assert bootstrap_plan().inputs(f"deploy-{env}-rbac-administrator")["conditionVersion"] == "2.0"
    definition = bootstrap_plan().inputs(f"deploy-{env}-authorization-writes", "RoleDefinition")
    assert definition["permissions"] == [{"actions": NEEDS[env]["authorizationActions"]}]
    assert definition["assignableScopes"] == [sub(env)]
    assert {g["principalType"] for g in grants.values() if g["principalId"] == principals()[f"deploy-{env}"]} == {
        "ServicePrincipal"
    }


def test_preview_identity_reads_dev_only():
    expected = {
        (roles.READER, sub("dev")),
        (roles.AKS_CLUSTER_USER, sub("dev")),
        (roles.AKS_RBAC_READER, sub("dev")),
        (roles.STORAGE_BLOB_DATA_READER, container("dev")),
        (roles.custom_role_guid("preview-secrets-decrypt"), key("dev")),
    }
    got = rights(principals()["preview"])
    assert got == expected
    assert not any("prod" in scope or scope == sub("prod") for _, scope in got)
    decrypt = bootstrap_plan().inputs("preview-secrets-decrypt")
    assert decrypt["permissions"] == [{"dataActions": DECRYPT_DATA_ACTIONS}]
    assert PREVIEW_ENVIRONMENTS == ("dev",)


def test_preview_rights_are_what_a_preview_of_dev_uses(planned):
    """Each right of the preview identity, proven from the dev plan: the provider functions the
    program calls, the secret config and state, the Kubernetes objects the provider reads."""
    dev = planned["dev"]
    invokes = {token for token, _ in dev.result.invokes}
    needed = {  # provider function -> the role that allows it (None: no role needed)
        "azure-native:authorization:getClientConfig": None,  # reads the caller's own token
        "azure-native:containerservice:listManagedClusterUserCredentials": roles.AKS_CLUSTER_USER,
    }
    assert invokes <= set(needed), f"a preview calls {sorted(invokes - set(needed))}: which right does it need?"
    granted = {role for role, _ in rights(principals()["preview"])}
    assert {needed[i] for i in invokes} - {None} <= granted
    # secret config (the stack file's secure: values) and secrets in state: the CLI decrypts the
    # stack's data key with the secrets provider (Decrypt), so the preview needs decrypt on dev's key
    _, secret_keys = config_from_yaml((ROOT / "Pulumi.dev.yaml").read_text())
    assert secret_keys and dev.result.generated_secrets
    assert roles.custom_role_guid("preview-secrets-decrypt") in granted
    # the Kubernetes provider diffs the live objects: in-cluster reads
    assert any(r.type.startswith("kubernetes:") for r in dev.result.registrations)
    assert roles.AKS_RBAC_READER in granted
    # its state: read only (a DIY backend's preview takes no lock and writes nothing)
    assert roles.STORAGE_BLOB_DATA_READER in granted and roles.STORAGE_BLOB_DATA_CONTRIBUTOR not in granted


def test_secrets_provider_keys_are_usable_only_by_their_stack_and_the_admins():
    grants = bootstrap_plan().grants()
    ids = principals()
    on_key = {
        env: {(g["principalId"], g["role"]) for g in grants.values() if g["scope"] == key(env)}
        for env in NEEDS
        if env != "comment"
    }
    assert on_key["prod"] == {(ids["deploy-prod"], roles.KEY_VAULT_CRYPTO_USER)}
    assert on_key["dev"] == {
        (ids["deploy-dev"], roles.KEY_VAULT_CRYPTO_USER),
        (ids["preview"], roles.custom_role_guid("preview-secrets-decrypt")),  # decrypt only
    }
    (vault,) = bootstrap_plan().of_type("keyvault:Vault")
    vault_scope = key("dev").rsplit("/keys/", 1)[0]
    admins = stack_settings()["event-backbone-bootstrap:platformAdminObjectIds"]
    at_vault = {(g["principalId"], g["role"], g["principalType"]) for g in grants.values() if g["scope"] == vault_scope}
    assert at_vault == {(a, roles.KEY_VAULT_CRYPTO_OFFICER, "Group") for a in admins}
    assert unwrap(vault.inputs)["properties"]["enableRbacAuthorization"] is True
    assert unwrap(vault.inputs)["properties"]["enablePurgeProtection"] is True


def test_no_identity_holds_owner_or_user_access_administrator():
    assert {g["role"] for g in bootstrap_plan().grants().values()}.isdisjoint(
        {roles.OWNER, roles.USER_ACCESS_ADMINISTRATOR}
    )
    rbac_admins = [g for g in bootstrap_plan().grants().values() if g["role"] == roles.RBAC_ADMINISTRATOR]
    assert len(rbac_admins) == 2 and all(condition_roles(g["condition"] or "") for g in rbac_admins)


def test_state_backend_outputs_and_hardening():
    out = bootstrap_plan().outputs
    (account,) = bootstrap_plan().of_type("storage:StorageAccount")
    name = unwrap(account.inputs)["accountName"]
    for env in ("dev", "prod"):
        assert out["environments"][env]["backendUrl"] == f"azblob://state-{env}?storage_account={name}"
        assert out["environments"][env]["secretsProvider"].endswith(f".vault.azure.net/keys/pulumi-{env}")
        assert out["environments"][env]["secretsProvider"].startswith("azurekeyvault://")
    props = unwrap(account.inputs)
    assert props["allowSharedKeyAccess"] is False and props["allowBlobPublicAccess"] is False
    # zones and the paired region: the recovery stack needs the state while prod's region is down
    assert props["sku"] == {"name": "Standard_GZRS"}
    assert account.protect


# ------------------------------------------------------------------------- generated files
def test_main_stack_needs_file_is_what_the_main_plans_give(planned, tmp_path):
    # prod's recovery stack is deployed by prod's identity: its needs are part of prod's
    recovery = run_stack("prod-dr", references={"organization/event-backbone/prod": planned["prod"].result.outputs})
    docs = {stack: planned[stack].doc for stack in ("dev", "prod")} | {
        "prod-dr": Planned(recovery, tmp_path / "prod-dr").doc
    }
    assert generate.ENVIRONMENT_OF["prod-dr"] == "prod"
    assert roles.NEEDS_FILE.read_text() == roles.needs_document(docs, generate.ENVIRONMENT_OF), (
        "run: python -m bootstrap.generate needs"
    )
    assert set(json.loads(roles.NEEDS_FILE.read_text())) == {"comment", "dev", "prod"}
    # and it is not empty: the main stack does assign roles
    assert len(NEEDS["prod"]["roleDefinitionIds"]) >= 5


def test_main_stack_needs_refuses_a_privileged_role(planned):
    doc = copy.deepcopy(planned["dev"].doc)
    ra = next(r for r in doc["resources"] if r["type"] == roles.ROLE_ASSIGNMENT)
    ra["inputs"]["roleDefinitionId"] = f"/providers/Microsoft.Authorization/roleDefinitions/{roles.OWNER}"
    with pytest.raises(ValueError, match="Owner"):
        roles.main_stack_needs(doc)


def test_outputs_file_is_the_bootstrap_outputs():
    """bootstrap/outputs.json: the offline plan's outputs, or (after the real bootstrap) the real
    stack's, with the same keys everywhere."""
    doc = json.loads(generate.OUTPUTS_FILE.read_text())
    planned_outputs = json.loads(json.dumps(bootstrap_plan().outputs))
    if doc["source"] == generate.OFFLINE:
        assert doc["outputs"] == planned_outputs, "run: make plan-bootstrap && python -m bootstrap.generate outputs"
    else:
        assert doc["source"] == generate.REAL

        def keys(d, prefix=""):
            return {prefix + k for k in d} | {
                x for k, v in d.items() if isinstance(v, dict) for x in keys(v, f"{prefix}{k}.")
            }

        assert keys(doc["outputs"]) == keys(planned_outputs)


@pytest.mark.parametrize("stack", ["dev", "prod", "prod-dr"])
def test_policy_config_is_generated_from_the_bootstrap_outputs(stack):
    path = ROOT / "policies" / f"config.{stack}.json"
    text = path.read_text()
    outputs = generate.read_outputs()
    env = generate.ENVIRONMENT_OF[stack]  # prod-dr: deployed by prod's identity
    assert text == generate.render_config(text, stack, outputs), "run: python -m bootstrap.generate policy-config"
    cfg = json.loads(text)
    assert cfg["keyvault-no-vault-wide-data-access"]["deployerObjectIds"] == [
        outputs["environments"][env]["deployPrincipalId"]
    ]
    assert cfg["role-assignments-assignable"]["assignableRoleDefinitionIds"] == NEEDS[env]["roleDefinitionIds"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_main_plan_runs_as_the_bootstrap_deploy_identity(planned, stack):
    officer = planned[stack].inputs("authorization:RoleAssignment", "deployer-secrets-officer")
    assert officer["principalId"] == generate.read_outputs()["environments"][stack]["deployPrincipalId"]
    assert officer["principalType"] == "ServicePrincipal"  # what ARM requires of a managed identity


# ------------------------------------------------------------------------- settings
def run_bootstrap(tmp_path, config: dict, *extra: str) -> subprocess.CompletedProcess:
    doc = yaml.safe_load(STACK_FILE.read_text())
    doc["config"] = config
    path = tmp_path / "Pulumi.platform.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return subprocess.run(
        [sys.executable, "-m", "dryrun.bootstrap", "--stack-file", str(path), "--out", str(tmp_path / "out"), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bad_bootstrap_config_gives_one_line_per_problem_and_plans_nothing(tmp_path):
    cfg = copy.deepcopy(stack_settings())
    ns = "event-backbone-bootstrap"
    envs = cfg[f"{ns}:environments"]
    envs["prod"]["subscriptionId"] = envs["dev"]["subscriptionId"]
    del cfg[f"{ns}:github"]["owner"]
    cfg[f"{ns}:platformAdminObjectIds"] = ["platform-admins"]
    cfg["event-backbone-bootstrp:location"] = "westeurope"
    proc = run_bootstrap(tmp_path, cfg)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    f = str(tmp_path / "Pulumi.platform.yaml")
    allowed = f"{ns}:, azure-native:, pulumi:, random:"
    assert f"{f}: event-backbone-bootstrp:location is not a known namespace; allowed: {allowed}" in lines
    assert f"{f}: {ns}:github.owner is required" in lines
    assert any(
        line.startswith(f"{f}: {ns}:platformAdminObjectIds[0] must be") and "'platform-admins'" in line
        for line in lines
    )
    assert len(lines) == 3, lines  # the subscription rule waits on the shape errors
    assert not (tmp_path / "out" / "plan.json").exists()


def test_a_shared_subscription_is_refused_before_any_resource(tmp_path):
    from components.settings import ConfigError
    from dryrun.bootstrap import plan_bootstrap

    doc = yaml.safe_load(STACK_FILE.read_text())
    envs = doc["config"]["event-backbone-bootstrap:environments"]
    envs["prod"]["subscriptionId"] = envs["dev"]["subscriptionId"]
    with pytest.raises(ConfigError) as exc:
        plan_bootstrap(stack_text=yaml.safe_dump(doc))
    assert exc.value.registered == []
    (line,) = exc.value.lines
    assert "event-backbone-bootstrap:environments must give each environment its own subscriptionId" in line


# ------------------------------------------------------------------------- the gate, through the protocol
def findings(registrations) -> dict[str, list[str]]:
    from dryrun.policy_host import run_pack

    pack = ROOT / "bootstrap" / "policies"
    out: dict[str, list[str]] = {}
    for f in run_pack(pack, pack / "config.json", registrations):
        assert f.enforcement_level == "mandatory"
        out.setdefault(f.policy, []).append(f.message)
    return out


def tampered(name: str, change) -> list:
    regs = list(bootstrap_plan().result.registrations)
    i = next(i for i, r in enumerate(regs) if r.name == name)
    inputs = copy.deepcopy(regs[i].inputs)
    change(inputs)
    regs[i] = dataclasses.replace(regs[i], inputs=inputs)
    return regs


def test_bootstrap_plan_passes_its_gate_and_every_policy_is_mandatory():
    from dryrun.policy_host import PolicyHost

    with PolicyHost(ROOT / "bootstrap" / "policies") as host:
        assert host.info.name == "event-backbone-bootstrap"
        assert {p.name for p in host.info.policies} == {
            "state-storage-hardened",
            "no-owner-or-user-access-administrator",
            "rbac-administrator-conditioned",
        }
        assert all(p.enforcementLevel == 1 for p in host.info.policies)
    assert findings(bootstrap_plan().result.registrations) == {}


@pytest.mark.parametrize(
    ("name", "change", "expected"),
    [
        ("state", lambda i: i.update(allowSharedKeyAccess=True), "allowSharedKeyAccess is true"),
        ("state", lambda i: i.pop("allowSharedKeyAccess"), "allowSharedKeyAccess is not set"),
        ("state", lambda i: i.update(minimumTlsVersion="TLS1_0"), "minimumTlsVersion is 'TLS1_0'"),
        ("state", lambda i: i.update(allowBlobPublicAccess=True), "allowBlobPublicAccess is true"),
        ("state-blob-service", lambda i: i.update(isVersioningEnabled=False), "isVersioningEnabled is false"),
        ("state-blob-service", lambda i: i["deleteRetentionPolicy"].update(days=3), "deleteRetentionPolicy"),
        ("state-blob-service", lambda i: i.pop("containerDeleteRetentionPolicy"), "containerDeleteRetentionPolicy"),
        ("state-lock", lambda i: i.update(level="ReadOnly"), "lock is not set"),
    ],
)
def test_state_storage_policy_trips(name, change, expected):
    found = findings(tampered(name, change))
    assert list(found) == ["state-storage-hardened"], found
    assert any(expected in m and "Fix:" in m for m in found["state-storage-hardened"]), found


@pytest.mark.parametrize("role", [roles.OWNER, roles.USER_ACCESS_ADMINISTRATOR])
def test_owner_or_uaa_grant_trips(role):
    def to(i):
        i["roleDefinitionId"] = i["roleDefinitionId"].rsplit("/", 1)[0] + "/" + role

    found = findings(tampered("deploy-dev-contributor", to))
    assert list(found) == ["no-owner-or-user-access-administrator"]
    assert roles.PRIVILEGED[role] in found["no-owner-or-user-access-administrator"][0]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda i: i.pop("condition"), "condition is not set"),
        (lambda i: i.update(conditionVersion="1.0"), "conditionVersion is '1.0'"),
        (  # only the write half: deleting any role assignment would stay open
            lambda i: i.update(condition=i["condition"].split(" AND ")[0]),
            "constrain both roleAssignments/write",
        ),
        (
            lambda i: i.update(condition=roles.assignment_condition([*condition_roles(i["condition"]), roles.OWNER])),
            "lets it assign Owner",
        ),
    ],
)
def test_unconditioned_rbac_administrator_trips(change, expected):
    found = findings(tampered("deploy-prod-rbac-administrator", change))
    assert list(found) == ["rbac-administrator-conditioned"], found
    assert any(expected in m for m in found["rbac-administrator-conditioned"]), found


def test_main_stack_role_outside_the_assignable_set_trips(planned):
    from dryrun.policy_host import run_pack

    regs = list(planned["prod"].result.registrations)
    i = next(i for i, r in enumerate(regs) if r.name == "deployer-secrets-officer")
    inputs = copy.deepcopy(regs[i].inputs)
    inputs["roleDefinitionId"] = inputs["roleDefinitionId"].rsplit("/", 1)[0] + "/" + roles.CONTRIBUTOR
    regs[i] = dataclasses.replace(regs[i], inputs=inputs)
    found = run_pack(ROOT / "policies", ROOT / "policies" / "config.prod.json", regs)
    mandatory = [f for f in found if f.enforcement_level == "mandatory"]
    assert {f.policy for f in mandatory} == {"role-assignments-assignable"}, [f.message for f in mandatory]
    assert roles.CONTRIBUTOR in mandatory[0].message and "bootstrap.generate" in mandatory[0].message


def test_pulumi_cloud_backend_creates_no_storage_and_grants_no_blob_rights():
    from dryrun.bootstrap import plan_bootstrap

    doc = yaml.safe_load(STACK_FILE.read_text())
    doc["config"]["event-backbone-bootstrap:stateBackend"] = {"kind": "pulumi-cloud"}
    result = plan_bootstrap(stack_text=yaml.safe_dump(doc))
    types = {r.type for r in result.registrations}
    assert not any(t.startswith("azure-native:storage:") for t in types)
    blob_roles = {roles.STORAGE_BLOB_DATA_CONTRIBUTOR, roles.STORAGE_BLOB_DATA_READER}
    granted = {
        unwrap(r.inputs)["roleDefinitionId"].rsplit("/", 1)[-1]
        for r in result.registrations
        if r.type.endswith("RoleAssignment")
    }
    assert granted.isdisjoint(blob_roles) and roles.RBAC_ADMINISTRATOR in granted
    outputs = unwrap(result.outputs)
    assert {e["backendUrl"] for e in outputs["environments"].values()} == {"https://api.pulumi.com"}
    assert findings(result.registrations) == {}


def test_the_custom_roles_the_main_stacks_assign_are_the_bootstraps(planned):
    """Each custom role a main plan assigns is created by the bootstrap plan, with the same GUID
    in that environment's subscription; a main plan that writes a role definition is refused
    (a deploy identity that could would rewrite an assignable role into anything)."""
    from components import custom_roles

    created = {
        str(unwrap(r.inputs)["roleDefinitionId"]): unwrap(r.inputs)
        for r in bootstrap_plan().of_type("authorization:RoleDefinition")
    }
    for stack in ("dev", "prod"):
        p = planned[stack]
        s = p.settings
        customs = custom_roles.definitions(s.environment)
        assigned = {
            str(unwrap(r.inputs)["roleDefinitionId"]).rsplit("/", 1)[-1]
            for r in p.of_type("authorization:RoleAssignment")
        }
        assert set(customs) <= assigned, stack
        assert set(customs) <= set(roles.read_needs()[stack]["roleDefinitionIds"])
        for guid, custom in customs.items():
            role = created[guid]
            assert role["permissions"] == [{"actions": custom.actions}], stack
            assert role["assignableScopes"] == [role["scope"]] and role["scope"].startswith("/subscriptions/")
        doc = copy.deepcopy(p.doc)
        doc["resources"].append({"type": "azure-native:authorization:RoleDefinition", "name": "rogue", "inputs": {}})
        with pytest.raises(ValueError, match="role definitions come from the bootstrap"):
            roles.main_stack_needs(doc)
