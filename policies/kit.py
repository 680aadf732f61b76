"""Shared helpers for the event-backbone policies: property look-ups and messages that name
the resource, the property, the value found and the fix."""

from __future__ import annotations

from typing import Any

from pulumi_policy import EnforcementLevel, PolicyConfigSchema, ReportViolation

MISSING = object()


def get(props: Any, path: str, default: Any = MISSING) -> Any:
    """props["a"]["b"][0]... for a dotted path ("a.b.0"); `default` (or MISSING) when absent."""
    node = props
    for part in path.split("."):
        try:
            if isinstance(node, (list, tuple)):
                if not part.isdigit():
                    return default
                node = node[int(part)]
            else:
                node = node[part]
        except (KeyError, IndexError, TypeError):
            return default
        if node is None:
            return default
    return node


def shown(value: Any) -> str:
    if value is MISSING:
        return "not set"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value) if isinstance(value, str) else str(value)


def violation(
    report: ReportViolation, resource_type: str, name: str, prop: str, value: Any, fix: str, urn: str | None = None
) -> None:
    report(f"{resource_type} '{name}': {prop} is {shown(value)}. Fix: {fix}", urn or None)


def schema(properties: dict[str, dict], required: list[str] | None = None) -> PolicyConfigSchema:
    return PolicyConfigSchema(properties=properties, required=required or [])


def config(args: Any) -> dict:
    return dict(args.get_config() or {})


MANDATORY = EnforcementLevel.MANDATORY


def is_replica(props: Any) -> bool:
    """A PostgreSQL flexible server created as a read replica (``createMode: Replica``)."""
    return get(props, "createMode") == "Replica"


def replica_source(props: Any) -> str | None:
    """The server name of a replica's source (the last segment of ``sourceServerResourceId``)."""
    source = get(props, "sourceServerResourceId")
    if not isinstance(source, str) or "/providers/" not in source:
        return None
    return source.rstrip("/").rsplit("/", 1)[-1]
