"""The services' images at the gate (issue 23): the pack's `service-images-signed`, run through
the analyzer protocol the Pulumi CLI speaks (dryrun.policy_host), trips an unsigned image in a
service's workload in prod, and the signed-images assignment losing Deny or a namespace; the
settings refuse Audit in prod; the push identities hold exactly their own repository."""

from __future__ import annotations

import copy
import dataclasses
import json
import re

import pytest
import yaml
from conftest import ROOT, unwrap

from components import custom_roles
from components.images import GITHUB_ISSUER, IMPORT_ACTION, REPOSITORY_WRITER, importer_guid
from components.render.signing import RATIFY_TEMPLATE_URL, repository_condition
from dryrun.mocks import Registration

DIGEST = "sha256:" + "ab" * 32


def findings(registrations, stack: str = "prod") -> list:
    from dryrun.policy_host import run_pack

    found = run_pack(ROOT / "policies", ROOT / "policies" / f"config.{stack}.json", registrations)
    return [f for f in found if f.enforcement_level == "mandatory"]


def login(planned, stack: str = "prod") -> str:
    return unwrap(planned[stack].one("containerregistry:Registry").inputs)["registryName"] + ".azurecr.io"


def with_workload(planned, image: str, namespace: str = "candystore", stack: str = "prod", kind: str = "Deployment"):
    regs = list(planned[stack].result.registrations)
    base = regs[0].urn.rsplit("::", 1)[0].rsplit("::", 1)[0]
    typ = {"Deployment": "kubernetes:apps/v1:Deployment", "CronJob": "kubernetes:batch/v1:CronJob"}[kind]
    pod = {"containers": [{"name": "app", "image": image}], "initContainers": []}
    spec = (
        {"jobTemplate": {"spec": {"template": {"spec": pod}}}, "schedule": "0 * * * *"}
        if kind == "CronJob"
        else {"template": {"spec": pod}}
    )
    regs.append(
        Registration(
            urn=f"{base}::{typ}::worker",
            type=typ,
            name="worker",
            parent=None,
            dependencies=[],
            protect=False,
            custom=True,
            inputs={"metadata": {"name": "worker", "namespace": namespace}, "spec": spec},
        )
    )
    return regs


def signed_image_findings(found) -> list:
    return [f for f in found if f.policy == "service-images-signed"]


def test_an_unsigned_image_in_a_service_workload_trips_the_gate_in_prod(planned):
    assert signed_image_findings(findings(planned["prod"].result.registrations)) == []
    upstream = "docker.io/library/nginx:1.27"
    [finding] = signed_image_findings(findings(with_workload(planned, upstream)))
    assert upstream in finding.message and "candystore/worker" in finding.message and "Fix:" in finding.message
    assert f"{login(planned)}/candystore@sha256:<digest>" in finding.message
    # a tag of its own repository is not a signed digest (a tag can move after signing)
    assert signed_image_findings(findings(with_workload(planned, f"{login(planned)}/candystore:sha-abc")))
    # another service's digest, another registry's digest: not this service's signed image
    assert signed_image_findings(findings(with_workload(planned, f"{login(planned)}/audit@{DIGEST}")))
    assert signed_image_findings(findings(with_workload(planned, f"evil.azurecr.io/candystore@{DIGEST}")))
    # and in a CronJob's pod template too
    assert signed_image_findings(findings(with_workload(planned, upstream, kind="CronJob")))


def test_signed_digests_and_microsoft_images_pass(planned):
    for image in (f"{login(planned)}/candystore@{DIGEST}", "mcr.microsoft.com/azure-cli:2.67.0"):
        assert signed_image_findings(findings(with_workload(planned, image))) == [], image
    # outside the services' namespaces the platform's own (cached, tag-pinned) images are not this policy's
    assert signed_image_findings(findings(with_workload(planned, "docker.io/x:1", namespace="monitoring"))) == []


def test_dev_audits_unsigned_images_instead_of_refusing_them(planned):
    assert signed_image_findings(findings(with_workload(planned, "docker.io/x:1", stack="dev"), "dev")) == []
    assignment = unwrap(planned["dev"].one("authorization:PolicyAssignment", "signed-images").inputs)
    assert assignment["parameters"]["effect"]["value"] == "Audit"


