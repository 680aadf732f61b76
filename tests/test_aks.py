"""AKS as recorded for both stacks (engine names, as a policy sees them)."""

from __future__ import annotations

import pytest
import yaml
from conftest import unwrap
from test_settings import errors, mutate, stack_doc

from dryrun.runner import run_stack


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
    pool = stack.inputs("containerservice:AgentPool", "user-pool")  # the original pool keeps its state
    cfg = stack.settings.aks.user_pools["user"]
    assert pool["mode"] == "User"
    assert pool["agentPoolName"] == "user"
    assert pool["enableAutoScaling"] is True
    assert (pool["minCount"], pool["maxCount"]) == (cfg.min_count, cfg.max_count)
    assert pool["enableNodePublicIP"] is False
    assert pool["maxPods"] >= 50
    assert "nodeTaints" not in pool


def test_every_pool_has_upgrade_settings_from_the_stack(stack):
    a = stack.settings.aks
    system = cluster(stack)["agentPoolProfiles"][0]
    expected = {
        "maxSurge": a.system_pool.upgrade_settings.max_surge,
        "drainTimeoutInMinutes": a.system_pool.upgrade_settings.drain_timeout_in_minutes,
        "nodeSoakDurationInMinutes": a.system_pool.upgrade_settings.node_soak_duration_in_minutes,
    }
    assert system["upgradeSettings"] == expected
    pools = {p.inputs["agentPoolName"]: unwrap(p.inputs) for p in stack.of_type("containerservice:AgentPool")}
    assert set(pools) == set(a.user_pools)
    for name, cfg in a.user_pools.items():
        u = cfg.upgrade_settings
        assert pools[name]["upgradeSettings"] == {
            "maxSurge": u.max_surge,
            "drainTimeoutInMinutes": u.drain_timeout_in_minutes,
            "nodeSoakDurationInMinutes": u.node_soak_duration_in_minutes,
        }


def test_prod_pools_surge_and_soak(planned):
    pool = planned["prod"].inputs("containerservice:AgentPool", "user-pool")
    assert pool["upgradeSettings"]["maxSurge"] == "33%" and pool["upgradeSettings"]["nodeSoakDurationInMinutes"] > 0
    assert pool["nodeLabels"] == {"workload": "platform", "pool-generation": "blue"}


def two_pools(stack: str, green: dict) -> str:
    doc = stack_doc(stack)
    doc["config"]["event-backbone:aks"]["userPools"]["green"] = green
    return yaml.safe_dump(doc, sort_keys=False)


def test_a_second_pool_is_one_more_agent_pool():
    """Blue/green: adding `green` adds an AgentPool and leaves `user` as it was."""
    text = two_pools(
        "prod",
        {
            "vmSize": "Standard_D8ads_v6",
            "minCount": 3,
            "maxCount": 12,
            "labels": {"pool-generation": "green"},
            "taints": ["dedicated=events:NoSchedule"],
        },
    )
    result = run_stack("prod", stack_text=text)
    pools = {r.name: unwrap(r.inputs) for r in result.registrations if r.type.endswith("containerservice:AgentPool")}
    assert set(pools) == {"user-pool", "green-pool"}
    assert pools["green-pool"]["agentPoolName"] == "green" and pools["green-pool"]["vmSize"] == "Standard_D8ads_v6"
    assert pools["green-pool"]["nodeTaints"] == ["dedicated=events:NoSchedule"]
    assert pools["user-pool"]["vmSize"] == "Standard_D8ds_v5"


@pytest.mark.parametrize(
    "pools,line",
    [
        ({}, "event-backbone:aks.userPools must list at least one user pool (got {})"),
        (
            {"Blue-1": {}},
            "event-backbone:aks.userPools.Blue-1 is not a valid AKS pool name"
            " (lowercase letters and digits, starting with a letter, 1-12 characters)",
        ),
        (
            {"averyverylongname": {}},
            "event-backbone:aks.userPools.averyverylongname is not a valid AKS pool name"
            " (lowercase letters and digits, starting with a letter, 1-12 characters)",
        ),
        ({"system": {}}, "event-backbone:aks.userPools.system must not reuse the system pool's name 'system'"),
        (
            {"user": {"minCount": 5, "maxCount": 3}},
            "event-backbone:aks.userPools.user.minCount must not exceed aks.userPools.user.maxCount (3) (got 5)",
        ),
        (
            {"user": {"upgradeSettings": {"maxSurge": "150%"}}},
            "event-backbone:aks.userPools.user.upgradeSettings.maxSurge must match",
        ),
    ],
)
def test_pool_validation_one_line_per_problem(pools, line):
    text = mutate("dev", "aks.userPools", pools)
    lines = errors("dev", text)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"Pulumi.dev.yaml: {line}"), lines


def test_a_pool_outside_the_cluster_zones_is_refused():
    text = mutate("dev", "aks.userPools", {"user": {"zones": ["2"]}})
    assert errors("dev", text) == [
        'Pulumi.dev.yaml: event-backbone:aks.userPools.user.zones must lie within aks.availabilityZones [] (got ["2"])'
    ]


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
