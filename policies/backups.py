"""Backups and durability: data survives a mistake, a deletion and a zone or region loss."""

from __future__ import annotations

from kit import MANDATORY, MISSING, config, get, is_replica, schema, violation
from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

PG_SERVER = "azure-native:dbforpostgresql:Server"
RABBITMQ = "kubernetes:rabbitmq.com/v1beta1:RabbitmqCluster"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
RELEASE = "kubernetes:helm.sh/v3:Release"


def _postgres_backups(args, report):
    if args.resource_type != PG_SERVER:
        return
    if is_replica(args.props):
        # Azure takes no backups of a read replica (its primary's backups hold the same data);
        # one promoted to a standalone server starts its own. Replicas: policies/replicas.py.
        return
    cfg = config(args)
    minimum = int(cfg.get("minimumRetentionDays", 7))
    days = get(args.props, "backup.backupRetentionDays")
    if days is MISSING or float(days) < minimum:
        violation(
            report,
            args.resource_type,
            args.name,
            "backup.backupRetentionDays",
            days,
            f"keep at least {minimum} days (event-backbone:postgres.backupRetentionDays)",
        )
    if cfg.get("requireGeoRedundant", False) and get(args.props, "backup.geoRedundantBackup") != "Enabled":
        violation(
            report,
            args.resource_type,
            args.name,
            "backup.geoRedundantBackup",
            get(args.props, "backup.geoRedundantBackup"),
            "set it to 'Enabled' (event-backbone:postgres.geoRedundantBackup: true); "
            "it can only be chosen when the server is created",
        )


postgres_backups = ResourceValidationPolicy(
    name="postgres-backup-retention",
    description="PostgreSQL keeps backups for at least the configured days, geo-redundantly where required.",
    validate=_postgres_backups,
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "minimumRetentionDays": {"type": "integer", "minimum": 7, "maximum": 35, "default": 7},
            "requireGeoRedundant": {"type": "boolean", "default": False},
        }
    ),
)


def _keyvault_recoverable(args, report):
    if args.resource_type != "azure-native:keyvault:Vault":
        return
    props = get(args.props, "properties", {}) or {}
    minimum = int(config(args).get("minimumSoftDeleteDays", 90))
    if get(props, "enableSoftDelete", True) is False:
        violation(report, args.resource_type, args.name, "properties.enableSoftDelete", False, "set it to true")
    days = get(props, "softDeleteRetentionInDays", 90)
    if float(days) < minimum:
        violation(
            report,
            args.resource_type,
            args.name,
            "properties.softDeleteRetentionInDays",
            days,
            f"keep deleted secrets at least {minimum} days",
        )
    if get(props, "enablePurgeProtection") is not True:
        violation(
            report,
            args.resource_type,
            args.name,
            "properties.enablePurgeProtection",
            get(props, "enablePurgeProtection"),
            "set it to true: nobody can purge a deleted vault or secret before its retention ends",
        )


keyvault_recoverable = ResourceValidationPolicy(
    name="keyvault-soft-delete-purge-protection",
    description="Key Vault has soft delete (90 days) and purge protection.",
    validate=_keyvault_recoverable,
    enforcement_level=MANDATORY,
    config_schema=schema({"minimumSoftDeleteDays": {"type": "integer", "minimum": 7, "maximum": 90, "default": 90}}),
)


def _broker_storage(args, report):
    classes = {
        str(get(r.props, "metadata.name", r.name)): r for r in args.resources if r.resource_type == STORAGE_CLASS
    }
    for r in args.resources:
        if r.resource_type != RABBITMQ:
            continue
        persistence = get(r.props, "spec.persistence", {}) or {}
        if persistence.get("emptyDir") is not None or not persistence.get("storage"):
            violation(
                report,
                r.resource_type,
                r.name,
                "spec.persistence.storage",
                persistence.get("storage", MISSING),
                "give the broker persistent volumes (event-backbone:broker.storageSize)",
                r.urn,
            )
            continue
        name = persistence.get("storageClassName")
        sc = classes.get(str(name)) if name else None
        if sc is None:
            violation(
                report,
                r.resource_type,
                r.name,
                "spec.persistence.storageClassName",
                name if name else MISSING,
                "use a StorageClass this stack defines with reclaimPolicy: Retain (event-backbone:broker.storageClass)",
                r.urn,
            )
        elif get(sc.props, "reclaimPolicy") != "Retain":
            violation(
                report,
                STORAGE_CLASS,
                sc.name,
                "reclaimPolicy",
                get(sc.props, "reclaimPolicy"),
                "set it to 'Retain': deleting the claim must not delete the broker's data",
                sc.urn,
            )


