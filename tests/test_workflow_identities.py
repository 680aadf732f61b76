"""No workflow job triggered by a pull request can reach a write-capable identity.

For every job of every workflow: the OIDC subject GitHub would issue it (an ``environment:`` job
gets ``repo:<slug>:environment:<name>``, any other job of a ``pull_request`` run gets
``repo:<slug>:pull_request``), the identities of the bootstrap's plan whose federated credential
accepts that subject, and those identities' role assignments. A pull-request job may match only
the preview identity, whose roles are all read-only; it runs ``preview`` and nothing that writes."""

from __future__ import annotations

import re
from typing import Any

import yaml
from bootstrap_plan import bootstrap_plan
from conftest import ROOT, unwrap

from bootstrap import roles

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PR_TRIGGERS = {"pull_request", "pull_request_target"}
# Built-in roles without a write action or data action (their definitions: Reader */read; the
# AKS Cluster User Role only listClusterUserCredential; AKS RBAC Reader reads, no Secrets;
# Storage Blob Data Reader reads blobs).
READ_ONLY = {roles.READER, roles.AKS_CLUSTER_USER, roles.AKS_RBAC_READER, roles.STORAGE_BLOB_DATA_READER}
WRITE_COMMANDS = re.compile(r"\bpulumi\s+(up|update|destroy|refresh|import|state|stack\s+(rm|import)|cancel)\b")


