"""Loading: the stack's Pulumi config map, validated in full before any resource is registered.

Read strictly: a key outside the project namespace and the providers' namespaces is an error
(a misspelt or missing namespace would otherwise drop the user's settings without a word), and
every problem findable in one pass is reported in one run: the cross-key and per-environment
checks (rules.CHECKS) run on every part whose shape is valid. ``read_stack_file`` reads a stack
file's YAML (dryrun) with one ``FILE:LINE:COL`` line per problem instead of a traceback.
"""

from __future__ import annotations

import difflib
import json
from typing import Annotated, Any, NoReturn

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from .base import PROJECT
from .errors import ConfigError, Problem, StackFileError, problem_from_error
from .rules import CHECKS
from .stack import StackSettings

# The config namespaces a stack file may use besides the project's own: the Pulumi providers the
# program uses (requirements.txt; tests/test_stack_files.py keeps the two in step) and Pulumi's own.
PROVIDER_NAMESPACES = ("azure-native", "cloudamqp", "kubernetes", "pulumi", "rabbitmq", "random", "tls")

# The top-level keys of a Pulumi stack file (Pulumi.<stack>.yaml).
STACK_FILE_KEYS = ("config", "encryptedkey", "encryptionsalt", "environment", "secretsprovider")


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


def namespace_problems(keys: list[str], project: str = PROJECT) -> list[Problem]:
    """A problem for each config key that is neither ``<project>:*`` nor a known provider's."""
    return _check_namespaces(keys, project)[0]


def _check_namespaces(keys: list[str], project: str) -> tuple[list[Problem], set[str]]:
    """The problems, and the project's top-level keys they meant (lost: their checks must wait)."""
    known = [project, *PROVIDER_NAMESPACES]
    allowed = ", ".join(f"{ns}:" for ns in known)
    tops = _top_level_keys()
    problems: list[Problem] = []
    lost: set[str] = set()
    for full in map(str, keys):
        namespace, sep, key = full.partition(":")
        if not sep:
            meant = difflib.get_close_matches(full, tops, n=1, cutoff=0.8)
            hint = f"did you mean '{project}:{meant[0]}'?" if meant else f"allowed: {allowed}"
            problems.append(Problem(key=full, namespace="", message=f"has no namespace; {hint}", has_got=False))
            lost.update(meant)
        elif namespace not in known:
            close = difflib.get_close_matches(namespace, known, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}:{key}'?" if close else f"allowed: {allowed}"
            problems.append(
                Problem(key=key, namespace=namespace, message=f"is not a known namespace; {hint}", has_got=False)
            )
            if close == [project]:
                lost.update(difflib.get_close_matches(key, tops, n=1, cutoff=0.8))
    present = {str(k).partition(":")[2] for k in keys if str(k).startswith(project + ":")}
    return problems, lost - present


def _top_level_keys() -> list[str]:
    return [info.alias or name for name, info in StackSettings.model_fields.items()]


class _Waiting(Exception):
    """A check read a part whose shape is invalid: it waits for the shape errors to be fixed."""


class _Pending:
    """Stands in for a part with shape errors: any use of it makes the check that reads it wait."""

    __slots__ = ("part",)

    def __init__(self, part: str):
        self.part = part

    def _wait(self, *_: Any) -> NoReturn:
        raise _Waiting(self.part)

    def __getattr__(self, name: str) -> NoReturn:
        raise _Waiting(self.part)

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _wait
    __bool__ = __len__ = __iter__ = __contains__ = __getitem__ = __str__ = __format__ = __hash__ = _wait


def _broken_parts(errors: list[ErrorDetails], tops: list[str]) -> set[str]:
    """The top-level parts with shape errors; a misspelt top-level key breaks the part it meant."""
    broken: set[str] = set()
    for e in errors:
        if not e["loc"]:
            continue
        part = str(e["loc"][0])
        if part in tops:
            broken.add(part)
        elif e["type"] == "extra_forbidden":
            broken.update(difflib.get_close_matches(part, tops, n=1, cutoff=0.6))
    return broken


def _partial(raw: dict[str, Any], broken: set[str]) -> StackSettings:
    """The settings with every valid part validated and each broken one a _Pending stand-in."""
    values: dict[str, Any] = {}
    for name, info in StackSettings.model_fields.items():
        alias = info.alias or name
        if alias in broken:
            values[name] = _Pending(alias)
        elif alias in raw or name in raw:
            try:
                field_type = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
                values[name] = TypeAdapter(field_type).validate_python(raw[alias if alias in raw else name])
            except ValidationError:
                values[name] = _Pending(alias)
        else:
            values[name] = info.get_default(call_default_factory=True)
    return StackSettings.model_construct(**values)


def _run_checks(settings: StackSettings) -> tuple[list[Problem], int]:
    """Every check that reads only valid parts, and how many wait."""
    problems: list[Problem] = []
    waiting = 0
    for check in CHECKS:
        try:
            problems += check(settings)
        except _Waiting:
            waiting += 1
    return problems, waiting


