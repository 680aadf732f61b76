"""Stack files are read strictly: a broken copy of each real stack file, planned with
``python -m dryrun <stack> --stack-file COPY --out OUT``, gives its exact lines, exit 2 and
writes nothing. Most cases call the dryrun entry point in-process (one import of the program
for the whole file); one runs it as a subprocess to prove the exit code and that no traceback
is printed."""

from __future__ import annotations

import contextvars
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from components import settings as S
from dryrun.__main__ import main as dryrun_main
from dryrun.runner import config_from_yaml

STACKS = ["dev", "prod"]
ALLOWED = "event-backbone:, azure-native:, cloudamqp:, kubernetes:, pulumi:, rabbitmq:, random:, tls:"


def real(stack: str) -> str:
    return (ROOT / f"Pulumi.{stack}.yaml").read_text()


def edit(stack: str, old: str, new: str, count: int = 1) -> str:
    """The real stack file with ``old`` (which must occur) replaced by ``new``."""
    text = real(stack)
    assert old in text, f"Pulumi.{stack}.yaml no longer contains {old!r}: update the test"
    return text.replace(old, new, count)


def where(text: str, needle: str) -> tuple[int, int]:
    """1-based (line, column) of the first occurrence of ``needle``, as editors count."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(f"{needle!r} not found")


def plan(tmp_path: Path, stack: str, text: str, capsys, name: str | None = None) -> list[str]:
    """Plans a copy with dryrun (in-process); asserts exit 2, nothing on stdout, nothing written;
    returns the stderr lines. ``name`` passes a relative --stack-file from tmp_path."""
    copy = tmp_path / (name or f"copy-{stack}.yaml")
    copy.write_text(text)
    out = tmp_path / "out"
    assert dryrun_main([stack, "--stack-file", name or str(copy), "--out", str(out), "--no-policy"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert not out.exists()
    return captured.err.splitlines()


def waiting(n: int) -> str:
    if n == 1:
        return "1 further cross-key/environment check waits on the errors above and runs once they are fixed"
    return f"{n} further cross-key/environment checks wait on the errors above and run once they are fixed"


# --- YAML that is not even readable: FILE:LINE:COL, one line, no traceback --------------------


def test_yaml_error_as_a_subprocess_is_one_line_exit_2_nothing_written(tmp_path):
    text = edit("prod", "    adminGroupObjectIds:\n      - ", "    adminGroupObjectIds: [")
    opened = where(text, "adminGroupObjectIds: [")
    copy, out = tmp_path / "broken.yaml", tmp_path / "out"
    copy.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "dryrun", "prod", "--stack-file", str(copy), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # the flow sequence runs on into the next key, whose ':' is where YAML gives up
    line = opened[0] + 1
    col = text.splitlines()[line - 1].index(":") + 1
    assert proc.stderr.splitlines() == [
        f"{copy}:{line}:{col}: expected ',' or ']', but got ':': "
        f"the '[' opened at line {opened[0]}, column {opened[1] + len('adminGroupObjectIds: ')} is not closed"
    ]
    assert (proc.returncode, proc.stdout) == (2, "")
    assert not out.exists()


@pytest.mark.parametrize("stack", STACKS)
def test_unclosed_bracket(tmp_path, capsys, stack):
    text = edit(stack, "    availabilityZones: ", "    availabilityZones: [")  # dev: [[], prod: [["1", ...
    line, col = where(text, "availabilityZones: [")
    lines = plan(tmp_path, stack, text, capsys)
    assert len(lines) == 1
    assert re.fullmatch(
        rf"{tmp_path}/copy-{stack}\.yaml:\d+:\d+: expected ',' or '\]', but got '.+': "
        rf"the '\[' opened at line {line}, column {col + len('availabilityZones: ')} is not closed",
        lines[0],
    ), lines


@pytest.mark.parametrize("stack", STACKS)
def test_bad_indent(tmp_path, capsys, stack):
    text = edit(stack, "    aksSubnet:", "   aksSubnet:")
    line, col = where(text, "aksSubnet:")
    config_line, config_col = where(text, "azure-native:location")  # the first key under config:
    assert plan(tmp_path, stack, text, capsys) == [
        f"{tmp_path}/copy-{stack}.yaml:{line}:{col}: bad indentation: this line lines up with no key above it"
        f" (the mapping at line {config_line}, column {config_col} is still open)"
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_tab_indent(tmp_path, capsys, stack):
    text = edit(stack, "    tier:", "\ttier:")
    line, _ = where(text, "\ttier:")
    assert plan(tmp_path, stack, text, capsys) == [
        f"{tmp_path}/copy-{stack}.yaml:{line}:1: a tab character: YAML indents with spaces only"
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_duplicate_key_is_not_silently_dropped(tmp_path, capsys, stack):
    text = edit(
        stack, "  event-backbone:keyVault:", "  event-backbone:location: northeurope\n  event-backbone:keyVault:"
    )
    first, _ = where(text, "event-backbone:location: westeurope")
    second, col = where(text, "event-backbone:location: northeurope")
    assert plan(tmp_path, stack, text, capsys) == [
        f"{tmp_path}/copy-{stack}.yaml:{second}:{col}: duplicate key 'event-backbone:location'"
        f" (first at line {first}); YAML would keep only the last"
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_misspelt_config_section(tmp_path, capsys, stack):
    text = edit(stack, "\nconfig:\n", "\nconfg:\n")
    line, _ = where(text, "confg:")
    assert plan(tmp_path, stack, text, capsys) == [
        f"{tmp_path}/copy-{stack}.yaml:{line}:1: 'confg' is not a stack file key; did you mean 'config'?"
    ]


# --- namespaces: a misspelt or missing one can no longer drop settings ------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_misspelt_project_namespace(tmp_path, capsys, stack):
    text = edit(stack, "  event-backbone:postgres:", "  event-backbon:postgres:")
    # the postgres checks wait (they would otherwise judge the defaults): postgres_rules and
    # in prod also prod_postgres_rules and hardening_rules (which reads postgres.defender there)
    assert plan(tmp_path, stack, text, capsys) == [
        f"{tmp_path}/copy-{stack}.yaml: event-backbon:postgres is not a known namespace;"
        " did you mean 'event-backbone:postgres'?",
        # + disaster_recovery_rules (reads postgres); + hardening_rules in prod
        f"{tmp_path}/copy-{stack}.yaml: {waiting(4 if stack == 'prod' else 2)}",
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_bare_key_without_namespace(tmp_path, capsys, stack):
    text = edit(stack, "  event-backbone:namePrefix: ebb", "  namePrefix: zzz")
    assert plan(tmp_path, stack, text, capsys) == [
        f"{tmp_path}/copy-{stack}.yaml: namePrefix has no namespace; did you mean 'event-backbone:namePrefix'?"
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_bare_unknown_key_lists_the_allowed_namespaces(tmp_path, capsys, stack):
    text = edit(stack, "\nconfig:\n", "\nconfig:\n  region: westeurope\n")
    assert plan(tmp_path, stack, text, capsys) == [
        f"{tmp_path}/copy-{stack}.yaml: region has no namespace; allowed: {ALLOWED}"
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_unknown_namespace_lists_the_allowed_ones(tmp_path, capsys, stack):
    text = edit(stack, "  azure-native:location: westeurope", "  aws:region: eu-west-1")
    assert plan(tmp_path, stack, text, capsys) == [
        f"{tmp_path}/copy-{stack}.yaml: aws:region is not a known namespace; allowed: {ALLOWED}"
    ]


def test_namespace_check_applies_under_the_pulumi_cli(monkeypatch):
    """Under the real CLI the config arrives from the engine (PULUMI_CONFIG), not from a YAML
    file: load() checks the namespaces there too and names Pulumi.<stack>.yaml."""
    import pulumi

    config, _ = config_from_yaml(real("prod"))
    config["event-backbon:observability"] = config.pop("event-backbone:observability")
    config["namePrefix"] = "zzz"
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config))
    monkeypatch.setattr(pulumi, "get_stack", lambda: "prod")
    monkeypatch.setattr(pulumi, "get_project", lambda: "event-backbone")
    with pytest.raises(S.ConfigError) as exc:
        contextvars.Context().run(S.load)  # a fresh context: no config set by an earlier plan
    assert exc.value.lines == [
        "Pulumi.prod.yaml: event-backbon:observability is not a known namespace;"
        " did you mean 'event-backbone:observability'?",
        "Pulumi.prod.yaml: namePrefix has no namespace; did you mean 'event-backbone:namePrefix'?",
        f"Pulumi.prod.yaml: {waiting(3)}",  # observability_rules; service_rules, edge_rules read it
    ]


def test_provider_namespaces_are_the_providers_the_program_pins():
    pinned = re.findall(r"^pulumi-([a-z-]+)==", (ROOT / "requirements.txt").read_text(), re.M)
    assert sorted([*pinned, "pulumi"]) == sorted(S.PROVIDER_NAMESPACES)


@pytest.mark.parametrize("stack", STACKS)
def test_real_stack_files_read_clean(stack):
    doc = S.read_stack_file(real(stack), f"Pulumi.{stack}.yaml")
    assert set(doc) == {"config"}
    assert S.namespace_problems(list(doc["config"])) == []


# --- the file named, what is allowed, what was given ------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_lines_name_the_file_actually_read(tmp_path, capsys, monkeypatch, stack):
    monkeypatch.chdir(tmp_path)
    text = edit(stack, "  event-backbone:location: westeurope", "  event-backbone:location: West Europe")
    # prod's DR region is checked against the location: that check waits
    assert plan(tmp_path, stack, text, capsys, name="other.yaml") == [
        "other.yaml: event-backbone:location must be Azure region name (got 'West Europe')",
        *([f"other.yaml: {waiting(1)}"] if stack == "prod" else []),
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_type_error_gives_the_range(tmp_path, capsys, stack):
    text = re.sub(r"storageSizeGb: \d+", "storageSizeGb: lots", real(stack))
    assert plan(tmp_path, stack, text, capsys) == [
        f"{tmp_path}/copy-{stack}.yaml: event-backbone:postgres.storageSizeGb must be a whole number"
        " between 32 and 16384 (got 'lots')",
        # + disaster_recovery_rules (reads postgres); + hardening_rules in prod
        f"{tmp_path}/copy-{stack}.yaml: {waiting(4 if stack == 'prod' else 2)}",
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_type_error_of_a_bounded_number(tmp_path, capsys, stack):
    text = re.sub(r"samplingPercentage: \d+", "samplingPercentage: half", real(stack))
    assert plan(tmp_path, stack, text, capsys) == [
        f"{tmp_path}/copy-{stack}.yaml: event-backbone:observability.tracing.samplingPercentage must be a number,"
        " greater than 0 and at most 100 (got 'half')",
        f"{tmp_path}/copy-{stack}.yaml: {waiting(3)}",  # observability_rules, service_rules, edge_rules
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_unquoted_zone_says_to_quote_it(tmp_path, capsys, stack):
    text = edit(stack, 'availabilityZone: "1"', "availabilityZone: 1")
    assert plan(tmp_path, stack, text, capsys) == [
        f"{tmp_path}/copy-{stack}.yaml: event-backbone:postgres.availabilityZone must be one of '1', '2' or '3'"
        ' (got 1; YAML reads an unquoted 1 as a number: quote it, "1")',
        # + disaster_recovery_rules (reads postgres); + hardening_rules in prod
        f"{tmp_path}/copy-{stack}.yaml: {waiting(4 if stack == 'prod' else 2)}",
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_unquoted_number_where_a_string_is_expected(tmp_path, capsys, stack):
    text = edit(stack, 'kubernetesVersion: "1.33"', "kubernetesVersion: 1.33")
    lines = plan(tmp_path, stack, text, capsys)
    assert lines == [
        f"{tmp_path}/copy-{stack}.yaml: event-backbone:aks.kubernetesVersion must be a string"
        " (Kubernetes version `1.NN[.P]`) (got 1.33; YAML reads it unquoted as a number: quote the value)",
        # aks_network_rules, aks_rules, hardening_rules (+ prod_aks_rules, disaster_recovery_rules in prod)
        f"{tmp_path}/copy-{stack}.yaml: {waiting(5 if stack == 'prod' else 3)}",
    ]


# --- every problem findable in one pass, in one run -------------------------------------------


def test_three_mistakes_in_prod_take_one_run(tmp_path, capsys):
    text = edit("prod", "storageSizeGb: 256", "storageSizeGb: 10")  # shape (postgres)
    text = text.replace("    replicas: 3\n    storageSize: 64Gi", "    replicas: 1\n    storageSize: 64Gi")  # prod rule
    text = text.replace("    tier: Standard", "    tier: Free")  # prod rule
    f = f"{tmp_path}/copy-prod.yaml"
    assert plan(tmp_path, "prod", text, capsys) == [
        f"{f}: event-backbone:postgres.storageSizeGb must be between 32 and 16384 (got 10)",
        f"{f}: event-backbone:broker.replicas must be at least 3 in prod (one broker per zone) (got 1)",
        f"{f}: event-backbone:aks.tier must be 'Standard' or 'Premium' in prod (uptime SLA) (got 'Free')",
        f"{f}: {waiting(4)}",  # postgres_rules, prod_postgres_rules, hardening_rules, disaster_recovery_rules
    ]


def test_three_mistakes_in_dev_take_one_run(tmp_path, capsys):
    text = edit("dev", "        maxCount: 3", "        maxCount: 300")  # shape (aks)
    text = text.replace("    rotation:\n      postgres-admin: 0", "    rotation:\n      postgres-admn: 0")  # rule
    text = text.replace("  event-backbone:tags:", "  event-backbone:tag:")  # namespace ok, unknown key
    f = f"{tmp_path}/copy-dev.yaml"
    assert plan(tmp_path, "dev", text, capsys) == [
        f"{f}: event-backbone:aks.userPools.user.maxCount must be between 1 and 100 (got 300)",
        f"{f}: event-backbone:tag is not a known key; did you mean 'tags'?",
        f"{f}: event-backbone:keyVault.rotation.postgres-admn is not a generated secret;"
        " did you mean 'postgres-admin'?",
        f"{f}: {waiting(3)}",  # aks_network_rules, aks_rules, hardening_rules
    ]


def test_all_shapes_valid_runs_every_check_and_nothing_waits(tmp_path, capsys):
    text = edit("prod", "    tier: Standard", "    tier: Free")
    assert plan(tmp_path, "prod", text, capsys) == [
        f"{tmp_path}/copy-prod.yaml: event-backbone:aks.tier must be 'Standard' or 'Premium' in prod"
        " (uptime SLA) (got 'Free')"
    ]
