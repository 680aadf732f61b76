"""Network settings: the virtual network and its subnets (overlaps are checked in rules.py)."""

from __future__ import annotations

from pydantic import field_validator

from .base import Cidr, Model, check_cidr


class NetworkSettings(Model):
    address_space: Cidr = "10.40.0.0/16"
    aks_subnet: Cidr = "10.40.0.0/20"
    postgres_subnet: Cidr = "10.40.16.0/24"
    endpoints_subnet: Cidr = "10.40.17.0/24"

    @field_validator("address_space", "aks_subnet", "postgres_subnet", "endpoints_subnet")
    @classmethod
    def _valid_cidr(cls, v: str) -> str:
        return check_cidr(v)
