"""Azure Container Registry: every image the platform runs comes through it.

* Premium in prod: private endpoint in the endpoints subnet with the privatelink.azurecr.io
  zone, public network access off (or limited to ``registry.allowedIpRanges``), zone
  redundancy, export disabled; dev runs Standard on the public endpoint (docs/hardening.md).
* Admin user and anonymous pull off: the kubelet identity pulls with ``AcrPull``.
* Artifact cache rules: each upstream in ``registry.cacheUpstreams`` is cached under its own
  prefix (``docker.io/x/y`` -> ``<registry>.azurecr.io/docker/x/y``): no Docker Hub rate limits
  during a scale-out, one place that records what was pulled.
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import containerregistry, network

from . import rbac
from .network import Network
from .render.images import CACHE_PREFIXES, cached_image
from .settings import StackSettings

__all__ = ["CACHE_PREFIXES", "Registry", "cached_image", "login_server", "registry_name"]


def registry_name(s: StackSettings, suffix: pulumi.Input[str]) -> pulumi.Output[str]:
    """Globally unique, alphanumeric only (ACR names allow no hyphens)."""
    return pulumi.Output.from_input(suffix).apply(lambda x: f"{s.name_prefix}{s.environment}acr{x}")


def login_server(s: StackSettings, suffix: pulumi.Input[str]) -> pulumi.Output[str]:
    return registry_name(s, suffix).apply(lambda n: f"{n}.azurecr.io")


class Registry(pulumi.ComponentResource):
    registry_id: pulumi.Output[str]
    login_server: pulumi.Output[str]
    # the login server once the nodes can pull through the cache (AcrPull, every cache rule):
    # what the workloads' image references are built from, so they wait for both
    pull_through: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        net: Network,
        client: pulumi.Output,
        suffix: pulumi.Input[str],
        kubelet_principal_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:Registry", name, None, opts)
        s = settings
        r = s.registry
        child = pulumi.ResourceOptions(parent=self)
        tags = {**s.tags, "environment": s.environment, "managedBy": "pulumi"}
        premium = r.sku == "Premium"
        CR = containerregistry
        registry = CR.Registry(
            "registry",
            CR.RegistryArgs(
                resource_group_name=net.resource_group_name,
                registry_name=registry_name(s, suffix),
                location=s.location,
                sku=CR.SkuArgs(name=r.sku),
                admin_user_enabled=False,
                anonymous_pull_enabled=False,
                # dedicated data endpoint <name>.<region>.data.azurecr.io (Premium): the firewall
                # allows exactly it instead of *.blob.core.windows.net
                data_endpoint_enabled=premium,
                public_network_access=(
                    CR.PublicNetworkAccess.ENABLED
                    if not premium or r.allowed_ip_ranges
                    else CR.PublicNetworkAccess.DISABLED
                ),
                network_rule_set=CR.NetworkRuleSetArgs(
                    default_action=CR.DefaultAction.DENY,
                    ip_rules=[CR.IPRuleArgs(i_p_address_or_range=ip, action="Allow") for ip in r.allowed_ip_ranges],
                )
                if premium
                else None,
                network_rule_bypass_options=CR.NetworkRuleBypassOptions.NONE if premium else None,
                zone_redundancy=CR.ZoneRedundancy.ENABLED
                if premium and s.aks.availability_zones
                else CR.ZoneRedundancy.DISABLED,
                policies=CR.PoliciesArgs(
                    retention_policy=CR.RetentionPolicyArgs(days=r.untagged_retention_days, status="enabled")
                    if premium
                    else None,
                    # export (import to another registry) only makes sense with public access on
                    export_policy=CR.ExportPolicyArgs(status=CR.ExportPolicyStatus.DISABLED)
                    if premium and not r.allowed_ip_ranges
                    else None,
                ),
                tags=tags,
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=s.protect),
        )
        self.registry_id = registry.id
        self.login_server = registry.login_server

        if premium:
            endpoint = network.PrivateEndpoint(
                "registry-pe",
                network.PrivateEndpointArgs(
                    resource_group_name=net.resource_group_name,
                    private_endpoint_name=s.name("acr", "pe"),
                    location=s.location,
                    subnet=network.SubnetArgs(id=net.endpoints_subnet_id),
                    private_link_service_connections=[
                        network.PrivateLinkServiceConnectionArgs(
                            name="registry", private_link_service_id=registry.id, group_ids=["registry"]
                        )
                    ],
                    tags=tags,
                ),
                opts=child,
            )
            network.PrivateDnsZoneGroup(
                "registry-pe-dns",
                network.PrivateDnsZoneGroupArgs(
                    resource_group_name=net.resource_group_name,
                    private_endpoint_name=endpoint.name,
                    private_dns_zone_group_name="default",
                    private_dns_zone_configs=[
                        network.PrivateDnsZoneConfigArgs(name="azurecr", private_dns_zone_id=net.registry_dns_zone_id)
                    ],
                ),
                opts=child,
            )

        pull = rbac.grant(
            "kubelet-acr-pull",
            role=rbac.ACR_PULL,
            principal_id=kubelet_principal_id,
            scope=registry.id,
            client=client,
            description="AKS nodes pull images from the stack's registry",
            opts=child,
        )

        rules = []
        for upstream in r.cache_upstreams:
            prefix = CACHE_PREFIXES[upstream]
            rule = CR.CacheRule(
                f"cache-{prefix}",
                CR.CacheRuleArgs(
                    resource_group_name=net.resource_group_name,
                    registry_name=registry.name,
                    cache_rule_name=f"cache-{prefix}",
                    source_repository=f"{upstream}/*",
                    target_repository=f"{prefix}/*",
                ),
                opts=child,
            )
            rules.append(rule.id)
        self.pull_through = pulumi.Output.all(login_server(s, suffix), pull.id, *rules).apply(lambda a: a[0])
        self.register_outputs({"loginServer": self.login_server})
