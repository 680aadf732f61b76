"""Rules across keys and per environment: overlapping networks, zone-redundant HA, the prod
minimums, the broker topology's consistency. Each broken rule is a Problem naming its own key.

The rules are small checks (``CHECKS``), each reading as few parts of the stack as it can: when
some parts have shape errors, ``loading.validate`` still runs every check that reads only valid
parts, and counts the others as waiting."""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic.alias_generators import to_camel

from .aks import POOL_NAME_PATTERN
from .errors import Problem
from .pg_skus import KNOWN_SKUS_TEXT, max_connections
from .redis import redis_rules
from .vm_sizes import VM_LOCAL_DISKS, ephemeral_capacity_gb

POOL_NAME_RULE = "lowercase letters and digits, starting with a letter, 1-12 characters"

if TYPE_CHECKING:
    from .stack import StackSettings


def environment_rules(s: StackSettings) -> list[Problem]:
    """Rules that depend on more than one key or on the environment: every check in CHECKS."""
    return [problem for check in CHECKS for problem in check(s)]


def network_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    net = s.network
    space = ipaddress.IPv4Network(net.address_space)  # every Cidr field is an IPv4 network (check_cidr)
    subnets = {
        "network.aksSubnet": net.aks_subnet,
        "network.postgresSubnet": net.postgres_subnet,
        "network.endpointsSubnet": net.endpoints_subnet,
    }
    if s.edge.enabled:
        subnets["edge.subnet"] = s.edge.subnet  # delegated to the Application Gateway for Containers
    for key, cidr in subnets.items():
        if not ipaddress.IPv4Network(cidr).subnet_of(space):
            p.append(Problem(key=key, message=f"must lie inside network.addressSpace {net.address_space}", got=cidr))
    items = list(subnets.items())
    for i, (k1, c1) in enumerate(items):
        for k2, c2 in items[i + 1 :]:
            if ipaddress.ip_network(c1).overlaps(ipaddress.ip_network(c2)):
                p.append(Problem(key=k2, message=f"must not overlap {k1} {c1}", got=c2))
    return p


def aks_network_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    net = s.network
    space = ipaddress.IPv4Network(net.address_space)
    for key, cidr in {"aks.podCidr": s.aks.pod_cidr, "aks.serviceCidr": s.aks.service_cidr}.items():
        if ipaddress.ip_network(cidr).overlaps(space):
            p.append(Problem(key=key, message=f"must not overlap network.addressSpace {net.address_space}", got=cidr))
    return p


def aks_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    if ipaddress.ip_address(s.aks.dns_service_ip) not in ipaddress.ip_network(s.aks.service_cidr):
        p.append(
            Problem(
                key="aks.dnsServiceIp",
                message=f"must lie inside aks.serviceCidr {s.aks.service_cidr}",
                got=s.aks.dns_service_ip,
            )
        )
    p.extend(node_pool_rules(s))

    api = s.aks.api_server
    if not api.private_cluster and not api.authorized_ip_ranges:
        p.append(
            Problem(
                key="aks.apiServer",
                message="must either set privateCluster: true or list authorizedIpRanges"
                " (an API server open to the internet is not allowed)",
                got=api.model_dump(by_alias=True),
            )
        )
    for i, r in enumerate(api.authorized_ip_ranges):
        if r.startswith("0.0.0.0"):
            p.append(
                Problem(
                    key=f"aks.apiServer.authorizedIpRanges[{i}]",
                    message="must not open the API server to the whole internet",
                    got=r,
                )
            )
    return p


def node_pool_rules(s: StackSettings) -> list[Problem]:
    """At least one user pool; names AKS accepts, none taken twice (the system pool included);
    min <= max; a pool's zones among the cluster's."""
    a = s.aks
    p: list[Problem] = []
    if not a.user_pools:
        p.append(Problem(key="aks.userPools", message="must list at least one user pool", got={}))
    if not re.match(POOL_NAME_PATTERN, a.system_pool.name):
        p.append(
            Problem(
                key="aks.systemPool.name",
                message=f"must be a valid AKS pool name ({POOL_NAME_RULE})",
                got=a.system_pool.name,
            )
        )
    for name, pool in a.user_pools.items():
        key = f"aks.userPools.{name}"
        if not re.match(POOL_NAME_PATTERN, name):
            p.append(Problem(key=key, message=f"is not a valid AKS pool name ({POOL_NAME_RULE})", has_got=False))
        if name == a.system_pool.name:
            p.append(
                Problem(key=key, message=f"must not reuse the system pool's name '{a.system_pool.name}'", has_got=False)
            )
        if pool.min_count > pool.max_count:
            p.append(
                Problem(
                    key=f"{key}.minCount",
                    message=f"must not exceed {key}.maxCount ({pool.max_count})",
                    got=pool.min_count,
                )
            )
        outside = sorted(set(pool.zones or []) - set(a.availability_zones))
        if outside:
            p.append(
                Problem(
                    key=f"{key}.zones",
                    message=f"must lie within aks.availabilityZones {json.dumps(list(a.availability_zones))}",
                    got=pool.zones,
                )
            )
    return p


