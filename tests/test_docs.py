"""The README's configuration reference is generated from the model and must not drift."""

from __future__ import annotations

from conftest import ROOT

from components import settings as S


def test_readme_configuration_reference_matches_the_model():
    text = (ROOT / "README.md").read_text()
    assert S.readme_with_reference(text) == text, "run: python -m components.settings --readme README.md"
    for key, _, _ in S.reference_rows():
        assert f"`{key}`" in text


def test_runbooks_linked_from_readme_exist():
    import re

    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/runbooks/[^)]+)\)", text)
    assert links
    for link in links:
        assert (ROOT / link).is_file(), link
