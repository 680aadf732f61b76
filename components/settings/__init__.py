"""Typed stack settings: one pydantic model for the whole stack.

The model is read from the stack's structured Pulumi config (``event-backbone:<key>``),
validated in full before any resource is registered, and every problem is reported as
one line naming the stack file, the full key, what is allowed and what was given::

    Pulumi.prod.yaml: event-backbone:postgres.backupRetentionDays must be between 7 and 35 (got 3)

Field names are snake_case in Python and camelCase in the stack files (aliases).

Modules: ``base`` (the shared model base and value types), one per area (``network``, ``aks``,
``postgres``, ``keyvault``, ``broker``, ``observability``, ``rollouts``), ``stack`` (the root model) with
``rules`` (cross-key and per-environment rules), ``errors`` and ``introspect`` (one line per
problem), ``loading`` (the Pulumi config map) and ``reference`` (the generated key reference).
Everything the rest of the program uses is importable from ``components.settings`` itself.
"""

from __future__ import annotations

from .aks import POOL_NAME_PATTERN, AksSettings, ApiServer, MaintenanceWindow, SystemPool, UpgradeSettings, UserPool
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
    BindingPattern,
    BrokerResources,
    BrokerSettings,
    CloudAmqpSettings,
    Memory,
    ObjectName,
    Quantity,
    QueueDefaults,
    QueueOverrides,
    ServiceTopology,
    Topology,
)
from .errors import ConfigError, Problem, StackFileError
from .keyvault import KeyVaultSettings, WorkloadIdentity
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
    Duration,
    GrafanaSettings,
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
from .reference import (
    DOCS_COMMAND,
    DOCS_END,
    DOCS_FILE,
    DOCS_START,
    document_with_reference,
    reference_markdown,
    reference_rows,
)
from .rollouts import RolloutAnalysis, RolloutsController, RolloutsSettings
from .rules import broker_rules, environment_rules, observability_rules
from .stack import StackSettings

__all__ = [
    "DAY_MS",
    "POOL_NAME_PATTERN",
    "PROJECT",
    "PROVIDER_NAMESPACES",
    "DOCS_COMMAND",
    "DOCS_END",
    "DOCS_FILE",
    "DOCS_START",
    "AksSettings",
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
    "HourMinute",
    "IpOrCidr",
    "JaegerSettings",
    "KeyVaultSettings",
    "LabelName",
    "MaintenanceWindow",
    "Memory",
    "MetricContract",
    "MetricName",
    "Model",
    "NetworkSettings",
    "ObjectName",
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
    "ServiceTopology",
    "Slo",
    "StackSettings",
    "SystemPool",
    "Thresholds",
    "Topology",
    "TracingSettings",
    "UpgradeSettings",
    "UserPool",
    "Uuid",
    "WorkloadIdentity",
    "Zone",
    "broker_rules",
    "default_slos",
    "document_with_reference",
    "environment_rules",
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
