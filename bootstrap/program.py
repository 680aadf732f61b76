"""The bootstrap: what must exist before the first ``pulumi up`` of a main stack.

- one **deploy identity per environment** (a user-assigned managed identity), federated to exactly
  ``repo:<owner>/<repo>:environment:<githubEnvironment>``: Contributor, AKS RBAC Cluster Admin and
  a custom role for the ``Microsoft.Authorization`` writes Contributor excludes, on its own
  subscription; Role Based Access Control Administrator there **with a condition** naming exactly
  the roles its main stack assigns (bootstrap/main-stack-needs.json, read from the main plans);
  read/write on its own state container and encrypt/decrypt with its own secrets-provider key;
- one **preview identity**, federated only to ``repo:<owner>/<repo>:pull_request``: Reader and
  the reads a preview of dev needs (kubeconfig, in-cluster reads, its state, decrypting its config);
- the **state backend** (``stateBackend.kind: azure-blob``): a storage account without shared keys,
  with versioning, soft delete and a delete lock, one container per stack;
- the **secrets provider**: a Key Vault (RBAC, purge protection) with one key per stack.

Why managed identities and not Entra app registrations: the azure-native provider creates them and
their federated credentials through ARM alone (an app registration needs Microsoft Graph rights
and the azuread provider), they cannot hold a client secret (an app's owner can add one at any
time), they live in a resource group with RBAC and a lock, and the plan and the policy pack see
every one of their credentials.
"""

from __future__ import annotations

import pulumi
import pulumi_random as random
from pulumi_azure_native import authorization, keyvault, managedidentity, resources, storage

from components import custom_roles

from . import roles
from . import settings as settings_mod
from .settings import BootstrapSettings

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
AUDIENCE = "api://AzureADTokenExchange"  # what azure/login asks GitHub's token for
# The environments pull requests preview. Never prod: whoever can open a pull request controls the
# preview job's code, so anything the preview identity can read (prod's state holds its generated
# passwords, decryptable with its key) would be theirs. Prod is previewed by `pulumi up` itself,
# behind the production environment's approval.
PREVIEW_ENVIRONMENTS = ("dev",)

# The data actions a preview needs of a secrets-provider key: the CLI decrypts the stack's data
# key (gocloud.dev's azurekeyvault keeper calls Decrypt) to read secret config and state.
DECRYPT_DATA_ACTIONS = ["Microsoft.KeyVault/vaults/keys/read", "Microsoft.KeyVault/vaults/keys/decrypt/action"]


def role_id(subscription: pulumi.Input[str], guid: str) -> pulumi.Output[str]:
    return pulumi.Output.concat(
        "/subscriptions/", subscription, "/providers/Microsoft.Authorization/roleDefinitions/", guid
    )


class Grants:
    """Role assignments of one principal, each named after the role and scope it grants."""

    def __init__(self, parent: pulumi.Resource, principal_id: pulumi.Input[str], principal_type: str):
        self.parent = parent
        self.principal_id = principal_id
        self.principal_type = principal_type

    def grant(
        self,
        name: str,
        *,
        role: pulumi.Input[str],
        scope: pulumi.Input[str],
        description: str,
        condition: str | None = None,
        depends_on: list[pulumi.Resource] | None = None,
    ) -> authorization.RoleAssignment:
        return authorization.RoleAssignment(
            name,
            authorization.RoleAssignmentArgs(
                principal_id=self.principal_id,
                principal_type=self.principal_type,
                role_definition_id=role,
                scope=scope,
                description=description,
                condition=condition,
                condition_version="2.0" if condition else None,
            ),
            opts=pulumi.ResourceOptions(parent=self.parent, depends_on=depends_on or []),
        )


