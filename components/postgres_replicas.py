"""The data tier at production shape: same-region read replicas behind a virtual endpoint pair,
and a geo-replica in the disaster-recovery region in its own small VNet (docs/disaster-recovery.md).

* :class:`DrNetwork`: in ``postgres.disasterRecovery.region``, a resource group, a VNet holding
  only a subnet delegated to PostgreSQL with its NSG (5432 from the primary's PostgreSQL subnet
  and from the recovery stack's cluster subnet, ``recoveryAksSubnet``, components/recovery.py),
  global VNet peering both ways with the primary's VNet, and a link of the primary's PostgreSQL
  private DNS zone to this VNet (the zone is global; its records follow a promotion).
* :class:`PostgresReplicas`: ``postgres.readReplicas.count`` servers with ``createMode: Replica``
  (``AsyncReplica``) in the primary's region and subnet, the DR geo-replica (``GeoAsyncReplica``)
  in the DR subnet, each with the primary's TLS, audit and (at least its) shared-memory server
  parameters as explicit Configuration resources, Entra authentication as on the primary, private
  access only, protected in prod; and one ``VirtualEndpoint`` (ReadWrite) on the primary whose
  writer host follows the primary and whose reader host targets the first replica.

What Azure gives a replica by itself: every role and database of the primary (physical
replication: the bootstrap Job's ``svc-<service>`` roles exist there, read-only), the admin login.
What it does not: backups and high availability (neither is supported on a replica), and later
server-parameter changes of the primary (they are set here explicitly).
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import dbforpostgresql, network, privatedns, resources

from .network import POSTGRES_DELEGATION, Network, postgres_zone_name
from .postgres import Postgres, server_parameters
from .render import database_contract
from .settings import StackSettings

DR_SUBNET = "snet-postgres-dr"


def virtual_endpoint_name(s: StackSettings) -> str:
    """The writer/reader pair's base name; the services' database contract names the same hosts."""
    return database_contract.endpoint_name(s)


def replica_zones(s: StackSettings) -> list[str]:
    """One zone per replica: the listed ones in turn, else the primary's standby zone (a zone
    loss then leaves the primary's HA standby or the replica)."""
    rr = s.postgres.read_replicas
    zones = list(rr.availability_zones)
    fallback = s.postgres.standby_availability_zone
    return [zones[i] if i < len(zones) else fallback for i in range(rr.count)]


