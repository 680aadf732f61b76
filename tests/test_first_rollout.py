"""docs/first-rollout.md: its offline steps run, in order, on a copy of the repository, and print
what the page says they print; what they generate equals the files checked in."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from conftest import ROOT

DOC = ROOT / "docs" / "first-rollout.md"
BLOCK = re.compile(r"```(?P<info>[^\n]*)\n(?P<body>.*?)```", re.S)
GENERATED = [
    "bootstrap/main-stack-needs.json",
    "bootstrap/outputs.json",
    "policies/config.dev.json",
    "policies/config.prod.json",
    "policies/config.prod-dr.json",
]


def offline_steps() -> list[tuple[list[str], list[str]]]:
    """(commands, expected lines) of each ``sh offline`` block, with the ``text`` block after it."""
    blocks = [(m.group("info").strip(), m.group("body"), m.start()) for m in BLOCK.finditer(DOC.read_text())]
    steps = []
    for i, (info, body, _) in enumerate(blocks):
        if info != "sh offline":
            continue
        expected: list[str] = []
        if i + 1 < len(blocks) and blocks[i + 1][0] == "text":
            between = DOC.read_text()[blocks[i][2] : blocks[i + 1][2]]
            if "expected:" in between:
                expected = [line for line in blocks[i + 1][1].splitlines() if line.strip()]
        steps.append(([c for c in body.splitlines() if c.strip() and not c.startswith("#")], expected))
    return steps


def copy_repo(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / ".venv").symlink_to(ROOT / ".venv")


def in_order(expected: list[str], output: list[str]) -> list[str]:
    """The expected lines not found, in order, as the start of an output line."""
    missing, at = [], 0
    for want in expected:
        want = want.rstrip()
        found = next((i for i in range(at, len(output)) if output[i].startswith(want)), None)
        if found is None:
            missing.append(want)
        else:
            at = found + 1
    return missing


def test_the_page_has_offline_steps_with_expected_output():
    steps = offline_steps()
    assert len(steps) >= 3
    assert sum(1 for _, expected in steps if expected) >= 2
    commands = [c for cmds, _ in steps for c in cmds]
    for needed in ("make plan STACK=dev", "make plan STACK=prod", "make plan-bootstrap"):
        assert needed in commands


def test_offline_steps_run_and_print_what_the_page_says(tmp_path):
    repo = tmp_path / "repo"
    copy_repo(repo)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}
    for commands, expected in offline_steps():
        output: list[str] = []
        for command in commands:
            proc = subprocess.run(
                ["bash", "-c", command], cwd=repo, capture_output=True, text=True, timeout=600, env=env
            )
            assert proc.returncode == 0, (
                f"{command}: exit {proc.returncode}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
            output += (proc.stdout + proc.stderr).splitlines()
        assert in_order(expected, output) == [], "\n".join(output[-60:])
    for rel in GENERATED:
        assert (repo / rel).read_text() == (ROOT / rel).read_text(), f"{rel}: the page's steps generate another file"


def test_the_check_fails_on_output_the_page_does_not_promise():
    assert in_order(
        ["policy pack policies (config.dev.json): 0 mandatory"], ["policy pack policies (config.dev.json): 2 mandatory"]
    )
    assert in_order(["b", "a"], ["a", "b"]) == ["a"]  # order counts


def test_readme_using_it_for_real_points_to_the_page():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Using it for real", 1)[1].split("\n## ", 1)[0]
    assert "docs/first-rollout.md" in section
