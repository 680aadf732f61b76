"""The main stack assigns only roles its deploy identity may assign: the bootstrap grants it Role
Based Access Control Administrator with a condition naming exactly the roles in
``assignableRoleDefinitionIds`` (generated into policies/config.<stack>.json from the bootstrap's
outputs by ``python -m bootstrap.generate policy-config``). Any other role would fail at ``pulumi
up`` with an authorization error, after part of the update has been applied; this fails the plan."""

from __future__ import annotations

from kit import MANDATORY, config, get, schema, violation
from pulumi_policy import StackValidationPolicy

ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"


def _assignable(args, report):
    allowed = {str(g).lower() for g in config(args).get("assignableRoleDefinitionIds", [])}
    for r in args.resources:
        if r.resource_type != ROLE_ASSIGNMENT:
            continue
        role = str(get(r.props, "roleDefinitionId", ""))
        if role.rstrip("/").rsplit("/", 1)[-1].lower() in allowed:
            continue
        violation(
            report,
            ROLE_ASSIGNMENT,
            r.name,
            "roleDefinitionId",
            role,
            "the deploy identity may assign only assignableRoleDefinitionIds (the bootstrap's condition): run"
            " make plan, python -m bootstrap.generate needs, pulumi up in bootstrap/ (a platform admin), then"
            " python -m bootstrap.generate policy-config (docs/first-rollout.md)",
            r.urn,
        )


role_assignments_assignable = StackValidationPolicy(
    name="role-assignments-assignable",
    description="Every role assignment names a role the deploy identity may assign (assignableRoleDefinitionIds).",
    validate=_assignable,
    enforcement_level=MANDATORY,
    config_schema=schema(
        {"assignableRoleDefinitionIds": {"type": "array", "items": {"type": "string"}, "default": []}}
    ),
)

POLICIES = [role_assignments_assignable]
