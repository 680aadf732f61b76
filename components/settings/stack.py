"""The root model: the whole stack's settings, with the cross-key and per-environment rules
(rules.py) run as a model validator once every part has its shape."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .aks import AksSettings
from .base import Environment, Model
from .broker import BrokerSettings
from .budget import BudgetSettings
from .edge import EdgeSettings
from .keyvault import KeyVaultSettings
from .network import NetworkSettings
from .observability import ObservabilitySettings
from .postgres import PostgresSettings
from .recovery import Recovery
from .redis import RedisSettings, redis_in_use, redis_services
from .registry import RegistrySettings
from .rollouts import RolloutsSettings
from .rules import environment_rules
from .services import Services


class StackSettings(Model):
    environment: Environment
    location: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]+$")]
    name_prefix: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{1,9}$")] = "ebb"
    tags: dict[str, str] = Field(default_factory=dict)
    network: NetworkSettings = NetworkSettings()
    aks: AksSettings = AksSettings()
    postgres: PostgresSettings = PostgresSettings()
    key_vault: KeyVaultSettings
    broker: BrokerSettings = BrokerSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    services: Services = Field(default_factory=dict)
    edge: EdgeSettings = EdgeSettings()
    budget: BudgetSettings = BudgetSettings()
    registry: RegistrySettings = RegistrySettings()
    rollouts: RolloutsSettings = RolloutsSettings()
    redis: RedisSettings = RedisSettings()
    # set in a recovery stack only: the stack it rebuilds in that stack's DR region (docs/disaster-recovery.md)
    recovery: Recovery | None = None

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"

    @property
    def protect(self) -> bool:
        """Stateful resources are protected (``protect=True``) in production."""
        return self.is_prod

    def name(self, *parts: str) -> str:
        """Resource name convention: ``<prefix>-<env>-<part>...``."""
        return "-".join([self.name_prefix, self.environment, *parts])

    @property
    def vhost(self) -> str:
        return self.broker.topology.vhost or f"events-{self.environment}"

    @model_validator(mode="after")
    def _environment_rules(self) -> StackSettings:
        """Rules across keys and per environment (prod: three zones, zone-redundant HA, ...).
        Each broken rule names its own key; `validate` turns them into lines."""
        problems = environment_rules(self)
        if problems:
            raise PydanticCustomError(
                "environment_rules",
                "{count} environment rule(s) broken",
                {"count": len(problems), "problems": problems},
            )
        return self

    @property
    def database_subnet(self) -> str:
        """The subnet the stack's PostgreSQL server lives in: its own, or in a recovery stack the
        promoted geo-replica's (the network policies and NSG rules allow 5432 to it)."""
        return self.recovery.postgres_subnet if self.recovery else self.network.postgres_subnet

    @property
    def databases(self) -> list[str]:
        """The services that own a PostgreSQL database (``services.<name>.database: true``)."""
        return [svc for svc, cfg in self.services.items() if cfg.database]

    @property
    def redis_services(self) -> list[str]:
        """The services with ``services.<name>.redis: true`` (each gets its own Redis access)."""
        return redis_services(self)

    @property
    def redis_enabled(self) -> bool:
        """Redis exists when a service asks for it or ``redis.enabled`` is true."""
        return redis_in_use(self)

    @property
    def scaled_services(self) -> list[str]:
        """The services KEDA scales on their queue's depth (``services.<name>.scaling``)."""
        return [svc for svc, cfg in self.services.items() if cfg.scaling is not None]

    def secret_names(self) -> list[str]:
        """Every secret the stack generates (the keys allowed under keyVault.rotation)."""
        names = ["postgres-admin", "broker-admin", "grafana-admin", "broker-keda-monitor"] + [
            f"broker-{svc}" for svc in self.services
        ]
        # The load test's user (broker.loadTest): generated whether or not the test runs, since
        # Key Vault's purge protection would block re-creating a deleted secret of that name.
        if self.broker.backend == "in-cluster":
            names.append("broker-perf-test")
        return names
