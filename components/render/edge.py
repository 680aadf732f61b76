"""The HTTPS edge as data: the Gateway API objects served by Application Gateway for Containers
(AGC), cert-manager's ClusterIssuer and Certificates, and the pinned charts' values.

The path from a browser: DNS CNAME <hostname> -> the AGC frontend's FQDN -> the Gateway's HTTPS
listener for that hostname (certificate from cert-manager, WAF policy attached) -> the
HTTPRoute in the UI's namespace -> the UI's Service. Port 80 only redirects to HTTPS.

Certificates are explicit ``Certificate`` resources (not the cert-manager gateway-shim
annotation): each is a validated object the policy pack can tie to the stack's issuer, and
renewal (at two thirds of the lifetime, cert-manager's default) does not depend on the shim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..settings import StackSettings
from . import helm_values, labelled_namespace
from .images import prefix

GATEWAY_API_VERSION = "v1.4.1"
GATEWAY_API_CRDS = (
    f"https://github.com/kubernetes-sigs/gateway-api/releases/download/{GATEWAY_API_VERSION}/standard-install.yaml"
)
GATEWAY_CLASS = "azure-alb-external"
NAMESPACE = "edge"  # the Gateway, its certificates and the redirect route
GATEWAY = "edge"
FRONTEND = "public"  # the AGC frontend the Gateway uses (its FQDN is the CNAME target)
HTTP_LISTENER = "http"
ALB_NAMESPACE = "azure-alb-system"
ALB_SERVICE_ACCOUNT = "alb-controller-sa"
CERT_MANAGER_NAMESPACE = "cert-manager"
CERT_MANAGER_SERVICE_ACCOUNT = "cert-manager"  # the chart's fullname for release "cert-manager"
WORKLOAD_IDENTITY_LABEL = "azure.workload.identity/use"

ACME_SERVERS = {
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "production": "https://acme-v02.api.letsencrypt.org/directory",
}


@dataclass(frozen=True)
class OciChart:
    release: str
    chart: str  # an oci:// reference
    version: str


ALB_CONTROLLER = OciChart("alb-controller", "oci://mcr.microsoft.com/application-lb/charts/alb-controller", "1.12.2")
CERT_MANAGER = helm_values.Chart("cert-manager", "cert-manager", "v1.21.1", "https://charts.jetstack.io")


@dataclass(frozen=True)
class Site:
    """One public hostname: its HTTPS listener, certificate and route to a Service."""

    key: str  # listener / certificate name suffix
    hostname: str
    namespace: str  # where the route and the Service live
    service: str
    port: int


def sites(s: StackSettings) -> list[Site]:
    """The platform UIs served publicly: Grafana only (Jaeger through Grafana's data source;
    Prometheus and Alertmanager stay internal)."""
    o = s.observability
    if not s.edge.enabled or o.grafana.hostname is None:
        return []
    return [Site("grafana", o.grafana.hostname, o.namespace, helm_values.grafana_service(), 80)]


def issuer_name(s: StackSettings) -> str:
    return f"letsencrypt-{s.edge.acme_server}"


def tls_secret(site: Site) -> str:
    return f"{site.key}-tls"


def listener_name(site: Site) -> str:
    return f"https-{site.key}"


def namespace() -> dict:
    """The edge's namespace (the Gateway and the routes' shared objects). Pod Security: baseline
    enforced (nothing here is known to need more), restricted warned and audited."""
    return labelled_namespace(NAMESPACE, "baseline")


def alb_namespace() -> dict:
    """The ALB controller's namespace, created here (not by Helm's createNamespace) so it carries
    Pod Security labels. Baseline enforced: the controller's chart is an OCI artefact with no
    values file in the pinned references, so its pods' securityContext cannot be checked against
    restricted here; restricted is audited and warned, which names any gap on a real cluster."""
    return labelled_namespace(ALB_NAMESPACE, "baseline")


def cert_manager_namespace() -> dict:
    """cert-manager's namespace, created here (not by Helm's createNamespace). Restricted enforced:
    the pinned chart (v1.21.1 values.yaml) gives the controller, webhook, cainjector and
    startupapicheck pods runAsNonRoot, seccompProfile RuntimeDefault, allowPrivilegeEscalation
    false and capabilities drop ALL, and ``cert_manager_values`` overrides none of them; the
    workload identity webhook adds only env vars and a projected token volume (allowed)."""
    return labelled_namespace(CERT_MANAGER_NAMESPACE, "restricted")


def gateway(s: StackSettings, alb_id: Any, frontend: Any) -> dict:
    """One Gateway on the stack's AGC ("bring your own" deployment: the alb-id annotation and
    the frontend as the Gateway's address). Port 80 accepts only the redirect route in this
    namespace; each site gets an HTTPS listener that terminates TLS with its certificate and
    accepts routes only from the site's namespace."""
    listeners: list[dict] = [
        {
            "name": HTTP_LISTENER,
            "port": 80,
            "protocol": "HTTP",
            "allowedRoutes": {"namespaces": {"from": "Same"}, "kinds": [{"kind": "HTTPRoute"}]},
        }
    ]
    for site in sites(s):
        listeners.append(
            {
                "name": listener_name(site),
                "hostname": site.hostname,
                "port": 443,
                "protocol": "HTTPS",
                "tls": {
                    "mode": "Terminate",
                    "certificateRefs": [{"group": "", "kind": "Secret", "name": tls_secret(site)}],
                },
                "allowedRoutes": {
                    "namespaces": {
                        "from": "Selector",
                        "selector": {"matchLabels": {"kubernetes.io/metadata.name": site.namespace}},
                    },
                    "kinds": [{"kind": "HTTPRoute"}],
                },
            }
        )
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {
            "name": GATEWAY,
            "namespace": NAMESPACE,
            "annotations": {"alb.networking.azure.io/alb-id": alb_id},
        },
        "spec": {
            "gatewayClassName": GATEWAY_CLASS,
            "addresses": [{"type": "alb.networking.azure.io/alb-frontend", "value": frontend}],
            "listeners": listeners,
        },
    }


