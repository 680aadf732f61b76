"""Generated files of the bootstrap; never edit them by hand (tests/test_bootstrap.py proves each
equals what this writes).

    python -m bootstrap.generate needs [--plans build]
        bootstrap/main-stack-needs.json from build/dev/plan.json and build/prod/plan.json
        (run `make plan STACK=dev` and `make plan STACK=prod` first): the roles each main stack
        assigns and the Microsoft.Authorization writes it makes.
    python -m bootstrap.generate outputs [--from FILE]
        bootstrap/outputs.json: the bootstrap's outputs, from its offline plan (build/bootstrap/plan.json,
        the default) or from the real stack (`pulumi stack output --json` in bootstrap/, saved to FILE).
    python -m bootstrap.generate policy-config
        policies/config.<stack>.json's deployerObjectIds and assignableRoleDefinitionIds from
        bootstrap/outputs.json, and the GitHub variables to set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import roles

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS_FILE = Path(__file__).resolve().parent / "outputs.json"
OFFLINE = "offline plan (python -m dryrun.bootstrap)"
REAL = "pulumi stack output --json (bootstrap stack)"
STACKS = ("dev", "prod", "prod-dr")
# the environment (deploy identity) of each stack: prod's recovery stack is deployed by prod's
ENVIRONMENT_OF = {"dev": "dev", "prod": "prod", "prod-dr": "prod"}
ENVIRONMENTS = ("dev", "prod")
VAULT_POLICY = "keyvault-no-vault-wide-data-access"
ROLES_POLICY = "role-assignments-assignable"


def outputs_document(path: Path) -> str:
    """bootstrap/outputs.json: the outputs and where they come from."""
    doc = json.loads(path.read_text())
    offline = "resources" in doc and "outputs" in doc
    outputs = doc["outputs"] if offline else doc
    return json.dumps({"source": OFFLINE if offline else REAL, "outputs": outputs}, indent=2, sort_keys=True) + "\n"


def read_outputs(path: Path = OUTPUTS_FILE) -> dict[str, Any]:
    return json.loads(path.read_text())["outputs"]


def render_config(current: str, stack: str, outputs: dict[str, Any]) -> str:
    """policies/config.<stack>.json with the two generated entries set from the bootstrap outputs;
    every other policy's settings as they were, one policy per line."""
    doc = json.loads(current)
    env = outputs["environments"][ENVIRONMENT_OF[stack]]
    doc[VAULT_POLICY] = {**doc.get(VAULT_POLICY, {}), "deployerObjectIds": [env["deployPrincipalId"]]}
    doc[ROLES_POLICY] = {"assignableRoleDefinitionIds": sorted(env["assignableRoleDefinitionIds"])}
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def github_variables(outputs: dict[str, Any]) -> list[str]:
    """The `gh variable set` commands the workflows' variables come from."""
    cmds = [
        f"gh variable set AZURE_TENANT_ID --body {outputs['tenantId']}",
        f"gh variable set AZURE_PREVIEW_CLIENT_ID --body {outputs['preview']['clientId']}",
    ]
    for stack in ENVIRONMENTS:
        env = outputs["environments"][stack]
        name = env["githubEnvironment"]
        cmds += [
            f"gh variable set AZURE_CLIENT_ID --env {name} --body {env['deployClientId']}",
            f"gh variable set AZURE_SUBSCRIPTION_ID --env {name} --body {env['subscriptionId']}",
            f"gh variable set PULUMI_BACKEND_URL --env {name} --body '{env['backendUrl']}'",
        ]
    dev = outputs["environments"]["dev"]
    cmds += [
        f"gh variable set AZURE_PREVIEW_SUBSCRIPTION_ID --body {dev['subscriptionId']}",
        f"gh variable set PULUMI_PREVIEW_BACKEND_URL --body '{dev['backendUrl']}'",
    ]
    return cmds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bootstrap.generate", description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    needs = sub.add_parser("needs")
    needs.add_argument("--plans", type=Path, default=ROOT / "build")
    outs = sub.add_parser("outputs")
    outs.add_argument("--from", dest="source", type=Path, default=ROOT / "build" / "bootstrap" / "plan.json")
    cfg = sub.add_parser("policy-config")
    cfg.add_argument("--policies", type=Path, default=ROOT / "policies")
    args = parser.parse_args(argv)
    if args.what == "needs":
        plans = {}
        for stack in STACKS:
            path = args.plans / stack / "plan.json"
            if not path.is_file():
                print(f"{path}: no plan; run: make plan STACK={stack}", file=sys.stderr)
                return 2
            plans[stack] = json.loads(path.read_text())
        roles.NEEDS_FILE.write_text(roles.needs_document(plans, ENVIRONMENT_OF))
        print(f"wrote {roles.NEEDS_FILE.relative_to(ROOT)}")
        return 0
    if args.what == "outputs":
        if not args.source.is_file():
            print(f"{args.source}: no bootstrap outputs; run: make plan-bootstrap", file=sys.stderr)
            return 2
        OUTPUTS_FILE.write_text(outputs_document(args.source))
        print(f"wrote {OUTPUTS_FILE.relative_to(ROOT)}")
        return 0
    outputs = read_outputs()
    for stack in STACKS:
        path = args.policies / f"config.{stack}.json"
        path.write_text(render_config(path.read_text(), stack, outputs))
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    print("GitHub variables (run once in the repository):")
    for cmd in github_variables(outputs):
        print(f"  {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