def validate(
    raw: dict[str, Any],
    stack: str,
    stack_file: str | None = None,
    problems: list[Problem] | None = None,
    lost: set[str] | None = None,
) -> StackSettings:
    """Validates a dict of ``{key-without-namespace: value}``; raises ConfigError with every problem.

    ``problems`` found before (namespace errors) come first; ``lost`` names the top-level keys
    they meant, whose checks wait. ``stack_file`` is the file the lines name (default
    ``Pulumi.<stack>.yaml``, the file the Pulumi CLI reads)."""
    stack_file = stack_file or f"Pulumi.{stack}.yaml"
    found = list(problems or [])
    lost = lost or set()
    settings: StackSettings | None = None
    try:
        settings = StackSettings.model_validate(raw)
        rule_problems: list[Problem] = []
        shape: list[ErrorDetails] = []
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # StackSettings._environment_rules puts the broken rules' problems in ctx
        rule_problems = [p for e in errors if e["type"] == "environment_rules" for p in e.get("ctx", {})["problems"]]
        # a key the namespace problems already name is not "required" a second time
        shape = [e for e in errors if e["type"] != "environment_rules" and not _is_lost(e, lost)]
    if not shape and not lost:
        if found or rule_problems or settings is None:
            raise ConfigError(stack_file, found + rule_problems)
        return settings
    # pydantic skipped the rules, or ran them on defaults for lost keys: run each check whose parts are valid
    found += [problem_from_error(StackSettings, e) for e in shape]
    rule_problems, waiting = _run_checks(_partial(raw, _broken_parts(shape, _top_level_keys()) | lost))
    raise ConfigError(stack_file, found + rule_problems, waiting)


def _is_lost(err: ErrorDetails, lost: set[str]) -> bool:
    return err["type"] == "missing" and len(err["loc"]) == 1 and err["loc"][0] in lost


def from_config_map(
    config: dict[str, Any], stack: str, project: str = PROJECT, stack_file: str | None = None
) -> StackSettings:
    """Validates the flat Pulumi config map (``{"event-backbone:postgres": "{...json...}"}``),
    as the Pulumi CLI hands it over: every key of the stack file's ``config:``, any namespace."""
    prefix = project + ":"
    raw = {k[len(prefix) :]: parse_value(v) for k, v in config.items() if str(k).startswith(prefix)}
    problems, lost = _check_namespaces(list(config), project)
    return validate(raw, stack, stack_file, problems, lost)


def load() -> StackSettings:
    """Reads and validates the current stack's config (under the CLI or under mocks)."""
    import pulumi
    from pulumi.runtime import config as rconfig

    merged: dict[str, Any] = dict(rconfig.get_config_env())
    merged.update(rconfig.CONFIG.get())
    return from_config_map(merged, pulumi.get_stack(), pulumi.get_project())


def _duplicates(node: yaml.Node, out: list[tuple[int, int, str]]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key, value in node.value:
            ident = (key.tag, str(key.value))
            if ident in seen:
                first = seen[ident].start_mark.line + 1
                out.append(
                    (
                        key.start_mark.line + 1,
                        key.start_mark.column + 1,
                        f"duplicate key '{key.value}' (first at line {first}); YAML would keep only the last",
                    )
                )
            seen.setdefault(ident, key)
            _duplicates(value, out)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _duplicates(item, out)


# PyYAML's wording for the mistakes people make most, in plain words.
_OPENED = {
    "while parsing a flow sequence": "the '[' opened at {at} is not closed",
    "while parsing a flow mapping": "the '{{' opened at {at} is not closed",
    "while scanning a quoted scalar": "the quoted string opened at {at} is not closed",
}


def _yaml_error_line(exc: yaml.YAMLError) -> tuple[int, int, str]:
    """(line, column, what is wrong) of a YAML syntax error, 1-based as editors count."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return 1, 1, str(exc)
    mark, ctx, problem = exc.problem_mark, exc.context_mark, exc.problem or "invalid YAML"
    at = f"line {ctx.line + 1}, column {ctx.column + 1}" if ctx is not None else ""
    if "'\\t'" in problem or "\t" in problem:
        what = "a tab character: YAML indents with spaces only"
    elif problem == "mapping values are not allowed here":
        what = "a second ': ' on one line: quote the value, or start the nested mapping on the next line"
    elif problem.startswith("expected <block end>"):
        what = "bad indentation: this line lines up with no key above it"
        what += f" (the mapping at {at} is still open)" if at else ""
    elif exc.context in _OPENED and at:
        what = f"{problem}: {_OPENED[exc.context].format(at=at)}"
    else:
        what = problem + (f" ({exc.context} at {at})" if exc.context and at else "")
    return mark.line + 1, mark.column + 1, what


def read_stack_file(text: str, stack_file: str) -> dict[str, Any]:
    """Parses a stack file's YAML strictly (syntax, duplicate keys, the stack file's own keys) and
    returns it; raises StackFileError with one ``FILE:LINE:COL: what`` line per problem."""

    def fail(line: int, col: int, message: str) -> NoReturn:
        raise StackFileError(stack_file, [(line, col, message)])

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        dupes: list[tuple[int, int, str]] = []
        _duplicates(node, dupes)
        if dupes:
            raise StackFileError(stack_file, dupes)
        doc = loader.construct_document(node)
    except yaml.YAMLError as exc:
        fail(*_yaml_error_line(exc))
    finally:
        loader.dispose()
    if not isinstance(doc, dict):
        fail(node.start_mark.line + 1, node.start_mark.column + 1, "a stack file must be a mapping with a config: key")
    positioned: list[tuple[int, int, str]] = []
    for key, value in node.value:
        if key.value not in STACK_FILE_KEYS:
            close = difflib.get_close_matches(str(key.value), STACK_FILE_KEYS, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(STACK_FILE_KEYS)}"
            positioned.append(
                (key.start_mark.line + 1, key.start_mark.column + 1, f"'{key.value}' is not a stack file key; {hint}")
            )
        elif key.value == "config" and not isinstance(doc.get("config"), (dict, type(None))):
            positioned.append(
                (value.start_mark.line + 1, value.start_mark.column + 1, "config must be a mapping of key: value")
            )
    if positioned:
        raise StackFileError(stack_file, positioned)
    return doc
