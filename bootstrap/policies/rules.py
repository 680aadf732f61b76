"""The bootstrap's mandatory policies: the state storage is hardened, nobody is granted Owner or
User Access Administrator, and Role Based Access Control Administrator is only ever granted with
a condition that restricts the roles it may assign (in the canonical form of
``bootstrap.roles.assignment_condition``, never naming a privileged role)."""

from __future__ import annotations

import re

from kit import MANDATORY, MISSING, config, get, schema, violation
from pulumi_policy import StackValidationPolicy

from bootstrap.roles import PRIVILEGED, RBAC_ADMINISTRATOR, assignment_condition, role_guid

ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
BLOB_SERVICE = "azure-native:storage:BlobServiceProperties"
LOCK = "azure-native:authorization:ManagementLockByScope"
GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")

ACCOUNT_RULES = (
    ("allowSharedKeyAccess", lambda v: v is False, "false (Entra ID only: no account keys or key-signed SAS)"),
    ("defaultToOAuthAuthentication", lambda v: v is True, "true (the portal and tools use Entra ID)"),
    ("allowBlobPublicAccess", lambda v: v is False, "false"),
    ("minimumTlsVersion", lambda v: v in ("TLS1_2", "TLS1_3"), "'TLS1_2' or newer"),
    ("enableHttpsTrafficOnly", lambda v: v is not False, "true"),
)


def _depends_on(resource, urn: str) -> bool:
    return urn in [d if isinstance(d, str) else getattr(d, "urn", "") for d in resource.dependencies or []]


def _state_storage(args, report):
    minimum = int(config(args).get("minimumSoftDeleteDays", 7))
    for account in (r for r in args.resources if r.resource_type == STORAGE_ACCOUNT):
        for prop, ok, want in ACCOUNT_RULES:
            value = get(account.props, prop)
            if not ok(None if value is MISSING else value):
                violation(report, STORAGE_ACCOUNT, account.name, prop, value, f"set {prop} {want}", account.urn)
        services = [r for r in args.resources if r.resource_type == BLOB_SERVICE and _depends_on(r, account.urn)]
        if not services:
            violation(
                report,
                STORAGE_ACCOUNT,
                account.name,
                "blobServices/default",
                MISSING,
                "add BlobServiceProperties with versioning and soft delete for blobs and containers",
                account.urn,
            )
        for svc in services:
            if get(svc.props, "isVersioningEnabled") is not True:
                value = get(svc.props, "isVersioningEnabled")
                violation(report, BLOB_SERVICE, svc.name, "isVersioningEnabled", value, "set it true", svc.urn)
            for policy in ("deleteRetentionPolicy", "containerDeleteRetentionPolicy"):
                enabled, days = get(svc.props, f"{policy}.enabled"), get(svc.props, f"{policy}.days", 0)
                if enabled is not True or int(days) < minimum:
                    violation(
                        report,
                        BLOB_SERVICE,
                        svc.name,
                        policy,
                        get(svc.props, policy),
                        f"enable it with at least {minimum} days (minimumSoftDeleteDays)",
                        svc.urn,
                    )
        locks = [
            r
            for r in args.resources
            if r.resource_type == LOCK and _depends_on(r, account.urn) and get(r.props, "level") == "CanNotDelete"
        ]
        if not locks:
            violation(
                report,
                STORAGE_ACCOUNT,
                account.name,
                "lock",
                MISSING,
                "add a CanNotDelete ManagementLockByScope whose scope is the account",
                account.urn,
            )


def _no_privileged(args, report):
    for r in args.resources:
        if r.resource_type != ROLE_ASSIGNMENT:
            continue
        guid = role_guid(str(get(r.props, "roleDefinitionId", "")))
        if guid in PRIVILEGED and guid != RBAC_ADMINISTRATOR:
            violation(
                report,
                ROLE_ASSIGNMENT,
                r.name,
                "roleDefinitionId",
                get(r.props, "roleDefinitionId"),
                f"never grant {PRIVILEGED[guid]}: Contributor where the stack creates resources, and Role Based"
                " Access Control Administrator with a condition naming the roles its stack assigns",
                r.urn,
            )


def condition_roles(condition: str) -> list[str]:
    """The role GUIDs a canonical RBAC Administrator condition allows, or [] when it is not one."""
    found = sorted({g.lower() for g in GUID.findall(condition)})
    return found if found and condition == assignment_condition(found) else []


def _rbac_admin_conditioned(args, report):
    for r in args.resources:
        if r.resource_type != ROLE_ASSIGNMENT:
            continue
        if role_guid(str(get(r.props, "roleDefinitionId", ""))) != RBAC_ADMINISTRATOR:
            continue
        condition = get(r.props, "condition")
        if condition is MISSING or not str(condition).strip():
            violation(
                report,
                ROLE_ASSIGNMENT,
                r.name,
                "condition",
                condition,
                "restrict the roles it may assign and delete (bootstrap.roles.assignment_condition)",
                r.urn,
            )
            continue
        if get(r.props, "conditionVersion") != "2.0":
            value = get(r.props, "conditionVersion")
            violation(report, ROLE_ASSIGNMENT, r.name, "conditionVersion", value, "set '2.0'", r.urn)
        allowed = condition_roles(str(condition))
        if not allowed:
            violation(
                report,
                ROLE_ASSIGNMENT,
                r.name,
                "condition",
                condition,
                "constrain both roleAssignments/write (@Request) and roleAssignments/delete (@Resource) to"
                " RoleDefinitionId ForAnyOfAnyValues:GuidEquals {roles}, as bootstrap.roles.assignment_condition"
                " writes it",
                r.urn,
            )
            continue
        privileged = [PRIVILEGED[g] for g in allowed if g in PRIVILEGED]
        if privileged:
            violation(
                report,
                ROLE_ASSIGNMENT,
                r.name,
                "condition",
                condition,
                f"the condition lets it assign {', '.join(privileged)}: remove them (they would undo the condition)",
                r.urn,
            )


state_storage_hardened = StackValidationPolicy(
    name="state-storage-hardened",
    description="The state storage account: Entra-only (no shared keys), no public blobs, TLS 1.2+, versioning,"
    " soft delete of blobs and containers, and a CanNotDelete lock.",
    validate=_state_storage,
    enforcement_level=MANDATORY,
    config_schema=schema({"minimumSoftDeleteDays": {"type": "integer", "default": 7}}),
)

no_privileged_grants = StackValidationPolicy(
    name="no-owner-or-user-access-administrator",
    description="No role assignment of Owner or User Access Administrator.",
    validate=_no_privileged,
    enforcement_level=MANDATORY,
)

rbac_admin_conditioned = StackValidationPolicy(
    name="rbac-administrator-conditioned",
    description="Role Based Access Control Administrator only with a condition restricting the roles it may"
    " assign and delete, naming no privileged role.",
    validate=_rbac_admin_conditioned,
    enforcement_level=MANDATORY,
)

POLICIES = [state_storage_hardened, no_privileged_grants, rbac_admin_conditioned]
