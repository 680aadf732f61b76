"""Durable RabbitMQ on AKS: the Cluster Operator, a RabbitmqCluster on zone-redundant
Retain volumes, TLS with a certificate the stack issues, the topology loaded at boot,
per-service users whose passwords live in Key Vault, NetworkPolicies, a PDB and a
ServiceMonitor. The data comes from ``components.render.broker``; this module only wires."""

from __future__ import annotations

import json

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from .kube import apply_manifest
from .load_test import LoadTest
from .render import broker as render
from .settings import LOAD_TEST_USER, StackSettings
from .vault import Vault

CA_VALIDITY_HOURS = 5 * 365 * 24
CERT_VALIDITY_HOURS = 365 * 24
CERT_RENEW_HOURS = 30 * 24


def store_connection_strings(s: StackSettings, vault: Vault, host: pulumi.Input[str]) -> dict[str, pulumi.Output[str]]:
    """Each service's AMQPS connection string as a Key Vault secret (never an output);
    returns the secrets' URIs. Shared by both broker backends."""
    users = render.users_and_secrets(s)
    uris = {}
    for svc in s.services:
        password = vault.secrets[users[render.user_name(svc)]].value
        url = pulumi.Output.all(password, host).apply(
            lambda a, svc=svc: render.connection_string(s, svc, a[0], host=a[1])
        )
        uris[svc] = vault.store(f"broker-{svc}-url", url, "text/plain; format=amqps-uri", tags={"service": svc})
    return uris


def store_monitor_connection_string(s: StackSettings, vault: Vault, host: pulumi.Input[str]) -> pulumi.Output[str]:
    """The queue-depth reader's (keda-monitor) AMQPS URI, for KEDA's TriggerAuthentications."""
    password = vault.secrets[render.MONITOR_SECRET].value
    url = pulumi.Output.all(password, host).apply(
        lambda a: render.connection_string(s, "", a[0], host=a[1], user=render.MONITOR_USER)
    )
    return vault.store(
        f"{render.MONITOR_SECRET}-url", url, "text/plain; format=amqps-uri", tags={"user": render.MONITOR_USER}
    )


def operator_manifest_url(version: str) -> str:
    return f"https://github.com/rabbitmq/cluster-operator/releases/download/v{version}/cluster-operator.yml"


