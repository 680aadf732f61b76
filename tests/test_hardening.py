"""Issue 12 as recorded for both stacks: audit trail, PostgreSQL audit parameters, locks,
Defender, node OS disks and host encryption, egress, budget, Azure Policy assignments; and the
settings that refuse the combinations that cannot work (one line per problem)."""

from __future__ import annotations

import pytest
from test_settings import errors, mutate

from components import settings as S
from components.aks import os_disk


def has_secret(value) -> bool:
    from pulumi.runtime import rpc

    if rpc.is_rpc_secret(value):
        return True
    if isinstance(value, dict):
        return any(has_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(has_secret(v) for v in value)
    return False


def by_name(stack, type_suffix: str) -> dict[str, dict]:
    return {r.name: stack.inputs(type_suffix, r.name) for r in stack.of_type(type_suffix)}


# ------------------------------------------------------------------ 1. diagnostic settings
def test_each_stateful_resource_logs_to_the_workspace(stack):
    # Azure Managed Redis's two settings: tests/test_redis.py
    settings = {r.name: r for r in stack.of_type("monitor:DiagnosticSetting") if not r.name.startswith("diag-redis-")}
    replicas = {f"diag-postgres-{r.name}" for r in stack.of_type("dbforpostgresql:Server") if r.name != "server"}
    assert replicas == (set() if stack.stack == "dev" else {"diag-postgres-replica-1", "diag-postgres-dr-replica"})
    for name in replicas:  # the replicas' own (tests/test_postgres_replicas.py)
        settings.pop(name)
    assert set(settings) == {"diag-cluster", "diag-vault", "diag-postgres", "diag-registry"}
    workspace = stack.one("operationalinsights:Workspace")
    targets = {
        "diag-cluster": stack.one("containerservice:ManagedCluster"),
        "diag-vault": stack.one("keyvault:Vault"),
        "diag-postgres": stack.one("dbforpostgresql:Server", "server"),
        "diag-registry": stack.one("containerregistry:Registry"),
    }
    for name, target in targets.items():
        reg = settings[name]
        assert target.urn in reg.dependencies and workspace.urn in reg.dependencies, name
    cats = {n: [log["category"] for log in stack.inputs("monitor:DiagnosticSetting", n)["logs"]] for n in settings}
    assert set(cats["diag-cluster"]) == set(stack.settings.aks.control_plane_logs) >= {"kube-audit-admin", "guard"}
    assert cats["diag-vault"] == ["AuditEvent"]
    assert "PostgreSQLLogs" in cats["diag-postgres"]
    metrics = stack.inputs("monitor:DiagnosticSetting", "diag-vault").get("metrics")
    # dev keeps platform metrics in Azure Monitor (free) instead of paying workspace ingestion
    assert bool(metrics) is (stack.stack == "prod")


def test_control_plane_audit_categories_cannot_be_dropped():
    lines = errors("dev", mutate("dev", "aks.controlPlaneLogs", ["cluster-autoscaler"]))
    assert lines == [
        "Pulumi.dev.yaml: event-backbone:aks.controlPlaneLogs must include kube-audit-admin, guard"
        ' (the audit trail of changes and sign-ins) (got ["cluster-autoscaler"])'
    ]
    lines = errors("dev", mutate("dev", "aks.controlPlaneLogs", ["guard", "kube-audit-everything"]))
    assert len(lines) == 1 and "aks.controlPlaneLogs[1] must be one of" in lines[0]


# ------------------------------------------------------------------ 2. PostgreSQL parameters
def test_postgres_audit_parameters_are_chained_configurations(stack):
    # the primary's (each replica has its own chain: tests/test_postgres_replicas.py)
    regs = {
        r.name: r
        for r in stack.of_type("dbforpostgresql:Configuration")
        if not r.name.startswith(("replica-", "dr-replica-"))
    }
    values = {stack.inputs("dbforpostgresql:Configuration", n)["configurationName"]: r for n, r in regs.items()}
    for param in ("connection_throttle.enable", "log_connections", "log_disconnections", "log_checkpoints"):
        assert stack.inputs("dbforpostgresql:Configuration", values[param].name)["value"] == "on"
    # Azure applies one parameter change at a time: each waits for the one before it
    chained = [r for r in regs.values() if any("dbforpostgresql:Configuration::" in d for d in r.dependencies)]
    assert len(chained) == len(regs) - 1


# ------------------------------------------------------------------ 3. locks and protect
def test_prod_locks_its_stateful_resources_dev_does_not(stack):
    locks = by_name(stack, "authorization:ManagementLockByScope")
    if stack.stack == "dev":
        assert locks == {}
        assert stack.one("containerservice:ManagedCluster").protect is False
        return
    expected = {"lock-cluster", "lock-workspace", "lock-vault", "lock-postgres", "lock-registry"}
    if stack.stack == "prod":
        expected |= {"lock-postgres-replica-1", "lock-postgres-dr-replica"}
    assert set(locks) == expected | ({"lock-redis"} if stack.settings.redis_enabled else set())
    assert {lock["level"] for lock in locks.values()} == {"CanNotDelete"}
    scopes = {name: lock["scope"] for name, lock in locks.items()}
    assert "/managedClusters/" in scopes["lock-cluster"] and "/vaults/" in scopes["lock-vault"]
    assert stack.one("containerservice:ManagedCluster").protect is True


# ------------------------------------------------------------------ 4. Defender
def test_defender_on_in_prod_and_bound_to_the_workspace(stack):
    profile = stack.inputs("containerservice:ManagedCluster")["securityProfile"]
    atp = stack.of_type("security:AdvancedThreatProtection")
    if stack.stack == "dev":
        assert "defender" not in profile and atp == []
        return
    workspace_id = stack.inputs("operationalinsights:Workspace")["workspaceName"]
    assert profile["defender"]["securityMonitoring"]["enabled"] is True
    assert profile["defender"]["logAnalyticsWorkspaceResourceId"].endswith(f"/{workspace_id}")
    (setting,) = atp
    props = stack.inputs("security:AdvancedThreatProtection")
    assert props["isEnabled"] is True and "/servers/" in props["resourceId"]
    assert stack.one("dbforpostgresql:Server", "server").urn in setting.dependencies


def test_prod_cannot_switch_defender_or_host_encryption_off():
    text = mutate("prod", "aks.defender", False)
    assert errors("prod", text) == ["Pulumi.prod.yaml: event-backbone:aks.defender must be true in prod (got false)"]
    text = mutate("prod", "aks.encryptionAtHost", False)
    assert errors("prod", text) == [
        "Pulumi.prod.yaml: event-backbone:aks.encryptionAtHost must be true in prod (got false)"
    ]
    text = mutate("prod", "postgres.defender", False)
    assert errors("prod", text) == [
        "Pulumi.prod.yaml: event-backbone:postgres.defender must be true in prod (got false)"
    ]


# ------------------------------------------------------------------ 5. node OS disks, host encryption
def aks_settings(**kw) -> S.AksSettings:
    return S.AksSettings.model_validate(kw)


@pytest.mark.parametrize(
    "vm_size,size_gb,expected",
    [
        ("Standard_D4ds_v5", 128, "Ephemeral"),  # 150 GiB temp disk
        ("Standard_D2ds_v5", 75, "Ephemeral"),  # exactly fits
        ("Standard_D2ds_v5", 76, "Managed"),  # one GiB too many
        ("Standard_D4s_v5", 30, "Managed"),  # no local disk at all
        ("Standard_D4s_v3", 64, "Ephemeral"),  # 100 GiB cache disk
        ("Standard_E4bds_v5", 30, "Managed"),  # not in the table: unknown, stay managed
    ],
)
def test_os_disk_is_ephemeral_only_where_it_fits(vm_size, size_gb, expected):
    disk = os_disk(vm_size, aks_settings(osDiskSizeGb=size_gb))
    assert (disk["os_disk_type"], disk["os_disk_size_gb"]) == (expected, size_gb)
    assert os_disk(vm_size, aks_settings(osDiskSizeGb=size_gb, osDiskType="Managed"))["os_disk_type"] == "Managed"


def test_ephemeral_forced_on_a_size_that_cannot_hold_it_is_refused():
    text = mutate("prod", "aks.osDiskType", "Ephemeral")
    text = text.replace("vmSize: Standard_D8ds_v5", "vmSize: Standard_D8s_v5")
    lines = errors("prod", text)
    assert lines == [
        "Pulumi.prod.yaml: event-backbone:aks.userPools.user.vmSize cannot hold an ephemeral OS disk of"
        " aks.osDiskSizeGb 128 GiB (its cache/temp disk holds 0 GiB): lower aks.osDiskSizeGb or use osDiskType auto"
        " (got 'Standard_D8s_v5')"
    ]
    text = mutate("dev", "aks.osDiskType", "Ephemeral").replace("vmSize: Standard_D2ds_v5", "vmSize: Standard_X2")
    (line,) = errors("dev", text)
    assert line.startswith("Pulumi.dev.yaml: event-backbone:aks.systemPool.vmSize has unknown local disks")
    assert line.endswith("(got 'Standard_X2')")


def test_pools_carry_their_os_disk_and_host_encryption(stack):
    system = stack.inputs("containerservice:ManagedCluster")["agentPoolProfiles"][0]
    user = stack.inputs("containerservice:AgentPool", "user-pool")
    a = stack.settings.aks
    for pool, size in ((system, a.system_pool.vm_size), (user, a.user_pools["user"].vm_size)):
        assert pool["enableEncryptionAtHost"] is a.encryption_at_host
        fits = S.ephemeral_capacity_gb(size) or 0
        assert pool["osDiskType"] == ("Ephemeral" if fits >= a.os_disk_size_gb else "Managed")
        assert pool["osDiskSizeGB"] == a.os_disk_size_gb
    if stack.stack == "prod":  # D4ds_v5/D8ds_v5 hold the 128 GiB disk on their temp disk
        assert system["osDiskType"] == user["osDiskType"] == "Ephemeral"
        assert system["enableEncryptionAtHost"] is True


# ------------------------------------------------------------------ 6. egress
def test_egress_per_environment(stack):
    c = stack.inputs("containerservice:ManagedCluster")["networkProfile"]
    vnet = stack.inputs("network:VirtualNetwork", "vnet")
    aks_subnet = next(sn for sn in vnet["subnets"] if sn["name"] == "snet-aks-nodes")
    if stack.stack == "dev":  # the load balancer's outbound rules: nothing extra to pay for
        assert c["outboundType"] == "loadBalancer"
        assert stack.of_type("network:NatGateway") == [] and "natGateway" not in aks_subnet
        return
    assert c["outboundType"] == "userAssignedNATGateway"
    nat = stack.inputs("network:NatGateway")
    ips = by_name(stack, "network:PublicIPAddress")
    assert len(nat["publicIpAddresses"]) == len(ips) == stack.settings.network.nat_gateway_public_ips == 2
    assert all(ip["publicIPAllocationMethod"] == "Static" and ip["sku"]["name"] == "Standard" for ip in ips.values())
    assert all("zones" not in ip for ip in ips.values())  # no-zone IPs for the no-zone NAT gateway
    assert "/natGateways/" in aks_subnet["natGateway"]["id"]
    assert stack.one("network:NatGateway").urn in stack.one("network:VirtualNetwork", "vnet").dependencies


@pytest.fixture(scope="module")
def firewall_plan(tmp_path_factory):
    """dev with network.egress: firewall, planned under the mocks like `make plan`."""
    import json
    import subprocess
    import sys

    import yaml
    from conftest import ROOT

    out = tmp_path_factory.mktemp("firewall")
    text = mutate("dev", "network.egress", "firewall")
    doc = yaml.safe_load(text)
    doc["config"]["event-backbone:network"]["firewallSubnet"] = "10.40.19.0/26"  # clear of edge.subnet 10.40.18.0/24
    doc["config"]["event-backbone:registry"]["sku"] = "Premium"
    (out / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "dryrun", "dev", "--stack-file", str(out / "Pulumi.dev.yaml"), "--out", str(out / "b")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "b" / "plan.json").read_text())
    # by name; the firewall's public IP (also named "firewall") is found by its type
    return {
        r["name"]: r
        for r in doc["resources"]
        if r["type"].startswith("azure-native:") and r["type"] != "azure-native:network:PublicIPAddress"
    }


