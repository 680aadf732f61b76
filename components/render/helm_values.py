"""Helm values for the pinned charts. Every key set here exists in the chart's default values
(tests/test_helm_values.py checks it against the reference extract, since Helm silently
ignores typos); no secret appears here: credentials come from existing Kubernetes secrets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..settings import StackSettings
from . import alertmanager
from .images import chart_image, pull


@dataclass(frozen=True)
class Chart:
    release: str
    chart: str
    version: str
    repo: str


KUBE_PROMETHEUS_STACK = Chart(
    "kube-prometheus-stack", "kube-prometheus-stack", "88.5.3", "https://prometheus-community.github.io/helm-charts"
)
_OTEL_CHARTS = "https://open-telemetry.github.io/opentelemetry-helm-charts"
# The collector in two tiers, two releases of one chart: the gateway (the OTLP endpoint services
# send to; the release name predates the split and is kept, so is every service's endpoint) and
# the sampler behind it.
OTEL_COLLECTOR = Chart("otel-collector", "opentelemetry-collector", "0.170.0", _OTEL_CHARTS)
OTEL_SAMPLER = Chart("otel-sampler", "opentelemetry-collector", "0.170.0", _OTEL_CHARTS)
JAEGER = Chart("jaeger", "jaeger", "4.11.1", "https://jaegertracing.github.io/helm-charts")
CHARTS = (KUBE_PROMETHEUS_STACK, OTEL_COLLECTOR, OTEL_SAMPLER, JAEGER)

GRAFANA_ADMIN_SECRET = "grafana-admin"
GRAFANA_ENTRA_SECRET = "grafana-entra"  # key client-secret: the app registration's secret
TENANT_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"  # renders without a tenant (tests, docs)
DASHBOARD_LABEL = "grafana_dashboard"
# node-exporter needs the host's network, PID namespace and filesystem: Pod Security
# `privileged`. It gets a namespace of its own so that `monitoring` can enforce `baseline`.
NODE_EXPORTER_NAMESPACE = "monitoring-node-exporter"
JAEGER_BADGER_PVC = "jaeger-badger"


def _ns(s: StackSettings) -> str:
    return s.observability.namespace


def prometheus_url(s: StackSettings) -> str:
    return f"http://{KUBE_PROMETHEUS_STACK.release}-prometheus.{_ns(s)}.svc.cluster.local:9090"


def prometheus_otlp_endpoints(s: StackSettings) -> dict[str, str]:
    """One OTLP endpoint per Prometheus replica, by the operator's pod names behind its headless
    `prometheus-operated` Service: a push through the load-balanced Service would reach one
    replica only, and the replicas' data would differ. The collector sends to each."""
    pods = f"prometheus-{KUBE_PROMETHEUS_STACK.release}-prometheus"
    return {
        f"otlp_http/prometheus-{i}": f"http://{pods}-{i}.prometheus-operated.{_ns(s)}.svc.cluster.local:9090/api/v1/otlp"
        for i in range(s.observability.prometheus.replicas)
    }


def jaeger_query_url(s: StackSettings) -> str:
    return f"http://{JAEGER.release}.{_ns(s)}.svc.cluster.local:16686"


def jaeger_otlp_endpoint(s: StackSettings) -> str:
    return f"{JAEGER.release}.{_ns(s)}.svc.cluster.local:4317"


def collector_service(chart: Chart) -> str:
    """The one Service the opentelemetry-collector chart creates for a release."""
    return f"{chart.release}-opentelemetry-collector"


def collector_otlp_endpoint(s: StackSettings) -> str:
    return f"http://{collector_service(OTEL_COLLECTOR)}.{_ns(s)}.svc.cluster.local:4317"


def _pvc(storage_class: str, size: str) -> dict:
    return {
        "volumeClaimTemplate": {
            "spec": {
                "storageClassName": storage_class,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": size}},
            }
        }
    }


