"""The base every settings model shares, and the value types several areas use.

Field names are snake_case in Python and camelCase in the stack files (aliases); unknown keys
are errors; settings are immutable once validated.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

PROJECT = "event-backbone"

Environment = Literal["dev", "prod"]
Zone = Literal["1", "2", "3"]
DayOfWeek = Literal["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# Kubernetes/RabbitMQ/PostgreSQL friendly lower-case name (a service, a database, a queue suffix).
ServiceName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")]
Cidr = Annotated[str, Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")]
IpOrCidr = Annotated[str, Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?$")]
Uuid = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")]
HourMinute = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
Gibibytes = Annotated[str, Field(pattern=r"^\d+Gi$")]  # a volume size


class Model(BaseModel):
    """Base for every settings model: camelCase keys, unknown keys are errors, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )


def check_cidr(value: str) -> str:
    """Field validator body: a CIDR string is also a valid network (host bits clear)."""
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"must be a valid IPv4 network in CIDR form ({exc})") from None
    return value