def redirect_route() -> dict:
    """Everything on port 80 is redirected to HTTPS (301); nothing is served in plaintext."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "https-redirect", "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [{"name": GATEWAY, "sectionName": HTTP_LISTENER}],
            "rules": [
                {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}
            ],
        },
    }


def site_route(site: Site) -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": site.key, "namespace": site.namespace},
        "spec": {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": GATEWAY,
                    "namespace": NAMESPACE,
                    "sectionName": listener_name(site),
                }
            ],
            "hostnames": [site.hostname],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": site.service, "port": site.port}],
                }
            ],
        },
    }


def waf_attachment(waf_policy_id: Any) -> dict:
    """AGC's WebApplicationFirewallPolicy (alb.networking.azure.io/v1): the WAF policy on every
    listener of the Gateway. No CRD schema for it is published; shape from Microsoft's docs."""
    return {
        "apiVersion": "alb.networking.azure.io/v1",
        "kind": "WebApplicationFirewallPolicy",
        "metadata": {"name": "edge-waf", "namespace": NAMESPACE},
        "spec": {
            "targetRef": {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": GATEWAY,
                "namespace": NAMESPACE,
            },
            "webApplicationFirewall": {"id": waf_policy_id},
        },
    }


def cluster_issuer(s: StackSettings, client_id: Any, subscription_id: Any, zone_resource_group: Any) -> dict:
    """Let's Encrypt (staging in dev, production in prod) with DNS-01 on the Azure DNS zone,
    authenticated as cert-manager's workload identity (DNS Zone Contributor on the zone only)."""
    e = s.edge
    assert e.dns_zone is not None and e.acme_email is not None  # edge_rules: required when enabled
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": issuer_name(s)},
        "spec": {
            "acme": {
                "server": ACME_SERVERS[e.acme_server],
                "email": e.acme_email,
                "privateKeySecretRef": {"name": f"{issuer_name(s)}-account"},
                "solvers": [
                    {
                        "selector": {"dnsZones": [e.dns_zone.name]},
                        "dns01": {
                            "azureDNS": {
                                "hostedZoneName": e.dns_zone.name,
                                "resourceGroupName": zone_resource_group,
                                "subscriptionID": subscription_id,
                                "environment": "AzurePublicCloud",
                                "managedIdentity": {"clientID": client_id},
                            }
                        },
                    }
                ],
            }
        },
    }


def certificate(s: StackSettings, site: Site) -> dict:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": site.key, "namespace": NAMESPACE},
        "spec": {
            "secretName": tls_secret(site),
            "dnsNames": [site.hostname],
            "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": issuer_name(s)},
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": ["digital signature", "key encipherment", "server auth"],
        },
    }


def record_name(s: StackSettings, site: Site) -> str:
    """The record set's name relative to the zone ("@" for the apex)."""
    zone = s.edge.dns_zone
    assert zone is not None
    return "@" if site.hostname == zone.name else site.hostname[: -len(zone.name) - 1]


def alb_controller_values(client_id: Any) -> dict:
    return {"albController": {"namespace": ALB_NAMESPACE, "podIdentity": {"clientID": client_id}}}


def cert_manager_values(registry: Any = None) -> dict:
    """crds.enabled: the chart manages the CRDs (kept on uninstall); the controller watches
    Gateway API objects (the CRDs are installed before this release); its pods carry the
    workload identity label so Azure DNS sees the identity's token. ``registry``: the stack's
    registry (every cert-manager image is ``<imageRegistry>/<imageNamespace>/<name>``)."""
    values: dict = {
        "crds": {"enabled": True, "keep": True},
        "config": {
            "apiVersion": "controller.config.cert-manager.io/v1alpha1",
            "kind": "ControllerConfiguration",
            "gatewayAPI": {"enabled": True},
        },
        "podLabels": {WORKLOAD_IDENTITY_LABEL: "true"},
    }
    if registry is not None:
        values["imageRegistry"] = prefix("quay.io", registry)
    return values