def spread_key(s: StackSettings) -> str:
    """Where replicas of one component go: different zones when the cluster has several (a node
    drain and a zone outage both leave one serving), else different nodes."""
    return "topology.kubernetes.io/zone" if len(s.aks.availability_zones) > 1 else "kubernetes.io/hostname"


def disruption(s: StackSettings, replicas: int) -> tuple[dict, dict]:
    """(PodDisruptionBudget values, pod spec additions) for an operator-managed StatefulSet. With
    one replica no PDB (minAvailable 1 of 1 would block every drain); with more, a PDB keeping one
    and a hard anti-affinity, so no node holds two of them."""
    if replicas < 2:
        return {"enabled": False}, {}
    return (
        {"enabled": True, "minAvailable": 1},
        {"podAntiAffinity": "hard", "podAntiAffinityTopologyKey": spread_key(s)},
    )


def prometheus_service_account() -> str:
    """The ServiceAccount the chart creates for Prometheus (prometheus.serviceAccount.name empty)."""
    return f"{KUBE_PROMETHEUS_STACK.release}-prometheus"


# Stand-ins where the real values are only known after a deployment (the artefacts under build/).
REMOTE_WRITE_URL_PLACEHOLDER = (
    "https://<dce>.westeurope-1.metrics.ingest.monitor.azure.com/dataCollectionRules/<dcr-immutable-id>"
    "/streams/Microsoft-PrometheusMetrics/api/v1/write?api-version=2023-04-24"
)
CLIENT_ID_PLACEHOLDER = "00000000-0000-0000-0000-000000000001"
GRAFANA_CLIENT_ID_PLACEHOLDER = "00000000-0000-0000-0000-000000000002"
SUBSCRIPTION_PLACEHOLDER = "00000000-0000-0000-0000-000000000003"
QUERY_URL_PLACEHOLDER = "https://<amw>.westeurope.prometheus.monitor.azure.com"
AZURE_MONITOR_UID = "azure-monitor"  # the Redis board's data source (components/render/redis.py)
LONG_TERM_METRICS_UID = "long-term-metrics"  # PromQL over the Azure Monitor workspace's year
WORKLOAD_IDENTITY_LABEL = {"azure.workload.identity/use": "true"}


def remote_write(s: StackSettings, url: Any, tenant_id: Any) -> list[dict]:
    """Every sample to the Azure Monitor workspace (a year of metrics, docs/monitoring.md): Entra
    authentication by the Azure SDK (Prometheus >= 2.52) with the pod's workload identity."""
    if not s.observability.retention.long_term_metrics:
        return []
    return [
        {
            "name": "azure-monitor-workspace",
            "url": url,
            "azureAd": {"cloud": "AzurePublic", "sdk": {"tenantId": tenant_id}},
            # a backlog after an outage drains without starving the local TSDB
            "queueConfig": {"capacity": 10000, "maxShards": 50, "maxSamplesPerSend": 2000},
        }
    ]


def grafana_service() -> str:
    """The Grafana Service the kube-prometheus-stack release creates (port 80)."""
    return f"{KUBE_PROMETHEUS_STACK.release}-grafana"


def grafana_service_account() -> str:
    """The ServiceAccount the Grafana subchart creates (serviceAccount.name empty: its full name)."""
    return f"{KUBE_PROMETHEUS_STACK.release}-grafana"


