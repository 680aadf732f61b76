"""Platform hardening the review asked for besides TLS and backups."""

from __future__ import annotations

from kit import MANDATORY, MISSING, get, violation
from pulumi_policy import ResourceValidationPolicy

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

POLICIES = [aks_local_accounts, aks_secret_rotation, aks_upgrade_channel, aks_network_policy, keyvault_secret_expiry]
