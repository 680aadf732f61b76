"""Problems and ConfigError: every configuration problem as one line naming the stack file,
the full key, what is allowed and what was given::

    Pulumi.prod.yaml: event-backbone:postgres.backupRetentionDays must be between 7 and 35 (got 3)

``problem_from_error`` turns one pydantic validation error into such a Problem. A stack file
that is not even readable (YAML syntax, duplicate keys) is a StackFileError: one
``FILE:LINE:COL: what is wrong`` line per problem.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from typing import Any, Literal, get_args, get_origin

from pulumi import RunError
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from .base import PROJECT
from .introspect import PATTERN_LABELS, field_at, field_constraints, keys_at, range_text, unwrap


class Problem(BaseModel):
    key: str  # dotted camelCase path below the project namespace, e.g. "postgres.backupRetentionDays"
    message: str  # "must be between 7 and 35"
    got: Any = None
    has_got: bool = True
    note: str = ""  # after what was given: why YAML read it so and the fix ("; YAML reads an unquoted 1 ...")
    namespace: str = PROJECT  # the key's namespace ("" for a key written without one)

    def line(self, stack_file: str) -> str:
        got = f" (got {_show(self.got)}{self.note})" if self.has_got else ""
        key = f"{self.namespace}:{self.key}" if self.namespace else self.key
        return f"{stack_file}: {key} {self.message}{got}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (dict, list, bool)) or value is None:
        return json.dumps(value)
    return str(value)


class ConfigError(RunError):
    """Invalid stack configuration: one line per problem (a RunError: Pulumi prints it without a traceback).

    ``waiting`` counts the cross-key and per-environment checks (rules.CHECKS) that could not run
    because they read a part with shape errors; a last line says so."""

    def __init__(self, stack_file: str, problems: list[Problem], waiting: int = 0):
        self.stack_file = stack_file
        self.problems = problems
        self.waiting = waiting
        self.lines = self.lines_for(stack_file)
        # What had been registered when validation failed (the offline runner fills it in: nothing).
        self.registered: list[Any] = []
        super().__init__("invalid stack configuration:\n" + "\n".join(self.lines))

    def lines_for(self, stack_file: str) -> list[str]:
        """The lines, naming ``stack_file`` (the file actually read, e.g. ``--stack-file other.yaml``)."""
        lines = [p.line(stack_file) for p in self.problems]
        if self.waiting:
            checks, run = ("check waits", "runs") if self.waiting == 1 else ("checks wait", "run")
            lines.append(
                f"{stack_file}: {self.waiting} further cross-key/environment {checks} on the errors above"
                f" and {run} once they are fixed"
            )
        return lines


class StackFileError(ConfigError):
    """A stack file that cannot be read as a Pulumi stack file: ``FILE:LINE:COL: what is wrong``."""

    def __init__(self, stack_file: str, positioned: list[tuple[int, int, str]]):
        self.positioned = positioned  # (line, column, message), both 1-based
        super().__init__(stack_file, [])

    def lines_for(self, stack_file: str) -> list[str]:
        return [f"{stack_file}:{line}:{col}: {message}" for line, col, message in self.positioned]


def _range_message(info: FieldInfo | None, ctx: dict[str, Any]) -> str:
    return "must be " + (range_text(field_constraints(info)) or range_text(ctx))


def _number_message(info: FieldInfo | None, kind: str) -> str:
    """'must be a whole number between 32 and 16384', '... a whole number, at least 1' (the range, if any)."""
    bounds = range_text(field_constraints(info))
    if not bounds:
        return f"must be {kind}"
    return f"must be {kind} {bounds}" if bounds.startswith("between") else f"must be {kind}, {bounds}"


def _unquoted_note(given: Any, expected: tuple[str, ...] = ()) -> str:
    """Why YAML handed over a number or a boolean where a string is expected, and the fix."""
    if isinstance(given, bool):
        return "; YAML reads unquoted true/false/yes/no/on/off as a boolean: quote the value"
    if isinstance(given, int) and str(given) in expected:
        return f'; YAML reads an unquoted {given} as a number: quote it, "{given}"'
    if isinstance(given, (int, float)):
        return "; YAML reads it unquoted as a number: quote the value"
    return ""


def _literals(info: FieldInfo | None) -> tuple[Any, ...]:
    """The allowed values of a Literal field, also of a list's or a map's items."""
    ann = unwrap(info.annotation) if info is not None else None
    while get_origin(ann) in (list, dict):
        ann = unwrap(get_args(ann)[-1])
    return get_args(ann) if get_origin(ann) is Literal else ()


def _key(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def problem_from_error(model: type[BaseModel], err: ErrorDetails) -> Problem:
    loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
    typ, ctx, given = err["type"], err.get("ctx", {}), err.get("input")
    info = field_at(model, loc)
    key = _key(loc)
    if typ == "extra_forbidden":
        known = keys_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else f"; allowed keys: {', '.join(known)}"
        return Problem(key=key, message=f"is not a known key{hint}", has_got=False)
    if typ == "missing":
        return Problem(key=key, message="is required", has_got=False)
    if typ in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return Problem(key=key, message=_range_message(info, ctx), got=given)
    if typ == "literal_error":
        expected = _literals(info)
        note = _unquoted_note(given, expected) if str(given) in expected and not isinstance(given, str) else ""
        return Problem(key=key, message=f"must be one of {ctx.get('expected')}", got=given, note=note)
    if typ == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        label = PATTERN_LABELS.get(pattern)
        return Problem(key=key, message=f"must be {label}" if label else f"must match {pattern}", got=given)
    if typ in ("int_type", "int_parsing", "int_from_float"):
        return Problem(key=key, message=_number_message(info, "a whole number"), got=given)
    if typ in ("float_type", "float_parsing"):
        return Problem(key=key, message=_number_message(info, "a number"), got=given)
    if typ in ("bool_type", "bool_parsing"):
        return Problem(key=key, message="must be true or false", got=given)
    if typ in ("string_type",):
        label = PATTERN_LABELS.get(field_constraints(info).get("pattern", ""))
        message = f"must be a string ({label})" if label else "must be a string"
        return Problem(key=key, message=message, got=given, note=_unquoted_note(given))
    if typ in ("list_type",):
        return Problem(key=key, message="must be a list", got=given)
    if typ in ("dict_type", "model_type", "model_attributes_type"):
        return Problem(key=key, message="must be an object (a YAML mapping)", got=given)
    if typ in ("date_from_datetime_parsing", "date_parsing", "date_type"):
        return Problem(key=key, message="must be a date (YYYY-MM-DD)", got=given)
    if typ == "value_error":
        return Problem(key=key, message=str(ctx.get("error", err["msg"])), got=given)
    return Problem(key=key, message=err["msg"][0].lower() + err["msg"][1:], got=given)
