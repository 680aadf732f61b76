"""The HTTPS edge as planned: Application Gateway for Containers with its WAF, the ALB controller
and cert-manager with least-privilege identities, the order of installation, every Gateway API
and cert-manager object against its CRD schema, cert-manager's values against the pinned
chart, the DNS record, and the settings rules that guard it."""

from __future__ import annotations

import copy
import hashlib
import json
import re

import jsonschema
import k8s_schemas
import pytest
from conftest import ROOT, unwrap
from test_helm_values import CHARTS, chart_keys, schema_for_user_values, unknown_keys
from test_settings import errors, mutate

from components import rbac
from components.render import edge as E

UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def _by_type(stack, suffix: str) -> list[dict]:
    return [unwrap(r.inputs) for r in stack.of_type(suffix)]


# ------------------------------------------------------------------ Azure resources
def test_agc_is_associated_with_the_delegated_subnet(stack):
    assoc = stack.inputs("servicenetworking:AssociationsInterface")
    assert assoc["associationType"] == "subnets"
    assert assoc["subnet"]["id"].endswith("/subnets/snet-edge-agc")
    frontend = stack.inputs("servicenetworking:FrontendsInterface")
    assert frontend["frontendName"] == E.FRONTEND
    controller = stack.inputs("servicenetworking:TrafficControllerInterface")
    assert controller["trafficControllerName"] == stack.settings.name("agc")
    for child in (assoc, frontend, stack.inputs("servicenetworking:SecurityPoliciesInterface")):
        assert child["trafficControllerName"] == controller["trafficControllerName"]


def test_waf_policy_is_attached_with_managed_rules_and_a_rate_limit(planned):
    for name, mode in (("dev", "Detection"), ("prod", "Prevention")):
        stack = planned[name]
        waf = stack.inputs("network:WebApplicationFirewallPolicy")
        assert waf["policySettings"]["mode"] == mode and waf["policySettings"]["state"] == "Enabled"
        assert waf["managedRules"]["managedRuleSets"] == [
            {"ruleSetType": "Microsoft_DefaultRuleSet", "ruleSetVersion": "2.1"}
        ]
        (rule,) = waf["customRules"]
        assert (rule["ruleType"], rule["action"], rule["rateLimitDuration"]) == ("RateLimitRule", "Block", "OneMin")
        assert rule["rateLimitThreshold"] == stack.settings.edge.waf.rate_limit_requests
        assert rule["groupByUserSession"][0]["groupByVariables"] == [{"variableName": "ClientAddr"}]
        # the security policy under the traffic controller and the Gateway's WAF attachment
        # both name this WAF policy
        waf_id = stack.inputs("servicenetworking:SecurityPoliciesInterface")["wafPolicy"]["id"]
        assert waf_id.endswith(f"/{waf['policyName']}")
        attachment = stack.inputs("WebApplicationFirewallPolicy", "waf-attachment")
        assert attachment["spec"]["webApplicationFirewall"]["id"] == waf_id
        assert attachment["spec"]["targetRef"] == {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": E.GATEWAY,
            "namespace": E.NAMESPACE,
        }


def _grants(stack) -> dict[str, dict]:
    return {r.name: unwrap(r.inputs) for r in stack.of_type("authorization:RoleAssignment")}


