"""python -m dryrun <stack> [--out build/<stack>]: the offline plan (see README)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .runner import PROJECT_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dryrun", description=__doc__)
    parser.add_argument("stack", help="stack name: reads Pulumi.<stack>.yaml")
    parser.add_argument("--out", type=Path, help="output folder (default build/<stack>)")
    parser.add_argument(
        "--stack-file", type=Path, help="read this file instead of Pulumi.<stack>.yaml (e.g. a broken copy)"
    )
    parser.add_argument(
        "--policy-pack", type=Path, default=PROJECT_DIR / "policies", help="policy pack folder (default policies/)"
    )
    parser.add_argument("--policy-config", type=Path, help="policy config (default policies/config.<stack>.json)")
    parser.add_argument("--no-policy", action="store_true", help="plan only, do not run the policy pack")
    args = parser.parse_args(argv)
    out = args.out or PROJECT_DIR / "build" / args.stack

    from components.settings import ConfigError, read_stack_file

    from . import plan
    from .exports import write_exports
    from .runner import run_stack

    stack_file = args.stack_file or PROJECT_DIR / f"Pulumi.{args.stack}.yaml"
    # Problems name the file as the user wrote it (--stack-file other.yaml), else relative to here.
    shown = str(args.stack_file) if args.stack_file else os.path.relpath(stack_file)
    if not stack_file.is_file():
        print(f"{shown}: no such stack file", file=sys.stderr)
        return 2
    try:
        text = stack_file.read_text()
        read_stack_file(text, shown)  # YAML syntax, duplicate keys: FILE:LINE:COL lines, not a traceback
        result = run_stack(args.stack, stack_text=text, one_shot=True)
    except ConfigError as exc:
        for line in exc.lines_for(shown):
            print(line, file=sys.stderr)
        return 2
    doc = plan.write_plan(result, out)
    written = plan.write_artefacts(result, out) + write_exports(result, out)  # + arm/, k8s/ for Checkov
    written.append(plan.write_invokes(result, out))
    from . import access

    access_files, access_line = access.write_access(result, doc, out)
    written += access_files
    from .signing import write_signing

    written += write_signing(result, doc, out)  # signing/: trust policy, certificate policy
    print(plan.summary(doc, result.warnings))
    print(access_line)
    for path in ["plan.json", *written]:
        print(f"wrote {out}/{path}")
    if args.no_policy:
        return 0

    from .policy_host import run_pack

    config = args.policy_config or args.policy_pack / f"config.{args.stack}.json"
    findings = run_pack(args.policy_pack, config, result.registrations)
    plan.write_policy_report(result, out, findings)
    mandatory = [f for f in findings if f.enforcement_level == "mandatory"]
    print(
        f"policy pack {args.policy_pack.name} ({config.name}): {len(mandatory)} mandatory, "
        f"{len(findings) - len(mandatory)} advisory violation(s); wrote {out}/policy-report.json"
    )
    for f in findings:
        print(f"  [{f.enforcement_level}] {f.policy}: {f.message.splitlines()[-1]}")
    return 3 if mandatory else 0


if __name__ == "__main__":
    sys.exit(main())
