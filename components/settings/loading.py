"""Loading: the stack's Pulumi config map, validated in full before any resource is registered."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from .base import PROJECT
from .errors import ConfigError, Problem, problem_from_error
from .stack import StackSettings


def parse_value(raw: Any) -> Any:
    """Pulumi hands config values over as strings; objects and lists arrive as JSON."""
    if not isinstance(raw, str):
        return raw
    stripped = raw.strip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return raw
    return raw


def validate(raw: dict[str, Any], stack: str) -> StackSettings:
    """Validates a dict of ``{key-without-namespace: value}``; raises ConfigError with every problem."""
    stack_file = f"Pulumi.{stack}.yaml"
    try:
        return StackSettings.model_validate(raw)
    except ValidationError as exc:
        problems: list[Problem] = []
        for e in exc.errors(include_url=False):
            if e["type"] == "environment_rules":
                problems += e.get("ctx", {})["problems"]  # set by StackSettings._environment_rules
            else:
                problems.append(problem_from_error(StackSettings, e))
        raise ConfigError(stack_file, problems) from None


def from_config_map(config: dict[str, Any], stack: str, project: str = PROJECT) -> StackSettings:
    """Validates the flat Pulumi config map (``{"event-backbone:postgres": "{...json...}"}``)."""
    prefix = project + ":"
    raw = {k[len(prefix) :]: parse_value(v) for k, v in config.items() if k.startswith(prefix)}
    return validate(raw, stack)


def load() -> StackSettings:
    """Reads and validates the current stack's config (under the CLI or under mocks)."""
    import pulumi
    from pulumi.runtime import config as rconfig

    merged: dict[str, Any] = dict(rconfig.get_config_env())
    merged.update(rconfig.CONFIG.get())
    return from_config_map(merged, pulumi.get_stack(), pulumi.get_project())