def key_vault_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    for i, r in enumerate(s.key_vault.allowed_ip_ranges):
        if r.startswith("0.0.0.0"):
            p.append(
                Problem(
                    key=f"keyVault.allowedIpRanges[{i}]", message="must not open Key Vault to the whole internet", got=r
                )
            )
    return p


def postgres_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    if (
        s.postgres.high_availability == "ZoneRedundant"
        and s.postgres.availability_zone == s.postgres.standby_availability_zone
    ):
        p.append(
            Problem(
                key="postgres.standbyAvailabilityZone",
                message=f"must differ from postgres.availabilityZone ({s.postgres.availability_zone})"
                " for zone-redundant HA",
                got=s.postgres.standby_availability_zone,
            )
        )
    if max_connections(s.postgres.sku_name) is None:
        # the database alerts compare active_connections to a share of it, computed at plan time
        p.append(
            Problem(
                key="postgres.skuName",
                message=f"must be a flexible server SKU whose max_connections is known ({KNOWN_SKUS_TEXT})",
                got=s.postgres.sku_name,
            )
        )
    if s.postgres.high_availability != "Disabled" and s.postgres.sku_tier == "Burstable":
        p.append(
            Problem(
                key="postgres.skuTier",
                message="must be GeneralPurpose or MemoryOptimized when high availability is on",
                got=s.postgres.sku_tier,
            )
        )
    p.extend(replica_rules(s))
    return p


def rotation_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    known = s.secret_names()
    for name in s.key_vault.rotation:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known secrets: {', '.join(known)}"
            p.append(
                Problem(key=f"keyVault.rotation.{name}", message=f"is not a generated secret{hint}", has_got=False)
            )
    return p


def prod_broker_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    if s.is_prod:
        if s.broker.replicas < 3:
            p.append(
                Problem(
                    key="broker.replicas",
                    message="must be at least 3 in prod (one broker per zone)",
                    got=s.broker.replicas,
                )
            )
        if s.broker.plaintext_listener:
            p.append(Problem(key="broker.plaintextListener", message="must be false in prod (AMQPS only)", got=True))
    return p


def prod_aks_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    if s.is_prod:
        if sorted(s.aks.availability_zones) != ["1", "2", "3"]:
            p.append(
                Problem(
                    key="aks.availabilityZones",
                    message='must be ["1", "2", "3"] in prod (three availability zones)',
                    got=s.aks.availability_zones,
                )
            )
        if s.aks.tier == "Free":
            p.append(
                Problem(key="aks.tier", message="must be 'Standard' or 'Premium' in prod (uptime SLA)", got=s.aks.tier)
            )
        if s.aks.system_pool.count < 3:
            p.append(
                Problem(
                    key="aks.systemPool.count",
                    message="must be at least 3 in prod (one node per zone)",
                    got=s.aks.system_pool.count,
                )
            )
    return p


def prod_postgres_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    # a recovery stack creates no server: the promoted one's shape is the replaced stack's
    # (recovery_rules refuses these keys there); its Entra admin group is still required
    if s.is_prod and s.recovery is None:
        if s.postgres.high_availability != "ZoneRedundant":
            p.append(
                Problem(
                    key="postgres.highAvailability",
                    message="must be 'ZoneRedundant' in prod",
                    got=s.postgres.high_availability,
                )
            )
        if not s.postgres.geo_redundant_backup:
            p.append(Problem(key="postgres.geoRedundantBackup", message="must be true in prod", got=False))
        if s.postgres.password_auth:
            p.append(
                Problem(
                    key="postgres.passwordAuth",
                    message="must be false in prod (Entra ID sign-in only; the admin password is break-glass)",
                    got=True,
                )
            )
        if s.postgres.backup_retention_days < 30:
            p.append(
                Problem(
                    key="postgres.backupRetentionDays",
                    message="must be at least 30 in prod",
                    got=s.postgres.backup_retention_days,
                )
            )
    if s.is_prod and s.postgres.entra_admin_group is None:
        p.append(
            Problem(
                key="postgres.entraAdminGroup",
                message="is required in prod (the Microsoft Entra group that administers PostgreSQL)",
                has_got=False,
            )
        )
    return p


