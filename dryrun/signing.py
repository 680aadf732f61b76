"""The services' image signing artefacts (issue 23), from the recorded plan and the settings:
build/<stack>/signing/trustpolicy.json (the Notation trust policy Ratify enforces, scoped to each
service's repository in the stack's registry), certificate-policy.json (the Key Vault certificate
policy of the signing certificate) and ratify-trust-policies.yaml (what Ratify's chart gets:
the same scopes, identities and level). ``make plan`` writes them through the checked writer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.render import signing, to_yaml

REGISTRY = "azure-native:containerregistry:Registry"


def login_server(doc: dict) -> str:
    """The stack's registry login server as the plan records it."""
    registry = next(r for r in doc["resources"] if r["type"] == REGISTRY)
    return f"{registry['inputs']['registryName']}.azurecr.io"


def files(settings: Any, doc: dict) -> dict[str, str]:
    login = login_server(doc)
    return {
        "signing/trustpolicy.json": json.dumps(signing.trust_policy(settings, login), indent=2) + "\n",
        "signing/certificate-policy.json": json.dumps(signing.certificate_policy(settings), indent=2) + "\n",
        # Ratify's trust policies as its chart gets them (the release's values in plan.json)
        "signing/ratify-trust-policies.yaml": to_yaml(
            signing.ratify_values(settings, login, "<vault>", "<tenant>", "<client>")["notation"]["trustPolicies"]
        ),
    }


def write_signing(result: Any, doc: dict, out_dir: Path) -> list[str]:
    from . import plan

    written = []
    for path, text in files(result.settings, doc).items():
        plan.write(result, out_dir, path, text)
        written.append(path)
    return written
