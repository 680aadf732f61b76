"""AKS: Entra-only cluster on Azure CNI overlay with a network policy engine, workload
identity, Key Vault CSI (rotation on), KEDA, Azure Policy, Container insights, auto-upgrades in a
maintenance window, and a Kubernetes provider for the in-cluster components."""

from __future__ import annotations

import base64

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import containerservice, managedidentity, operationalinsights

from . import egress, rbac
from .network import Network
from .settings import AksSettings, StackSettings, UpgradeSettings, ephemeral_capacity_gb

SYSTEM_TAINT = "CriticalAddonsOnly=true:NoSchedule"


def addon_profiles(s: StackSettings, workspace_id: pulumi.Input[str]) -> dict:
    """Add-ons keyed by the names AKS uses in ``addonProfiles``."""
    return {
        "azureKeyvaultSecretsProvider": containerservice.ManagedClusterAddonProfileArgs(
            enabled=True,
            config={"enableSecretRotation": "true", "rotationPollInterval": "2m"},
        ),
        "azurepolicy": containerservice.ManagedClusterAddonProfileArgs(enabled=True),
        "omsagent": containerservice.ManagedClusterAddonProfileArgs(
            enabled=True,
            config={"logAnalyticsWorkspaceResourceID": workspace_id, "useAADAuth": "true"},
        ),
    }


def defender_profile(
    s: StackSettings, workspace_id: pulumi.Input[str]
) -> containerservice.ManagedClusterSecurityProfileDefenderArgs | None:
    """Microsoft Defender for Containers (runtime threat detection), reporting to the stack's workspace."""
    if not s.aks.defender:
        return None
    return containerservice.ManagedClusterSecurityProfileDefenderArgs(
        log_analytics_workspace_resource_id=workspace_id,
        security_monitoring=containerservice.ManagedClusterSecurityProfileDefenderSecurityMonitoringArgs(enabled=True),
    )


def api_server_profile(s: StackSettings) -> containerservice.ManagedClusterAPIServerAccessProfileArgs:
    api = s.aks.api_server
    if api.private_cluster:
        return containerservice.ManagedClusterAPIServerAccessProfileArgs(
            enable_private_cluster=True,
            enable_private_cluster_public_fqdn=False,
            disable_run_command=True,
        )
    return containerservice.ManagedClusterAPIServerAccessProfileArgs(
        authorized_ip_ranges=list(api.authorized_ip_ranges),
        disable_run_command=True,
    )


def maintenance_window(s: StackSettings) -> containerservice.MaintenanceWindowArgs:
    mw = s.aks.maintenance_window
    return containerservice.MaintenanceWindowArgs(
        schedule=containerservice.ScheduleArgs(
            weekly=containerservice.WeeklyScheduleArgs(day_of_week=mw.day_of_week, interval_weeks=1)
        ),
        duration_hours=mw.duration_hours,
        start_time=mw.start_time,
        utc_offset=mw.utc_offset,
    )


def os_disk(vm_size: str, aks: AksSettings) -> dict:
    """A pool's OS disk for its VM size: ephemeral (on the size's cache or temp disk, free and
    faster to reimage) where ``aks.osDiskSizeGb`` fits on it, otherwise managed. ``osDiskType:
    Ephemeral`` on a size that cannot hold it is refused in settings (rules.py); ``Managed``
    forces a managed disk. Sizes: components/settings/vm_sizes.py."""
    if aks.os_disk_type == "Managed":
        kind = containerservice.OSDiskType.MANAGED
    else:
        capacity = ephemeral_capacity_gb(vm_size)
        fits = capacity is not None and capacity >= aks.os_disk_size_gb
        kind = containerservice.OSDiskType.EPHEMERAL if fits else containerservice.OSDiskType.MANAGED
    return {"os_disk_type": kind, "os_disk_size_gb": aks.os_disk_size_gb}


def upgrade_settings(u: UpgradeSettings) -> containerservice.AgentPoolUpgradeSettingsArgs:
    """Surge, drain timeout and soak for a pool's node upgrades (from settings)."""
    return containerservice.AgentPoolUpgradeSettingsArgs(
        max_surge=u.max_surge,
        drain_timeout_in_minutes=u.drain_timeout_in_minutes,
        node_soak_duration_in_minutes=u.node_soak_duration_in_minutes,
    )


