"""The stack as one function: settings -> network -> vault -> AKS, PostgreSQL -> workload access.

``__main__.py`` calls :func:`main`; ``dryrun`` and the tests call it under Pulumi's mocks,
once per stack, in one process.
"""

from __future__ import annotations

from collections.abc import Sequence

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
from .images import ImageSupply
from .keda import KedaAccess
from .landing import ServiceLanding
from .locks import Locks
from .network import Network
from .observability import Observability
from .postgres import DatabaseServer, Postgres, PostgresBootstrap
from .postgres_replicas import DrNetwork, PostgresReplicas
from .recovery import DR_OUTPUT, RecoveredPostgres, RecoveryNetwork, check_region, replaced_stack
from .redis import Redis
from .render.db_alerts import primary, replica_alerts
from .retention import Retention, broker_availability
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
    pg: DatabaseServer
    dr_net: DrNetwork | None = None
    replicas: PostgresReplicas | None = None
    if s.recovery is None:
        primary_server = Postgres("postgres", s, net, vault, client, suffix, databases)
        pg = primary_server
        # Read replicas behind a virtual endpoint, and the DR geo-replica in its own VNet (prod).
        dr_net = DrNetwork("dr-network", s, net) if s.postgres.disaster_recovery else None
        replicas = (
            PostgresReplicas("postgres-replicas", s, net, primary_server, client, dr_net)
            if s.postgres.read_replicas.count or dr_net
            else None
        )
    else:
        # A recovery stack (components/recovery.py): the replaced stack's promoted geo-replica,
        # found through that stack's outputs and checked against this stack's settings.
        replaced = pulumi.StackReference(replaced_stack(s))
        dr = replaced.require_output(DR_OUTPUT).apply(lambda d: check_region(s, dict(d)))
        recovered = RecoveredPostgres("postgres", s, client, dr)
        path = RecoveryNetwork("recovery-network", s, net, dr)
        recovered.last_operations = [*recovered.last_operations, *path.ready]
        pg = recovered
    replica_servers = replicas.servers if replicas else {}
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
            **{
                f"postgres-{key}": Target(r.id, categories["postgres"], dedicated=False)
                for key, r in replica_servers.items()
            },
            "registry": Target(acr.registry_id, categories["registry"]),
        },
    )
    ClusterPolicies("cluster-policies", s, aks.cluster_id, login)
    # The services' own images: push identities, the build registry, signing, admission (docs/images.md).
    supply = ImageSupply(
        "images",
        s,
        net,
        client,
        suffix,
        acr.registry_id,
        vault.vault_id,
        aks.cluster_id,
        aks.oidc_issuer_url,
        provider=aks.provider,
        registry=images,
        vault_uri=vault.vault_uri,
    )
    Budget("budget", s, net.resource_group_name, net.resource_group_id)
    # 90 days of application logs, a year of metrics (remote write to an Azure Monitor workspace)
    retention = Retention(
        "retention", s, net.resource_group_name, aks.workspace_id, aks.oidc_issuer_url, client, net.resource_group_id
    )
    observability = Observability(
        "observability",
        s,
        vault,
        aks.provider,
        client,
        registry=images,
        remote_write=retention.remote_write,
        grafana_azure=retention.grafana,
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
    # (one (Server, id) pair each: the primary, the read replicas, the DR replica), the vault, the edge WAF.
    azure_alerts = AzureAlerts(
        "azure-alerts",
        s,
        net.resource_group_name,
        [(primary(s), pg.server_id)] + [(replica_alerts(s, key), r.id) for key, r in replica_servers.items()],
        vault_id=vault.vault_id,
        edge_id=edge_id,
    )
    # The in-cluster broker, watched from outside the cluster: a rule group Azure evaluates on the
    # remote-written metrics (components/retention.py)
    broker_availability(s, retention, net.resource_group_name, azure_alerts.group_id("critical"))
    # Azure Managed Redis for the services with `redis: true` (or redis.enabled): components/redis.py
    redis = None
    if s.redis_enabled:
        redis = Redis(
            "redis",
            s,
            net,
            suffix,
            aks.workspace_id,
            {svc: identities.principal_ids[svc] for svc in s.redis_services},
            # warnings, and RedisDown as critical, routed as Alertmanager routes them (the same
            # receivers as every Azure alert)
            azure_alerts.group_id("warning"),
            azure_alerts.group_id("critical"),
        )
    Locks(
        "locks",
        s,
        {
            "cluster": aks.cluster_id,
            "workspace": aks.workspace_id,
            "vault": vault.vault_id,
            "postgres": pg.server_id,
            **{f"postgres-{key}": r.id for key, r in replica_servers.items()},
            "registry": acr.registry_id,
            **({"redis": redis.cluster_id} if redis else {}),
        },
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
            redis_host=redis.host_name if redis and s.services[svc].redis else None,
        )

    pulumi.export("environment", s.environment)
    pulumi.export("resourceGroupName", net.resource_group_name)
    pulumi.export("aksClusterName", aks.cluster_name)
    pulumi.export("aksOidcIssuerUrl", aks.oidc_issuer_url)
    pulumi.export("kubeconfig", aks.kubeconfig)  # a Pulumi secret
    pulumi.export("postgresFqdn", pg.fqdn)
    if replicas is not None:
        if replicas.virtual_endpoint is not None:
            pulumi.export("postgresWriterHost", replicas.virtual_endpoint.virtual_endpoints.apply(_writer))
            pulumi.export("postgresReaderHost", replicas.virtual_endpoint.virtual_endpoints.apply(_reader))
        pulumi.export("postgresReplicaFqdns", [r.fully_qualified_domain_name for r in replicas.replicas])
        if replicas.dr_replica is not None and dr_net is not None:
            dr_replica = replicas.dr_replica
            pulumi.export("postgresDrReplicaFqdn", dr_replica.fully_qualified_domain_name)
            # what a recovery stack (recovery.replaces: <this stack>) reads: components/recovery.py
            pulumi.export(DR_OUTPUT, dr_net.recovery_output(s, dr_replica))
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
    if redis:
        pulumi.export("redisHost", redis.host_name)
    # what each service's repository sets as its environment's variables (docs/images.md)
    pulumi.export(
        "imagePush",
        {
            svc: {
                "EB_PUSH_CLIENT_ID": client_id,
                "EB_BUILD_REGISTRY": supply.build_login_server,
                "EB_REGISTRY": login,
                "EB_SIGNING_VAULT": vault.vault_name,
                "EB_SIGNING_CERTIFICATE": s.registry.images.signing.certificate_name,
            }
            for svc, client_id in supply.push_client_ids.items()
        },
    )


def _writer(hosts: Sequence[str] | None) -> str | None:
    return next((h for h in hosts or [] if ".writer." in h), None)


def _reader(hosts: Sequence[str] | None) -> str | None:
    return next((h for h in hosts or [] if ".reader." in h), None)