def recovery_rules(s: StackSettings) -> list[Problem]:
    """A recovery stack (``recovery``) creates no PostgreSQL server: a postgres key describing one
    would be ignored, so it is refused; its network must not overlap the promoted server's subnet
    (the VNets are peered)."""
    from .recovery import RECOVERY_POSTGRES_KEYS

    rec = s.recovery
    if rec is None:
        return []
    p: list[Problem] = []
    allowed = ", ".join(f"postgres.{to_camel(k)}" for k in RECOVERY_POSTGRES_KEYS)
    for field in sorted(s.postgres.model_fields_set - set(RECOVERY_POSTGRES_KEYS)):
        p.append(
            Problem(
                key=f"postgres.{to_camel(field)}",
                message=f"does not apply to a recovery stack: its server is the promoted geo-replica of stack"
                f" '{rec.replaces}', shaped by that stack's file (allowed here: {allowed})",
                got=getattr(s.postgres, field).model_dump(by_alias=True)
                if hasattr(getattr(s.postgres, field), "model_dump")
                else getattr(s.postgres, field),
            )
        )
    subnet = ipaddress.IPv4Network(rec.postgres_subnet)
    for other_key, cidr in (
        ("network.addressSpace", s.network.address_space),
        ("aks.podCidr", s.aks.pod_cidr),
        ("aks.serviceCidr", s.aks.service_cidr),
    ):
        if subnet.overlaps(ipaddress.ip_network(cidr)):
            p.append(
                Problem(
                    key="recovery.postgresSubnet",
                    message=f"must not overlap {other_key} {cidr} (this stack's VNet is peered with the DR VNet)",
                    got=rec.postgres_subnet,
                )
            )
    return p


# Azure's region pairs for the regions the stacks may use (learn.microsoft.com, "Azure region
# pairs"); a DR region elsewhere is refused with the pair named, a location not listed here is
# not checked against a pair (it still must differ from the primary's).
REGION_PAIRS = {
    "westeurope": "northeurope",
    "northeurope": "westeurope",
    "uksouth": "ukwest",
    "ukwest": "uksouth",
    "francecentral": "francesouth",
    "germanywestcentral": "germanynorth",
    "swedencentral": "swedensouth",
    "eastus": "westus",
    "westus": "eastus",
    "eastus2": "centralus",
    "centralus": "eastus2",
}


def _parity(s: StackSettings, key: str, sku: str | None, storage: int | None, params) -> list[Problem]:
    """A replica's SKU and storage equal the primary's (a switchover needs it), its shared-memory
    parameters at least the primary's (a hot standby stops replaying below them)."""
    pg = s.postgres
    p: list[Problem] = []
    if sku is not None and sku != pg.sku_name:
        p.append(
            Problem(
                key=f"{key}.skuName",
                message=f"must equal postgres.skuName ({pg.sku_name}): promotion to primary needs the same compute",
                got=sku,
            )
        )
    if storage is not None and storage != pg.storage_size_gb:
        p.append(
            Problem(
                key=f"{key}.storageSizeGb",
                message=f"must equal postgres.storageSizeGb ({pg.storage_size_gb}): promotion to primary needs the"
                " same storage",
                got=storage,
            )
        )
    primary = pg.parameters.values()
    for name, value in params.values().items():
        camel = to_camel(name)
        if name not in primary:
            p.append(
                Problem(
                    key=f"{key}.parameters.{camel}",
                    message=f"needs postgres.parameters.{camel} set too: a replica's {name} must be at least the"
                    " primary's, which is otherwise Azure's SKU default and unknown here",
                    got=value,
                )
            )
        elif value < primary[name]:
            p.append(
                Problem(
                    key=f"{key}.parameters.{camel}",
                    message=f"must be at least postgres.parameters.{camel} ({primary[name]}): a hot standby with a"
                    f" smaller {name} stops replaying WAL",
                    got=value,
                )
            )
    return p


def replica_rules(s: StackSettings) -> list[Problem]:
    """Read replicas and the DR geo-replica, read from postgres alone (part of postgres_rules): a
    tier that has replicas, parity with the primary."""
    pg = s.postgres
    rr = pg.read_replicas
    dr = pg.disaster_recovery
    p: list[Problem] = []
    if (rr.count or dr is not None) and pg.sku_tier == "Burstable":
        key = "postgres.readReplicas.count" if rr.count else "postgres.disasterRecovery"
        p.append(
            Problem(
                key=key,
                message="needs postgres.skuTier GeneralPurpose or MemoryOptimized (Burstable servers cannot have"
                " read replicas)",
                got=rr.count if rr.count else dr.region if dr else None,
            )
        )
    if rr.count:
        p += _parity(s, "postgres.readReplicas", rr.sku_name, rr.storage_size_gb, rr.parameters)
        if not rr.storage_auto_grow:
            p.append(
                Problem(
                    key="postgres.readReplicas.storageAutoGrow",
                    message="must be true: the primary grows its storage automatically, and a replica of a"
                    " primary with autogrow must have it too",
                    got=False,
                )
            )
        if len(rr.availability_zones) > rr.count:
            p.append(
                Problem(
                    key="postgres.readReplicas.availabilityZones",
                    message=f"must list at most postgres.readReplicas.count ({rr.count}) zones",
                    got=rr.availability_zones,
                )
            )
    elif rr.sku_name or rr.storage_size_gb or rr.parameters.values() or rr.availability_zones:
        p.append(
            Problem(
                key="postgres.readReplicas.count",
                message="must be at least 1 when other postgres.readReplicas settings are given (they would"
                " otherwise be ignored)",
                got=0,
            )
        )
    if dr is not None:
        p += _parity(s, "postgres.disasterRecovery", dr.sku_name, dr.storage_size_gb, dr.parameters)
        if not ipaddress.IPv4Network(dr.postgres_subnet).subnet_of(ipaddress.IPv4Network(dr.address_space)):
            p.append(
                Problem(
                    key="postgres.disasterRecovery.postgresSubnet",
                    message=f"must lie inside postgres.disasterRecovery.addressSpace {dr.address_space}",
                    got=dr.postgres_subnet,
                )
            )
    return p


