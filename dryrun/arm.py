"""ARM export of the recorded plan (build/<stack>/arm/template.json), for Checkov's arm framework.

Pulumi's azure-native inputs are the ARM request body *flattened*: the resource's path
parameters (``resourceGroupName``, ``vaultName``, ``scope``...) sit next to its envelope
(``location``, ``tags``, ``sku``, ``identity``, ``zones``...) and, for most types, next to
what ARM nests under ``properties``. ``TYPES`` says, per Pulumi type, which ARM type it is,
which inputs form its (possibly nested, ``parent/child``) name, which input is an extension
resource's scope and which keys ARM keeps outside ``properties``. The API version is the one
the installed SDK module was generated from (read from the resource class's docstring).

Secrets: a value the program marked secret never appears; each string inside it becomes a
``securestring`` template parameter (numbers and booleans, e.g. a secret's expiry, and the
keys in ``_SECRET_METADATA`` are kept: they are not credential material). Unknown values
(``[unknown]``: outputs only known after a real deployment) become ``string`` parameters.
Strings starting with ``[`` are escaped (``[[``) so ARM does not read them as expressions.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pulumi.runtime import rpc

SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
# What ARM keeps outside `properties` for most resource types.
ENVELOPE = frozenset({"location", "tags", "sku", "identity", "zones", "kind", "plan", "extendedLocation", "etag"})
_SECRET_METADATA = frozenset({"contentType"})


@dataclass(frozen=True)
class ArmType:
    arm_type: str
    name_keys: tuple[str, ...]  # inputs that form the ARM name, outermost first ("vault/secret")
    scope_key: str | None = None  # extension resources: the input holding the target resource ID
    envelope: frozenset[str] = ENVELOPE
    type_key: str | None = None  # an input that completes the ARM type ("{}" in arm_type), e.g. a DNS record type
    path_keys: tuple[str, ...] | None = None  # other URL path parameters (dropped); default: resourceGroupName,
    # or nothing for extension resources (scope_key set)

    @property
    def dropped(self) -> tuple[str, ...]:
        if self.path_keys is not None:
            return self.path_keys
        return () if self.scope_key else ("resourceGroupName",)


def _without(*keys: str) -> frozenset[str]:
    return ENVELOPE - set(keys)


TYPES: dict[str, ArmType] = {
    t.split(" ")[0]: spec
    for t, spec in {
        "azure-native:authorization:RoleAssignment": ArmType(
            "Microsoft.Authorization/roleAssignments", ("roleAssignmentName",), "scope"
        ),
        "azure-native:authorization:PolicyAssignment": ArmType(
            "Microsoft.Authorization/policyAssignments", ("policyAssignmentName",), "scope"
        ),
        # a subscription-level definition (the signed-images policy, components/images.py)
        "azure-native:authorization:PolicyDefinition": ArmType(
            "Microsoft.Authorization/policyDefinitions", ("policyDefinitionName",), path_keys=()
        ),
        "azure-native:authorization:RoleDefinition": ArmType(
            "Microsoft.Authorization/roleDefinitions", ("roleDefinitionId",), "scope"
        ),
        # a generic resource: its ARM type and API version are its own inputs (generic_resource)
        "azure-native:resources:Resource": ArmType("{}/{}", ("resourceName",)),
        "azure-native:authorization:ManagementLockAtResourceGroupLevel": ArmType(
            "Microsoft.Authorization/locks", ("lockName",)
        ),
        "azure-native:authorization:ManagementLockByScope": ArmType(
            "Microsoft.Authorization/locks", ("lockName",), "scope"
        ),
        "azure-native:consumption:Budget": ArmType("Microsoft.Consumption/budgets", ("budgetName",), "scope"),
        "azure-native:containerregistry:Registry": ArmType("Microsoft.ContainerRegistry/registries", ("registryName",)),
        "azure-native:containerregistry:CacheRule": ArmType(
            "Microsoft.ContainerRegistry/registries/cacheRules", ("registryName", "cacheRuleName")
        ),
        "azure-native:containerservice:ManagedCluster": ArmType(
            "Microsoft.ContainerService/managedClusters", ("resourceName",)
        ),
        "azure-native:containerservice:AgentPool": ArmType(
            "Microsoft.ContainerService/managedClusters/agentPools",
            ("resourceName", "agentPoolName"),
            envelope=frozenset(),
        ),
        "azure-native:containerservice:MaintenanceConfiguration": ArmType(
            "Microsoft.ContainerService/managedClusters/maintenanceConfigurations", ("resourceName", "configName")
        ),
        "azure-native:dbforpostgresql:Server": ArmType("Microsoft.DBforPostgreSQL/flexibleServers", ("serverName",)),
        "azure-native:dbforpostgresql:Configuration": ArmType(
            "Microsoft.DBforPostgreSQL/flexibleServers/configurations", ("serverName", "configurationName")
        ),
        "azure-native:dbforpostgresql:Database": ArmType(
            "Microsoft.DBforPostgreSQL/flexibleServers/databases", ("serverName", "databaseName")
        ),
        "azure-native:dbforpostgresql:VirtualEndpoint": ArmType(
            "Microsoft.DBforPostgreSQL/flexibleServers/virtualendpoints", ("serverName", "virtualEndpointName")
        ),
        "azure-native:dbforpostgresql:Administrator": ArmType(
            "Microsoft.DBforPostgreSQL/flexibleServers/administrators", ("serverName", "objectId")
        ),
        "azure-native:dbforpostgresql:AdministratorsMicrosoftEntra": ArmType(
            "Microsoft.DBforPostgreSQL/flexibleServers/administrators", ("serverName", "objectId")
        ),
        "azure-native:keyvault:Vault": ArmType("Microsoft.KeyVault/vaults", ("vaultName",)),
        "azure-native:keyvault:Secret": ArmType("Microsoft.KeyVault/vaults/secrets", ("vaultName", "secretName")),
        "azure-native:managedidentity:UserAssignedIdentity": ArmType(
            "Microsoft.ManagedIdentity/userAssignedIdentities", ("resourceName",)
        ),
        "azure-native:managedidentity:FederatedIdentityCredential": ArmType(
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
            ("resourceName", "federatedIdentityCredentialResourceName"),
        ),
        "azure-native:monitor:DiagnosticSetting": ArmType(
            "Microsoft.Insights/diagnosticSettings", ("name",), "resourceUri"
        ),
        "azure-native:monitor:ActionGroup": ArmType("Microsoft.Insights/actionGroups", ("actionGroupName",)),
        "azure-native:monitor:MetricAlert": ArmType("Microsoft.Insights/metricAlerts", ("ruleName",)),
        "azure-native:redisenterprise:RedisEnterprise": ArmType("Microsoft.Cache/redisEnterprise", ("clusterName",)),
        "azure-native:redisenterprise:Database": ArmType(
            "Microsoft.Cache/redisEnterprise/databases", ("clusterName", "databaseName")
        ),
        "azure-native:redisenterprise:AccessPolicyAssignment": ArmType(
            "Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments",
            ("clusterName", "databaseName", "accessPolicyAssignmentName"),
        ),
        "azure-native:monitor:AzureMonitorWorkspace": ArmType(
            "Microsoft.Monitor/accounts", ("azureMonitorWorkspaceName",)
        ),
        "azure-native:alertsmanagement:PrometheusRuleGroup": ArmType(
            "Microsoft.AlertsManagement/prometheusRuleGroups", ("ruleGroupName",)
        ),
        "azure-native:monitor:DataCollectionEndpoint": ArmType(
            "Microsoft.Insights/dataCollectionEndpoints", ("dataCollectionEndpointName",)
        ),
        "azure-native:monitor:DataCollectionRule": ArmType(
            "Microsoft.Insights/dataCollectionRules", ("dataCollectionRuleName",)
        ),
        "azure-native:operationalinsights:Table": ArmType(
            "Microsoft.OperationalInsights/workspaces/tables", ("workspaceName", "tableName")
        ),
        "azure-native:network:VirtualNetwork": ArmType("Microsoft.Network/virtualNetworks", ("virtualNetworkName",)),
        "azure-native:network:VirtualNetworkPeering": ArmType(
            "Microsoft.Network/virtualNetworks/virtualNetworkPeerings",
            ("virtualNetworkName", "virtualNetworkPeeringName"),
        ),
        "azure-native:network:Subnet": ArmType(
            "Microsoft.Network/virtualNetworks/subnets", ("virtualNetworkName", "subnetName")
        ),
        "azure-native:network:NetworkSecurityGroup": ArmType(
            "Microsoft.Network/networkSecurityGroups", ("networkSecurityGroupName",)
        ),
        "azure-native:network:PrivateEndpoint": ArmType("Microsoft.Network/privateEndpoints", ("privateEndpointName",)),
        "azure-native:network:PrivateDnsZoneGroup": ArmType(
            "Microsoft.Network/privateEndpoints/privateDnsZoneGroups",
            ("privateEndpointName", "privateDnsZoneGroupName"),
        ),
        "azure-native:network:NatGateway": ArmType("Microsoft.Network/natGateways", ("natGatewayName",)),
        "azure-native:network:PublicIPAddress": ArmType(
            "Microsoft.Network/publicIPAddresses", ("publicIpAddressName",)
        ),
        "azure-native:network:PublicIPPrefix": ArmType("Microsoft.Network/publicIPPrefixes", ("publicIpPrefixName",)),
        "azure-native:network:RouteTable": ArmType("Microsoft.Network/routeTables", ("routeTableName",)),
        # Azure Firewall and firewall policies keep their sku inside properties.
        "azure-native:network:AzureFirewall": ArmType(
            "Microsoft.Network/azureFirewalls", ("azureFirewallName",), envelope=_without("sku")
        ),
        "azure-native:network:FirewallPolicy": ArmType(
            "Microsoft.Network/firewallPolicies", ("firewallPolicyName",), envelope=_without("sku")
        ),
        "azure-native:network:FirewallPolicyRuleCollectionGroup": ArmType(
            "Microsoft.Network/firewallPolicies/ruleCollectionGroups", ("firewallPolicyName", "ruleCollectionGroupName")
        ),
        # A Log Analytics workspace keeps its sku inside properties.
        "azure-native:operationalinsights:Workspace": ArmType(
            "Microsoft.OperationalInsights/workspaces", ("workspaceName",), envelope=_without("sku")
        ),
        "azure-native:privatedns:PrivateZone": ArmType("Microsoft.Network/privateDnsZones", ("privateZoneName",)),
        "azure-native:privatedns:VirtualNetworkLink": ArmType(
            "Microsoft.Network/privateDnsZones/virtualNetworkLinks", ("privateZoneName", "virtualNetworkLinkName")
        ),
        "azure-native:dns:Zone": ArmType("Microsoft.Network/dnsZones", ("zoneName",)),
        "azure-native:dns:RecordSet": ArmType(
            "Microsoft.Network/dnsZones/{}", ("zoneName", "relativeRecordSetName"), type_key="recordType"
        ),
        "azure-native:network:WebApplicationFirewallPolicy": ArmType(
            "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies", ("policyName",)
        ),
        "azure-native:servicenetworking:TrafficControllerInterface": ArmType(
            "Microsoft.ServiceNetworking/trafficControllers", ("trafficControllerName",)
        ),
        "azure-native:servicenetworking:AssociationsInterface": ArmType(
            "Microsoft.ServiceNetworking/trafficControllers/associations", ("trafficControllerName", "associationName")
        ),
        "azure-native:servicenetworking:FrontendsInterface": ArmType(
            "Microsoft.ServiceNetworking/trafficControllers/frontends", ("trafficControllerName", "frontendName")
        ),
        "azure-native:servicenetworking:SecurityPoliciesInterface": ArmType(
            "Microsoft.ServiceNetworking/trafficControllers/securityPolicies",
            ("trafficControllerName", "securityPolicyName"),
        ),
        "azure-native:security:AdvancedThreatProtection": ArmType(
            "Microsoft.Security/advancedThreatProtectionSettings", ("settingName",), "resourceId"
        ),
        "azure-native:security:Pricing": ArmType("Microsoft.Security/pricings", ("pricingName",), "scopeId"),
    }.items()
}

# Where the SDK's property name is the spec's x-ms-client-name, not the wire name ARM uses:
# type -> {path of the SDK name in the ARM resource: wire name}. Key Vault secret attributes:
# azure-rest-api-specs keyvault secrets.json `Attributes.exp` / `Attributes.nbf`; DNS record sets:
# dns.json `RecordSetProperties` (TTL, ARecords, CNAMERecord, ...).
RENAMES: dict[str, dict[tuple[str, ...], str]] = {
    "azure-native:dns:RecordSet": {
        ("properties", sdk): wire
        for sdk, wire in {
            "ttl": "TTL",
            "aRecords": "ARecords",
            "aaaaRecords": "AAAARecords",
            "cnameRecord": "CNAMERecord",
            "mxRecords": "MXRecords",
            "nsRecords": "NSRecords",
            "ptrRecords": "PTRRecords",
            "soaRecord": "SOARecord",
            "srvRecords": "SRVRecords",
            "txtRecords": "TXTRecords",
        }.items()
    },
    "azure-native:keyvault:Secret": {
        ("properties", "attributes", "expires"): "exp",
        ("properties", "attributes", "notBefore"): "nbf",
    },
}

# Recorded azure-native types that are deliberately not template resources, with the reason.
NOT_IN_TEMPLATE: dict[str, str] = {
    "azure-native:resources:ResourceGroup": "the template is deployed into the resource group (subscription scope)",
}


_API_VERSION = re.compile(r"Uses Azure REST API version (\d{4}-\d{2}-\d{2}(?:-preview)?)")


def _class_source(cls: type) -> str:
    """The text of ``cls``'s top-level ``class`` statement in its module's file: from its line to
    the next top-level ``class``. inspect.getsource(cls) finds the same lines by parsing the whole
    module (an AST walk per class: ~10 ms for an azure-native module); this is a text search."""
    path = inspect.getsourcefile(cls)
    text = open(path, encoding="utf-8").read() if path else ""
    start = re.search(rf"^class {re.escape(cls.__name__)}\b", text, re.MULTILINE)
    if not start:
        return inspect.getsource(cls)
    end = re.compile(r"^class ", re.MULTILINE).search(text, start.end())
    return text[start.start() : end.start() if end else len(text)]


@functools.cache
def api_version(type_token: str) -> str:
    """The Azure REST API version the installed SDK module was generated from, e.g.
    ``azure-native:keyvault:Vault`` -> ``2024-11-01`` (from pulumi_azure_native.keyvault.Vault)."""
    _, module, kind = type_token.split(":")
    cls = getattr(importlib.import_module(f"pulumi_azure_native.{module}"), kind)
    found = _API_VERSION.search(_class_source(cls))
    if not found:
        raise LookupError(f"{type_token}: no API version in the SDK's docstring")
    return found.group(1)


@dataclass
class _Parameters:
    """Template parameters standing in for secret and unknown values."""

    parameters: dict[str, dict] = field(default_factory=dict)

    def add(self, kind: str, where: str) -> str:
        name = f"{kind}{sum(1 for p in self.parameters if p.startswith(kind)) + 1}"
        arm_type = "securestring" if kind == "secret" else "string"
        self.parameters[name] = {"type": arm_type, "metadata": {"description": where}}
        return f"[parameters('{name}')]"


def _value(value: Any, params: _Parameters, where: str, secret: bool = False, key: str = "") -> Any:
    if rpc.is_rpc_secret(value):
        return _value(value["value"], params, where, True, key)
    if isinstance(value, dict):
        return {k: _value(v, params, f"{where}.{k}", secret, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_value(v, params, f"{where}[{i}]", secret, key) for i, v in enumerate(value)]
    if value == rpc.UNKNOWN:
        return params.add("unknown", where)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        if secret and key not in _SECRET_METADATA:
            return params.add("secret", where)
        return "[" + value if value.startswith("[") else value
    return value


def _identity(identity: Any) -> Any:
    """The SDK takes user-assigned identities as a list of IDs; ARM as a map ID -> {}."""
    if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
        return {**identity, "userAssignedIdentities": {i: {} for i in identity["userAssignedIdentities"]}}
    return identity


def _plain(value: Any) -> Any:
    """A path parameter's value with secret wrappers removed (names are never secret)."""
    return value["value"] if rpc.is_rpc_secret(value) else value


