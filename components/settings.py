"""Typed stack settings: one pydantic model for the whole stack.

The model is read from the stack's structured Pulumi config (``event-backbone:<key>``),
validated in full before any resource is registered, and every problem is reported as
one line naming the stack file, the full key, what is allowed and what was given::

    Pulumi.prod.yaml: event-backbone:postgres.backupRetentionDays must be between 7 and 35 (got 3)

Field names are snake_case in Python and camelCase in the stack files (aliases).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import ipaddress
import json
import types
from collections.abc import Iterable
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

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


class Model(BaseModel):
    """Base for every settings model: camelCase keys, unknown keys are errors, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )


def _check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"must be a valid IPv4 network in CIDR form ({exc})") from None
    return value


# --------------------------------------------------------------------------- network
class NetworkSettings(Model):
    address_space: Cidr = "10.40.0.0/16"
    aks_subnet: Cidr = "10.40.0.0/20"
    postgres_subnet: Cidr = "10.40.16.0/24"
    endpoints_subnet: Cidr = "10.40.17.0/24"

    @field_validator("address_space", "aks_subnet", "postgres_subnet", "endpoints_subnet")
    @classmethod
    def _valid_cidr(cls, v: str) -> str:
        return _check_cidr(v)


# --------------------------------------------------------------------------- AKS
class SystemPool(Model):
    vm_size: str = "Standard_D4ds_v5"
    count: int = Field(default=3, ge=1, le=10)


class UserPool(Model):
    vm_size: str = "Standard_D4ds_v5"
    min_count: int = Field(default=2, ge=1, le=100)
    max_count: int = Field(default=6, ge=1, le=100)


class MaintenanceWindow(Model):
    day_of_week: DayOfWeek = "Sunday"
    start_time: HourMinute = "02:00"
    duration_hours: int = Field(default=4, ge=4, le=24)
    utc_offset: Annotated[str, Field(pattern=r"^[+-]([01]\d|2[0-3]):[0-5]\d$")] = "+00:00"


class ApiServer(Model):
    authorized_ip_ranges: list[IpOrCidr] = Field(default_factory=list)
    private_cluster: bool = False


class AksSettings(Model):
    kubernetes_version: Annotated[str, Field(pattern=r"^1\.\d{2}(\.\d{1,2})?$")] = "1.33"
    tier: Literal["Free", "Standard", "Premium"] = "Standard"
    availability_zones: list[Zone] = Field(default_factory=lambda: ["1", "2", "3"])
    system_pool: SystemPool = SystemPool()
    user_pool: UserPool = UserPool()
    max_pods: int = Field(default=50, ge=50, le=250)
    network_policy: Literal["cilium", "calico", "azure"] = "cilium"
    pod_cidr: Cidr = "192.168.0.0/16"
    service_cidr: Cidr = "172.16.0.0/16"
    dns_service_ip: Annotated[str, Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}$")] = "172.16.0.10"
    upgrade_channel: Literal["patch", "stable", "rapid", "node-image"] = "stable"
    node_os_upgrade_channel: Literal["NodeImage", "SecurityPatch"] = "NodeImage"
    maintenance_window: MaintenanceWindow = MaintenanceWindow()
    api_server: ApiServer = ApiServer()
    admin_group_object_ids: list[Uuid] = Field(default_factory=list)
    log_retention_days: int = Field(default=30, ge=30, le=730)
    image_cleaner_interval_hours: int = Field(default=168, ge=24, le=2160)

    @field_validator("pod_cidr", "service_cidr")
    @classmethod
    def _valid_cidr(cls, v: str) -> str:
        return _check_cidr(v)


# --------------------------------------------------------------------------- PostgreSQL
class PostgresMaintenance(Model):
    day_of_week: int = Field(default=0, ge=0, le=6)  # 0 = Sunday, as ARM counts
    start_hour: int = Field(default=3, ge=0, le=23)
    start_minute: int = Field(default=0, ge=0, le=59)