def test_firewall_egress_routes_everything_through_the_firewall(firewall_plan):
    res = firewall_plan
    assert res["cluster"]["inputs"]["networkProfile"]["outboundType"] == "userDefinedRouting"
    (route,) = res["route-table"]["inputs"]["routes"]
    assert (route["addressPrefix"], route["nextHopType"]) == ("0.0.0.0/0", "VirtualAppliance")
    assert route["nextHopIpAddress"] == "10.40.19.4"  # first usable address of AzureFirewallSubnet
    subnets = {sn["name"]: sn for sn in res["vnet"]["inputs"]["subnets"]}
    assert subnets["AzureFirewallSubnet"]["addressPrefix"] == "10.40.19.0/26"
    assert "/routeTables/" in subnets["snet-aks-nodes"]["routeTable"]["id"]
    assert res["route-table"]["urn"] in res["vnet"]["dependencies"]
    fw = res["firewall"]["inputs"]
    assert fw["ipConfigurations"][0]["subnet"]["id"].endswith("/subnets/AzureFirewallSubnet")
    assert res["firewall"]["urn"] in res["cluster"]["dependencies"]
    rules = {
        rule["name"]: rule
        for collection in res["firewall-rules"]["inputs"]["ruleCollections"]
        for rule in collection["rules"]
    }
    assert rules["aks"]["fqdnTags"] == ["AzureKubernetesService"]
    assert set(rules) >= {"registry", "mcr", "entra-id", "key-vault", "azure-monitor"}
    login, data = rules["registry"]["targetFqdns"]
    assert login.endswith(".azurecr.io") and data == login.replace(".azurecr.io", ".westeurope.data.azurecr.io")
    assert res["registry"]["inputs"]["dataEndpointEnabled"] is True
    assert "login.microsoftonline.com" in rules["entra-id"]["targetFqdns"]
    assert all(rule["sourceAddresses"] == ["10.40.0.0/20"] for rule in rules.values())
    assert res["firewall-policy"]["inputs"]["threatIntelMode"] == "Deny"


