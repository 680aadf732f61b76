"""Progressive delivery on AKS: Argo Rollouts as a pinned Helm release in its own namespace
(Pod Security `restricted` enforced) and the SLO ClusterAnalysisTemplates that gate promotions.
Data from components.render.rollouts; this module only wires."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from .kube import apply_manifest, release_values
from .render import rollouts
from .settings import StackSettings


class Rollouts(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        settings: StackSettings,
        provider: k8s.Provider,
        crds: list[pulumi.Resource],
        registry: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:Rollouts", name, None, opts)
        s = settings
        kube = pulumi.ResourceOptions(parent=self, provider=provider)
        ns = apply_manifest("rollouts-namespace", rollouts.namespace(s), kube)
        chart = rollouts.CHART
        release = k8s.helm.v3.Release(
            chart.release,
            k8s.helm.v3.ReleaseArgs(
                name=chart.release,
                chart=chart.chart,
                version=chart.version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo),
                namespace=s.rollouts.namespace,
                **release_values(rollouts.controller_values(s, registry)),
                atomic=True,
                cleanup_on_fail=True,
                timeout=600,
                max_history=10,
            ),
            # the controller's ServiceMonitor needs the monitoring CRDs
            opts=pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[ns, *crds])),
        )
        after_crds = pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[release]))
        self.templates = [
            apply_manifest(f"analysis-{t['metadata']['name']}", t, after_crds)
            for t in rollouts.cluster_analysis_templates(s)
        ]
        self.register_outputs(
            {"analysisTemplates": [t["metadata"]["name"] for t in rollouts.cluster_analysis_templates(s)]}
        )