broker_storage = StackValidationPolicy(
    name="broker-persistent-storage",
    description="The RabbitMQ cluster keeps its messages on persistent volumes whose StorageClass retains them.",
    validate=_broker_storage,
    enforcement_level=MANDATORY,
)


def _observability_storage(args, report):
    if args.resource_type != RELEASE:
        return
    required = set(config(args).get("components", []))
    chart = get(args.props, "chart", "")
    values = get(args.props, "values", {}) or {}
    checks = []
    if chart == "kube-prometheus-stack":
        checks = [
            ("prometheus", "prometheus.prometheusSpec.storageSpec.volumeClaimTemplate", "a volumeClaimTemplate"),
            ("alertmanager", "alertmanager.alertmanagerSpec.storage.volumeClaimTemplate", "a volumeClaimTemplate"),
            ("grafana", "grafana.persistence.enabled", "persistence.enabled: true"),
        ]
    elif chart == "jaeger":
        checks = [
            (
                "jaeger",
                "jaeger.extraVolumes",
                "Badger on a persistent volume (event-backbone:observability.jaeger.storage: badger)",
            )
        ]
    for component, path, fix in checks:
        if component not in required:
            continue
        value = get(values, path)
        ok = value not in (MISSING, False, [], {})
        if component == "jaeger":
            ok = (
                ok
                and any("persistentVolumeClaim" in v for v in value)
                and "badger" in (get(values, "userconfig.extensions.jaeger_storage.backends.primary_store", {}) or {})
            )
        if not ok:
            violation(report, args.resource_type, args.name, f"values.{path}", value, f"give {component} {fix}")


observability_storage = ResourceValidationPolicy(
    name="observability-persistent-storage",
    description="Prometheus, Alertmanager, Grafana and Jaeger keep their data on persistent volumes where required.",
    validate=_observability_storage,
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "components": {
                "type": "array",
                "items": {"type": "string", "enum": ["prometheus", "alertmanager", "grafana", "jaeger"]},
                "default": ["prometheus", "alertmanager", "grafana", "jaeger"],
            }
        }
    ),
)

STATEFUL = [
    "azure-native:dbforpostgresql:Server",
    "azure-native:dbforpostgresql:Database",
    "azure-native:keyvault:Vault",
    "azure-native:resources:ResourceGroup",
    "azure-native:operationalinsights:Workspace",
    "azure-native:containerservice:ManagedCluster",
    "azure-native:containerregistry:Registry",
    "kubernetes:core/v1:PersistentVolumeClaim",
    "cloudamqp:index/instance:Instance",
    "kubernetes:rabbitmq.com/v1beta1:RabbitmqCluster",
    "azure-native:redisenterprise:RedisEnterprise",
    "azure-native:redisenterprise:Database",
]


def _protected(args, report):
    cfg = config(args)
    if not cfg.get("requireProtect", False) or args.resource_type not in cfg.get("types", STATEFUL):
        return
    if not args.opts.protect:
        violation(
            report,
            args.resource_type,
            args.name,
            "the protect option",
            False,
            "create it with ResourceOptions(protect=True) (components do so when settings.protect, i.e. in prod)",
        )


stateful_protected = ResourceValidationPolicy(
    name="stateful-resources-protected",
    description="Stateful production resources are protected from deletion and replacement.",
    validate=_protected,
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "requireProtect": {"type": "boolean", "default": False},
            "types": {"type": "array", "items": {"type": "string"}, "default": STATEFUL},
        }
    ),
)

POLICIES = [postgres_backups, keyvault_recoverable, broker_storage, observability_storage, stateful_protected]
