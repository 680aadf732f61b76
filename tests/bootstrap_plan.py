"""The bootstrap's offline plan, made once per test session (python -m dryrun.bootstrap's run)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from conftest import unwrap

from dryrun import plan as plan_mod
from dryrun.bootstrap import plan_bootstrap
from dryrun.runner import RunResult


@dataclass
class BootstrapPlan:
    result: RunResult
    doc: dict[str, Any]

    @property
    def outputs(self) -> dict[str, Any]:
        return self.doc["outputs"]

    def of_type(self, suffix: str) -> list:
        return [r for r in self.result.registrations if r.type.endswith(suffix)]

    def inputs(self, name: str, type_suffix: str = "") -> dict[str, Any]:
        (r,) = [r for r in self.result.registrations if r.name == name and r.type.endswith(type_suffix)]
        return unwrap(r.inputs)

    def grants(self) -> dict[str, dict[str, Any]]:
        """Every role assignment by its logical name: role GUID, scope, principal, condition."""
        out = {}
        for r in self.of_type("authorization:RoleAssignment"):
            i = unwrap(r.inputs)
            out[r.name] = {
                "role": i["roleDefinitionId"].rsplit("/", 1)[-1],
                "scope": i["scope"],
                "principalId": i["principalId"],
                "principalType": i.get("principalType"),
                "condition": i.get("condition"),
            }
        return out


@functools.cache
def bootstrap_plan() -> BootstrapPlan:
    result = plan_bootstrap()
    return BootstrapPlan(result, plan_mod.plan_document(result))
