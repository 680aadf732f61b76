"""Run the real program under Pulumi's mocks for one stack and return what it registered.

Each run happens in a fresh ``contextvars.Context`` so several stacks can be planned in one
process (the tests plan dev and prod once each and share the result).

Registrations come back sorted by URN: the SDK registers resources in whatever order their
inputs resolve, which differs run to run; sorted, plan.json is byte-identical between runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import json
import logging
import pathlib
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi.resource
import yaml
from pulumi import _types as _sdk_types
from pulumi.runtime import resource as runtime_resource
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime import stack as runtime_stack
from pulumi.runtime.proto import alias_pb2, resource_pb2, source_pb2

from .mocks import PlatformMocks, RecordingMonitor, Registration

PROJECT_DIR = Path(__file__).resolve().parent.parent
SECURE_PLACEHOLDER = "dryrun-secure-placeholder"


# Two SDK costs that change nothing the monitor receives are skipped during our runs (the SDK is
# pinned; ``stock_sdk=True`` runs it unmodified, and a test proves both give the same plan.json):
#
# 1. Every azure-native resource carries ~20 type aliases (one per API version). The Resource
#    constructor turns each into a full alias URN (``collapse_alias_to_urn``: several Outputs and
#    event-loop tasks per alias) and keeps them in ``Resource._aliases``, whose only reader is
#    ``all_aliases``, the path for engines WITHOUT alias-spec support. Our monitor reports
#    ``aliasSpecs`` (as the real engine does), so the SDK sends the aliases as specs built from
#    ``opts.aliases`` and never reads ``_aliases``.
#    Sending them as specs, the SDK still wraps each plain ``Alias`` in an Output and awaits it
#    (``prepare_aliases``: ~20 Outputs and tasks per resource) only to get the same object back;
#    plain ``Alias`` objects go straight to ``create_alias_spec`` instead.
# 2. After the program, ``wait_for_rpcs`` waits for every outstanding Output with
#    ``asyncio.wait(pending, FIRST_COMPLETED)`` in a loop: each round adds and removes a callback on
#    every pending task, so the cost grows with pending outputs x completion rounds (quadratic in
#    the stack's size). ``FIRST_EXCEPTION`` waits for the same tasks and still stops at the first
#    failure, with one callback per task.
# 3. Each registration carries the Python stack as source positions. ``_get_stack_trace`` reads
#    every frame's source line (unused) and builds each file's URI with pathlib, per frame and
#    per resource; the same frames without the line text, with one URI per file, give the same
#    StackTrace message.
_STOCK_SDK = contextvars.ContextVar("dryrun_stock_sdk", default=True)
# The SDK's runtime state; its attributes are contextvar-backed descriptors the type checker cannot see.
_SDK_SETTINGS: Any = runtime_settings.SETTINGS
_collapse_alias_to_urn = runtime_resource.collapse_alias_to_urn
_wait_for_rpcs = runtime_stack.wait_for_rpcs


_get_stack_trace = runtime_resource._get_stack_trace


@functools.cache
def _file_uri(filename: str) -> str | None:
    try:
        return pathlib.Path(filename).as_uri()
    except BaseException:  # noqa: BLE001 as the SDK: a frame without a usable path has no position
        return None


def _stack_trace_cached() -> source_pb2.StackTrace:
    """``pulumi.runtime.resource._get_stack_trace`` (3.272.0) without line look-ups, URIs cached."""
    if _STOCK_SDK.get():
        return _get_stack_trace()
    stack = traceback.StackSummary.extract(traceback.walk_stack(sys._getframe().f_back), lookup_lines=False)
    stack.reverse()
    n = 0
    i = len(stack) - 1
    for i in range(len(stack) - 1, -1, -1):
        if stack[i].name == "__init__":
            n += 1
            if n == 3:
                break
    if i < 1:
        return source_pb2.StackTrace()
    frames = []
    for frame in reversed(stack[:i]):
        uri = _file_uri(frame.filename) if frame.filename != "" and frame.lineno is not None else None
        pos = None if uri is None or frame.lineno is None else source_pb2.SourcePosition(uri=uri, line=frame.lineno)
        frames.append(source_pb2.StackFrame(pc=pos))
    return source_pb2.StackTrace(frames=frames)


_prepare_aliases = runtime_resource.prepare_aliases


async def _prepare_aliases_direct(resource: Any, options: Any, supports_alias_specs: bool) -> list[alias_pb2.Alias]:
    """``pulumi.runtime.resource.prepare_aliases`` (3.272.0) without an Output around plain ``Alias`` objects."""
    if _STOCK_SDK.get() or not supports_alias_specs or options is None or options.aliases is None:
        return await _prepare_aliases(resource, options, supports_alias_specs)
    aliases: list[alias_pb2.Alias] = []
    for alias in options.aliases:
        resolved = alias if type(alias) is pulumi.Alias else await pulumi.Output.from_input(alias).future()
        if resolved is None:
            continue
        if isinstance(resolved, str):
            aliases.append(alias_pb2.Alias(urn=resolved))
        else:
            aliases.append(alias_pb2.Alias(spec=await runtime_resource.create_alias_spec(resolved)))
    return aliases


def _collapse_alias_when_read(alias: Any, name: str, typ: str, parent: Any) -> Any:
    if _STOCK_SDK.get() or not runtime_settings.monitor_supports_feature(
        resource_pb2.RESOURCE_MONITOR_FEATURE_ALIAS_SPECS
    ):
        return _collapse_alias_to_urn(alias, name, typ, parent)
    return alias  # unread: with alias specs the SDK builds the request from opts.aliases


async def _wait_for_rpcs_linear(await_all_outstanding_tasks: bool = True) -> None:
    """``pulumi.runtime.stack.wait_for_rpcs`` (3.272.0) with ``FIRST_EXCEPTION`` for the outputs."""
    if _STOCK_SDK.get():
        return await _wait_for_rpcs(await_all_outstanding_tasks)
    rpc_manager = runtime_settings._get_rpc_manager()
    outputs = _SDK_SETTINGS.outputs
    while True:
        while rpc_manager.rpcs:
            await asyncio.sleep(0)
            try:
                await rpc_manager.rpcs.pop()
            except Exception as exn:
                if rpc_manager.unhandled_exception is not None:
                    raise exn from rpc_manager.unhandled_exception.with_traceback(rpc_manager.exception_traceback)
                raise
        if rpc_manager.unhandled_exception is not None:
            raise rpc_manager.unhandled_exception.with_traceback(rpc_manager.exception_traceback)
        if await_all_outstanding_tasks:
            while True:
                with _SDK_SETTINGS.lock:
                    if not outputs:
                        break
                    pending = list(outputs)
                    outputs.clear()
                done, not_done = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    await task
                if not_done:
                    with _SDK_SETTINGS.lock:
                        outputs.update(not_done)
        if not rpc_manager.rpcs:
            break


_unwrap_type = _sdk_types.unwrap_type
_unwrapped: dict[Any, Any] = {}


def _unwrap_type_cached(val: Any) -> Any:
    """``pulumi._types.unwrap_type`` (3.272.0), a pure function of a type annotation, computed
    once per annotation: serialising each nested Kubernetes input looks up the same few hundred."""
    if _STOCK_SDK.get():
        return _unwrap_type(val)
    try:
        return _unwrapped[val]
    except KeyError:
        result = _unwrapped[val] = _unwrap_type(val)
        return result
    except TypeError:  # an unhashable annotation: not cached
        return _unwrap_type(val)


# pulumi.resource imports the name without re-exporting it; it is the one its constructor calls.
pulumi.resource.collapse_alias_to_urn = _collapse_alias_when_read  # pyright: ignore[reportPrivateImportUsage]
runtime_stack.wait_for_rpcs = _wait_for_rpcs_linear
runtime_resource._get_stack_trace = _stack_trace_cached
runtime_resource.prepare_aliases = _prepare_aliases_direct
_sdk_types.unwrap_type = _unwrap_type_cached  # rpc and _types look it up on the module


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the same safe constructor, libyaml's parser


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
    doc = yaml.load(text, Loader=_YAML_LOADER) or {}  # a safe loader
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
    invokes: list[tuple[str, dict]] | None = None  # every invoke the program made (token, arguments)


def run_stack(
    stack: str,
    project_dir: Path = PROJECT_DIR,
    stack_text: str | None = None,
    program: Callable[[], None] | None = None,
    stock_sdk: bool = False,
    one_shot: bool = False,
    settings_loader: Callable[[dict[str, str], str], Any] | None = None,
    references: dict[str, dict] | None = None,
) -> RunResult:
    """Plans one stack. ``stack_text`` replaces the stack file's content (tests use it for
    broken copies). ``stock_sdk`` runs the SDK without the shortcuts above (``_STOCK_SDK``).
    ``one_shot``: the process ends after this run (the CLI, the bench's SDK floor), so the run's
    heap is frozen instead of handed back to the cyclic collector (see below).
    ``settings_loader(config, stack)`` validates another project's config (the bootstrap's).
    ``references``: StackReference name -> outputs; unset, a recovery stack (``recovery.replaces``)
    gets the replaced stack's outputs by planning that stack first.
    Raises ``components.settings.ConfigError`` on bad config."""
    project = read_project(project_dir)
    text = stack_text if stack_text is not None else (project_dir / f"Pulumi.{stack}.yaml").read_text()
    config, secret_keys = config_from_yaml(text)
    if references is None:
        references = {}
        replaces = replaced_stack(config, project)
        if replaces and replaces != stack:
            references[f"organization/{project}/{replaces}"] = run_stack(replaces, project_dir).outputs
    ctx = contextvars.Context()
    # A run allocates hundreds of thousands of objects in reference cycles (Outputs, futures,
    # tasks) that stay alive until the end, and the cyclic collector rescans that growing heap
    # over and over: measured on the 200-service stack, over half of the run's CPU time for a few
    # MiB of peak memory saved. The collector is off for the run and back on after it.
    # Turned back on, its first full collection still walks that whole heap (measured on the
    # 200-service stack: 2.3 of the run's 11.7 CPU seconds). A one-shot
    # process moves the run's objects to the permanent generation instead (``gc.freeze``): never
    # scanned, never freed before the process ends. Tests plan many stacks in one process and
    # keep the collector's normal behaviour.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return ctx.run(_run, project, stack, config, secret_keys, program, stock_sdk, settings_loader, references)
    finally:
        if one_shot:
            gc.freeze()
        if collecting:
            gc.enable()


def _run(project, stack, config, secret_keys, program, stock_sdk, settings_loader=None, references=None) -> RunResult:
    from pulumi.runtime import config as rconfig
    from pulumi.runtime import mocks as pmocks
    from pulumi.runtime import settings as rsettings
    from pulumi.runtime.stack import run_in_stack
    from pulumi.runtime.sync_await import _sync_await

    from components import program as program_mod
    from components import settings as settings_mod

    rconfig.set_all_config(config, secret_keys)
    _STOCK_SDK.set(stock_sdk)
    mocks = PlatformMocks(deployer_object_id(stack), references)
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
        registrations=sorted(monitor.registrations, key=lambda r: r.urn),
        outputs=monitor.stack_outputs,
        warnings=handler.messages,
        # secure config values (placeholders here) must never appear in plaintext either
        generated_secrets=list(mocks.generated_secrets) + ([SECURE_PLACEHOLDER] if secret_keys else []),
        invokes=sorted(mocks.invokes, key=lambda i: (i[0], json.dumps(i[1], sort_keys=True, default=str))),
        settings=(settings_loader or (lambda c, s: settings_mod.from_config_map(c, s, project)))(config, stack),
    )


def replaced_stack(config: dict[str, Any], project: str) -> str | None:
    """The stack a recovery stack's config names (``<project>:recovery.replaces``), if any."""
    from components.settings.loading import parse_value

    rec = parse_value(config.get(f"{project}:recovery"))
    return str(rec["replaces"]) if isinstance(rec, dict) and rec.get("replaces") else None


def deployer_object_id(stack: str, project_dir: Path = PROJECT_DIR) -> str:
    """Who runs the stack: the deploy identity the bootstrap planned for it, as generated into
    policies/config.<stack>.json (``python -m bootstrap.generate``), else the mocks' stand-in."""
    from .mocks import DEPLOYER_OBJECT_ID

    path = project_dir / "policies" / f"config.{stack}.json"
    if not path.is_file():
        return DEPLOYER_OBJECT_ID
    ids = json.loads(path.read_text()).get("keyvault-no-vault-wide-data-access", {}).get("deployerObjectIds") or []
    return str(ids[0]) if ids else DEPLOYER_OBJECT_ID
