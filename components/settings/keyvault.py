"""Key Vault settings: network access, secret expiry and rotation. There is no vault-wide
workload grant: each identity is granted its own secrets (components/landing.py, keda.py)."""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Literal

from pydantic import Field

from .base import IpOrCidr, Model


class KeyVaultSettings(Model):
    sku: Literal["standard", "premium"] = "standard"
    allowed_ip_ranges: list[IpOrCidr] = Field(default_factory=list)
    soft_delete_retention_days: int = Field(default=90, ge=90, le=90)
    secrets_expire_on: _dt.date
    rotation: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    # What runs `pulumi up`: the bootstrap's deploy identity (a managed identity: ServicePrincipal),
    # or a person. ARM refuses a role assignment whose principalType does not match the principal.
    deployer_principal_type: Literal["ServicePrincipal", "User"] = "ServicePrincipal"
