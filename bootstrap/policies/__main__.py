"""The bootstrap's policy pack. PolicyPack(...) serves gRPC and never returns: only this file builds it."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "policies")]  # bootstrap.roles, and the main pack's kit

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from bootstrap.policies import rules  # noqa: E402

PolicyPack(
    name="event-backbone-bootstrap",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[*rules.POLICIES],
    description="The bootstrap's state storage is hardened and no identity gets more than its stack needs.",
)