def _assignment_changed(planned, **parameters):
    regs = list(planned["prod"].result.registrations)
    i = next(i for i, r in enumerate(regs) if r.name == "signed-images")
    inputs = copy.deepcopy(regs[i].inputs)
    for key, value in parameters.items():
        inputs["parameters"][key]["value"] = value
    regs[i] = dataclasses.replace(regs[i], inputs=inputs)
    return regs


def test_the_prod_assignment_must_deny_and_cover_every_service_namespace(planned):
    assignment = unwrap(planned["prod"].one("authorization:PolicyAssignment", "signed-images").inputs)
    services = sorted(planned["prod"].settings.services)
    assert assignment["parameters"] == {"effect": {"value": "Deny"}, "namespaces": {"value": services}}
    assert assignment["scope"].endswith("/managedClusters/" + assignment["scope"].rsplit("/", 1)[-1])
    [f] = signed_image_findings(findings(_assignment_changed(planned, effect="Audit")))
    assert "parameters.effect is 'Audit'" in f.message
    [f] = signed_image_findings(findings(_assignment_changed(planned, namespaces=services[1:])))
    assert services[0] in f.message
    # the definition: Ratify's template, Pods, the namespaces parameter
    definition = unwrap(planned["prod"].one("authorization:PolicyDefinition", "signed-images-definition").inputs)
    assert definition["mode"] == "Microsoft.Kubernetes.Data"
    details = definition["policyRule"]["then"]["details"]
    assert details["kinds"] == ["Pod"] and details["namespaces"] == "[parameters('namespaces')]"
    # Ratify's own template at a pinned commit, after the Ratify release
    assert details["templateInfo"] == {"sourceType": "PublicURL", "url": RATIFY_TEMPLATE_URL}
    assert re.search(r"/ratify/[0-9a-f]{40}/library/default/template\.yaml$", RATIFY_TEMPLATE_URL)
    ratify = planned["prod"].one("helm.sh/v3:Release", "ratify")
    assert ratify.urn in planned["prod"].one("authorization:PolicyAssignment", "signed-images").dependencies


def test_settings_refuse_audit_in_prod_a_runner_outside_the_vault_and_a_repository_without_owner():
    from test_settings import errors, stack_doc

    doc = stack_doc("prod")
    images = doc["config"]["event-backbone:registry"]["images"]
    images["signing"]["admissionEffect"] = "Audit"
    images["runnerIpRanges"] = ["198.18.0.0/24"]
    lines = errors("prod", yaml.safe_dump(doc, sort_keys=False))
    assert any("registry.images.signing.admissionEffect must be 'Deny' in prod" in line for line in lines), lines
    assert any("registry.images.runnerIpRanges[0] must lie inside keyVault.allowedIpRanges" in line for line in lines)
    assert all(line.startswith("Pulumi.prod.yaml: ") or "Pulumi.prod.yaml" in line for line in lines), lines
    dev = stack_doc("dev")
    del dev["config"]["event-backbone:registry"]["images"]["githubOwner"]
    dev["config"]["event-backbone:services"]["transcription"]["repository"] = "other-org/transcriber"
    lines = errors("dev", yaml.safe_dump(dev, sort_keys=False))
    assert any("services.transcription.repository needs registry.images.githubOwner" in line for line in lines), lines
    prod = stack_doc("prod")
    prod["config"]["event-backbone:registry"]["images"]["signing"]["subject"] = "CN=x,O=y"
    lines = errors("prod", yaml.safe_dump(prod, sort_keys=False))
    assert any("registry.images.signing.subject" in line and "ST" in line for line in lines), lines


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_each_push_identity_pushes_only_its_own_repository(planned, stack):
    p = planned[stack]
    s = p.settings
    env = s.registry.images.github_environment
    owner = s.registry.images.github_owner
    build = unwrap(p.one("resources:Resource", "build-registry").inputs)
    assert build["properties"] == {
        "adminUserEnabled": False,
        "anonymousPullEnabled": False,
        "publicNetworkAccess": "Enabled",
        "roleAssignmentMode": "AbacRepositoryPermissions",
    }
    assert build["apiVersion"] == "2025-11-01" and build["resourceType"] == "registries"
    # the importer role is the bootstrap's (tests/test_bootstrap.py): no main stack writes a role definition
    assert not p.of_type("authorization:RoleDefinition")
    (importer,) = [c for c in custom_roles.definitions(s.environment).values()]
    assert importer.actions == [IMPORT_ACTION] and importer.guid == importer_guid(s)
    grants = [unwrap(r.inputs) | {"_name": r.name} for r in p.of_type("authorization:RoleAssignment")]
    for svc in s.services:
        fic = unwrap(p.one("managedidentity:FederatedIdentityCredential", f"fic-push-{svc}").inputs)
        assert fic["issuer"] == GITHUB_ISSUER and fic["subject"] == f"repo:{owner}/{svc}:environment:{env}"
        mine = [g for g in grants if g["_name"].startswith(f"push-{svc}-")]
        roles = {g["roleDefinitionId"].rsplit("/", 1)[-1]: g for g in mine}
        assert set(roles) == {
            REPOSITORY_WRITER,
            importer_guid(s),
            "12338af0-0e69-4776-bea7-57ae8d297424",
            "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba",
        }
        writer = roles[REPOSITORY_WRITER]
        assert writer["condition"] == repository_condition(svc) and writer["conditionVersion"] == "2.0"
        assert writer["scope"].endswith(f"/registries/{build['resourceName']}")
        assert roles["12338af0-0e69-4776-bea7-57ae8d297424"]["scope"].endswith("/keys/image-signing")
        assert roles["db79e9a7-68ee-4b58-9aeb-b90e7c24fcba"]["scope"].endswith("/certificates/image-signing")
    # nobody holds AcrPush, and only the kubelet and Ratify pull from the stack's registry
    assert not [g for g in grants if g["roleDefinitionId"].endswith("8311e382-0749-4cb8-b61a-304f252e45ec")]
    pulls = sorted(g["_name"] for g in grants if g["roleDefinitionId"].endswith("7f951dda-4ed3-4680-a7ca-43fe172d538d"))
    assert pulls == ["kubelet-acr-pull", "ratify-acr-pull"]


