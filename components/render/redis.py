"""Pure renders for Azure Managed Redis (components/redis.py wires them): the fixed security
settings, what a service's landing zone gets (a NetworkPolicy to the private endpoint, the
ConfigMap ``<svc>-redis``), its client contract, and the ACL rule that says "its own keys only".

Least privilege inside Redis: the stable API (2025-07-01, the pinned SDK) assigns only the
built-in access policy ``default`` (full data access). Custom ACL-string access policies exist
only in a preview API. The platform therefore applies ``default`` to each service's own identity
and makes the key prefix ``<service>:`` a contract; :func:`acl_rule` is the rule that says the
same thing as an ACL, proven on a real Redis (tests/test_redis_server.py), ready to become a
custom access policy when that API is stable (docs/redis.md)."""

from __future__ import annotations

from typing import Any

from ..settings import StackSettings

PORT = 10000  # the database's TLS port (EnterpriseCluster: the single proxy endpoint)
SCOPE = "https://redis.azure.com/.default"  # Entra token scope for the data plane
DNS_ZONE = "privatelink.redis.azure.net"
PRIVATE_LINK_GROUP = "redisEnterprise"
DATABASE = "default"  # the only database name Azure Managed Redis accepts
ACCESS_POLICY = "default"  # the only access policy the stable API can assign
MINIMUM_TLS = "1.2"
CONNECTION_EVENTS = "ConnectionEvents"  # the database's log category (table REDConnectionEvents)
CONFIGMAP_KEYS = ("REDIS_HOST", "REDIS_PORT", "REDIS_TLS", "REDIS_USERNAME", "REDIS_SCOPE", "REDIS_KEY_PREFIX")
# Commands a service never needs and that would reach past its prefix or the server's state:
# SCAN and RANDOMKEY take no key argument, so key patterns cannot limit them (they list every
# service's key names); @dangerous holds KEYS, FLUSHALL/FLUSHDB, CONFIG, DEBUG, MONITOR, ACL, ...
DENIED = ("-@dangerous", "-scan", "-randomkey")
ALLOWED = ("+@read", "+@write", "+@connection", "+@transaction")


def key_prefix(svc: str) -> str:
    return f"{svc}:"


def acl_rule(svc: str) -> str:
    """The ACL rule (ACL SETUSER syntax, without the user's name and secret) for one service:
    its own keys and channels, read/write/transactions, nothing dangerous."""
    prefix = key_prefix(svc)
    return " ".join(["on", "resetkeys", f"~{prefix}*", "resetchannels", f"&{prefix}*", "-@all", *ALLOWED, *DENIED])


def host_name(cluster_name: str, location: str) -> str:
    """``<cluster>.<region>.redis.azure.net``; the private DNS zone resolves it to the endpoint."""
    return f"{cluster_name}.{location}.redis.azure.net"


def egress_policy(s: StackSettings, svc: str, labels: dict[str, str]) -> dict:
    """Egress from the service's pods to the private endpoint's subnet on the database port only
    (the endpoint's address is assigned by Azure at deploy time; nothing else in that subnet
    listens on 10000, and the subnet's NSG admits 10000 from the node subnet only)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-redis", "namespace": svc, "labels": labels},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"ipBlock": {"cidr": s.network.endpoints_subnet}}],
                    "ports": [{"protocol": "TCP", "port": PORT}],
                }
            ],
        },
    }


def configmap(svc: str, host: Any, username: Any, labels: dict[str, str]) -> dict:
    """What the service's pods read (env from ConfigMap ``<svc>-redis``): no secret at all, the
    token comes from the pod's workload identity. ``username`` is the identity's object ID."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": configmap_name(svc), "namespace": svc, "labels": labels},
        "data": {
            "REDIS_HOST": host,
            "REDIS_PORT": str(PORT),
            "REDIS_TLS": "true",
            "REDIS_USERNAME": username,
            "REDIS_SCOPE": SCOPE,
            "REDIS_KEY_PREFIX": key_prefix(svc),
        },
    }


def configmap_name(svc: str) -> str:
    return f"{svc}-redis"


def contract(s: StackSettings, svc: str) -> dict:
    """The Redis section of the service's client contract (build/<stack>/rabbitmq/clients/<svc>.json)."""
    r = s.redis
    return {
        "host": "<cluster>.<region>.redis.azure.net (deploy time): ConfigMap "
        f"{configmap_name(svc)} key REDIS_HOST, output redisHost",
        "port": PORT,
        "tls": {"required": True, "minimumVersion": MINIMUM_TLS, "plaintext": "refused"},
        "auth": {
            "kind": "Microsoft Entra token (no access keys)",
            "scope": SCOPE,
            "username": "the service identity's object ID (ConfigMap key REDIS_USERNAME)",
            "password": "an access token for the scope, from the pod's workload identity",
            "reauthenticate": "before the token expires (AUTH <username> <new token> on the open connection)",
            "python": "redis-entraid (create_from_default_azure_credential)",
            "dotnet": "Microsoft.Azure.StackExchangeRedis (ConfigureForAzureWithTokenCredentialAsync)",
        },
        "clustering": {
            "policy": r.clustering_policy,
            "client": "a standalone (non-cluster) client on one endpoint; multi-key commands only across"
            " DEL, MSET, MGET, EXISTS, UNLINK, TOUCH or with keys in one hash slot ({...} tags)",
        },
        "keys": {
            "prefix": key_prefix(svc),
            "rule": "every key and channel starts with the prefix; every key carries a TTL",
            "acl": acl_rule(svc),
        },
        "database": DATABASE,
        "accessPolicy": ACCESS_POLICY,
        "evictionPolicy": r.eviction_policy,
        "kubernetes": {"configMap": configmap_name(svc), "keys": list(CONFIGMAP_KEYS)},
    }
