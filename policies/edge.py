"""The public edge: every public listener is HTTPS with a certificate from the stack's issuer,
port 80 only redirects, the edge has a WAF policy (in prevention mode where required), and no
Service of type LoadBalancer or Ingress exposes anything without TLS."""

from __future__ import annotations

from typing import Any

from kit import MANDATORY, MISSING, config, get, schema, violation
from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
HTTPROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"
CLUSTER_ISSUER = "kubernetes:cert-manager.io/v1:ClusterIssuer"
SERVICE = "kubernetes:core/v1:Service"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
RELEASE = "kubernetes:helm.sh/v3:Release"
TRAFFIC_CONTROLLER = "azure-native:servicenetworking:TrafficControllerInterface"
SECURITY_POLICY = "azure-native:servicenetworking:SecurityPoliciesInterface"
WAF_POLICY = "azure-native:network:WebApplicationFirewallPolicy"
WAF_ATTACHMENT = "kubernetes:alb.networking.azure.io/v1:WebApplicationFirewallPolicy"
MANAGED_RULE_SETS = ("Microsoft_DefaultRuleSet", "OWASP")


def _of(resources: list[PolicyResource], typ: str) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type == typ]


def _meta(r: PolicyResource, field: str, default: str = "") -> str:
    return str(get(r.props, f"metadata.{field}", default))


def _is_https_redirect(route: PolicyResource) -> bool:
    rules = get(route.props, "spec.rules", []) or []
    if not rules:
        return False
    for rule in rules:
        if rule.get("backendRefs"):
            return False
        redirects = [f for f in rule.get("filters") or [] if f.get("type") == "RequestRedirect"]
        if not redirects or any(get(f, "requestRedirect.scheme") != "https" for f in redirects):
            return False
    return True


def _attached(route: PolicyResource, gateway: PolicyResource, listener: str) -> bool:
    route_ns = _meta(route, "namespace", "default")
    for ref in get(route.props, "spec.parentRefs", []) or []:
        if ref.get("kind", "Gateway") != "Gateway" or ref.get("name") != _meta(gateway, "name"):
            continue
        if ref.get("namespace", route_ns) != _meta(gateway, "namespace", "default"):
            continue
        if ref.get("sectionName") in (None, listener):
            return True
    return False


def _https_listeners(args: StackValidationArgs, report: ReportViolation):
    res = list(args.resources)
    issuers = {_meta(r, "name") for r in _of(res, CLUSTER_ISSUER)}
    # (namespace, secretName) -> the issuer its Certificate names
    certs: dict[tuple[str, str], dict] = {
        (_meta(c, "namespace", "default"), str(get(c.props, "spec.secretName", ""))): get(c.props, "spec.issuerRef", {})
        for c in _of(res, CERTIFICATE)
    }
    routes = _of(res, HTTPROUTE)
    for gw in _of(res, GATEWAY):
        ns = _meta(gw, "namespace", "default")
        for listener in get(gw.props, "spec.listeners", []) or []:
            name, protocol = listener.get("name", "?"), listener.get("protocol")
            where = f"spec.listeners[{name}]"
            if protocol == "HTTP":
                for route in routes:
                    if _attached(route, gw, name) and not _is_https_redirect(route):
                        violation(
                            report,
                            HTTPROUTE,
                            route.name,
                            "spec.rules",
                            f"served on plain-HTTP listener '{name}'",
                            "on port 80 only redirect (RequestRedirect scheme https, no backendRefs);"
                            " attach the route to an HTTPS listener",
                            route.urn,
                        )
                continue
            if protocol != "HTTPS":
                violation(report, GATEWAY, gw.name, f"{where}.protocol", protocol, "public listeners are HTTPS", gw.urn)
                continue
            mode = get(listener, "tls.mode", "Terminate")
            refs = get(listener, "tls.certificateRefs", []) or []
            if mode != "Terminate" or not refs:
                violation(
                    report,
                    GATEWAY,
                    gw.name,
                    f"{where}.tls",
                    listener.get("tls", MISSING),
                    "terminate TLS with a certificate Secret (tls.mode Terminate, certificateRefs)",
                    gw.urn,
                )
                continue
            for ref in refs:
                key = (ref.get("namespace", ns), ref.get("name", ""))
                issuer = certs.get(key)
                if issuer is None or issuer.get("kind") != "ClusterIssuer" or issuer.get("name") not in issuers:
                    violation(
                        report,
                        GATEWAY,
                        gw.name,
                        f"{where}.tls.certificateRefs",
                        ref.get("name", MISSING),
                        "reference the Secret of a cert-manager Certificate issued by the stack's ClusterIssuer"
                        f" ({', '.join(sorted(issuers)) or 'none defined'})",
                        gw.urn,
                    )


edge_https = StackValidationPolicy(
    name="edge-https-only",
    description="Every public listener is HTTPS with a certificate from the stack's issuer; port 80 only redirects.",
    validate=_https_listeners,
    enforcement_level=MANDATORY,
)


