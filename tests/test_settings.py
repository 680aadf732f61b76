"""Stack configuration: both real stack files validate; bad ones give exact, useful lines."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from components import settings as S
from dryrun.runner import config_from_yaml, run_stack


def stack_doc(stack: str) -> dict:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())


def mutate(stack: str, key: str, value=None, *, delete: bool = False, rename: str | None = None) -> str:
    """A copy of a real stack file with one key (``postgres.backupRetentionDays``) changed."""
    doc = copy.deepcopy(stack_doc(stack))
    top, *rest = key.split(".")
    cfg = doc["config"]
    full = f"event-backbone:{top}"
    if not rest:
        if delete:
            del cfg[full]
        else:
            cfg[full] = value
        return yaml.safe_dump(doc, sort_keys=False)
    node = cfg.setdefault(full, {})
    for part in rest[:-1]:
        node = node.setdefault(part, {})
    if delete:
        del node[rest[-1]]
    elif rename:
        node[rename] = node.pop(rest[-1])
    else:
        node[rest[-1]] = value
    return yaml.safe_dump(doc, sort_keys=False)


def errors(stack: str, text: str) -> list[str]:
    config, _ = config_from_yaml(text)
    with pytest.raises(S.ConfigError) as exc:
        S.from_config_map(config, stack)
    return exc.value.lines[: len(exc.value.problems)]  # the problems (tests/test_stack_files.py: the whole output)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_real_stack_files_validate(stack):
    config, _ = config_from_yaml((ROOT / f"Pulumi.{stack}.yaml").read_text())
    s = S.from_config_map(config, stack)
    assert s.environment == stack
    assert s.protect is (stack == "prod")


def test_prod_settings_follow_the_environment_rules():
    config, _ = config_from_yaml((ROOT / "Pulumi.prod.yaml").read_text())
    s = S.from_config_map(config, "prod")
    assert s.aks.availability_zones == ["1", "2", "3"]
    assert s.aks.tier == "Standard"
    assert s.postgres.high_availability == "ZoneRedundant"
    assert s.postgres.geo_redundant_backup is True
    assert s.postgres.backup_retention_days == 35
    assert s.postgres.password_auth is False
    assert s.postgres.entra_admin_group is not None


@pytest.mark.parametrize(
    "stack,change,expected",
    [
        (
            "prod",
            dict(key="postgres.backupRetentionDays", value=3),
            ["Pulumi.prod.yaml: event-backbone:postgres.backupRetentionDays must be between 7 and 35 (got 3)"],
        ),
        (
            "dev",
            dict(key="aks.maxPods", value=30),
            ["Pulumi.dev.yaml: event-backbone:aks.maxPods must be between 50 and 250 (got 30)"],
        ),
        (
            "dev",
            dict(key="aks.userPools.user.maxCount", value="many"),
            [
                "Pulumi.dev.yaml: event-backbone:aks.userPools.user.maxCount must be a whole number between 1 and 100"
                " (got 'many')"
            ],
        ),
        (
            "dev",
            dict(key="postgres.geoRedundantBackup", value="perhaps"),
            ["Pulumi.dev.yaml: event-backbone:postgres.geoRedundantBackup must be true or false (got 'perhaps')"],
        ),
        (
            "dev",
            dict(key="aks.upgradeChannel", value="none"),
            [
                "Pulumi.dev.yaml: event-backbone:aks.upgradeChannel must be one of 'patch', 'stable', "
                "'rapid' or 'node-image' (got 'none')"
            ],
        ),
        (
            "prod",
            dict(key="postgres.backupRetentionDays", rename="backupRetentionDay"),
            [
                "Pulumi.prod.yaml: event-backbone:postgres.backupRetentionDay is not a known key; "
                "did you mean 'backupRetentionDays'?"
            ],
        ),
        (
            "dev",
            dict(key="keyVault.secretsExpireOn", delete=True),
            ["Pulumi.dev.yaml: event-backbone:keyVault.secretsExpireOn is required"],
        ),
        (
            "dev",
            dict(key="environment", value="staging"),
            ["Pulumi.dev.yaml: event-backbone:environment must be one of 'dev' or 'prod' (got 'staging')"],
        ),
        (
            "dev",
            dict(key="netwrok", value={"addressSpace": "10.0.0.0/16"}),
            ["Pulumi.dev.yaml: event-backbone:netwrok is not a known key; did you mean 'network'?"],
        ),
        (
            "dev",
            dict(key="network.aksSubnet", value="10.99.0.0/20"),
            [
                "Pulumi.dev.yaml: event-backbone:network.aksSubnet must lie inside network.addressSpace 10.40.0.0/16 "
                "(got '10.99.0.0/20')"
            ],
        ),
        (
            "dev",
            dict(key="aks.apiServer.authorizedIpRanges", value=["0.0.0.0/0"]),
            [
                "Pulumi.dev.yaml: event-backbone:aks.apiServer.authorizedIpRanges[0] must not open the API server to "
                "the whole internet (got '0.0.0.0/0')"
            ],
        ),
        (
            "dev",
            dict(key="keyVault.rotation.postgres-admn", value=1),
            [
                "Pulumi.dev.yaml: event-backbone:keyVault.rotation.postgres-admn is not a generated secret; "
                "did you mean 'postgres-admin'?"
            ],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_one_exact_line_per_problem(stack, change, expected):
    assert errors(stack, mutate(stack, **change)) == expected


@pytest.mark.parametrize(
    "change,expected",
    [
        (
            dict(key="aks.availabilityZones", value=["1"]),
            'Pulumi.prod.yaml: event-backbone:aks.availabilityZones must be ["1", "2", "3"] in prod '
            '(three availability zones) (got ["1"])',
        ),
        (
            dict(key="aks.tier", value="Free"),
            "Pulumi.prod.yaml: event-backbone:aks.tier must be 'Standard' or 'Premium' in prod (uptime SLA) "
            "(got 'Free')",
        ),
        (
            dict(key="postgres.highAvailability", value="Disabled"),
            "Pulumi.prod.yaml: event-backbone:postgres.highAvailability must be 'ZoneRedundant' in prod "
            "(got 'Disabled')",
        ),
        (
            dict(key="postgres.geoRedundantBackup", value=False),
            "Pulumi.prod.yaml: event-backbone:postgres.geoRedundantBackup must be true in prod (got false)",
        ),
        (
            dict(key="postgres.backupRetentionDays", value=14),
            "Pulumi.prod.yaml: event-backbone:postgres.backupRetentionDays must be at least 30 in prod (got 14)",
        ),
        (
            dict(key="postgres.passwordAuth", value=True),
            "Pulumi.prod.yaml: event-backbone:postgres.passwordAuth must be false in prod"
            " (Entra ID sign-in only; the admin password is break-glass) (got true)",
        ),
        (
            dict(key="postgres.entraAdminGroup", delete=True),
            "Pulumi.prod.yaml: event-backbone:postgres.entraAdminGroup is required in prod"
            " (the Microsoft Entra group that administers PostgreSQL)",
        ),
    ],
    ids=lambda v: v["key"] if isinstance(v, dict) else None,
)
def test_prod_rules(change, expected):
    assert errors("prod", mutate("prod", **change)) == [expected]


def test_every_problem_is_reported_at_once():
    text = mutate("prod", "postgres.backupRetentionDays", 3)
    doc = yaml.safe_load(text)
    doc["config"]["event-backbone:aks"]["maxPods"] = 10
    doc["config"]["event-backbone:aks"]["tierr"] = "Standard"
    lines = errors("prod", yaml.safe_dump(doc))
    assert len(lines) == 3
    assert all(line.startswith("Pulumi.prod.yaml: event-backbone:") for line in lines)


def test_program_registers_nothing_before_config_is_valid():
    with pytest.raises(S.ConfigError) as exc:
        run_stack("prod", stack_text=mutate("prod", "postgres.geoRedundantBackup", False))
    assert exc.value.registered == []


def test_dryrun_cli_prints_the_lines_and_exits_non_zero(tmp_path):
    bad = tmp_path / "Pulumi.prod.yaml"
    bad.write_text(mutate("prod", "postgres.backupRetentionDays", 3))
    proc = subprocess.run(
        [sys.executable, "-m", "dryrun", "prod", "--stack-file", str(bad), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [  # the file read; 4 checks wait
        f"{bad}: event-backbone:postgres.backupRetentionDays must be between 7 and 35 (got 3)",
        f"{bad}: 4 further cross-key/environment checks wait on the errors above and run once they are fixed",
    ]
    assert not (tmp_path / "out" / "plan.json").exists()


def test_secure_values_become_placeholders_and_secret_keys():
    config, secret_keys = config_from_yaml(
        "config:\n  event-backbone:alerting:\n    slack:\n      secure: v1:abc\n  event-backbone:environment: dev\n"
    )
    assert secret_keys == ["event-backbone:alerting"]
    assert "v1:abc" not in config["event-backbone:alerting"]


@pytest.mark.parametrize(
    "change,expected",
    [
        (
            dict(key="observability.prometheus.retention", value="7d"),
            "Pulumi.prod.yaml: event-backbone:observability.prometheus.retention must be at least 30d in prod "
            "(got '7d')",
        ),
        (
            dict(key="observability.alertmanager.replicas", value=1),
            "Pulumi.prod.yaml: event-backbone:observability.alertmanager.replicas must be at least 2 in prod (got 1)",
        ),
        (
            dict(key="observability.jaeger.storage", value="memory"),
            "Pulumi.prod.yaml: event-backbone:observability.jaeger.storage must be 'badger' (persistent) in prod "
            "(got 'memory')",
        ),
        (
            dict(key="observability.alerting.pagerdutyRoutingKey", delete=True),
            "Pulumi.prod.yaml: event-backbone:observability.alerting.pagerdutyRoutingKey is required in prod (a "
            "secure value: pulumi config set --secret --path ...)",
        ),
        (
            dict(key="observability.tracing.samplingPercentage", value=0),
            "Pulumi.prod.yaml: event-backbone:observability.tracing.samplingPercentage must be greater than 0 and at "
            "most 100 (got 0)",
        ),
        (
            dict(key="observability.prometheus.retention", value="30days"),
            "Pulumi.prod.yaml: event-backbone:observability.prometheus.retention must be a duration (`30s`, `5m`, "
            "`72h`, `30d`) (got '30days')",
        ),
    ],
    ids=lambda v: v["key"] if isinstance(v, dict) else None,
)
def test_observability_rules(change, expected):
    assert errors("prod", mutate("prod", **change)) == [expected]


def test_digit_keys_are_spelled_as_people_write_them():
    config, _ = config_from_yaml(mutate("prod", "observability.thresholds", {"e2eP99Seconds": 2}))
    assert S.from_config_map(config, "prod").observability.thresholds.e2e_p99_seconds == 2
    assert errors("prod", mutate("prod", "observability.thresholds", {"e2EP99Seconds": 2})) == [
        "Pulumi.prod.yaml: event-backbone:observability.thresholds.e2EP99Seconds is not a known key; "
        "did you mean 'e2eP99Seconds'?"
    ]
