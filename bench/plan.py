"""Benchmark of the offline plan, as ratios to floors measured in the same run.

    .venv/bin/python bench/plan.py [--runs 3] [--scale] [--stack prod]

Every measurement is a fresh process (nothing imported is shared), timed from outside: wall
seconds, and CPU seconds (user + system, from ``os.wait4``, with the peak resident set), which
move far less than wall time when other processes share the cores. The rounds interleave the
commands so that load from other processes hits the floor and the plan alike.

- import floor: a process that only imports the SDK modules the program uses;
- plan: ``python -m dryrun <stack> --no-policy``; gate: ``python -m dryrun <stack>`` (= ``make plan``);
- ``--cold``: the same with an empty bytecode cache (``PYTHONPYCACHEPREFIX`` → a fresh folder),
  against the import floor with an empty cache.

``--scale`` adds the scaling table: the stack with 8, 50 and 200 generated services (the shapes
of the stack's own services, round robin), against the SDK floor: the same runner and recording
mocks registering N plain Key Vault secrets and nothing else. Milliseconds per resource are
marginal: (t_N - t_stack) / (r_N - r_stack), so start-up and imports cancel out.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
SCALE_SERVICES = (8, 50, 200)

IMPORT_FLOOR = r"""
import pulumi, pulumi_random, pulumi_tls, pulumi_kubernetes, pydantic
from pulumi_azure_native import (authorization, containerservice, dbforpostgresql, keyvault, managedidentity, network,
                                 operationalinsights, privatedns, resources)
# azure-native and kubernetes load lazily: touch what the program uses so that the import is counted.
for cls in (pulumi_tls.PrivateKey, pulumi_tls.LocallySignedCert, pulumi_kubernetes.core.v1.Secret,
            pulumi_kubernetes.networking.v1.NetworkPolicy, pulumi_kubernetes.apiextensions.CustomResource,
            pulumi_kubernetes.helm.v3.Release, pulumi_kubernetes.yaml.v2.ConfigFile, pulumi_kubernetes.Provider,
            authorization.RoleAssignment, containerservice.ManagedCluster, containerservice.AgentPool,
            containerservice.MaintenanceConfiguration, dbforpostgresql.Server, dbforpostgresql.Configuration,
            dbforpostgresql.Database, keyvault.Vault, keyvault.Secret, managedidentity.UserAssignedIdentity,
            managedidentity.FederatedIdentityCredential, network.VirtualNetwork, network.PrivateEndpoint,
            network.NetworkSecurityGroup, network.PrivateDnsZoneGroup, operationalinsights.Workspace,
            privatedns.PrivateZone, privatedns.VirtualNetworkLink, resources.ResourceGroup,
            pulumi_random.RandomPassword, pulumi_random.RandomString):
    pass
"""

# The SDK floor: the same runner and mocks, a program that registers N Key Vault secrets.
SDK_FLOOR = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from pulumi_azure_native import keyvault
from dryrun.plan import write_plan
from dryrun.runner import run_stack

def secrets():
    for i in range(int(sys.argv[3])):
        keyvault.Secret(f"floor-{i}", resource_group_name="rg", vault_name="kv", secret_name=f"floor-{i}",
                        properties=keyvault.SecretPropertiesArgs(value="not-a-secret"))

write_plan(run_stack(sys.argv[2], program=secrets, one_shot=True), Path(sys.argv[4]))  # as the CLI
"""


def stack_with_services(stack_text: str, count: int) -> str:
    """The stack file with ``count`` services cycling through the shapes of its own services:
    ``<service>-<i>``, an explicit queue renamed to match. The one place that knows where
    services live in a stack file."""
    doc = yaml.safe_load(stack_text)
    services = doc["config"]["event-backbone:services"]
    shapes = list(services.items())
    generated = {}
    for i in range(count):
        base, shape = shapes[i % len(shapes)]
        name = f"{base}-{i:03d}"
        spec = copy.deepcopy(shape)
        if "queue" in spec:
            spec["queue"] = spec["queue"].replace(base, name, 1)
        generated[name] = spec
    services.clear()
    services.update(generated)
    return yaml.safe_dump(doc, sort_keys=False)