def test_alb_controller_identity_is_least_privilege(stack):
    grants = _grants(stack)
    role = {k: v["roleDefinitionId"].rsplit("/", 1)[-1] for k, v in grants.items()}
    assert role["alb-config-manager"] == rbac.APPGW_FOR_CONTAINERS_CONFIGURATION_MANAGER
    tc_name = stack.settings.name("agc")
    assert grants["alb-config-manager"]["scope"].endswith(f"/{tc_name}")
    assert role["alb-subnet-network-contributor"] == rbac.NETWORK_CONTRIBUTOR
    assert grants["alb-subnet-network-contributor"]["scope"].endswith("/subnets/snet-edge-agc")
    assert role["alb-node-rg-reader"] == rbac.READER
    assert grants["alb-node-rg-reader"]["scope"].endswith(f"/resourceGroups/{stack.settings.name('aks', 'nodes')}")
    alb_principal = grants["alb-config-manager"]["principalId"]
    mine = sorted(k for k, v in grants.items() if v["principalId"] == alb_principal)
    assert mine == ["alb-config-manager", "alb-node-rg-reader", "alb-subnet-network-contributor"]
    feds = {f["federatedIdentityCredentialResourceName"]: f for f in _by_type(stack, "FederatedIdentityCredential")}
    assert feds[f"{E.ALB_NAMESPACE}-{E.ALB_SERVICE_ACCOUNT}"]["subject"] == (
        f"system:serviceaccount:{E.ALB_NAMESPACE}:{E.ALB_SERVICE_ACCOUNT}"
    )


def test_cert_manager_identity_holds_dns_zone_contributor_on_the_zone_only(stack):
    grants = _grants(stack)
    dns = grants["cert-manager-dns-zone-contributor"]
    assert dns["roleDefinitionId"].endswith(rbac.DNS_ZONE_CONTRIBUTOR)
    zone = stack.settings.edge.dns_zone
    assert zone is not None
    assert dns["scope"].endswith(f"/{zone.name}")
    assert [k for k, v in grants.items() if v["principalId"] == dns["principalId"]] == [
        "cert-manager-dns-zone-contributor"
    ]
    feds = {f["federatedIdentityCredentialResourceName"]: f for f in _by_type(stack, "FederatedIdentityCredential")}
    assert feds["cert-manager-cert-manager"]["subject"] == "system:serviceaccount:cert-manager:cert-manager"


def test_dns_record_points_the_hostname_at_the_frontend(stack):
    record = stack.inputs("dns:RecordSet", "cname-grafana")
    host = stack.settings.observability.grafana.hostname
    zone = stack.settings.edge.dns_zone
    assert zone is not None and host is not None
    assert record["recordType"] == "CNAME" and f"{record['relativeRecordSetName']}.{zone.name}" == host
    assert record["cnameRecord"]["cname"] == stack.doc["outputs"]["edgeFrontendFqdn"]
    assert record["cnameRecord"]["cname"].endswith(".alb.azure.com")
    assert stack.inputs("dns:Zone")["zoneName"] == zone.name


# ------------------------------------------------------------------ ordering
def _urn(stack, suffix: str, name: str) -> str:
    return stack.one(suffix, name).urn


def test_gateway_api_crds_come_before_everything_that_needs_them(stack):
    crds = _urn(stack, "yaml/v2:ConfigFile", "gateway-api-crds")
    manager = stack.one("helm.sh/v3:Release", "cert-manager")
    assert crds in manager.dependencies  # config.gatewayAPI.enabled: CRDs before cert-manager starts
    alb = stack.one("helm.sh/v3:Release", "alb-controller")
    assert crds in alb.dependencies
    gateway = stack.one("gateway.networking.k8s.io/v1:Gateway")
    assert {crds, alb.urn} <= set(gateway.dependencies)
    issuer = stack.one("cert-manager.io/v1:ClusterIssuer")
    assert manager.urn in issuer.dependencies
    for cert in stack.of_type("cert-manager.io/v1:Certificate"):
        assert issuer.urn in cert.dependencies


def test_gateway_api_crds_are_the_pinned_standard_release(stack):
    crds = stack.inputs("yaml/v2:ConfigFile", "gateway-api-crds")
    assert crds["file"] == (
        "https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.4.1/standard-install.yaml"
    )


