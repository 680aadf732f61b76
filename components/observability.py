"""Observability on AKS: kube-prometheus-stack (Prometheus, Alertmanager, Grafana), the
OpenTelemetry Collector and Jaeger v2 as pinned Helm releases (helm.v3.Release keeps the
chart's hooks, which kube-prometheus-stack needs for its admission-webhook certificate), our
PrometheusRule and the dashboards. Data from components.render; this module only wires."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pulumi
import pulumi_kubernetes as k8s

from .kube import apply_manifest, release_values
from .render import alertmanager, dashboards, helm_values, rules
from .render import redis as redis_render
from .render.helm_values import Chart
from .settings import StackSettings
from .vault import Vault

if TYPE_CHECKING:
    from .retention import GrafanaAzure, RemoteWrite


class Observability(pulumi.ComponentResource):
    crds: list[pulumi.Resource]  # what a ServiceMonitor/PrometheusRule must wait for
    grafana_url: pulumi.Output[str]
    otlp_endpoint: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        vault: Vault,
        provider: k8s.Provider,
        client: pulumi.Output | None = None,  # authorization.get_client_config_output(): the tenant for sign-in
        registry: pulumi.Input[str] | None = None,  # the stack's registry login server: images through it
        remote_write: RemoteWrite | None = None,  # the metrics archive (components/retention.py)
        grafana_azure: GrafanaAzure | None = None,  # Grafana's identity for its Azure data sources
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:Observability", name, None, opts)
        s = settings
        o = s.observability
        kube = pulumi.ResourceOptions(parent=self, provider=provider)

        monitoring_ns, exporter_ns = helm_values.namespaces(s)
        ns = apply_manifest(
            "namespace", monitoring_ns, pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(protect=s.protect))
        )  # holds the volumes
        node_exporter_ns = apply_manifest("node-exporter-namespace", exporter_ns, kube)
        in_ns = pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[ns]))

        # Credentials as existing secrets: nothing secret goes into the Helm values.
        grafana_admin = k8s.core.v1.Secret(
            "grafana-admin",
            metadata={"name": helm_values.GRAFANA_ADMIN_SECRET, "namespace": o.namespace},
            string_data={"admin-user": "admin", "admin-password": vault.secrets["grafana-admin"].value},
            opts=in_ns,
        )
        receivers = k8s.core.v1.Secret(
            "alertmanager-receivers",
            metadata={"name": alertmanager.RECEIVERS_SECRET, "namespace": o.namespace},
            string_data={key: pulumi.Output.secret(value) for key, value in alertmanager.configured(s).items()},
            opts=in_ns,
        )
        extra: list[pulumi.Resource] = [grafana_admin, receivers, node_exporter_ns]
        sign_in = o.grafana.sign_in
        if sign_in is not None and sign_in.client_secret is not None:
            # The app registration's secret: kept in Key Vault, handed to Grafana as a secret.
            client_secret = pulumi.Output.secret(sign_in.client_secret)
            vault.store(
                "grafana-entra-client-secret",
                client_secret,
                "text/plain; source=stack-config",
                tags={"clientId": sign_in.client_id},
            )
            extra.append(
                k8s.core.v1.Secret(
                    "grafana-entra",
                    metadata={"name": helm_values.GRAFANA_ENTRA_SECRET, "namespace": o.namespace},
                    string_data={"client-secret": client_secret},
                    opts=in_ns,
                )
            )
        if o.jaeger.storage == "badger":
            extra.append(
                apply_manifest(
                    "jaeger-badger-pvc",
                    helm_values.jaeger_pvc(s),
                    pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(protect=s.protect)),
                )
            )

        def release(chart: Chart, values: dict, depends_on: list) -> k8s.helm.v3.Release:
            return k8s.helm.v3.Release(
                chart.release,
                k8s.helm.v3.ReleaseArgs(
                    name=chart.release,
                    chart=chart.chart,
                    version=chart.version,
                    repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo),
                    namespace=o.namespace,
                    **release_values(values),
                    atomic=True,
                    cleanup_on_fail=True,
                    timeout=900,
                    max_history=10,
                ),
                opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=depends_on)),
            )

        tenant = client.tenant_id if client is not None else helm_values.TENANT_PLACEHOLDER
        archive = {}
        if remote_write is not None:
            archive = {"remote_write_url": remote_write.url, "remote_write_client_id": remote_write.client_id}
        if grafana_azure is not None:
            archive["grafana_client_id"] = grafana_azure.client_id
            archive["subscription_id"] = grafana_azure.subscription_id
            if grafana_azure.query_url is not None:
                archive["metrics_query_url"] = grafana_azure.query_url
        values = helm_values.all_values(s, tenant, registry, **archive)
        stack = release(helm_values.KUBE_PROMETHEUS_STACK, values[helm_values.KUBE_PROMETHEUS_STACK], extra)
        jaeger = release(helm_values.JAEGER, values[helm_values.JAEGER], extra)
        sampler = release(helm_values.OTEL_SAMPLER, values[helm_values.OTEL_SAMPLER], [stack, jaeger])
        rbac = [apply_manifest(f"collector-{m['kind'].lower()}", m, in_ns) for m in helm_values.collector_rbac(s)]
        release(helm_values.OTEL_COLLECTOR, values[helm_values.OTEL_COLLECTOR], [stack, sampler, *rbac])

        after_crds = pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[stack]))
        apply_manifest("prometheus-rule", rules.prometheus_rule(s), after_crds)
        for board, content in {**dashboards.dashboards(s), **redis_render.boards(s)}.items():
            apply_manifest(
                f"dashboard-{board}",
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": f"dashboard-{board}",
                        "namespace": o.namespace,
                        "labels": {helm_values.DASHBOARD_LABEL: "1", "app.kubernetes.io/part-of": "event-backbone"},
                    },
                    "data": {f"{board}.json": json.dumps(content)},
                },
                in_ns,
            )

        self.crds = [stack]
        grafana_svc = f"svc/{helm_values.KUBE_PROMETHEUS_STACK.release}-grafana"
        self.grafana_url = pulumi.Output.from_input(
            f"https://{o.grafana.hostname}/"
            if o.grafana.hostname
            else f"kubectl -n {o.namespace} port-forward {grafana_svc} 3000:80"
        )
        self.otlp_endpoint = pulumi.Output.from_input(helm_values.collector_otlp_endpoint(s))
        self.register_outputs({"grafanaUrl": self.grafana_url, "otlpEndpoint": self.otlp_endpoint})
