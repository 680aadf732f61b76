"""The custom role definitions the main stacks assign, declared once for both sides.

A main stack only assigns them; the bootstrap (bootstrap/program.py) creates them, in each
environment's subscription. A deploy identity allowed to write role definitions could rewrite a
role it may assign into one with every action and assign that to itself: the role-restricting
condition of its RBAC Administrator grant sees role IDs, not what a role allows. So no main stack
writes a role definition (bootstrap/roles.py refuses a plan that does), and each GUID is
derived from the names both sides know.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

IMAGE_IMPORTER = "registry-image-importer"
IMPORT_ACTION = "Microsoft.ContainerRegistry/registries/importImage/action"


class CustomRole(NamedTuple):
    guid: str
    role_name: str
    actions: list[str]
    description: str


_ROLES = {
    IMAGE_IMPORTER: (
        [IMPORT_ACTION],
        "Import images (by digest, from the build registry) into the stack's registry (docs/images.md)",
    ),
}


def guid(environment: str, role: str) -> str:
    """Stable per environment and role: the same names give the same GUID on both sides (and in
    the access matrix, which sees only the plan)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"event-backbone/{environment}/{role}"))


def definitions(environment: str) -> dict[str, CustomRole]:
    """GUID -> the custom role a stack of this environment may assign."""
    out = {}
    for role, (actions, description) in _ROLES.items():
        g = guid(environment, role)
        out[g] = CustomRole(g, f"event-backbone-{environment}-{role}", actions, description)
    return out
