"""Key Vault settings: network access, secret expiry and rotation, the workload identity."""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Literal

from pydantic import Field

from .base import IpOrCidr, Model, ServiceName


class WorkloadIdentity(Model):
    namespace: ServiceName = "platform"
    service_account: ServiceName = "platform-secrets"


class KeyVaultSettings(Model):
    sku: Literal["standard", "premium"] = "standard"
    allowed_ip_ranges: list[IpOrCidr] = Field(default_factory=list)
    soft_delete_retention_days: int = Field(default=90, ge=90, le=90)
    secrets_expire_on: _dt.date
    rotation: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    workload_identity: WorkloadIdentity = WorkloadIdentity()
