"""Each service's own Entra principal: one user-assigned managed identity per service
(``<prefix>-<env>-id-<service>``). Its PostgreSQL role (``svc-<service>``) is mapped to this
identity by the bootstrap Job (components/postgres.py). The service landing zones (issue 9)
add the federated credential for the service's ServiceAccount and its Key Vault grants."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
from pulumi_azure_native import managedidentity

from .network import Network
from .settings import StackSettings


class ServiceIdentities(pulumi.ComponentResource):
    principal_ids: dict[str, pulumi.Output[str]]
    client_ids: dict[str, pulumi.Output[str]]
    names: dict[str, pulumi.Output[str]]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        net: Network,
        services: Sequence[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:ServiceIdentities", name, None, opts)
        s = settings
        self.principal_ids, self.client_ids, self.names = {}, {}, {}
        for svc in services:
            identity = managedidentity.UserAssignedIdentity(
                f"id-{svc}",
                resource_group_name=net.resource_group_name,
                resource_name_=s.name("id", svc),
                location=s.location,
                tags={**s.tags, "environment": s.environment, "service": svc},
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.principal_ids[svc] = identity.principal_id
            self.client_ids[svc] = identity.client_id
            self.names[svc] = identity.name
        self.register_outputs({"clientIds": self.client_ids})