def _rename(node: Any, path: tuple[str, ...], wire: str) -> None:
    *parents, last = path
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
        if rpc.is_rpc_secret(node):
            node = node["value"]
    if isinstance(node, dict) and last in node:
        node[wire] = node.pop(last)


def arm_resource(type_token: str, name: str, inputs: dict, params: _Parameters) -> dict:
    """One recorded azure-native registration as an ARM template resource."""
    spec = TYPES[type_token]
    body = dict(inputs)
    segments = [str(_plain(body.pop(k))) if k in body else name for k in spec.name_keys]
    for key in spec.dropped:
        body.pop(key, None)
    scope = _plain(body.pop(spec.scope_key, None)) if spec.scope_key else None
    arm_type = spec.arm_type.format(_plain(body.pop(spec.type_key))) if spec.type_key else spec.arm_type
    resource: dict[str, Any] = {
        "type": arm_type,
        "apiVersion": api_version(type_token),
        "name": "/".join(segments),
    }
    if scope is not None:
        resource["scope"] = scope
    for key in sorted(spec.envelope & set(body)):
        resource[key] = body.pop(key)
    if "identity" in resource:
        resource["identity"] = _identity(_plain(resource["identity"]))
    properties = body.pop("properties", None) or {}
    if rpc.is_rpc_secret(properties):
        if not isinstance(properties["value"], dict):
            raise ValueError(f"{type_token} {name}: secret `properties` that is not an object")
        # `properties` recorded as one secret object: keep its keys, each value still secret.
        properties = {k: {**properties, "value": v} for k, v in properties["value"].items()}
    props = {**properties, **body}
    resource["properties"] = props
    for path, wire in RENAMES.get(type_token, {}).items():
        _rename(resource, path, wire)
    where = f"{type_token} {name}"
    return {k: _value(v, params, f"{where}: {k}") for k, v in resource.items()}


