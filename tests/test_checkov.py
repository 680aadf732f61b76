"""Checkov (pinned, own virtualenv .tools/checkov) scores what the stacks would deploy.

- The exports it reads: build/<stack>/arm/template.json (dryrun.arm: the plan's azure-native
  resources as ARM) and build/<stack>/k8s/ (dryrun.manifests), plus .github/workflows/.
- Every failed check is fixed or listed in policies/checkov-skips.yaml; unlisted failures and
  stale skips fail.
- Each policy that claims a Checkov id in the README's coverage table reaches Checkov's verdict on
  the same resources: dev, prod and prod variants built to violate each claimed check.
- docs/checkov.md shows the score of this run.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, unwrap
from pulumi.runtime import rpc
from test_policies import CONFIG, check

from dryrun import arm, checkov_scan, manifests
from dryrun.exports import write_exports
from dryrun.runner import run_stack

COVERAGE = yaml.safe_load((ROOT / "policies" / "checkov-coverage.yaml").read_text())
# Every policy of the pack: each module of policies/ with a POLICIES list (__main__ only builds the pack).
POLICIES = {
    p.name: p
    for path in sorted((ROOT / "policies").glob("*.py"))
    if path.stem not in ("__main__", "kit")
    for p in getattr(importlib.import_module(path.stem), "POLICIES", [])
}
DELETE = object()

# One way to violate each claimed check, on a prod resource: check id -> (type suffix, input path, value).
VIOLATIONS: dict[str, list[tuple[str, str, Any]]] = {
    "CKV_AZURE_6": [(":ManagedCluster", "apiServerAccessProfile.authorizedIPRanges", DELETE)],
    "CKV_AZURE_7": [
        (":ManagedCluster", "networkProfile.networkPolicy", DELETE),
        (":ManagedCluster", "networkProfile.networkPolicy", "none"),
    ],
    "CKV_AZURE_141": [(":ManagedCluster", "disableLocalAccounts", False)],
    "CKV_AZURE_171": [(":ManagedCluster", "autoUpgradeProfile.upgradeChannel", "none")],
    "CKV_AZURE_172": [
        (":ManagedCluster", "addonProfiles.azureKeyvaultSecretsProvider.config.enableSecretRotation", "false")
    ],
    "CKV_AZURE_109": [("keyvault:Vault", "properties.networkAcls.defaultAction", "Allow")],
    "CKV_AZURE_42": [("keyvault:Vault", "properties.enablePurgeProtection", False)],
    "CKV_AZURE_110": [("keyvault:Vault", "properties.enablePurgeProtection", False)],
    "CKV_AZURE_41": [("keyvault:Secret", "properties.attributes.expires", DELETE)],
    "CKV_AZURE_114": [("keyvault:Secret", "properties.contentType", DELETE)],
    "CKV_AZURE_227": [
        (":ManagedCluster", "agentPoolProfiles.0.enableEncryptionAtHost", False),
        (":AgentPool", "enableEncryptionAtHost", False),
    ],
}


def coverage_claims() -> dict[str, list[str]]:
    """policy -> Checkov ids, from the README's coverage table (### Coverage)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Coverage") :]
    claims: dict[str, list[str]] = {}
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            claims[cells[0].strip("`")] = re.findall(r"CKV2?_[A-Z0-9]+_\d+", cells[2])
    return claims


def require_checkov() -> Path:
    if checkov_scan.CHECKOV.exists():
        return checkov_scan.CHECKOV
    message = f"{checkov_scan.CHECKOV} is missing (run `make checkov`)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


# ----------------------------------------------------------------------------- violating variants
def _set(props: dict, path: str, value: Any) -> None:
    node: Any = props
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
        if rpc.is_rpc_secret(node):
            node = node["value"]
    if rpc.is_rpc_secret(node.get(last)):
        node = node[last]
        last = "value"
    if value is DELETE:
        node.pop(last)
    else:
        node[last] = value


