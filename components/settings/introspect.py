"""Walking the models: the field at an error location, the keys allowed there, a field's
bounds and pattern, and how they read to a human. Shared by error messages and the reference."""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo


# Walk a model along an error location to learn the field's constraints and siblings.
def unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):  # Optional[X] and X | None
            args = [a for a in get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation
        else:
            return annotation


def field_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> FieldInfo | None:
    """The FieldInfo of the last key of an error location (None if it is not a field)."""
    current: Any = model
    info = None
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            by_alias = {f.alias or n: f for n, f in current.model_fields.items()}
            # a list index (int) is never a field name
            info = (by_alias.get(part) or current.model_fields.get(part)) if isinstance(part, str) else None
            if info is None:
                return None
            current = unwrap(info.annotation)
        elif get_origin(current) in (list, dict):
            current = unwrap(get_args(current)[-1])
        else:
            return info
    return info


def keys_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The camelCase keys allowed at a location (the model that loc points into)."""
    target: Any = model
    if loc:
        info = field_at(model, loc)
        target = unwrap(info.annotation) if info is not None else None
        while get_origin(target) in (list, dict):
            target = unwrap(get_args(target)[-1])
    if isinstance(target, type) and issubclass(target, BaseModel):
        return sorted(f.alias or n for n, f in target.model_fields.items())
    return []


def constraints(metadata: Iterable[Any] | None, annotation: Any = None) -> dict[str, Any]:
    """ge/gt/le/lt/pattern from a field's metadata, also through Optional[Annotated[...]]."""
    metas = list(metadata or [])
    for arg in get_args(annotation):
        if get_origin(arg) is Annotated:
            metas += [m for a in get_args(arg)[1:] for m in getattr(a, "metadata", [a])]
    found: dict[str, Any] = {}
    for meta in metas:
        for name in ("ge", "gt", "le", "lt", "pattern"):
            if getattr(meta, name, None) is not None:
                found.setdefault(name, getattr(meta, name))
    return found


def field_constraints(info: FieldInfo | None) -> dict[str, Any]:
    if info is None:
        return {}
    return constraints(info.metadata, info.annotation)


def range_text(c: dict[str, Any]) -> str:
    """'between 7 and 35', 'at least 1', 'greater than 0 and at most 100'; '' without bounds."""
    if "ge" in c and "le" in c:
        return f"between {c['ge']} and {c['le']}" if c["ge"] != c["le"] else f"{c['ge']}"
    words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
    return " and ".join(f"{words[k]} {v}" for k, v in c.items() if k in words)


# How a field's pattern is described in error messages and in the reference.
PATTERN_LABELS = {
    r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$": "IPv4 CIDR",
    r"^\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?$": "IPv4 address or CIDR",
    r"^\d{1,3}(\.\d{1,3}){3}$": "IPv4 address",
    r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$": "Entra object ID (GUID)",
    r"^([01]\d|2[0-3]):[0-5]\d$": "`HH:MM`",
    r"^[+-]([01]\d|2[0-3]):[0-5]\d$": "`+HH:MM` / `-HH:MM`",
    r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$": "lower-case name (a-z, 0-9, -)",
    r"^[a-z][a-z0-9]+$": "Azure region name",
    r"^[a-z][a-z0-9]{1,9}$": "2-10 lower-case letters/digits",
    r"^1\.\d{2}(\.\d{1,2})?$": "Kubernetes version `1.NN[.P]`",
    r"^[a-z][a-z0-9_]{2,30}$": "lower-case login name",
    r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$": "server name (3-63: a-z, 0-9, -)",
    r"^(\*|#|[a-z0-9_-]+)(\.(\*|#|[a-z0-9_-]+))*$": (
        "a binding pattern: dot-separated words of a-z, 0-9, _ or -, each word may be * or #"
    ),
    r"^[a-z0-9][a-z0-9._-]{0,120}$": "a queue/exchange name (a-z, 0-9, ., _, -)",
    r"^\d+(\.\d+)?(m)?$": "a CPU quantity (`500m`, `2`)",
    r"^\d+(Mi|Gi)$": "a memory quantity (`512Mi`, `2Gi`)",
    r"^\d+Gi$": "a size in Gi (`20Gi`)",
    r"^\d+\.\d+\.\d+$": "a version `X.Y.Z`",
    r"^[a-z0-9][a-z0-9./_-]*(:[0-9][A-Za-z0-9._-]*|@sha256:[0-9a-f]{64})$": (
        "an image pinned to a version tag (`repo:1.2.3`) or a digest"
    ),
    r"^[a-z0-9./-]+$": "a Kubernetes label key",
    r"^\d+(s|m|h|d)$": "a duration (`30s`, `5m`, `72h`, `30d`)",
    r"^[a-zA-Z_:][a-zA-Z0-9_:]*$": "a Prometheus metric name",
    r"^[a-zA-Z_][a-zA-Z0-9_]*$": "a Prometheus label name",
    r"^[a-z][a-z0-9-]{2,40}$": "an SLO name (a-z, 0-9, -)",
    r"^#[a-z0-9_-]+$": "a Slack channel (`#name`)",
    r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$": "a DNS host name",
}
