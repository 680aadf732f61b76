"""Key Vault: RBAC-only, soft delete + purge protection, network-restricted, private endpoint.

Every generated secret is a ``random.RandomPassword`` (kept by a per-secret rotation counter)
stored as a Key Vault secret with a content type and an expiry, and handed to other
components only as a Pulumi secret.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pulumi
import pulumi_random as random
from pulumi_azure_native import keyvault, network

from . import rbac
from .network import Network
from .settings import StackSettings

SOFT_DELETE_DAYS = 90
# URL- and connection-string-safe specials: secrets end up in AMQP/PostgreSQL URIs.
PASSWORD_SPECIALS = "-_.~"


def expiry_epoch(day: dt.date) -> int:
    """Key Vault ``attributes.expires`` is seconds since the epoch (midnight UTC of that day)."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


@dataclass(frozen=True)
class GeneratedSecret:
    name: str
    value: pulumi.Output[str]  # always a Pulumi secret
    uri: pulumi.Output[str]  # versionless Key Vault URI, for CSI / references


class Vault(pulumi.ComponentResource):
    vault_name: pulumi.Output[str]
    vault_uri: pulumi.Output[str]
    vault_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        net: Network,
        client: pulumi.Output,  # authorization.get_client_config_output()
        suffix: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:Vault", name, None, opts)
        s = settings
        self._settings = s
        child = pulumi.ResourceOptions(parent=self)
        tags = {**s.tags, "environment": s.environment, "managedBy": "pulumi"}
        kv = s.key_vault

        vault = keyvault.Vault(
            "vault",
            keyvault.VaultArgs(
                resource_group_name=net.resource_group_name,
                vault_name=suffix.apply(lambda x: f"{s.name_prefix}-{s.environment}-kv-{x}"),
                location=s.location,
                properties=keyvault.VaultPropertiesArgs(
                    tenant_id=client.tenant_id,
                    sku=keyvault.SkuArgs(family=keyvault.SkuFamily.A, name=keyvault.SkuName(kv.sku)),
                    enable_rbac_authorization=True,
                    enable_soft_delete=True,
                    soft_delete_retention_in_days=kv.soft_delete_retention_days,
                    enable_purge_protection=True,
                    enabled_for_deployment=False,
                    enabled_for_disk_encryption=False,
                    enabled_for_template_deployment=False,
                    # Reachable through the private endpoint; the public endpoint only from the
                    # listed ranges (the deploying runners), everything else denied.
                    public_network_access="Enabled" if kv.allowed_ip_ranges else "Disabled",
                    network_acls=keyvault.NetworkRuleSetArgs(
                        default_action="Deny",
                        bypass="None",
                        ip_rules=[keyvault.IPRuleArgs(value=r) for r in kv.allowed_ip_ranges],
                    ),
                ),
                tags=tags,
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=s.protect),
        )
        self.vault_id = vault.id
        self.vault_name = vault.name
        self.vault_uri = vault.properties.vault_uri

        endpoint = network.PrivateEndpoint(
            "vault-pe",
            network.PrivateEndpointArgs(
                resource_group_name=net.resource_group_name,
                private_endpoint_name=s.name("kv", "pe"),
                location=s.location,
                subnet=network.SubnetArgs(id=net.endpoints_subnet_id),
                private_link_service_connections=[
                    network.PrivateLinkServiceConnectionArgs(
                        name="vault",
                        private_link_service_id=vault.id,
                        group_ids=["vault"],
                    )
                ],
                tags=tags,
            ),
            opts=child,
        )
        network.PrivateDnsZoneGroup(
            "vault-pe-dns",
            network.PrivateDnsZoneGroupArgs(
                resource_group_name=net.resource_group_name,
                private_endpoint_name=endpoint.name,
                private_dns_zone_group_name="default",
                private_dns_zone_configs=[
                    network.PrivateDnsZoneConfigArgs(name="vaultcore", private_dns_zone_id=net.keyvault_dns_zone_id)
                ],
            ),
            opts=child,
        )

        # The deploying principal writes the generated secrets (RBAC vault: no access policies).
        # The SDK sends principalType "User" when it is left unset, which ARM refuses for the
        # bootstrap's deploy identity (a managed identity): keyVault.deployerPrincipalType says which.
        writer = rbac.grant(
            "deployer-secrets-officer",
            role=rbac.KEY_VAULT_SECRETS_OFFICER,
            principal_id=client.object_id,
            scope=vault.id,
            client=client,
            description="event-backbone deployment writes generated secrets",
            opts=child,
            principal_type=kv.deployer_principal_type,
        )

        self._vault = vault
        self._writer = writer
        self._resource_group_name = net.resource_group_name
        self._expires = expiry_epoch(kv.secrets_expire_on)
        self.secrets: dict[str, GeneratedSecret] = {}
        for secret_name in s.secret_names():
            self.secrets[secret_name] = self._generate(secret_name)

        self.register_outputs({"vaultName": self.vault_name, "vaultUri": self.vault_uri})

    def _generate(self, secret_name: str) -> GeneratedSecret:
        s = self._settings
        rotation = s.key_vault.rotation.get(secret_name, 0)
        password = random.RandomPassword(
            f"{secret_name}-password",
            random.RandomPasswordArgs(
                length=32,
                special=True,
                override_special=PASSWORD_SPECIALS,
                min_lower=2,
                min_upper=2,
                min_numeric=2,
                min_special=1,
                # Bumping keyVault.rotation.<name> in the stack file replaces the password.
                keepers={"rotation": str(rotation)},
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        value = pulumi.Output.secret(password.result)
        uri = self.store(
            secret_name,
            value,
            "text/plain; generated=pulumi-random",
            tags={"rotation": str(rotation), "generatedBy": "pulumi-random"},
        )
        return GeneratedSecret(secret_name, value, uri)

    def store(
        self, secret_name: str, value: pulumi.Input[str], content_type: str, tags: dict | None = None
    ) -> pulumi.Output[str]:
        """Stores a value (always as a Pulumi secret) with a content type and the stack's
        expiry; returns the versionless secret URI."""
        stored = keyvault.Secret(
            f"{secret_name}-secret",
            keyvault.SecretArgs(
                resource_group_name=self._resource_group_name,
                vault_name=self._vault.name,
                secret_name=secret_name,
                properties=keyvault.SecretPropertiesArgs(
                    value=pulumi.Output.secret(value),
                    content_type=content_type,
                    attributes=keyvault.SecretAttributesArgs(enabled=True, expires=self._expires),
                ),
                tags=tags or {"generatedBy": "event-backbone"},
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self._writer]),
        )
        # The URI is not sensitive: derive it from the vault and the name (depending on the
        # stored secret) rather than from its properties, which carry the secret value.
        return pulumi.Output.all(stored.id, self.vault_uri).apply(
            lambda args: f"{args[1].rstrip('/')}/secrets/{secret_name}"
        )