def load(path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def triggers(doc: dict) -> set[str]:
    on = doc["on"]
    return {on} if isinstance(on, str) else set(on)


def slug() -> str:
    gh = yaml.safe_load((ROOT / "bootstrap" / "Pulumi.platform.yaml").read_text())["config"]
    repo = gh["event-backbone-bootstrap:github"]
    return f"{repo['owner']}/{repo['repository']}"


def environments_of(job: dict) -> list[str]:
    """The GitHub environments a job runs in (a matrix expression expanded)."""
    env = job.get("environment")
    if env is None:
        return []
    name = env["name"] if isinstance(env, dict) else env
    m = re.fullmatch(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", name)
    if not m:
        return [name]
    return [i[m.group(1)] for i in job["strategy"]["matrix"]["include"]]


def subjects(job: dict, event: str) -> set[str]:
    envs = environments_of(job)
    if envs:
        return {f"repo:{slug()}:environment:{e}" for e in envs}
    if event in PR_TRIGGERS:
        return {f"repo:{slug()}:pull_request"}
    return {f"repo:{slug()}:ref:refs/heads/main"}


def identities_for(subject: str) -> set[str]:
    """The principal IDs of the identities whose federated credential accepts the subject."""
    plan = bootstrap_plan()
    by_name = {unwrap(r.inputs)["resourceName"]: r.urn for r in plan.of_type("managedidentity:UserAssignedIdentity")}
    principal = {}
    out = plan.outputs
    for env, e in out["environments"].items():
        principal[f"ebb-boot-id-deploy-{env}"] = e["deployPrincipalId"]
    principal["ebb-boot-id-preview"] = out["preview"]["principalId"]
    assert set(principal) == set(by_name)
    return {
        principal[unwrap(c.inputs)["resourceName"]]
        for c in plan.of_type("managedidentity:FederatedIdentityCredential")
        if unwrap(c.inputs)["subject"] == subject
    }


def write_capable(principal: str) -> list[str]:
    """The role assignments of a principal that can write anything (control or data plane)."""
    plan = bootstrap_plan()
    custom = {
        unwrap(r.inputs)["roleDefinitionId"]: unwrap(r.inputs)["permissions"]
        for r in plan.of_type("authorization:RoleDefinition")
    }
    found = []
    for name, g in plan.grants().items():
        if g["principalId"] != principal:
            continue
        if g["role"] in READ_ONLY:
            continue
        perms = custom.get(g["role"])
        if perms is not None:
            verbs = [a for p in perms for a in p.get("actions", []) + p.get("dataActions", [])]
            if verbs and all(a.endswith("/read") or a.endswith("/decrypt/action") for a in verbs):
                continue
        found.append(f"{name} ({roles.NAMES.get(g['role'], g['role'])})")
    return found


def jobs():
    for path in WORKFLOWS:
        doc = load(path)
        for name, job in doc["jobs"].items():
            yield path.name, triggers(doc), name, job


def test_every_workflow_is_seen_and_none_runs_on_pull_request_target():
    seen = {name for name, *_ in jobs()}
    assert {"pr.yml", "main.yml"} <= seen
    assert not any("pull_request_target" in t for _, t, _, _ in jobs())  # base-repository rights for fork code


def test_no_pull_request_job_can_reach_a_write_capable_identity():
    checked = 0
    for wf, trig, name, job in jobs():
        for event in trig & PR_TRIGGERS:
            assert "environment" not in job, f"{wf}:{name} runs on {event} in an environment"
            for subject in subjects(job, event):
                for principal in identities_for(subject):
                    assert write_capable(principal) == [], f"{wf}:{name} ({subject}) reaches write rights"
                    checked += 1
    assert checked >= 1  # the preview job does log in, with the preview identity


def test_pull_request_jobs_log_in_with_the_preview_identity_and_only_preview():
    logins = 0
    for wf, trig, name, job in jobs():
        if not trig & PR_TRIGGERS:
            continue
        text = yaml.safe_dump(job)
        assert "vars.AZURE_CLIENT_ID" not in text, f"{wf}:{name} names the deploy identity"
        assert "secrets.PULUMI_ACCESS_TOKEN" not in text, f"{wf}:{name} uses the deploy token"
        for key in ("ARM_CLIENT_ID",):
            if key in job.get("env", {}):
                assert job["env"][key] == "${{ vars.AZURE_PREVIEW_CLIENT_ID }}"
        for step in job.get("steps", []):
            assert not WRITE_COMMANDS.search(step.get("run", "")), f"{wf}:{name} runs {step['run']!r}"
            uses = step.get("uses", "")
            if uses.startswith("azure/login"):
                assert step["with"]["client-id"] == "${{ vars.AZURE_PREVIEW_CLIENT_ID }}"
                logins += 1
            if uses.startswith("pulumi/actions"):
                w = step["with"]
                assert w["command"] == "preview", f"{wf}:{name} runs pulumi {w['command']}"
                assert str(w.get("refresh", False)).lower() == "false"
                assert "dev" in w["stack-name"] or w["stack-name"] == "${{ matrix.stack }}"
        if any(s.get("uses", "").startswith("pulumi/actions") for s in job.get("steps", [])):
            assert job["strategy"]["matrix"]["stack"] == ["dev"], f"{wf}:{name} previews more than dev"
    assert logins >= 1


def test_deploy_jobs_log_in_with_their_environment_identity():
    out = bootstrap_plan().outputs
    envs = {e["githubEnvironment"] for e in out["environments"].values()}
    deploying = [
        (wf, name, job)
        for wf, trig, name, job in jobs()
        if any(s.get("uses", "").startswith("azure/login") for s in job.get("steps", []))
        and not trig & PR_TRIGGERS
        # a reusable workflow runs in its caller's repository with the caller's subject and the
        # service's push identity (tests/test_service_image.py), never this repository's deployers
        and trig != {"workflow_call"}
    ]
    assert deploying
    for wf, name, job in deploying:
        assert set(environments_of(job)) == set(envs), f"{wf}:{name}"
        login = next(s for s in job["steps"] if s.get("uses", "").startswith("azure/login"))
        assert login["with"]["client-id"] == "${{ vars.AZURE_CLIENT_ID }}"  # an environment variable
        assert job["env"]["ARM_CLIENT_ID"] == "${{ vars.AZURE_CLIENT_ID }}"
        assert job["env"]["AZURE_KEYVAULT_AUTH_VIA_CLI"] == "true"  # the secrets provider signs in with az
        for event in triggers(load(ROOT / ".github" / "workflows" / wf)):
            for subject in subjects(job, event):
                (principal,) = identities_for(subject)
                env = next(e for e in out["environments"].values() if subject.endswith(":" + e["githubEnvironment"]))
                assert principal == env["deployPrincipalId"]
    # and the branch subject of a push (no environment) matches nobody
    assert identities_for(f"repo:{slug()}:ref:refs/heads/main") == set()


def test_the_check_would_catch_a_pull_request_job_in_an_environment():
    """The test can fail: a PR job that names the production environment gets prod's subject,
    which the deploy identity accepts, and that identity writes."""
    job = {"environment": "production", "steps": []}
    (subject,) = subjects(job, "pull_request")
    (principal,) = identities_for(subject)
    assert write_capable(principal)


def test_both_workflows_gate_the_bootstrap_plan():
    pr = load(ROOT / ".github" / "workflows" / "pr.yml")["jobs"]
    assert any(s.get("run") == "make plan-bootstrap" for s in pr["plan-bootstrap"]["steps"])
    gate = load(ROOT / ".github" / "workflows" / "main.yml")["jobs"]["gate"]
    assert any("make plan-bootstrap" in s.get("run", "") for s in gate["steps"])
