"""AKS settings: cluster version and tier, node pools, maintenance and API server access."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from .base import Cidr, DayOfWeek, HourMinute, IpOrCidr, Model, Uuid, Zone, check_cidr


class UpgradeSettings(Model):
    """How AKS replaces a pool's nodes on an upgrade: surge nodes added first, each old node drained
    (evictions honour PodDisruptionBudgets up to the drain timeout), then a soak before the next."""

    max_surge: Annotated[str, Field(pattern=r"^([1-9]\d{0,2}|[1-9]\d?%|100%)$")] = "33%"
    drain_timeout_in_minutes: int = Field(default=30, ge=1, le=1440)
    node_soak_duration_in_minutes: int = Field(default=0, ge=0, le=30)


# AKS agent pool names: lowercase letters and digits, starting with a letter, 1-12 characters (Linux)
POOL_NAME_PATTERN = r"^[a-z][a-z0-9]{0,11}$"
# a Kubernetes taint as AKS takes it: key=value:Effect
Taint = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][-A-Za-z0-9_./]*=[-A-Za-z0-9_.]*:(NoSchedule|PreferNoSchedule|NoExecute)$")
]


class SystemPool(Model):
    name: str = "system"
    vm_size: str = "Standard_D4ds_v5"
    count: int = Field(default=3, ge=1, le=10)
    upgrade_settings: UpgradeSettings = UpgradeSettings()


class UserPool(Model):
    """One named user pool. A blue/green node-pool upgrade is two stack changes: add the green
    pool, later remove the blue one (docs/runbooks/node-pool-blue-green.md)."""

    vm_size: str = "Standard_D4ds_v5"
    min_count: int = Field(default=2, ge=1, le=100)
    max_count: int = Field(default=6, ge=1, le=100)
    zones: list[Zone] | None = None  # default: aks.availabilityZones
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)
    upgrade_settings: UpgradeSettings = UpgradeSettings()


def default_user_pools() -> dict[str, UserPool]:
    return {"user": UserPool()}


class MaintenanceWindow(Model):
    day_of_week: DayOfWeek = "Sunday"
    start_time: HourMinute = "02:00"
    duration_hours: int = Field(default=4, ge=4, le=24)
    utc_offset: Annotated[str, Field(pattern=r"^[+-]([01]\d|2[0-3]):[0-5]\d$")] = "+00:00"


ControlPlaneLog = Literal[
    "kube-apiserver",
    "kube-audit",
    "kube-audit-admin",
    "kube-controller-manager",
    "kube-scheduler",
    "cluster-autoscaler",
    "cloud-controller-manager",
    "guard",
    "csi-azuredisk-controller",
    "csi-azurefile-controller",
    "csi-snapshot-controller",
]
# aks-baseline's selection: the admin audit (writes, no get/list noise), Entra sign-ins (guard),
# scaling and controller decisions. kube-audit (every read) and kube-apiserver are opt-in: costly.
DEFAULT_CONTROL_PLANE_LOGS: list[ControlPlaneLog] = [
    "kube-audit-admin",
    "guard",
    "cluster-autoscaler",
    "kube-controller-manager",
]
# System namespaces exempt from the cluster's Azure Policy assignments (as aks-baseline does).
SYSTEM_NAMESPACES: list[str] = ["kube-system", "gatekeeper-system", "azure-arc", "calico-system", "tigera-operator"]


class AzurePolicy(Model):
    """Azure Policy for Kubernetes assignments at cluster scope."""

    pod_security: Literal["baseline", "restricted"] = "baseline"
    effect: Literal["Audit", "Deny"] = "Deny"  # pod security; prod: Deny, dev may Audit
    # Allowed images (the stack's registry and mcr.microsoft.com): every rendered image reference
    # points at the registry (components/render/images.py); prod must Deny, dev may Audit.
    allowed_images_effect: Literal["Audit", "Deny"] = "Audit"
    excluded_namespaces: list[Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]] = Field(
        default_factory=lambda: list(SYSTEM_NAMESPACES)
    )


class ApiServer(Model):
    authorized_ip_ranges: list[IpOrCidr] = Field(default_factory=list)
    private_cluster: bool = False


class AksSettings(Model):
    kubernetes_version: Annotated[str, Field(pattern=r"^1\.\d{2}(\.\d{1,2})?$")] = "1.33"
    tier: Literal["Free", "Standard", "Premium"] = "Standard"
    availability_zones: list[Zone] = Field(default_factory=lambda: ["1", "2", "3"])
    system_pool: SystemPool = SystemPool()
    user_pools: dict[str, UserPool] = Field(default_factory=default_user_pools)
    max_pods: int = Field(default=50, ge=50, le=250)
    network_policy: Literal["cilium", "calico", "azure"] = "cilium"
    pod_cidr: Cidr = "192.168.0.0/16"
    service_cidr: Cidr = "172.16.0.0/16"
    dns_service_ip: Annotated[str, Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}$")] = "172.16.0.10"
    upgrade_channel: Literal["patch", "stable", "rapid", "node-image"] = "stable"
    node_os_upgrade_channel: Literal["NodeImage", "SecurityPatch"] = "NodeImage"
    maintenance_window: MaintenanceWindow = MaintenanceWindow()
    api_server: ApiServer = ApiServer()
    admin_group_object_ids: list[Uuid] = Field(default_factory=list)
    log_retention_days: int = Field(default=30, ge=30, le=730)
    image_cleaner_interval_hours: int = Field(default=168, ge=24, le=2160)
    # Control-plane log categories sent to the stack's Log Analytics workspace.
    control_plane_logs: list[ControlPlaneLog] = Field(default_factory=lambda: list(DEFAULT_CONTROL_PLANE_LOGS))
    # Microsoft Defender for Containers (securityProfile.defender, bound to the workspace).
    defender: bool = True
    # Host-based encryption of OS/data disks and temp disk (needs the subscription feature
    # Microsoft.Compute/EncryptionAtHost registered: docs/hardening.md).
    encryption_at_host: bool = True
    # auto: ephemeral where the VM size's cache/temp disk holds osDiskSizeGb (vm_sizes.py), else managed.
    os_disk_type: Literal["auto", "Ephemeral", "Managed"] = "auto"
    os_disk_size_gb: int = Field(default=64, ge=30, le=2040)
    azure_policy: AzurePolicy = AzurePolicy()

    @field_validator("pod_cidr", "service_cidr")
    @classmethod
    def _valid_cidr(cls, v: str) -> str:
        return check_cidr(v)
