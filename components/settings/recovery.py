"""A recovery stack (``recovery``): the platform of another stack rebuilt in that stack's
disaster-recovery region around its promoted geo-replica (docs/disaster-recovery.md, runbook C).

The promoted server, its resource group, the DR VNet and the private DNS zone come from the
replaced stack's outputs (``disasterRecovery``, read through a StackReference: they outlive the
region). What this file says statically is what the stack's rules and network policies need
before any output is known."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from .base import Cidr, Model, check_cidr

# The postgres keys that still mean something in a recovery stack: what the stack sets on the
# promoted server (server parameters, TLS, Defender, the Entra admin group) and the SKU it runs
# (the connection alerts' threshold follows it; checked against the replaced stack's output).
# Every other postgres key describes a server the stack would create, and a recovery stack creates none.
RECOVERY_POSTGRES_KEYS = ("entra_admin_group", "defender", "ssl_min_protocol_version", "parameters", "sku_name")


class Recovery(Model):
    # the stack whose region failed, as `pulumi stack ls` names it (same project and organization)
    replaces: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
    # the subnet the promoted server lives in: the replaced stack's postgres.disasterRecovery.postgresSubnet
    postgres_subnet: Cidr

    @field_validator("postgres_subnet")
    @classmethod
    def _valid_cidr(cls, v: str) -> str:
        return check_cidr(v)
