"""Least privilege on secrets and namespaces: nobody but the deployer reads Key Vault at vault
(or wider) scope, a service's identity is granted only its own secrets, and every namespace
the stack creates has a Pod Security `enforce` level."""

from __future__ import annotations

from kit import MANDATORY, MISSING, config, get, schema, violation
from pulumi_policy import StackValidationPolicy

ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
NAMESPACE = "kubernetes:core/v1:Namespace"

# Built-in roles with Key Vault data actions (their GUIDs are the same in every tenant).
KEY_VAULT_DATA_ROLES = {
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "a4417e6f-fecd-4de8-b567-7b0420556985": "Key Vault Certificates Officer",
    "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba": "Key Vault Certificate User",
    "14b46e9e-c2b7-41b4-b07b-48a6ebf60603": "Key Vault Crypto Officer",
    "e147488a-f6f5-4113-8e2d-b22465e65bf6": "Key Vault Crypto Service Encryption User",
    "12338af0-0e69-4776-bea7-57ae8d297424": "Key Vault Crypto User",
    "21090545-7ca7-4776-b22c-e363652d74d2": "Key Vault Reader",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
}
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
POD_SECURITY = "pod-security.kubernetes.io/enforce"


def _role(props) -> str | None:
    role = str(get(props, "roleDefinitionId", ""))
    guid = role.rsplit("/", 1)[-1].lower()
    return guid if guid in KEY_VAULT_DATA_ROLES else None


def secret_of(scope: str) -> str | None:
    """The secret a scope names (``.../vaults/<v>/secrets/<name>``), or None for a vault,
    resource group, subscription or management group scope."""
    lowered = scope.lower()
    marker = "/secrets/"
    if "/providers/microsoft.keyvault/vaults/" not in lowered or marker not in lowered:
        return None
    name = scope[lowered.index(marker) + len(marker) :]
    return name if name and "/" not in name else None


def item_of(scope: str) -> str | None:
    """The one Key Vault object a scope names: a secret, a key or a certificate
    (``.../vaults/<v>/{secrets,keys,certificates}/<name>``), or None for a wider scope."""
    lowered = scope.lower()
    if "/providers/microsoft.keyvault/vaults/" not in lowered:
        return None
    for marker in ("/secrets/", "/keys/", "/certificates/"):
        if marker in lowered:
            name = scope[lowered.index(marker) + len(marker) :]
            return name if name and "/" not in name else None
    return None


def _vault_wide(args, report):
    deployers = {str(x).lower() for x in config(args).get("deployerObjectIds", [])}
    for r in args.resources:
        if r.resource_type != ROLE_ASSIGNMENT or _role(r.props) is None:
            continue
        scope = str(get(r.props, "scope", ""))
        if item_of(scope) is not None:  # one secret, key or certificate
            continue
        principal = str(get(r.props, "principalId", ""))
        if principal.lower() in deployers:
            continue
        violation(
            report,
            ROLE_ASSIGNMENT,
            r.name,
            "scope",
            scope,
            f"grant {KEY_VAULT_DATA_ROLES[_role(r.props) or '']} on each secret, key or certificate it needs"
            " (scope <vaultId>/secrets/<name>, /keys/<name>, /certificates/<name>), not on the vault or wider:"
            f" principal {principal}"
            " is not the deployer (deployerObjectIds)",
            r.urn,
        )


def _service_of(resource, identities: dict[str, str]) -> str | None:
    """The service whose identity a role assignment's principal comes from (the identity it
    depends on, tagged `service`)."""
    for dep in resource.dependencies or []:
        urn = dep if isinstance(dep, str) else getattr(dep, "urn", "")
        if urn in identities:
            return identities[urn]
    return None


