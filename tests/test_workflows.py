"""The PR and main workflows do what the README says."""

from __future__ import annotations

import re

import yaml
from conftest import ROOT


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


# The first release of each action that runs on node24 (GitHub removes the node20 runtime on
# 2026-09-23): each action's action.yml `runs.using` at that tag, or its release notes.
NODE24 = {
    "actions/checkout": (7, 0),
    "actions/setup-python": (7, 0),
    "actions/upload-artifact": (7, 0),
    "azure/login": (3, 0),
    "azure/use-kubelogin": (1, 3),
    "pulumi/actions": (7, 0),
}


# `uses: <action>@<commit SHA> # <release>`: the release is the comment (the SHA is checked against
# it in tests/test_service_image.py)
PINNED_USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<action>[^@\s]+)@[0-9a-f]{40}\s+#\s*(?P<release>v[\d.]+)\s*$")


def test_every_action_is_pinned_to_a_node24_release():
    pinned = []
    for name in ("pr.yml", "main.yml"):
        text = (ROOT / ".github" / "workflows" / name).read_text()
        uses = [s["uses"] for job in load(name)["jobs"].values() for s in steps(job) if "uses" in s]
        found = [m for line in text.splitlines() if (m := PINNED_USES.match(line))]
        assert len(found) == len(uses), f"{name}: a `uses:` is not `<action>@<SHA> # <release>`"
        pinned += found
    assert pinned
    for m in pinned:
        action, release = m["action"], m["release"]
        assert action in NODE24, f"{m[0].strip()}: which release of {action} runs on node24?"
        version = (*(int(x) for x in release.removeprefix("v").split(".")), 0)[:2]
        assert version >= NODE24[action], f"{m[0].strip()} runs on node20; bump it to {NODE24[action]}"


def test_pr_workflow_tests_plans_and_previews_with_the_pack():
    wf = load("pr.yml")
    jobs = wf["jobs"]
    assert any("make test" in s.get("run", "") for s in steps(jobs["test"]))
    assert any("make plan STACK=${{ matrix.stack }}" in s.get("run", "") for s in steps(jobs["plan"]))
    # every stack file in the repository is planned and gated (prod-dr: prod's recovery stack)
    stacks = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))
    assert jobs["plan"]["strategy"]["matrix"]["stack"] == stacks == ["dev", "prod", "prod-dr"]
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in steps(jobs["plan"]))
    preview = jobs["preview"]
    assert set(preview["needs"]) == {"test", "plan"}
    uses = [s.get("uses", "") for s in steps(preview)]
    assert any(u.startswith("azure/login") for u in uses)
    pulumi = next(s for s in steps(preview) if s.get("uses", "").startswith("pulumi/actions"))
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["policyPacks"] == "policies"
    assert pulumi["with"]["policyPackConfigs"] == "policies/config.${{ matrix.stack }}.json"
    assert pulumi["with"]["comment-on-pr"] is True
    # nothing workflow-wide; only the preview logs in to Azure and comments on the PR
    assert wf["permissions"] == {}
    assert preview["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    for name in ("test", "plan", "plan-bootstrap"):
        assert jobs[name]["permissions"] == {"contents": "read"}, name


def test_main_workflow_rolls_dev_then_prod_behind_approval():
    wf = load("main.yml")
    jobs = wf["jobs"]
    deploy = jobs["deploy"]
    assert wf["permissions"] == {}
    assert jobs["gate"]["permissions"] == {"contents": "read"}
    assert deploy["permissions"] == {"contents": "read", "id-token": "write"}
    include = deploy["strategy"]["matrix"]["include"]
    assert [i["stack"] for i in include] == ["dev", "prod"]
    assert next(i for i in include if i["stack"] == "prod")["environment"] == "production"
    assert deploy["environment"] == "${{ matrix.environment }}"
    assert deploy["strategy"]["max-parallel"] == 1
    pulumi = next(s for s in steps(deploy) if s.get("uses", "").startswith("pulumi/actions"))
    assert pulumi["with"]["command"] == "up"
    for config in ("dev", "prod"):
        assert (ROOT / "policies" / f"config.{config}.json").is_file()