def _label_operator_namespace(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    props = render.label_operator_namespace(args.type_, dict(args.props))
    return None if props is None else pulumi.ResourceTransformResult(props=props, opts=args.opts)


class Broker(pulumi.ComponentResource):
    amqps_endpoint: pulumi.Output[str]
    management_url: pulumi.Output[str]
    connection_string_uris: dict[str, pulumi.Output[str]]
    ca_cert_uri: pulumi.Output[str]
    monitor_url_uri: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        vault: Vault,
        provider: k8s.Provider,
        crds: list[pulumi.Resource] | None = None,
        registry: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:Broker", name, None, opts)
        s = settings
        b = s.broker
        kube = pulumi.ResourceOptions(parent=self, provider=provider)

        # Deleting the namespace or the cluster would take the broker down with it: protected in prod.
        stateful = pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(protect=s.protect))
        ns = apply_manifest("namespace", render.namespace(s), stateful)
        in_ns = pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[ns]))

        # The release manifest creates rabbitmq-system itself: a transform labels that Namespace
        # object as it is created (before the operator's pod is admitted), and a NamespacePatch
        # with the same labels makes them visible to the plan and the policy gate. The manifest
        # also names Docker Hub: its Deployment is rewritten on the way in so that the operator
        # (and the images it defaults to) come through the registry.
        transforms: list[pulumi.ResourceTransform] = [_label_operator_namespace]
        if registry is not None:
            login = pulumi.Output.from_input(registry)

            async def through_registry(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
                if args.type_ != "kubernetes:apps/v1:Deployment":
                    return None
                props = dict(args.props)
                changed = render.operator_workload({"kind": "Deployment", **props}, await login.future() or "")
                changed.pop("kind")
                return pulumi.ResourceTransformResult(props={**props, **changed}, opts=args.opts)

            transforms.append(through_registry)
        operator = k8s.yaml.v2.ConfigFile(
            "cluster-operator",
            file=operator_manifest_url(b.operator_version),
            opts=pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(transforms=transforms)),
        )
        patch = render.operator_namespace_patch()
        k8s.core.v1.NamespacePatch(
            "operator-namespace-pod-security",
            metadata=patch["metadata"],
            opts=pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[operator])),
        )
        storage = apply_manifest("storage-class", render.storage_class(s), kube)

        # --- TLS: a CA and a server certificate issued by the stack, kept in Kubernetes secrets.
        ca_key = tls.PrivateKey(
            "ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=self)
        )
        ca = tls.SelfSignedCert(
            "ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=f"event-backbone broker CA ({s.environment})", organization="event-backbone"
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        server_key = tls.PrivateKey(
            "server-key", algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=self)
        )
        csr = tls.CertRequest(
            "server-csr",
            private_key_pem=server_key.private_key_pem,
            dns_names=render.server_dns_names(s),
            subject=tls.CertRequestSubjectArgs(common_name=render.service_host(s), organization="event-backbone"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        cert = tls.LocallySignedCert(
            "server-cert",
            cert_request_pem=csr.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca.cert_pem,
            validity_period_hours=CERT_VALIDITY_HOURS,
            early_renewal_hours=CERT_RENEW_HOURS,
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        tls_name, ca_name, defs_name = f"{b.cluster_name}-tls", f"{b.cluster_name}-ca", f"{b.cluster_name}-definitions"
        tls_secret = k8s.core.v1.Secret(
            "tls-secret",
            metadata={"name": tls_name, "namespace": b.namespace},
            type="kubernetes.io/tls",
            string_data={"tls.crt": cert.cert_pem, "tls.key": pulumi.Output.secret(server_key.private_key_pem)},
            opts=in_ns,
        )
        ca_secret = k8s.core.v1.Secret(
            "ca-secret",
            metadata={"name": ca_name, "namespace": b.namespace},
            string_data={"ca.crt": ca.cert_pem},
            opts=in_ns,
        )
        self.ca_cert_uri = vault.store(
            "broker-ca-cert", ca.cert_pem, "application/x-pem-file", tags={"generatedBy": "pulumi-tls"}
        )

        # --- Topology: definitions (with password hashes) loaded at boot from a secret.
        users = render.users_and_secrets(s)
        passwords = {user: vault.secrets[secret].value for user, secret in users.items()}

        def hashes(values: list[str]) -> dict[str, str]:
            return {
                user: render.password_hash(pw, render.stable_salt(user, s.key_vault.rotation.get(users[user], 0)))
                for user, pw in zip(users, values, strict=True)
            }

        definitions_json = pulumi.Output.secret(
            pulumi.Output.all(*passwords.values()).apply(
                lambda values: json.dumps(render.definitions(s, hashes(list(values))), indent=2)
            )
        )
        defs_secret = k8s.core.v1.Secret(
            "definitions-secret",
            metadata={"name": defs_name, "namespace": b.namespace},
            string_data={"definitions.json": definitions_json},
            opts=in_ns,
        )
        admin_name = f"{b.cluster_name}-admin"
        admin_secret = k8s.core.v1.Secret(
            "admin-secret",
            metadata={"name": admin_name, "namespace": b.namespace},
            string_data={"username": render.ADMIN_USER, "password": passwords[render.ADMIN_USER]},
            opts=in_ns,
        )

        cluster = apply_manifest(
            "cluster",
            render.rabbitmq_cluster(s, tls_name, ca_name, defs_name, admin_name, registry),
            pulumi.ResourceOptions.merge(
                stateful,
                pulumi.ResourceOptions(
                    depends_on=[operator, storage, tls_secret, ca_secret, defs_secret, admin_secret],
                ),
            ),
        )
        apply_manifest("pdb", render.pod_disruption_budget(s), in_ns)
        for policy in render.network_policies(s):
            apply_manifest(f"netpol-{policy['metadata']['name']}", policy, in_ns)
        apply_manifest(
            "service-monitor",
            render.service_monitor(s, ca_name),
            pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[cluster, *(crds or [])])),
        )

        self.connection_string_uris = store_connection_strings(s, vault, render.service_host(s))
        self.monitor_url_uri = store_monitor_connection_string(s, vault, render.service_host(s))

        if b.load_test.enabled:  # opt-in: docs/runbooks/load-test.md
            LoadTest(
                "load-test",
                s,
                vault.secrets[users[LOAD_TEST_USER]].value,
                ca.cert_pem,
                provider,
                broker=[cluster, ns],
                registry=registry,
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.amqps_endpoint = pulumi.Output.from_input(render.amqps_endpoint(s))
        self.management_url = pulumi.Output.from_input(render.management_url(s))
        self.register_outputs({"amqpsEndpoint": self.amqps_endpoint, "managementUrl": self.management_url})