@pytest.mark.parametrize(
    "changes,expected",
    [
        (
            {"egress": "firewall"},
            [
                "event-backbone:network.firewallSubnet is required when network.egress is 'firewall'"
                " (the AzureFirewallSubnet, /26 or larger)"
            ],
        ),
        (
            {"egress": "firewall", "firewallSubnet": "10.40.16.0/26"},
            ["event-backbone:network.firewallSubnet must not overlap network.postgresSubnet 10.40.16.0/24"],
        ),
        (
            {"egress": "firewall", "firewallSubnet": "10.99.0.0/26"},
            ["event-backbone:network.firewallSubnet must lie inside network.addressSpace 10.40.0.0/16"],
        ),
        (
            {"egress": "firewall", "firewallSubnet": "10.40.19.0/27"},
            ["event-backbone:network.firewallSubnet must be /26 or larger (Azure Firewall's AzureFirewallSubnet)"],
        ),
        (
            {"firewallSubnet": "10.40.19.0/26"},
            ["event-backbone:network.firewallSubnet is only used when network.egress is 'firewall'"],
        ),
        (
            {"egress": "firewall", "firewallSubnet": "10.40.18.0/26"},
            ["event-backbone:network.firewallSubnet must not overlap edge.subnet 10.40.18.0/24"],
        ),
        ({"egress": "proxy"}, ["event-backbone:network.egress must be one of 'loadBalancer', 'natGateway' or"]),
    ],
)
def test_egress_settings_are_validated(changes, expected):
    import yaml

    doc = yaml.safe_load(mutate("dev", "registry.sku", "Premium"))
    doc["config"]["event-backbone:network"].update(changes)
    lines = errors("dev", yaml.safe_dump(doc))
    assert len(lines) == len(expected), lines
    for line, want in zip(lines, expected, strict=True):
        assert line.startswith("Pulumi.dev.yaml: " + want), line


