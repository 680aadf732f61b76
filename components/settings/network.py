"""Network settings: the virtual network and its subnets (overlaps are checked in rules.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .base import Cidr, Model, check_cidr


class NetworkSettings(Model):
    address_space: Cidr = "10.40.0.0/16"
    aks_subnet: Cidr = "10.40.0.0/20"
    postgres_subnet: Cidr = "10.40.16.0/24"
    endpoints_subnet: Cidr = "10.40.17.0/24"
    # How the nodes reach the internet: the AKS load balancer's outbound rules (dynamic IPs),
    # a NAT gateway with static public IPs on the node subnet, or Azure Firewall (FQDN rules)
    # behind a 0.0.0.0/0 route. Prod must not use loadBalancer (rules.py).
    egress: Literal["loadBalancer", "natGateway", "firewall"] = "natGateway"
    nat_gateway_public_ips: int = Field(default=1, ge=1, le=16)
    nat_gateway_idle_timeout_minutes: int = Field(default=4, ge=4, le=120)
    # AzureFirewallSubnet (at least /26), required when egress is firewall.
    firewall_subnet: Cidr | None = None
    firewall_sku: Literal["Standard", "Premium"] = "Standard"

    @field_validator("address_space", "aks_subnet", "postgres_subnet", "endpoints_subnet")
    @classmethod
    def _valid_cidr(cls, v: str) -> str:
        return check_cidr(v)

    @field_validator("firewall_subnet")
    @classmethod
    def _valid_optional_cidr(cls, v: str | None) -> str | None:
        return None if v is None else check_cidr(v)
