"""Azure Policy for Kubernetes assignments at cluster scope (the add-on is on in components/aks.py):

* the pod security initiative, baseline or restricted (``aks.azurePolicy.podSecurity``), with
  the built-in definition IDs mspnp/aks-baseline uses,
* allowed images: only the stack's registry and mcr.microsoft.com.

Effects: ``aks.azurePolicy.effect`` (dev Audit, prod Deny) and ``allowedImagesEffect``; system
namespaces (``aks.azurePolicy.excludedNamespaces``) are excluded, and the node exporter's own
namespace from pod security (see :func:`pod_security_exclusions`).
"""

from __future__ import annotations

import re

import pulumi
from pulumi_azure_native import authorization

from .render.helm_values import NODE_EXPORTER_NAMESPACE
from .settings import StackSettings

# Built-in 'Kubernetes cluster pod security {baseline,restricted} standards for Linux-based workloads'
POD_SECURITY_INITIATIVES = {
    "baseline": "/providers/Microsoft.Authorization/policySetDefinitions/a8640138-9b0a-4a28-b8cb-1666c838647d",
    "restricted": "/providers/Microsoft.Authorization/policySetDefinitions/42b8ef37-b724-4e24-bbc8-7a7708edfe00",
}
# Built-in 'Kubernetes cluster containers should only use allowed images'
ALLOWED_IMAGES = "/providers/Microsoft.Authorization/policyDefinitions/febd0533-8e55-448f-b837-bd0e06f16469"
MCR = "mcr.microsoft.com"


def allowed_images_regex(registry_login_server: str) -> str:
    hosts = "|".join(re.escape(h) for h in (registry_login_server, MCR))
    return f"^({hosts})/.+$"


def pod_security_exclusions(s: StackSettings) -> list[str]:
    """System namespaces, plus the node exporter's namespace: it reads the host (hostNetwork,
    hostPID, hostPath /proc and /sys), which no pod security level but privileged allows; that
    namespace holds nothing else and is labelled privileged for the same reason. The rest of the
    monitoring stack (``observability.namespace``, baseline) stays under the initiative."""
    return [*s.aks.azure_policy.excluded_namespaces, NODE_EXPORTER_NAMESPACE]


def _value(v) -> authorization.ParameterValuesValueArgs:
    return authorization.ParameterValuesValueArgs(value=v)


class ClusterPolicies(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        settings: StackSettings,
        cluster_id: pulumi.Input[str],
        registry_login_server: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:ClusterPolicies", name, None, opts)
        s = settings
        ap = s.aks.azure_policy
        child = pulumi.ResourceOptions(parent=self)
        excluded = _value(list(ap.excluded_namespaces))
        authorization.PolicyAssignment(
            "pod-security",
            authorization.PolicyAssignmentArgs(
                scope=cluster_id,
                policy_assignment_name=s.name("pod-security"),
                display_name=f"[{s.name('aks')}] Kubernetes pod security {ap.pod_security} standards",
                policy_definition_id=POD_SECURITY_INITIATIVES[ap.pod_security],
                enforcement_mode=authorization.EnforcementMode.DEFAULT,
                parameters={"effect": _value(ap.effect), "excludedNamespaces": _value(pod_security_exclusions(s))},
            ),
            opts=child,
        )
        authorization.PolicyAssignment(
            "allowed-images",
            authorization.PolicyAssignmentArgs(
                scope=cluster_id,
                policy_assignment_name=s.name("allowed-images"),
                display_name=f"[{s.name('aks')}] Images only from the stack's registry and {MCR}",
                policy_definition_id=ALLOWED_IMAGES,
                enforcement_mode=authorization.EnforcementMode.DEFAULT,
                parameters={
                    "effect": _value(ap.allowed_images_effect),
                    "excludedNamespaces": excluded,
                    "allowedContainerImagesRegex": _value(
                        pulumi.Output.from_input(registry_login_server).apply(allowed_images_regex)
                    ),
                },
            ),
            opts=child,
        )
        self.register_outputs({})
