"""Problems and ConfigError: every configuration problem as one line naming the stack file,
the full key, what is allowed and what was given::

    Pulumi.prod.yaml: event-backbone:postgres.backupRetentionDays must be between 7 and 35 (got 3)

``problem_from_error`` turns one pydantic validation error into such a Problem.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from typing import Any

from pulumi import RunError
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from .base import PROJECT
from .introspect import PATTERN_LABELS, field_at, field_constraints, keys_at, range_text


class Problem(BaseModel):
    key: str  # dotted camelCase path below the project namespace, e.g. "postgres.backupRetentionDays"
    message: str  # "must be between 7 and 35"
    got: Any = None
    has_got: bool = True

    def line(self, stack_file: str) -> str:
        got = f" (got {_show(self.got)})" if self.has_got else ""
        return f"{stack_file}: {PROJECT}:{self.key} {self.message}{got}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (dict, list, bool)) or value is None:
        return json.dumps(value)
    return str(value)


class ConfigError(RunError):
    """Invalid stack configuration: one line per problem (a RunError: Pulumi prints it without a traceback)."""

    def __init__(self, stack_file: str, problems: list[Problem]):
        self.stack_file = stack_file
        self.problems = problems
        self.lines = [p.line(stack_file) for p in problems]
        super().__init__("invalid stack configuration:\n" + "\n".join(self.lines))


def _range_message(info: FieldInfo | None, ctx: dict[str, Any]) -> str:
    return "must be " + (range_text(field_constraints(info)) or range_text(ctx))


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
        return Problem(key=key, message=f"must be one of {ctx.get('expected')}", got=given)
    if typ == "string_pattern_mismatch":
        label = PATTERN_LABELS.get(ctx.get("pattern", ""))
        return Problem(key=key, message=f"must be {label}" if label else f"must match {ctx.get('pattern')}", got=given)
    if typ in ("int_type", "int_parsing", "int_from_float"):
        return Problem(key=key, message="must be a whole number", got=given)
    if typ in ("bool_type", "bool_parsing"):
        return Problem(key=key, message="must be true or false", got=given)
    if typ in ("string_type",):
        return Problem(key=key, message="must be a string", got=given)
    if typ in ("list_type",):
        return Problem(key=key, message="must be a list", got=given)
    if typ in ("dict_type", "model_type", "model_attributes_type"):
        return Problem(key=key, message="must be an object (a YAML mapping)", got=given)
    if typ in ("date_from_datetime_parsing", "date_parsing", "date_type"):
        return Problem(key=key, message="must be a date (YYYY-MM-DD)", got=given)
    if typ == "value_error":
        return Problem(key=key, message=str(ctx.get("error", err["msg"])), got=given)
    return Problem(key=key, message=err["msg"][0].lower() + err["msg"][1:], got=given)
