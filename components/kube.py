"""Wire a rendered Kubernetes manifest (a plain dict) into a pulumi-kubernetes resource.

Known kinds get their typed class (the SDK then checks field names); anything else is a
``CustomResource``. Renders stay plain data; this is the only place that maps them."""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from .render.helm_values import split_deletions

_TYPED = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("batch/v1", "Job"): k8s.batch.v1.Job,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("v1", "ResourceQuota"): k8s.core.v1.ResourceQuota,
    ("v1", "LimitRange"): k8s.core.v1.LimitRange,
    ("storage.k8s.io/v1", "StorageClass"): k8s.storage.v1.StorageClass,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def apply_manifest(logical_name: str, manifest: dict, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    api_version, kind = manifest["apiVersion"], manifest["kind"]
    fields = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
    cls = _TYPED.get((api_version, kind))
    if cls is None:
        return k8s.apiextensions.CustomResource(logical_name, api_version=api_version, kind=kind, opts=opts, **fields)
    return cls(logical_name, opts=opts, **{_snake(k): v for k, v in fields.items()})


def release_values(values: dict) -> dict[str, Any]:
    """A Helm release's ``values`` and ``value_yaml_files`` (ReleaseArgs) for rendered values.
    Chart defaults set to null (Helm's deletion) travel as a YAML file: the Python SDK drops null
    map values before they reach the provider, pulumi-kubernetes >= 4.30 passes a file's nulls."""
    kept, deleted = split_deletions(values)
    files = [pulumi.StringAsset(yaml.safe_dump(deleted, sort_keys=True))] if deleted else None
    return {"values": kept, "value_yaml_files": files}
