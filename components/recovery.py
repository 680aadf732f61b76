"""A recovery stack (``recovery`` in its stack file, docs/disaster-recovery.md, runbook C): the
platform of a stack whose region failed, rebuilt from this code in that stack's DR region around
its promoted geo-replica.

Everything else (network, AKS, Key Vault and its secrets, registry, broker, monitoring, service
identities) is this stack's own, created as any stack creates them. PostgreSQL is not: the only
copy of the data is the geo-replica the replaced stack created, now promoted. This stack

* reads where it is from the replaced stack's ``disasterRecovery`` output (a StackReference: the
  outputs live in the Pulumi backend, not in the failed region) and refuses to run when that
  output names another region than this stack's ``location``;
* never owns the server (no ``Server`` resource: nothing here can replace or delete it). It sets
  what the stack sets on any server it runs on (TLS, audit and shared-memory parameters,
  Defender, the Entra admin group) as resources that are *retained* on delete, so destroying
  this stack leaves the server as it was;
* reaches it over its own VNet peered with the DR VNet (both sides: the DR VNet's resource group
  is in this region) and a link of the replaced stack's PostgreSQL private DNS zone (global) to
  this VNet. The DR subnet's NSG already lets 5432 in from this stack's cluster subnet
  (``postgres.disasterRecovery.recoveryAksSubnet`` of the replaced stack).

The bootstrap Job then re-maps each service's role to this stack's service identity
(components/render/database.py, ``rebind``).
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_azure_native import dbforpostgresql, network, privatedns, security

from .network import Network
from .postgres import server_parameters
from .settings import StackSettings

# The replaced stack's output this stack reads (components/program.py exports it).
DR_OUTPUT = "disasterRecovery"


def replaced_stack(s: StackSettings) -> str:
    """The StackReference name of the replaced stack: same organization and project."""
    assert s.recovery is not None
    return f"{pulumi.get_organization()}/{pulumi.get_project()}/{s.recovery.replaces}"


def check_region(s: StackSettings, dr: dict[str, Any]) -> dict[str, Any]:
    """The replaced stack's DR output, checked against this stack's settings before anything
    uses it: the same region, the same DR subnet, this stack's cluster subnet the one the DR NSG
    lets in, the SKU the promoted server runs. A mismatch stops the preview with the values named."""
    assert s.recovery is not None
    problems = []
    if dr.get("region") != s.location:
        problems.append(f"location is {s.location!r}, the replaced stack's DR region is {dr.get('region')!r}")
    if dr.get("postgresSubnet") != s.recovery.postgres_subnet:
        problems.append(
            f"recovery.postgresSubnet is {s.recovery.postgres_subnet!r}, the replaced stack's DR subnet is"
            f" {dr.get('postgresSubnet')!r}"
        )
    if dr.get("recoveryAksSubnet") != s.network.aks_subnet:
        problems.append(
            f"network.aksSubnet is {s.network.aks_subnet!r}, the replaced stack's DR NSG lets in"
            f" {dr.get('recoveryAksSubnet')!r} (postgres.disasterRecovery.recoveryAksSubnet)"
        )
    if dr.get("skuName") != s.postgres.sku_name:
        problems.append(f"postgres.skuName is {s.postgres.sku_name!r}, the promoted server runs {dr.get('skuName')!r}")
    if problems:
        raise ValueError(f"stack {s.recovery.replaces!r} does not match this recovery stack: " + "; ".join(problems))
    return dr


class RecoveredPostgres(pulumi.ComponentResource):
    """The promoted geo-replica, as the rest of the program sees a server (postgres.DatabaseServer)."""

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        client: pulumi.Output,
        dr: pulumi.Output[dict[str, Any]],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:RecoveredPostgres", name, None, opts)
        s = settings
        pg = s.postgres
        self.resource_group_name: pulumi.Output[str] = dr.apply(lambda d: str(d["resourceGroupName"]))
        self.server_name: pulumi.Output[str] = dr.apply(lambda d: str(d["serverName"]))
        self.server_id: pulumi.Output[str] = dr.apply(lambda d: str(d["serverId"]))
        self.fqdn: pulumi.Output[str] = dr.apply(lambda d: str(d["fqdn"]))
        self.tenant_id: pulumi.Output[str] = client.tenant_id
        # retained: destroying this stack must not reset anything on the only copy of the data
        kept = pulumi.ResourceOptions(parent=self, retain_on_delete=True)

        previous: list[pulumi.Resource] = []
        for param, value in server_parameters(s, pg.parameters.values()).items():
            previous = [
                dbforpostgresql.Configuration(
                    param.replace("_", "-"),
                    dbforpostgresql.ConfigurationArgs(
                        resource_group_name=self.resource_group_name,
                        server_name=self.server_name,
                        configuration_name=param,
                        value=value,
                        source="user-override",
                    ),
                    opts=pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(depends_on=previous)),
                )
            ]
        if pg.defender:
            security.AdvancedThreatProtection(
                "defender",
                security.AdvancedThreatProtectionArgs(
                    resource_id=self.server_id, setting_name="current", is_enabled=True
                ),
                opts=kept,
            )
        if pg.entra_admin_group is not None:
            group = pg.entra_admin_group
            previous = [
                dbforpostgresql.AdministratorsMicrosoftEntra(
                    "entra-admin-group",
                    dbforpostgresql.AdministratorsMicrosoftEntraArgs(
                        resource_group_name=self.resource_group_name,
                        server_name=self.server_name,
                        object_id=group.object_id,
                        principal_name=group.display_name,
                        principal_type=dbforpostgresql.PrincipalType.GROUP,
                        tenant_id=client.tenant_id,
                    ),
                    opts=pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(depends_on=previous)),
                )
            ]
        # the databases came with the server (physical replication): no ARM Database resources
        self.databases: list[pulumi.Resource] = []
        self.last_operations = previous
        self.register_outputs({"serverName": self.server_name, "fqdn": self.fqdn})


class RecoveryNetwork(pulumi.ComponentResource):
    """This stack's VNet peered with the replaced stack's DR VNet (both directions), and the
    replaced stack's PostgreSQL private DNS zone linked to this VNet."""

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        net: Network,
        dr: pulumi.Output[dict[str, Any]],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:RecoveryNetwork", name, None, opts)
        s = settings
        child = pulumi.ResourceOptions(parent=self)
        dr_rg = dr.apply(lambda d: str(d["resourceGroupName"]))
        to_dr = network.VirtualNetworkPeering(
            "peering-to-dr",
            network.VirtualNetworkPeeringInitArgs(
                resource_group_name=net.resource_group_name,
                virtual_network_name=net.vnet_name,
                virtual_network_peering_name=s.name("peer", "to", "dr"),
                remote_virtual_network=network.SubResourceArgs(id=dr.apply(lambda d: str(d["virtualNetworkId"]))),
                allow_virtual_network_access=True,
                allow_forwarded_traffic=False,
                allow_gateway_transit=False,
                use_remote_gateways=False,
            ),
            opts=child,
        )
        from_dr = network.VirtualNetworkPeering(
            "peering-from-dr",
            network.VirtualNetworkPeeringInitArgs(
                resource_group_name=dr_rg,
                virtual_network_name=dr.apply(lambda d: str(d["virtualNetworkName"])),
                virtual_network_peering_name=s.name("peer", "from", "dr"),
                remote_virtual_network=network.SubResourceArgs(id=net.vnet_id),
                allow_virtual_network_access=True,
                allow_forwarded_traffic=False,
                allow_gateway_transit=False,
                use_remote_gateways=False,
            ),
            opts=child,
        )
        link = privatedns.VirtualNetworkLink(
            "dns-replaced-postgres-link",
            privatedns.VirtualNetworkLinkArgs(
                resource_group_name=dr.apply(lambda d: str(d["privateDnsZoneResourceGroupName"])),
                private_zone_name=dr.apply(lambda d: str(d["privateDnsZoneName"])),
                virtual_network_link_name=s.name("vnet", "link"),
                location="global",
                registration_enabled=False,
                virtual_network=privatedns.SubResourceArgs(id=net.vnet_id),
                tags={**s.tags, "environment": s.environment, "managedBy": "pulumi", "role": "recovery"},
            ),
            opts=child,
        )
        # the bootstrap Job waits for the path and the name
        self.ready: list[pulumi.Resource] = [to_dr, from_dr, link]
        self.register_outputs({})
