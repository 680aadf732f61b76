"""Pure renders: settings in, data out. ``artefacts`` lists every generated file that
``make plan`` writes under ``build/<stack>/`` (secrets as placeholders)."""

from __future__ import annotations

import json

from ..settings import StackSettings


def artefacts(s: StackSettings) -> dict[str, str]:
    from . import broker

    files = {
        "rabbitmq/definitions.json": json.dumps(broker.definitions(s, broker.placeholder_hashes(s)), indent=2) + "\n",
    }
    return files