def test_charts_are_pinned(stack):
    alb = stack.inputs("helm.sh/v3:Release", "alb-controller")
    assert (alb["chart"], alb["version"]) == (E.ALB_CONTROLLER.chart, "1.12.2")
    assert alb["chart"].startswith("oci://mcr.microsoft.com/")
    assert alb["values"]["albController"]["namespace"] == E.ALB_NAMESPACE
    assert alb["values"]["albController"]["podIdentity"]["clientID"]
    manager = stack.inputs("helm.sh/v3:Release", "cert-manager")
    assert (manager["chart"], manager["version"], manager["repositoryOpts"]["repo"]) == (
        "cert-manager",
        "v1.21.1",
        "https://charts.jetstack.io",
    )


# ------------------------------------------------------------------ cert-manager values
def test_cert_manager_values_match_the_pinned_chart(stack):
    values = stack.inputs("helm.sh/v3:Release", "cert-manager")["values"]
    assert unknown_keys(E.CERT_MANAGER, values) == []
    keys, _ = chart_keys("cert-manager-v1.21.1")
    schema = schema_for_user_values(json.loads((CHARTS / "cert-manager-v1.21.1.schema.json").read_text()), keys)
    validator = jsonschema.Draft7Validator(schema)
    assert [e.message for e in validator.iter_errors(values)] == []
    assert values["crds"]["enabled"] is True
    assert values["config"]["gatewayAPI"] == {"enabled": True}
    assert values["podLabels"] == {"azure.workload.identity/use": "true"}
    typo = copy.deepcopy(values)
    typo["podLabel"] = typo.pop("podLabels")
    assert unknown_keys(E.CERT_MANAGER, typo) == ["podLabel", "podLabel.azure.workload.identity/use"]
    wrong = copy.deepcopy(values)
    wrong["crds"]["enabled"] = "yes"
    assert list(validator.iter_errors(wrong))


# ------------------------------------------------------------------ Kubernetes objects against CRDs
def _edge_manifests(stack) -> list[dict]:
    groups = ("gateway.networking.k8s.io/", "cert-manager.io/", "alb.networking.azure.io/")
    return [m for m in k8s_schemas.recorded_manifests(stack) if m["apiVersion"].startswith(groups)]


def test_gateway_api_and_cert_manager_objects_match_their_crds(stack):
    manifests = _edge_manifests(stack)
    kinds = sorted(m["kind"] for m in manifests)
    assert kinds == [
        "Certificate",
        "ClusterIssuer",
        "Gateway",
        "HTTPRoute",
        "HTTPRoute",
        "WebApplicationFirewallPolicy",
    ]
    for m in manifests:
        if m["apiVersion"].startswith("alb.networking.azure.io/"):
            # No public repository holds the ALB controller's CRDs (../shared/reference/README.md):
            # only its shape from Microsoft's docs is checked, in the WAF test above.
            assert not k8s_schemas.has_crd(m["apiVersion"], m["kind"])
            assert k8s_schemas.documented_only_errors(m) == []
            broken = copy.deepcopy(m)
            broken["spec"]["webApplicationFirewall"]["ids"] = broken["spec"]["webApplicationFirewall"].pop("id")
            assert k8s_schemas.documented_only_errors(broken) == [
                "spec.webApplicationFirewall.ids: not a documented field"
            ]
            continue
        assert k8s_schemas.custom_resource_errors(m) == [], (m["kind"], m["metadata"]["name"])


@pytest.mark.parametrize(
    "kind,path,value",
    [
        ("Gateway", ("spec", "listeners", 1, "tls", "mode"), "Terminat"),
        ("Gateway", ("spec", "gatewayClass"), "x"),
        ("HTTPRoute", ("spec", "rules", 0, "filters", 0, "requestRedirect", "statusCode"), 307),
        ("ClusterIssuer", ("spec", "acme", "solvers", 0, "dns01", "azureDNS", "managedIdentity", "clientId"), "x"),
        ("Certificate", ("spec", "issuerRef", "nam"), "x"),
    ],
)
def test_a_broken_object_is_caught(planned, kind, path, value):
    manifest = copy.deepcopy(next(m for m in _edge_manifests(planned["prod"]) if m["kind"] == kind))
    node = manifest
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    assert k8s_schemas.custom_resource_errors(manifest)