class PostgresSettings(Model):
    version: Literal["16"] = "16"
    sku_name: str = "Standard_D2ds_v5"
    sku_tier: Literal["Burstable", "GeneralPurpose", "MemoryOptimized"] = "GeneralPurpose"
    storage_size_gb: int = Field(default=128, ge=32, le=16384)
    backup_retention_days: int = Field(default=7, ge=7, le=35)
    geo_redundant_backup: bool = False
    high_availability: Literal["Disabled", "SameZone", "ZoneRedundant"] = "Disabled"
    availability_zone: Zone = "1"
    standby_availability_zone: Zone = "2"
    ssl_min_protocol_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    admin_login: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{2,30}$")] = "pgadmin"
    # Set to adopt a server restored under another name (docs/runbooks/postgres-restore.md).
    server_name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")] | None = None
    maintenance_window: PostgresMaintenance = PostgresMaintenance()
    databases: list[ServiceName] = Field(default_factory=list)

    @field_validator("databases")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dupes = sorted({d for d in v if v.count(d) > 1})
        if dupes:
            raise ValueError(f"must not repeat a database ({', '.join(dupes)} listed twice)")
        return v


# --------------------------------------------------------------------------- Key Vault
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


# --------------------------------------------------------------------------- broker
# Topic-exchange binding pattern: dot-separated words, each a literal word, '*' or '#'.
BindingPattern = Annotated[str, Field(pattern=r"^(\*|#|[a-z0-9_-]+)(\.(\*|#|[a-z0-9_-]+))*$")]
ObjectName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,120}$")]  # queue / exchange / vhost
Quantity = Annotated[str, Field(pattern=r"^\d+(\.\d+)?(m)?$")]
Memory = Annotated[str, Field(pattern=r"^\d+(Mi|Gi)$")]
Gibibytes = Annotated[str, Field(pattern=r"^\d+Gi$")]
DAY_MS = 86_400_000


class QueueDefaults(Model):
    message_ttl_ms: int = Field(default=DAY_MS, ge=1000, le=30 * DAY_MS)
    max_length: int = Field(default=10_000, ge=1, le=10_000_000)
    delivery_limit: int = Field(default=5, ge=1, le=100)


class QueueOverrides(Model):
    message_ttl_ms: Annotated[int, Field(ge=1000, le=30 * DAY_MS)] | None = None
    max_length: Annotated[int, Field(ge=1, le=10000000)] | None = None
    delivery_limit: Annotated[int, Field(ge=1, le=100)] | None = None
    dead_letter_exchange: ObjectName | None = None


class ServiceTopology(Model):
    queue: ObjectName | None = None  # default: <service>.events
    bindings: list[BindingPattern] = Field(default_factory=list)  # none: a publisher only
    dead_letter_queue: bool = False  # a dlq.<service> queue of its own, besides dlq.all
    overrides: QueueOverrides = QueueOverrides()


class Topology(Model):
    vhost: ObjectName | None = None  # default: events-<environment>
    exchange: ObjectName = "bloodbank.events.v1"
    dead_letter_exchange: ObjectName = "bloodbank.events.dlq"
    dead_letter_retention_days: int = Field(default=7, ge=1, le=90)
    defaults: QueueDefaults = QueueDefaults()
    services: dict[ServiceName, ServiceTopology] = Field(default_factory=dict)


class BrokerResources(Model):
    cpu_request: Quantity = "500m"
    cpu_limit: Quantity | None = None
    memory: Memory = "2Gi"  # request = limit: RabbitMQ sizes its memory alarm from it


class CloudAmqpSettings(Model):
    plan: str = "penguin-1"
    region: str = "azure-arm::westeurope"
    pagerduty_routing_key: str | None = None  # a secure value in the stack file
    slack_webhook_url: str | None = None  # a secure value in the stack file
    dlq_alarm_messages: int = Field(default=1000, ge=1)
    disk_alarm_percent: int = Field(default=80, ge=10, le=95)
    memory_alarm_percent: int = Field(default=80, ge=10, le=95)