def machine_line() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} cores, {model}, Python {platform.python_version()} "
        f"({platform.system()} {platform.machine()}); load average at start: {load}"
    )


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak resident MiB of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 3):  # 3: the policy gate found mandatory violations (still a full run)
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{err}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def resources_in(out_dir: Path) -> int:
    return len(json.loads((out_dir / "plan.json").read_text())["resources"])


class Series:
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self.mib: list[float] = []

    def add(self, measured: tuple[float, float, float]) -> None:
        self.seconds.append(measured[0])
        self.cpu_seconds.append(measured[1])
        self.mib.append(measured[2])

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_seconds)


def quick(args: argparse.Namespace, tmp: Path) -> None:
    stack = args.stack
    plan_cmd = [PY, "-m", "dryrun", stack, "--out", str(tmp / "plan"), "--no-policy"]
    gate_cmd = [PY, "-m", "dryrun", stack, "--out", str(tmp / "gate")]
    floor_cmd = [PY, "-c", IMPORT_FLOOR]
    run(gate_cmd)  # warm the bytecode caches before timing anything
    floor, plan, gate, cold_floor, cold_plan = Series(), Series(), Series(), Series(), Series()
    for _ in range(args.runs):
        floor.add(run(floor_cmd))
        plan.add(run(plan_cmd))
        gate.add(run(gate_cmd))
        if args.cold:
            for cmd, series in ((floor_cmd, cold_floor), (plan_cmd, cold_plan)):
                with tempfile.TemporaryDirectory(dir=tmp) as cache:
                    series.add(run(cmd, env={**os.environ, "PYTHONPYCACHEPREFIX": cache}))
    print(f"{stack}: {resources_in(tmp / 'plan')} resources; median of {args.runs} fresh processes each")
    print(f"{'':46} {'wall s':>7} {'min':>6} {'max':>6} {'x floor':>8} {'CPU s':>7} {'x floor':>8} {'peak MiB':>9}")
    rows = [
        ("SDK import floor", floor, floor),
        (f"plan: python -m dryrun {stack} --no-policy", plan, floor),
        (f"plan + policy gate: make plan STACK={stack}", gate, floor),
    ]
    if args.cold:
        rows += [
            ("SDK import floor, empty bytecode cache", cold_floor, cold_floor),
            ("plan --no-policy, empty bytecode cache", cold_plan, cold_floor),
        ]
    for label, series, base in rows:
        print(
            f"{label:46} {series.median:7.2f} {min(series.seconds):6.2f} {max(series.seconds):6.2f} "
            f"{series.median / base.median:7.2f}x {series.cpu:7.2f} {series.cpu / base.cpu:7.2f}x "
            f"{max(series.mib):9.0f}"
        )
    for label, series in (("plan + policy gate", gate), ("plan alone", plan)):
        wall, cpu = series.median / floor.median, series.cpu / floor.cpu
        verdict = "met" if max(wall, cpu) <= 2.5 else "NOT met"
        print(f"target: {label} <= 2.5x the import floor: {wall:.2f}x wall, {cpu:.2f}x CPU ({verdict})")


