"""plan.json: shape, redaction, and that no generated secret ever appears in plaintext."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT
from pulumi.runtime import rpc


def test_plan_document_shape(stack):
    doc = stack.doc
    assert (doc["project"], doc["stack"]) == ("event-backbone", stack.stack)
    assert doc["resources"], "no resources recorded"
    for r in doc["resources"]:
        keys = {"urn", "type", "name", "parent", "dependencies", "protect", "inputs"}
        assert set(r) in (keys, keys | {"retainOnDelete"})
        assert r.get("retainOnDelete", True) is True  # written only where set
        assert r["urn"].startswith(f"urn:pulumi:{stack.stack}::event-backbone::")
    urns = {r["urn"] for r in doc["resources"]}
    for r in doc["resources"]:
        for dep in r["dependencies"]:
            assert dep in urns, f"{r['name']} depends on unknown {dep}"


def test_no_generated_secret_in_plan_or_in_non_secret_inputs(stack):
    secrets = stack.result.generated_secrets
    assert secrets, "the mocks generated no secret: the check would prove nothing"
    text = (stack.out_dir / "plan.json").read_text()
    for value in secrets:
        assert value not in text

    def plaintext(value):
        if rpc.is_rpc_secret(value):
            return ""
        if isinstance(value, dict):
            return " ".join(plaintext(v) for v in value.values())
        if isinstance(value, list):
            return " ".join(plaintext(v) for v in value)
        return str(value)

    for reg in stack.result.registrations:
        if reg.type == "azure-native:keyvault:Secret":
            continue
        flat = plaintext(reg.inputs)
        for value in secrets:
            assert value not in flat, f"{reg.type} {reg.name} carries a generated secret in plaintext"


def test_secret_outputs_are_redacted(stack):
    outputs = stack.doc["outputs"]
    assert outputs["kubeconfig"] == "[secret]"
    assert outputs["postgresFqdn"].endswith(".postgres.database.azure.com")
    assert outputs["keyVaultUri"].startswith("https://")
    assert "[secret]" in json.dumps(stack.doc["resources"])


def test_make_plan_cli_writes_plan_and_summary(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dryrun", "prod", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("event-backbone/prod: ")
    assert "azure-native:dbforpostgresql:Server" in proc.stdout
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert doc["stack"] == "prod" and len(doc["resources"]) > 30
    # the access matrix, written through the checked writer, and its one summary line
    matrix = json.loads((tmp_path / "access.json").read_text())
    assert {r["identity"] for r in matrix["identities"]} >= {"service candystore", "platform keda", "deployer"}
    assert (tmp_path / "access.md").read_text().startswith("# Access matrix: event-backbone/prod")
    assert [line for line in proc.stdout.splitlines() if line.startswith("access: ")] != []
    assert f"wrote {tmp_path}/access.md" in proc.stdout


def test_the_writer_refuses_a_leaking_file(stack, tmp_path):
    from dryrun import plan

    secret = stack.result.generated_secrets[0]
    with pytest.raises(RuntimeError, match="refusing to write policy-report.json"):
        plan.write(stack.result, tmp_path, "policy-report.json", f'[{{"message": "{secret}"}}]')
    assert not (tmp_path / "policy-report.json").exists()
