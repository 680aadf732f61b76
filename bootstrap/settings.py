"""The bootstrap's typed settings (``event-backbone-bootstrap:<key>`` in bootstrap/Pulumi.<stack>.yaml),
read strictly and validated in full before any resource exists: one line per problem naming the
file, the key, what is allowed and what was given (the same lines as the main stack's settings).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from components.settings.base import Environment, Model, Uuid
from components.settings.errors import ConfigError, Problem, problem_from_error

PROJECT = "event-backbone-bootstrap"
# The namespaces a bootstrap stack file may use besides its own.
PROVIDER_NAMESPACES = ("azure-native", "pulumi", "random")

GitHubName = Annotated[str, Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?$")]
RepositoryName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,100}$")]
# GitHub environment names: letters, digits, '-', '_', '.', at most 255 characters (no ':' in a subject).
EnvironmentName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,255}$")]


class GitHubRepository(Model):
    owner: GitHubName
    repository: RepositoryName

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.repository}"


class EnvironmentTarget(Model):
    """One main stack (``dev``, ``prod``): where it deploys and the GitHub environment that deploys it."""

    github_environment: EnvironmentName
    subscription_id: Uuid  # the subscription the main stack deploys into (the deploy identity's scope)


class StateBackend(Model):
    """``azure-blob``: a storage account the bootstrap creates (one container per stack);
    ``pulumi-cloud``: Pulumi Cloud as before (the bootstrap creates no storage)."""

    kind: Literal["azure-blob", "pulumi-cloud"] = "azure-blob"
    soft_delete_days: Annotated[int, Field(ge=7, le=365)] = 30
    # Who may reach the account's public endpoint: GitHub-hosted runners come from anywhere, so "allow".
    network_default_action: Literal["Allow", "Deny"] = "Allow"


class BootstrapSettings(Model):
    location: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]+$")]
    name_prefix: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{1,9}$")] = "ebb"
    tags: dict[str, str] = Field(default_factory=dict)
    github: GitHubRepository
    environments: dict[Environment, EnvironmentTarget]
    # The Entra group(s) of the platform admins: manage the secrets-provider keys (Crypto Officer).
    platform_admin_object_ids: Annotated[list[Uuid], Field(min_length=1)]
    state_backend: StateBackend = StateBackend()

    @model_validator(mode="after")
    def _rules(self) -> BootstrapSettings:
        problems: list[Problem] = []
        missing = [env for env in ("dev", "prod") if env not in self.environments]
        if missing:
            problems.append(
                Problem(
                    key="environments",
                    message=f"must name every main stack (dev, prod); missing: {', '.join(missing)}",
                    got=sorted(self.environments),
                    namespace=PROJECT,
                )
            )
        subs = [t.subscription_id.lower() for t in self.environments.values()]
        if len(set(subs)) != len(subs):
            problems.append(
                Problem(
                    key="environments",
                    message=(
                        "must give each environment its own subscriptionId: a deploy identity holds Contributor"
                        " on its whole subscription, so a shared one would let dev's identity change prod"
                    ),
                    got=subs,
                    namespace=PROJECT,
                )
            )
        names = [t.github_environment for t in self.environments.values()]
        if len(set(names)) != len(names):
            problems.append(
                Problem(
                    key="environments",
                    message="must give each environment its own githubEnvironment (one federated subject each)",
                    got=names,
                    namespace=PROJECT,
                )
            )
        if problems:
            raise PydanticCustomError("bootstrap_rules", "{count} rule(s) broken", {"problems": problems})
        return self

    def name(self, *parts: str) -> str:
        return "-".join([self.name_prefix, "boot", *parts])

    def subject(self, env: str) -> str:
        """The OIDC subject GitHub issues to a job running in the environment's GitHub environment."""
        return f"repo:{self.github.slug}:environment:{self.environments[env].github_environment}"  # type: ignore[index]

    @property
    def pull_request_subject(self) -> str:
        """The subject of a job triggered by ``pull_request`` that names no environment."""
        return f"repo:{self.github.slug}:pull_request"


def _parse(raw: Any) -> Any:
    if isinstance(raw, str) and raw.strip()[:1] in ("{", "["):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def from_config_map(config: dict[str, Any], stack: str, stack_file: str | None = None) -> BootstrapSettings:
    """Validates the flat Pulumi config map as the CLI hands it over; raises ConfigError with every problem."""
    stack_file = stack_file or f"bootstrap/Pulumi.{stack}.yaml"
    problems: list[Problem] = []
    raw: dict[str, Any] = {}
    known = (PROJECT, *PROVIDER_NAMESPACES)
    for full, value in config.items():
        namespace, sep, key = str(full).partition(":")
        if not sep or namespace not in known:
            problems.append(
                Problem(
                    key=key if sep else full,
                    namespace=namespace if sep else "",
                    message=f"is not a known namespace; allowed: {', '.join(ns + ':' for ns in known)}",
                    has_got=False,
                )
            )
        elif namespace == PROJECT:
            raw[key] = _parse(value)
    try:
        settings = BootstrapSettings.model_validate(raw)
    except ValidationError as exc:
        for e in exc.errors(include_url=False):
            if e["type"] == "bootstrap_rules":
                problems += e.get("ctx", {})["problems"]
            else:
                problems.append(problem_from_error(BootstrapSettings, e).model_copy(update={"namespace": PROJECT}))
        raise ConfigError(stack_file, problems) from None
    if problems:
        raise ConfigError(stack_file, problems)
    return settings


def load() -> BootstrapSettings:
    """The current stack's config, under the CLI or under the recording mocks."""
    import pulumi
    from pulumi.runtime import config as rconfig

    merged: dict[str, Any] = dict(rconfig.get_config_env())
    merged.update(rconfig.CONFIG.get())
    return from_config_map(merged, pulumi.get_stack())
