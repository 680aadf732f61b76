"""The opt-in broker load test (``broker.loadTest``): RabbitMQ PerfTest as a Kubernetes Job in a
namespace of its own, against the in-cluster broker over AMQPS, as the least-privilege
``perf-test`` user. The data comes from ``components.render.load_test``; this module only wires.
Runbook: docs/runbooks/load-test.md."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from .kube import apply_manifest
from .render import load_test as render
from .settings import StackSettings


class LoadTest(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        settings: StackSettings,
        password: pulumi.Output[str],
        ca_cert_pem: pulumi.Input[str],
        provider: k8s.Provider,
        broker: list[pulumi.Resource],
        registry: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """``password``: the perf-test user's (Key Vault ``broker-perf-test``), a Pulumi secret;
        ``broker``: what must exist before the Job starts (the cluster, its namespace)."""
        super().__init__("event-backbone:platform:LoadTest", name, None, opts)
        s = settings
        kube = pulumi.ResourceOptions(parent=self, provider=provider)
        ns = apply_manifest("load-test-namespace", render.namespace(s), kube)
        in_ns = pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[ns]))

        url = pulumi.Output.secret(password).apply(lambda pw: render.connection_string(s, pw))
        secret = k8s.core.v1.Secret(
            "load-test-broker-secret",
            metadata={"name": render.SECRET, "namespace": s.broker.load_test.namespace, "labels": render.LABELS},
            string_data={"url": pulumi.Output.secret(url), "ca.crt": ca_cert_pem},
            opts=in_ns,
        )
        policies = [
            apply_manifest(f"load-test-netpol-{p['metadata']['name']}", p, in_ns) for p in render.network_policies(s)
        ]
        policies.append(
            apply_manifest(
                "load-test-broker-netpol",
                render.broker_ingress_policy(s),
                pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=broker)),
            )
        )
        # The Job's pod template is immutable: a changed parameter replaces the Job (same name,
        # so the old one goes first).
        apply_manifest(
            "load-test-job",
            render.job(s, registry),
            pulumi.ResourceOptions.merge(
                in_ns,
                pulumi.ResourceOptions(depends_on=[secret, *policies, *broker], delete_before_replace=True),
            ),
        )
        self.register_outputs({"namespace": s.broker.load_test.namespace, "job": render.NAME})