def variants(prod) -> list:
    """One prod registration per (check, violation), renamed so Checkov reports it apart."""
    out = []
    for check_id, ways in VIOLATIONS.items():
        for i, (suffix, path, value) in enumerate(ways):
            reg = next(r for r in prod.result.registrations if r.type.endswith(suffix))
            inputs = copy.deepcopy(reg.inputs)
            _set(inputs, path, value)
            name_key = arm.TYPES[reg.type].name_keys[-1]
            inputs[name_key] = f"{unwrap(inputs[name_key])}-{check_id.lower().replace('_', '-')}-{i}"
            out.append(dataclasses.replace(reg, urn=f"{reg.urn}::{check_id}-{i}", inputs=inputs, dependencies=[]))
    return out


# ----------------------------------------------------------------------------- the scan
@dataclasses.dataclass
class Scan:
    results: list[checkov_scan.Result]
    exports: dict[str, arm.Export]  # scope (dev, prod, variants) -> export
    registrations: dict[str, dict[str, Any]]  # scope -> urn -> registration

    def stack_results(self) -> list[checkov_scan.Result]:
        return [r for r in self.results if r.scope != "variants"]


@pytest.fixture(scope="session")
def scan(planned, tmp_path_factory) -> Scan:
    checkov = require_checkov()
    root = tmp_path_factory.mktemp("checkov")
    dirs: dict[str, Path] = {}
    exports: dict[str, arm.Export] = {}
    registrations: dict[str, dict[str, Any]] = {}
    # the real stacks, and prod's recovery stack from prod's planned outputs
    results = {stack: p.result for stack, p in planned.items()}
    results["prod-dr"] = run_stack("prod-dr", references={"organization/event-backbone/prod": results["prod"].outputs})
    assert tuple(results) == checkov_scan.STACKS
    for stack, result in results.items():
        dirs[stack] = root / "build" / stack
        write_exports(result, dirs[stack])
        exports[stack] = arm.export(result.registrations, stack)
        registrations[stack] = {r.urn: r for r in result.registrations}
    bad = variants(planned["prod"])
    exports["variants"] = arm.export(bad, "variants")
    registrations["variants"] = {r.urn: r for r in bad}
    dirs["variants"] = root / "build" / "variants"
    (dirs["variants"] / "arm").mkdir(parents=True)
    (dirs["variants"] / "arm" / "template.json").write_text(json.dumps(exports["variants"].template, indent=2))
    results = checkov_scan.run(checkov_scan.stage(dirs, root / "scan"), checkov)
    return Scan(results, exports, registrations)