def azure_data_sources(s: StackSettings, subscription_id: Any, query_url: Any) -> list[dict]:
    """Grafana's Azure data sources, both signing in with the pod's workload identity (Grafana 12:
    ``[azure] workload_identity_enabled``; the webhook injects AZURE_CLIENT_ID, AZURE_TENANT_ID and
    the token file): Azure Monitor (metrics of the stack's resources, e.g. Redis) and, when the
    metrics archive is on, the Azure Monitor workspace's PromQL endpoint as a Prometheus data
    source with Azure authentication (``[auth] azure_auth_enabled``)."""
    sources: list[dict] = [
        {
            "name": "Azure Monitor",
            "type": "grafana-azure-monitor-datasource",
            "uid": AZURE_MONITOR_UID,
            "access": "proxy",
            "jsonData": {
                "azureAuthType": "workloadidentity",
                "cloudName": "azuremonitor",
                "subscriptionId": subscription_id,
            },
            "editable": False,
        }
    ]
    if s.observability.retention.long_term_metrics:
        sources.append(
            {
                "name": "Long-term metrics (Azure Monitor workspace)",
                "type": "prometheus",
                "uid": LONG_TERM_METRICS_UID,
                "access": "proxy",
                "url": query_url,
                "jsonData": {
                    "httpMethod": "POST",
                    "azureCredentials": {"authType": "workloadidentity"},
                },
                "editable": False,
            }
        )
    return sources


def grafana_ini(s: StackSettings, tenant_id: Any = TENANT_PLACEHOLDER) -> dict:
    """grafana.ini: workload identity for the Azure data sources, the public URL, Entra ID sign-in
    (auth.azuread) and, when the local admin login is off, no login form and no basic auth. The
    client secret is not here: Grafana reads it from GF_AUTH_AZUREAD_CLIENT_SECRET (a Kubernetes
    secret filled from Key Vault's value)."""
    g = s.observability.grafana
    ini: dict[str, Any] = {
        # the Azure data sources sign in with the pod's workload identity (azure_data_sources)
        "azure": {"workload_identity_enabled": True},
        "auth": {"azure_auth_enabled": True},  # Azure authentication for the Prometheus data source
    }
    if g.hostname:
        ini["server"] = {"domain": g.hostname, "root_url": f"https://{g.hostname}/"}
    if g.sign_in is None:
        return ini
    si = g.sign_in
    groups = [si.admin_group_object_id, *si.viewer_group_object_ids]
    login = "https://login.microsoftonline.com/{}/oauth2/v2.0/{}"
    ini["auth"] = {**ini.get("auth", {}), "disable_login_form": not si.local_admin_login}
    ini["auth.basic"] = {"enabled": si.local_admin_login}
    ini["auth.azuread"] = {
        "name": "Microsoft Entra ID",
        "enabled": True,
        "allow_sign_up": True,
        "auto_login": not si.local_admin_login,
        "client_id": si.client_id,
        "scopes": "openid email profile",
        "auth_url": _fmt(login, tenant_id, "authorize"),
        "token_url": _fmt(login, tenant_id, "token"),
        "allowed_organizations": tenant_id,
        "allowed_groups": " ".join(groups),
        # group object ID : org : role (the admin group first: the first match wins)
        "org_mapping": " ".join(
            [f"{si.admin_group_object_id}:1:Admin", *(f"{gid}:1:Viewer" for gid in si.viewer_group_object_ids)]
        ),
        "role_attribute_strict": False,
        "skip_org_role_sync": False,
        "allow_assign_grafana_admin": False,
        "use_pkce": True,
    }
    ini["users"] = {"auto_assign_org_role": "Viewer"}
    return ini


def _fmt(template: str, tenant_id: Any, action: str) -> Any:
    """Formats with a plain tenant ID or a Pulumi Output (the client config's tenant)."""
    if hasattr(tenant_id, "apply"):
        return tenant_id.apply(lambda t: template.format(t, action))
    return template.format(tenant_id, action)


