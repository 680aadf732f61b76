"""The services' images (issue 23, docs/images.md): how a service's own image gets into the
stack's registry, signed, and what the cluster admits.

* **Build registry** (``<prefix><env>build<suffix>``): where the services' pipelines push. Public
  endpoint, authenticated only (admin user and anonymous pull off), and role assignment mode
  ``AbacRepositoryPermissions``, so a push identity's role can be conditioned on one repository.
  The SDK's typed Registry (API 2023-01-01-preview) has no ``roleAssignmentMode``: the build
  registry is the generic ARM resource at API 2025-11-01. The stack's own registry stays in the
  legacy mode (the kubelet keeps AcrPull; nothing pushes to it but imports).
* **Per service** with a repository (``registry.images.githubOwner``): a push identity
  (``<prefix>-<env>-id-push-<svc>``) federated to ``repo:<owner>/<repo>:environment:<env>`` only,
  with Container Registry Repository Writer on the build registry conditioned on the repository
  ``<svc>``, the custom image-importer role on the stack's registry (ImportImage, which ABAC cannot
  condition: a control-plane action), and Key Vault Crypto User / Certificate User on the signing
  certificate's key and certificate only.
* **Admission**: Ratify's identity (federated to its service account) reads the certificate (not
  its key) and pulls signatures; an Azure Policy definition (Ratify's Gatekeeper template, inlined)
  assigned to the cluster for the services' namespaces with ``signing.admissionEffect``.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import authorization, managedidentity, resources

from . import custom_roles, rbac
from .kube import release_values
from .landing import WORKLOAD_AUDIENCE
from .network import Network
from .render import signing
from .settings import StackSettings
from .settings.images import service_repositories

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
REPOSITORY_WRITER = "2a1e307c-b015-4ebd-883e-5b7698a07328"  # Container Registry Repository Writer
REPOSITORY_READER = "b93aa761-3e63-49ed-ac28-beffa264f7ac"  # Container Registry Repository Reader
KEY_VAULT_CRYPTO_USER = "12338af0-0e69-4776-bea7-57ae8d297424"
KEY_VAULT_CERTIFICATE_USER = "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba"
IMPORT_ACTION = custom_roles.IMPORT_ACTION
BUILD_REGISTRY_API = "2025-11-01"
RATIFY_NAMESPACE = "gatekeeper-system"
RATIFY_SERVICE_ACCOUNT = "ratify-admin"
SIGNED_IMAGES_POLICY = "signed-images"  # the custom definition's name suffix


def build_registry_name(s: StackSettings, suffix: str) -> str:
    return f"{s.name_prefix}{s.environment}build{suffix}"


def importer_guid(s: StackSettings) -> str:
    """The custom image-importer role's GUID: stable per stack. The bootstrap creates the role
    (components/custom_roles.py says why a main stack never writes a role definition)."""
    return custom_roles.guid(s.environment, custom_roles.IMAGE_IMPORTER)


def federated_subject(repository: str, environment: str) -> str:
    """GitHub's OIDC subject of a job that runs in `environment` of `repository`."""
    return f"repo:{repository}:environment:{environment}"


def signed_images_rule() -> dict:
    return {
        "if": {"field": "type", "in": ["Microsoft.ContainerService/managedClusters"]},
        "then": {
            "effect": "[parameters('effect')]",
            "details": {
                # Ratify's ConstraintTemplate (every pod image to its external data provider; a
                # failed or missing verification is a violation), at a pinned commit
                "templateInfo": {"sourceType": "PublicURL", "url": signing.RATIFY_TEMPLATE_URL},
                "apiGroups": [""],
                "kinds": ["Pod"],
                "namespaces": "[parameters('namespaces')]",
            },
        },
    }