def test_firewall_egress_needs_a_premium_registry():
    import yaml

    doc = yaml.safe_load(mutate("dev", "network.egress", "firewall"))
    doc["config"]["event-backbone:network"]["firewallSubnet"] = "10.40.19.0/26"  # clear of edge.subnet 10.40.18.0/24
    assert errors("dev", yaml.safe_dump(doc)) == [
        "Pulumi.dev.yaml: event-backbone:registry.sku must be 'Premium' when network.egress is 'firewall' (the"
        " firewall allows the registry's dedicated data endpoint, a Premium feature) (got 'Standard')"
    ]


def test_prod_needs_static_egress():
    assert errors("prod", mutate("prod", "network.egress", "loadBalancer")) == [
        "Pulumi.prod.yaml: event-backbone:network.egress must be 'natGateway' or 'firewall' in prod"
        " (static, known egress IPs) (got 'loadBalancer')"
    ]


# ------------------------------------------------------------------ 7. budget
def test_budget_on_the_resource_group_alerts_the_action_group(stack):
    budget = stack.inputs("consumption:Budget")
    b = stack.settings.budget
    assert budget["amount"] == b.amount == (1000 if stack.stack == "prod" else 200)
    assert (budget["category"], budget["timeGrain"]) == ("Cost", "Monthly")
    assert budget["scope"].endswith(
        f"/resourceGroups/{stack.inputs('resources:ResourceGroup', 'rg')['resourceGroupName']}"
    )
    start = budget["timePeriod"]["startDate"]
    assert start.endswith("-01T00:00:00Z") and start.startswith(b.start_date.isoformat()[:8])
    notes = {(n["thresholdType"], n["threshold"]) for n in budget["notifications"].values()}
    assert notes == {("Actual", 80), ("Actual", 100), ("Forecasted", 110)}
    group = stack.one("monitor:ActionGroup", "cost-action-group")
    assert group.urn in stack.one("consumption:Budget").dependencies
    for n in budget["notifications"].values():
        assert n["enabled"] is True and n["operator"] == "GreaterThanOrEqualTo"
        assert n["contactEmails"] == b.contact_emails and len(n["contactGroups"]) == 1
    ag = stack.inputs("monitor:ActionGroup", "cost-action-group")
    assert [r["emailAddress"] for r in ag["emailReceivers"]] == b.contact_emails
    assert len(ag["groupShortName"]) <= 12
    if stack.stack == "prod":
        (hook,) = ag["webhookReceivers"]
        assert hook["name"] == "on-call" and hook["useCommonAlertSchema"] is True
        assert has_secret(group.inputs["webhookReceivers"])  # the URL carries the integration key
    else:
        assert "webhookReceivers" not in ag


