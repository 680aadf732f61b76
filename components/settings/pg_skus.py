"""PostgreSQL flexible server compute: the default ``max_connections`` of each SKU.

Azure sets ``max_connections`` from the SKU's memory when a server is provisioned (and again
when its compute is scaled); 15 of them are reserved for replication and monitoring. From
"Limits in Azure Database for PostgreSQL flexible server" (learn.microsoft.com, concepts-limits):
2 GiB 50, 4 GiB 429, 8 GiB 859, 16 GiB 1718, 32 GiB 3437, 48 GiB and more 5000. A metric alert
compares a metric to a fixed number, so the connection alert's threshold is computed from this
at plan time (components/render/db_alerts.py) and changes with ``postgres.skuName``."""

from __future__ import annotations

import re

# Burstable sizes by name; General Purpose (D) has 4 GiB per vCore, Memory Optimized (E) 8 GiB.
_BURSTABLE_GIB = {"B1ms": 2, "B2s": 4, "B2ms": 8, "B4ms": 16, "B8ms": 32, "B12ms": 48, "B16ms": 64, "B20ms": 80}
_VCORES = (2, 4, 8, 16, 20, 32, 48, 64, 96)
_SIZED = re.compile(r"^Standard_(?P<family>[DE])(?P<vcores>\d+)(a?ds_v[45]|ads_v5|s_v3|ds_v5)$")
_BY_GIB = ((2, 50), (4, 429), (8, 859), (16, 1718), (32, 3437))
MAX_CONNECTIONS_CAP = 5000
RESERVED_CONNECTIONS = 15

KNOWN_SKUS_TEXT = (
    "Standard_B1ms ... Standard_B20ms, Standard_D<2..96>(a)ds_v5/ds_v4/s_v3, Standard_E<2..96>(a)ds_v5/ds_v4/s_v3"
)


def memory_gib(sku_name: str) -> int | None:
    """The SKU's memory, or None for a name this table does not know."""
    if sku_name.startswith("Standard_B"):
        return _BURSTABLE_GIB.get(sku_name.removeprefix("Standard_"))
    m = _SIZED.match(sku_name)
    if not m or int(m["vcores"]) not in _VCORES:
        return None
    return int(m["vcores"]) * (4 if m["family"] == "D" else 8)


def max_connections(sku_name: str) -> int | None:
    """Azure's default ``max_connections`` for the SKU (None when unknown)."""
    gib = memory_gib(sku_name)
    if gib is None:
        return None
    for limit, connections in _BY_GIB:
        if gib <= limit:
            return connections
    return MAX_CONNECTIONS_CAP