class BrokerSettings(Model):
    backend: Literal["in-cluster", "cloudamqp"] = "in-cluster"
    namespace: ServiceName = "messaging"
    cluster_name: ServiceName = "rabbitmq"
    operator_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = "2.22.3"
    image: str = "rabbitmq:4.1.4-management"
    replicas: int = Field(default=3, ge=1, le=7)
    storage_size: Gibibytes = "20Gi"
    storage_class: ServiceName = "rabbitmq-premium-zrs"
    resources: BrokerResources = BrokerResources()
    plaintext_listener: bool = False
    event_services_label: Annotated[str, Field(pattern=r"^[a-z0-9./-]+$")] = "event-backbone.io/event-services"
    monitoring_namespace: ServiceName = "monitoring"
    topology: Topology = Topology()
    cloudamqp: CloudAmqpSettings | None = None


# --------------------------------------------------------------------------- observability
Duration = Annotated[str, Field(pattern=r"^\d+(s|m|h|d)$")]
MetricName = Annotated[str, Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
LabelName = Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]


class MetricContract(Model):
    """What services emit (README: the metric contract) and what the broker exporter serves."""

    events_published: MetricName = "events_published_total"
    events_stored: MetricName = "events_stored_total"
    end_to_end_latency: MetricName = "event_end_to_end_latency_seconds"
    queue_messages: MetricName = "rabbitmq_detailed_queue_messages"
    service_label: LabelName = "service"
    outcome_label: LabelName = "outcome"
    success_value: str = "success"
    failure_value: str = "failure"


class Slo(Model):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{2,40}$")]
    kind: Literal["publish-success", "storage-success", "latency", "broker-availability"]
    objective_percent: float = Field(ge=90, le=99.999)
    latency_threshold_seconds: float | None = Field(default=None, gt=0)


def default_slos() -> list[Slo]:
    return [
        Slo(name="event-publish-success", kind="publish-success", objective_percent=99.9),
        Slo(name="event-storage-success", kind="storage-success", objective_percent=99.9),
        Slo(name="event-e2e-latency", kind="latency", objective_percent=99.0, latency_threshold_seconds=0.5),
        Slo(name="broker-availability", kind="broker-availability", objective_percent=99.9),
    ]


class Thresholds(Model):
    dlq_backlog_messages: int = Field(default=1000, ge=1)
    success_rate_min_percent: float = Field(default=99.5, ge=50, le=100)
    e2e_p99_seconds: float = Field(default=1.0, gt=0, alias="e2eP99Seconds")  # not to_camel's "e2EP99Seconds"
    volume_free_min_percent: int = Field(default=20, ge=5, le=50)
    memory_high_percent: int = Field(default=80, ge=50, le=99)


class Alerting(Model):
    pagerduty_routing_key: str | None = None  # secure value
    slack_webhook_url: str | None = None  # secure value
    slack_channel: Annotated[str, Field(pattern=r"^#[a-z0-9_-]+$")] = "#event-backbone-alerts"
    deadmans_switch_url: str | None = None  # secure value (e.g. a healthchecks.io ping URL)
    runbook_base_url: str = "https://github.com/event-backbone/event-backbone/blob/main/docs/runbooks"


class PrometheusSettings(Model):
    retention: Duration = "7d"
    storage_size: Gibibytes = "50Gi"
    replicas: int = Field(default=1, ge=1, le=3)


class AlertmanagerSettings(Model):
    replicas: int = Field(default=1, ge=1, le=5)
    storage_size: Gibibytes = "5Gi"


class GrafanaSettings(Model):
    storage_size: Gibibytes = "10Gi"
    hostname: Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")] | None = None
    tls_secret_name: ServiceName = "grafana-tls"
    ingress_class_name: str = "webapprouting.kubernetes.azure.com"


class JaegerSettings(Model):
    storage: Literal["memory", "badger"] = "memory"
    retention: Duration = "72h"
    storage_size: Gibibytes = "20Gi"


class TracingSettings(Model):
    sampling_percentage: float = Field(default=100, gt=0, le=100)
    slow_trace_threshold_ms: int = Field(default=1000, ge=1)


