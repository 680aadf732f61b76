"""Platform hardening the review asked for besides TLS and backups."""

from __future__ import annotations

from kit import MANDATORY, MISSING, config, get, schema, violation
from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

AKS = "azure-native:containerservice:ManagedCluster"


def _aks(check):
    def validate(args, report):
        if args.resource_type == AKS:
            check(args, report)

    return validate


def _local_accounts(args, report):
    if get(args.props, "disableLocalAccounts") is not True:
        violation(
            report,
            args.resource_type,
            args.name,
            "disableLocalAccounts",
            get(args.props, "disableLocalAccounts"),
            "set it to true (Entra ID only, with Azure RBAC)",
        )


def _secret_rotation(args, report):
    value = get(args.props, "addonProfiles.azureKeyvaultSecretsProvider.config.enableSecretRotation")
    enabled = get(args.props, "addonProfiles.azureKeyvaultSecretsProvider.enabled")
    if enabled is not True or str(value).lower() != "true":
        violation(
            report,
            args.resource_type,
            args.name,
            "addonProfiles.azureKeyvaultSecretsProvider.config.enableSecretRotation",
            value,
            "enable the Key Vault CSI add-on with enableSecretRotation: 'true'",
        )


def _upgrade_channel(args, report):
    value = get(args.props, "autoUpgradeProfile.upgradeChannel")
    if value in (MISSING, "none"):
        violation(
            report,
            args.resource_type,
            args.name,
            "autoUpgradeProfile.upgradeChannel",
            value,
            "choose patch, stable, rapid or node-image (event-backbone:aks.upgradeChannel)",
        )


def _network_policy(args, report):
    value = get(args.props, "networkProfile.networkPolicy")
    if value in (MISSING, "none"):
        violation(
            report,
            args.resource_type,
            args.name,
            "networkProfile.networkPolicy",
            value,
            "set cilium, calico or azure (event-backbone:aks.networkPolicy) so NetworkPolicies are enforced",
        )


aks_local_accounts = ResourceValidationPolicy(
    name="aks-local-accounts-disabled",
    enforcement_level=MANDATORY,
    description="AKS local accounts are disabled.",
    validate=_aks(_local_accounts),
)
aks_secret_rotation = ResourceValidationPolicy(
    name="aks-secret-rotation",
    enforcement_level=MANDATORY,
    description="The Key Vault CSI add-on rotates secrets.",
    validate=_aks(_secret_rotation),
)
aks_upgrade_channel = ResourceValidationPolicy(
    name="aks-upgrade-channel",
    enforcement_level=MANDATORY,
    description="AKS has an automatic upgrade channel.",
    validate=_aks(_upgrade_channel),
)
aks_network_policy = ResourceValidationPolicy(
    name="aks-network-policy",
    enforcement_level=MANDATORY,
    description="AKS enforces NetworkPolicies.",
    validate=_aks(_network_policy),
)


def _secret_expiry(args, report):
    if args.resource_type != "azure-native:keyvault:Secret":
        return
    expires = get(args.props, "properties.attributes.expires")
    if expires is MISSING:
        violation(
            report,
            args.resource_type,
            args.name,
            "properties.attributes.expires",
            expires,
            "give the secret an expiry (event-backbone:keyVault.secretsExpireOn)",
        )
    if get(args.props, "properties.contentType") is MISSING:
        violation(
            report, args.resource_type, args.name, "properties.contentType", MISSING, "give the secret a content type"
        )


keyvault_secret_expiry = ResourceValidationPolicy(
    name="keyvault-secret-expiry",
    enforcement_level=MANDATORY,
    description="Key Vault secrets carry an expiry and a content type.",
    validate=_secret_expiry,
)

AGENT_POOL = "azure-native:containerservice:AgentPool"


def _defender(args, report):
    if args.resource_type != AKS or not config(args).get("requireDefender", False):
        return
    enabled = get(args.props, "securityProfile.defender.securityMonitoring.enabled")
    workspace = get(args.props, "securityProfile.defender.logAnalyticsWorkspaceResourceId")
    if enabled is not True or workspace is MISSING:
        violation(
            report,
            args.resource_type,
            args.name,
            "securityProfile.defender",
            get(args.props, "securityProfile.defender"),
            "enable Defender security monitoring bound to the stack's workspace (event-backbone:aks.defender: true)",
        )


def _host_encryption(args, report):
    if not config(args).get("requireEncryptionAtHost", False):
        return
    if args.resource_type == AKS:
        pools = get(args.props, "agentPoolProfiles", [])
        paths = [(f"agentPoolProfiles.{i}.enableEncryptionAtHost", p) for i, p in enumerate(pools)]
    elif args.resource_type == AGENT_POOL:
        paths = [("enableEncryptionAtHost", args.props)]
    else:
        return
    for path, pool in paths:
        value = get(pool, "enableEncryptionAtHost")
        if value is not True:
            violation(
                report,
                args.resource_type,
                args.name,
                path,
                value,
                "set it to true (event-backbone:aks.encryptionAtHost; the subscription needs the"
                " Microsoft.Compute/EncryptionAtHost feature)",
            )


aks_defender = ResourceValidationPolicy(
    name="aks-defender",
    enforcement_level=MANDATORY,
    description="AKS runs Microsoft Defender for Containers, reporting to a workspace (where required).",
    validate=_defender,
    config_schema=schema({"requireDefender": {"type": "boolean", "default": False}}),
)
aks_host_encryption = ResourceValidationPolicy(
    name="aks-host-encryption",
    enforcement_level=MANDATORY,
    description="Every AKS node pool encrypts at the host (where required).",
    validate=_host_encryption,
    config_schema=schema({"requireEncryptionAtHost": {"type": "boolean", "default": False}}),
)

LOCK = "azure-native:authorization:ManagementLockByScope"
LOCKED_TYPES = [
    "azure-native:containerservice:ManagedCluster",
    "azure-native:keyvault:Vault",
    "azure-native:dbforpostgresql:Server",
    "azure-native:operationalinsights:Workspace",
    "azure-native:containerregistry:Registry",
    "azure-native:redisenterprise:RedisEnterprise",
]


def _locked(args, report):
    cfg = config(args)
    if not cfg.get("requireLocks", False):
        return
    locks = [
        r for r in args.resources if r.resource_type == LOCK and get(r.props, "level") in ("CanNotDelete", "ReadOnly")
    ]
    for target in args.resources:
        if target.resource_type not in cfg.get("types", LOCKED_TYPES):
            continue
        # the resource's id flows into the lock's scope: the engine records it as a dependency
        if not any(any(dep.urn == target.urn for dep in lock.dependencies) for lock in locks):
            violation(
                report,
                target.resource_type,
                target.name,
                "its CanNotDelete lock",
                MISSING,
                "add an authorization.ManagementLockByScope (level CanNotDelete, scope = this resource's id):"
                " components/locks.py does so in prod",
                target.urn,
            )


stateful_locked = StackValidationPolicy(
    name="stateful-resources-locked",
    description="Stateful production resources carry a CanNotDelete management lock (portal, CLI and Pulumi alike).",
    validate=_locked,
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "requireLocks": {"type": "boolean", "default": False},
            "types": {"type": "array", "items": {"type": "string"}, "default": LOCKED_TYPES},
        }
    ),
)

POLICIES = [
    aks_local_accounts,
    aks_secret_rotation,
    aks_upgrade_channel,
    aks_network_policy,
    keyvault_secret_expiry,
    aks_defender,
    aks_host_encryption,
    stateful_locked,
]
