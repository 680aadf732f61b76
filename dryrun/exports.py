"""Writes the exports Checkov scans: build/<stack>/arm/template.json and build/<stack>/k8s/
(see dryrun.arm and dryrun.manifests), through the plan's one writer (dryrun.plan.write)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import arm, manifests
from .plan import write
from .runner import RunResult


def write_exports(result: RunResult, out_dir: Path) -> list[str]:
    exported = arm.export(result.registrations, result.stack)
    if exported.unmapped:  # the plan still succeeds; tests/test_checkov.py fails on it
        print(
            f"warning: not in the ARM export (add to dryrun.arm.TYPES): {', '.join(exported.unmapped)}", file=sys.stderr
        )
    written = ["arm/template.json"]
    write(result, out_dir, written[0], json.dumps(exported.template, indent=2) + "\n")
    k8s = manifests.export(result.registrations)
    for relative, content in sorted(k8s.files.items()):
        write(result, out_dir, f"k8s/{relative}", content)
        written.append(f"k8s/{relative}")
    return written