class StateBackend(pulumi.ComponentResource):
    """A storage account for the DIY (azblob://) backend: Entra-only, versioned, soft-deleting, locked."""

    def __init__(
        self, name: str, s: BootstrapSettings, rg: resources.ResourceGroup, suffix: pulumi.Output[str], opts=None
    ):
        super().__init__("event-backbone-bootstrap:state:StateBackend", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, protect=True)
        days = s.state_backend.soft_delete_days
        self.account_name = suffix.apply(lambda x: f"{s.name_prefix}state{x}")
        self.account = storage.StorageAccount(
            "state",
            storage.StorageAccountArgs(
                resource_group_name=rg.name,
                account_name=self.account_name,
                location=s.location,
                kind=storage.Kind.STORAGE_V2,
                # geo-zone-redundant: the state outlives the region. A recovery stack (prod-dr,
                # docs/disaster-recovery.md) needs its own state and prod's outputs while prod's
                # region is down: after a customer-initiated account failover to the paired region
                sku=storage.SkuArgs(name=storage.SkuName.STANDARD_GZRS),
                allow_shared_key_access=False,  # Entra ID only: no account keys, no SAS signed with them
                default_to_o_auth_authentication=True,
                allow_blob_public_access=False,
                allow_cross_tenant_replication=False,
                enable_https_traffic_only=True,
                minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
                network_rule_set=storage.NetworkRuleSetArgs(
                    default_action=storage.DefaultAction(s.state_backend.network_default_action),
                    bypass=storage.Bypass.NONE,
                ),
                tags={**s.tags, "purpose": "pulumi-state"},
            ),
            opts=child,
        )
        self.blob_service = storage.BlobServiceProperties(
            "state-blob-service",
            storage.BlobServicePropertiesArgs(
                resource_group_name=rg.name,
                account_name=self.account.name,
                blob_services_name="default",
                is_versioning_enabled=True,
                delete_retention_policy=storage.DeleteRetentionPolicyArgs(enabled=True, days=days),
                container_delete_retention_policy=storage.DeleteRetentionPolicyArgs(enabled=True, days=days),
            ),
            opts=child,
        )
        self.lock = authorization.ManagementLockByScope(
            "state-lock",
            authorization.ManagementLockByScopeArgs(
                scope=self.account.id,
                level=authorization.LockLevel.CAN_NOT_DELETE,
                lock_name="pulumi-state",
                notes="Pulumi state of the event-backbone stacks: remove this lock deliberately, never in passing",
            ),
            opts=child,
        )
        self.containers: dict[str, storage.BlobContainer] = {}
        self.urls: dict[str, pulumi.Output[str]] = {}
        # one container per main stack, and the bootstrap's own (only the platform admins reach it)
        for env in [*s.environments, "bootstrap"]:
            container = storage.BlobContainer(
                f"state-{env}",
                storage.BlobContainerArgs(
                    resource_group_name=rg.name,
                    account_name=self.account.name,
                    container_name=f"state-{env}",
                    public_access=storage.PublicAccess.NONE,
                ),
                opts=pulumi.ResourceOptions(parent=self, protect=True, depends_on=[self.blob_service]),
            )
            self.containers[env] = container
            self.urls[env] = pulumi.Output.concat("azblob://state-", env, "?storage_account=", self.account_name)
        self.register_outputs({"accountName": self.account_name})

    def container_scope(self, env: str) -> pulumi.Output[str]:
        return pulumi.Output.concat(self.account.id, "/blobServices/default/containers/state-", env)


