"""python -m components.settings [--docs docs/configuration.md]: print the configuration
reference, or regenerate it in place between the markers of a Markdown file."""

from __future__ import annotations

import sys
from pathlib import Path

from .reference import document_with_reference, reference_markdown

if len(sys.argv) == 3 and sys.argv[1] == "--docs":
    path = Path(sys.argv[2])
    path.write_text(document_with_reference(path.read_text()))
elif len(sys.argv) == 1:
    print(reference_markdown())
else:
    sys.exit("usage: python -m components.settings [--docs docs/configuration.md]")
