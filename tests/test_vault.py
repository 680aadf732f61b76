"""Key Vault and generated secrets."""

from __future__ import annotations

import datetime as dt

from conftest import unwrap
from pulumi.runtime import rpc


def test_vault_rbac_soft_delete_purge_protection(stack):
    props = stack.inputs("keyvault:Vault")["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True
    assert props["softDeleteRetentionInDays"] == 90
    assert props["enablePurgeProtection"] is True
    assert "accessPolicies" not in props


def test_vault_network_default_deny_with_configured_ranges(stack):
    acls = stack.inputs("keyvault:Vault")["properties"]["networkAcls"]
    assert acls["defaultAction"] == "Deny"
    assert [r["value"] for r in acls["ipRules"]] == stack.settings.key_vault.allowed_ip_ranges


def test_vault_private_endpoint_in_the_endpoint_subnet(stack):
    pe = stack.inputs("network:PrivateEndpoint", "vault-pe")
    assert pe["subnet"]["id"].endswith("/subnets/snet-private-endpoints")
    [conn] = pe["privateLinkServiceConnections"]
    assert conn["groupIds"] == ["vault"]
    assert "/vaults/" in conn["privateLinkServiceId"]
    group = stack.inputs("network:PrivateDnsZoneGroup", "vault-pe-dns")
    assert group["privateDnsZoneConfigs"][0]["privateDnsZoneId"].endswith("privatelink.vaultcore.azure.net")


def test_every_generated_secret_is_random_and_stored_with_type_and_expiry(stack):
    names = stack.settings.secret_names()
    passwords = {r.name for r in stack.of_type("randomPassword:RandomPassword")}
    assert passwords == {f"{n}-password" for n in names}
    expires = int(dt.datetime.combine(stack.settings.key_vault.secrets_expire_on, dt.time(), dt.UTC).timestamp())
    for name in names:
        reg = stack.one("keyvault:Secret", f"{name}-secret")
        assert rpc.is_rpc_secret(reg.inputs["properties"])  # the value travels as a secret
        props = stack.inputs("keyvault:Secret", f"{name}-secret")["properties"]
        assert props["contentType"].startswith("text/plain")
        assert props["attributes"] == {"enabled": True, "expires": expires}
        assert reg.inputs["secretName"] == name


def test_rotation_counter_feeds_the_keepers(planned):
    from test_settings import mutate

    from dryrun.runner import run_stack

    before = planned["dev"].inputs("randomPassword:RandomPassword", "postgres-admin-password")
    rotated = run_stack("dev", stack_text=mutate("dev", "keyVault.rotation.postgres-admin", 1))
    after = [r for r in rotated.registrations if r.name == "postgres-admin-password"][0].inputs
    assert before["keepers"] == {"rotation": "0"}
    assert after["keepers"] == {"rotation": "1"}


def test_secrets_written_only_after_the_deployer_may_write(stack):
    reg = stack.one("keyvault:Secret", "postgres-admin-secret")
    assert any(d.endswith("::deployer-secrets-officer") for d in reg.dependencies)
    officer = stack.inputs("authorization:RoleAssignment", "deployer-secrets-officer")
    assert officer["roleDefinitionId"].endswith("/b86a8fe4-44ce-4948-aee5-eccb2c155cd7")


def test_only_the_deployer_holds_a_key_vault_role_at_vault_scope(stack):
    """The vault-wide workload grant is gone: every other grant names one secret."""
    from dryrun.runner import deployer_object_id

    DEPLOYER_OBJECT_ID = deployer_object_id(stack.stack)  # the bootstrap's deploy identity (policies/config)

    grants = {r.name: unwrap(r.inputs) for r in stack.of_type("authorization:RoleAssignment")}
    kv = {n: g for n, g in grants.items() if g["roleDefinitionId"].rsplit("/", 1)[-1] in KV_ROLES}
    wide = {n for n, g in kv.items() if "/secrets/" not in g["scope"]}
    assert wide == {"deployer-secrets-officer"}
    assert kv["deployer-secrets-officer"]["principalId"] == DEPLOYER_OBJECT_ID
    assert len(kv) > 10  # the services' and KEDA's secret-scoped grants
    assert not stack.of_type("platform:WorkloadSecretAccess")


KV_ROLES = {"4633458b-17de-408a-b874-0445c86b69e6", "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"}
