"""Recording mocks: Pulumi's MockMonitor, plus a record of every registration.

What the engine would receive is what we record: the type, logical name, parent,
dependencies, ``protect`` flag and the inputs in engine (camelCase) names, with secrets
still wrapped so that they can be redacted exactly.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from pulumi.runtime import mocks as pmocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
TENANT = "11111111-1111-1111-1111-111111111111"
DEPLOYER_OBJECT_ID = "22222222-2222-2222-2222-222222222222"

# Output property that carries an azure-native resource's name, keyed by the input that sets it.
_NAME_INPUTS = (
    # children named inside a parent whose name they carry too: theirs first
    "virtualNetworkPeeringName",
    "virtualEndpointName",
    "virtualNetworkName",
    "networkSecurityGroupName",
    "privateZoneName",
    "virtualNetworkLinkName",
    "vaultName",
    "secretName",
    "serverName",
    "databaseName",
    "configurationName",
    "workspaceName",
    "privateEndpointName",
    "privateDnsZoneGroupName",
    "agentPoolName",
    "configName",
    "federatedIdentityCredentialResourceName",
    "resourceName",
    "roleAssignmentName",
    # Application Gateway for Containers children carry their parent's name too: theirs first.
    "frontendName",
    "associationName",
    "securityPolicyName",
    "trafficControllerName",
    "policyName",
    "relativeRecordSetName",
    "zoneName",
    # Storage (the bootstrap's state backend): a container or the blob service before its account.
    "containerName",
    "blobServicesName",
    "accountName",
    # Azure Managed Redis: the database and the assignments name their cluster too (theirs first)
    "accessPolicyAssignmentName",
    "ruleName",
    "clusterName",
)


def wrap_secret(value: Any) -> dict:
    return {rpc._special_sig_key: rpc._special_secret_sig, "value": value}


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    parent: str | None
    dependencies: list[str]
    protect: bool
    custom: bool
    inputs: dict
    retain_on_delete: bool = False


class PlatformMocks(pmocks.Mocks):
    """Answers resource registrations and invokes with plausible Azure-shaped outputs."""

    def __init__(self, deployer_object_id: str = DEPLOYER_OBJECT_ID, references: dict | None = None) -> None:
        # StackReference name -> that stack's outputs (a recovery stack reads the one it replaces)
        self.references = dict(references or {})
        # Every secret value the mocks generate, so tests can prove none leaks into the plan.
        self.generated_secrets: list[str] = []
        # getClientConfig's objectId: the principal running the stack (runner.deployer_object_id).
        self.deployer_object_id = deployer_object_id
        # Every invoke the program made (token, arguments): what a preview calls besides reads.
        self.invokes: list[tuple[str, dict]] = []

    # ------------------------------------------------------------------ resources
    def new_resource(self, args: pmocks.MockResourceArgs) -> tuple[str, dict]:
        if args.typ == "pulumi:pulumi:StackReference":  # a read: the referenced stack's outputs, as planned
            ref = str(dict(args.inputs).get("name"))
            if ref not in self.references:
                raise KeyError(f"no outputs for stack reference {ref!r} (planned: {sorted(self.references)})")
            self.invokes.append(("pulumi:pulumi:StackReference", {"name": ref}))
            return ref, {"name": ref, "outputs": self.references[ref], "secretOutputNames": []}
        if not args.custom:
            return "", {}
        inputs = dict(args.inputs)
        typ = args.typ
        pkg, module, kind = (typ.split(":") + ["", ""])[:3]
        name = args.name
        if pkg == "azure-native":
            if kind == "ResourceGroup":
                name = inputs.get("resourceGroupName", args.name)
                rid = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}"
            else:
                name = next((inputs[k] for k in _NAME_INPUTS if isinstance(inputs.get(k), str)), args.name)
                rg = inputs.get("resourceGroupName", "rg")
                provider = f"Microsoft.{module.capitalize()}/{kind[0].lower()}{kind[1:]}s"
                rid = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}/providers/{provider}/{name}"
            state = {**inputs, "name": name, "id": rid}
            state.update(self._azure_outputs(kind, name, inputs))
            return rid, state
        if pkg == "random":
            seed = hashlib.sha256(args.name.encode()).hexdigest()
            if kind == "RandomPassword":
                secret = f"Mock{seed[:20]}-_Pw9"
                self.generated_secrets.append(secret)
                return f"{args.name}-id", {**inputs, "result": secret, "bcryptHash": f"$2a$10${seed[:40]}"}
            return f"{args.name}-id", {**inputs, "result": seed[: int(inputs.get("length", 8))]}
        if pkg == "tls":
            seed = hashlib.sha256(args.name.encode()).hexdigest()
            if kind.endswith("PrivateKey"):
                pem = f"-----BEGIN PRIVATE KEY-----\nMOCK{seed[:48]}\n-----END PRIVATE KEY-----\n"
                self.generated_secrets.append(pem.splitlines()[1])
                return f"{args.name}-id", {
                    **inputs,
                    "privateKeyPem": pem,
                    "publicKeyPem": f"-----BEGIN PUBLIC KEY-----\n{seed[:40]}\n-----END PUBLIC KEY-----\n",
                }
            if kind.endswith("CertRequest"):
                return f"{args.name}-id", {
                    **inputs,
                    "certRequestPem": (
                        f"-----BEGIN CERTIFICATE REQUEST-----\n{seed[:40]}\n-----END CERTIFICATE REQUEST-----\n"
                    ),
                }
            return f"{args.name}-id", {
                **inputs,
                "certPem": f"-----BEGIN CERTIFICATE-----\n{seed[:40]}\n-----END CERTIFICATE-----\n",
            }
        if pkg == "cloudamqp" and kind == "Instance":
            host = f"{inputs.get('name', args.name)}.rmq.cloudamqp.com"
            password = f"MockAmqp{hashlib.sha256(args.name.encode()).hexdigest()[:16]}"
            self.generated_secrets.append(password)
            return "1234", {
                **inputs,
                "host": host,
                "vhost": "mockvhost",
                "url": f"amqps://admin:{password}@{host}/mockvhost",
                "apikey": "mock-api-key",
            }
        if pkg == "cloudamqp":  # its ids are integers (alarm recipients, notifications)
            return str(int(hashlib.sha256(args.name.encode()).hexdigest()[:6], 16)), inputs
        if pkg == "kubernetes":
            meta = inputs.get("metadata") or {}
            return f"{meta.get('namespace', '')}/{meta.get('name', args.name)}".lstrip("/"), inputs
        return f"{args.name}-id", inputs

    @staticmethod
    def _azure_outputs(kind: str, name: str, inputs: dict) -> dict:
        if kind == "ManagedCluster":
            identity = dict(inputs.get("identity") or {})
            # Input is a list of identity IDs; the ARM response is a map keyed by ID.
            identity["userAssignedIdentities"] = {
                i: {
                    "principalId": "44444444-4444-4444-4444-444444444444",
                    "clientId": "55555555-5555-5555-5555-555555555555",
                }
                for i in identity.get("userAssignedIdentities") or []
            }
            return {
                "identity": identity,
                "fqdn": f"{name}.hcp.westeurope.azmk8s.io",
                "oidcIssuerProfile": {
                    "enabled": True,
                    "issuerURL": f"https://westeurope.oic.prod-aks.azure.com/{TENANT}/{name}/",
                },
            }
        if kind == "Server":
            return {"fullyQualifiedDomainName": f"{name}.postgres.database.azure.com"}
        if kind == "VirtualEndpoint":  # Azure answers with the pair of host names
            return {
                "virtualEndpoints": [
                    f"{name}.reader.postgres.database.azure.com",
                    f"{name}.writer.postgres.database.azure.com",
                ]
            }
        if kind == "Vault":
            return {"properties": {**(inputs.get("properties") or {}), "vaultUri": f"https://{name}.vault.azure.net/"}}
        if kind == "Secret":
            props = dict(inputs.get("properties") or {})
            props["secretUri"] = f"https://vault.vault.azure.net/secrets/{name}"
            return {"properties": props}
        if kind == "UserAssignedIdentity":
            digest = hashlib.md5(name.encode()).hexdigest()
            guid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
            return {"principalId": guid, "clientId": guid, "tenantId": TENANT}
        if kind == "Workspace":
            return {"customerId": "33333333-3333-3333-3333-333333333333"}
        if kind == "FrontendsInterface":  # Application Gateway for Containers frontend
            return {"fqdn": f"{hashlib.md5(name.encode()).hexdigest()[:16]}.fz12.alb.azure.com"}
        if kind == "RedisEnterprise":  # Azure Managed Redis: <cluster>.<region>.redis.azure.net
            return {"hostName": f"{name}.{inputs.get('location', 'westeurope')}.redis.azure.net"}
        if kind == "Zone":
            return {"nameServers": ["ns1-01.azure-dns.com.", "ns2-01.azure-dns.net."]}
        if (
            kind == "DataCollectionEndpoint"
        ):  # Azure's shape: <name>-<suffix>.<region>-1.metrics.ingest.monitor.azure.com
            return {
                "metricsIngestion": {"endpoint": f"https://{name}-ab12.westeurope-1.metrics.ingest.monitor.azure.com"}
            }
        if kind == "AzureMonitorWorkspace":  # the PromQL endpoint: <name>-<suffix>.<region>.prometheus...
            return {
                "metrics": {
                    "prometheusQueryEndpoint": f"https://{name}-cd34.{inputs.get('location', 'westeurope')}"
                    ".prometheus.monitor.azure.com"
                }
            }
        if kind == "DataCollectionRule":
            return {"immutableId": f"dcr-{hashlib.md5(name.encode()).hexdigest()}"}
        return {}

    # ------------------------------------------------------------------ invokes
    def call(self, args: pmocks.MockCallArgs) -> tuple[dict, list[tuple[str, str]] | None]:
        self.invokes.append((args.token, dict(args.args)))
        return self._invoke(args), []  # no check failures

    def _invoke(self, args: pmocks.MockCallArgs) -> dict:
        if args.token == "azure-native:authorization:getClientConfig":
            return {
                "clientId": "mock-client",
                "objectId": self.deployer_object_id,
                "subscriptionId": SUBSCRIPTION,
                "tenantId": TENANT,
            }
        if args.token == "azure-native:containerservice:listManagedClusterUserCredentials":
            kubeconfig = (
                "apiVersion: v1\nkind: Config\nclusters:\n- name: aks\n  cluster:\n"
                f"    server: https://{args.args.get('resourceName')}.hcp.westeurope.azmk8s.io:443\n"
                "users:\n- name: clusterUser\n  user:\n    exec:\n"
                "      apiVersion: client.authentication.k8s.io/v1beta1\n      command: kubelogin\n"
                "      args: [get-token, --login, azurecli, --server-id, 6dae42f8-4368-4678-94ff-3960e28e3630]\n"
            )
            return {"kubeconfigs": [{"name": "clusterUser", "value": base64.b64encode(kubeconfig.encode()).decode()}]}
        return {}


class RecordingMonitor(pmocks.MockMonitor):
    """MockMonitor that records registrations and honours ``additionalSecretOutputs``
    (the engine's job, which the stock mock monitor skips)."""

    def __init__(self, mocks: PlatformMocks):
        super().__init__(mocks)
        self.platform_mocks = mocks
        self.registrations: list[Registration] = []
        self.stack_urn: str | None = None
        self.stack_outputs: dict = {}

    def RegisterResource(self, request):
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            self.stack_urn = urn
            return resource_pb2.RegisterResourceResponse(urn=urn)
        _ensure_event_loop()
        inputs = rpc.deserialize_properties(request.object)
        args = pmocks.MockResourceArgs(
            typ=request.type,
            name=request.name,
            inputs=inputs,
            provider=request.provider,
            resource_id=request.importId,
            custom=request.custom or False,
        )
        id_, state = self.platform_mocks.new_resource(args)
        for key in request.additionalSecretOutputs:
            if key in state and not rpc.is_rpc_secret(state[key]):
                state[key] = wrap_secret(state[key])
        obj = _sync_await(rpc.serialize_properties(state, {}))
        self.resources[urn] = pmocks.MockMonitor.ResourceRegistration(urn, id_, state)
        self.registrations.append(
            Registration(
                urn=urn,
                type=request.type,
                name=request.name,
                parent=request.parent or None,
                dependencies=sorted(set(request.dependencies)),
                protect=bool(request.protect),
                custom=bool(request.custom),
                inputs=inputs,
                retain_on_delete=bool(request.retainOnDelete),
            )
        )
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=obj)

    def RegisterResourceOutputs(self, request):
        if request.urn == self.stack_urn:
            _ensure_event_loop()
            self.stack_outputs = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)