def scale(args: argparse.Namespace, tmp: Path) -> None:
    stack = args.stack
    text = (ROOT / f"Pulumi.{stack}.yaml").read_text()
    cases: list[tuple[str, int | None, Path]] = [(f"{stack} stack", None, ROOT / f"Pulumi.{stack}.yaml")]
    for n in SCALE_SERVICES:
        path = tmp / f"Pulumi.{stack}-{n}.yaml"
        path.write_text(stack_with_services(text, n))
        cases.append((f"{n} services", n, path))

    def plan_cmd(path: Path, out: Path) -> list[str]:
        return [PY, "-m", "dryrun", stack, "--stack-file", str(path), "--out", str(out), "--no-policy"]

    # Resource counts first (one untimed run each also warms the caches), then interleaved rounds.
    counts = {}
    for label, _, path in cases:
        run(plan_cmd(path, tmp / label))
        counts[label] = resources_in(tmp / label)
    floors = sorted({counts[cases[0][0]], counts[cases[-1][0]]})
    floor_cmds = {n: [PY, "-c", SDK_FLOOR, str(ROOT), stack, str(n), str(tmp / f"floor-{n}")] for n in floors}
    series = {label: Series() for label, _, _ in cases}
    floor_series = {n: Series() for n in floors}
    for _ in range(args.scale_runs):
        for label, _, path in cases:
            series[label].add(run(plan_cmd(path, tmp / label)))
        for n, cmd in floor_cmds.items():
            floor_series[n].add(run(cmd))
    for n in floors:
        assert resources_in(tmp / f"floor-{n}") == n, "the SDK floor registers exactly N resources"

    base_label = cases[0][0]
    r0, t0 = counts[base_label], series[base_label].median
    fr0, fr1 = floors[0], floors[-1]
    floor_ms = 1000 * (floor_series[fr1].median - floor_series[fr0].median) / (fr1 - fr0)
    c0 = series[base_label].cpu
    floor_cpu_ms = 1000 * (floor_series[fr1].cpu - floor_series[fr0].cpu) / (fr1 - fr0)
    print(f"scaling: median of {args.scale_runs} fresh processes each; ms/resource marginal over the {base_label}")
    print(
        f"{'':34} {'resources':>9} {'wall s':>7} {'ms/res':>7} {'x floor':>8} "
        f"{'CPU s':>7} {'ms/res':>7} {'x floor':>8} {'peak MiB':>9}"
    )
    for label, _, _ in cases:
        s, r = series[label], counts[label]
        cols = ["", "", "", ""]
        if r != r0:
            ms, cpu_ms = 1000 * (s.median - t0) / (r - r0), 1000 * (s.cpu - c0) / (r - r0)
            cols = [f"{ms:.1f}", f"{ms / floor_ms:.2f}x", f"{cpu_ms:.1f}", f"{cpu_ms / floor_cpu_ms:.2f}x"]
        print(
            f"{'plan ' + label:34} {r:9d} {s.median:7.2f} {cols[0]:>7} {cols[1]:>8} "
            f"{s.cpu:7.2f} {cols[2]:>7} {cols[3]:>8} {max(s.mib):9.0f}"
        )
    for n in floors:
        s = floor_series[n]
        per, cpu_per = (f"{floor_ms:.1f}", f"{floor_cpu_ms:.1f}") if n == fr1 else ("", "")
        print(
            f"{f'SDK floor: {n} Key Vault secrets':34} {n:9d} {s.median:7.2f} {per:>7} {'':8} "
            f"{s.cpu:7.2f} {cpu_per:>7} {'':8} {max(s.mib):9.0f}"
        )
    top = cases[-1][0]
    wall = 1000 * (series[top].median - t0) / (counts[top] - r0) / floor_ms
    cpu = 1000 * (series[top].cpu - c0) / (counts[top] - r0) / floor_cpu_ms
    verdict = "met" if max(wall, cpu) <= 1.25 else "NOT met"
    print(f"target: per-resource cost <= 1.25x the SDK floor at {top}: {wall:.2f}x wall, {cpu:.2f}x CPU ({verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--runs", type=int, default=3, help="rounds of the quick table (default 3)")
    parser.add_argument("--cold", action="store_true", help="add runs with an empty bytecode cache")
    parser.add_argument("--scale", action="store_true", help="add the scaling table (minutes on 2 cores)")
    parser.add_argument("--scale-runs", type=int, default=3, help="rounds of the scaling table (default 3)")
    parser.add_argument("--no-quick", action="store_true", help="only the scaling table")
    args = parser.parse_args()
    print(machine_line())
    print(f"command: {shlex.join(['.venv/bin/python', 'bench/plan.py', *sys.argv[1:]])}")
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        if not args.no_quick:
            quick(args, Path(tmp))
        if args.scale:
            scale(args, Path(tmp))


if __name__ == "__main__":
    main()