def test_gateway_serves_https_with_the_stack_certificate_and_redirects_http(stack):
    gateway = stack.inputs("gateway.networking.k8s.io/v1:Gateway")
    assert gateway["spec"]["gatewayClassName"] == "azure-alb-external"
    assert gateway["metadata"]["annotations"]["alb.networking.azure.io/alb-id"].endswith(stack.settings.name("agc"))
    assert gateway["spec"]["addresses"] == [{"type": "alb.networking.azure.io/alb-frontend", "value": E.FRONTEND}]
    listeners = {item["name"]: item for item in gateway["spec"]["listeners"]}
    assert listeners["http"]["allowedRoutes"]["namespaces"] == {"from": "Same"}
    https = listeners["https-grafana"]
    assert (https["protocol"], https["port"], https["hostname"]) == (
        "HTTPS",
        443,
        stack.settings.observability.grafana.hostname,
    )
    cert = stack.inputs("cert-manager.io/v1:Certificate")
    assert https["tls"]["certificateRefs"] == [{"group": "", "kind": "Secret", "name": cert["spec"]["secretName"]}]
    issuer = stack.inputs("cert-manager.io/v1:ClusterIssuer")
    assert cert["spec"]["issuerRef"] == {
        "group": "cert-manager.io",
        "kind": "ClusterIssuer",
        "name": issuer["metadata"]["name"],
    }
    redirect = stack.inputs("HTTPRoute", "https-redirect")
    assert redirect["spec"]["parentRefs"] == [{"name": E.GATEWAY, "sectionName": "http"}]
    assert redirect["spec"]["rules"] == [
        {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}
    ]
    route = stack.inputs("HTTPRoute", "route-grafana")
    assert route["metadata"]["namespace"] == stack.settings.observability.namespace
    assert route["spec"]["parentRefs"][0]["sectionName"] == "https-grafana"
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "kube-prometheus-stack-grafana", "port": 80}]


def test_issuer_is_lets_encrypt_staging_in_dev_and_production_in_prod(planned):
    for name, server in (("dev", E.ACME_SERVERS["staging"]), ("prod", E.ACME_SERVERS["production"])):
        stack = planned[name]
        acme = stack.inputs("cert-manager.io/v1:ClusterIssuer")["spec"]["acme"]
        assert acme["server"] == server
        (solver,) = acme["solvers"]
        azure = solver["dns01"]["azureDNS"]
        zone = stack.settings.edge.dns_zone
        assert zone is not None
        assert azure["hostedZoneName"] == zone.name and solver["selector"]["dnsZones"] == [zone.name]
        assert azure["resourceGroupName"] == stack.settings.name("rg")
        assert re.match(UUID, azure["managedIdentity"]["clientID"])
        alb_client = stack.inputs("helm.sh/v3:Release", "alb-controller")["values"]["albController"]["podIdentity"]
        assert azure["managedIdentity"]["clientID"] != alb_client["clientID"]  # two identities


def _mock_identity_guid(resource_name: str) -> str:
    """What dryrun/mocks.py answers as a user-assigned identity's principal and client id."""
    d = hashlib.md5(resource_name.encode()).hexdigest()
    return f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:32]}"


def test_each_controller_runs_as_its_own_identity(stack):
    """The client IDs in the ALB controller's values and in the ClusterIssuer are those of the
    identities that hold the grants above, and of nothing else."""
    alb = _mock_identity_guid(stack.settings.name("id", "alb-controller"))
    cm = _mock_identity_guid(stack.settings.name("id", "cert-manager"))
    values = stack.inputs("helm.sh/v3:Release", "alb-controller")["values"]
    assert values["albController"]["podIdentity"]["clientID"] == alb
    issuer = stack.inputs("cert-manager.io/v1:ClusterIssuer")["spec"]["acme"]["solvers"][0]
    assert issuer["dns01"]["azureDNS"]["managedIdentity"]["clientID"] == cm
    grants = _grants(stack)
    assert {k for k, v in grants.items() if v["principalId"] == alb} == {
        "alb-config-manager",
        "alb-subnet-network-contributor",
        "alb-node-rg-reader",
    }
    assert {k for k, v in grants.items() if v["principalId"] == cm} == {"cert-manager-dns-zone-contributor"}