def kube_prometheus_stack(
    s: StackSettings,
    tenant_id: Any = TENANT_PLACEHOLDER,
    registry: Any = None,
    remote_write_url: Any = REMOTE_WRITE_URL_PLACEHOLDER,
    remote_write_client_id: Any = CLIENT_ID_PLACEHOLDER,
    grafana_client_id: Any = GRAFANA_CLIENT_ID_PLACEHOLDER,
    subscription_id: Any = SUBSCRIPTION_PLACEHOLDER,
    metrics_query_url: Any = QUERY_URL_PLACEHOLDER,
) -> dict:
    o = s.observability
    img = chart_image
    grafana = {
        "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
        "persistence": {"enabled": True, "size": o.grafana.storage_size},
        "sidecar": {"dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "labelValue": "1"}},
        "additionalDataSources": [
            {
                "name": "Jaeger",
                "type": "jaeger",
                "uid": "jaeger",
                "access": "proxy",
                "url": jaeger_query_url(s),
            },
            *azure_data_sources(s, subscription_id, metrics_query_url),
        ],
        # Grafana's pods sign in as its identity (components/retention.py; workload identity webhook)
        "podLabels": dict(WORKLOAD_IDENTITY_LABEL),
        "serviceAccount": {"annotations": {"azure.workload.identity/client-id": grafana_client_id}},
        # Served through the Gateway (components/render/edge.py: an HTTPRoute), never an Ingress.
        "ingress": {"enabled": False},
        "grafana.ini": grafana_ini(s, tenant_id),
    }
    if registry is not None:
        # every image of the chart and its subcharts through the registry's cache (tags: the
        # charts' pinned defaults); grafana.imageRenderer is off, its image is set all the same
        grafana["image"] = img("docker.io", "grafana/grafana", registry)
        grafana["sidecar"]["image"] = img("quay.io", "kiwigrid/k8s-sidecar", registry)
        grafana["initChownData"] = {"image": img("docker.io", "library/busybox", registry)}
        grafana["downloadDashboardsImage"] = img("docker.io", "curlimages/curl", registry)
        grafana["testFramework"] = {"image": img("docker.io", "bats/bats", registry)}
        grafana["imageRenderer"] = {"image": img("docker.io", "grafana/grafana-image-renderer", registry)}
    if o.grafana.sign_in is not None:
        grafana["envValueFrom"] = {
            "GF_AUTH_AZUREAD_CLIENT_SECRET": {"secretKeyRef": {"name": GRAFANA_ENTRA_SECRET, "key": "client-secret"}}
        }
    prom_pdb, prom_spread = disruption(s, o.prometheus.replicas)
    am_pdb, am_spread = disruption(s, o.alertmanager.replicas)
    values: dict = {
        "crds": {"enabled": True},
        # our rules file carries its own Watchdog (routed to the dead-man's switch)
        "defaultRules": {"rules": {"general": False}},
        "prometheus": {
            "podDisruptionBudget": prom_pdb,
            "prometheusSpec": {
                **prom_spread,
                "replicas": o.prometheus.replicas,
                "retention": o.prometheus.retention,
                "storageSpec": _pvc(o.storage_class, o.prometheus.storage_size),
                # select every PrometheusRule/ServiceMonitor/PodMonitor, not only the chart's own
                "ruleSelectorNilUsesHelmValues": False,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
                "enableOTLPReceiver": True,  # span metrics from the collector
            },
        },
        "alertmanager": {
            "config": alertmanager.config(s),
            "podDisruptionBudget": am_pdb,
            "alertmanagerSpec": {
                **am_spread,
                "replicas": o.alertmanager.replicas,
                "storage": _pvc(o.storage_class, o.alertmanager.storage_size),
                "secrets": [alertmanager.RECEIVERS_SECRET],
            },
        },
        "grafana": grafana,
        "prometheus-node-exporter": {"namespaceOverride": NODE_EXPORTER_NAMESPACE},
    }
    # the releases the proofs run (settings: observability.*.imageTag), through the cache or not
    values["prometheus"]["prometheusSpec"]["image"] = {
        **img("quay.io", "prometheus/prometheus", registry),
        "tag": o.prometheus.image_tag,
    }
    values["alertmanager"]["alertmanagerSpec"]["image"] = {
        **img("quay.io", "prometheus/alertmanager", registry),
        "tag": o.alertmanager.image_tag,
    }
    writes = remote_write(s, remote_write_url, tenant_id)
    if writes:
        values["prometheus"]["prometheusSpec"]["remoteWrite"] = writes
        # the Prometheus pods sign in as the remote-write identity (workload identity webhook)
        values["prometheus"]["prometheusSpec"]["podMetadata"] = {"labels": dict(WORKLOAD_IDENTITY_LABEL)}
        values["prometheus"]["serviceAccount"] = {
            "annotations": {"azure.workload.identity/client-id": remote_write_client_id}
        }
    if registry is not None:
        values["prometheusOperator"] = {
            "image": img("quay.io", "prometheus-operator/prometheus-operator", registry),
            "prometheusConfigReloader": {
                "image": img("quay.io", "prometheus-operator/prometheus-config-reloader", registry)
            },
            "thanosImage": img("quay.io", "thanos/thanos", registry),
            "admissionWebhooks": {
                "deployment": {"image": img("quay.io", "prometheus-operator/admission-webhook", registry)},
                "patch": {"image": img("ghcr.io", "jkroepke/kube-webhook-certgen", registry)},
            },
        }
        values["crds"]["upgradeJob"] = {
            "image": {
                "busybox": img("docker.io", "busybox", registry),
                "kubectl": img("registry.k8s.io", "kubectl", registry),
            }
        }
        values["thanosRuler"] = {"thanosRulerSpec": {"image": img("quay.io", "thanos/thanos", registry)}}
        # subcharts outside the reference extract (tests/test_helm_values.py: SUBCHART_IMAGE_KEYS)
        values["kube-state-metrics"] = {
            "image": img("registry.k8s.io", "kube-state-metrics/kube-state-metrics", registry)
        }
        values["prometheus-node-exporter"]["image"] = img("quay.io", "prometheus/node-exporter", registry)
    return values


def namespaces(s: StackSettings) -> list[dict]:
    """The observability namespaces, each with a Pod Security `enforce` level: `monitoring`
    baseline (Grafana's chown init container runs as root; everything else is warned and
    audited against restricted), node-exporter's own namespace privileged (hostNetwork,
    hostPID, hostPath) and nothing else in it."""

    def ns(name: str, enforce: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    "app.kubernetes.io/part-of": "event-backbone",
                    "pod-security.kubernetes.io/enforce": enforce,
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "pod-security.kubernetes.io/audit": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            },
        }

    return [ns(s.observability.namespace, "baseline"), ns(NODE_EXPORTER_NAMESPACE, "privileged")]