class ImageSupply(pulumi.ComponentResource):
    push_client_ids: dict[str, pulumi.Output[str]]
    build_login_server: pulumi.Output[str] | None
    ratify_client_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        net: Network,
        client: pulumi.Output,
        suffix: pulumi.Input[str],
        registry_id: pulumi.Input[str],
        vault_id: pulumi.Input[str],
        cluster_id: pulumi.Input[str],
        oidc_issuer_url: pulumi.Input[str],
        provider: k8s.Provider,
        registry: pulumi.Input[str],
        vault_uri: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:ImageSupply", name, None, opts)
        s = settings
        im = s.registry.images
        child = pulumi.ResourceOptions(parent=self)
        tags = {**s.tags, "environment": s.environment, "managedBy": "pulumi"}
        cert = im.signing.certificate_name
        key_scope = pulumi.Output.from_input(vault_id).apply(lambda v: f"{v}/keys/{cert}")
        cert_scope = pulumi.Output.from_input(vault_id).apply(lambda v: f"{v}/certificates/{cert}")
        self.push_client_ids = {}
        self.build_login_server = None

        repositories = service_repositories(s)
        if repositories:
            build_name = pulumi.Output.from_input(suffix).apply(lambda x: build_registry_name(s, x))
            # keyword form: ResourceArgs' own `resource_name` collides with the resource's logical name
            build = resources.Resource(
                "build-registry",
                resource_group_name=net.resource_group_name,
                resource_provider_namespace="Microsoft.ContainerRegistry",
                parent_resource_path="",
                resource_type="registries",
                resource_name_=build_name,
                api_version=BUILD_REGISTRY_API,
                location=s.location,
                sku=resources.SkuArgs(name=im.build_registry_sku),
                properties={
                    "adminUserEnabled": False,
                    "anonymousPullEnabled": False,
                    "publicNetworkAccess": "Enabled",
                    "roleAssignmentMode": "AbacRepositoryPermissions",
                },
                tags={**tags, "purpose": "service-image-builds"},
                opts=child,
            )
            # the registry's ARM id, known once it exists (the generic resource's own id is the same path)
            build_id = pulumi.Output.all(build.id, client.subscription_id, net.resource_group_name, build_name).apply(
                lambda a: (
                    f"/subscriptions/{a[1]}/resourceGroups/{a[2]}/providers/Microsoft.ContainerRegistry"
                    f"/registries/{a[3]}"
                )
            )
            self.build_login_server = build_name.apply(lambda n: f"{n}.azurecr.io")

            for svc, repository in repositories.items():
                identity = managedidentity.UserAssignedIdentity(
                    f"id-push-{svc}",
                    resource_group_name=net.resource_group_name,
                    resource_name_=s.name("id", "push", svc),
                    location=s.location,
                    tags={**tags, "component": f"push-{svc}", "pushes": svc},
                    opts=child,
                )
                managedidentity.FederatedIdentityCredential(
                    f"fic-push-{svc}",
                    resource_group_name=net.resource_group_name,
                    resource_name_=identity.name,
                    federated_identity_credential_resource_name="github-"
                    + "".join(c if c.isalnum() else "-" for c in im.github_environment.lower()),
                    issuer=GITHUB_ISSUER,
                    subject=federated_subject(repository, im.github_environment),
                    audiences=[WORKLOAD_AUDIENCE],
                    opts=child,
                )
                authorization.RoleAssignment(
                    f"push-{svc}-repository-writer",
                    authorization.RoleAssignmentArgs(
                        principal_id=identity.principal_id,
                        principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
                        role_definition_id=client.subscription_id.apply(
                            lambda sub: rbac.role_definition_id(sub, REPOSITORY_WRITER)
                        ),
                        scope=build_id,
                        condition=signing.repository_condition(svc),
                        condition_version="2.0",
                        description=f"{repository} pushes (and signs) {svc} in the build registry:"
                        " that repository only",
                    ),
                    opts=child,
                )
                authorization.RoleAssignment(
                    f"push-{svc}-import",
                    authorization.RoleAssignmentArgs(
                        principal_id=identity.principal_id,
                        principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
                        role_definition_id=client.subscription_id.apply(
                            lambda sub: rbac.role_definition_id(sub, importer_guid(s))
                        ),
                        scope=registry_id,
                        description=f"{repository} imports its signed digests into the stack's registry",
                    ),
                    opts=pulumi.ResourceOptions(parent=self),
                )
                for role, scope, what in (
                    (KEY_VAULT_CRYPTO_USER, key_scope, "signs with the image-signing key"),
                    (KEY_VAULT_CERTIFICATE_USER, cert_scope, "reads the image-signing certificate"),
                ):
                    rbac.grant(
                        f"push-{svc}-{'sign' if role == KEY_VAULT_CRYPTO_USER else 'certificate'}",
                        role=role,
                        principal_id=identity.principal_id,
                        scope=scope,
                        client=client,
                        description=f"{repository} {what} (that key only)",
                        opts=child,
                    )
                self.push_client_ids[svc] = identity.client_id

        # Admission: Ratify verifies every image of the services' pods against the trust policy.
        ratify = managedidentity.UserAssignedIdentity(
            "id-ratify",
            resource_group_name=net.resource_group_name,
            resource_name_=s.name("id", "ratify"),
            location=s.location,
            tags={**tags, "component": "ratify"},
            opts=child,
        )
        managedidentity.FederatedIdentityCredential(
            "fic-ratify",
            resource_group_name=net.resource_group_name,
            resource_name_=ratify.name,
            federated_identity_credential_resource_name=f"{RATIFY_NAMESPACE}-{RATIFY_SERVICE_ACCOUNT}",
            issuer=oidc_issuer_url,
            subject=f"system:serviceaccount:{RATIFY_NAMESPACE}:{RATIFY_SERVICE_ACCOUNT}",
            audiences=[WORKLOAD_AUDIENCE],
            opts=child,
        )
        rbac.grant(
            "ratify-certificate",
            role=KEY_VAULT_CERTIFICATE_USER,
            principal_id=ratify.principal_id,
            scope=cert_scope,
            client=client,
            description="Ratify reads the image-signing certificate (its public part) to verify signatures",
            opts=child,
        )
        rbac.grant(
            "ratify-acr-pull",
            role=rbac.ACR_PULL,
            principal_id=ratify.principal_id,
            scope=registry_id,
            client=client,
            description="Ratify reads the signatures (referrers) next to the images in the stack's registry",
            opts=child,
        )
        self.ratify_client_id = ratify.client_id
        chart = signing.RATIFY_CHART
        # in gatekeeper-system, the Azure Policy add-on's Gatekeeper namespace (it exists with the add-on)
        self.ratify = k8s.helm.v3.Release(
            "ratify",
            k8s.helm.v3.ReleaseArgs(
                name=chart.release,
                chart=chart.chart,
                version=chart.version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo),
                namespace=RATIFY_NAMESPACE,
                create_namespace=False,
                **release_values(signing.ratify_values(s, registry, vault_uri, client.tenant_id, ratify.client_id)),
                atomic=True,
                cleanup_on_fail=True,
                timeout=600,
                max_history=10,
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )

        definition = authorization.PolicyDefinition(
            "signed-images-definition",
            authorization.PolicyDefinitionArgs(
                policy_definition_name=s.name(SIGNED_IMAGES_POLICY),
                display_name=f"[{s.name('aks')}] Only images signed with the stack's certificate (Ratify)",
                description="Every container image of a pod must carry a Notation signature that Ratify verifies"
                " against the stack's trust policy (docs/images.md)",
                mode="Microsoft.Kubernetes.Data",
                policy_type=authorization.PolicyType.CUSTOM,
                parameters={
                    "effect": authorization.ParameterDefinitionsValueArgs(
                        type=authorization.ParameterType.STRING,
                        allowed_values=["Audit", "Deny", "Disabled"],
                        default_value="Audit",
                    ),
                    "namespaces": authorization.ParameterDefinitionsValueArgs(
                        type=authorization.ParameterType.ARRAY, default_value=[]
                    ),
                },
                policy_rule=signed_images_rule(),
            ),
            opts=child,
        )
        # after Ratify runs: in Deny, a pod the provider cannot answer for is refused
        authorization.PolicyAssignment(
            "signed-images",
            authorization.PolicyAssignmentArgs(
                scope=cluster_id,
                policy_assignment_name=s.name(SIGNED_IMAGES_POLICY),
                display_name=f"[{s.name('aks')}] Signed images only in the services' namespaces",
                policy_definition_id=definition.id,
                enforcement_mode=authorization.EnforcementMode.DEFAULT,
                parameters={
                    "effect": authorization.ParameterValuesValueArgs(value=im.signing.admission_effect),
                    "namespaces": authorization.ParameterValuesValueArgs(value=sorted(s.services)),
                },
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.ratify]),
        )
        self.register_outputs({"pushClientIds": self.push_client_ids})
