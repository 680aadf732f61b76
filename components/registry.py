"""Azure Container Registry: naming (used by the firewall rules before the registry exists)."""

from __future__ import annotations

import pulumi

from .settings import StackSettings


def registry_name(s: StackSettings, suffix: pulumi.Input[str]) -> pulumi.Output[str]:
    """Globally unique, alphanumeric only (ACR names allow no hyphens)."""
    return pulumi.Output.from_input(suffix).apply(lambda x: f"{s.name_prefix}{s.environment}acr{x}")


def login_server(s: StackSettings, suffix: pulumi.Input[str]) -> pulumi.Output[str]:
    return registry_name(s, suffix).apply(lambda n: f"{n}.azurecr.io")