COLLECTOR_IMAGE = "otel/opentelemetry-collector-k8s"  # docker.io; the tag: the chart's appVersion (0.158.0)
# The sampler's second OTLP receiver: spans routed by service, for the span metrics.
SPANMETRICS_PORT = 4319
# The gateway's load-balancing exporters: the ring follows the sampler's EndpointSlices (a
# replica leaves it the moment it starts terminating); a batch whose replica went away is kept
# and re-routed over the new ring for this long (the upstream "resiliency options 1", off by
# default) instead of being dropped.
REROUTE_FOR = "5m"
# The sampler's exports to Jaeger and Prometheus are retried, from a queue, for this long: Jaeger
# runs one replica on a ReadWriteOnce volume, and a drain of its node stops it until the volume
# has moved (README: what a drain interrupts).
EXPORT_RETRY_FOR = "10m"


def _collector_labels(chart: Chart) -> dict:
    """The chart's pod selector labels of one release."""
    return {"app.kubernetes.io/name": "opentelemetry-collector", "app.kubernetes.io/instance": chart.release}


def _collector_tier(s: StackSettings, chart: Chart, replicas: int, registry: Any) -> dict:
    """What both tiers share: the k8s distribution, replicas spread over nodes (and zones), a PDB
    that lets a drain evict one replica at a time, rolling updates that never go below the
    replica count, no Jaeger/Zipkin ports."""
    values: dict[str, Any] = {
        "mode": "deployment",
        "image": {"repository": pull(COLLECTOR_IMAGE, registry)},
        "replicaCount": replicas,
        "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "ports": {
            "jaeger-compact": {"enabled": False},
            "jaeger-thrift": {"enabled": False},
            "jaeger-grpc": {"enabled": False},
            "zipkin": {"enabled": False},
            "metrics": {"enabled": True},
        },
        "serviceMonitor": {"enabled": True},
        "rollout": {"strategy": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
    }
    if replicas >= 2:
        values["podDisruptionBudget"] = {"enabled": True, "maxUnavailable": 1}
        keys = ["kubernetes.io/hostname"]
        if len(s.aks.availability_zones) > 1:
            keys.append("topology.kubernetes.io/zone")
        values["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": _collector_labels(chart)},
                "matchLabelKeys": ["pod-template-hash"],  # a rollout's new pods spread among themselves
            }
            for key in keys
        ]
    return values


