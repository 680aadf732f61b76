"""Typed stack settings: one pydantic model for the whole stack.

The model is read from the stack's structured Pulumi config (``event-backbone:<key>``),
validated in full before any resource is registered, and every problem is reported as
one line naming the stack file, the full key, what is allowed and what was given::

    Pulumi.prod.yaml: event-backbone:postgres.backupRetentionDays must be between 7 and 35 (got 3)

Field names are snake_case in Python and camelCase in the stack files (aliases).

Modules: ``base`` (the shared model base and value types), one per area (``network``, ``aks``,
``postgres``, ``keyvault``, ``broker``, ``observability``, ``services``, ``edge``, ``budget``,
``registry``, ``rollouts``; ``vm_sizes`` is the table of node VM sizes' local disks), ``stack`` (the root model) with
``rules`` (cross-key and per-environment rules), ``errors`` and ``introspect`` (one line per
problem), ``loading`` (the Pulumi config map) and ``reference`` (the generated key reference).
Everything the rest of the program uses is importable from ``components.settings`` itself.
"""

from __future__ import annotations

from .aks import (
    POOL_NAME_PATTERN,
    AksSettings,
    ApiServer,
    AzurePolicy,
    MaintenanceWindow,
    SystemPool,
    UpgradeSettings,
    UserPool,
)
from .base import (
    PROJECT,
    Cidr,
    DayOfWeek,
    Environment,
    Gibibytes,
    HourMinute,
    IpOrCidr,
    Model,
    ServiceName,
    Uuid,
    Zone,
)
from .broker import (
    DAY_MS,
    PERF_TEST_IMAGE,
    BindingPattern,
    BrokerResources,
    BrokerSettings,
    CloudAmqpSettings,
    LoadTestResources,
    LoadTestSettings,
    Memory,
    ObjectName,
    PinnedImage,
    Quantity,
    QueueDefaults,
    QueueOverrides,
    ServiceTopology,
    Topology,
)
from .budget import BudgetSettings
from .edge import DnsZoneSettings, EdgeSettings, WafSettings
from .errors import ConfigError, Problem, StackFileError
from .keyvault import KeyVaultSettings
from .loading import (
    PROVIDER_NAMESPACES,
    from_config_map,
    load,
    namespace_problems,
    parse_value,
    read_stack_file,
    validate,
)
from .network import NetworkSettings
from .observability import (
    Alerting,
    AlertmanagerSettings,
    CollectorSettings,
    Duration,
    GrafanaSettings,
    GrafanaSignIn,
    JaegerSettings,
    LabelName,
    MetricContract,
    MetricName,
    ObservabilitySettings,
    PrometheusSettings,
    Slo,
    Thresholds,
    TracingSettings,
    default_slos,
)
from .postgres import EntraAdminGroup, PostgresMaintenance, PostgresSettings
from .redis import RedisAlerts, RedisSettings
from .reference import (
    DOCS_COMMAND,
    DOCS_END,
    DOCS_FILE,
    DOCS_START,
    document_with_reference,
    reference_markdown,
    reference_rows,
)
from .registry import RegistrySettings
from .rollouts import RolloutAnalysis, RolloutsController, RolloutsSettings
from .rules import (
    LOAD_TEST_PERMISSION,
    LOAD_TEST_USER,
    broker_rules,
    edge_rules,
    egress_rules,
    environment_rules,
    hardening_rules,
    load_test_rules,
    observability_rules,
    service_rules,
)
from .services import RESERVED_SERVICE_NAMES, ServiceResources, Services, ServiceScaling, ServiceSettings
from .stack import StackSettings
from .vm_sizes import VM_LOCAL_DISKS, LocalDisks, ephemeral_capacity_gb

__all__ = [
    "DAY_MS",
    "LOAD_TEST_PERMISSION",
    "LOAD_TEST_USER",
    "PERF_TEST_IMAGE",
    "POOL_NAME_PATTERN",
    "PROJECT",
    "PROVIDER_NAMESPACES",
    "DOCS_COMMAND",
    "DOCS_END",
    "DOCS_FILE",
    "DOCS_START",
    "AksSettings",
    "AzurePolicy",
    "RegistrySettings",
    "RedisAlerts",
    "RedisSettings",
    "BudgetSettings",
    "LocalDisks",
    "VM_LOCAL_DISKS",
    "egress_rules",
    "ephemeral_capacity_gb",
    "hardening_rules",
    "Alerting",
    "AlertmanagerSettings",
    "ApiServer",
    "BindingPattern",
    "BrokerResources",
    "BrokerSettings",
    "Cidr",
    "CloudAmqpSettings",
    "ConfigError",
    "StackFileError",
    "DayOfWeek",
    "Duration",
    "Environment",
    "Gibibytes",
    "GrafanaSettings",
    "GrafanaSignIn",
    "DnsZoneSettings",
    "EdgeSettings",
    "WafSettings",
    "HourMinute",
    "IpOrCidr",
    "JaegerSettings",
    "KeyVaultSettings",
    "LabelName",
    "MaintenanceWindow",
    "LoadTestResources",
    "LoadTestSettings",
    "Memory",
    "MetricContract",
    "MetricName",
    "Model",
    "NetworkSettings",
    "ObjectName",
    "PinnedImage",
    "ObservabilitySettings",
    "PostgresMaintenance",
    "EntraAdminGroup",
    "PostgresSettings",
    "Problem",
    "PrometheusSettings",
    "Quantity",
    "QueueDefaults",
    "QueueOverrides",
    "RolloutAnalysis",
    "RolloutsController",
    "RolloutsSettings",
    "ServiceName",
    "RESERVED_SERVICE_NAMES",
    "ServiceResources",
    "ServiceScaling",
    "ServiceSettings",
    "Services",
    "service_rules",
    "ServiceTopology",
    "Slo",
    "StackSettings",
    "SystemPool",
    "Thresholds",
    "Topology",
    "TracingSettings",
    "CollectorSettings",
    "UpgradeSettings",
    "UserPool",
    "Uuid",
    "Zone",
    "broker_rules",
    "edge_rules",
    "default_slos",
    "document_with_reference",
    "environment_rules",
    "load_test_rules",
    "from_config_map",
    "load",
    "namespace_problems",
    "read_stack_file",
    "observability_rules",
    "parse_value",
    "reference_markdown",
    "reference_rows",
    "validate",
]