@pytest.mark.parametrize(
    "stack,key,value,expected",
    [
        (
            "dev",
            "budget.startDate",
            "2026-12-15",
            "Pulumi.dev.yaml: event-backbone:budget.startDate must be the first day of a month (YYYY-MM-01)"
            " (got '2026-12-15')",
        ),
        ("prod", "budget.contactEmails", [], "Pulumi.prod.yaml: event-backbone:budget.contactEmails must list"),
        ("dev", "budget.amount", 5, "Pulumi.dev.yaml: event-backbone:budget.amount must be between 10 and"),
    ],
)
def test_budget_settings_are_validated(stack, key, value, expected):
    (line,) = errors(stack, mutate(stack, key, value))
    assert line.startswith(expected), line


def test_prod_budget_needs_the_oncall_webhook():
    assert errors("prod", mutate("prod", "budget.oncallWebhookUrl", delete=True)) == [
        "Pulumi.prod.yaml: event-backbone:budget.oncallWebhookUrl is required in prod"
        " (a secure value: pulumi config set --secret --path ...)"
    ]


# ------------------------------------------------------------------ 8. Azure Policy assignments
def test_policy_assignments_at_cluster_scope(stack):
    import re

    assignments = by_name(stack, "authorization:PolicyAssignment")
    assert set(assignments) == {
        "pod-security",
        "allowed-images",
        "signed-images",
    }  # the last: tests/test_image_policies.py
    assignments.pop("signed-images")
    cluster = stack.one("containerservice:ManagedCluster")
    for name, a in assignments.items():
        assert "/managedClusters/" in a["scope"], name
        assert cluster.urn in stack.one("authorization:PolicyAssignment", name).dependencies
        excluded = a["parameters"]["excludedNamespaces"]["value"]
        assert {"kube-system", "gatekeeper-system"} <= set(excluded)
    pod = assignments["pod-security"]
    assert pod["policyDefinitionId"].endswith(
        {"baseline": "a8640138-9b0a-4a28-b8cb-1666c838647d", "restricted": "42b8ef37-b724-4e24-bbc8-7a7708edfe00"}[
            stack.settings.aks.azure_policy.pod_security
        ]
    )
    assert pod["parameters"]["effect"]["value"] == ("Deny" if stack.stack == "prod" else "Audit")
    images = assignments["allowed-images"]
    assert images["policyDefinitionId"].endswith("/policyDefinitions/febd0533-8e55-448f-b837-bd0e06f16469")
    regex = re.compile(images["parameters"]["allowedContainerImagesRegex"]["value"])
    acr = f"{stack.settings.name_prefix}{stack.stack}acr"
    suffix = regex.pattern.split(acr, 1)[1].split("\\.azurecr", 1)[0]
    ok = [f"{acr}{suffix}.azurecr.io/docker/library/rabbitmq:4.1", "mcr.microsoft.com/oss/kubernetes/pause:3.6"]
    bad = [
        "docker.io/library/rabbitmq:4.1",
        "quay.io/prometheus/prometheus:v3",
        f"{acr}{suffix}.azurecr.io.evil.example/x:1",
        f"evil.example/{acr}{suffix}.azurecr.io/x:1",
        "mcr.microsoft.com.evil.example/x:1",
    ]
    assert all(regex.match(i) for i in ok) and not any(regex.match(i) for i in bad)


