"""The services' images (``registry.images``, issue 23): who may push them, how they are signed,
what the cluster admits. Unset ``githubOwner`` means no service pushes (no push identities, no
build registry); the admission policy is rendered either way.

* Each service's repository is ``<githubOwner>/<service>`` unless ``services.<name>.repository``
  names another; its push job runs in ``githubEnvironment`` (the federated subject names both).
* Signing: Notation with a certificate in the stack's Key Vault (``signing.certificateName``,
  created once from the rendered policy, docs/images.md); the trust policy pins its ``subject``.
* Admission: Ratify and an Azure Policy assignment in the services' namespaces,
  ``signing.admissionEffect`` (prod must Deny)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from .base import IpOrCidr, Model

GitHubOwner = Annotated[str, Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?$")]
GitHubRepository = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")]
GitHubEnvironment = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,254}$")]
KeyVaultObjectName = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,127}$")]
# The Notary Project's certificate requirements: the subject has CN, O, ST and C (any order).
SUBJECT_ATTRIBUTES = ("CN", "O", "ST", "C")
X509Subject = Annotated[str, Field(pattern=r"^[A-Za-z]+=[^,=]+(,[A-Za-z]+=[^,=]+)*$")]


class SigningSettings(Model):
    certificate_name: KeyVaultObjectName = "image-signing"
    subject: X509Subject = "CN=event-backbone image signing,O=event-backbone,ST=Noord-Holland,C=NL"
    admission_effect: Literal["Audit", "Deny"] = "Audit"

    @field_validator("subject")
    @classmethod
    def _subject_attributes(cls, value: str) -> str:
        present = {part.split("=", 1)[0].strip() for part in value.split(",")}
        missing = [a for a in SUBJECT_ATTRIBUTES if a not in present]
        if missing:
            names = ", ".join(SUBJECT_ATTRIBUTES)
            raise ValueError(f"must name {names} (the Notary Project's rule); missing {missing}")
        return value


class ImageSettings(Model):
    github_owner: GitHubOwner | None = None
    github_environment: GitHubEnvironment = "production"
    # The build registry the runners push to (public endpoint, authenticated only, ABAC repository
    # permissions); the stack's registry receives signed digests by import.
    build_registry_sku: Literal["Basic", "Standard", "Premium"] = "Standard"
    # The signing runners' egress (GitHub larger runners with static IPs): each must lie inside
    # keyVault.allowedIpRanges, or signing cannot reach the certificate's key.
    runner_ip_ranges: list[IpOrCidr] = Field(default_factory=list)
    signing: SigningSettings = SigningSettings()


def service_repositories(s) -> dict[str, str]:
    """service -> the GitHub repository its images are built in; empty without githubOwner."""
    owner = s.registry.images.github_owner
    if owner is None:
        return {}
    return {svc: cfg.repository or f"{owner}/{svc}" for svc, cfg in s.services.items()}


__all__ = ["GitHubRepository", "ImageSettings", "SigningSettings", "service_repositories"]