class ObservabilitySettings(Model):
    namespace: ServiceName = "monitoring"
    storage_class: ServiceName = "managed-csi-premium"
    slo_window_days: int = Field(default=30, ge=7, le=90)
    metrics: MetricContract = MetricContract()
    slos: list[Slo] = Field(default_factory=default_slos)
    thresholds: Thresholds = Thresholds()
    alerting: Alerting = Alerting()
    prometheus: PrometheusSettings = PrometheusSettings()
    alertmanager: AlertmanagerSettings = AlertmanagerSettings()
    grafana: GrafanaSettings = GrafanaSettings()
    jaeger: JaegerSettings = JaegerSettings()
    tracing: TracingSettings = TracingSettings()


# --------------------------------------------------------------------------- stack
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

    def secret_names(self) -> list[str]:
        """Every secret the stack generates (the keys allowed under keyVault.rotation)."""
        return ["postgres-admin", "broker-admin", "grafana-admin"] + [
            f"broker-{svc}" for svc in self.broker.topology.services
        ]


# =========================================================================== errors
class Problem(BaseModel):
    key: str  # dotted camelCase path below the project namespace, e.g. "postgres.backupRetentionDays"
    message: str  # "must be between 7 and 35"
    got: Any = None
    has_got: bool = True

    def line(self, stack_file: str) -> str:
        got = f" (got {_show(self.got)})" if self.has_got else ""
        return f"{stack_file}: {PROJECT}:{self.key} {self.message}{got}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (dict, list, bool)) or value is None:
        return json.dumps(value)
    return str(value)


try:  # pulumi is always installed with the program; settings stays importable without it
    from pulumi import RunError as _Base
except ImportError:  # pragma: no cover
    _Base = Exception


class ConfigError(_Base):
    """Invalid stack configuration: one line per problem."""

    def __init__(self, stack_file: str, problems: list[Problem]):
        self.stack_file = stack_file
        self.problems = problems
        self.lines = [p.line(stack_file) for p in problems]
        super().__init__("invalid stack configuration:\n" + "\n".join(self.lines))


