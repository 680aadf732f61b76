"""A service's landing zone: everything one ``services.<name>`` entry gives a service.

Azure side: a federated credential on the service's own user-assigned identity
(components/identities.py) for exactly ``system:serviceaccount:<svc>:<svc>``, and Key Vault
Secrets User on each of its own secrets (secret-level scope ``<vaultId>/secrets/<name>``),
nothing at vault scope. Cluster side: the objects components/render/landing.py renders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import managedidentity

from . import rbac
from .kube import apply_manifest
from .render import landing as render
from .settings import StackSettings

WORKLOAD_AUDIENCE = "api://AzureADTokenExchange"


def secret_scope(vault_id: pulumi.Input[str], secret_uri: pulumi.Input[str], name: str) -> pulumi.Output[str]:
    """``<vaultId>/secrets/<name>``, waiting for the secret to exist (its URI depends on it)."""
    return pulumi.Output.all(vault_id, secret_uri).apply(lambda a: f"{a[0]}/secrets/{name}")


def grant_secrets(
    prefix: str,
    *,
    principal_id: pulumi.Input[str],
    vault_id: pulumi.Input[str],
    secrets: Mapping[str, pulumi.Input[str]],
    client: pulumi.Output,
    who: str,
    opts: pulumi.ResourceOptions,
) -> None:
    """Key Vault Secrets User on each named secret (name -> its URI), one assignment each."""
    for name, uri in secrets.items():
        rbac.grant(
            f"{prefix}-reads-{name}",
            role=rbac.KEY_VAULT_SECRETS_USER,
            principal_id=principal_id,
            scope=secret_scope(vault_id, uri, name),
            client=client,
            description=f"{who} reads the Key Vault secret {name} (and nothing else)",
            opts=opts,
        )


def federate(
    name: str,
    *,
    resource_group_name: pulumi.Input[str],
    identity_name: pulumi.Input[str],
    issuer: pulumi.Input[str],
    namespace: str,
    service_account: str,
    opts: pulumi.ResourceOptions,
) -> managedidentity.FederatedIdentityCredential:
    """Lets exactly one Kubernetes service account sign in as the identity."""
    return managedidentity.FederatedIdentityCredential(
        name,
        resource_group_name=resource_group_name,
        resource_name_=identity_name,
        federated_identity_credential_resource_name=f"{namespace}-{service_account}",
        issuer=issuer,
        subject=f"system:serviceaccount:{namespace}:{service_account}",
        audiences=[WORKLOAD_AUDIENCE],
        opts=opts,
    )


class ServiceLanding(pulumi.ComponentResource):
    """One service's namespace, identity wiring, secrets, network isolation, quota and scrape
    config, and its KEDA autoscaling (``keda_client_id``: KEDA's identity, when it scales).
    ``secret_uris``: Key Vault secret name -> URI for every secret the service reads."""

    namespace: pulumi.Resource

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        service: str,
        *,
        resource_group_name: pulumi.Input[str],
        identity_name: pulumi.Input[str],
        principal_id: pulumi.Input[str],
        client_id: pulumi.Input[str],
        oidc_issuer_url: pulumi.Input[str],
        vault_id: pulumi.Input[str],
        vault_name: pulumi.Input[str],
        vault_uri: pulumi.Input[str],
        keda_client_id: pulumi.Input[str] | None,
        secret_uris: Mapping[str, pulumi.Input[str]],
        client: pulumi.Output,
        provider: k8s.Provider,
        crds: Sequence[pulumi.Resource] = (),
        redis_host: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """``redis_host``: the Azure Managed Redis host, for a service with ``redis: true``."""
        super().__init__("event-backbone:platform:ServiceLanding", name, None, opts)
        s, svc = settings, service
        child = pulumi.ResourceOptions(parent=self)
        wanted = set(render.secret_names(s, svc).values())
        if set(secret_uris) != wanted:
            raise ValueError(f"{svc}: expected the secrets {sorted(wanted)}, got {sorted(secret_uris)}")

        # Child names carry the service: URNs name the parent's type, not the parent.
        federate(
            f"{svc}-federation",
            resource_group_name=resource_group_name,
            identity_name=identity_name,
            issuer=oidc_issuer_url,
            namespace=svc,
            service_account=svc,
            opts=child,
        )
        grant_secrets(
            svc,
            principal_id=principal_id,
            vault_id=vault_id,
            secrets=secret_uris,
            client=client,
            who=f"service {svc}",
            opts=child,
        )

        kube = pulumi.ResourceOptions(parent=self, provider=provider)
        if s.services[svc].redis and redis_host is None:
            raise ValueError(f"{svc} uses Redis: pass the Redis host")
        objects = render.manifests(
            s, svc, client_id, vault_name, client.tenant_id, vault_uri, keda_client_id, redis_host, principal_id
        )
        ns = apply_manifest(f"{svc}-namespace", objects[0], kube)
        in_ns = pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[ns]))
        after_crds = pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=list(crds)))
        for manifest in objects[1:]:
            kind, object_name = manifest["kind"], manifest["metadata"]["name"]
            logical = f"{svc}-{kind.lower()}-{object_name}"
            # PodMonitor: kube-prometheus-stack's CRDs; KEDA's and the CSI driver's come with AKS add-ons
            apply_manifest(logical, manifest, after_crds if kind == "PodMonitor" else in_ns)
        self.namespace = ns
        self.register_outputs({"namespace": svc})