def test_the_condition_names_one_repository_for_every_repository_action():
    c = repository_condition("candystore")
    for action in ("content/read", "content/write", "metadata/read", "metadata/write"):
        assert f"!(ActionMatches{{'Microsoft.ContainerRegistry/registries/repositories/{action}'}})" in c
    assert c.endswith(
        "(@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEqualsIgnoreCase 'candystore'))"
    )
    with pytest.raises(ValueError):
        repository_condition("x' OR 'a'=='a")


def test_the_access_matrix_shows_push_rights(planned):
    from components.render import artefacts
    from dryrun import access

    p = planned["prod"]
    m = access.matrix(p.doc, json.loads(artefacts(p.settings)["rabbitmq/definitions.json"]))
    pushers = {x["identity"]: x for x in m["imagePushers"]}
    assert set(pushers) == {f"platform push-{svc}" for svc in p.settings.services}
    for svc in p.settings.services:
        x = pushers[f"platform push-{svc}"]
        assert x["signsInAs"] == [f"repo:example-org/{svc}:environment:production"]
        assert [y["repository"] for y in x["pushes"]] == [svc]
        assert [y["role"] for y in x["imports"]] == ["event-backbone-prod-registry-image-importer"]
        assert x["signsWith"] == [next(iter(x["signsWith"]))] and x["signsWith"][0].startswith("key image-signing")
    text = access.markdown(m)
    assert "## Who can push images" in text and "repository `candystore` of registry" in text


def test_without_a_github_owner_nothing_can_push_but_admission_stays(tmp_path):
    """registry.images.githubOwner unset: no build registry, no push identity, no import role;
    Ratify and the signed-images assignment are planned all the same."""
    from test_settings import stack_doc

    from dryrun.runner import run_stack

    doc = stack_doc("dev")
    images = doc["config"]["event-backbone:registry"]["images"]
    del images["githubOwner"], images["runnerIpRanges"]
    result = run_stack("dev", stack_text=yaml.safe_dump(doc, sort_keys=False))
    names = {(r.type.split(":", 1)[1], r.name) for r in result.registrations}
    assert not [n for n in names if n[1] == "build-registry" or n[1].startswith(("id-push-", "push-", "fic-push-"))]
    assert ("authorization:RoleDefinition", "registry-importer") not in names
    assert ("helm.sh/v3:Release", "ratify") in names
    assert ("authorization:PolicyAssignment", "signed-images") in names
    assert result.outputs["imagePush"] == {}
