"""Built-in Azure role definition IDs (the same GUIDs in every tenant) and what the main stacks need,
read from their plans (build/<stack>/plan.json), never typed by hand.

``main_stack_needs`` turns a main stack's plan into the roles its role assignments name and the
``Microsoft.Authorization`` actions its other authorization resources need (Contributor's
NotActions exclude every ``Microsoft.Authorization/*/write`` and ``*/delete``). The result is
checked in as ``bootstrap/main-stack-needs.json`` (``python -m bootstrap.generate needs``);
``tests/test_bootstrap.py`` proves the file equals what fresh plans of dev and prod give.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NEEDS_FILE = HERE / "main-stack-needs.json"

# Privileged: never granted by the bootstrap, never assignable by a deploy identity.
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"  # Role Based Access Control Administrator
PRIVILEGED = {
    OWNER: "Owner",
    USER_ACCESS_ADMINISTRATOR: "User Access Administrator",
    RBAC_ADMINISTRATOR: "Role Based Access Control Administrator",
}

CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
KEY_VAULT_CRYPTO_OFFICER = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603"
KEY_VAULT_CRYPTO_USER = "12338af0-0e69-4776-bea7-57ae8d297424"
AKS_CLUSTER_USER = "4abbcc35-e782-43d8-92c5-2d3473bba6dc"  # listClusterUserCredential (the kubeconfig)
AKS_RBAC_READER = "7f6c6a51-bcf8-42ba-9220-52d62157d7db"  # in-cluster reads, no Secrets
AKS_RBAC_CLUSTER_ADMIN = "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b"

NAMES = {
    **PRIVILEGED,
    "2a1e307c-b015-4ebd-883e-5b7698a07328": "Container Registry Repository Writer",
    "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba": "Key Vault Certificate User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "43d0d8ad-25c7-4714-9337-8ba259a9fe05": "Monitoring Reader",
    "b0d8363b-8ddd-447d-831f-62ca05bff136": "Monitoring Data Reader",
    CONTRIBUTOR: "Contributor",
    READER: "Reader",
    STORAGE_BLOB_DATA_CONTRIBUTOR: "Storage Blob Data Contributor",
    STORAGE_BLOB_DATA_READER: "Storage Blob Data Reader",
    KEY_VAULT_CRYPTO_OFFICER: "Key Vault Crypto Officer",
    KEY_VAULT_CRYPTO_USER: "Key Vault Crypto User",
    AKS_CLUSTER_USER: "Azure Kubernetes Service Cluster User Role",
    AKS_RBAC_READER: "Azure Kubernetes Service RBAC Reader",
    AKS_RBAC_CLUSTER_ADMIN: "Azure Kubernetes Service RBAC Cluster Admin",
    # the ones the main stack assigns today (components/rbac.py)
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "4d97b98b-1d4f-4787-a291-c67834d212e7": "Network Contributor",
    "fbc52c3f-28ad-4303-a892-8a056630b8f1": "AppGw for Containers Configuration Manager",
    "befefa01-2a29-4197-83a8-272ff33ce314": "DNS Zone Contributor",
    "7f951dda-4ed3-4680-a7ca-43fe172d538d": "AcrPull",
    "f1a07417-d97a-45cb-824c-7a7467783830": "Managed Identity Operator",
}

ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
# The main stack's other Microsoft.Authorization resources and the resource type they write.
AUTHORIZATION_TYPES = {
    "azure-native:authorization:PolicyAssignment": "Microsoft.Authorization/policyAssignments",
    "azure-native:authorization:ManagementLockByScope": "Microsoft.Authorization/locks",
    "azure-native:authorization:ManagementLockAtResourceGroupLevel": "Microsoft.Authorization/locks",
    "azure-native:authorization:ManagementLockAtResourceLevel": "Microsoft.Authorization/locks",
    "azure-native:authorization:ManagementLockAtSubscriptionLevel": "Microsoft.Authorization/locks",
    "azure-native:authorization:PolicyDefinition": "Microsoft.Authorization/policyDefinitions",
}
# Never a main stack's: a deploy identity that may write role definitions could rewrite a role it
# may assign into anything (components/custom_roles.py); the bootstrap creates custom roles.
FORBIDDEN_TYPES = {"azure-native:authorization:RoleDefinition": "role definitions come from the bootstrap"}


def role_guid(role_definition_id: str) -> str:
    return str(role_definition_id).rstrip("/").rsplit("/", 1)[-1].lower()


def custom_role_guid(name: str) -> str:
    """A stable GUID for one of the bootstrap's custom role definitions (same name, same GUID)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://event-backbone/roles/{name}"))


