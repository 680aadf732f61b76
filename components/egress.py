"""Egress from the node subnet (``network.egress``):

* ``loadBalancer``: the AKS load balancer's outbound rules (dev: nothing extra to pay for; the
  egress IP is AKS-managed and may change),
* ``natGateway`` (prod default): a NAT gateway with ``network.natGatewayPublicIps`` static
  public IPs on the node subnet; AKS uses it as ``outboundType: userAssignedNATGateway`` (the
  bring-your-own-subnet variant),
* ``firewall``: Azure Firewall in ``AzureFirewallSubnet`` with a firewall policy that allows
  only what the platform needs (the AKS FQDN tag, the registries, Entra ID, Key Vault, Azure
  Monitor), and a route table sending 0.0.0.0/0 from the node subnet to the firewall;
  ``outboundType: userDefinedRouting``.

The firewall's private IP is the first usable address of AzureFirewallSubnet (Azure reserves
the first four addresses of every subnet), which lets the route table exist before the VNet and
the firewall after it without a cycle.
"""

from __future__ import annotations

import ipaddress

import pulumi
from pulumi_azure_native import containerservice, network

from .settings import StackSettings

FIREWALL_SUBNET = "AzureFirewallSubnet"  # the name Azure Firewall requires

OUTBOUND_TYPE = {
    "loadBalancer": containerservice.OutboundType.LOAD_BALANCER,
    "natGateway": containerservice.OutboundType.USER_ASSIGNED_NAT_GATEWAY,
    "firewall": containerservice.OutboundType.USER_DEFINED_ROUTING,
}

# What the platform reaches on the internet besides the AKS FQDN tag (HTTPS only).
ENTRA_ID_FQDNS = ["login.microsoftonline.com", "graph.microsoft.com"]
KEY_VAULT_FQDNS = ["*.vault.azure.net"]
AZURE_MONITOR_FQDNS = [
    "*.ods.opinsights.azure.com",
    "*.oms.opinsights.azure.com",
    "*.monitoring.azure.com",
    "*.ingest.monitor.azure.com",
    "*.handler.control.monitor.azure.com",
    "dc.services.visualstudio.com",
]
MCR_FQDNS = ["mcr.microsoft.com", "*.data.mcr.microsoft.com"]


def outbound_type(s: StackSettings) -> containerservice.OutboundType:
    return OUTBOUND_TYPE[s.network.egress]


def firewall_private_ip(s: StackSettings) -> str:
    assert s.network.firewall_subnet is not None
    return str(ipaddress.IPv4Network(s.network.firewall_subnet)[4])


def registry_fqdns(login_server: str, location: str) -> list[str]:
    """The stack's registry: its login server and its regional data endpoint."""
    name = login_server.split(".", 1)[0]
    return [login_server, f"{name}.{location}.data.azurecr.io"]


def firewall_rule_collections(s: StackSettings, registry_login_server: pulumi.Input[str]) -> list:
    """Application rules (HTTPS to FQDNs) and network rules (NTP, the API server tunnel); the
    firewall denies everything else."""
    https = [
        network.FirewallPolicyRuleApplicationProtocolArgs(
            protocol_type=network.FirewallPolicyRuleApplicationProtocolType.HTTPS, port=443
        )
    ]
    source = [s.network.aks_subnet]

    def app_rule(name: str, fqdns: pulumi.Input[list[str]]) -> network.ApplicationRuleArgs:
        return network.ApplicationRuleArgs(
            rule_type="ApplicationRule", name=name, source_addresses=source, protocols=https, target_fqdns=fqdns
        )

    registry = pulumi.Output.from_input(registry_login_server).apply(lambda ls: registry_fqdns(ls, s.location))
    return [
        network.FirewallPolicyFilterRuleCollectionArgs(
            rule_collection_type="FirewallPolicyFilterRuleCollection",
            name="platform-https",
            priority=200,
            action=network.FirewallPolicyFilterRuleCollectionActionArgs(
                type=network.FirewallPolicyFilterRuleCollectionActionType.ALLOW
            ),
            rules=[
                network.ApplicationRuleArgs(
                    rule_type="ApplicationRule",
                    name="aks",
                    source_addresses=source,
                    protocols=[
                        *https,
                        network.FirewallPolicyRuleApplicationProtocolArgs(
                            protocol_type=network.FirewallPolicyRuleApplicationProtocolType.HTTP, port=80
                        ),
                    ],
                    fqdn_tags=["AzureKubernetesService"],
                ),
                app_rule("registry", registry),
                app_rule("mcr", MCR_FQDNS),
                app_rule("entra-id", ENTRA_ID_FQDNS),
                app_rule("key-vault", KEY_VAULT_FQDNS),
                app_rule("azure-monitor", AZURE_MONITOR_FQDNS),
            ],
        ),
        network.FirewallPolicyFilterRuleCollectionArgs(
            rule_collection_type="FirewallPolicyFilterRuleCollection",
            name="platform-network",
            priority=100,
            action=network.FirewallPolicyFilterRuleCollectionActionArgs(
                type=network.FirewallPolicyFilterRuleCollectionActionType.ALLOW
            ),
            rules=[
                network.NetworkRuleArgs(
                    rule_type="NetworkRule",
                    name="ntp",
                    source_addresses=source,
                    destination_fqdns=["ntp.ubuntu.com"],
                    destination_ports=["123"],
                    ip_protocols=[network.FirewallPolicyRuleNetworkProtocol.UDP],
                ),
                network.NetworkRuleArgs(
                    rule_type="NetworkRule",
                    name="api-server-tunnel",
                    source_addresses=source,
                    destination_addresses=[f"AzureCloud.{s.location}"],
                    destination_ports=["1194", "9000", "443"],
                    ip_protocols=[
                        network.FirewallPolicyRuleNetworkProtocol.UDP,
                        network.FirewallPolicyRuleNetworkProtocol.TCP,
                    ],
                ),
            ],
        ),
    ]