class SecretsProvider(pulumi.ComponentResource):
    """A Key Vault with one RSA key per stack: the stacks' ``azurekeyvault://`` secrets providers."""

    def __init__(
        self,
        name: str,
        s: BootstrapSettings,
        rg: resources.ResourceGroup,
        suffix: pulumi.Output[str],
        client: pulumi.Output,
        opts=None,
    ):
        super().__init__("event-backbone-bootstrap:secrets:SecretsProvider", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, protect=True)
        self.vault_name = suffix.apply(lambda x: f"{s.name_prefix}-boot-kv-{x}")
        self.vault = keyvault.Vault(
            "secrets-provider",
            keyvault.VaultArgs(
                resource_group_name=rg.name,
                vault_name=self.vault_name,
                location=s.location,
                properties=keyvault.VaultPropertiesArgs(
                    tenant_id=client.tenant_id,
                    sku=keyvault.SkuArgs(family=keyvault.SkuFamily.A, name=keyvault.SkuName.STANDARD),
                    enable_rbac_authorization=True,  # no access policies: every use is a role assignment
                    enable_purge_protection=True,
                    enable_soft_delete=True,
                    soft_delete_retention_in_days=90,
                    network_acls=keyvault.NetworkRuleSetArgs(
                        default_action=keyvault.NetworkRuleAction.ALLOW, bypass=keyvault.NetworkRuleBypassOptions.NONE
                    ),
                ),
                tags={**s.tags, "purpose": "pulumi-secrets-provider"},
            ),
            opts=child,
        )
        self.lock = authorization.ManagementLockByScope(
            "secrets-provider-lock",
            authorization.ManagementLockByScopeArgs(
                scope=self.vault.id, level=authorization.LockLevel.CAN_NOT_DELETE, lock_name="pulumi-secrets-provider"
            ),
            opts=child,
        )
        self.keys: dict[str, keyvault.Key] = {}
        self.urls: dict[str, pulumi.Output[str]] = {}
        for env in [*s.environments, "bootstrap"]:  # the bootstrap's own key: the platform admins only
            key_name = f"pulumi-{env}"
            self.keys[env] = keyvault.Key(
                f"key-{env}",
                keyvault.KeyArgs(
                    resource_group_name=rg.name,
                    vault_name=self.vault.name,
                    key_name=key_name,
                    properties=keyvault.KeyPropertiesArgs(
                        kty=keyvault.JsonWebKeyType.RSA,
                        key_size=3072,
                        key_ops=[keyvault.JsonWebKeyOperation.ENCRYPT, keyvault.JsonWebKeyOperation.DECRYPT],
                    ),
                ),
                opts=child,
            )
            self.urls[env] = pulumi.Output.concat(
                "azurekeyvault://", self.vault_name, ".vault.azure.net/keys/", key_name
            )
        self.register_outputs({"vaultName": self.vault_name})

    def key_scope(self, env: str) -> pulumi.Output[str]:
        return pulumi.Output.concat(self.vault.id, "/keys/pulumi-", env)


