"""The Kubernetes objects the stack creates, as manifests (build/<stack>/k8s/), for Checkov's
kubernetes framework.

Each ``kubernetes:<group>/<version>:<Kind>`` registration becomes one YAML file
``k8s/<namespace or _cluster>/<kind>-<name>.yaml`` holding exactly the recorded object
(apiVersion and kind derived from the type token where the SDK did not record them).
Values the program marked secret never appear: their keys stay, each string becomes
``[secret]`` (a Secret's ``stringData`` keeps its key names, not its values).

Not manifests, listed in ``k8s/NOT-SCANNED.txt`` with the reason:
- ``helm.sh/v3:Release``: its values configure a chart; the objects are the chart's
  templates rendered with them, and the chart archives are not available offline (the values
  themselves are written to build/<stack>/helm/ and checked against the chart's defaults);
- ``yaml/v2:ConfigFile``: a pinned upstream release manifest fetched by URL at deploy time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml
from pulumi.runtime import rpc

SECRET = "[secret]"
UNKNOWN = "[unknown]"
NOT_MANIFESTS = {
    "kubernetes:helm.sh/v3:Release": "Helm release: values, not objects (charts are not rendered offline)",
    "kubernetes:helm.sh/v4:Chart": "Helm chart: values, not objects (charts are not rendered offline)",
    "kubernetes:yaml/v2:ConfigFile": "upstream manifest fetched by URL at deploy time",
    "kubernetes:yaml/v2:ConfigGroup": "upstream manifests fetched at deploy time",
}


def _value(value: Any, secret: bool = False) -> Any:
    if rpc.is_rpc_secret(value):
        return _value(value["value"], True)
    if isinstance(value, dict):
        return {k: _value(v, secret) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_value(v, secret) for v in value]
    if value == rpc.UNKNOWN:
        return UNKNOWN
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if secret and isinstance(value, str):
        return SECRET
    return value


def api_version_kind(type_token: str) -> tuple[str, str]:
    """``kubernetes:core/v1:Namespace`` -> (``v1``, ``Namespace``);
    ``kubernetes:networking.k8s.io/v1:NetworkPolicy`` -> (``networking.k8s.io/v1``, ...)."""
    _, group_version, kind = type_token.split(":")
    group, version = group_version.rsplit("/", 1)
    return (version if group == "core" else group_version), kind


def manifest(type_token: str, name: str, inputs: dict) -> dict:
    api_version, kind = api_version_kind(type_token)
    body = _value(inputs)
    obj: dict[str, Any] = {"apiVersion": body.pop("apiVersion", api_version), "kind": body.pop("kind", kind)}
    metadata = dict(body.pop("metadata", None) or {})
    metadata.setdefault("name", name)
    obj["metadata"] = metadata
    obj.update(body)
    return obj


# libyaml's emitter when PyYAML has it (the PyPI wheels do): the same safe representer as
# yaml.safe_dump, about 5x faster over the ~3000 files of a 200-service plan; it wraps long
# scalars at other places than PyYAML's pure-Python emitter, the documents are the same.
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_DUMPER, sort_keys=False)


@dataclass
class Manifests:
    files: dict[str, str]  # path under k8s/ -> YAML
    not_scanned: list[str] = field(default_factory=list)


def export(registrations: Iterable[Any]) -> Manifests:
    files: dict[str, str] = {}
    not_scanned: list[str] = []
    for reg in registrations:
        if not reg.type.startswith("kubernetes:"):
            continue
        if reg.type in NOT_MANIFESTS:
            not_scanned.append(f"{reg.type} {reg.name}: {NOT_MANIFESTS[reg.type]}")
            continue
        obj = manifest(reg.type, reg.name, reg.inputs)
        ns = obj["metadata"].get("namespace") or "_cluster"
        path = f"{ns}/{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        if path in files:
            raise ValueError(f"two objects would be written to k8s/{path}")
        files[path] = dump(obj)
    if not_scanned:
        files["NOT-SCANNED.txt"] = "Not Kubernetes manifests, so not scanned:\n" + "".join(
            f"- {line}\n" for line in not_scanned
        )
    return Manifests(files, not_scanned)
