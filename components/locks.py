"""Management locks: ``CanNotDelete`` on prod's stateful resources.

``protect`` only stops Pulumi; a lock also stops the portal, the CLI and other tooling from
deleting the resource (and its child resources: a locked vault's secrets and a locked server's
databases cannot be deleted either, which is the point). Locks are prod only: dev is torn
down and rebuilt freely.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
from pulumi_azure_native import authorization

from .settings import StackSettings

LOCK_NAME = "do-not-delete"


class Locks(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        settings: StackSettings,
        targets: Mapping[str, pulumi.Input[str]],
        opts: pulumi.ResourceOptions | None = None,
    ):
        """``targets``: a short key (cluster, postgres, ...) -> the ARM id of the resource to lock."""
        super().__init__("event-backbone:platform:Locks", name, None, opts)
        self.locks: dict[str, authorization.ManagementLockByScope] = {}
        if settings.is_prod:
            for key, resource_id in targets.items():
                self.locks[key] = authorization.ManagementLockByScope(
                    f"lock-{key}",
                    authorization.ManagementLockByScopeArgs(
                        scope=resource_id,
                        lock_name=LOCK_NAME,
                        level=authorization.LockLevel.CAN_NOT_DELETE,
                        notes=f"{settings.name()}: stateful, deleted only by removing this lock on purpose"
                        " (docs/hardening.md)",
                    ),
                    opts=pulumi.ResourceOptions(parent=self),
                )
        self.register_outputs({})