# In-memory sending queues of 1000 batches (the exporters' default size, stated): what a queue
# holds counts against the pod's memory, and the memory limiter refuses new spans before the
# limit (TracingSpansLost then fires) rather than letting the queue get the pod killed.
QUEUE_BATCHES = 1000


def _reroute() -> dict:
    return {
        "timeout": "10s",
        "retry_on_failure": {"enabled": True, "max_elapsed_time": REROUTE_FOR},
        "sending_queue": {"enabled": True, "queue_size": QUEUE_BATCHES},
    }


def _retried() -> dict:
    return {
        "retry_on_failure": {"enabled": True, "max_elapsed_time": EXPORT_RETRY_FOR},
        "sending_queue": {"enabled": True, "queue_size": QUEUE_BATCHES},
    }


def _prometheus_exporters(s: StackSettings) -> dict:
    """An OTLP/HTTP exporter per Prometheus replica, retried from a queue."""
    return {
        name: {"endpoint": url, "tls": {"insecure": True}, **_retried()}
        for name, url in prometheus_otlp_endpoints(s).items()
    }


def collector(s: StackSettings, registry: Any = None) -> dict:
    """The gateway tier: receives OTLP from the services, adds the Kubernetes attributes (only here
    is the sending pod's address known), then routes every span twice to the sampler tier: by
    trace ID (each trace whole on one sampler replica, for tail sampling) and by service (each
    service's spans on one replica, so no two replicas write the same span-metric series)."""
    sampler = f"{collector_service(OTEL_SAMPLER)}.{_ns(s)}"

    def balance(routing_key: str, port: int) -> dict:
        return {
            "routing_key": routing_key,
            "resolver": {"k8s": {"service": sampler, "ports": [port]}},
            "protocol": {"otlp": {"tls": {"insecure": True}, "timeout": "5s"}},
            **_reroute(),
        }

    values = _collector_tier(s, OTEL_COLLECTOR, s.observability.collector.gateway_replicas, registry)
    values["presets"] = {"kubernetesAttributes": {"enabled": True}}
    values["config"] = {
        "receivers": {
            "jaeger": None,
            "zipkin": None,
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": "${env:MY_POD_IP}:4317"},
                    "http": {"endpoint": "${env:MY_POD_IP}:4318"},
                }
            },
        },
        "exporters": {
            "load_balancing/traces": balance("traceID", 4317),
            "load_balancing/spanmetrics": balance("service", SPANMETRICS_PORT),
            **_prometheus_exporters(s),
        },
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "k8sattributes", "batch"],
                    "exporters": ["load_balancing/traces", "load_balancing/spanmetrics"],
                },
                # the services' own OTLP metrics, if any, straight to Prometheus
                "metrics": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "k8sattributes", "batch"],
                    "exporters": list(prometheus_otlp_endpoints(s)),
                },
                # the chart's default, stated: no log backend here, OTLP logs are counted, not kept
                "logs": {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"], "exporters": ["debug"]},
            }
        },
    }
    return values