def disaster_recovery_rules(s: StackSettings) -> list[Problem]:
    """postgres.disasterRecovery against the rest of the stack: the Azure pair of the location,
    a network that does not overlap the primary's (they are peered). Reads nothing else without it."""
    dr = s.postgres.disaster_recovery
    if dr is None:
        return []
    p: list[Problem] = []
    if dr.region == s.location:
        p.append(
            Problem(
                key="postgres.disasterRecovery.region",
                message=f"must be another region than location ({s.location})",
                got=dr.region,
            )
        )
    elif s.location in REGION_PAIRS and dr.region != REGION_PAIRS[s.location]:
        p.append(
            Problem(
                key="postgres.disasterRecovery.region",
                message=f"must be the Azure pair of location {s.location} ({REGION_PAIRS[s.location]})",
                got=dr.region,
            )
        )
    space = ipaddress.IPv4Network(dr.address_space)
    for other_key, cidr in (
        ("network.addressSpace", s.network.address_space),
        ("aks.podCidr", s.aks.pod_cidr),
        ("aks.serviceCidr", s.aks.service_cidr),
    ):
        if space.overlaps(ipaddress.ip_network(cidr)):
            p.append(
                Problem(
                    key="postgres.disasterRecovery.addressSpace",
                    message=f"must not overlap {other_key} {cidr} (the two VNets are peered)",
                    got=dr.address_space,
                )
            )
    if dr.recovery_aks_subnet is not None:
        rec = ipaddress.IPv4Network(dr.recovery_aks_subnet)
        for other_key, cidr in (
            ("network.addressSpace", s.network.address_space),
            ("postgres.disasterRecovery.addressSpace", dr.address_space),
        ):
            if rec.overlaps(ipaddress.ip_network(cidr)):
                p.append(
                    Problem(
                        key="postgres.disasterRecovery.recoveryAksSubnet",
                        message=f"must not overlap {other_key} {cidr} (the recovery stack's VNet is peered"
                        " with the DR VNet)",
                        got=dr.recovery_aks_subnet,
                    )
                )
    return p


# Control-plane logs every environment keeps: who changed what (admin audit) and who signed in.
REQUIRED_CONTROL_PLANE_LOGS = ("kube-audit-admin", "guard")


def egress_rules(s: StackSettings) -> list[Problem]:
    """network.egress and the firewall subnet: present when needed, inside the address space,
    clear of the other subnets, big enough for Azure Firewall (/26)."""
    net = s.network
    p: list[Problem] = []
    if net.egress == "firewall" and net.firewall_subnet is None:
        p.append(
            Problem(
                key="network.firewallSubnet",
                message="is required when network.egress is 'firewall' (the AzureFirewallSubnet, /26 or larger)",
                has_got=False,
            )
        )
    if net.firewall_subnet is not None:
        fw = ipaddress.IPv4Network(net.firewall_subnet)
        if net.egress != "firewall":
            p.append(
                Problem(
                    key="network.firewallSubnet",
                    message=f"is only used when network.egress is 'firewall' (it is '{net.egress}')",
                    got=net.firewall_subnet,
                )
            )
        if not fw.subnet_of(ipaddress.IPv4Network(net.address_space)):
            p.append(
                Problem(
                    key="network.firewallSubnet",
                    message=f"must lie inside network.addressSpace {net.address_space}",
                    got=net.firewall_subnet,
                )
            )
        if fw.prefixlen > 26:
            p.append(
                Problem(
                    key="network.firewallSubnet",
                    message="must be /26 or larger (Azure Firewall's AzureFirewallSubnet)",
                    got=net.firewall_subnet,
                )
            )
        others = {
            "network.aksSubnet": net.aks_subnet,
            "network.postgresSubnet": net.postgres_subnet,
            "network.endpointsSubnet": net.endpoints_subnet,
        }
        if s.edge.enabled:
            others["edge.subnet"] = s.edge.subnet  # the edge's delegated subnet shares the VNet
        for key, cidr in others.items():
            if fw.overlaps(ipaddress.IPv4Network(cidr)):
                p.append(Problem(key="network.firewallSubnet", message=f"must not overlap {key} {cidr}", got=str(fw)))
    if net.egress == "firewall" and s.registry.sku != "Premium":
        p.append(
            Problem(
                key="registry.sku",
                message="must be 'Premium' when network.egress is 'firewall' (the firewall allows the registry's"
                " dedicated data endpoint, a Premium feature)",
                got=s.registry.sku,
            )
        )
    if s.is_prod and net.egress == "loadBalancer":
        p.append(
            Problem(
                key="network.egress",
                message="must be 'natGateway' or 'firewall' in prod (static, known egress IPs)",
                got=net.egress,
            )
        )
    return p


