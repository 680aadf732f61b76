"""Rules across keys and per environment: overlapping networks, zone-redundant HA, the prod
minimums, the broker topology's consistency. Each broken rule is a Problem naming its own key.

The rules are small checks (``CHECKS``), each reading as few parts of the stack as it can: when
some parts have shape errors, ``loading.validate`` still runs every check that reads only valid
parts, and counts the others as waiting."""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic.alias_generators import to_camel

from .aks import POOL_NAME_PATTERN
from .errors import Problem

POOL_NAME_RULE = "lowercase letters and digits, starting with a letter, 1-12 characters"

if TYPE_CHECKING:
    from .stack import StackSettings


def environment_rules(s: StackSettings) -> list[Problem]:
    """Rules that depend on more than one key or on the environment: every check in CHECKS."""
    return [problem for check in CHECKS for problem in check(s)]


def network_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    net = s.network
    space = ipaddress.IPv4Network(net.address_space)  # every Cidr field is an IPv4 network (check_cidr)
    subnets = {
        "network.aksSubnet": net.aks_subnet,
        "network.postgresSubnet": net.postgres_subnet,
        "network.endpointsSubnet": net.endpoints_subnet,
    }
    for key, cidr in subnets.items():
        if not ipaddress.IPv4Network(cidr).subnet_of(space):
            p.append(Problem(key=key, message=f"must lie inside network.addressSpace {net.address_space}", got=cidr))
    items = list(subnets.items())
    for i, (k1, c1) in enumerate(items):
        for k2, c2 in items[i + 1 :]:
            if ipaddress.ip_network(c1).overlaps(ipaddress.ip_network(c2)):
                p.append(Problem(key=k2, message=f"must not overlap {k1} {c1}", got=c2))
    return p


def aks_network_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    net = s.network
    space = ipaddress.IPv4Network(net.address_space)
    for key, cidr in {"aks.podCidr": s.aks.pod_cidr, "aks.serviceCidr": s.aks.service_cidr}.items():
        if ipaddress.ip_network(cidr).overlaps(space):
            p.append(Problem(key=key, message=f"must not overlap network.addressSpace {net.address_space}", got=cidr))
    return p


def aks_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    if ipaddress.ip_address(s.aks.dns_service_ip) not in ipaddress.ip_network(s.aks.service_cidr):
        p.append(
            Problem(
                key="aks.dnsServiceIp",
                message=f"must lie inside aks.serviceCidr {s.aks.service_cidr}",
                got=s.aks.dns_service_ip,
            )
        )
    p.extend(node_pool_rules(s))

    api = s.aks.api_server
    if not api.private_cluster and not api.authorized_ip_ranges:
        p.append(
            Problem(
                key="aks.apiServer",
                message="must either set privateCluster: true or list authorizedIpRanges"
                " (an API server open to the internet is not allowed)",
                got=api.model_dump(by_alias=True),
            )
        )
    for i, r in enumerate(api.authorized_ip_ranges):
        if r.startswith("0.0.0.0"):
            p.append(
                Problem(
                    key=f"aks.apiServer.authorizedIpRanges[{i}]",
                    message="must not open the API server to the whole internet",
                    got=r,
                )
            )
    return p


def node_pool_rules(s: StackSettings) -> list[Problem]:
    """At least one user pool; names AKS accepts, none taken twice (the system pool included);
    min <= max; a pool's zones among the cluster's."""
    a = s.aks
    p: list[Problem] = []
    if not a.user_pools:
        p.append(Problem(key="aks.userPools", message="must list at least one user pool", got={}))
    if not re.match(POOL_NAME_PATTERN, a.system_pool.name):
        p.append(
            Problem(
                key="aks.systemPool.name",
                message=f"must be a valid AKS pool name ({POOL_NAME_RULE})",
                got=a.system_pool.name,
            )
        )
    for name, pool in a.user_pools.items():
        key = f"aks.userPools.{name}"
        if not re.match(POOL_NAME_PATTERN, name):
            p.append(Problem(key=key, message=f"is not a valid AKS pool name ({POOL_NAME_RULE})", has_got=False))
        if name == a.system_pool.name:
            p.append(
                Problem(key=key, message=f"must not reuse the system pool's name '{a.system_pool.name}'", has_got=False)
            )
        if pool.min_count > pool.max_count:
            p.append(
                Problem(
                    key=f"{key}.minCount",
                    message=f"must not exceed {key}.maxCount ({pool.max_count})",
                    got=pool.min_count,
                )
            )
        outside = sorted(set(pool.zones or []) - set(a.availability_zones))
        if outside:
            p.append(
                Problem(
                    key=f"{key}.zones",
                    message=f"must lie within aks.availabilityZones {json.dumps(list(a.availability_zones))}",
                    got=pool.zones,
                )
            )
    return p


