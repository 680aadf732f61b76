"""Only signed images run in the services' namespaces (issue 23, docs/images.md).

At preview no signature can be read, so the pack checks the two things that make the cluster's
check hold: (1) the signed-images assignment (Ratify's Gatekeeper template, definition
``<prefix>-<env>-signed-images``) is on the cluster for every service namespace, with effect Deny
where ``requireDeny`` is set (prod); (2) where ``requireSignedImages`` is set (prod), every
container of every workload in a service namespace names an image Ratify can verify and the
pipeline signs: a digest (``@sha256:``, never a tag, which can be re-pointed after signing) in the
service's own repository of the stack's registry, or a documented Microsoft image
(``mcr.microsoft.com``). Anything else is an unsigned image in prod."""

from __future__ import annotations

import re

from kit import MANDATORY, config, get, schema, violation
from pulumi_policy import StackValidationPolicy

REGISTRY = "azure-native:containerregistry:Registry"
POLICY_DEFINITION = "azure-native:authorization:PolicyDefinition"
POLICY_ASSIGNMENT = "azure-native:authorization:PolicyAssignment"
NAMESPACE = "kubernetes:core/v1:Namespace"
SERVICE_LABEL = "event-backbone.io/service"
MICROSOFT = "mcr.microsoft.com/"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# kind -> where its pod spec is
WORKLOADS = {
    "kubernetes:apps/v1:Deployment": "spec.template.spec",
    "kubernetes:apps/v1:StatefulSet": "spec.template.spec",
    "kubernetes:apps/v1:DaemonSet": "spec.template.spec",
    "kubernetes:apps/v1:ReplicaSet": "spec.template.spec",
    "kubernetes:batch/v1:Job": "spec.template.spec",
    "kubernetes:batch/v1:CronJob": "spec.jobTemplate.spec.template.spec",
    "kubernetes:core/v1:Pod": "spec",
    "kubernetes:argoproj.io/v1alpha1:Rollout": "spec.template.spec",
}


def admissible(image: str, login_server: str, service: str) -> bool:
    if image.startswith(MICROSOFT):
        return True
    return image.startswith(f"{login_server}/{service}@") and bool(DIGEST.search(image))


def _service_namespaces(resources) -> dict[str, str]:
    out = {}
    for r in resources:
        if r.resource_type == NAMESPACE:
            labels = get(r.props, "metadata.labels", {}) or {}
            svc = labels.get(SERVICE_LABEL)
            if svc:
                out[str(get(r.props, "metadata.name", svc))] = str(svc)
    return out


def _signed_images(args, report):
    cfg = config(args)
    resources = list(args.resources)
    namespaces = _service_namespaces(resources)
    definitions = {
        r.urn: str(get(r.props, "policyDefinitionName", ""))
        for r in resources
        if r.resource_type == POLICY_DEFINITION
        and str(get(r.props, "policyDefinitionName", "")).endswith("signed-images")
    }

    def assigns_it(r) -> bool:
        if any(getattr(d, "urn", d) in definitions for d in r.dependencies or []):
            return True
        target = str(get(r.props, "policyDefinitionId", ""))
        return any(target.endswith(f"/{name}") for name in definitions.values())

    assignments = [r for r in resources if r.resource_type == POLICY_ASSIGNMENT and assigns_it(r)]
    if namespaces and not assignments:
        violation(
            report,
            POLICY_ASSIGNMENT,
            "signed-images",
            "policyDefinitionId",
            "not assigned",
            "assign the signed-images definition (components/images.py) to the cluster for the services' namespaces",
        )
    for a in assignments:
        effect = get(a.props, "parameters.effect.value", "Audit")
        if cfg.get("requireDeny", False) and effect != "Deny":
            fix = "use Deny (only signed images run)"
            violation(report, POLICY_ASSIGNMENT, a.name, "parameters.effect", effect, fix, a.urn)
        covered = set(get(a.props, "parameters.namespaces.value", []) or [])
        missing = sorted(set(namespaces) - covered)
        if missing:
            violation(
                report,
                POLICY_ASSIGNMENT,
                a.name,
                "parameters.namespaces",
                sorted(covered),
                f"add the service namespaces {missing}",
                a.urn,
            )
    if not cfg.get("requireSignedImages", False):
        return
    registry = next((r for r in resources if r.resource_type == REGISTRY), None)
    login_server = f"{get(registry.props, 'registryName', '')}.azurecr.io" if registry else "<no registry>"
    for r in resources:
        where = WORKLOADS.get(r.resource_type)
        if where is None:
            continue
        namespace = str(get(r.props, "metadata.namespace", ""))
        service = namespaces.get(namespace)
        if service is None:
            continue
        pod = get(r.props, where, {}) or {}
        for group in ("initContainers", "containers", "ephemeralContainers"):
            for i, container in enumerate(pod.get(group) or []):
                image = str(container.get("image", ""))
                if not admissible(image, login_server, service):
                    violation(
                        report,
                        r.resource_type,
                        f"{namespace}/{get(r.props, 'metadata.name', r.name)}",
                        f"{where}.{group}[{i}].image",
                        image,
                        f"run a signed digest of the service's own repository, {login_server}/{service}@sha256:<digest>"
                        " as the image pipeline prints it (docs/images.md), or a documented mcr.microsoft.com image;"
                        " a tag or another registry cannot carry the stack's signature",
                        r.urn,
                    )


service_images_signed = StackValidationPolicy(
    name="service-images-signed",
    description="The services' namespaces admit only signed digests of their own repository in the stack's"
    " registry (or mcr.microsoft.com): the signed-images assignment covers them (Deny in prod)",
    enforcement_level=MANDATORY,
    validate=_signed_images,
    config_schema=schema(
        {
            "requireDeny": {"type": "boolean", "default": False},
            "requireSignedImages": {"type": "boolean", "default": False},
        }
    ),
)

POLICIES = [service_images_signed]