# ------------------------------------------------------------------ settings
@pytest.mark.parametrize(
    "stack,change,expected",
    [
        (
            "prod",
            ("edge.subnet", "10.50.17.0/24"),
            "Pulumi.prod.yaml: event-backbone:edge.subnet must not overlap network.endpointsSubnet 10.50.17.0/24"
            " (got '10.50.17.0/24')",
        ),
        (
            "prod",
            ("edge.subnet", "10.50.18.0/25"),
            "Pulumi.prod.yaml: event-backbone:edge.subnet must be a /24 or larger"
            " (Application Gateway for Containers' delegated subnet) (got '10.50.18.0/25')",
        ),
        (
            "prod",
            ("edge.waf.mode", "Detection"),
            "Pulumi.prod.yaml: event-backbone:edge.waf.mode must be 'Prevention' in prod (got 'Detection')",
        ),
        (
            "prod",
            ("edge.acmeServer", "staging"),
            "Pulumi.prod.yaml: event-backbone:edge.acmeServer must be 'production' in prod"
            " (staging certificates are not trusted by browsers) (got 'staging')",
        ),
        (
            "prod",
            ("observability.grafana.signIn.localAdminLogin", True),
            "Pulumi.prod.yaml: event-backbone:observability.grafana.signIn.localAdminLogin must be false in prod"
            " (Entra sign-in only; the admin password is break-glass) (got true)",
        ),
        (
            "prod",
            ("observability.grafana.hostname", "grafana.example.org"),
            "Pulumi.prod.yaml: event-backbone:observability.grafana.hostname must lie inside edge.dnsZone.name"
            " events.example.com (got 'grafana.example.org')",
        ),
        (
            "dev",
            ("edge.enabled", False),
            "Pulumi.dev.yaml: event-backbone:observability.grafana.hostname needs edge.enabled: true"
            " (nothing else serves Grafana outside the cluster) (got 'grafana.dev.events.example.com')",
        ),
    ],
)
def test_edge_rules(stack, change, expected):
    assert expected in errors(stack, mutate(stack, *change))


def test_stack_files_carry_no_ingress_settings():
    for stack in ("dev", "prod"):
        text = (ROOT / f"Pulumi.{stack}.yaml").read_text()
        assert "ingressClassName" not in text and "tlsSecretName" not in text


def test_edge_controllers_install_into_labelled_namespaces_they_depend_on(stack):
    """Helm's createNamespace would make unlabelled namespaces: each release depends on its own
    Namespace, labelled with the enforce level its pods meet (cert-manager's pinned chart sets a
    restricted-compliant securityContext the values leave alone; the ALB controller's chart is
    not in the references: baseline), audit and warn restricted."""
    if not stack.settings.edge.enabled:
        pytest.skip("edge disabled in this stack")
    namespaces = {unwrap(r.inputs)["metadata"]["name"]: r for r in stack.of_type("core/v1:Namespace")}
    for release, ns, level in (
        ("alb-controller", E.ALB_NAMESPACE, "baseline"),
        ("cert-manager", "cert-manager", "restricted"),
    ):
        reg = stack.one("helm.sh/v3:Release", release)
        inputs = unwrap(reg.inputs)
        assert inputs["namespace"] == ns and not inputs.get("createNamespace")
        assert namespaces[ns].urn in reg.dependencies, release
        labels = unwrap(namespaces[ns].inputs)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == level
        assert labels["pod-security.kubernetes.io/audit"] == labels["pod-security.kubernetes.io/warn"] == "restricted"
    overridden = json.dumps(E.cert_manager_values())
    assert "securityContext" not in overridden and "SecurityContext" not in overridden