def public_ip(
    name: str, s: StackSettings, rg: pulumi.Input[str], tags: dict, opts: pulumi.ResourceOptions, *, zonal: bool
):
    """A Standard static public IP; ``zonal``: in the cluster's zones (the firewall's zones),
    otherwise no-zone (the NAT gateway is a no-zone, regional resource)."""
    return network.PublicIPAddress(
        name,
        network.PublicIPAddressInitArgs(
            resource_group_name=rg,
            public_ip_address_name=s.name("pip", name),
            location=s.location,
            sku=network.PublicIPAddressSkuArgs(name=network.PublicIPAddressSkuName.STANDARD),
            public_ip_allocation_method=network.IPAllocationMethod.STATIC,
            zones=(list(s.aks.availability_zones) or None) if zonal else None,
            tags=tags,
        ),
        opts=opts,
    )


def nat_gateway(s: StackSettings, rg: pulumi.Input[str], tags: dict, opts: pulumi.ResourceOptions):
    ips = [public_ip(f"nat-{i + 1}", s, rg, tags, opts, zonal=False) for i in range(s.network.nat_gateway_public_ips)]
    return network.NatGateway(
        "nat-gateway",
        network.NatGatewayInitArgs(
            resource_group_name=rg,
            nat_gateway_name=s.name("nat"),
            location=s.location,
            sku=network.NatGatewaySkuArgs(name=network.NatGatewaySkuName.STANDARD),
            idle_timeout_in_minutes=s.network.nat_gateway_idle_timeout_minutes,
            public_ip_addresses=[network.SubResourceArgs(id=ip.id) for ip in ips],
            tags=tags,
        ),
        opts=opts,
    )


def route_table(s: StackSettings, rg: pulumi.Input[str], tags: dict, opts: pulumi.ResourceOptions):
    return network.RouteTable(
        "route-table",
        network.RouteTableInitArgs(
            resource_group_name=rg,
            route_table_name=s.name("rt", "aks"),
            location=s.location,
            disable_bgp_route_propagation=True,
            routes=[
                network.RouteArgs(
                    name="default-via-firewall",
                    address_prefix="0.0.0.0/0",
                    next_hop_type=network.RouteNextHopType.VIRTUAL_APPLIANCE,
                    next_hop_ip_address=firewall_private_ip(s),
                )
            ],
            tags=tags,
        ),
        opts=opts,
    )


def firewall(
    s: StackSettings,
    rg: pulumi.Input[str],
    vnet_id: pulumi.Input[str],
    registry_login_server: pulumi.Input[str],
    tags: dict,
    opts: pulumi.ResourceOptions,
) -> network.AzureFirewall:
    tier = s.network.firewall_sku
    policy = network.FirewallPolicy(
        "firewall-policy",
        network.FirewallPolicyArgs(
            resource_group_name=rg,
            firewall_policy_name=s.name("afwp"),
            location=s.location,
            sku=network.FirewallPolicySkuArgs(tier=tier),
            threat_intel_mode=network.AzureFirewallThreatIntelMode.DENY,
            # FQDNs in network rules need the firewall as DNS proxy
            dns_settings=network.DnsSettingsArgs(enable_proxy=True),
            tags=tags,
        ),
        opts=opts,
    )
    rules = network.FirewallPolicyRuleCollectionGroup(
        "firewall-rules",
        network.FirewallPolicyRuleCollectionGroupArgs(
            resource_group_name=rg,
            firewall_policy_name=policy.name,
            rule_collection_group_name="platform",
            priority=200,
            rule_collections=firewall_rule_collections(s, registry_login_server),
        ),
        opts=opts,
    )
    pip = public_ip("firewall", s, rg, tags, opts, zonal=True)
    return network.AzureFirewall(
        "firewall",
        network.AzureFirewallArgs(
            resource_group_name=rg,
            azure_firewall_name=s.name("afw"),
            location=s.location,
            sku=network.AzureFirewallSkuArgs(name=network.AzureFirewallSkuName.AZF_W_V_NET, tier=tier),
            firewall_policy=network.SubResourceArgs(id=policy.id),
            ip_configurations=[
                network.AzureFirewallIPConfigurationArgs(
                    name="default",
                    subnet=network.SubResourceArgs(
                        id=pulumi.Output.from_input(vnet_id).apply(lambda v: f"{v}/subnets/{FIREWALL_SUBNET}")
                    ),
                    public_ip_address=network.SubResourceArgs(id=pip.id),
                )
            ],
            zones=list(s.aks.availability_zones) or None,
            tags=tags,
        ),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[rules])),
    )