def _waf(args: StackValidationArgs, report: ReportViolation):
    res = list(args.resources)
    controllers = _of(res, TRAFFIC_CONTROLLER)
    if not controllers:
        return
    prevention = config(args).get("requirePrevention", True)
    wafs = _of(res, WAF_POLICY)
    if not wafs or not any(get(p.props, "wafPolicy.id", "") for p in _of(res, SECURITY_POLICY)):
        violation(
            report,
            TRAFFIC_CONTROLLER,
            controllers[0].name,
            "securityPolicies (WAF)",
            MISSING,
            "add a WebApplicationFirewallPolicy and a servicenetworking.SecurityPoliciesInterface naming it",
            controllers[0].urn,
        )
    for waf in wafs:
        state = get(waf.props, "policySettings.state")
        if state != "Enabled":
            violation(report, WAF_POLICY, waf.name, "policySettings.state", state, "set it to 'Enabled'", waf.urn)
        mode = get(waf.props, "policySettings.mode")
        if prevention and mode != "Prevention":
            violation(
                report,
                WAF_POLICY,
                waf.name,
                "policySettings.mode",
                mode,
                "set it to 'Prevention' (event-backbone:edge.waf.mode)",
                waf.urn,
            )
        sets = [s.get("ruleSetType") for s in get(waf.props, "managedRules.managedRuleSets", []) or []]
        if not any(t in MANAGED_RULE_SETS for t in sets):
            violation(
                report,
                WAF_POLICY,
                waf.name,
                "managedRules.managedRuleSets",
                sets or MISSING,
                "add the Microsoft_DefaultRuleSet (OWASP-based) managed rule set",
                waf.urn,
            )
        rate = [r for r in get(waf.props, "customRules", []) or [] if r.get("ruleType") == "RateLimitRule"]
        if not any(r.get("action") == "Block" and r.get("state", "Enabled") == "Enabled" for r in rate):
            violation(
                report,
                WAF_POLICY,
                waf.name,
                "customRules (RateLimitRule)",
                MISSING,
                "add an enabled rate-limit custom rule that blocks (event-backbone:edge.waf.rateLimitRequests)",
                waf.urn,
            )
    attached = {str(get(a.props, "spec.targetRef.name", "")) for a in _of(res, WAF_ATTACHMENT)}
    for gw in _of(res, GATEWAY):
        if _meta(gw, "name") not in attached:
            violation(
                report,
                GATEWAY,
                gw.name,
                "WebApplicationFirewallPolicy targetRef",
                MISSING,
                "attach the WAF policy to the Gateway (alb.networking.azure.io/v1 WebApplicationFirewallPolicy)",
                gw.urn,
            )


edge_waf = StackValidationPolicy(
    name="edge-waf",
    description="The edge has an enabled WAF policy (managed rules, rate limit) on every Gateway;"
    " in prevention mode where required (prod).",
    validate=_waf,
    enforcement_level=MANDATORY,
    config_schema=schema({"requirePrevention": {"type": "boolean", "default": True}}),
)


def _ingress_hosts_without_tls(ingress: dict) -> list[str]:
    hosts = [r.get("host") for r in (ingress.get("rules") or []) if r.get("host")] or list(ingress.get("hosts") or [])
    covered = {h for t in (ingress.get("tls") or []) for h in (t.get("hosts") or [])}
    if not ingress.get("tls"):
        return hosts or ["*"]
    return [h for h in hosts if h not in covered]


def _load_balancer_paths(values: Any, prefix: str = "") -> list[str]:
    """Paths of `<...>.service.type: LoadBalancer` (and `serviceType`) anywhere in Helm values."""
    found = []
    if isinstance(values, dict):
        for k, v in values.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if (
                k in ("type", "serviceType")
                and v == "LoadBalancer"
                and (k == "serviceType" or prefix.endswith("service"))
            ):
                found.append(path)
            else:
                found += _load_balancer_paths(v, path)
    elif isinstance(values, list):
        for i, v in enumerate(values):
            found += _load_balancer_paths(v, f"{prefix}.{i}")
    return found


def _exposure(args, report):
    if args.resource_type == SERVICE:
        if get(args.props, "spec.type") == "LoadBalancer":
            violation(
                report,
                args.resource_type,
                args.name,
                "spec.type",
                "LoadBalancer",
                "use ClusterIP and publish through the Gateway (HTTPS, WAF)",
            )
        return
    if args.resource_type == INGRESS:
        missing = _ingress_hosts_without_tls(dict(get(args.props, "spec", {}) or {}))
        if missing:
            violation(
                report,
                args.resource_type,
                args.name,
                "spec.tls",
                get(args.props, "spec.tls"),
                f"add a spec.tls entry covering {', '.join(missing)}, or publish through the Gateway",
            )
        return
    if args.resource_type != RELEASE:
        return
    values = get(args.props, "values", {}) or {}
    for path in _load_balancer_paths(values):
        violation(
            report,
            args.resource_type,
            args.name,
            f"values.{path}",
            "LoadBalancer",
            "use ClusterIP and publish through the Gateway (HTTPS, WAF)",
        )
    # Ingresses the pinned charts create from their values.
    for path in ("grafana.ingress", "jaeger.ingress", "prometheus.ingress", "alertmanager.ingress", "ingress"):
        ingress = get(values, path, None)
        if isinstance(ingress, dict) and ingress.get("enabled"):
            missing = _ingress_hosts_without_tls(ingress)
            if missing:
                violation(
                    report,
                    args.resource_type,
                    args.name,
                    f"values.{path}.tls",
                    ingress.get("tls", MISSING),
                    f"publish through the Gateway (HTTPRoute) instead, or add TLS covering {', '.join(missing)}",
                )


no_plaintext_exposure = ResourceValidationPolicy(
    name="no-plaintext-exposure",
    description="No Service of type LoadBalancer; no Ingress (ours or a chart's) without TLS for its hosts.",
    validate=_exposure,
    enforcement_level=MANDATORY,
)

POLICIES = [edge_https, edge_waf, no_plaintext_exposure]