# Walk a model along an error location to learn the field's constraints and siblings.
def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):  # Optional[X] and X | None
            args = [a for a in get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation
        else:
            return annotation


def _field_at(model: type[BaseModel], loc: tuple) -> Any:
    """The FieldInfo of the last key of an error location (None if it is not a field)."""
    current: Any = model
    info = None
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            by_alias = {f.alias or n: f for n, f in current.model_fields.items()}
            info = by_alias.get(part) or current.model_fields.get(part)
            if info is None:
                return None
            current = _unwrap(info.annotation)
        elif get_origin(current) in (list, dict):
            current = _unwrap(get_args(current)[-1])
        else:
            return info
    return info


def _keys_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The camelCase keys allowed at a location (the model that loc points into)."""
    target: Any = model
    if loc:
        info = _field_at(model, loc)
        target = _unwrap(info.annotation) if info is not None else None
        while get_origin(target) in (list, dict):
            target = _unwrap(get_args(target)[-1])
    if isinstance(target, type) and issubclass(target, BaseModel):
        return sorted(f.alias or n for n, f in target.model_fields.items())
    return []


def _constraints(metadata: Iterable[Any], annotation: Any = None) -> dict[str, Any]:
    """ge/gt/le/lt/pattern from a field's metadata, also through Optional[Annotated[...]]."""
    metas = list(metadata or [])
    for arg in get_args(annotation):
        if get_origin(arg) is Annotated:
            metas += [m for a in get_args(arg)[1:] for m in getattr(a, "metadata", [a])]
    found: dict[str, Any] = {}
    for meta in metas:
        for name in ("ge", "gt", "le", "lt", "pattern"):
            if getattr(meta, name, None) is not None:
                found.setdefault(name, getattr(meta, name))
    return found


def _field_constraints(info: Any) -> dict[str, Any]:
    return _constraints(getattr(info, "metadata", None), getattr(info, "annotation", None))


def _range_text(c: dict[str, Any]) -> str:
    """'between 7 and 35', 'at least 1', 'greater than 0 and at most 100'; '' without bounds."""
    if "ge" in c and "le" in c:
        return f"between {c['ge']} and {c['le']}" if c["ge"] != c["le"] else f"{c['ge']}"
    words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
    return " and ".join(f"{words[k]} {v}" for k, v in c.items() if k in words)


def _range_message(info: Any, ctx: dict) -> str:
    return "must be " + (_range_text(_field_constraints(info)) or _range_text(ctx))


def _key(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(model: type[BaseModel], err: dict) -> Problem:
    loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
    typ, ctx, given = err["type"], err.get("ctx", {}), err.get("input")
    info = _field_at(model, loc)
    key = _key(loc)
    if typ == "extra_forbidden":
        known = _keys_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else f"; allowed keys: {', '.join(known)}"
        return Problem(key=key, message=f"is not a known key{hint}", has_got=False)
    if typ == "missing":
        return Problem(key=key, message="is required", has_got=False)
    if typ in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return Problem(key=key, message=_range_message(info, ctx), got=given)
    if typ == "literal_error":
        return Problem(key=key, message=f"must be one of {ctx.get('expected')}", got=given)
    if typ == "string_pattern_mismatch":
        label = _PATTERN_LABELS.get(ctx.get("pattern"))
        return Problem(key=key, message=f"must be {label}" if label else f"must match {ctx.get('pattern')}", got=given)
    if typ in ("int_type", "int_parsing", "int_from_float"):
        return Problem(key=key, message="must be a whole number", got=given)
    if typ in ("bool_type", "bool_parsing"):
        return Problem(key=key, message="must be true or false", got=given)
    if typ in ("string_type",):
        return Problem(key=key, message="must be a string", got=given)
    if typ in ("list_type",):
        return Problem(key=key, message="must be a list", got=given)
    if typ in ("dict_type", "model_type", "model_attributes_type"):
        return Problem(key=key, message="must be an object (a YAML mapping)", got=given)
    if typ in ("date_from_datetime_parsing", "date_parsing", "date_type"):
        return Problem(key=key, message="must be a date (YYYY-MM-DD)", got=given)
    if typ == "value_error":
        return Problem(key=key, message=str(ctx.get("error", err["msg"])), got=given)
    return Problem(key=key, message=err["msg"][0].lower() + err["msg"][1:], got=given)


# =========================================================================== rules
def environment_rules(s: StackSettings) -> list[Problem]:
    """Rules that depend on more than one key or on the environment."""
    p: list[Problem] = []
    net = s.network
    space = ipaddress.ip_network(net.address_space)
    subnets = {
        "network.aksSubnet": net.aks_subnet,
        "network.postgresSubnet": net.postgres_subnet,
        "network.endpointsSubnet": net.endpoints_subnet,
    }
    for key, cidr in subnets.items():
        if not ipaddress.ip_network(cidr).subnet_of(space):
            p.append(Problem(key=key, message=f"must lie inside network.addressSpace {net.address_space}", got=cidr))
    items = list(subnets.items())
    for i, (k1, c1) in enumerate(items):
        for k2, c2 in items[i + 1 :]:
            if ipaddress.ip_network(c1).overlaps(ipaddress.ip_network(c2)):
                p.append(Problem(key=k2, message=f"must not overlap {k1} {c1}", got=c2))
    for key, cidr in {"aks.podCidr": s.aks.pod_cidr, "aks.serviceCidr": s.aks.service_cidr}.items():
        if ipaddress.ip_network(cidr).overlaps(space):
            p.append(Problem(key=key, message=f"must not overlap network.addressSpace {net.address_space}", got=cidr))
    if ipaddress.ip_address(s.aks.dns_service_ip) not in ipaddress.ip_network(s.aks.service_cidr):
        p.append(
            Problem(
                key="aks.dnsServiceIp",
                message=f"must lie inside aks.serviceCidr {s.aks.service_cidr}",
                got=s.aks.dns_service_ip,
            )
        )
    if s.aks.user_pool.min_count > s.aks.user_pool.max_count:
        p.append(
            Problem(
                key="aks.userPool.minCount",
                message=f"must not exceed aks.userPool.maxCount ({s.aks.user_pool.max_count})",
                got=s.aks.user_pool.min_count,
            )
        )

    api = s.aks.api_server
    if not api.private_cluster and not api.authorized_ip_ranges:
        p.append(
            Problem(
                key="aks.apiServer",
                message="must either set privateCluster: true or list authorizedIpRanges (an API server open to the internet is not allowed)",
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
    for i, r in enumerate(s.key_vault.allowed_ip_ranges):
        if r.startswith("0.0.0.0"):
            p.append(
                Problem(
                    key=f"keyVault.allowedIpRanges[{i}]", message="must not open Key Vault to the whole internet", got=r
                )
            )
    if (
        s.postgres.high_availability == "ZoneRedundant"
        and s.postgres.availability_zone == s.postgres.standby_availability_zone
    ):
        p.append(
            Problem(
                key="postgres.standbyAvailabilityZone",
                message=f"must differ from postgres.availabilityZone ({s.postgres.availability_zone}) for zone-redundant HA",
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
    known = s.secret_names()
    for name in s.key_vault.rotation:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known secrets: {', '.join(known)}"
            p.append(
                Problem(key=f"keyVault.rotation.{name}", message=f"is not a generated secret{hint}", has_got=False)
            )

    p += broker_rules(s)
    p += observability_rules(s)

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


# =========================================================================== loading
def parse_value(raw: Any) -> Any:
    """Pulumi hands config values over as strings; objects and lists arrive as JSON."""
    if not isinstance(raw, str):
        return raw
    stripped = raw.strip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return raw
    return raw


def validate(raw: dict[str, Any], stack: str) -> StackSettings:
    """Validates a dict of ``{key-without-namespace: value}``; raises ConfigError with every problem."""
    stack_file = f"Pulumi.{stack}.yaml"
    try:
        return StackSettings.model_validate(raw)
    except ValidationError as exc:
        problems: list[Problem] = []
        for e in exc.errors(include_url=False):
            if e["type"] == "environment_rules":
                problems += e["ctx"]["problems"]
            else:
                problems.append(_message(StackSettings, e))
        raise ConfigError(stack_file, problems) from None


def from_config_map(config: dict[str, Any], stack: str, project: str = PROJECT) -> StackSettings:
    """Validates the flat Pulumi config map (``{"event-backbone:postgres": "{...json...}"}``)."""
    prefix = project + ":"
    raw = {k[len(prefix) :]: parse_value(v) for k, v in config.items() if k.startswith(prefix)}
    return validate(raw, stack)


def load() -> StackSettings:
    """Reads and validates the current stack's config (under the CLI or under mocks)."""
    import pulumi
    from pulumi.runtime import config as rconfig

    merged: dict[str, Any] = dict(rconfig.get_config_env())
    merged.update(rconfig.CONFIG.get())
    return from_config_map(merged, pulumi.get_stack(), pulumi.get_project())


# =========================================================================== reference
_PATTERN_LABELS = {
    r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$": "IPv4 CIDR",
    r"^\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?$": "IPv4 address or CIDR",
    r"^\d{1,3}(\.\d{1,3}){3}$": "IPv4 address",
    r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$": "Entra object ID (GUID)",
    r"^([01]\d|2[0-3]):[0-5]\d$": "`HH:MM`",
    r"^[+-]([01]\d|2[0-3]):[0-5]\d$": "`+HH:MM` / `-HH:MM`",
    r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$": "lower-case name (a-z, 0-9, -)",
    r"^[a-z][a-z0-9]+$": "Azure region name",
    r"^[a-z][a-z0-9]{1,9}$": "2-10 lower-case letters/digits",
    r"^1\.\d{2}(\.\d{1,2})?$": "Kubernetes version `1.NN[.P]`",
    r"^[a-z][a-z0-9_]{2,30}$": "lower-case login name",
    r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$": "server name (3-63: a-z, 0-9, -)",
    r"^(\*|#|[a-z0-9_-]+)(\.(\*|#|[a-z0-9_-]+))*$": "a binding pattern: dot-separated words of a-z, 0-9, _ or -, each word may be * or #",
    r"^[a-z0-9][a-z0-9._-]{0,120}$": "a queue/exchange name (a-z, 0-9, ., _, -)",
    r"^\d+(\.\d+)?(m)?$": "a CPU quantity (`500m`, `2`)",
    r"^\d+(Mi|Gi)$": "a memory quantity (`512Mi`, `2Gi`)",
    r"^\d+Gi$": "a size in Gi (`20Gi`)",
    r"^\d+\.\d+\.\d+$": "a version `X.Y.Z`",
    r"^[a-z0-9./-]+$": "a Kubernetes label key",
    r"^\d+(s|m|h|d)$": "a duration (`30s`, `5m`, `72h`, `30d`)",
    r"^[a-zA-Z_:][a-zA-Z0-9_:]*$": "a Prometheus metric name",
    r"^[a-zA-Z_][a-zA-Z0-9_]*$": "a Prometheus label name",
    r"^[a-z][a-z0-9-]{2,40}$": "an SLO name (a-z, 0-9, -)",
    r"^#[a-z0-9_-]+$": "a Slack channel (`#name`)",
    r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$": "a DNS host name",
}


def _label(c: dict[str, Any], fallback: str) -> str:
    pattern = c.get("pattern")
    if pattern:
        return _PATTERN_LABELS.get(pattern, f"`{pattern}`".replace("|", "\\|"))
    return fallback


def _allowed(info: Any) -> str:
    ann = _unwrap(info.annotation)
    origin = get_origin(ann)
    c = _field_constraints(info)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(ann))
    if origin is list:
        item = get_args(ann)[0]
        inner = _unwrap(item)
        if get_origin(inner) is Literal:
            return "list of " + " \\| ".join(f"`{a}`" for a in get_args(inner))
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            keys = ", ".join(f"`{f.alias or n}`" for n, f in inner.model_fields.items())
            return f"list of objects with {keys}"
        item_c = _constraints(get_args(item)[1].metadata) if get_origin(item) is Annotated else {}
        return "list of " + _label(item_c, "strings")
    if origin is dict:
        return "map"
    if ann is bool:
        return "`true` \\| `false`"
    if ann in (int, float):
        return _range_text(c) or ("whole number" if ann is int else "number")
    if ann is _dt.date:
        return "date `YYYY-MM-DD`"
    return _label(c, "string")


def _default(info: Any) -> str:
    if info.is_required():
        return "**required**"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
        value = [v.model_dump(by_alias=True, exclude_none=True) for v in value]
    if isinstance(value, BaseModel):
        return "(object)"
    return f"`{json.dumps(value, default=str)}`"


def reference_rows(model: type[BaseModel] = StackSettings, prefix: str = "") -> list[tuple[str, str, str]]:
    rows = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        ann = _unwrap(info.annotation)
        value = _unwrap(get_args(ann)[-1]) if get_origin(ann) is dict else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(reference_rows(ann, key + "."))
        elif isinstance(value, type) and issubclass(value, BaseModel):  # a map of objects, e.g. services
            rows.append((key, "map of name → object (keys below)", _default(info)))
            rows.extend(reference_rows(value, key + ".<name>."))
        else:
            rows.append((key, _allowed(info), _default(info)))
    return rows


def reference_markdown() -> str:
    lines = ["| key (`event-backbone:`…) | allowed | default |", "|---|---|---|"]
    lines += [f"| `{k}` | {a} | {d} |" for k, a, d in reference_rows()]
    return "\n".join(lines)


README_START = "<!-- config-reference:start (generated by: python -m components.settings --readme README.md) -->"
README_END = "<!-- config-reference:end -->"


def readme_with_reference(text: str) -> str:
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_START}\n{reference_markdown()}\n{README_END}{tail}"


if __name__ == "__main__":  # python -m components.settings [--readme README.md]
    import sys
    from pathlib import Path

    if len(sys.argv) == 3 and sys.argv[1] == "--readme":
        path = Path(sys.argv[2])
        path.write_text(readme_with_reference(path.read_text()))
    else:
        print(reference_markdown())
