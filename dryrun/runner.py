"""Run the real program under Pulumi's mocks for one stack and return what it registered.

Each run happens in a fresh ``contextvars.Context`` so several stacks can be planned in one
process (the tests plan dev and prod once each and share the result).
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .mocks import PlatformMocks, RecordingMonitor, Registration

PROJECT_DIR = Path(__file__).resolve().parent.parent
SECURE_PLACEHOLDER = "dryrun-secure-placeholder"


def read_project(project_dir: Path = PROJECT_DIR) -> str:
    return yaml.safe_load((project_dir / "Pulumi.yaml").read_text())["name"]


def _replace_secure(value: Any) -> tuple[Any, bool]:
    """``{secure: ...}`` anywhere in a value becomes a placeholder; says whether any was found."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return SECURE_PLACEHOLDER, True
        found = False
        out = {}
        for k, v in value.items():
            out[k], f = _replace_secure(v)
            found |= f
        return out, found
    if isinstance(value, list):
        pairs = [_replace_secure(v) for v in value]
        return [p[0] for p in pairs], any(p[1] for p in pairs)
    return value, False


def config_from_yaml(text: str) -> tuple[dict[str, str], list[str]]:
    """Turns a stack file's ``config:`` into what the CLI hands the program: a flat map of
    strings (objects and lists as JSON) and the list of secret keys."""
    doc = yaml.safe_load(text) or {}
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (doc.get("config") or {}).items():
        value, secret = _replace_secure(value)
        if secret:
            secret_keys.append(key)
        if isinstance(value, (dict, list)):
            config[key] = json.dumps(value)
        elif isinstance(value, bool):
            config[key] = "true" if value else "false"
        else:
            config[key] = str(value)
    return config, secret_keys


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass
class RunResult:
    project: str
    stack: str
    registrations: list[Registration]
    outputs: dict
    warnings: list[str]
    generated_secrets: list[str]
    settings: Any = None


def run_stack(
    stack: str,
    project_dir: Path = PROJECT_DIR,
    stack_text: str | None = None,
    program: Callable[[], None] | None = None,
) -> RunResult:
    """Plans one stack. ``stack_text`` replaces the stack file's content (tests use it for
    broken copies). Raises ``components.settings.ConfigError`` on bad config."""
    project = read_project(project_dir)
    text = stack_text if stack_text is not None else (project_dir / f"Pulumi.{stack}.yaml").read_text()
    config, secret_keys = config_from_yaml(text)
    ctx = contextvars.Context()
    return ctx.run(_run, project, stack, config, secret_keys, program)


def _run(project, stack, config, secret_keys, program) -> RunResult:
    from pulumi.runtime import config as rconfig
    from pulumi.runtime import mocks as pmocks
    from pulumi.runtime import settings as rsettings
    from pulumi.runtime.stack import run_in_stack
    from pulumi.runtime.sync_await import _sync_await

    from components import program as program_mod
    from components import settings as settings_mod

    rconfig.set_all_config(config, secret_keys)
    mocks = PlatformMocks()
    monitor = RecordingMonitor(mocks)
    handler = _Collect()
    logger = logging.getLogger(f"dryrun.{stack}")
    logger.propagate = False
    logger.handlers = [handler]
    rsettings.configure(
        pmocks.MockSettings(
            monitor=monitor,
            monitor_features=set(monitor.GetDeploymentInfo(None).supportedFeatures),
            engine=pmocks.MockEngine(logger),
            project=project,
            stack=stack,
            dry_run=False,
            organization="organization",
            callbacks=None,
        )
    )
    # The program reads and validates its config itself, exactly as under the CLI.
    body = program or program_mod.main
    try:
        _sync_await(run_in_stack(body))
    except settings_mod.ConfigError as exc:
        exc.registered = list(monitor.registrations)  # proof that validation came first
        raise
    return RunResult(
        project=project,
        stack=stack,
        registrations=monitor.registrations,
        outputs=monitor.stack_outputs,
        warnings=handler.messages,
        # secure config values (placeholders here) must never appear in plaintext either
        generated_secrets=list(mocks.generated_secrets) + ([SECURE_PLACEHOLDER] if secret_keys else []),
        settings=settings_mod.from_config_map(config, stack, project),
    )
