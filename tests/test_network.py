"""Network: subnets, delegation, NSGs and private DNS zones linked to the VNet."""

from __future__ import annotations


def test_vnet_has_three_subnets_with_nsgs(stack):
    vnet = stack.inputs("network:VirtualNetwork", "vnet")
    net = stack.settings.network
    assert vnet["addressSpace"]["addressPrefixes"] == [net.address_space]
    subnets = {s["name"]: s for s in vnet["subnets"]}
    edge = subnets.pop("snet-edge-agc", None)  # the edge's own subnet: test_edge_subnet_is_delegated
    assert (edge is not None) == stack.settings.edge.enabled
    assert set(subnets) == {"snet-aks-nodes", "snet-postgres", "snet-private-endpoints"}
    assert subnets["snet-aks-nodes"]["addressPrefix"] == net.aks_subnet
    assert subnets["snet-postgres"]["addressPrefix"] == net.postgres_subnet
    assert subnets["snet-private-endpoints"]["addressPrefix"] == net.endpoints_subnet
    for subnet in subnets.values():
        assert "/networkSecurityGroups/" in subnet["networkSecurityGroup"]["id"]
        assert subnet["defaultOutboundAccess"] is False


def test_postgres_subnet_is_delegated(stack):
    subnets = {s["name"]: s for s in stack.inputs("network:VirtualNetwork", "vnet")["subnets"]}
    assert [d["serviceName"] for d in subnets["snet-postgres"]["delegations"]] == [
        "Microsoft.DBforPostgreSQL/flexibleServers"
    ]
    assert "delegations" not in subnets["snet-aks-nodes"]


def test_edge_subnet_is_delegated(stack):
    subnets = {s["name"]: s for s in stack.inputs("network:VirtualNetwork", "vnet")["subnets"]}
    edge = subnets["snet-edge-agc"]
    assert edge["addressPrefix"] == stack.settings.edge.subnet
    assert [d["serviceName"] for d in edge["delegations"]] == ["Microsoft.ServiceNetworking/trafficControllers"]
    assert edge["defaultOutboundAccess"] is False


def test_postgres_nsg_admits_only_aks_on_5432(stack):
    rules = {r["name"]: r for r in stack.inputs("network:NetworkSecurityGroup", "nsg-postgres")["securityRules"]}
    allow = rules["allow-postgres-from-aks"]
    assert (allow["access"], allow["destinationPortRange"], allow["sourceAddressPrefix"]) == (
        "Allow",
        "5432",
        stack.settings.network.aks_subnet,
    )
    assert rules["deny-vnet-inbound"]["access"] == "Deny"
    assert rules["deny-vnet-inbound"]["priority"] > allow["priority"]


def test_private_dns_zones_linked_to_vnet(stack):
    zones = [r.inputs["privateZoneName"] for r in stack.of_type("privatedns:PrivateZone")]
    assert "privatelink.vaultcore.azure.net" in zones
    assert any(z.endswith(".postgres.database.azure.com") for z in zones)
    links = [
        stack.inputs("privatedns:VirtualNetworkLink", r.name)
        for r in stack.of_type("privatedns:VirtualNetworkLink")
        if r.name != "dns-postgres-dr-link"  # prod's DR VNet: tests/test_postgres_replicas.py
    ]
    # PostgreSQL, Key Vault, container registry, and Azure Managed Redis where a service uses it
    assert len(links) == len(zones) == 3 + (1 if stack.settings.redis_enabled else 0)
    assert ("privatelink.redis.azure.net" in zones) == stack.settings.redis_enabled
    for link in links:
        assert link["registrationEnabled"] is False
        assert "/virtualNetworks/" in link["virtualNetwork"]["id"]


def test_components_parent_their_children(stack):
    by_urn = {r.urn: r for r in stack.result.registrations}
    components = {r.urn for r in stack.result.registrations if r.type.startswith("event-backbone:")}
    assert len(components) >= 5
    for r in stack.result.registrations:
        if r.type.startswith("azure-native:") and not r.type.endswith("ResourceGroup"):
            assert r.parent in components, f"{r.type} {r.name} is not parented to a component"
    assert all(by_urn[c].parent.endswith("pulumi:pulumi:Stack::event-backbone-" + stack.stack) for c in components)