def hardening_rules(s: StackSettings) -> list[Problem]:
    """Audit logs, node OS disks, Defender, Azure Policy and budget: what every environment
    needs and what prod may not switch off."""
    a = s.aks
    p: list[Problem] = []
    missing = [c for c in REQUIRED_CONTROL_PLANE_LOGS if c not in a.control_plane_logs]
    if missing:
        p.append(
            Problem(
                key="aks.controlPlaneLogs",
                message=f"must include {', '.join(missing)} (the audit trail of changes and sign-ins)",
                got=list(a.control_plane_logs),
            )
        )
    if a.os_disk_type == "Ephemeral":
        pools = {"aks.systemPool.vmSize": a.system_pool.vm_size}
        pools |= {f"aks.userPools.{name}.vmSize": pool.vm_size for name, pool in a.user_pools.items()}
        for key, size in pools.items():
            capacity = ephemeral_capacity_gb(size)
            if capacity is None:
                p.append(
                    Problem(
                        key=key,
                        message="has unknown local disks: aks.osDiskType Ephemeral needs one of "
                        + ", ".join(sorted(VM_LOCAL_DISKS)),
                        got=size,
                    )
                )
            elif capacity < a.os_disk_size_gb:
                p.append(
                    Problem(
                        key=key,
                        message=f"cannot hold an ephemeral OS disk of aks.osDiskSizeGb {a.os_disk_size_gb} GiB"
                        f" (its cache/temp disk holds {capacity} GiB): lower aks.osDiskSizeGb or use osDiskType auto",
                        got=size,
                    )
                )
    r = s.registry
    if r.allowed_ip_ranges and r.sku != "Premium":
        p.append(
            Problem(
                key="registry.allowedIpRanges",
                message="needs registry.sku Premium (network rules are a Premium feature)",
                got=list(r.allowed_ip_ranges),
            )
        )
    for i, ip in enumerate(r.allowed_ip_ranges):
        if ip.startswith("0.0.0.0"):
            p.append(
                Problem(
                    key=f"registry.allowedIpRanges[{i}]",
                    message="must not open the registry to the whole internet",
                    got=ip,
                )
            )
    if s.is_prod:
        if r.sku != "Premium":
            p.append(Problem(key="registry.sku", message="must be 'Premium' in prod (private endpoint)", got=r.sku))
        for key, value in {
            "aks.defender": a.defender,
            "aks.encryptionAtHost": a.encryption_at_host,
            "postgres.defender": s.postgres.defender,
        }.items():
            if not value:
                p.append(Problem(key=key, message="must be true in prod", got=value))
        if a.azure_policy.effect != "Deny":
            p.append(Problem(key="aks.azurePolicy.effect", message="must be 'Deny' in prod", got=a.azure_policy.effect))
        if a.azure_policy.allowed_images_effect != "Deny":  # every rendered image names the registry
            p.append(
                Problem(
                    key="aks.azurePolicy.allowedImagesEffect",
                    message="must be 'Deny' in prod",
                    got=a.azure_policy.allowed_images_effect,
                )
            )
        if not s.budget.contact_emails:
            p.append(Problem(key="budget.contactEmails", message="must list at least one address in prod", got=[]))
        if s.budget.oncall_webhook_url is None:
            p.append(
                Problem(
                    key="budget.oncallWebhookUrl",
                    message="is required in prod (a secure value: pulumi config set --secret --path ...)",
                    has_got=False,
                )
            )
    return p


def _days(duration: str) -> float:
    return int(duration[:-1]) / {"s": 86400, "m": 1440, "h": 24, "d": 1}[duration[-1]]