GENERIC = "azure-native:resources:Resource"  # any ARM type at an API version the program names


def generic_resource(name: str, inputs: dict, params: _Parameters) -> dict:
    """A generic resource (e.g. the build registry at API 2025-11-01): its ARM type and API
    version are its own inputs."""
    body = dict(inputs)
    namespace, rtype = _plain(body.pop("resourceProviderNamespace")), _plain(body.pop("resourceType"))
    parent = _plain(body.pop("parentResourcePath", "")) or ""
    resource: dict[str, Any] = {
        "type": f"{namespace}/{parent + '/' if parent else ''}{rtype}",
        "apiVersion": _plain(body.pop("apiVersion")),
        "name": str(_plain(body.pop("resourceName", name))),
    }
    body.pop("resourceGroupName", None)
    for key in sorted(ENVELOPE & set(body)):
        resource[key] = body.pop(key)
    resource["properties"] = {**(body.pop("properties", None) or {}), **body}
    where = f"{GENERIC} {name}"
    return {k: _value(v, params, f"{where}: {k}") for k, v in resource.items()}


@dataclass
class Export:
    template: dict
    # resource key as Checkov names it ("<ARM type>.<name>") -> the Pulumi URNs it came from (several
    # when extension resources share a name, e.g. one diagnostic setting name on several scopes)
    urns: dict[str, list[str]]
    unmapped: list[str]