def sampler(s: StackSettings, registry: Any = None) -> dict:
    """The sampler tier: only the gateway sends to it. Spans routed by trace ID are tail-sampled
    (errors, slow traces, a share of the rest) and sent to Jaeger; spans routed by service become
    span metrics for Prometheus. It needs no Kubernetes API: no token is mounted."""
    t = s.observability.tracing
    values = _collector_tier(s, OTEL_SAMPLER, s.observability.collector.sampler_replicas, registry)
    values["ports"]["otlp-http"] = {"enabled": False}
    values["ports"]["otlp-spanmetrics"] = {
        "enabled": True,
        "containerPort": SPANMETRICS_PORT,
        "servicePort": SPANMETRICS_PORT,
        "protocol": "TCP",
        "appProtocol": "grpc",
    }
    values["serviceAccount"] = {"automountServiceAccountToken": False}
    values["config"] = {
        "receivers": {
            "jaeger": None,
            "zipkin": None,
            "otlp": {"protocols": {"grpc": {"endpoint": "${env:MY_POD_IP}:4317"}, "http": None}},
            "otlp/spanmetrics": {"protocols": {"grpc": {"endpoint": f"${{env:MY_POD_IP}}:{SPANMETRICS_PORT}"}}},
        },
        "processors": {
            "tail_sampling": {
                "decision_wait": "10s",
                "num_traces": 50000,
                # a trace is kept when any policy keeps it
                "policies": [
                    {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
                    {"name": "slow", "type": "latency", "latency": {"threshold_ms": t.slow_trace_threshold_ms}},
                    {
                        "name": "sample",
                        "type": "probabilistic",
                        "probabilistic": {"sampling_percentage": t.sampling_percentage},
                    },
                ],
            },
        },
        "connectors": {
            "span_metrics": {
                "histogram": {"explicit": {"buckets": ["5ms", "25ms", "100ms", "250ms", "500ms", "1s", "2.5s", "5s"]}}
            }
        },
        "exporters": {
            "otlp_grpc/jaeger": {"endpoint": jaeger_otlp_endpoint(s), "tls": {"insecure": True}, **_retried()},
            **_prometheus_exporters(s),
        },
        "service": {
            "pipelines": {
                # sampled traces to Jaeger
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "tail_sampling", "batch"],
                    "exporters": ["otlp_grpc/jaeger"],
                },
                # span metrics from every span, before sampling
                "traces/spanmetrics": {
                    "receivers": ["otlp/spanmetrics"],
                    "processors": ["memory_limiter", "batch"],
                    "exporters": ["span_metrics"],
                },
                "metrics": {
                    "receivers": ["span_metrics"],
                    "processors": ["memory_limiter", "batch"],
                    "exporters": list(prometheus_otlp_endpoints(s)),
                },
                "logs": None,  # nothing sends logs here
            }
        },
    }
    return values


def collector_rbac(s: StackSettings) -> list[dict]:
    """The gateway's load-balancing exporters watch the sampler's EndpointSlices: read access to
    EndpointSlices in the monitoring namespace only (the chart makes ClusterRoles alone)."""
    name = f"{collector_service(OTEL_COLLECTOR)}-sampler-endpoints"
    meta = {"name": name, "namespace": _ns(s), "labels": {"app.kubernetes.io/part-of": "event-backbone"}}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            # the chart's ServiceAccount of the gateway release (its full name)
            "subjects": [{"kind": "ServiceAccount", "name": collector_service(OTEL_COLLECTOR), "namespace": _ns(s)}],
        },
    ]


JAEGER_JOB_IMAGES = {
    "spark": "jaegertracing/spark-dependencies",
    "esIndexCleaner": "jaegertracing/jaeger-es-index-cleaner",
    "esRollover": "jaegertracing/jaeger-es-rollover",
    "esLookback": "jaegertracing/jaeger-es-rollover",
}