def observability_rules(s: StackSettings) -> list[Problem]:
    o = s.observability
    p: list[Problem] = []
    names = [slo.name for slo in o.slos]
    for i, slo in enumerate(o.slos):
        if names.count(slo.name) > 1 and names.index(slo.name) != i:
            p.append(Problem(key=f"observability.slos[{i}].name", message="must be unique", got=slo.name))
        if slo.kind == "latency" and slo.latency_threshold_seconds is None:
            p.append(
                Problem(
                    key=f"observability.slos[{i}].latencyThresholdSeconds",
                    message="is required for a latency SLO",
                    has_got=False,
                )
            )
    if s.is_prod:
        if _days(o.prometheus.retention) < 30:
            p.append(
                Problem(
                    key="observability.prometheus.retention",
                    message="must be at least 30d in prod",
                    got=o.prometheus.retention,
                )
            )
        if o.prometheus.replicas < 2:
            p.append(
                Problem(
                    key="observability.prometheus.replicas",
                    message="must be at least 2 in prod (alerts keep being evaluated while a node drains)",
                    got=o.prometheus.replicas,
                )
            )
        if o.alertmanager.replicas < 2:
            p.append(
                Problem(
                    key="observability.alertmanager.replicas",
                    message="must be at least 2 in prod",
                    got=o.alertmanager.replicas,
                )
            )
        for key, replicas in (
            ("gatewayReplicas", o.collector.gateway_replicas),
            ("samplerReplicas", o.collector.sampler_replicas),
        ):
            if replicas < 2:
                p.append(
                    Problem(
                        key=f"observability.collector.{key}",
                        message="must be at least 2 in prod (tracing keeps serving while a node drains)",
                        got=replicas,
                    )
                )
        if o.jaeger.storage != "badger":
            p.append(
                Problem(
                    key="observability.jaeger.storage",
                    message="must be 'badger' (persistent) in prod",
                    got=o.jaeger.storage,
                )
            )
        for key in ("pagerduty_routing_key", "slack_webhook_url", "deadmans_switch_url"):
            if getattr(o.alerting, key) is None:
                p.append(
                    Problem(
                        key=f"observability.alerting.{to_camel(key)}",
                        message="is required in prod (a secure value: pulumi config set --secret --path ...)",
                        has_got=False,
                    )
                )
        # Azure Monitor's database alerts page and post through these (docs/monitoring.md)
        for key in ("pagerduty_azure_integration_key", "slack_channel_email"):
            if getattr(o.alerting, key) is None:
                p.append(
                    Problem(
                        key=f"observability.alerting.{to_camel(key)}",
                        message="is required in prod: the database alerts in Azure Monitor page and post through it"
                        " (a secure value: pulumi config set --secret --path ...)",
                        has_got=False,
                    )
                )
    return p


def broker_rules(s: StackSettings) -> list[Problem]:
    b, t = s.broker, s.broker.topology
    p: list[Problem] = []
    if b.replicas % 2 == 0:
        p.append(Problem(key="broker.replicas", message="must be odd (quorum queues need a majority)", got=b.replicas))
    if b.backend == "cloudamqp" and b.cloudamqp is None:
        p.append(
            Problem(key="broker.cloudamqp", message="is required when broker.backend is 'cloudamqp'", has_got=False)
        )
    if t.exchange == t.dead_letter_exchange:
        p.append(
            Problem(
                key="broker.topology.deadLetterExchange",
                message="must differ from broker.topology.exchange",
                got=t.dead_letter_exchange,
            )
        )
    if not s.services:
        p.append(Problem(key="services", message="must list at least one service", got={}))
    owners: dict[str, str] = {}
    for svc, cfg in s.services.items():
        base = f"services.{svc}"
        queue = cfg.queue or f"{svc}.events"
        if queue.startswith("dlq.") or queue in (t.exchange, t.dead_letter_exchange):
            p.append(
                Problem(
                    key=f"{base}.queue",
                    message="must not use the reserved dlq.* names or an exchange's name",
                    got=queue,
                )
            )
        if cfg.bindings:
            if queue in owners:
                p.append(
                    Problem(
                        key=f"{base}.queue",
                        message=f"must not claim queue '{queue}', which service '{owners[queue]}' already uses",
                        got=queue,
                    )
                )
            owners.setdefault(queue, svc)
        elif cfg.dead_letter_queue or cfg.queue:
            p.append(
                Problem(
                    key=f"{base}.bindings",
                    message="must list at least one binding pattern when the service has a queue",
                    got=[],
                )
            )
        dupes = sorted({x for x in cfg.bindings if cfg.bindings.count(x) > 1})
        if dupes:
            p.append(
                Problem(
                    key=f"{base}.bindings", message=f"must not repeat a pattern ({', '.join(dupes)})", got=cfg.bindings
                )
            )
        dlx = cfg.overrides.dead_letter_exchange
        if dlx is not None and dlx != t.dead_letter_exchange:
            p.append(
                Problem(
                    key=f"{base}.overrides.deadLetterExchange",
                    message=f"must name the declared dead-letter exchange '{t.dead_letter_exchange}'",
                    got=dlx,
                )
            )
    return p


