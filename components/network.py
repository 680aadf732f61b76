"""Network: resource group, VNet with three subnets, NSGs and private DNS zones."""

from __future__ import annotations

import pulumi
from pulumi_azure_native import network, privatedns, resources

from . import egress
from .settings import StackSettings

POSTGRES_DELEGATION = "Microsoft.DBforPostgreSQL/flexibleServers"
EDGE_DELEGATION = "Microsoft.ServiceNetworking/trafficControllers"  # Application Gateway for Containers
EDGE_SUBNET = "snet-edge-agc"
KEYVAULT_ZONE = "privatelink.vaultcore.azure.net"
REGISTRY_ZONE = "privatelink.azurecr.io"


def postgres_zone_name(s: StackSettings) -> str:
    """Flexible servers with VNet integration need a zone ending in .postgres.database.azure.com."""
    return f"{s.name('pg')}.private.postgres.database.azure.com"


def nsg_rules(s: StackSettings, subnet: str) -> list[network.SecurityRuleArgs]:
    """Explicit rules per subnet on top of Azure's defaults (which allow VNet-internal traffic)."""
    vnet = s.network.address_space
    if subnet == "postgres":
        return [
            network.SecurityRuleArgs(
                name="allow-postgres-from-aks",
                priority=100,
                direction="Inbound",
                access="Allow",
                protocol="Tcp",
                source_address_prefix=s.network.aks_subnet,
                source_port_range="*",
                destination_address_prefix=s.network.postgres_subnet,
                destination_port_range="5432",
            ),
            network.SecurityRuleArgs(
                # Zone-redundant HA replicates between primary and standby inside the subnet.
                name="allow-intra-subnet",
                priority=110,
                direction="Inbound",
                access="Allow",
                protocol="*",
                source_address_prefix=s.network.postgres_subnet,
                source_port_range="*",
                destination_address_prefix=s.network.postgres_subnet,
                destination_port_range="*",
            ),
            *dr_replication_rules(s),
            network.SecurityRuleArgs(
                name="deny-vnet-inbound",
                priority=4000,
                direction="Inbound",
                access="Deny",
                protocol="*",
                source_address_prefix="VirtualNetwork",
                source_port_range="*",
                destination_address_prefix="*",
                destination_port_range="*",
            ),
        ]
    if subnet == "endpoints":
        return [
            network.SecurityRuleArgs(
                name="allow-https-from-vnet",
                priority=100,
                direction="Inbound",
                access="Allow",
                protocol="Tcp",
                source_address_prefix=vnet,
                source_port_range="*",
                destination_address_prefix=s.network.endpoints_subnet,
                destination_port_range="443",
            ),
            *redis_nsg_rules(s),
            network.SecurityRuleArgs(
                name="deny-vnet-inbound",
                priority=4000,
                direction="Inbound",
                access="Deny",
                protocol="*",
                source_address_prefix="VirtualNetwork",
                source_port_range="*",
                destination_address_prefix="*",
                destination_port_range="*",
            ),
        ]
    # AKS nodes: the load balancer and intra-VNet traffic are allowed by default rules;
    # nothing is exposed from the internet unless a Service of type LoadBalancer asks for it.
    return []


def redis_nsg_rules(s: StackSettings) -> list[network.SecurityRuleArgs]:
    """Azure Managed Redis's private endpoint: its TLS port from the node subnet only (pods leave
    the nodes with the node's address under CNI overlay), when the stack has Redis."""
    if not s.redis_enabled:
        return []
    return [
        network.SecurityRuleArgs(
            name="allow-redis-from-aks",
            priority=110,
            direction="Inbound",
            access="Allow",
            protocol="Tcp",
            source_address_prefix=s.network.aks_subnet,
            source_port_range="*",
            destination_address_prefix=s.network.endpoints_subnet,
            destination_port_range="10000",
        )
    ]


def dr_replication_rules(s: StackSettings) -> list[network.SecurityRuleArgs]:
    """With a DR geo-replica (postgres.disasterRecovery): PostgreSQL from the DR region's
    delegated subnet. Replication needs 5432 both ways: a promotion reverses the direction."""
    dr = s.postgres.disaster_recovery
    if dr is None:
        return []
    return [
        network.SecurityRuleArgs(
            name="allow-postgres-from-dr-replica",
            priority=120,
            direction="Inbound",
            access="Allow",
            protocol="Tcp",
            source_address_prefix=dr.postgres_subnet,
            source_port_range="*",
            destination_address_prefix=s.network.postgres_subnet,
            destination_port_range="5432",
        )
    ]


def edge_subnets(s: StackSettings) -> list[network.SubnetArgs]:
    """The subnet delegated to Application Gateway for Containers (its association's subnet)."""
    if not s.edge.enabled:
        return []
    return [
        network.SubnetArgs(
            name=EDGE_SUBNET,
            address_prefix=s.edge.subnet,
            delegations=[network.DelegationArgs(name="agc", service_name=EDGE_DELEGATION)],
            default_outbound_access=False,
        )
    ]


