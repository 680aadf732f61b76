"""Correlation tracking on Azure Managed Redis (the reference client's use of Redis).

bloodbank's publisher links each event to the event that caused it (``enable_correlation_tracking``):
a child event carries its parent's correlation id, and the chain of events of one correlation
id can be read back. The contract this module keeps (``redis`` in the service's client contract,
build/<stack>/rabbitmq/clients/<svc>.json, and docs/redis.md):

- TLS only (TLS >= 1.2), port 10000, one endpoint (clustering policy EnterpriseCluster: a plain,
  non-cluster client);
- Microsoft Entra only: the username is the service identity's object ID, the password an access
  token for ``https://redis.azure.com/.default``, renewed before it expires with ``AUTH`` on the
  open connection. In a pod: ``redis_entraid.cred_provider.create_from_default_azure_credential``
  (package ``redis-entraid``, workload identity) as ``credential_provider``;
- every key starts with the service's prefix (``<svc>:``) and carries a TTL: the database evicts
  keys with a TTL, least recently used first, when memory runs out (VolatileLRU), and an ACL
  ``~<svc>:*`` would refuse any other key;
- no multi-key transaction across keys: ``record`` pipelines single-key commands (EnterpriseCluster
  refuses MULTI/EXEC across hash slots).

Correlation is best-effort: the event is what matters. ``EventClient.publish`` records after the
broker's confirm and logs (never raises) when Redis is unreachable.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.credentials import CredentialProvider

SCOPE = "https://redis.azure.com/.default"
DAY = 86_400


@dataclass(frozen=True)
class RedisConfig:
    """What the ConfigMap ``<svc>-redis`` gives the service's pods (as environment variables)."""

    host: str
    port: int
    username: str
    key_prefix: str
    scope: str = SCOPE

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> RedisConfig:
        if env.get("REDIS_TLS", "true").lower() != "true":
            raise ValueError("REDIS_TLS must be true: Azure Managed Redis here refuses plaintext")
        return cls(
            host=env["REDIS_HOST"],
            port=int(env.get("REDIS_PORT", "10000")),
            username=env["REDIS_USERNAME"],
            key_prefix=env["REDIS_KEY_PREFIX"],
            scope=env.get("REDIS_SCOPE", SCOPE),
        )


def connect(
    config: RedisConfig, credential_provider: CredentialProvider, *, cafile: str | None = None
) -> aioredis.Redis:
    """A TLS (>= 1.2) client that signs in with ``credential_provider`` (Entra tokens in a pod;
    ``cafile`` None: the system trust store, which holds Azure's public CAs)."""
    return aioredis.Redis(
        host=config.host,
        port=config.port,
        ssl=True,
        ssl_ca_certs=cafile,
        ssl_cert_reqs="required",
        ssl_check_hostname=True,
        ssl_min_version=ssl.TLSVersion.TLSv1_2,
        credential_provider=credential_provider,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
    )


class CorrelationTracker:
    """Each event's correlation id and parent, and each correlation's chain of events, under the
    service's own prefix, all with a TTL."""

    def __init__(self, client: aioredis.Redis, key_prefix: str, ttl_seconds: int = DAY):
        if not key_prefix.endswith(":") or len(key_prefix) < 2:
            raise ValueError(f"key prefix must be '<service>:' (got {key_prefix!r})")
        if ttl_seconds < 1:
            raise ValueError("every key carries a TTL")
        self.redis, self.prefix, self.ttl = client, key_prefix, ttl_seconds

    def event_key(self, event_id: str) -> str:
        return f"{self.prefix}corr:event:{event_id}"

    def chain_key(self, correlation_id: str) -> str:
        return f"{self.prefix}corr:chain:{correlation_id}"

    async def correlation_for(self, parent_id: str | None, event_id: str) -> str:
        """A child inherits its parent's correlation id; an event without a (known) parent starts
        a new correlation named after itself."""
        if parent_id:
            parent = await self.lookup(parent_id)
            if parent:
                return parent["correlationId"]
        return event_id

    async def record(
        self, event_id: str, correlation_id: str, parent_id: str | None = None, routing_key: str = ""
    ) -> None:
        event, chain = self.event_key(event_id), self.chain_key(correlation_id)
        pipe = self.redis.pipeline(transaction=False)  # one key per command: no cross-slot transaction
        pipe.hset(
            event,
            mapping={
                "correlationId": correlation_id,
                "parentId": parent_id or "",
                "routingKey": routing_key,
                "recordedAtMs": str(int(time.time() * 1000)),
            },
        )
        pipe.expire(event, self.ttl)
        pipe.rpush(chain, event_id)
        pipe.expire(chain, self.ttl)
        await pipe.execute()

    async def lookup(self, event_id: str) -> dict[str, Any] | None:
        found = await self.redis.hgetall(self.event_key(event_id))  # type: ignore[misc]
        return {str(k): v for k, v in found.items()} or None

    async def chain(self, correlation_id: str) -> list[str]:
        return list(await self.redis.lrange(self.chain_key(correlation_id), 0, -1))  # type: ignore[misc]
