"""AKS as recorded for both stacks (engine names, as a policy sees them)."""

from __future__ import annotations

import pytest


def cluster(stack) -> dict:
    return stack.inputs("containerservice:ManagedCluster")


def test_system_pool_is_tainted_and_private(stack):
    pools = cluster(stack)["agentPoolProfiles"]
    assert len(pools) == 1
    system = pools[0]
    assert system["mode"] == "System"
    assert system["nodeTaints"] == ["CriticalAddonsOnly=true:NoSchedule"]
    assert system["enableNodePublicIP"] is False
    assert system["maxPods"] >= 50
    assert system["count"] == stack.settings.aks.system_pool.count
    assert system["vnetSubnetID"].endswith("/subnets/snet-aks-nodes")


def test_user_pool_autoscales_within_config(stack):
    pool = stack.inputs("containerservice:AgentPool", "user-pool")
    cfg = stack.settings.aks.user_pool
    assert pool["mode"] == "User"
    assert pool["enableAutoScaling"] is True
    assert (pool["minCount"], pool["maxCount"]) == (cfg.min_count, cfg.max_count)
    assert pool["enableNodePublicIP"] is False
    assert pool["maxPods"] >= 50
    assert "nodeTaints" not in pool


def test_zones_and_tier_per_environment(planned):
    prod, dev = cluster(planned["prod"]), cluster(planned["dev"])
    assert prod["agentPoolProfiles"][0]["availabilityZones"] == ["1", "2", "3"]
    assert planned["prod"].inputs("containerservice:AgentPool")["availabilityZones"] == ["1", "2", "3"]
    assert prod["sku"] == {"name": "Base", "tier": "Standard"}
    assert "availabilityZones" not in dev["agentPoolProfiles"][0]
    assert dev["sku"]["tier"] == "Free"


def test_network_overlay_with_policy_engine(stack):
    net = cluster(stack)["networkProfile"]
    assert net["networkPlugin"] == "azure"
    assert net["networkPluginMode"] == "overlay"
    assert net["networkPolicy"] in ("cilium", "calico", "azure")
    assert net["networkDataplane"] == "cilium"
    assert net["loadBalancerSku"] == "standard"


def test_identity_entra_rbac_and_no_local_accounts(stack):
    c = cluster(stack)
    assert c["identity"]["type"] == "UserAssigned"
    assert c["disableLocalAccounts"] is True
    assert c["enableRBAC"] is True
    assert c["aadProfile"]["managed"] is True
    assert c["aadProfile"]["enableAzureRBAC"] is True
    assert c["aadProfile"]["adminGroupObjectIDs"] == stack.settings.aks.admin_group_object_ids


def test_oidc_workload_identity_and_image_cleaner(stack):
    c = cluster(stack)
    assert c["oidcIssuerProfile"] == {"enabled": True}
    assert c["securityProfile"]["workloadIdentity"] == {"enabled": True}
    assert c["securityProfile"]["imageCleaner"]["enabled"] is True
    assert c["securityProfile"]["imageCleaner"]["intervalHours"] == stack.settings.aks.image_cleaner_interval_hours


def test_addons_csi_rotation_policy_and_container_insights(stack):
    addons = cluster(stack)["addonProfiles"]
    csi = addons["azureKeyvaultSecretsProvider"]
    assert csi["enabled"] is True and csi["config"]["enableSecretRotation"] == "true"
    assert addons["azurepolicy"]["enabled"] is True
    oms = addons["omsagent"]
    assert oms["enabled"] is True
    assert "/workspaces/" in oms["config"]["logAnalyticsWorkspaceResourceID"]
    workspace = stack.inputs("operationalinsights:Workspace")
    assert workspace["retentionInDays"] == stack.settings.aks.log_retention_days


def test_upgrade_channels_and_maintenance_windows(stack):
    up = cluster(stack)["autoUpgradeProfile"]
    assert up["upgradeChannel"] not in (None, "none")
    assert up["nodeOSUpgradeChannel"] in ("NodeImage", "SecurityPatch")
    configs = {r.name: r for r in stack.of_type("containerservice:MaintenanceConfiguration")}
    assert set(configs) == {"aksManagedAutoUpgradeSchedule", "aksManagedNodeOSUpgradeSchedule"}
    mw = stack.settings.aks.maintenance_window
    for reg in configs.values():
        window = stack.inputs("containerservice:MaintenanceConfiguration", reg.name)["maintenanceWindow"]
        assert window["schedule"]["weekly"] == {"dayOfWeek": mw.day_of_week, "intervalWeeks": 1}
        assert window["durationHours"] == mw.duration_hours
        assert window["startTime"] == mw.start_time


def test_api_server_is_restricted(stack):
    api = cluster(stack)["apiServerAccessProfile"]
    ranges = api.get("authorizedIPRanges") or []
    assert api.get("enablePrivateCluster") is True or ranges
    assert not any(r.startswith("0.0.0.0") for r in ranges)
    assert ranges == stack.settings.aks.api_server.authorized_ip_ranges


def test_private_cluster_when_config_says_so():
    from test_settings import mutate

    from components.aks import api_server_profile
    from components.settings import from_config_map
    from dryrun.runner import config_from_yaml

    text = mutate("dev", "aks.apiServer", {"privateCluster": True})
    s = from_config_map(config_from_yaml(text)[0], "dev")
    profile = api_server_profile(s)
    assert profile.enable_private_cluster is True
    assert not profile.authorized_ip_ranges


def test_settings_objects_cannot_be_built_against_the_rules():
    import pydantic

    from components.settings import StackSettings

    with pytest.raises(pydantic.ValidationError, match="environment rule"):
        StackSettings.model_validate(
            {"environment": "prod", "location": "westeurope", "keyVault": {"secretsExpireOn": "2027-01-01"}}
        )


def test_control_plane_identity_can_manage_the_node_subnet(stack):
    grant = stack.inputs("authorization:RoleAssignment", "control-plane-subnet")
    assert grant["roleDefinitionId"].endswith("/4d97b98b-1d4f-4787-a291-c67834d212e7")
    assert grant["scope"].endswith("/subnets/snet-aks-nodes")
    cluster_reg = stack.one("containerservice:ManagedCluster")
    assert any(d.endswith("::control-plane-subnet") for d in cluster_reg.dependencies)


def test_kubernetes_provider_uses_the_user_credentials_as_a_secret(stack):
    provider = stack.one("pulumi:providers:kubernetes")
    from pulumi.runtime import rpc

    assert rpc.is_rpc_secret(provider.inputs["kubeconfig"])
    kubeconfig = provider.inputs["kubeconfig"]["value"]
    assert "kubelogin" in kubeconfig  # Entra-only: exec format