def main_stack_needs(plan: dict[str, Any]) -> dict[str, Any]:
    """What one main stack's deploy identity must be allowed beyond Contributor, from its plan.json."""
    roles: set[str] = set()
    types: set[str] = set()
    unknown: set[str] = set()
    for r in plan["resources"]:
        typ = r["type"]
        if typ == ROLE_ASSIGNMENT:
            roles.add(role_guid(r["inputs"]["roleDefinitionId"]))
        elif typ in FORBIDDEN_TYPES:
            raise ValueError(f"{plan['stack']}: the main stack creates {typ} ({r['name']}): {FORBIDDEN_TYPES[typ]}")
        elif typ in AUTHORIZATION_TYPES:
            types.add(AUTHORIZATION_TYPES[typ])
        elif typ.startswith("azure-native:authorization:"):
            unknown.add(typ)
    if unknown:
        raise ValueError(
            f"{plan['stack']}: no Microsoft.Authorization actions known for {sorted(unknown)}:"
            " add them to bootstrap/roles.py AUTHORIZATION_TYPES"
        )
    privileged = sorted(roles & set(PRIVILEGED))
    if privileged:
        raise ValueError(
            f"{plan['stack']}: the main stack assigns {[PRIVILEGED[g] for g in privileged]}; a deploy identity"
            " never may (no Owner, User Access Administrator or RBAC Administrator grants)"
        )
    return {
        "roleDefinitionIds": sorted(roles),
        "roleNames": {g: NAMES.get(g, "custom (components/custom_roles.py)") for g in sorted(roles)},
        "authorizationActions": sorted(f"{t}/{verb}" for t in types for verb in ("read", "write", "delete")),
    }


def needs_document(plans: dict[str, dict[str, Any]], environment_of: dict[str, str] | None = None) -> str:
    """One entry per environment (deploy identity): the union of the needs of the stacks it deploys
    (``environment_of``: stack -> environment; unset, each stack is its own, e.g. prod-dr -> prod)."""
    envs: dict[str, list[dict[str, Any]]] = {}
    for stack in sorted(plans):
        envs.setdefault((environment_of or {}).get(stack, stack), []).append(main_stack_needs(plans[stack]))
    doc = {
        "comment": "generated by `python -m bootstrap.generate needs` from build/<stack>/plan.json: do not edit",
        **{env: _union(needs) for env, needs in sorted(envs.items())},
    }
    return json.dumps(doc, indent=2) + "\n"


def _union(needs: list[dict[str, Any]]) -> dict[str, Any]:
    ids = sorted({g for n in needs for g in n["roleDefinitionIds"]})
    names = {g: name for n in needs for g, name in n["roleNames"].items()}
    return {
        "roleDefinitionIds": ids,
        "roleNames": {g: names[g] for g in ids},
        "authorizationActions": sorted({a for n in needs for a in n["authorizationActions"]}),
    }


def read_needs(path: Path = NEEDS_FILE) -> dict[str, Any]:
    return json.loads(path.read_text())


def assignment_condition(role_guids: list[str]) -> str:
    """The ABAC condition of the deploy identity's RBAC Administrator assignment: it may create and
    delete role assignments of exactly these roles (Azure's "constrain roles" example)."""
    ids = ", ".join(sorted(role_guids))
    attribute = "Microsoft.Authorization/roleAssignments:RoleDefinitionId"
    return (
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'}))"
        f" OR (@Request[{attribute}] ForAnyOfAnyValues:GuidEquals {{{ids}}}))"
        " AND "
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'}))"
        f" OR (@Resource[{attribute}] ForAnyOfAnyValues:GuidEquals {{{ids}}}))"
    )
