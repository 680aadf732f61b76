"""The committed reference extract is what tests/reference/extract.py derives from the
pinned upstream files in ../shared/reference (present beside the project in CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import ROOT

HERE = ROOT / "tests" / "reference"
# .ci/run names the reference folder (it is beside the clone there); where it is named it must
# exist. A clone on its own (e.g. GitHub Actions) tests against the committed extract only.
NAMED = os.environ.get("EB_REFERENCE_DIR")
UPSTREAM = Path(NAMED) if NAMED else ROOT.parent / "shared" / "reference"


def test_committed_extract_is_current():
    if not UPSTREAM.is_dir():
        if NAMED:
            pytest.fail(f"EB_REFERENCE_DIR={NAMED} does not exist")
        pytest.skip("../shared/reference is not beside this clone")
    from reference.extract import extract, render

    expected = {rel: render(doc) for rel, doc in extract(UPSTREAM).items()}
    committed = {str(p.relative_to(HERE)): p.read_text() for p in HERE.glob("*/*.json")}
    assert sorted(committed) == sorted(expected), "run: .venv/bin/python tests/reference/extract.py"
    for rel, text in expected.items():
        assert committed[rel] == text, f"{rel} is stale: run tests/reference/extract.py"


def test_extract_has_no_descriptions():
    for path in HERE.glob("crds/*.json"):
        assert '"description": "' not in path.read_text(), path.name
