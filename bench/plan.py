"""Benchmark: how long the offline prod plan takes, and where the time goes.

    .venv/bin/python bench/plan.py [--stack prod] [--runs 5]

- cold: `make plan` with an empty bytecode cache (PYTHONPYCACHEPREFIX points at a fresh
  folder, so every module of the SDKs and the project is compiled from source);
- warm: `make plan` again with the normal caches (median of --runs);
- split: in one fresh process, the import time of the SDK modules the program uses
  against the time of the program itself (planning + writing plan.json) and of the policy
  gate (starting the pack as a plugin and analysing every resource over gRPC);
- plan only: `python -m dryrun <stack> --no-policy`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SPLIT = r"""
import json, sys, time
t0 = time.perf_counter()
import pulumi, pulumi_random, pulumi_kubernetes
from pulumi_azure_native import (
    authorization, containerservice, dbforpostgresql, keyvault, managedidentity, network, operationalinsights,
    privatedns, resources,
)
import pydantic
# azure-native and kubernetes load lazily: touch what the program uses so the import is counted here.
import pulumi_tls
for cls in (pulumi_tls.PrivateKey, pulumi_tls.LocallySignedCert, pulumi_kubernetes.core.v1.Secret,
            pulumi_kubernetes.networking.v1.NetworkPolicy, pulumi_kubernetes.apiextensions.CustomResource,
            authorization.RoleAssignment, containerservice.ManagedCluster, containerservice.AgentPool,
            containerservice.MaintenanceConfiguration, dbforpostgresql.Server, dbforpostgresql.Configuration,
            dbforpostgresql.Database, keyvault.Vault, keyvault.Secret, managedidentity.UserAssignedIdentity,
            managedidentity.FederatedIdentityCredential, network.VirtualNetwork, network.PrivateEndpoint,
            network.NetworkSecurityGroup, network.PrivateDnsZoneGroup, operationalinsights.Workspace,
            privatedns.PrivateZone, privatedns.VirtualNetworkLink, resources.ResourceGroup,
            pulumi_kubernetes.Provider, pulumi_random.RandomPassword, pulumi_random.RandomString):
    pass
t1 = time.perf_counter()
sys.path.insert(0, ".")
from dryrun.runner import run_stack
from dryrun.plan import write_plan
import components.program
t2 = time.perf_counter()
result = run_stack(sys.argv[1])
doc = write_plan(result, __import__("pathlib").Path(sys.argv[2]))
t3 = time.perf_counter()
from pathlib import Path
from dryrun.policy_host import run_pack
run_pack(Path("policies"), Path(f"policies/config.{sys.argv[1]}.json"), result.registrations)
t4 = time.perf_counter()
print(json.dumps({"sdk_imports": t1 - t0, "project_imports": t2 - t1, "program": t3 - t2, "policy": t4 - t3,
                  "resources": len(doc["resources"])}))
"""


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    make = ["make", "-s", "plan", f"STACK={args.stack}"]
    timed(make)  # make sure the venv exists before timing anything

    with tempfile.TemporaryDirectory() as cache:
        cold = timed(make, env={**os.environ, "PYTHONPYCACHEPREFIX": cache})
    warm = [timed(make) for _ in range(args.runs)]

    py = str(ROOT / ".venv" / "bin" / "python")
    with tempfile.TemporaryDirectory() as out:
        splits = [
            json.loads(
                subprocess.run(
                    [py, "-c", SPLIT, args.stack, out], cwd=ROOT, check=True, capture_output=True, text=True
                ).stdout
            )
            for _ in range(args.runs)
        ]
    med = {k: statistics.median(s[k] for s in splits) for k in ("sdk_imports", "project_imports", "program", "policy")}

    print(
        f"stack: {args.stack}  resources: {splits[0]['resources']}  cores: {os.cpu_count()}  "
        f"python: {sys.version.split()[0]}"
    )
    print(f"make plan, cold (empty bytecode cache): {cold:6.2f} s")
    print(
        f"make plan, warm (median of {args.runs}):       {statistics.median(warm):6.2f} s  "
        f"(min {min(warm):.2f}, max {max(warm):.2f})"
    )
    print(f"  SDK imports (pulumi, azure-native modules, kubernetes, random, pydantic): {med['sdk_imports']:5.2f} s")
    print(f"  project imports (components, dryrun):                                    {med['project_imports']:5.2f} s")
    print(f"  program under mocks + plan.json:                                         {med['program']:5.2f} s")
    print(f"  policy pack over the recorded resources (plugin start + gRPC analysis):  {med['policy']:5.2f} s")
    plan_only = [
        timed([str(ROOT / ".venv/bin/python"), "-m", "dryrun", args.stack, "--no-policy"]) for _ in range(args.runs)
    ]
    print(f"python -m dryrun --no-policy (plan without the gate), median: {statistics.median(plan_only):6.2f} s")


if __name__ == "__main__":
    main()
