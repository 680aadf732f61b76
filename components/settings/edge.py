"""HTTPS edge settings: Application Gateway for Containers (its delegated subnet, WAF policy
and rate limit), the public DNS zone, and the ACME (Let's Encrypt) account for cert-manager.
Cross-key rules (subnet overlaps, hostnames inside the zone, prod requirements) are in rules.py."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from .base import Cidr, Model, check_cidr

DnsName = Annotated[str, Field(pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")]
AzureResourceId = Annotated[str, Field(pattern=r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/.+$")]


class DnsZoneSettings(Model):
    """The public Azure DNS zone the edge's hostnames live in: created by the stack (in its
    resource group) unless ``resourceId`` names an existing zone (delegated by its parent)."""

    name: DnsName
    resource_id: AzureResourceId | None = None


class WafSettings(Model):
    """The WAF policy attached to the edge: Microsoft's Default Rule Set (OWASP-based) plus a
    per-client-IP rate limit. Prevention blocks; Detection only logs (allowed in dev only)."""

    mode: Literal["Prevention", "Detection"] = "Prevention"
    rule_set_version: Literal["2.1"] = "2.1"  # Microsoft_DefaultRuleSet, the DRS version AGC supports
    rate_limit_requests: int = Field(default=600, ge=10, le=100000)
    rate_limit_window: Literal["OneMin", "FiveMins"] = "OneMin"


class EdgeSettings(Model):
    enabled: bool = False
    # Delegated to Microsoft.ServiceNetworking/trafficControllers; /24 or larger (AGC's minimum).
    subnet: Cidr = "10.40.18.0/24"
    dns_zone: DnsZoneSettings | None = None
    acme_email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,63}$")] | None = None
    acme_server: Literal["staging", "production"] = "staging"
    waf: WafSettings = WafSettings()

    @field_validator("subnet")
    @classmethod
    def _valid_cidr(cls, v: str) -> str:
        return check_cidr(v)
