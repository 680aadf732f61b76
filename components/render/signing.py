"""The services' image signatures (issue 23), pure: what the stack renders from its settings.

* ``certificate_policy``: the Key Vault certificate policy of the signing certificate
  (``az keyvault certificate create -p @build/<stack>/signing/certificate-policy.json``): the
  Notary Project's requirements (subject with CN, O, ST, C; key usage digitalSignature only; EKU
  code signing; non-exportable RSA 3072), self-signed, PEM.
* ``trust_policy``: the Notation trust policy (format 1.0): each service's repository in the
  stack's registry, strict verification, the certificate's trust store, its subject pinned.
  Ratify's Notation verifier (``ratify_verifier``) carries the same document, so what the cluster
  enforces is what ``tests/test_image_signing.py`` runs the real ``notation`` against.
* ``ACR_REPOSITORY_CONDITION``: the ABAC condition that limits a registry role to one repository.
"""

from __future__ import annotations

from typing import Any

from ..settings import StackSettings

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


RATIFY_API = "config.ratify.deislabs.io/v1beta1"
KMP_NAME = "image-signing-kv"


def ratify_verifier(s: StackSettings, login_server: str) -> dict[str, Any]:
    """Ratify's Notation verifier: the stack's trust policy, its cert store from Key Vault."""
    return {
        "apiVersion": RATIFY_API,
        "kind": "Verifier",
        "metadata": {"name": "verifier-notation"},
        "spec": {
            "name": "notation",
            "artifactTypes": SIGNATURE_ARTIFACT_TYPE,
            "parameters": {
                "verificationCertStores": {"ca": {TRUST_STORE: [KMP_NAME]}},
                "trustPolicyDoc": trust_policy(s, login_server),
            },
        },
    }


def ratify_key_management_provider(vault_uri: str, tenant_id: str, client_id: str, s: StackSettings) -> dict:
    """Ratify reads the signing certificate (public part) from Key Vault with workload identity."""
    return {
        "apiVersion": RATIFY_API,
        "kind": "KeyManagementProvider",
        "metadata": {"name": KMP_NAME},
        "spec": {
            "type": "azurekeyvault",
            "refreshInterval": "1h",
            "parameters": {
                "vaultURI": vault_uri,
                "certificates": [{"name": s.registry.images.signing.certificate_name}],
                "tenantID": tenant_id,
                "clientID": client_id,
            },
        },
    }