def service_rules(s: StackSettings) -> list[Problem]:
    """A service's landing zone: its name, its scaling and its quota must be consistent."""
    from .services import RESERVED_SERVICE_NAMES, cpu_millis, memory_mebibytes

    p: list[Problem] = []
    platform = {s.broker.namespace, s.broker.monitoring_namespace, s.observability.namespace}
    for svc, cfg in s.services.items():
        base = f"services.{svc}"
        # "<x>-url" would take the Key Vault name of service <x>'s connection string
        if svc in RESERVED_SERVICE_NAMES or svc in platform or svc.startswith("kube-") or svc.endswith("-url"):
            p.append(
                Problem(
                    key=base,
                    message="is a reserved name (a platform namespace or a platform secret's name); rename the service",
                    has_got=False,
                )
            )
        r = cfg.resources
        for default, total, key, unit in (
            (r.default_cpu_request, r.requests_cpu, "defaultCpuRequest", cpu_millis),
            (r.default_memory_request, r.requests_memory, "defaultMemoryRequest", memory_mebibytes),
            (r.default_cpu_limit, r.limits_cpu, "defaultCpuLimit", cpu_millis),
            (r.default_memory_limit, r.limits_memory, "defaultMemoryLimit", memory_mebibytes),
            (r.default_cpu_request, r.default_cpu_limit, "defaultCpuRequest", cpu_millis),
            (r.default_memory_request, r.default_memory_limit, "defaultMemoryRequest", memory_mebibytes),
        ):
            if unit(default) > unit(total):
                p.append(Problem(key=f"{base}.resources.{key}", message=f"must not exceed {total}", got=default))
        sc = cfg.scaling
        if sc is None:
            continue
        if not cfg.bindings:
            p.append(
                Problem(
                    key=f"{base}.scaling",
                    message="needs a queue to scale on: list the service's bindings",
                    has_got=False,
                )
            )
        if sc.min_replicas > sc.max_replicas:
            p.append(
                Problem(
                    key=f"{base}.scaling.minReplicas",
                    message=f"must not exceed {base}.scaling.maxReplicas ({sc.max_replicas})",
                    got=sc.min_replicas,
                )
            )
        if sc.max_replicas > r.pods:
            p.append(
                Problem(
                    key=f"{base}.scaling.maxReplicas",
                    message=f"must not exceed {base}.resources.pods ({r.pods}), the namespace's pod quota",
                    got=sc.max_replicas,
                )
            )
    return p


def edge_rules(s: StackSettings) -> list[Problem]:
    """The HTTPS edge: what it needs when on, Grafana's hostname inside the zone, sign-in, and
    prod's requirements (edge on, WAF in prevention, production certificates, Entra sign-in only)."""
    e, g = s.edge, s.observability.grafana
    p: list[Problem] = []
    if e.enabled:
        if ipaddress.IPv4Network(e.subnet).prefixlen > 24:
            p.append(
                Problem(
                    key="edge.subnet",
                    message="must be a /24 or larger (Application Gateway for Containers' delegated subnet)",
                    got=e.subnet,
                )
            )
        if e.dns_zone is None:
            p.append(Problem(key="edge.dnsZone", message="is required when edge.enabled is true", has_got=False))
        if e.acme_email is None:
            p.append(
                Problem(
                    key="edge.acmeEmail",
                    message="is required when edge.enabled is true (the Let's Encrypt account's contact)",
                    has_got=False,
                )
            )
        if g.hostname is None:
            p.append(
                Problem(
                    key="observability.grafana.hostname",
                    message="is required when edge.enabled is true (the edge serves Grafana)",
                    has_got=False,
                )
            )
        elif e.dns_zone is not None and not (
            g.hostname == e.dns_zone.name or g.hostname.endswith(f".{e.dns_zone.name}")
        ):
            p.append(
                Problem(
                    key="observability.grafana.hostname",
                    message=f"must lie inside edge.dnsZone.name {e.dns_zone.name}",
                    got=g.hostname,
                )
            )
    elif g.hostname is not None:
        p.append(
            Problem(
                key="observability.grafana.hostname",
                message="needs edge.enabled: true (nothing else serves Grafana outside the cluster)",
                got=g.hostname,
            )
        )
    if g.sign_in is not None:
        if g.hostname is None:
            p.append(
                Problem(
                    key="observability.grafana.signIn",
                    message="needs observability.grafana.hostname (Entra redirects to https://<hostname>/login/azuread)",
                    has_got=False,
                )
            )
        if g.sign_in.client_secret is None:
            p.append(
                Problem(
                    key="observability.grafana.signIn.clientSecret",
                    message="is required (a secure value: pulumi config set --secret --path ...)",
                    has_got=False,
                )
            )
    if s.is_prod:
        if not e.enabled:
            p.append(Problem(key="edge.enabled", message="must be true in prod (HTTPS edge for Grafana)", got=False))
        if e.waf.mode != "Prevention":
            p.append(Problem(key="edge.waf.mode", message="must be 'Prevention' in prod", got=e.waf.mode))
        if e.acme_server != "production":
            p.append(
                Problem(
                    key="edge.acmeServer",
                    message="must be 'production' in prod (staging certificates are not trusted by browsers)",
                    got=e.acme_server,
                )
            )
        if g.sign_in is None:
            p.append(
                Problem(
                    key="observability.grafana.signIn",
                    message="is required in prod (Entra ID sign-in)",
                    has_got=False,
                )
            )
        elif g.sign_in.local_admin_login:
            p.append(
                Problem(
                    key="observability.grafana.signIn.localAdminLogin",
                    message="must be false in prod (Entra sign-in only; the admin password is break-glass)",
                    got=True,
                )
            )
    return p


# The load test's own names on the broker (components/render/broker.py grants its user exactly these).
LOAD_TEST_USER = "perf-test"
LOAD_TEST_PERMISSION = r"^perf-test(-[0-9]+)?$"  # its exchange perf-test and queues perf-test-<n>
LOAD_TEST_NAMES = re.compile(LOAD_TEST_PERMISSION)


