"""python -m components.settings [--readme README.md]: print the configuration reference, or
regenerate it in place between the markers of a Markdown file."""

from __future__ import annotations

import sys
from pathlib import Path

from .reference import readme_with_reference, reference_markdown

if len(sys.argv) == 3 and sys.argv[1] == "--readme":
    path = Path(sys.argv[2])
    path.write_text(readme_with_reference(path.read_text()))
else:
    print(reference_markdown())
