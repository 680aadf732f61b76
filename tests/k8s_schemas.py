"""Validation of the Kubernetes objects the program creates, offline:
built-in kinds against the schemas kubernetes-validate ships (strict: unknown fields fail),
custom resources against the pinned CRDs' schemas from the committed extract
(tests/reference/crds, made by tests/reference/extract.py), made strict the same way."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
from conftest import unwrap

REFERENCE = Path(__file__).resolve().parent / "reference"


def _strict(schema):
    """Unknown fields fail, as with `kubectl apply` (server-side strict field validation),
    except where the CRD preserves unknown fields or declares additionalProperties."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def _crds() -> dict:
    out = {}
    for path in (REFERENCE / "crds").glob("*.json"):
        doc = json.loads(path.read_text())
        for version, schema in doc["versions"].items():
            out[(f"{doc['group']}/{version}", doc["kind"])] = jsonschema.Draft7Validator(_strict(copy.deepcopy(schema)))
    return out


def has_crd(api_version: str, kind: str) -> bool:
    return (api_version, kind) in _crds()


def custom_resource_errors(manifest: dict) -> list[str]:
    validator = _crds()[(manifest["apiVersion"], manifest["kind"])]
    errors = [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(manifest)
    ]
    if not manifest.get("metadata", {}).get("name"):
        errors.append("metadata.name: missing")
    return errors


def builtin_errors(manifest: dict, kubernetes_version: str) -> list[str]:
    version = kubernetes_version if kubernetes_version.count(".") == 2 else f"{kubernetes_version}.0"
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


def recorded_manifests(planned) -> list[dict]:
    """Every Kubernetes object the program registers, as the API server would receive it."""
    out = []
    for reg in planned.result.registrations:
        parts = reg.type.split(":")
        if parts[0] != "kubernetes" or parts[1] in ("yaml/v2", "helm.sh/v3", "helm.sh/v4"):
            continue
        manifest = unwrap(reg.inputs)
        if manifest.get("kind") == "Secret" and isinstance(manifest.get("stringData"), dict):
            manifest["stringData"] = {k: str(v) for k, v in manifest["stringData"].items()}
        out.append(manifest)
    return out


# Custom resources whose CRDs are published nowhere (../shared/reference/README.md: the ALB
# controller ships its CRDs only inside its OCI chart): the fields Microsoft's API reference
# documents (articles/application-gateway/for-containers/api-specification-kubernetes.md).
DOCUMENTED_ONLY: dict[tuple[str, str], dict[str, set[str]]] = {
    ("alb.networking.azure.io/v1", "WebApplicationFirewallPolicy"): {
        "spec": {"targetRef", "webApplicationFirewall"},
        "spec.targetRef": {"group", "kind", "name", "namespace", "sectionNames"},
        "spec.webApplicationFirewall": {"id"},
    },
}


def documented_only_errors(manifest: dict) -> list[str]:
    """Unknown or missing fields of a custom resource that has no published schema."""
    fields = DOCUMENTED_ONLY[(manifest["apiVersion"], manifest["kind"])]
    out = [] if manifest.get("metadata", {}).get("name") else ["metadata.name: missing"]
    for path, allowed in fields.items():
        node = manifest
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            out.append(f"{path}: missing")
            continue
        out += [f"{path}.{k}: not a documented field" for k in node if k not in allowed]
    return out


def errors(manifest: dict, kubernetes_version: str) -> list[str]:
    if has_crd(manifest["apiVersion"], manifest["kind"]):
        return custom_resource_errors(manifest)
    if (manifest["apiVersion"], manifest["kind"]) in DOCUMENTED_ONLY:
        return documented_only_errors(manifest)
    return builtin_errors(manifest, kubernetes_version)