class Network(pulumi.ComponentResource):
    resource_group_name: pulumi.Output[str]
    vnet_id: pulumi.Output[str]
    aks_subnet_id: pulumi.Output[str]
    postgres_subnet_id: pulumi.Output[str]
    endpoints_subnet_id: pulumi.Output[str]
    edge_subnet_id: pulumi.Output[str] | None  # set when edge.enabled
    postgres_dns_zone_id: pulumi.Output[str]
    keyvault_dns_zone_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        opts: pulumi.ResourceOptions | None = None,
        registry_login_server: pulumi.Input[str] = "",
    ):
        """``registry_login_server``: the stack's registry, allowed through the firewall (egress: firewall)."""
        super().__init__("event-backbone:platform:Network", name, None, opts)
        s = settings
        child = pulumi.ResourceOptions(parent=self)
        tags = {**s.tags, "environment": s.environment, "managedBy": "pulumi"}

        rg = resources.ResourceGroup(
            "rg",
            resources.ResourceGroupArgs(resource_group_name=s.name("rg"), location=s.location, tags=tags),
            opts=pulumi.ResourceOptions(parent=self, protect=s.protect),
        )
        self.resource_group_name = rg.name
        self.resource_group_id = rg.id

        nsgs = {}
        for subnet in ("aks", "postgres", "endpoints"):
            nsgs[subnet] = network.NetworkSecurityGroup(
                f"nsg-{subnet}",
                network.NetworkSecurityGroupInitArgs(
                    resource_group_name=rg.name,
                    network_security_group_name=s.name("nsg", subnet),
                    location=s.location,
                    security_rules=nsg_rules(s, subnet),
                    tags=tags,
                ),
                opts=child,
            )

        # Egress of the node subnet (components/egress.py): NAT gateway or a route to the firewall.
        nat = egress.nat_gateway(s, rg.name, tags, child) if s.network.egress == "natGateway" else None
        routes = egress.route_table(s, rg.name, tags, child) if s.network.egress == "firewall" else None
        firewall_subnet = (
            [network.SubnetArgs(name=egress.FIREWALL_SUBNET, address_prefix=s.network.firewall_subnet)]
            if s.network.egress == "firewall"
            else []
        )

        subnet_names = {"aks": "snet-aks-nodes", "postgres": "snet-postgres", "endpoints": "snet-private-endpoints"}
        vnet = network.VirtualNetwork(
            "vnet",
            network.VirtualNetworkInitArgs(
                resource_group_name=rg.name,
                virtual_network_name=s.name("vnet"),
                location=s.location,
                address_space=network.AddressSpaceArgs(address_prefixes=[s.network.address_space]),
                # Subnets inline: one owner for the subnet list, no drift between VNet and Subnet resources.
                subnets=[
                    network.SubnetArgs(
                        name=subnet_names["aks"],
                        address_prefix=s.network.aks_subnet,
                        network_security_group=network.NetworkSecurityGroupArgs(id=nsgs["aks"].id),
                        nat_gateway=network.SubResourceArgs(id=nat.id) if nat else None,
                        route_table=network.RouteTableArgs(id=routes.id) if routes else None,
                        default_outbound_access=False,
                    ),
                    network.SubnetArgs(
                        name=subnet_names["postgres"],
                        address_prefix=s.network.postgres_subnet,
                        network_security_group=network.NetworkSecurityGroupArgs(id=nsgs["postgres"].id),
                        delegations=[
                            network.DelegationArgs(name="postgres-flexible", service_name=POSTGRES_DELEGATION)
                        ],
                        default_outbound_access=False,
                    ),
                    network.SubnetArgs(
                        name=subnet_names["endpoints"],
                        address_prefix=s.network.endpoints_subnet,
                        network_security_group=network.NetworkSecurityGroupArgs(id=nsgs["endpoints"].id),
                        private_endpoint_network_policies="Enabled",
                        default_outbound_access=False,
                    ),
                    *firewall_subnet,
                ]
                + edge_subnets(s),
                tags=tags,
            ),
            opts=child,
        )
        self.vnet_id = vnet.id
        self.vnet_name = vnet.name
        self.edge_subnet_id = vnet.id.apply(lambda i: f"{i}/subnets/{EDGE_SUBNET}") if s.edge.enabled else None
        # what must exist before nodes can reach the internet (the cluster waits for it)
        self.egress_ready: list[pulumi.Resource] = [vnet]
        if s.network.egress == "firewall":
            self.egress_ready.append(egress.firewall(s, rg.name, vnet.id, registry_login_server, tags, child))
        self.aks_subnet_id = vnet.id.apply(lambda i: f"{i}/subnets/{subnet_names['aks']}")
        self.postgres_subnet_id = vnet.id.apply(lambda i: f"{i}/subnets/{subnet_names['postgres']}")
        self.endpoints_subnet_id = vnet.id.apply(lambda i: f"{i}/subnets/{subnet_names['endpoints']}")

        zone_ids = {}
        for key, zone_name in (
            ("postgres", postgres_zone_name(s)),
            ("keyvault", KEYVAULT_ZONE),
            ("registry", REGISTRY_ZONE),
        ):
            zone = privatedns.PrivateZone(
                f"dns-{key}",
                privatedns.PrivateZoneArgs(
                    resource_group_name=rg.name,
                    private_zone_name=zone_name,
                    location="global",
                    tags=tags,
                ),
                opts=child,
            )
            privatedns.VirtualNetworkLink(
                f"dns-{key}-link",
                privatedns.VirtualNetworkLinkArgs(
                    resource_group_name=rg.name,
                    private_zone_name=zone.name,
                    virtual_network_link_name=s.name("vnet", "link"),
                    location="global",
                    registration_enabled=False,
                    virtual_network=privatedns.SubResourceArgs(id=vnet.id),
                    tags=tags,
                ),
                opts=child,
            )
            zone_ids[key] = zone.id
        self.postgres_dns_zone_id = zone_ids["postgres"]
        self.keyvault_dns_zone_id = zone_ids["keyvault"]
        self.registry_dns_zone_id = zone_ids["registry"]

        self.register_outputs(
            {
                "resourceGroupName": self.resource_group_name,
                "vnetId": self.vnet_id,
                "aksSubnetId": self.aks_subnet_id,
                "postgresSubnetId": self.postgres_subnet_id,
                "endpointsSubnetId": self.endpoints_subnet_id,
            }
        )