def test_checkov_is_the_pinned_version():
    checkov = require_checkov()
    out = subprocess.run([str(checkov), "--version"], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == checkov_scan.pinned_version()


def test_every_scope_and_framework_was_scanned(scan):
    seen = {(r.framework, r.scope) for r in scan.results}
    for stack in checkov_scan.STACKS:
        assert ("arm", stack) in seen and ("kubernetes", stack) in seen
    assert ("github_actions", "workflows") in seen
    # every workflow file was read
    files = {r.file for r in scan.results if r.framework == "github_actions"}
    assert {f".github/workflows/{p.name}" for p in checkov_scan.WORKFLOWS.glob("*.yml")} <= files


def test_every_failed_check_is_fixed_or_skipped_with_a_reason(scan):
    skips = checkov_scan.load_skips()
    s = checkov_scan.score(scan.stack_results(), skips)
    assert not s.unskipped, "failed and not in policies/checkov-skips.yaml:\n" + "\n".join(
        f"{r.framework} {r.check_id} {r.file} {r.resource}: {r.check_name}" for r in s.unskipped
    )
    assert not s.stale, f"skips that no longer match a failure (remove them): {s.stale}"


def test_score_counts_skips_and_reports_stale_ones():
    r = checkov_scan.Result
    results = [
        r("arm", "CKV_A", "a", "T.x", "dev/arm/template.json", False),
        r("arm", "CKV_B", "b", "T.x", "dev/arm/template.json", False),
        r("arm", "CKV_C", "c", "T.x", "dev/arm/template.json", True),
        r("arm", "CKV_D", "d", "T.x", "dev/arm/template.json", False),
        r("arm", "CKV_D", "d", "T.x", "prod/arm/template.json", False),
    ]
    skip = checkov_scan.Skip
    skips = {
        "arm": {"CKV_A": skip("why"), "CKV_Z": skip("gone"), "CKV_D": skip("dev only", ("dev",))},
        "kubernetes": {},
        "github_actions": {},
    }
    s = checkov_scan.score(results, skips)
    assert s.counts[("arm", "dev")] == {"passed": 1, "failed": 1, "skipped": 2}
    assert s.counts[("arm", "prod")] == {"passed": 0, "failed": 1, "skipped": 0}
    assert [(x.check_id, x.scope) for x in s.unskipped] == [("CKV_B", "dev"), ("CKV_D", "prod")]
    assert s.stale == [("arm", "CKV_Z")] and not s.ok


def test_skip_file_needs_one_line_reasons(tmp_path):
    bad = tmp_path / "skips.yaml"
    bad.write_text("arm:\n  CKV_AZURE_1: ''\n")
    with pytest.raises(ValueError, match="one-line reason"):
        checkov_scan.load_skips(bad)
    bad.write_text("arm:\n  CKV_AZURE_1: {reason: x, only: [staging]}\n")
    with pytest.raises(ValueError, match="only"):
        checkov_scan.load_skips(bad)
    bad.write_text("terraform: {}\n")
    with pytest.raises(ValueError, match="unknown framework"):
        checkov_scan.load_skips(bad)


def test_docs_show_the_score_of_this_run(scan):
    skips = checkov_scan.load_skips()
    s = checkov_scan.score(scan.stack_results(), skips)
    doc = (ROOT / "docs" / "checkov.md").read_text()
    block = checkov_scan.doc_block(s, skips, scan.results)
    assert block in doc, (
        "docs/checkov.md is stale: run `.venv/bin/python -m dryrun.checkov_scan --docs docs/checkov.md`"
    )


# ----------------------------------------------------------------------------- coverage cross-check
def policy_violated(policy_name: str, reg, scope: str) -> bool:
    policy = POLICIES[policy_name]
    config = CONFIG["prod" if scope == "variants" else scope].get(policy_name, {})
    return bool(check(policy, reg.type, unwrap(reg.inputs), name=reg.name, protect=reg.protect, config=config))


def verdicts(scan: Scan, policy: str, check_id: str) -> list[tuple[str, bool, bool]]:
    """(resource, policy violated, Checkov failed) for every resource of dev and prod, and every
    variant built to violate this check, that Checkov evaluated. (A policy may check more than its
    counterpart does, e.g. expiry *and* content type, so variants built for other checks are not
    compared.)"""
    out = []
    for r in scan.results:
        if r.framework != "arm" or r.check_id != check_id:
            continue
        urns = scan.exports[r.scope].urns[r.resource]
        if r.scope == "variants" and not any(re.search(f"::{check_id}-\\d+$", u) for u in urns):
            continue
        violated = any(policy_violated(policy, scan.registrations[r.scope][u], r.scope) for u in urns)
        out.append((f"{r.scope}:{r.resource}", violated, not r.passed))
    return out


def test_coverage_table_names_real_policies_and_checks():
    claims = coverage_claims()
    assert claims, "no coverage table found under ### Coverage in README.md"
    claiming = {policy for policy, ids in claims.items() if ids}
    assert claiming <= set(POLICIES), (
        f"policies that claim a Checkov id but are not in the pack: {claiming - set(POLICIES)}"
    )
    claimed = {cid for ids in claims.values() for cid in ids}
    listed = set(COVERAGE["not-evaluated"]) | set(COVERAGE["disagrees"])
    assert listed <= claimed, f"policies/checkov-coverage.yaml lists unclaimed ids: {listed - claimed}"
    assert (claimed - set(COVERAGE["not-evaluated"])) <= set(VIOLATIONS), "claimed ids without a violating variant"


def test_each_claimed_checkov_id_agrees_with_its_policy(scan):
    problems = []
    for policy, ids in coverage_claims().items():
        for check_id in ids:
            found = verdicts(scan, policy, check_id)
            if check_id in COVERAGE["not-evaluated"]:
                if found:
                    problems.append(f"{check_id} is listed as not evaluated but Checkov evaluated {found}")
                continue
            if not found:
                problems.append(f"{policy}/{check_id}: Checkov evaluated no resource (list it under not-evaluated)")
                continue
            assert any(c for _, _, c in found), f"{check_id}: no violating variant tripped Checkov ({found})"
            assert any(p for _, p, _ in found), f"{policy}: no violating variant tripped the policy ({found})"
            disagreements = [f for f in found if f[1] != f[2]]
            if check_id in COVERAGE["disagrees"] and not disagreements:
                problems.append(f"{policy}/{check_id} is listed as disagreeing but agrees on {len(found)} resources")
            if check_id not in COVERAGE["disagrees"] and disagreements:
                problems.append(
                    f"{policy}/{check_id} disagrees (resource, policy violated, Checkov failed): {disagreements}"
                )
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- the exports themselves
def test_arm_export_covers_every_azure_resource(stack):
    exported = arm.export(stack.result.registrations, stack.stack)
    assert exported.unmapped == []
    expected = [r for r in stack.result.registrations if r.type in arm.TYPES]
    assert len(exported.template["resources"]) == len(expected) == sum(len(u) for u in exported.urns.values())
    skipped = {r.type for r in stack.result.registrations if r.type.startswith("azure-native:")} - set(arm.TYPES)
    assert skipped <= set(arm.NOT_IN_TEMPLATE)


def test_arm_types_match_the_sdk():
    import importlib
    import inspect

    for token, spec in arm.TYPES.items():
        _, module, kind = token.split(":")
        cls = getattr(importlib.import_module(f"pulumi_azure_native.{module}"), kind)
        params = inspect.signature(cls._internal_init).parameters
        for key in (*spec.name_keys, *(k for k in [spec.scope_key, spec.type_key] if k), *spec.dropped):
            snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
            assert snake in params or f"{snake}_" in params, f"{token}: {key} is not an SDK argument"
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}(-preview)?", arm.api_version(token))