def test_prod_pod_security_must_deny():
    assert errors("prod", mutate("prod", "aks.azurePolicy.effect", "Audit")) == [
        "Pulumi.prod.yaml: event-backbone:aks.azurePolicy.effect must be 'Deny' in prod (got 'Audit')"
    ]


def test_prod_allowed_images_must_deny(stack):
    effect = by_name(stack, "authorization:PolicyAssignment")["allowed-images"]["parameters"]["effect"]["value"]
    assert effect == ("Deny" if stack.stack == "prod" else "Audit")
    assert errors("prod", mutate("prod", "aks.azurePolicy.allowedImagesEffect", "Audit")) == [
        "Pulumi.prod.yaml: event-backbone:aks.azurePolicy.allowedImagesEffect must be 'Deny' in prod (got 'Audit')"
    ]


# ------------------------------------------------------------------ 9. registry
def test_registry_per_environment(stack):
    acr = stack.inputs("containerregistry:Registry")
    assert acr["adminUserEnabled"] is False and acr["anonymousPullEnabled"] is False
    assert acr["registryName"].isalnum()
    pe = [r for r in stack.of_type("network:PrivateEndpoint") if r.name == "registry-pe"]
    if stack.stack == "dev":  # Standard: no private endpoint or network rules (cheaper profile)
        assert acr["sku"]["name"] == "Standard" and pe == [] and acr["publicNetworkAccess"] == "Enabled"
        return
    assert acr["sku"]["name"] == "Premium"
    assert acr["publicNetworkAccess"] == "Disabled"
    assert acr["networkRuleSet"]["defaultAction"] == "Deny"
    assert acr["zoneRedundancy"] == "Enabled" and acr["dataEndpointEnabled"] is True
    assert acr["policies"]["exportPolicy"]["status"] == "disabled"
    (endpoint,) = pe
    conn = stack.inputs("network:PrivateEndpoint", "registry-pe")["privateLinkServiceConnections"][0]
    assert conn["groupIds"] == ["registry"]
    assert stack.one("containerregistry:Registry").urn in endpoint.dependencies
    zone = stack.inputs("network:PrivateDnsZoneGroup", "registry-pe-dns")["privateDnsZoneConfigs"][0]
    zones = {r.name: stack.inputs("privatedns:PrivateZone", r.name) for r in stack.of_type("privatedns:PrivateZone")}
    assert zones["dns-registry"]["privateZoneName"] == "privatelink.azurecr.io"
    assert zone["privateDnsZoneId"].endswith("/privatelink.azurecr.io")
    assert stack.one("containerregistry:Registry").protect is True


