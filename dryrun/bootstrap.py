"""python -m dryrun.bootstrap [--out build/bootstrap]: the bootstrap's offline plan and its policy gate.

The same recording mocks, plan writer and analyzer host as the main stacks (``python -m dryrun``),
run over bootstrap/ (its own Pulumi.yaml and stack file) with bootstrap/policies as the pack.
Exit codes as ``python -m dryrun``: 2 for bad config (one line per problem), 3 for a mandatory
violation."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .runner import PROJECT_DIR

BOOTSTRAP_DIR = PROJECT_DIR / "bootstrap"
STACK = "platform"


def plan_bootstrap(stack: str = STACK, stack_text: str | None = None):
    """The bootstrap's RunResult (raises ConfigError on bad config)."""
    from bootstrap import program, settings

    from .runner import run_stack

    return run_stack(
        stack,
        project_dir=BOOTSTRAP_DIR,
        stack_text=stack_text,
        program=program.main,
        settings_loader=lambda config, name: settings.from_config_map(config, name),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dryrun.bootstrap", description=__doc__)
    parser.add_argument("--stack", default=STACK, help=f"bootstrap stack (default {STACK})")
    parser.add_argument("--out", type=Path, help="output folder (default build/bootstrap)")
    parser.add_argument("--stack-file", type=Path, help="read this file instead of bootstrap/Pulumi.<stack>.yaml")
    parser.add_argument("--no-policy", action="store_true", help="plan only, do not run the policy pack")
    args = parser.parse_args(argv)
    out = args.out or PROJECT_DIR / "build" / "bootstrap"

    from components.settings import ConfigError, read_stack_file

    from . import plan
    from .policy_host import run_pack

    stack_file = args.stack_file or BOOTSTRAP_DIR / f"Pulumi.{args.stack}.yaml"
    shown = str(args.stack_file) if args.stack_file else os.path.relpath(stack_file)
    if not stack_file.is_file():
        print(f"{shown}: no such stack file", file=sys.stderr)
        return 2
    try:
        text = stack_file.read_text()
        read_stack_file(text, shown)
        result = plan_bootstrap(args.stack, text)
    except ConfigError as exc:
        for line in exc.lines_for(shown):
            print(line, file=sys.stderr)
        return 2
    doc = plan.write_plan(result, out)
    print(plan.summary(doc, result.warnings))
    print(f"wrote {out}/plan.json")
    if args.no_policy:
        return 0
    pack = BOOTSTRAP_DIR / "policies"
    findings = run_pack(pack, pack / "config.json", result.registrations)
    plan.write_policy_report(result, out, findings)
    mandatory = [f for f in findings if f.enforcement_level == "mandatory"]
    print(
        f"policy pack bootstrap/policies: {len(mandatory)} mandatory, "
        f"{len(findings) - len(mandatory)} advisory violation(s); wrote {out}/policy-report.json"
    )
    for f in findings:
        print(f"  [{f.enforcement_level}] {f.policy}: {f.message.splitlines()[-1]}")
    return 3 if mandatory else 0


if __name__ == "__main__":
    sys.exit(main())
