"""The configuration reference (docs/configuration.md) is generated from the model and must not drift."""

from __future__ import annotations

import re

from conftest import ROOT

from components import settings as S


def test_configuration_reference_matches_the_model():
    text = (ROOT / S.DOCS_FILE).read_text()
    assert S.document_with_reference(text) == text, f"run: {S.DOCS_COMMAND}"
    rows = S.reference_rows()
    assert len(rows) > 100  # the whole model, nested objects included
    for key, _, _ in rows:
        assert f"| `{key}` |" in text, key
    assert S.DOCS_COMMAND in text  # the regeneration command is documented where the table is


def test_readme_links_the_configuration_reference_instead_of_copying_it():
    text = (ROOT / "README.md").read_text()
    assert f"]({S.DOCS_FILE})" in text
    assert S.DOCS_START not in text and "| `environment` |" not in text


def test_runbooks_linked_from_readme_exist():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/runbooks/[^)]+)\)", text)
    assert links
    for link in links:
        assert (ROOT / link).is_file(), link