def export(registrations: Iterable[Any], stack: str) -> Export:
    """The ARM template of a plan's azure-native registrations (objects with type, name, urn,
    dependencies and inputs, e.g. dryrun.mocks.Registration)."""
    params = _Parameters()
    resources: list[tuple[Any, dict]] = []
    urns: dict[str, list[str]] = {}
    ids: dict[str, str] = {}
    unmapped: list[str] = []
    regs = [r for r in registrations if r.type.startswith("azure-native:")]
    for reg in regs:
        if reg.type in NOT_IN_TEMPLATE:
            continue
        if reg.type == GENERIC:
            res = generic_resource(reg.name, copy.deepcopy(reg.inputs), params)
            urns.setdefault(f"{res['type']}.{res['name']}", []).append(reg.urn)
            ids[reg.urn] = f"[resourceId('{res['type']}', '{res['name']}')]"
            resources.append((reg, res))
            continue
        if reg.type not in TYPES:
            unmapped.append(reg.type)
            continue
        res = arm_resource(reg.type, reg.name, copy.deepcopy(reg.inputs), params)
        key = f"{res['type']}.{res['name']}"
        urns.setdefault(key, []).append(reg.urn)
        if "scope" not in res:
            segs = ", ".join(f"'{s}'" for s in res["name"].split("/"))
            ids[reg.urn] = f"[resourceId('{res['type']}', {segs})]"
        resources.append((reg, res))
    out = []
    for reg, res in resources:
        depends = sorted({ids[d] for d in reg.dependencies if d in ids and d != reg.urn})
        if depends:
            res["dependsOn"] = depends
        out.append(res)
    template = {
        "$schema": SCHEMA,
        "contentVersion": "1.0.0.0",
        "metadata": {
            "generator": "event-backbone dryrun.arm (from the recorded plan)",
            "stack": stack,
            "unmapped": sorted(set(unmapped)),
            "notInTemplate": sorted(
                {f"{t}: {NOT_IN_TEMPLATE[t]}" for t in (r.type for r in regs) if t in NOT_IN_TEMPLATE}
            ),
        },
        "parameters": params.parameters,
        "resources": out,
    }
    return Export(template, urns, sorted(set(unmapped)))