def _own_secrets(args, report):
    shared = set(config(args).get("sharedSecrets", []))
    identities = {
        r.urn: str(get(r.props, "tags.service"))
        for r in args.resources
        if r.resource_type == IDENTITY and get(r.props, "tags.service") is not MISSING
    }
    for r in args.resources:
        if r.resource_type != ROLE_ASSIGNMENT or _role(r.props) is None:
            continue
        svc = _service_of(r, identities)
        if svc is None:
            continue
        scope = str(get(r.props, "scope", ""))
        secret = secret_of(scope)
        own = {f"broker-{svc}", f"broker-{svc}-url"} | shared
        if secret not in own:
            violation(
                report,
                ROLE_ASSIGNMENT,
                r.name,
                "scope",
                scope,
                f"service {svc}'s identity may read only its own secrets ({', '.join(sorted(own))})",
                r.urn,
            )
        if _role(r.props) != SECRETS_USER:
            violation(
                report,
                ROLE_ASSIGNMENT,
                r.name,
                "roleDefinitionId",
                get(r.props, "roleDefinitionId"),
                f"service {svc}'s identity gets Key Vault Secrets User (read) only",
                r.urn,
            )


NAMESPACE_PATCH = "kubernetes:core/v1:NamespacePatch"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
LEVEL_FIX = (
    "label the namespace 'restricted' (or 'baseline' where a workload needs it; 'privileged' only"
    " for the namespaces listed in privilegedNamespaces)"
)


def _level(props) -> object:
    labels = get(props, "metadata.labels", {})  # label keys contain dots: no dotted path
    return labels.get(POD_SECURITY, MISSING) if hasattr(labels, "get") else MISSING


def _check_level(report, privileged_ok, typ, props, name, prop, urn):
    level = _level(props)
    if level in ("baseline", "restricted") or (level == "privileged" and name in privileged_ok):
        return
    violation(report, typ, name, prop, level, LEVEL_FIX, urn)


def _pod_security(args, report):
    privileged_ok = set(config(args).get("privilegedNamespaces", []))
    prop = f"metadata.labels['{POD_SECURITY}']"
    for r in args.resources:
        if r.resource_type in (NAMESPACE, NAMESPACE_PATCH):
            # a Namespace, also one a manifest (ConfigFile/ConfigGroup) creates: the engine hands its
            # objects to the pack as resources of their own; a NamespacePatch labels one it does not own
            name = str(get(r.props, "metadata.name", r.name))
            _check_level(report, privileged_ok, r.resource_type, r.props, name, prop, r.urn)
        elif r.resource_type == HELM_RELEASE and get(r.props, "createNamespace", False) is True:
            violation(
                report,
                HELM_RELEASE,
                r.name,
                "createNamespace",
                True,
                f"create namespace {get(r.props, 'namespace', 'default')!r} as a labelled Namespace resource,"
                " make the release depend on it and set createNamespace false (Helm creates it without"
                " Pod Security labels)",
                r.urn,
            )
        elif r.resource_type == CONFIG_GROUP:
            for i, obj in enumerate(get(r.props, "objs", []) or []):
                if isinstance(obj, dict) and obj.get("kind") == "Namespace" and obj.get("apiVersion") == "v1":
                    name = str(get(obj, "metadata.name", f"{r.name}[{i}]"))
                    _check_level(report, privileged_ok, CONFIG_GROUP, obj, name, f"objs[{i}].{prop}", r.urn)


keyvault_vault_wide = StackValidationPolicy(
    name="keyvault-no-vault-wide-data-access",
    description="No principal except the deployer holds a Key Vault data-plane role at vault (or wider) scope.",
    validate=_vault_wide,
    enforcement_level=MANDATORY,
    config_schema=schema({"deployerObjectIds": {"type": "array", "items": {"type": "string"}, "default": []}}),
)

service_own_secrets = StackValidationPolicy(
    name="service-identity-own-secrets",
    description="A service identity's Key Vault grants name only its own secrets (read only).",
    validate=_own_secrets,
    enforcement_level=MANDATORY,
    config_schema=schema(
        {"sharedSecrets": {"type": "array", "items": {"type": "string"}, "default": ["broker-ca-cert"]}}
    ),
)

namespace_pod_security = StackValidationPolicy(
    name="namespace-pod-security",
    description=(
        "Every namespace the stack creates has a Pod Security enforce label (Namespace, NamespacePatch,"
        " a manifest's Namespace); no Helm release creates its own (unlabelled) namespace."
    ),
    validate=_pod_security,
    enforcement_level=MANDATORY,
    config_schema=schema({"privilegedNamespaces": {"type": "array", "items": {"type": "string"}, "default": []}}),
)

POLICIES = [keyvault_vault_wide, service_own_secrets, namespace_pod_security]