def key_vault_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    for i, r in enumerate(s.key_vault.allowed_ip_ranges):
        if r.startswith("0.0.0.0"):
            p.append(
                Problem(
                    key=f"keyVault.allowedIpRanges[{i}]", message="must not open Key Vault to the whole internet", got=r
                )
            )
    return p


def postgres_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    if (
        s.postgres.high_availability == "ZoneRedundant"
        and s.postgres.availability_zone == s.postgres.standby_availability_zone
    ):
        p.append(
            Problem(
                key="postgres.standbyAvailabilityZone",
                message=f"must differ from postgres.availabilityZone ({s.postgres.availability_zone})"
                " for zone-redundant HA",
                got=s.postgres.standby_availability_zone,
            )
        )
    if s.postgres.high_availability != "Disabled" and s.postgres.sku_tier == "Burstable":
        p.append(
            Problem(
                key="postgres.skuTier",
                message="must be GeneralPurpose or MemoryOptimized when high availability is on",
                got=s.postgres.sku_tier,
            )
        )
    return p


def rotation_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    known = s.secret_names()
    for name in s.key_vault.rotation:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known secrets: {', '.join(known)}"
            p.append(
                Problem(key=f"keyVault.rotation.{name}", message=f"is not a generated secret{hint}", has_got=False)
            )
    return p


def prod_broker_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    if s.is_prod:
        if s.broker.replicas < 3:
            p.append(
                Problem(
                    key="broker.replicas",
                    message="must be at least 3 in prod (one broker per zone)",
                    got=s.broker.replicas,
                )
            )
        if s.broker.plaintext_listener:
            p.append(Problem(key="broker.plaintextListener", message="must be false in prod (AMQPS only)", got=True))
    return p


def prod_aks_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    if s.is_prod:
        if sorted(s.aks.availability_zones) != ["1", "2", "3"]:
            p.append(
                Problem(
                    key="aks.availabilityZones",
                    message='must be ["1", "2", "3"] in prod (three availability zones)',
                    got=s.aks.availability_zones,
                )
            )
        if s.aks.tier == "Free":
            p.append(
                Problem(key="aks.tier", message="must be 'Standard' or 'Premium' in prod (uptime SLA)", got=s.aks.tier)
            )
        if s.aks.system_pool.count < 3:
            p.append(
                Problem(
                    key="aks.systemPool.count",
                    message="must be at least 3 in prod (one node per zone)",
                    got=s.aks.system_pool.count,
                )
            )
    return p


def prod_postgres_rules(s: StackSettings) -> list[Problem]:
    p: list[Problem] = []
    if s.is_prod:
        if s.postgres.high_availability != "ZoneRedundant":
            p.append(
                Problem(
                    key="postgres.highAvailability",
                    message="must be 'ZoneRedundant' in prod",
                    got=s.postgres.high_availability,
                )
            )
        if not s.postgres.geo_redundant_backup:
            p.append(Problem(key="postgres.geoRedundantBackup", message="must be true in prod", got=False))
        if s.postgres.password_auth:
            p.append(
                Problem(
                    key="postgres.passwordAuth",
                    message="must be false in prod (Entra ID sign-in only; the admin password is break-glass)",
                    got=True,
                )
            )
        if s.postgres.entra_admin_group is None:
            p.append(
                Problem(
                    key="postgres.entraAdminGroup",
                    message="is required in prod (the Microsoft Entra group that administers PostgreSQL)",
                    has_got=False,
                )
            )
        if s.postgres.backup_retention_days < 30:
            p.append(
                Problem(
                    key="postgres.backupRetentionDays",
                    message="must be at least 30 in prod",
                    got=s.postgres.backup_retention_days,
                )
            )
    return p


def _days(duration: str) -> float:
    return int(duration[:-1]) / {"s": 86400, "m": 1440, "h": 24, "d": 1}[duration[-1]]


