"""The bootstrap's Pulumi program (``cd bootstrap && pulumi up``). All composition lives in
bootstrap/program.py; the offline plan is ``python -m dryrun.bootstrap``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: bootstrap, components

from bootstrap.program import main  # noqa: E402

main()
