"""Azure RBAC role assignments by built-in role (the role GUIDs are the same in every tenant)."""

from __future__ import annotations

import pulumi
from pulumi_azure_native import authorization

KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
APPGW_FOR_CONTAINERS_CONFIGURATION_MANAGER = "fbc52c3f-28ad-4303-a892-8a056630b8f1"
DNS_ZONE_CONTRIBUTOR = "befefa01-2a29-4197-83a8-272ff33ce314"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
MANAGED_IDENTITY_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"


def role_definition_id(subscription_id: str, role_guid: str) -> str:
    return f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"


def grant(
    name: str,
    *,
    role: str,
    principal_id: pulumi.Input[str],
    scope: pulumi.Input[str],
    client: pulumi.Output,
    description: str,
    opts: pulumi.ResourceOptions,
    principal_type: str | None = "ServicePrincipal",
) -> authorization.RoleAssignment:
    """A role assignment of a built-in `role` (GUID) to a principal at `scope`."""
    return authorization.RoleAssignment(
        name,
        authorization.RoleAssignmentArgs(
            principal_id=principal_id,
            principal_type=principal_type,
            role_definition_id=client.subscription_id.apply(lambda sub: role_definition_id(sub, role)),
            scope=scope,
            description=description,
        ),
        opts=opts,
    )
