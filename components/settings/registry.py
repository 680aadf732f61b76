"""Container registry settings: SKU, network access, the upstream registries cached through it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import IpOrCidr, Model
from .images import ImageSettings

Upstream = Literal["docker.io", "quay.io", "ghcr.io", "registry.k8s.io", "mcr.microsoft.com"]


class RegistrySettings(Model):
    # Premium: private endpoint, network rules, zone redundancy. Below Premium the public
    # endpoint stays open to authenticated pulls (dev's cheaper profile, docs/hardening.md).
    sku: Literal["Basic", "Standard", "Premium"] = "Premium"
    # Premium only: the public endpoint for these ranges (the deploying runners); empty: disabled.
    allowed_ip_ranges: list[IpOrCidr] = Field(default_factory=list)
    # Upstream registries the platform pulls from, each cached under its own prefix (artifact cache).
    cache_upstreams: list[Upstream] = Field(
        default_factory=lambda: ["docker.io", "quay.io", "ghcr.io", "registry.k8s.io"]
    )
    untagged_retention_days: int = Field(default=7, ge=0, le=365)
    # the services' images: push identities, the build registry, signing, admission (docs/images.md)
    images: ImageSettings = ImageSettings()
