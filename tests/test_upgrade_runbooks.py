"""The upgrade and rollout runbooks: present, with what to check, do and verify, and every stack
key they tell an operator to change still a key of the settings model (renames break them)."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

from components import settings as S

RUNBOOKS = ROOT / "docs" / "runbooks"
NAMES = ["rollouts", "node-pool-blue-green", "kubernetes-upgrade", "rabbitmq-upgrade", "postgres-major-upgrade"]
# keys written as `area.key` in backticks that are settings (not commands or file names)
AREAS = ("aks", "broker", "postgres", "rollouts", "observability")


def keys_in(text: str) -> set[str]:
    pattern = r"`((?:" + "|".join(AREAS) + r")\.[A-Za-z.]+)"
    return {k.rstrip(".") for k in re.findall(pattern, text) if not k.endswith(".py")}


@pytest.mark.parametrize("name", NAMES)
def test_runbook_says_what_to_check_do_and_verify(name):
    text = (RUNBOOKS / f"{name}.md").read_text()
    headings = [h.lower() for h in re.findall(r"(?m)^#+ (.*)$", text)]
    assert any("check" in h for h in headings), headings
    assert any(h.startswith("do") for h in headings), headings
    assert any("verify" in h for h in headings) or "Verify:" in text, headings
    assert "```sh" in text  # the commands, not only prose


DOCS = [RUNBOOKS / f"{n}.md" for n in NAMES] + [ROOT / "docs" / "progressive-delivery.md"]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_stack_keys_named_in_a_runbook_exist(path):
    known = {key for key, _, _ in S.reference_rows()}
    for key in keys_in(path.read_text()):
        assert key in known or any(k.startswith(key + ".") for k in known), f"{path.name} names unknown key {key}"


def test_the_key_check_catches_a_renamed_key():
    known = {key for key, _, _ in S.reference_rows()}
    assert "aks.userPool" not in known and "aks.userPool" in keys_in("set `aks.userPool` to ...")
    assert {"aks.kubernetesVersion", "aks.upgradeChannel"} <= keys_in((RUNBOOKS / "kubernetes-upgrade.md").read_text())


def test_rabbitmq_path_goes_through_4_2_with_feature_flags():
    text = (RUNBOOKS / "rabbitmq-upgrade.md").read_text()
    assert text.index("4.1 → 4.2") < text.index("4.2 → 4.3")
    assert text.count("enable_feature_flag all") >= 2  # before leaving 4.1 and before leaving 4.2
    assert "basic.reject(requeue=true)" in text  # 4.3's delivery-limit change