def _identity(parent: pulumi.Resource, s: BootstrapSettings, rg, label: str, subject: str, tags: dict[str, str]):
    # keyword arguments, not UserAssignedIdentityArgs: its `resource_name` clashes with the logical name
    identity = managedidentity.UserAssignedIdentity(
        f"id-{label}",
        resource_group_name=rg.name,
        resource_name_=s.name("id", label),
        location=s.location,
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent, protect=True),
    )
    managedidentity.FederatedIdentityCredential(
        f"fic-{label}",
        resource_group_name=rg.name,
        resource_name_=identity.name,
        federated_identity_credential_resource_name="github",
        issuer=GITHUB_ISSUER,
        subject=subject,
        audiences=[AUDIENCE],
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return identity


class DeployIdentity(pulumi.ComponentResource):
    """The identity that runs ``pulumi up`` of one main stack, from its GitHub environment only."""

    def __init__(
        self,
        env: str,
        s: BootstrapSettings,
        rg: resources.ResourceGroup,
        needs: dict,
        state: StateBackend | None,
        secrets: SecretsProvider,
        platform_subscription: pulumi.Input[str],
        opts=None,
    ):
        super().__init__("event-backbone-bootstrap:identity:DeployIdentity", f"deploy-{env}", None, opts)
        target = s.environments[env]  # type: ignore[index]
        sub = target.subscription_id
        scope = f"/subscriptions/{sub}"
        tags = {**s.tags, "environment": env, "purpose": "deploy"}
        self.identity = _identity(self, s, rg, f"deploy-{env}", s.subject(env), tags)
        g = Grants(self, self.identity.principal_id, authorization.PrincipalType.SERVICE_PRINCIPAL)

        g.grant(
            f"deploy-{env}-contributor",
            role=role_id(sub, roles.CONTRIBUTOR),
            scope=scope,
            description=f"event-backbone {env}: creates the stack's resources in its subscription",
        )
        g.grant(
            f"deploy-{env}-aks-rbac-cluster-admin",
            role=role_id(sub, roles.AKS_RBAC_CLUSTER_ADMIN),
            scope=scope,
            description=f"event-backbone {env}: applies the stack's Kubernetes objects (Entra-only cluster)",
        )
        actions = needs["authorizationActions"]
        if actions:
            guid = roles.custom_role_guid(f"deploy-{env}-authorization-writes")
            definition = authorization.RoleDefinition(
                f"deploy-{env}-authorization-writes",
                authorization.RoleDefinitionArgs(
                    scope=scope,
                    role_definition_id=guid,
                    role_name=f"{s.name_prefix} {env} deploy: policy assignments and locks",
                    description="The Microsoft.Authorization writes the main stack makes beyond Contributor"
                    " (bootstrap/main-stack-needs.json)",
                    assignable_scopes=[scope],
                    permissions=[authorization.PermissionArgs(actions=actions)],
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            g.grant(
                f"deploy-{env}-authorization-writes",
                role=role_id(sub, guid),
                scope=scope,
                description=f"event-backbone {env}: {', '.join(actions)}",
                depends_on=[definition],
            )
        # The custom roles the main stack assigns (components/custom_roles.py): created here, in the
        # environment's subscription, so that no deploy identity writes a role definition.
        for custom in custom_roles.definitions(env).values():
            if custom.guid not in needs["roleDefinitionIds"]:
                continue
            authorization.RoleDefinition(
                f"{env}-{custom.role_name}",
                authorization.RoleDefinitionArgs(
                    scope=scope,
                    role_definition_id=custom.guid,
                    role_name=custom.role_name,
                    description=custom.description,
                    role_type="CustomRole",
                    assignable_scopes=[scope],
                    permissions=[authorization.PermissionArgs(actions=custom.actions)],
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        g.grant(
            f"deploy-{env}-rbac-administrator",
            role=role_id(sub, roles.RBAC_ADMINISTRATOR),
            scope=scope,
            description=f"event-backbone {env}: assigns only the roles its stack assigns",
            condition=roles.assignment_condition(needs["roleDefinitionIds"]),
        )
        if state is not None:
            g.grant(
                f"deploy-{env}-state",
                role=role_id(platform_subscription, roles.STORAGE_BLOB_DATA_CONTRIBUTOR),
                scope=state.container_scope(env),
                description=f"event-backbone {env}: reads and writes its own state container only",
            )
        g.grant(
            f"deploy-{env}-secrets-key",
            role=role_id(platform_subscription, roles.KEY_VAULT_CRYPTO_USER),
            scope=secrets.key_scope(env),
            description=f"event-backbone {env}: encrypts and decrypts with its own secrets-provider key only",
        )
        self.client_id = self.identity.client_id
        self.principal_id = self.identity.principal_id
        self.register_outputs({"clientId": self.client_id})


class PreviewIdentity(pulumi.ComponentResource):
    """The identity pull requests preview with: reads only, dev only."""

    def __init__(
        self,
        s: BootstrapSettings,
        rg: resources.ResourceGroup,
        state: StateBackend | None,
        secrets: SecretsProvider,
        platform_subscription: pulumi.Input[str],
        opts=None,
    ):
        super().__init__("event-backbone-bootstrap:identity:PreviewIdentity", "preview", None, opts)
        tags = {**s.tags, "purpose": "preview"}
        self.identity = _identity(self, s, rg, "preview", s.pull_request_subject, tags)
        g = Grants(self, self.identity.principal_id, authorization.PrincipalType.SERVICE_PRINCIPAL)
        decrypt_guid = roles.custom_role_guid("preview-secrets-decrypt")
        platform_scope = pulumi.Output.concat("/subscriptions/", platform_subscription)
        decrypt = authorization.RoleDefinition(
            "preview-secrets-decrypt",
            authorization.RoleDefinitionArgs(
                scope=platform_scope,
                role_definition_id=decrypt_guid,
                role_name=f"{s.name_prefix} preview: decrypt with a secrets-provider key",
                description="Reads a key and decrypts with it (the Pulumi CLI decrypts the stack's data key)",
                assignable_scopes=[platform_scope],
                permissions=[authorization.PermissionArgs(data_actions=DECRYPT_DATA_ACTIONS)],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        for env in PREVIEW_ENVIRONMENTS:
            sub = s.environments[env].subscription_id  # type: ignore[index]
            scope = f"/subscriptions/{sub}"
            g.grant(
                f"preview-{env}-reader",
                role=role_id(sub, roles.READER),
                scope=scope,
                description=f"event-backbone {env} preview: reads the stack's resources",
            )
            # The program lists the cluster's user kubeconfig (listClusterUserCredential, an action
            # Reader does not hold) and the Kubernetes provider reads the live objects.
            g.grant(
                f"preview-{env}-aks-cluster-user",
                role=role_id(sub, roles.AKS_CLUSTER_USER),
                scope=scope,
                description=f"event-backbone {env} preview: lists the cluster user kubeconfig",
            )
            g.grant(
                f"preview-{env}-aks-rbac-reader",
                role=role_id(sub, roles.AKS_RBAC_READER),
                scope=scope,
                description=f"event-backbone {env} preview: reads Kubernetes objects (not Secrets)",
            )
            if state is not None:
                g.grant(
                    f"preview-{env}-state",
                    role=role_id(platform_subscription, roles.STORAGE_BLOB_DATA_READER),
                    scope=state.container_scope(env),
                    description=f"event-backbone {env} preview: reads its state (preview takes no lock)",
                )
            g.grant(
                f"preview-{env}-secrets-decrypt",
                role=pulumi.Output.concat(
                    "/subscriptions/",
                    platform_subscription,
                    "/providers/Microsoft.Authorization/roleDefinitions/",
                    decrypt_guid,
                ),
                scope=secrets.key_scope(env),
                description=f"event-backbone {env} preview: decrypts the stack's config and state secrets",
                depends_on=[decrypt],
            )
        self.client_id = self.identity.client_id
        self.principal_id = self.identity.principal_id
        self.register_outputs({"clientId": self.client_id})


def main(settings: BootstrapSettings | None = None) -> None:
    s = settings or settings_mod.load()  # every config problem before any resource
    needs = roles.read_needs()
    client = authorization.get_client_config_output()
    suffix = random.RandomString(
        "name-suffix", random.RandomStringArgs(length=6, special=False, upper=False, numeric=True)
    ).result
    rg = resources.ResourceGroup(
        "bootstrap",
        resources.ResourceGroupArgs(resource_group_name=s.name("rg"), location=s.location, tags=s.tags),
        opts=pulumi.ResourceOptions(protect=True),
    )
    platform_subscription = client.subscription_id
    state = StateBackend("state", s, rg, suffix) if s.state_backend.kind == "azure-blob" else None
    secrets = SecretsProvider("secrets", s, rg, suffix, client)

    for i, admin in enumerate(s.platform_admin_object_ids):
        Grants(secrets, admin, authorization.PrincipalType.GROUP).grant(
            f"admins-{i}-secrets-provider",
            role=role_id(platform_subscription, roles.KEY_VAULT_CRYPTO_OFFICER),
            scope=secrets.vault.id,
            description="platform admins manage and use every stack's secrets-provider key",
        )
        if state is not None:
            Grants(state, admin, authorization.PrincipalType.GROUP).grant(
                f"admins-{i}-state",
                role=role_id(platform_subscription, roles.STORAGE_BLOB_DATA_CONTRIBUTOR),
                scope=state.account.id,
                description="platform admins read and repair every stack's state",
            )

    deploy = {
        env: DeployIdentity(env, s, rg, needs[env], state, secrets, platform_subscription) for env in s.environments
    }
    preview = PreviewIdentity(s, rg, state, secrets, platform_subscription)

    pulumi.export("tenantId", client.tenant_id)
    pulumi.export("stateBackend", s.state_backend.kind)
    pulumi.export(
        "environments",
        {
            env: {
                "githubEnvironment": s.environments[env].github_environment,  # type: ignore[index]
                "subscriptionId": s.environments[env].subscription_id,  # type: ignore[index]
                "deployClientId": d.client_id,
                "deployPrincipalId": d.principal_id,
                "assignableRoleDefinitionIds": needs[env]["roleDefinitionIds"],
                "backendUrl": state.urls[env] if state is not None else "https://api.pulumi.com",
                "secretsProvider": secrets.urls[env],
            }
            for env, d in deploy.items()
        },
    )
    pulumi.export(
        "bootstrap",  # where this stack's own state and secrets move after its first `pulumi up`
        {
            "backendUrl": state.urls["bootstrap"] if state is not None else "https://api.pulumi.com",
            "secretsProvider": secrets.urls["bootstrap"],
        },
    )
    pulumi.export(
        "preview",
        {
            "clientId": preview.client_id,
            "principalId": preview.principal_id,
            "environments": list(PREVIEW_ENVIRONMENTS),
        },
    )
