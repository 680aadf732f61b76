"""Redis settings (``event-backbone:redis``): one Azure Managed Redis cluster
(``Microsoft.Cache/redisEnterprise``) with its database ``default``, for the services whose
entry says ``redis: true`` (bloodbank's correlation tracking, caches).

Off unless a service asks for it or ``redis.enabled`` is true. What is fixed by design and not a
setting: TLS only (clientProtocol Encrypted, TLS >= 1.2), no public network access, no access
keys (Microsoft Entra tokens only), a private endpoint. Why each default is what it is:
docs/redis.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from .base import Model
from .errors import Problem

if TYPE_CHECKING:
    from .stack import StackSettings

# Azure Managed Redis SKUs (the SDK's SkuName values of the Balanced, MemoryOptimized and
# ComputeOptimized families). Enterprise_* / EnterpriseFlash_* are Azure Cache for Redis
# Enterprise, retiring and refused for new instances: not offered.
RedisSku = Literal[
    "Balanced_B0",
    "Balanced_B1",
    "Balanced_B3",
    "Balanced_B5",
    "Balanced_B10",
    "Balanced_B20",
    "Balanced_B50",
    "MemoryOptimized_M10",
    "MemoryOptimized_M20",
    "MemoryOptimized_M50",
    "ComputeOptimized_X3",
    "ComputeOptimized_X5",
    "ComputeOptimized_X10",
    "ComputeOptimized_X20",
]
EvictionPolicy = Literal["VolatileLRU", "VolatileLFU", "VolatileTTL", "AllKeysLRU", "AllKeysLFU", "NoEviction"]


class RedisAlerts(Model):
    """Azure Monitor metric alerts on the cluster (docs/runbooks/Redis*.md)."""

    server_load_percent: int = Field(default=80, ge=1, le=100)  # serverLoad, 15-minute average
    memory_percent: int = Field(default=85, ge=1, le=100)  # usedmemorypercentage, 15-minute average
    connected_clients_percent: int = Field(default=80, ge=1, le=100)  # of maxConnectedClients, 5-minute maximum
    errors_per_five_minutes: int = Field(default=10, ge=1, le=1_000_000)  # errors, 5-minute total


class RedisSettings(Model):
    enabled: bool = False  # on as well whenever a service has `redis: true`
    sku: RedisSku = "Balanced_B1"
    # Replicated primary/replica shards (zone redundant in a zoned region). Must be true in prod;
    # fixed at creation: turning it on later means a new cluster.
    high_availability: bool = True
    # EnterpriseCluster: one endpoint on port 10000 through the proxy, any Redis client works.
    # OSSCluster: cluster-aware clients, one port per shard (not supported here: the landing
    # zones' NetworkPolicies and the NSG open 10000 only). Fixed at creation.
    clustering_policy: Literal["EnterpriseCluster"] = "EnterpriseCluster"
    # Every key the services write carries a TTL (correlation state, cache entries): under memory
    # pressure the least recently used of those go first; a key without TTL is never evicted.
    eviction_policy: EvictionPolicy = "VolatileLRU"
    # At most one of AOF or RDB. rdb: an hourly snapshot (a full outage loses at most the last
    # hour of correlation state; a node failure loses nothing with high availability).
    persistence: Literal["none", "rdb", "aof"] = "rdb"
    rdb_frequency: Literal["1h", "6h", "12h"] = "1h"
    # The SKU's connection limit as Microsoft publishes it for the chosen SKU: the connected
    # clients alert fires at alerts.connectedClientsPercent of it. Required when Redis is on.
    max_connected_clients: int | None = Field(default=None, ge=1, le=10_000_000)
    alerts: RedisAlerts = RedisAlerts()


def redis_services(s: StackSettings) -> list[str]:
    """The services whose entry says ``redis: true``."""
    return [svc for svc, cfg in s.services.items() if cfg.redis]


def redis_in_use(s: StackSettings) -> bool:
    return s.redis.enabled or bool(redis_services(s))


def assignment_name(svc: str) -> str:
    """The access-policy assignment's name: letters and digits only (the API's pattern)."""
    return svc.replace("-", "")


def redis_rules(s: StackSettings) -> list[Problem]:
    """Redis: configured only when used, HA in prod, the SKU's client limit known, assignment
    names unique."""
    p: list[Problem] = []
    r = s.redis
    users = redis_services(s)
    if not redis_in_use(s):
        if r.model_fields_set and s.services:  # no services at all: the services rule says so
            p.append(
                Problem(
                    key="redis",
                    message="is configured but nothing uses it: no service has `redis: true` and redis.enabled"
                    " is false; set redis.enabled: true or remove the section",
                    has_got=False,
                )
            )
        return p
    if s.is_prod and not r.high_availability:
        p.append(
            Problem(
                key="redis.highAvailability",
                message="must be true in prod (replicated shards, zone redundant; cannot be turned on later)",
                got=False,
            )
        )
    if "rdb_frequency" in r.model_fields_set and r.persistence != "rdb":
        p.append(
            Problem(
                key="redis.rdbFrequency",
                message=f"applies only with redis.persistence 'rdb' (it is '{r.persistence}'); remove it or set"
                " persistence: rdb",
                got=r.rdb_frequency,
            )
        )
    if r.max_connected_clients is None:
        p.append(
            Problem(
                key="redis.maxConnectedClients",
                message=f"is required when Redis is on: the connection limit Microsoft publishes for {r.sku}"
                " (the connected-clients alert is a share of it)",
                has_got=False,
            )
        )
    seen: dict[str, str] = {}
    for svc in users:
        other = seen.setdefault(assignment_name(svc), svc)
        if other != svc:
            p.append(
                Problem(
                    key=f"services.{svc}.redis",
                    message=f"its access-policy assignment name '{assignment_name(svc)}' (letters and digits"
                    f" of the name) is taken by services.{other}; rename one of them",
                    got=True,
                )
            )
    return p


__all__ = [
    "RedisAlerts",
    "RedisSettings",
    "RedisSku",
    "assignment_name",
    "redis_in_use",
    "redis_rules",
    "redis_services",
]