def test_arm_resource_nesting(planned):
    exported = arm.export(planned["prod"].result.registrations, "prod")
    by_type = {}
    for res in exported.template["resources"]:
        by_type.setdefault(res["type"], []).append(res)
    aks = by_type["Microsoft.ContainerService/managedClusters"][0]
    assert aks["apiVersion"] == arm.api_version("azure-native:containerservice:ManagedCluster")
    assert aks["name"] == "ebb-prod-aks" and aks["location"] == "westeurope"
    assert aks["sku"] == {"tier": "Standard", "name": "Base"}  # envelope, not properties
    assert "agentPoolProfiles" in aks["properties"] and "resourceName" not in aks["properties"]
    assert "resourceGroupName" not in aks and "resourceGroupName" not in aks["properties"]
    assert isinstance(aks["identity"]["userAssignedIdentities"], dict)  # ARM: map of ID -> {}
    workspace = by_type["Microsoft.OperationalInsights/workspaces"][0]
    assert "sku" not in workspace and workspace["properties"]["sku"] == {"name": "PerGB2018"}
    pool = by_type["Microsoft.ContainerService/managedClusters/agentPools"][0]
    assert pool["name"] == "ebb-prod-aks/user" and "location" not in pool
    assert pool["properties"]["availabilityZones"] == ["1", "2", "3"]
    secret = next(s for s in by_type["Microsoft.KeyVault/vaults/secrets"] if s["name"].endswith("/postgres-admin"))
    assert secret["properties"]["attributes"]["exp"] > 0 and "expires" not in secret["properties"]["attributes"]
    assert secret["properties"]["value"].startswith("[parameters('secret")
    assert exported.template["parameters"][secret["properties"]["value"][13:-3]]["type"] == "securestring"
    role = by_type["Microsoft.Authorization/roleAssignments"][0]
    assert role["scope"].startswith("/subscriptions/") and "scope" not in role["properties"]
    text = json.dumps(exported.template)
    assert not any(s in text for s in planned["prod"].result.generated_secrets)