def load_test_rules(s: StackSettings) -> list[Problem]:
    b, lt = s.broker, s.broker.load_test
    p: list[Problem] = []
    if b.backend == "in-cluster" and LOAD_TEST_USER in s.services:
        p.append(
            Problem(
                key=f"services.{LOAD_TEST_USER}",
                message=f"is reserved for the load test's user (Key Vault secret broker-{LOAD_TEST_USER})",
                has_got=False,
            )
        )
    t = b.topology
    names = {"broker.topology.exchange": t.exchange, "broker.topology.deadLetterExchange": t.dead_letter_exchange}
    names |= {f"services.{svc}.queue": cfg.queue for svc, cfg in s.services.items() if cfg.queue}
    for key, name in names.items():
        if LOAD_TEST_NAMES.match(name):
            p.append(
                Problem(key=key, message="must not use the load test's names (perf-test, perf-test-<n>)", got=name)
            )
    if not lt.enabled:
        return p
    if b.backend != "in-cluster":
        p.append(
            Problem(
                key="broker.loadTest.enabled",
                message="must be false when broker.backend is not 'in-cluster' (the load test runs in the cluster)",
                got=True,
            )
        )
    taken = {"broker.namespace": b.namespace, "broker.monitoringNamespace": b.monitoring_namespace}
    taken |= {f"the service '{svc}'": svc for svc in s.services}
    for what, ns in taken.items():
        if lt.namespace == ns:
            p.append(Problem(key="broker.loadTest.namespace", message=f"must differ from {what}'s namespace", got=ns))
    for key, count in (("producers", lt.producers), ("consumers", lt.consumers)):
        if lt.queues > count:
            p.append(
                Problem(
                    key="broker.loadTest.queues",
                    message=f"must not exceed broker.loadTest.{key} ({count}): every queue needs one",
                    got=lt.queues,
                )
            )
    return p


def prod_rollouts_rules(s: StackSettings) -> list[Problem]:
    r = s.rollouts
    p: list[Problem] = []
    if s.is_prod and r.enabled and r.controller.replicas < 2:
        p.append(
            Problem(
                key="rollouts.controller.replicas",
                message="must be at least 2 in prod (a node drain must not stop every rollout; a PDB keeps one)",
                got=r.controller.replicas,
            )
        )
    return p


def image_rules(s: StackSettings) -> list[Problem]:
    """The services' images (registry.images): prod admits signed images only (Deny); a
    repository override needs push identities to exist; signing runners must reach the vault."""
    p: list[Problem] = []
    im = s.registry.images
    if s.is_prod and im.signing.admission_effect != "Deny":
        p.append(
            Problem(
                key="registry.images.signing.admissionEffect",
                message="must be 'Deny' in prod (only signed images run)",
                got=im.signing.admission_effect,
            )
        )
    if im.github_owner is None:
        for svc, cfg in s.services.items():
            if cfg.repository is not None:
                p.append(
                    Problem(
                        key=f"services.{svc}.repository",
                        message="needs registry.images.githubOwner (no push identity exists without it)",
                        got=cfg.repository,
                    )
                )
        return p
    allowed = [ipaddress.IPv4Network(r, strict=False) for r in s.key_vault.allowed_ip_ranges]
    if not im.runner_ip_ranges:
        p.append(
            Problem(
                key="registry.images.runnerIpRanges",
                message="must list the signing runners' egress ranges when registry.images.githubOwner is set"
                " (the push job signs with the Key Vault certificate through the vault's firewall)",
                got=[],
            )
        )
    for i, r in enumerate(im.runner_ip_ranges):
        net = ipaddress.IPv4Network(r, strict=False)
        if net.prefixlen < 16:
            p.append(Problem(key=f"registry.images.runnerIpRanges[{i}]", message="must be /16 or narrower", got=r))
        elif not any(net.subnet_of(a) for a in allowed):
            p.append(
                Problem(
                    key=f"registry.images.runnerIpRanges[{i}]",
                    message=f"must lie inside keyVault.allowedIpRanges {[str(a) for a in allowed]}",
                    got=r,
                )
            )
    return p


# Every check, in the order its lines are reported. A check reads the parts of the stack it needs
# (network, aks, ..., environment); ``loading.validate`` runs those whose parts all have a valid shape.
CHECKS: list[Callable[[StackSettings], list[Problem]]] = [
    network_rules,
    aks_network_rules,
    aks_rules,
    key_vault_rules,
    postgres_rules,
    rotation_rules,
    broker_rules,
    service_rules,
    load_test_rules,
    observability_rules,
    edge_rules,
    egress_rules,
    hardening_rules,
    prod_broker_rules,
    prod_aks_rules,
    prod_postgres_rules,
    prod_rollouts_rules,
    redis_rules,
    disaster_recovery_rules,
    recovery_rules,
    image_rules,
]
