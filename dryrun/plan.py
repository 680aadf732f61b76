"""plan.json: the recorded registrations with every secret replaced by "[secret]"."""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path
from typing import Any

from pulumi import asset
from pulumi.runtime import rpc

from .runner import RunResult

SECRET = "[secret]"
UNKNOWN = "[unknown]"


def redact(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return SECRET
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if value == rpc.UNKNOWN:
        return UNKNOWN
    if isinstance(value, float) and value.is_integer():
        return int(value)  # protobuf Structs carry every number as a double
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, asset.StringAsset):
        return {"stringAsset": value.text}
    if isinstance(value, asset.FileAsset):
        return {"fileAsset": value.path}
    return str(value)


def plan_document(result: RunResult) -> dict:
    return {
        "project": result.project,
        "stack": result.stack,
        "resources": [
            {
                "urn": r.urn,
                "type": r.type,
                "name": r.name,
                "parent": r.parent,
                "dependencies": r.dependencies,
                "protect": r.protect,
                **({"retainOnDelete": True} if r.retain_on_delete else {}),
                "inputs": redact(r.inputs),
            }
            for r in result.registrations
        ],
        "outputs": redact(result.outputs),
    }


@functools.lru_cache(maxsize=4)
def _by_prefix(secrets: tuple[str, ...]) -> tuple[tuple[str, frozenset[str], tuple[int, ...]], ...]:
    """The secrets grouped by their first 4 characters, with each group's lengths: built once per
    run, not once per file written (a 200-service plan writes ~3000 files)."""
    by_prefix: dict[str, set[str]] = {}
    for secret in secrets:
        by_prefix.setdefault(secret[:4], set()).add(secret)
    return tuple((p, frozenset(g), tuple(sorted({len(s) for s in g}))) for p, g in by_prefix.items())


def _count_leaks(secrets: list[str], content: str) -> int:
    """How many of ``secrets`` occur in ``content`` (= ``sum(s in content for s in secrets)``).
    The generated values share a few short prefixes ("Mock", "MOCK"): one scan per prefix finds
    the candidate positions, instead of one scan of a multi-MiB plan per secret."""
    found: set[str] = set()
    for prefix, group, lengths in _by_prefix(tuple(secrets)):
        at = content.find(prefix)
        while at != -1:
            found.update(content[at : at + n] for n in lengths if content[at : at + n] in group)
            at = content.find(prefix, at + 1)
    if not found:
        return 0
    return sum(1 for secret in secrets if secret in found)


def write(result: RunResult, out_dir: Path, relative: str, content: str) -> Path:
    """Every file under build/ goes through here: none may carry a secret the run generated
    (or a secure config value) in plaintext."""
    leaked = _count_leaks(result.generated_secrets, content)
    if leaked:
        raise RuntimeError(f"refusing to write {relative}: {leaked} secret value(s) would appear in plaintext")
    path = out_dir / relative
    try:
        path.write_text(content)
    except FileNotFoundError:  # the first file of its folder (not one mkdir per file: ~3000 at 200 services)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return path


def write_plan(result: RunResult, out_dir: Path) -> dict:
    doc = plan_document(result)
    write(result, out_dir, "plan.json", json.dumps(doc, indent=2) + "\n")
    return doc


def summary(doc: dict, warnings: list[str]) -> str:
    counts = Counter(r["type"] for r in doc["resources"])
    lines = [f"{doc['project']}/{doc['stack']}: {len(doc['resources'])} resources"]
    width = max((len(t) for t in counts), default=0)
    for typ, n in sorted(counts.items()):
        lines.append(f"  {typ.ljust(width)}  {n}")
    protected = sum(1 for r in doc["resources"] if r["protect"])
    lines.append(f"  protected: {protected}")
    for w in warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def write_artefacts(result: RunResult, out_dir: Path) -> list[str]:
    """Every generated configuration file (components.render.artefacts)."""
    from components.render import artefacts

    files = artefacts(result.settings)
    for relative, content in files.items():
        write(result, out_dir, relative, content)
    return sorted(files)


def write_policy_report(result: RunResult, out_dir: Path, findings: list) -> Path:
    return write(result, out_dir, "policy-report.json", json.dumps([f.as_json() for f in findings], indent=2) + "\n")


def write_invokes(result: RunResult, out_dir: Path) -> str:
    """invokes.json: every provider function the program called (what a preview calls besides reads;
    bootstrap/roles.py maps each to the right it needs)."""
    calls = sorted({token for token, _ in result.invokes or []})
    write(result, out_dir, "invokes.json", json.dumps({"stack": result.stack, "invokes": calls}, indent=2) + "\n")
    return "invokes.json"
