"""KEDA's access: the AKS KEDA add-on's operator (``kube-system/keda-operator``) resolves the
services' TriggerAuthentications with its own user-assigned identity, which may read exactly
the queue-depth reader's connection string and the broker CA in Key Vault (secret scope).
The reader (broker user ``keda-monitor``) may open the vhost and nothing else."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
from pulumi_azure_native import managedidentity

from .landing import federate, grant_secrets
from .render import landing as render
from .settings import StackSettings


class KedaAccess(pulumi.ComponentResource):
    client_id: pulumi.Output[str]
    principal_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        *,
        resource_group_name: pulumi.Input[str],
        oidc_issuer_url: pulumi.Input[str],
        vault_id: pulumi.Input[str],
        secret_uris: Mapping[str, pulumi.Input[str]],
        client: pulumi.Output,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:KedaAccess", name, None, opts)
        s = settings
        child = pulumi.ResourceOptions(parent=self)
        wanted = set(render.keda_secret_names(s))
        if set(secret_uris) != wanted:
            raise ValueError(f"KEDA: expected the secrets {sorted(wanted)}, got {sorted(secret_uris)}")
        identity = managedidentity.UserAssignedIdentity(
            "keda-identity",
            resource_group_name=resource_group_name,
            resource_name_=s.name("id", "keda"),
            location=s.location,
            tags={**s.tags, "environment": s.environment, "component": "keda"},
            opts=child,
        )
        federate(
            "keda-federation",
            resource_group_name=resource_group_name,
            identity_name=identity.name,
            issuer=oidc_issuer_url,
            namespace=render.KEDA_NAMESPACE,
            service_account=render.KEDA_SERVICE_ACCOUNT,
            opts=child,
        )
        grant_secrets(
            "keda",
            principal_id=identity.principal_id,
            vault_id=vault_id,
            secrets=secret_uris,
            client=client,
            who="KEDA (queue-depth scaling)",
            opts=child,
        )
        self.client_id = identity.client_id
        self.principal_id = identity.principal_id
        self.register_outputs({"clientId": self.client_id})
