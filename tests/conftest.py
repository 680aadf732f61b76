"""Shared fixtures: both real stacks are planned once per session under the recording mocks."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pulumi.runtime import rpc  # noqa: E402
from tools import toolchain  # noqa: E402

from dryrun import plan as plan_mod  # noqa: E402
from dryrun.runner import RunResult, run_stack  # noqa: E402

STACKS = ("dev", "prod")


def _versions_line() -> str:
    found = toolchain.versions()
    named = ", ".join(f"{k} {v}" for k, v in sorted(found.items())) or "none installed (make tools)"
    return f"proofs run on: {named} (testing root {toolchain.ROOT}, PostgreSQL from the pgserver wheel)"


def pytest_report_header(config) -> list[str]:
    """The servers every proof of this run talks to, named in the test output."""
    return [_versions_line()]


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """The same line at the end too: `pytest -q` (make test) prints no header."""
    terminalreporter.write_line(_versions_line())


def unwrap(value: Any) -> Any:
    """Recorded inputs with secret wrappers removed (for asserting on values)."""
    if rpc.is_rpc_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class Planned:
    """One planned stack: the run result, the plan.json document and look-up helpers."""

    def __init__(self, result: RunResult, out_dir: Path):
        self.result = result
        self.stack = result.stack
        self.settings = result.settings
        self.out_dir = out_dir
        self.doc = plan_mod.write_plan(result, out_dir)

    def of_type(self, type_suffix: str) -> list:
        return [r for r in self.result.registrations if r.type.endswith(type_suffix)]

    def one(self, type_suffix: str, name: str | None = None):
        found = [r for r in self.of_type(type_suffix) if name is None or r.name == name]
        assert len(found) == 1, (
            f"{self.stack}: expected one {type_suffix} {name or ''}, found {[r.name for r in found]}"
        )
        return found[0]

    def inputs(self, type_suffix: str, name: str | None = None) -> dict:
        return unwrap(self.one(type_suffix, name).inputs)


@pytest.fixture(scope="session")
def planned(tmp_path_factory) -> dict[str, Planned]:
    out = tmp_path_factory.mktemp("build")
    return {stack: Planned(run_stack(stack), out / stack) for stack in STACKS}


@pytest.fixture(params=STACKS)
def stack(request, planned) -> Planned:
    return planned[request.param]


def require_tool(name: str) -> str:
    """A real tool the proof needs. In CI a missing tool fails the test; locally it skips.
    The servers and CLIs of the proofs (promtool, amtool, Prometheus, Alertmanager, RabbitMQ,
    Redis) run in the testing root (tests/tools/toolchain.py), never the host's: asked for by
    name or by their wrapper's path, they are there only when the root is built."""
    if name in toolchain.ROOT_TOOLS or Path(name).parent == toolchain.BIN:
        path = toolchain.tool(Path(name).name) if toolchain.root_ready() else None
    else:
        path = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
    if path:
        return path
    message = f"{name} is not installed (run `make tools`)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