def observability_rules(s: StackSettings) -> list[Problem]:
    o = s.observability
    p: list[Problem] = []
    names = [slo.name for slo in o.slos]
    for i, slo in enumerate(o.slos):
        if names.count(slo.name) > 1 and names.index(slo.name) != i:
            p.append(Problem(key=f"observability.slos[{i}].name", message="must be unique", got=slo.name))
        if slo.kind == "latency" and slo.latency_threshold_seconds is None:
            p.append(
                Problem(
                    key=f"observability.slos[{i}].latencyThresholdSeconds",
                    message="is required for a latency SLO",
                    has_got=False,
                )
            )
    if s.is_prod:
        if _days(o.prometheus.retention) < 30:
            p.append(
                Problem(
                    key="observability.prometheus.retention",
                    message="must be at least 30d in prod",
                    got=o.prometheus.retention,
                )
            )
        if o.prometheus.replicas < 2:
            p.append(
                Problem(
                    key="observability.prometheus.replicas",
                    message="must be at least 2 in prod (alerts keep being evaluated while a node drains)",
                    got=o.prometheus.replicas,
                )
            )
        if o.alertmanager.replicas < 2:
            p.append(
                Problem(
                    key="observability.alertmanager.replicas",
                    message="must be at least 2 in prod",
                    got=o.alertmanager.replicas,
                )
            )
        if o.jaeger.storage != "badger":
            p.append(
                Problem(
                    key="observability.jaeger.storage",
                    message="must be 'badger' (persistent) in prod",
                    got=o.jaeger.storage,
                )
            )
        for key in ("pagerduty_routing_key", "slack_webhook_url", "deadmans_switch_url"):
            if getattr(o.alerting, key) is None:
                p.append(
                    Problem(
                        key=f"observability.alerting.{to_camel(key)}",
                        message="is required in prod (a secure value: pulumi config set --secret --path ...)",
                        has_got=False,
                    )
                )
    return p


def broker_rules(s: StackSettings) -> list[Problem]:
    b, t = s.broker, s.broker.topology
    p: list[Problem] = []
    if b.replicas % 2 == 0:
        p.append(Problem(key="broker.replicas", message="must be odd (quorum queues need a majority)", got=b.replicas))
    if b.backend == "cloudamqp" and b.cloudamqp is None:
        p.append(
            Problem(key="broker.cloudamqp", message="is required when broker.backend is 'cloudamqp'", has_got=False)
        )
    if t.exchange == t.dead_letter_exchange:
        p.append(
            Problem(
                key="broker.topology.deadLetterExchange",
                message="must differ from broker.topology.exchange",
                got=t.dead_letter_exchange,
            )
        )
    if not t.services:
        p.append(Problem(key="broker.topology.services", message="must list at least one service", got={}))
    owners: dict[str, str] = {}
    for svc, cfg in t.services.items():
        base = f"broker.topology.services.{svc}"
        queue = cfg.queue or f"{svc}.events"
        if queue.startswith("dlq.") or queue in (t.exchange, t.dead_letter_exchange):
            p.append(
                Problem(
                    key=f"{base}.queue",
                    message="must not use the reserved dlq.* names or an exchange's name",
                    got=queue,
                )
            )
        if cfg.bindings:
            if queue in owners:
                p.append(
                    Problem(
                        key=f"{base}.queue",
                        message=f"must not claim queue '{queue}', which service '{owners[queue]}' already uses",
                        got=queue,
                    )
                )
            owners.setdefault(queue, svc)
        elif cfg.dead_letter_queue or cfg.queue:
            p.append(
                Problem(
                    key=f"{base}.bindings",
                    message="must list at least one binding pattern when the service has a queue",
                    got=[],
                )
            )
        dupes = sorted({x for x in cfg.bindings if cfg.bindings.count(x) > 1})
        if dupes:
            p.append(
                Problem(
                    key=f"{base}.bindings", message=f"must not repeat a pattern ({', '.join(dupes)})", got=cfg.bindings
                )
            )
        dlx = cfg.overrides.dead_letter_exchange
        if dlx is not None and dlx != t.dead_letter_exchange:
            p.append(
                Problem(
                    key=f"{base}.overrides.deadLetterExchange",
                    message=f"must name the declared dead-letter exchange '{t.dead_letter_exchange}'",
                    got=dlx,
                )
            )
    return p


def prod_rollouts_rules(s: StackSettings) -> list[Problem]:
    r = s.rollouts
    p: list[Problem] = []
    if s.is_prod and r.enabled and r.controller.replicas < 2:
        p.append(
            Problem(
                key="rollouts.controller.replicas",
                message="must be at least 2 in prod (a node drain must not stop every rollout; a PDB keeps one)",
                got=r.controller.replicas,
            )
        )
    return p


# Every check, in the order its lines are reported. A check reads the parts of the stack it needs
# (network, aks, ..., environment); ``loading.validate`` runs those whose parts all have a valid shape.
CHECKS: list[Callable[[StackSettings], list[Problem]]] = [
    network_rules,
    aks_network_rules,
    aks_rules,
    key_vault_rules,
    postgres_rules,
    rotation_rules,
    broker_rules,
    observability_rules,
    prod_broker_rules,
    prod_aks_rules,
    prod_postgres_rules,
    prod_rollouts_rules,
]
