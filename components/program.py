"""The stack as one function: settings -> network -> vault -> AKS, PostgreSQL -> workload access.

``__main__.py`` calls :func:`main`; ``dryrun`` and the tests call it under Pulumi's mocks,
once per stack, in one process.
"""

from __future__ import annotations

import pulumi
import pulumi_random as random
from pulumi_azure_native import authorization

from . import registry
from . import settings as settings_mod
from .aks import Aks
from .azure_alerts import AzureAlerts
from .broker import Broker
from .budget import Budget
from .cloudamqp import CloudAmqpBroker
from .cluster_policy import ClusterPolicies
from .diagnostics import Diagnostics, Target, log_categories
from .edge import Edge, EdgeCertificates
from .identities import ServiceIdentities
from .keda import KedaAccess
from .landing import ServiceLanding
from .locks import Locks
from .network import Network
from .observability import Observability
from .postgres import Postgres, PostgresBootstrap
from .render.db_alerts import primary
from .retention import Retention
from .rollouts import Rollouts
from .settings import StackSettings
from .vault import Vault


def main(settings: StackSettings | None = None) -> None:
    # Validate all config first: a ConfigError is raised before any resource is registered.
    s = settings or settings_mod.load()
    client = authorization.get_client_config_output()

    # Globally unique DNS names (Key Vault, PostgreSQL) get a suffix that is stable in state.
    suffix = random.RandomString(
        "name-suffix", random.RandomStringArgs(length=5, special=False, upper=False, numeric=True)
    ).result

    # Every image the stack runs is pulled through the registry's cache (components/render/images.py).
    login = registry.login_server(s, suffix)
    net = Network("network", s, registry_login_server=login)
    vault = Vault("vault", s, net, client, suffix)
    aks = Aks("aks", s, net, client)
    # The services with a database (`services.<name>.database: true`).
    databases = s.databases
    acr = registry.Registry("registry", s, net, client, suffix, aks.kubelet_principal_id)
    images = acr.pull_through  # the same login server, after AcrPull and the cache rules
    pg = Postgres("postgres", s, net, vault, client, suffix, databases)
    # Every service has its own identity: its PostgreSQL role (if any), its secrets, its pods.
    identities = ServiceIdentities("service-identities", s, net, list(s.services))
    PostgresBootstrap(
        "postgres-bootstrap",
        s,
        net,
        pg,
        aks.provider,
        aks.oidc_issuer_url,
        {db: identities.principal_ids[db] for db in databases},
        registry=images,
    )
    categories = log_categories(s)
    Diagnostics(
        "diagnostics",
        s,
        aks.workspace_id,
        {
            "cluster": Target(aks.cluster_id, categories["cluster"]),
            "vault": Target(vault.vault_id, categories["vault"]),
            "postgres": Target(pg.server_id, categories["postgres"], dedicated=False),
            "registry": Target(acr.registry_id, categories["registry"]),
        },
    )
    ClusterPolicies("cluster-policies", s, aks.cluster_id, login)
    Budget("budget", s, net.resource_group_name, net.resource_group_id)
    Locks(
        "locks",
        s,
        {
            "cluster": aks.cluster_id,
            "workspace": aks.workspace_id,
            "vault": vault.vault_id,
            "postgres": pg.server_id,
            "registry": acr.registry_id,
        },
    )
    # 90 days of application logs, a year of metrics (remote write to an Azure Monitor workspace)
    retention = Retention("retention", s, net.resource_group_name, aks.workspace_id, aks.oidc_issuer_url, client)
    observability = Observability(
        "observability", s, vault, aks.provider, client, registry=images, remote_write=retention.remote_write
    )
    edge_id: pulumi.Output[str] | None = None
    if s.edge.enabled:
        edge = Edge("edge", s, net, aks, client)
        edge_id = edge.traffic_controller_id
        certificates = EdgeCertificates("edge-certificates", s, net, aks, client, edge, registry=images)
        pulumi.export("edgeFrontendFqdn", edge.frontend_fqdn)
        if certificates.zone_name_servers is not None:
            pulumi.export("edgeDnsZoneNameServers", certificates.zone_name_servers)
    # Alerts Azure evaluates (up even when the cluster is not): the database and its replicas
    # (one (Server, id) pair each; the data tier appends its replicas here), the vault, the edge WAF.
    AzureAlerts(
        "azure-alerts",
        s,
        net.resource_group_name,
        [(primary(s), pg.server_id)],
        vault_id=vault.vault_id,
        edge_id=edge_id,
    )
    if s.rollouts.enabled:
        Rollouts("rollouts", s, aks.provider, crds=observability.crds, registry=images)
    if s.broker.backend == "cloudamqp":
        broker = CloudAmqpBroker("broker", s, vault)
    else:
        # the broker's ServiceMonitor needs the monitoring CRDs that kube-prometheus-stack installs
        broker = Broker("broker", s, vault, aks.provider, crds=observability.crds, registry=images)

    ca_uri = {"broker-ca-cert": broker.ca_cert_uri} if isinstance(broker, Broker) else {}
    keda = None
    if s.scaled_services:
        keda = KedaAccess(
            "keda-access",
            s,
            resource_group_name=net.resource_group_name,
            oidc_issuer_url=aks.oidc_issuer_url,
            vault_id=vault.vault_id,
            secret_uris={"broker-keda-monitor-url": broker.monitor_url_uri, **ca_uri},
            client=client,
        )
    for svc in s.services:
        uris = {
            f"broker-{svc}": vault.secrets[f"broker-{svc}"].uri,
            f"broker-{svc}-url": broker.connection_string_uris[svc],
        }
        uris.update(ca_uri)
        ServiceLanding(
            f"landing-{svc}",
            s,
            svc,
            resource_group_name=net.resource_group_name,
            identity_name=identities.names[svc],
            principal_id=identities.principal_ids[svc],
            client_id=identities.client_ids[svc],
            oidc_issuer_url=aks.oidc_issuer_url,
            vault_id=vault.vault_id,
            vault_name=vault.vault_name,
            vault_uri=vault.vault_uri,
            keda_client_id=keda.client_id if keda and s.services[svc].scaling else None,
            secret_uris=uris,
            client=client,
            provider=aks.provider,
            crds=observability.crds,
        )

    pulumi.export("environment", s.environment)
    pulumi.export("resourceGroupName", net.resource_group_name)
    pulumi.export("aksClusterName", aks.cluster_name)
    pulumi.export("aksOidcIssuerUrl", aks.oidc_issuer_url)
    pulumi.export("kubeconfig", aks.kubeconfig)  # a Pulumi secret
    pulumi.export("postgresFqdn", pg.fqdn)
    pulumi.export("postgresAdminLogin", s.postgres.admin_login)
    pulumi.export("postgresAdminPasswordSecretUri", vault.secrets["postgres-admin"].uri)
    pulumi.export("keyVaultName", vault.vault_name)
    pulumi.export("keyVaultUri", vault.vault_uri)
    pulumi.export("brokerAmqpsEndpoint", broker.amqps_endpoint)
    pulumi.export("brokerManagementUrl", broker.management_url)
    pulumi.export("brokerConnectionStringSecretUris", broker.connection_string_uris)
    pulumi.export("serviceClientIds", identities.client_ids)
    pulumi.export("grafanaUrl", observability.grafana_url)
    pulumi.export("otlpEndpoint", observability.otlp_endpoint)