def test_arm_values_are_escaped_and_secrets_become_parameters():
    params = arm._Parameters()
    secret = {rpc._special_sig_key: rpc._special_secret_sig, "value": {"value": "s3cret", "contentType": "text/plain"}}
    out = arm._value({"a": "[not an expression]", "p": secret, "u": rpc.UNKNOWN, "n": 3.0}, params, "x")
    assert out["a"] == "[[not an expression]"
    assert out["p"] == {"value": "[parameters('secret1')]", "contentType": "text/plain"}
    assert out["u"] == "[parameters('unknown1')]" and out["n"] == 3
    assert params.parameters["secret1"]["type"] == "securestring"


def test_manifests_hold_the_stack_objects_without_secret_values(stack):
    out = manifests.export(stack.result.registrations)
    objects = [yaml.safe_load(v) for k, v in out.files.items() if k.endswith(".yaml")]
    k8s = [r for r in stack.result.registrations if r.type.startswith("kubernetes:")]
    assert len(objects) == len([r for r in k8s if r.type not in manifests.NOT_MANIFESTS])
    assert all(o["apiVersion"] and o["kind"] and o["metadata"]["name"] for o in objects)
    releases = [r.name for r in k8s if r.type == "kubernetes:helm.sh/v3:Release"]
    assert releases and all(name in out.files["NOT-SCANNED.txt"] for name in releases)
    secrets = [o for o in objects if o["kind"] == "Secret"]
    assert secrets and all(set(o.get("stringData", {}).values()) <= {manifests.SECRET} for o in secrets)
    text = "".join(out.files.values())
    assert not any(s in text for s in stack.result.generated_secrets)
    assert manifests.api_version_kind("kubernetes:core/v1:Namespace") == ("v1", "Namespace")
    assert manifests.api_version_kind("kubernetes:networking.k8s.io/v1:NetworkPolicy") == (
        "networking.k8s.io/v1",
        "NetworkPolicy",
    )


def test_make_plan_writes_the_exports(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dryrun", "dev", "--no-policy", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    template = json.loads((tmp_path / "arm" / "template.json").read_text())
    assert template["$schema"] == arm.SCHEMA and template["resources"]
    assert (tmp_path / "k8s" / "_cluster" / "namespace-messaging.yaml").is_file()
    assert "wrote " + str(tmp_path / "arm" / "template.json") in proc.stdout


def test_arm_api_version_is_read_from_the_class_statement_as_inspect_reads_it():
    import importlib
    import inspect

    for token in arm.TYPES:
        _, module, kind = token.split(":")
        cls = getattr(importlib.import_module(f"pulumi_azure_native.{module}"), kind)
        mine, theirs = arm._class_source(cls), inspect.getsource(cls)  # theirs starts at the decorators
        assert mine.startswith(theirs[theirs.index(f"class {kind}(") :].rstrip()), token  # mine: up to the next class
        assert arm._API_VERSION.findall(mine) == arm._API_VERSION.findall(theirs), token


def test_manifests_are_the_documents_yaml_safe_dump_writes(stack, monkeypatch):
    """The k8s/ files come from libyaml's emitter; they load as exactly the documents PyYAML's own
    emitter (yaml.safe_dump) writes, only wrapped differently."""
    import yaml

    from dryrun import manifests

    assert manifests._DUMPER is yaml.CSafeDumper  # the fast path is the one in use
    fast = manifests.export(stack.result.registrations).files
    monkeypatch.setattr(manifests, "_DUMPER", yaml.SafeDumper)
    slow = manifests.export(stack.result.registrations).files
    assert sorted(fast) == sorted(slow) and len(fast) > 50
    for path in fast:
        if path.endswith(".yaml"):
            assert yaml.safe_load(fast[path]) == yaml.safe_load(slow[path]), path
