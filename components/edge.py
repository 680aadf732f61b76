"""The HTTPS edge for the operator UIs: Application Gateway for Containers (AGC) with a WAF
policy, its ALB controller, the Gateway API CRDs and one Gateway (``Edge``); cert-manager with
Let's Encrypt DNS-01 on Azure DNS, the DNS records and the certificates (``EdgeCertificates``).
Data comes from components.render.edge; this module only wires."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import dns, managedidentity, network, servicenetworking

from . import rbac
from .aks import Aks
from .kube import apply_manifest, release_values
from .network import Network
from .render import edge as render
from .render.helm_values import Chart
from .settings import StackSettings

WAF_RULE_SET = "Microsoft_DefaultRuleSet"  # DRS: Microsoft's OWASP CRS-based managed rule set


def waf_policy_settings(s: StackSettings) -> network.PolicySettingsArgs:
    return network.PolicySettingsArgs(
        state=network.WebApplicationFirewallEnabledState.ENABLED,
        mode=network.WebApplicationFirewallMode(s.edge.waf.mode),
        request_body_check=True,
    )


def waf_managed_rules(s: StackSettings) -> network.ManagedRulesDefinitionArgs:
    return network.ManagedRulesDefinitionArgs(
        managed_rule_sets=[
            network.ManagedRuleSetArgs(rule_set_type=WAF_RULE_SET, rule_set_version=s.edge.waf.rule_set_version)
        ]
    )


def waf_custom_rules(s: StackSettings) -> list[network.WebApplicationFirewallCustomRuleArgs]:
    """A rate limit per client IP: more than ``rateLimitRequests`` requests in the window are
    blocked. A rate-limit rule needs a match condition: 'not from 255.255.255.255' matches all."""
    w = s.edge.waf
    return [
        network.WebApplicationFirewallCustomRuleArgs(
            name="ratelimitperclient",
            priority=10,
            rule_type=network.WebApplicationFirewallRuleType.RATE_LIMIT_RULE,
            rate_limit_duration=network.ApplicationGatewayFirewallRateLimitDuration(w.rate_limit_window),
            rate_limit_threshold=w.rate_limit_requests,
            group_by_user_session=[
                network.GroupByUserSessionArgs(
                    group_by_variables=[
                        network.GroupByVariableArgs(
                            variable_name=network.ApplicationGatewayFirewallUserSessionVariable.CLIENT_ADDR
                        )
                    ]
                )
            ],
            match_conditions=[
                network.MatchConditionArgs(
                    match_variables=[
                        network.MatchVariableArgs(variable_name=network.WebApplicationFirewallMatchVariable.REMOTE_ADDR)
                    ],
                    operator=network.WebApplicationFirewallOperator.IP_MATCH,
                    negation_conditon=True,
                    match_values=["255.255.255.255/32"],
                )
            ],
            action=network.WebApplicationFirewallAction.BLOCK,
            state="Enabled",
        )
    ]


def _federated_identity(
    owner: pulumi.Resource,
    s: StackSettings,
    net: Network,
    aks: Aks,
    name: str,
    namespace: str,
    service_account: str,
) -> managedidentity.UserAssignedIdentity:
    child = pulumi.ResourceOptions(parent=owner)
    identity = managedidentity.UserAssignedIdentity(
        f"{name}-identity",
        resource_group_name=net.resource_group_name,
        resource_name_=s.name("id", name),
        location=s.location,
        tags={**s.tags, "environment": s.environment},
        opts=child,
    )
    managedidentity.FederatedIdentityCredential(
        f"{name}-federation",
        resource_group_name=net.resource_group_name,
        resource_name_=identity.name,
        federated_identity_credential_resource_name=f"{namespace}-{service_account}",
        issuer=aks.oidc_issuer_url,
        subject=f"system:serviceaccount:{namespace}:{service_account}",
        audiences=["api://AzureADTokenExchange"],
        opts=child,
    )
    return identity


class Edge(pulumi.ComponentResource):
    """AGC (traffic controller, frontend, association to the delegated subnet, security policy
    with the WAF policy), the ALB controller with its own workload identity, the Gateway API
    CRDs, the Gateway with its HTTPS listeners, the HTTP->HTTPS redirect, and the routes."""

    frontend_fqdn: pulumi.Output[str]
    crds: list[pulumi.Resource]  # what a Gateway API object must wait for
    namespace: pulumi.Resource  # the Gateway's namespace, which also holds the certificates
    waf_policy_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        net: Network,
        aks: Aks,
        client: pulumi.Output,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:Edge", name, None, opts)
        s = settings
        assert net.edge_subnet_id is not None  # edge.enabled
        child = pulumi.ResourceOptions(parent=self)
        tags = {**s.tags, "environment": s.environment, "managedBy": "pulumi"}

        waf = network.WebApplicationFirewallPolicy(
            "waf-policy",
            network.WebApplicationFirewallPolicyArgs(
                resource_group_name=net.resource_group_name,
                policy_name=s.name("waf", "edge").replace("-", ""),  # letters and digits only
                location=s.location,
                policy_settings=waf_policy_settings(s),
                managed_rules=waf_managed_rules(s),
                custom_rules=waf_custom_rules(s),
                tags=tags,
            ),
            opts=child,
        )
        controller = servicenetworking.TrafficControllerInterface(
            "traffic-controller",
            servicenetworking.TrafficControllerInterfaceArgs(
                resource_group_name=net.resource_group_name,
                traffic_controller_name=s.name("agc"),
                location=s.location,
                tags=tags,
            ),
            opts=child,
        )
        frontend = servicenetworking.FrontendsInterface(
            "frontend",
            servicenetworking.FrontendsInterfaceArgs(
                resource_group_name=net.resource_group_name,
                traffic_controller_name=controller.name,
                frontend_name=render.FRONTEND,
                location=s.location,
                tags=tags,
            ),
            opts=child,
        )
        association = servicenetworking.AssociationsInterface(
            "association",
            servicenetworking.AssociationsInterfaceArgs(
                resource_group_name=net.resource_group_name,
                traffic_controller_name=controller.name,
                association_name="edge-subnet",
                association_type=servicenetworking.AssociationType.SUBNETS,
                subnet=servicenetworking.AssociationSubnetArgs(id=net.edge_subnet_id),
                location=s.location,
                tags=tags,
            ),
            opts=child,
        )
        security_policy = servicenetworking.SecurityPoliciesInterface(
            "security-policy",
            servicenetworking.SecurityPoliciesInterfaceArgs(
                resource_group_name=net.resource_group_name,
                traffic_controller_name=controller.name,
                security_policy_name="waf",
                location=s.location,
                waf_policy=servicenetworking.WafPolicyArgs(id=waf.id),
                tags=tags,
            ),
            opts=child,
        )

        # The ALB controller's own identity: configures this traffic controller and joins the
        # delegated subnet, nothing else (Reader on the cluster's node resource group, as
        # Microsoft documents for the controller).
        node_rg = s.name("aks", "nodes")  # components/aks.py: node_resource_group
        alb_identity = _federated_identity(
            self, s, net, aks, "alb-controller", render.ALB_NAMESPACE, render.ALB_SERVICE_ACCOUNT
        )
        grants = [
            rbac.grant(
                "alb-config-manager",
                role=rbac.APPGW_FOR_CONTAINERS_CONFIGURATION_MANAGER,
                principal_id=alb_identity.principal_id,
                scope=controller.id,
                client=client,
                description="ALB controller configures the edge's Application Gateway for Containers",
                opts=child,
            ),
            rbac.grant(
                "alb-subnet-network-contributor",
                role=rbac.NETWORK_CONTRIBUTOR,
                principal_id=alb_identity.principal_id,
                scope=net.edge_subnet_id,
                client=client,
                description="ALB controller joins the delegated edge subnet",
                opts=child,
            ),
            rbac.grant(
                "alb-node-rg-reader",
                role=rbac.READER,
                principal_id=alb_identity.principal_id,
                scope=client.subscription_id.apply(lambda sub: f"/subscriptions/{sub}/resourceGroups/{node_rg}"),
                client=client,
                description="ALB controller reads the cluster's node resource group",
                opts=child,
            ),
        ]

        kube = pulumi.ResourceOptions(parent=self, provider=aks.provider)
        crds = k8s.yaml.v2.ConfigFile("gateway-api-crds", file=render.GATEWAY_API_CRDS, opts=kube)
        alb_ns = apply_manifest("alb-namespace", render.alb_namespace(), kube)
        alb = k8s.helm.v3.Release(
            render.ALB_CONTROLLER.release,
            k8s.helm.v3.ReleaseArgs(
                name=render.ALB_CONTROLLER.release,
                chart=render.ALB_CONTROLLER.chart,
                version=render.ALB_CONTROLLER.version,
                namespace=render.ALB_NAMESPACE,
                create_namespace=False,  # alb_ns: labelled for Pod Security
                **release_values(render.alb_controller_values(alb_identity.client_id)),
                atomic=True,
                cleanup_on_fail=True,
                timeout=600,
                max_history=10,
            ),
            opts=pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[alb_ns, crds, *grants])),
        )
        ns = apply_manifest("namespace", render.namespace(), kube)
        after = pulumi.ResourceOptions.merge(
            kube, pulumi.ResourceOptions(depends_on=[ns, crds, alb, frontend, association, security_policy])
        )
        gateway = apply_manifest("gateway", render.gateway(s, controller.id, render.FRONTEND), after)
        apply_manifest("https-redirect", render.redirect_route(), after)
        apply_manifest("waf-attachment", render.waf_attachment(waf.id), after)
        for site in render.sites(s):
            apply_manifest(
                f"route-{site.key}",
                render.site_route(site),
                pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[gateway])),
            )

        self.crds = [crds]
        self.namespace = ns
        self.frontend_fqdn = frontend.fqdn
        self.waf_policy_id = waf.id
        self.traffic_controller_id = controller.id  # its WAF metrics: components/azure_alerts.py
        self.register_outputs({"frontendFqdn": self.frontend_fqdn, "wafPolicyId": self.waf_policy_id})


class EdgeCertificates(pulumi.ComponentResource):
    """cert-manager (its own workload identity, DNS Zone Contributor on the zone only), the
    ClusterIssuer (Let's Encrypt, DNS-01 on Azure DNS), one Certificate per hostname, the zone
    (created unless referenced by ID) and a CNAME per hostname to the AGC frontend."""

    zone_name_servers: pulumi.Output[Sequence[str]] | None

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        net: Network,
        aks: Aks,
        client: pulumi.Output,
        edge: Edge,
        registry: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:EdgeCertificates", name, None, opts)
        s = settings
        zone_cfg = s.edge.dns_zone
        assert zone_cfg is not None  # edge_rules
        child = pulumi.ResourceOptions(parent=self)

        if zone_cfg.resource_id is None:
            zone = dns.Zone(
                "dns-zone",
                dns.ZoneArgs(
                    resource_group_name=net.resource_group_name,
                    zone_name=zone_cfg.name,
                    location="global",
                    zone_type=dns.ZoneType.PUBLIC,
                    tags={**s.tags, "environment": s.environment, "managedBy": "pulumi"},
                ),
                opts=pulumi.ResourceOptions(parent=self, protect=s.protect),
            )
            zone_id: pulumi.Output[str] = zone.id
            zone_name: pulumi.Input[str] = zone.name
            zone_rg: pulumi.Input[str] = net.resource_group_name
            self.zone_name_servers = zone.name_servers
        else:
            zone_id = pulumi.Output.from_input(zone_cfg.resource_id)
            zone_name = zone_cfg.name
            zone_rg = zone_cfg.resource_id.split("/")[4]
            self.zone_name_servers = None

        for site in render.sites(s):
            dns.RecordSet(
                f"cname-{site.key}",
                dns.RecordSetArgs(
                    resource_group_name=zone_rg,
                    zone_name=zone_name,
                    relative_record_set_name=render.record_name(s, site),
                    record_type="CNAME",
                    ttl=300,
                    cname_record=dns.CnameRecordArgs(cname=edge.frontend_fqdn),
                ),
                opts=child,
            )

        identity = _federated_identity(
            self, s, net, aks, "cert-manager", render.CERT_MANAGER_NAMESPACE, render.CERT_MANAGER_SERVICE_ACCOUNT
        )
        grant = rbac.grant(
            "cert-manager-dns-zone-contributor",
            role=rbac.DNS_ZONE_CONTRIBUTOR,
            principal_id=identity.principal_id,
            scope=zone_id,
            client=client,
            description="cert-manager answers DNS-01 challenges in the edge's zone",
            opts=child,
        )

        kube = pulumi.ResourceOptions(parent=self, provider=aks.provider)
        chart: Chart = render.CERT_MANAGER
        manager_ns = apply_manifest("cert-manager-namespace", render.cert_manager_namespace(), kube)
        manager = k8s.helm.v3.Release(
            chart.release,
            k8s.helm.v3.ReleaseArgs(
                name=chart.release,
                chart=chart.chart,
                version=chart.version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo),
                namespace=render.CERT_MANAGER_NAMESPACE,
                create_namespace=False,  # manager_ns: labelled for Pod Security
                **release_values(render.cert_manager_values(registry)),
                atomic=True,
                cleanup_on_fail=True,
                timeout=600,
                max_history=10,
            ),
            # config.gatewayAPI.enabled: the Gateway API CRDs must exist before cert-manager starts
            opts=pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[manager_ns, *edge.crds, grant])),
        )
        after = pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[manager]))
        issuer = apply_manifest(
            "cluster-issuer",
            render.cluster_issuer(s, identity.client_id, client.subscription_id, zone_rg),
            after,
        )
        for site in render.sites(s):
            apply_manifest(
                f"certificate-{site.key}",
                render.certificate(s, site),
                pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[issuer, edge.namespace])),
            )
        self.register_outputs({"zoneNameServers": self.zone_name_servers})