def dr_nsg_rules(s: StackSettings) -> list[network.SecurityRuleArgs]:
    """Inbound on the DR PostgreSQL subnet: 5432 from the primary's PostgreSQL subnet (streaming
    replication, and the reverse after a promotion), within the subnet, nothing else from a VNet."""
    dr = s.postgres.disaster_recovery
    assert dr is not None
    return [
        network.SecurityRuleArgs(
            name="allow-postgres-from-primary",
            priority=100,
            direction="Inbound",
            access="Allow",
            protocol="Tcp",
            source_address_prefix=s.network.postgres_subnet,
            source_port_range="*",
            destination_address_prefix=dr.postgres_subnet,
            destination_port_range="5432",
        ),
        *(
            [
                # the recovery stack's cluster (docs/disaster-recovery.md): allowed ahead of time, so
                # that a region failover writes nothing to this NSG
                network.SecurityRuleArgs(
                    name="allow-postgres-from-recovery-stack",
                    priority=105,
                    direction="Inbound",
                    access="Allow",
                    protocol="Tcp",
                    source_address_prefix=dr.recovery_aks_subnet,
                    source_port_range="*",
                    destination_address_prefix=dr.postgres_subnet,
                    destination_port_range="5432",
                )
            ]
            if dr.recovery_aks_subnet
            else []
        ),
        network.SecurityRuleArgs(
            name="allow-intra-subnet",
            priority=110,
            direction="Inbound",
            access="Allow",
            protocol="*",
            source_address_prefix=dr.postgres_subnet,
            source_port_range="*",
            destination_address_prefix=dr.postgres_subnet,
            destination_port_range="*",
        ),
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


class DrNetwork(pulumi.ComponentResource):
    """The DR region's network for the geo-replica, peered with the primary's."""

    postgres_subnet_id: pulumi.Output[str]

    def __init__(self, name: str, settings: StackSettings, net: Network, opts: pulumi.ResourceOptions | None = None):
        super().__init__("event-backbone:platform:DrNetwork", name, None, opts)
        s = settings
        dr = s.postgres.disaster_recovery
        assert dr is not None, "DrNetwork needs postgres.disasterRecovery"
        child = pulumi.ResourceOptions(parent=self)
        tags = {**s.tags, "environment": s.environment, "managedBy": "pulumi", "role": "disaster-recovery"}

        # Its own resource group in the DR region: its metadata survives the primary region.
        rg = resources.ResourceGroup(
            "dr-rg",
            resources.ResourceGroupArgs(resource_group_name=s.name("dr", "rg"), location=dr.region, tags=tags),
            opts=pulumi.ResourceOptions(parent=self, protect=s.protect),
        )
        nsg = network.NetworkSecurityGroup(
            "dr-nsg-postgres",
            network.NetworkSecurityGroupInitArgs(
                resource_group_name=rg.name,
                network_security_group_name=s.name("dr", "nsg", "postgres"),
                location=dr.region,
                security_rules=dr_nsg_rules(s),
                tags=tags,
            ),
            opts=child,
        )
        vnet = network.VirtualNetwork(
            "dr-vnet",
            network.VirtualNetworkInitArgs(
                resource_group_name=rg.name,
                virtual_network_name=s.name("dr", "vnet"),
                location=dr.region,
                address_space=network.AddressSpaceArgs(address_prefixes=[dr.address_space]),
                subnets=[
                    network.SubnetArgs(
                        name=DR_SUBNET,
                        address_prefix=dr.postgres_subnet,
                        network_security_group=network.NetworkSecurityGroupArgs(id=nsg.id),
                        delegations=[
                            network.DelegationArgs(name="postgres-flexible", service_name=POSTGRES_DELEGATION)
                        ],
                        default_outbound_access=False,
                    )
                ],
                tags=tags,
            ),
            opts=child,
        )
        # Global VNet peering, both directions (each side is one resource); no gateway transit.
        to_dr = network.VirtualNetworkPeering(
            "peering-primary-to-dr",
            network.VirtualNetworkPeeringInitArgs(
                resource_group_name=net.resource_group_name,
                virtual_network_name=net.vnet_name,
                virtual_network_peering_name=s.name("peer", "to", "dr"),
                remote_virtual_network=network.SubResourceArgs(id=vnet.id),
                allow_virtual_network_access=True,
                allow_forwarded_traffic=False,
                allow_gateway_transit=False,
                use_remote_gateways=False,
            ),
            opts=child,
        )
        from_dr = network.VirtualNetworkPeering(
            "peering-dr-to-primary",
            network.VirtualNetworkPeeringInitArgs(
                resource_group_name=rg.name,
                virtual_network_name=vnet.name,
                virtual_network_peering_name=s.name("peer", "to", "primary"),
                remote_virtual_network=network.SubResourceArgs(id=net.vnet_id),
                allow_virtual_network_access=True,
                allow_forwarded_traffic=False,
                allow_gateway_transit=False,
                use_remote_gateways=False,
            ),
            opts=child,
        )
        # The primary's PostgreSQL zone (global) resolves in the DR VNet too.
        link = privatedns.VirtualNetworkLink(
            "dns-postgres-dr-link",
            privatedns.VirtualNetworkLinkArgs(
                resource_group_name=net.resource_group_name,
                private_zone_name=postgres_zone_name(s),
                virtual_network_link_name=s.name("dr", "vnet", "link"),
                location="global",
                registration_enabled=False,
                virtual_network=privatedns.SubResourceArgs(id=vnet.id),
                tags=tags,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[net]),
        )
        self.resource_group_name = rg.name
        self.resource_group_id = rg.id
        self.vnet_id = vnet.id
        self.vnet_name = vnet.name
        self._zone_resource_group_name = net.resource_group_name
        self.postgres_subnet_id = vnet.id.apply(lambda i: f"{i}/subnets/{DR_SUBNET}")
        # the geo-replica waits for the paths to the primary and for name resolution
        self.ready: list[pulumi.Resource] = [to_dr, from_dr, link]
        self.register_outputs({"vnetId": self.vnet_id, "postgresSubnetId": self.postgres_subnet_id})

    def recovery_output(self, s: StackSettings, dr_replica: dbforpostgresql.Server) -> pulumi.Output[dict]:
        """The stack output a recovery stack reads (components/recovery.py): where the geo-replica
        is, how to reach it, and what it runs. All of it lives outside the primary's region except
        the private DNS zone's resource group (the zone itself is global)."""
        dr = s.postgres.disaster_recovery
        assert dr is not None
        return pulumi.Output.all(
            self.resource_group_name,
            dr_replica.name,
            dr_replica.id,
            dr_replica.fully_qualified_domain_name,
            self.vnet_id,
            self.vnet_name,
            self._zone_resource_group_name,
        ).apply(
            lambda v: {
                "region": dr.region,
                "resourceGroupName": v[0],
                "serverName": v[1],
                "serverId": v[2],
                "fqdn": v[3],
                "virtualNetworkId": v[4],
                "virtualNetworkName": v[5],
                "postgresSubnet": dr.postgres_subnet,
                "recoveryAksSubnet": dr.recovery_aks_subnet,
                "privateDnsZoneName": postgres_zone_name(s),
                "privateDnsZoneResourceGroupName": v[6],
                "skuName": dr.sku_name or s.postgres.sku_name,
            }
        )


class PostgresReplicas(pulumi.ComponentResource):
    """Read replicas, the virtual endpoint pair and the DR geo-replica of ``primary``."""

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        net: Network,
        primary: Postgres,
        client: pulumi.Output,
        dr_net: DrNetwork | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:PostgresReplicas", name, None, opts)
        s = settings
        pg = s.postgres
        rr = pg.read_replicas
        dr = pg.disaster_recovery
        tags = {**s.tags, "environment": s.environment, "managedBy": "pulumi"}
        # Azure runs one operation at a time on the primary (creating a replica is one): in turn.
        previous: list[pulumi.Resource] = [*primary.last_operations, *primary.databases]

        def replica(
            key: str,
            suffix: str,
            *,
            location: str,
            resource_group_name: pulumi.Input[str],
            subnet_id: pulumi.Input[str],
            zone: str | None,
            role: dbforpostgresql.ReplicationRole,
            sku_name: str | None,
            storage_size_gb: int | None,
            shared_memory: dict[str, int],
            after: list[pulumi.Resource],
        ) -> tuple[dbforpostgresql.Server, list[pulumi.Resource]]:
            server = dbforpostgresql.Server(
                key,
                dbforpostgresql.ServerArgs(
                    resource_group_name=resource_group_name,
                    server_name=primary.server_name.apply(lambda n, k=suffix: f"{n}-{k}"),
                    location=location,
                    create_mode=dbforpostgresql.CreateMode.REPLICA,
                    source_server_resource_id=primary.server_id,
                    replica=dbforpostgresql.ReplicaArgs(role=role),
                    # parity with the primary (validated: the same SKU, tier and storage)
                    sku=dbforpostgresql.SkuArgs(name=sku_name or pg.sku_name, tier=pg.sku_tier),
                    storage=dbforpostgresql.StorageArgs(
                        storage_size_gb=storage_size_gb or pg.storage_size_gb,
                        auto_grow=dbforpostgresql.StorageAutoGrow.ENABLED,
                    ),
                    availability_zone=zone,
                    network=dbforpostgresql.NetworkArgs(
                        delegated_subnet_resource_id=subnet_id,
                        private_dns_zone_arm_resource_id=net.postgres_dns_zone_id,
                        public_network_access=dbforpostgresql.ServerPublicNetworkAccessState.DISABLED,
                    ),
                    # the same sign-in as the primary; the Entra administrators and every role
                    # (the services' svc-<service>) come from the primary through replication
                    auth_config=dbforpostgresql.AuthConfigArgs(
                        active_directory_auth=dbforpostgresql.MicrosoftEntraAuth.ENABLED,
                        password_auth=dbforpostgresql.PasswordBasedAuth.ENABLED
                        if pg.password_auth
                        else dbforpostgresql.PasswordBasedAuth.DISABLED,
                        tenant_id=client.tenant_id,
                    ),
                    maintenance_window=dbforpostgresql.MaintenanceWindowArgs(
                        custom_window="Enabled",
                        day_of_week=pg.maintenance_window.day_of_week,
                        start_hour=pg.maintenance_window.start_hour,
                        start_minute=pg.maintenance_window.start_minute,
                    ),
                    tags={**tags, "replicaOf": "primary", "replicationRole": str(role.value)},
                ),
                opts=pulumi.ResourceOptions(parent=self, protect=s.protect, depends_on=after),
            )
            # Parameter changes on the primary do not reach a replica: set them explicitly.
            chain: list[pulumi.Resource] = [server]
            for param, value in server_parameters(s, {**pg.parameters.values(), **shared_memory}).items():
                chain = [
                    dbforpostgresql.Configuration(
                        f"{key}-{param.replace('_', '-')}",
                        dbforpostgresql.ConfigurationArgs(
                            resource_group_name=resource_group_name,
                            server_name=server.name,
                            configuration_name=param,
                            value=value,
                            source="user-override",
                        ),
                        opts=pulumi.ResourceOptions(parent=self, depends_on=chain),
                    )
                ]
            return server, chain

        self.replicas: list[dbforpostgresql.Server] = []
        for i, zone in enumerate(replica_zones(s), start=1):
            server, previous = replica(
                f"replica-{i}",
                f"r{i}",
                location=s.location,
                resource_group_name=net.resource_group_name,
                subnet_id=net.postgres_subnet_id,
                zone=zone,
                role=dbforpostgresql.ReplicationRole.ASYNC_REPLICA,
                sku_name=rr.sku_name,
                storage_size_gb=rr.storage_size_gb,
                shared_memory=rr.parameters.values(),
                after=previous,
            )
            self.replicas.append(server)

        self.virtual_endpoint: dbforpostgresql.VirtualEndpoint | None = None
        if self.replicas:
            # Managed on the primary: the writer host follows the primary, the reader host the
            # member (the first replica); one pair per primary (Azure's limit), and promoting a
            # replica to primary (switchover) needs it.
            self.virtual_endpoint = dbforpostgresql.VirtualEndpoint(
                "virtual-endpoint",
                dbforpostgresql.VirtualEndpointArgs(
                    resource_group_name=net.resource_group_name,
                    server_name=primary.server_name,
                    virtual_endpoint_name=virtual_endpoint_name(s),
                    endpoint_type=dbforpostgresql.VirtualEndpointType.READ_WRITE,
                    members=[self.replicas[0].name],
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=previous),
            )
            previous = [self.virtual_endpoint]

        self.dr_replica: dbforpostgresql.Server | None = None
        if dr is not None:
            assert dr_net is not None, "the DR replica needs its DrNetwork"
            self.dr_replica, previous = replica(
                "dr-replica",
                "dr",
                location=dr.region,
                resource_group_name=dr_net.resource_group_name,
                subnet_id=dr_net.postgres_subnet_id,
                zone=None,  # the DR region's zones are Azure's choice
                role=dbforpostgresql.ReplicationRole.GEO_ASYNC_REPLICA,
                sku_name=dr.sku_name,
                storage_size_gb=dr.storage_size_gb,
                shared_memory=dr.parameters.values(),
                after=[*previous, *dr_net.ready],
            )

        # logical name -> server: every replica gets the primary's diagnostics and lock
        self.servers: dict[str, dbforpostgresql.Server] = {f"replica-{i}": r for i, r in enumerate(self.replicas, 1)}
        if self.dr_replica is not None:
            self.servers["dr-replica"] = self.dr_replica
        self.last_operations = previous
        self.register_outputs(
            {
                "replicaNames": [r.name for r in self.replicas],
                "drReplicaName": self.dr_replica.name if self.dr_replica else None,
            }
        )