def _pool_common(s: StackSettings, subnet_id: pulumi.Input[str], vm_size: str) -> dict:
    """What the system and the user pool share: zones, pod density, no public IPs, OS, subnet,
    OS disk and host encryption."""
    return dict(
        **os_disk(vm_size, s.aks),
        enable_encryption_at_host=s.aks.encryption_at_host,
        vm_size=vm_size,
        availability_zones=list(s.aks.availability_zones) or None,
        max_pods=s.aks.max_pods,
        enable_node_public_ip=False,
        os_type="Linux",
        os_sku="AzureLinux",
        type="VirtualMachineScaleSets",
        vnet_subnet_id=subnet_id,
        orchestrator_version=s.aks.kubernetes_version,
    )


class Aks(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    oidc_issuer_url: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        net: Network,
        client: pulumi.Output,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:Aks", name, None, opts)
        s = settings
        child = pulumi.ResourceOptions(parent=self)
        tags = {**s.tags, "environment": s.environment, "managedBy": "pulumi"}

        workspace = operationalinsights.Workspace(
            "logs",
            operationalinsights.WorkspaceArgs(
                resource_group_name=net.resource_group_name,
                workspace_name=s.name("log"),
                location=s.location,
                sku=operationalinsights.WorkspaceSkuArgs(name="PerGB2018"),
                retention_in_days=s.aks.log_retention_days,
                tags=tags,
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=s.protect),
        )

        # Control-plane identity exists before the cluster so that it can be granted the subnet
        # (a bring-your-own VNet needs Network Contributor for load balancers).
        control_plane = managedidentity.UserAssignedIdentity(
            "control-plane-identity",
            resource_group_name=net.resource_group_name,
            resource_name_=s.name("id", "aks"),
            location=s.location,
            tags=tags,
            opts=child,
        )
        subnet_grant = rbac.grant(
            "control-plane-subnet",
            role=rbac.NETWORK_CONTRIBUTOR,
            principal_id=control_plane.principal_id,
            scope=net.aks_subnet_id,
            client=client,
            description="AKS control plane manages load balancers in the node subnet",
            opts=child,
        )

        # Kubelet identity of our own (as aks-baseline's AcrPull target): known before the cluster,
        # so the registry grant does not wait for the cluster; the control plane assigns it to nodes.
        kubelet = managedidentity.UserAssignedIdentity(
            "kubelet-identity",
            resource_group_name=net.resource_group_name,
            resource_name_=s.name("id", "kubelet"),
            location=s.location,
            tags=tags,
            opts=child,
        )
        kubelet_grant = rbac.grant(
            "control-plane-assigns-kubelet-identity",
            role=rbac.MANAGED_IDENTITY_OPERATOR,
            principal_id=control_plane.principal_id,
            scope=kubelet.id,
            client=client,
            description="AKS control plane assigns the kubelet identity to the nodes",
            opts=child,
        )
        self.kubelet_principal_id = kubelet.principal_id

        system_pool = containerservice.ManagedClusterAgentPoolProfileArgs(
            name=s.aks.system_pool.name,
            mode="System",
            count=s.aks.system_pool.count,
            node_taints=[SYSTEM_TAINT],
            upgrade_settings=upgrade_settings(s.aks.system_pool.upgrade_settings),
            **_pool_common(s, net.aks_subnet_id, s.aks.system_pool.vm_size),
        )

        cluster = containerservice.ManagedCluster(
            "cluster",
            resource_group_name=net.resource_group_name,
            resource_name_=s.name("aks"),
            location=s.location,
            dns_prefix=s.name("aks"),
            kubernetes_version=s.aks.kubernetes_version,
            node_resource_group=s.name("aks", "nodes"),
            sku=containerservice.ManagedClusterSKUArgs(name="Base", tier=s.aks.tier),
            identity=containerservice.ManagedClusterIdentityArgs(
                type=containerservice.ResourceIdentityType.USER_ASSIGNED,
                user_assigned_identities=[control_plane.id],
            ),
            agent_pool_profiles=[system_pool],
            identity_profile={
                "kubeletidentity": containerservice.UserAssignedIdentityArgs(
                    resource_id=kubelet.id, client_id=kubelet.client_id, object_id=kubelet.principal_id
                )
            },
            enable_rbac=True,
            disable_local_accounts=True,
            aad_profile=containerservice.ManagedClusterAADProfileArgs(
                managed=True,
                enable_azure_rbac=True,
                tenant_id=client.tenant_id,
                admin_group_object_ids=list(s.aks.admin_group_object_ids),
            ),
            network_profile=containerservice.ContainerServiceNetworkProfileArgs(
                network_plugin="azure",
                network_plugin_mode="overlay",
                network_policy=s.aks.network_policy,
                network_dataplane="cilium" if s.aks.network_policy == "cilium" else "azure",
                pod_cidr=s.aks.pod_cidr,
                service_cidr=s.aks.service_cidr,
                dns_service_ip=s.aks.dns_service_ip,
                load_balancer_sku="standard",
                outbound_type=egress.outbound_type(s),
            ),
            oidc_issuer_profile=containerservice.ManagedClusterOIDCIssuerProfileArgs(enabled=True),
            security_profile=containerservice.ManagedClusterSecurityProfileArgs(
                defender=defender_profile(s, workspace.id),
                workload_identity=containerservice.ManagedClusterSecurityProfileWorkloadIdentityArgs(enabled=True),
                image_cleaner=containerservice.ManagedClusterSecurityProfileImageCleanerArgs(
                    enabled=True,
                    interval_hours=s.aks.image_cleaner_interval_hours,
                ),
            ),
            addon_profiles=addon_profiles(s, workspace.id),
            # KEDA add-on: ScaledObjects scale the services on their queues' depth.
            workload_auto_scaler_profile=containerservice.ManagedClusterWorkloadAutoScalerProfileArgs(
                keda=containerservice.ManagedClusterWorkloadAutoScalerProfileKedaArgs(enabled=True)
            ),
            auto_upgrade_profile=containerservice.ManagedClusterAutoUpgradeProfileArgs(
                upgrade_channel=s.aks.upgrade_channel,
                node_os_upgrade_channel=s.aks.node_os_upgrade_channel,
            ),
            api_server_access_profile=api_server_profile(s),
            tags=tags,
            # protect stops Pulumi; the CanNotDelete lock (components/locks.py) stops everyone else
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[subnet_grant, kubelet_grant, *net.egress_ready], protect=s.protect
            ),
        )

        # One AgentPool per named user pool (a blue/green pool swap: add one, later remove the other).
        for pool_name, pool in s.aks.user_pools.items():
            common = _pool_common(s, net.aks_subnet_id, pool.vm_size)
            if pool.zones is not None:
                common["availability_zones"] = list(pool.zones) or None
            containerservice.AgentPool(
                f"{pool_name}-pool",  # "user-pool" for the original pool: its state is kept
                resource_group_name=net.resource_group_name,
                resource_name_=cluster.name,
                agent_pool_name=pool_name,
                mode="User",
                enable_auto_scaling=True,
                count=pool.min_count,
                min_count=pool.min_count,
                max_count=pool.max_count,
                upgrade_settings=upgrade_settings(pool.upgrade_settings),
                node_labels={"workload": "platform", **pool.labels},
                node_taints=list(pool.taints) or None,
                **common,
                opts=child,
            )

        # Cluster upgrades and node-image upgrades both wait for the configured window.
        for config_name in ("aksManagedAutoUpgradeSchedule", "aksManagedNodeOSUpgradeSchedule"):
            containerservice.MaintenanceConfiguration(
                config_name,
                resource_group_name=net.resource_group_name,
                resource_name_=cluster.name,
                config_name=config_name,
                maintenance_window=maintenance_window(s),
                opts=child,
            )

        # Entra-only cluster (local accounts disabled): the user kubeconfig in "exec" format
        # runs kubelogin, which must be on PATH wherever `pulumi up` runs.
        creds = containerservice.list_managed_cluster_user_credentials_output(
            resource_group_name=net.resource_group_name,
            resource_name=cluster.name,
            format="exec",
        )
        self.kubeconfig = pulumi.Output.secret(
            creds.kubeconfigs.apply(lambda kcs: base64.b64decode(kcs[0].value).decode())
        )
        self.provider = k8s.Provider(
            "k8s",
            k8s.ProviderArgs(kubeconfig=self.kubeconfig, enable_server_side_apply=True, delete_unreachable=False),
            opts=child,
        )
        self.cluster_name = cluster.name
        self.cluster_id = cluster.id
        self.oidc_issuer_url = cluster.oidc_issuer_profile.apply(_issuer_url)
        self.workspace_id = workspace.id
        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "oidcIssuerUrl": self.oidc_issuer_url,
            }
        )


def _issuer_url(profile: containerservice.outputs.ManagedClusterOIDCIssuerProfileResponse | None) -> str:
    """The cluster's OIDC issuer (workload identity federates with it). AKS reports it whenever
    the profile is enabled, as it is above: a missing one must stop the deployment, not become
    an empty issuer on the federated credentials."""
    if profile is None or not profile.issuer_url:
        raise ValueError("AKS returned no OIDC issuer URL although oidcIssuerProfile.enabled is true")
    return profile.issuer_url
