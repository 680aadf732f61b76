"""The services' image signatures (issue 23), pure: what the stack renders from its settings.

* ``certificate_policy``: the Key Vault certificate policy of the signing certificate
  (``az keyvault certificate create -p @build/<stack>/signing/certificate-policy.json``): the
  Notary Project's requirements (subject with CN, O, ST, C; key usage digitalSignature only; EKU
  code signing; non-exportable RSA 3072), self-signed, PEM.
* ``trust_policy``: the Notation trust policy (format 1.0): each service's repository in the
  stack's registry, strict verification, the certificate's trust store, its subject pinned.
  Ratify's chart values (``ratify_values``) carry the same scopes, identities and level (its
  Key Vault store is ``ca:azurekeyvault``), so what the cluster enforces is what
  ``tests/test_image_signing.py`` runs the real ``notation`` against.
* ``ACR_REPOSITORY_CONDITION``: the ABAC condition that limits a registry role to one repository.
"""

from __future__ import annotations

from typing import Any

from ..settings import StackSettings
from .helm_values import Chart
from .images import pull

TRUST_STORE = "image-signing"  # x509 trust store of type ca (Notation) = Ratify's cert store name
SIGNATURE_ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
CODE_SIGNING_EKU = "1.3.6.1.5.5.7.3.3"
KEY_SIZE = 3072
VALIDITY_MONTHS = 12

# Registry data actions a repository role carries; the condition lets each of them through only
# for the named repository (learn.microsoft.com: container-registry-rbac-abac-repository-permissions).
REPOSITORY_ACTIONS = ("content/read", "content/write", "metadata/read", "metadata/write")


def repository_condition(repository: str, actions: tuple[str, ...] = REPOSITORY_ACTIONS) -> str:
    """An ABAC condition (version 2.0): the role's repository actions on `repository` only."""
    if not repository or "'" in repository:
        raise ValueError(f"not a repository name: {repository!r}")
    not_actions = " AND ".join(
        f"!(ActionMatches{{'Microsoft.ContainerRegistry/registries/repositories/{a}'}})" for a in actions
    )
    return (
        f"(({not_actions}) OR "
        f"(@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEqualsIgnoreCase '{repository}'))"
    )


def certificate_policy(s: StackSettings) -> dict[str, Any]:
    sig = s.registry.images.signing
    return {
        "issuerParameters": {"name": "Self"},
        "keyProperties": {"exportable": False, "keyType": "RSA", "keySize": KEY_SIZE, "reuseKey": True},
        "secretProperties": {"contentType": "application/x-pem-file"},
        "x509CertificateProperties": {
            "subject": sig.subject,
            "ekus": [CODE_SIGNING_EKU],
            "keyUsage": ["digitalSignature"],
            "validityInMonths": VALIDITY_MONTHS,
        },
        "lifetimeActions": [{"trigger": {"daysBeforeExpiry": 30}, "action": {"actionType": "EmailContacts"}}],
    }


def trust_policy(s: StackSettings, login_server: str) -> dict[str, Any]:
    sig = s.registry.images.signing
    return {
        "version": "1.0",
        "trustPolicies": [
            {
                "name": s.name("services"),
                "registryScopes": [f"{login_server}/{svc}" for svc in sorted(s.services)],
                "signatureVerification": {"level": "strict"},
                "trustStores": [f"ca:{TRUST_STORE}"],
                "trustedIdentities": [f"x509.subject: {sig.subject}"],
            }
        ],
    }


# Ratify v1.4.0 (chart 1.15.0, charts/ratify of ratify-project/ratify at tag v1.4.0, commit
# f3f6229dee1051e4beb580ec17ad68b7a45f23af): the Gatekeeper external data provider that verifies
# each pod's images; the signed-images Azure Policy calls it (components/images.py).
RATIFY_CHART = Chart("ratify", "ratify", "1.15.0", "https://ratify-project.github.io/ratify")
RATIFY_VERSION = "v1.4.0"
RATIFY_COMMIT = "f3f6229dee1051e4beb580ec17ad68b7a45f23af"
# the ConstraintTemplate the definition installs: Ratify's own, at that commit (not copied here)
RATIFY_TEMPLATE_URL = (
    f"https://raw.githubusercontent.com/ratify-project/ratify/{RATIFY_COMMIT}/library/default/template.yaml"
)
RATIFY_PROVIDER = "ratify-provider"  # the chart's Provider (templates/provider.yaml)


def _lift(value: Any, fn):
    return value.apply(fn) if hasattr(value, "apply") else fn(value)


def ratify_values(s: StackSettings, registry: Any, vault_uri: Any, tenant_id: Any, client_id: Any) -> dict[str, Any]:
    """The chart's values: images through the registry's ghcr cache, the Key Vault certificate
    through workload identity, the stack's trust policy (the chart names the Key Vault store
    ``ca:azurekeyvault``), Notation only. Azure Policy's Gatekeeper (the AKS add-on) does not call
    mutation providers, so tag-to-digest mutation is off; the add-on needs the certificate rotation."""

    def policy(login: str) -> list[dict]:
        [doc] = trust_policy(s, login)["trustPolicies"]
        return [
            {
                "name": doc["name"],
                "registryScopes": doc["registryScopes"],
                "trustedIdentities": doc["trustedIdentities"],
                "trustStores": ["ca:azurekeyvault"],
                "verificatonLevel": doc["signatureVerification"]["level"],  # sic: the chart's key
            }
        ]

    return {
        "image": {
            "repository": pull("ghcr.io/ratify-project/ratify", registry),
            "crdRepository": pull("ghcr.io/ratify-project/ratify-crds", registry),
            "tag": RATIFY_VERSION,
        },
        "replicaCount": 2 if s.is_prod else 1,
        "serviceAccount": {"create": True, "name": "ratify-admin"},
        "azureWorkloadIdentity": {"clientId": client_id},
        "oras": {"authProviders": {"azureWorkloadIdentityEnabled": True}},
        "azurekeyvault": {
            "enabled": True,
            "vaultURI": vault_uri,
            "tenantId": tenant_id,
            "certificates": [{"name": s.registry.images.signing.certificate_name}],
        },
        "notation": {"enabled": True, "trustPolicies": _lift(registry, policy)},
        "cosign": {"enabled": False},
        "provider": {"enableMutation": False},
        "featureFlags": {"RATIFY_CERT_ROTATION": True},
    }