def jaeger(s: StackSettings, registry: Any = None) -> dict:
    j = s.observability.jaeger
    if j.storage == "badger":
        backend = {
            "badger": {
                "directories": {"keys": "/badger/keys", "values": "/badger/values"},
                "ephemeral": False,
                "ttl": {"spans": j.retention},
            }
        }
    else:
        backend = {"memory": {"max_traces": 100000}}
    values = {
        "jaeger": {"replicas": 1},
        "userconfig": {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
                "pipelines": {
                    "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["jaeger_storage_exporter"]}
                },
            },
            "extensions": {
                "healthcheckv2": {"use_v2": True, "http": {"endpoint": "0.0.0.0:13133"}},
                "jaeger_query": {"storage": {"traces": "primary_store"}},
                "jaeger_storage": {"backends": {"primary_store": backend}},
            },
            "receivers": {
                "otlp": {"protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}, "http": {"endpoint": "0.0.0.0:4318"}}}
            },
            "processors": {"batch": {}},
            "exporters": {"jaeger_storage_exporter": {"trace_storage": "primary_store"}},
        },
    }
    if j.storage == "badger":
        values["jaeger"]["extraVolumes"] = [
            {"name": "badger-data", "persistentVolumeClaim": {"claimName": JAEGER_BADGER_PVC}}
        ]
        values["jaeger"]["extraVolumeMounts"] = [{"name": "badger-data", "mountPath": "/badger"}]
    if registry is not None:
        # the chart's images name no registry (Docker Hub implied); the Elasticsearch jobs and
        # spark are off, their images are set all the same
        values["jaeger"]["image"] = chart_image("docker.io", "jaegertracing/jaeger", registry)
        for job, repository in JAEGER_JOB_IMAGES.items():
            values[job] = {"image": chart_image("docker.io", repository, registry)}
    return values


def jaeger_pvc(s: StackSettings) -> dict:
    o = s.observability
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": JAEGER_BADGER_PVC,
            "namespace": o.namespace,
            "labels": {"app.kubernetes.io/part-of": "event-backbone"},
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": o.storage_class,
            "resources": {"requests": {"storage": o.jaeger.storage_size}},
        },
    }


def split_deletions(values: dict) -> tuple[dict, dict]:
    """(values without the null leaves, the null leaves alone). Helm deletes a chart default set
    to null, but the Python SDK drops null map values before they reach the provider (pulumi/pulumi
    #12178); pulumi-kubernetes >= 4.30 passes nulls from `valueYamlFiles` through, so the
    deletions travel as a YAML file of their own."""
    kept: dict = {}
    deleted: dict = {}
    for key, value in values.items():
        if value is None:
            deleted[key] = None
        elif isinstance(value, dict):
            k, d = split_deletions(value)
            kept[key] = k
            if d:
                deleted[key] = d
        else:
            kept[key] = value
    return kept, deleted


def all_values(
    s: StackSettings,
    tenant_id: Any = TENANT_PLACEHOLDER,
    registry: Any = None,
    remote_write_url: Any = REMOTE_WRITE_URL_PLACEHOLDER,
    remote_write_client_id: Any = CLIENT_ID_PLACEHOLDER,
    grafana_client_id: Any = GRAFANA_CLIENT_ID_PLACEHOLDER,
    subscription_id: Any = SUBSCRIPTION_PLACEHOLDER,
    metrics_query_url: Any = QUERY_URL_PLACEHOLDER,
) -> dict[Chart, dict]:
    """``registry``: the stack's registry login server (every image through its cache);
    ``remote_write_*``: the metrics archive's endpoint and identity; ``grafana_client_id``,
    ``subscription_id``, ``metrics_query_url``: Grafana's Azure data sources (components/retention.py)."""
    return {
        KUBE_PROMETHEUS_STACK: kube_prometheus_stack(
            s,
            tenant_id,
            registry,
            remote_write_url,
            remote_write_client_id,
            grafana_client_id,
            subscription_id,
            metrics_query_url,
        ),
        OTEL_COLLECTOR: collector(s, registry),
        OTEL_SAMPLER: sampler(s, registry),
        JAEGER: jaeger(s, registry),
    }