def test_kubelet_identity_pulls_from_the_registry(stack):
    from components import rbac

    grant = stack.inputs("authorization:RoleAssignment", "kubelet-acr-pull")
    assert grant["roleDefinitionId"].endswith(f"/roleDefinitions/{rbac.ACR_PULL}")
    assert "/microsoft.containerregistry/" in grant["scope"].lower()  # the registry (mock ids pluralise naively)
    assert (
        stack.one("containerregistry:Registry").urn
        in stack.one("authorization:RoleAssignment", "kubelet-acr-pull").dependencies
    )
    kubelet = stack.inputs("managedidentity:UserAssignedIdentity", "kubelet-identity")
    profile = stack.inputs("containerservice:ManagedCluster")["identityProfile"]["kubeletidentity"]
    assert profile["resourceId"].endswith(f"/{kubelet['resourceName']}")
    assert grant["principalId"] == profile["objectId"]
    operator = stack.inputs("authorization:RoleAssignment", "control-plane-assigns-kubelet-identity")
    assert operator["roleDefinitionId"].endswith(f"/roleDefinitions/{rbac.MANAGED_IDENTITY_OPERATOR}")


def test_cache_rules_cover_the_upstreams(stack):
    rules = {
        r["sourceRepository"]: r["targetRepository"] for r in by_name(stack, "containerregistry:CacheRule").values()
    }
    assert rules == {
        "docker.io/*": "docker/*",
        "quay.io/*": "quay/*",
        "ghcr.io/*": "ghcr/*",
        "registry.k8s.io/*": "k8s/*",
    }


@pytest.mark.parametrize(
    "image,expected",
    [
        ("rabbitmq:4.1-management", "acr.azurecr.io/docker/library/rabbitmq:4.1-management"),
        ("rabbitmqoperator/cluster-operator:2.12", "acr.azurecr.io/docker/rabbitmqoperator/cluster-operator:2.12"),
        ("quay.io/prometheus/prometheus:v3.1.0", "acr.azurecr.io/quay/prometheus/prometheus:v3.1.0"),
        (
            "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2",
            "acr.azurecr.io/k8s/kube-state-metrics/kube-state-metrics:v2",
        ),
        ("acr.azurecr.io/docker/library/busybox:1", "acr.azurecr.io/docker/library/busybox:1"),
    ],
)
def test_cached_image_references(image, expected):
    from components.registry import cached_image

    assert cached_image(image, "acr.azurecr.io") == expected


def test_uncached_upstream_is_refused():
    from components.registry import cached_image

    with pytest.raises(ValueError, match="evil.example is not an upstream"):
        cached_image("evil.example/x:1", "acr.azurecr.io")


def test_registry_settings_are_validated():
    assert errors("prod", mutate("prod", "registry.sku", "Standard")) == [
        "Pulumi.prod.yaml: event-backbone:registry.sku must be 'Premium' in prod (private endpoint) (got 'Standard')"
    ]
    assert errors("dev", mutate("dev", "registry.allowedIpRanges", ["203.0.113.0/24"])) == [
        "Pulumi.dev.yaml: event-backbone:registry.allowedIpRanges needs registry.sku Premium (network rules are a"
        ' Premium feature) (got ["203.0.113.0/24"])'
    ]


def test_pod_security_exempts_only_the_host_reading_namespace(stack):
    pod = stack.inputs("authorization:PolicyAssignment", "pod-security")["parameters"]["excludedNamespaces"]["value"]
    images = stack.inputs("authorization:PolicyAssignment", "allowed-images")["parameters"]["excludedNamespaces"]
    from components.render.helm_values import NODE_EXPORTER_NAMESPACE

    host_reader = NODE_EXPORTER_NAMESPACE  # the node exporter alone; the rest of monitoring enforces baseline
    assert host_reader in pod and host_reader not in images["value"]
    assert stack.settings.observability.namespace not in pod
    assert set(pod) - {host_reader} == set(images["value"]) == set(stack.settings.aks.azure_policy.excluded_namespaces)


def test_every_namespace_the_stack_creates_carries_pod_security_labels(stack):
    namespaces = [r for r in stack.result.registrations if r.type == "kubernetes:core/v1:Namespace"]
    assert len(namespaces) >= 3
    for ns in namespaces:
        from conftest import unwrap

        labels = unwrap(ns.inputs)["metadata"]["labels"]
        assert labels.get("pod-security.kubernetes.io/enforce") in ("privileged", "baseline", "restricted"), ns.urn
        assert "pod-security.kubernetes.io/warn" in labels, ns.urn
