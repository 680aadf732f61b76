"""The access matrix: who can read what, derived from the RECORDED PLAN (plan.json's resources)
and the rendered broker definitions (build/<stack>/rabbitmq/definitions.json), never from the
settings. For every identity (each service's, each platform component's, the admin group, the
deployer): the Key Vault secrets it can read, its broker user's permissions resolved to the
queues and exchanges they match, its database, and what its pods may reach (the
NetworkPolicies of the namespaces its federated service accounts live in).

``make plan`` writes build/<stack>/access.json and access.md through the checked writer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from components import custom_roles as custom_role_defs

ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
FEDERATION = "azure-native:managedidentity:FederatedIdentityCredential"
KV_SECRET = "azure-native:keyvault:Secret"
PG_ADMIN = "azure-native:dbforpostgresql:AdministratorsMicrosoftEntra"
PG_DATABASE = "azure-native:dbforpostgresql:Database"
PG_SERVER = "azure-native:dbforpostgresql:Server"
VNET = "azure-native:network:VirtualNetwork"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
REDIS_ASSIGNMENT = "azure-native:redisenterprise:AccessPolicyAssignment"
REDIS_CLUSTER = "azure-native:redisenterprise:RedisEnterprise"
REDIS_PREFIX_KEY = "REDIS_KEY_PREFIX"  # the ConfigMap <svc>-redis (components/render/redis.py)

ROLES = {
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "21090545-7ca7-4776-b22c-e363652d74d2": "Key Vault Reader",
    "4d97b98b-1d4f-4787-a291-c67834d212e7": "Network Contributor",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
    "fbc52c3f-28ad-4303-a892-8a056630b8f1": "AppGw for Containers Configuration Manager",
    "befefa01-2a29-4197-83a8-272ff33ce314": "DNS Zone Contributor",
    "7f951dda-4ed3-4680-a7ca-43fe172d538d": "AcrPull",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "43d0d8ad-25c7-4714-9337-8ba259a9fe05": "Monitoring Reader",
    "b0d8363b-8ddd-447d-831f-62ca05bff136": "Monitoring Data Reader",
    "f1a07417-d97a-45cb-824c-7a7467783830": "Managed Identity Operator",
    "2a1e307c-b015-4ebd-883e-5b7698a07328": "Container Registry Repository Writer",
    "b93aa761-3e63-49ed-ac28-beffa264f7ac": "Container Registry Repository Reader",
    "12338af0-0e69-4776-bea7-57ae8d297424": "Key Vault Crypto User",
    "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba": "Key Vault Certificate User",
}
# the roles that read secrets (the key and certificate roles reach one key or certificate: otherRoles)
KV_ROLES = {
    g
    for g, n in ROLES.items()
    if n.startswith("Key Vault") and n not in ("Key Vault Crypto User", "Key Vault Certificate User")
}
ROLE_DEFINITION = "azure-native:authorization:RoleDefinition"
REPOSITORY_CONDITION = re.compile(r"repositories:name\] StringEqualsIgnoreCase '([^']+)'")
GRANTS_ANNOTATION = "event-backbone.io/database-grants"  # components/render/database.py


def _role(props: dict) -> tuple[str, str]:
    guid = str(props.get("roleDefinitionId", "")).rsplit("/", 1)[-1].lower()
    return guid, ROLES.get(guid, guid)


def _secret_of(scope: str) -> str | None:
    lowered = scope.lower()
    if "/providers/microsoft.keyvault/vaults/" in lowered and "/secrets/" in lowered:
        return scope[lowered.index("/secrets/") + len("/secrets/") :]
    return None


def _scope_label(scope: str) -> str:
    lowered = scope.lower()
    for kind in ("keys", "certificates"):
        if "/providers/microsoft.keyvault/vaults/" in lowered and f"/{kind}/" in lowered:
            vault = scope[lowered.index("/vaults/") + len("/vaults/") :].split("/", 1)[0]
            return f"{kind[:-1]} {scope.rstrip('/').rsplit('/', 1)[-1]} (vault {vault})"
    if "/providers/microsoft.keyvault/vaults/" in lowered:
        return "vault " + scope.rstrip("/").rsplit("/", 1)[-1]
    if "/providers/microsoft.containerregistry/" in lowered:
        return "registry " + scope.rstrip("/").rsplit("/", 1)[-1]
    if "/subnets/" in lowered:
        return "subnet " + scope.rstrip("/").rsplit("/", 1)[-1]
    return scope


# ----------------------------------------------------------------- network
def _labels(selector: dict | None) -> str:
    if not selector:
        return "all pods"
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    parts += [
        f"{e['key']} {e['operator']} [{', '.join(e.get('values', []))}]" for e in selector.get("matchExpressions") or []
    ]
    return ", ".join(parts) or "all pods"


def _peer(peer: dict, subnets: dict[str, str]) -> str:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        cidr, exceptions = block["cidr"], block.get("except") or []
        if cidr == "0.0.0.0/0" and exceptions:
            return f"public addresses (0.0.0.0/0 except {len(exceptions)} private ranges)"
        return f"{cidr} ({subnets[cidr]})" if cidr in subnets else cidr
    ns = peer.get("namespaceSelector")
    pods = peer.get("podSelector")
    if ns is not None:
        names = (ns.get("matchLabels") or {}).get("kubernetes.io/metadata.name")
        where = (
            f"namespace {names}"
            if names and len(ns) == 1 and len(ns["matchLabels"]) == 1
            else f"namespaces ({_labels(ns)})"
        )
    else:
        where = "own namespace"
    return where if pods is None else f"{where}, pods {_labels(pods)}"


def _ports(ports: list[dict] | None) -> str:
    if not ports:
        return "all ports"
    out = []
    for p in ports:
        port = p.get("port", "*")
        end = f"-{p['endPort']}" if p.get("endPort") else ""
        out.append(f"{port}{end}/{p.get('protocol', 'TCP')}")
    return ", ".join(out)


def network_of(namespace: str, policies: list[dict], subnets: dict[str, str]) -> dict:
    """What the namespace's pods may reach (egress) and who may reach them (ingress)."""
    mine = [p for p in policies if p["metadata"].get("namespace") == namespace]
    if not mine:
        return {
            "namespace": namespace,
            "defaultDeny": [],
            "egress": ["anything (no NetworkPolicy)"],
            "ingress": ["anything (no NetworkPolicy)"],
        }
    deny = sorted(
        {
            t
            for p in mine
            if p["spec"].get("podSelector") == {}
            for t in p["spec"].get("policyTypes", [])
            if not p["spec"].get(t.lower())
        }
    )
    egress, ingress = [], []
    for p in mine:
        who = "" if p["spec"].get("podSelector") == {} else f" [pods {_labels(p['spec'].get('podSelector'))}]"
        for rule in p["spec"].get("egress") or []:
            for peer in rule.get("to") or [{}]:
                egress.append(f"{_peer(peer, subnets)} : {_ports(rule.get('ports'))}{who}")
        for rule in p["spec"].get("ingress") or []:
            for peer in rule.get("from") or [{}]:
                ingress.append(f"{_peer(peer, subnets)} : {_ports(rule.get('ports'))}{who}")
    return {"namespace": namespace, "defaultDeny": deny, "egress": sorted(egress), "ingress": sorted(ingress)}


# ----------------------------------------------------------------- broker
def broker_access(definitions: dict, user: str) -> dict:
    """A broker user's permissions resolved to the queues and exchanges they match."""
    exchanges = [x["name"] for x in definitions.get("exchanges", [])]
    queues = [q["name"] for q in definitions.get("queues", [])]
    tags = next((u.get("tags", []) for u in definitions.get("users", []) if u["name"] == user), None)
    out: dict[str, Any] = {"user": user, "exists": tags is not None, "tags": tags or []}
    for perm in definitions.get("permissions", []):
        if perm["user"] != user:
            continue
        out["vhost"] = perm["vhost"]
        for kind in ("configure", "write", "read"):
            pattern = re.compile(perm[kind])
            out[kind] = {
                "pattern": perm[kind],
                "exchanges": [n for n in exchanges if pattern.search(n)],
                "queues": [n for n in queues if pattern.search(n)],
            }
    return out


# ----------------------------------------------------------------- the matrix
def matrix(doc: dict, definitions: dict) -> dict:
    resources = doc["resources"]

    def of(typ: str) -> list[dict]:
        return [r for r in resources if r["type"] == typ]

    subnets: dict[str, str] = {}
    for vnet in of(VNET):
        for sn in vnet["inputs"].get("subnets") or []:
            subnets[sn["addressPrefix"]] = f"subnet {sn['name']}"
    policies = [r["inputs"] for r in of(NETPOL)]
    secret_tags = {r["inputs"].get("secretName"): r["inputs"].get("tags") or {} for r in of(KV_SECRET)}
    all_secrets = sorted(n for n in secret_tags if n)

    # principal ids: an identity's is what the grants / Entra admins that depend on it carry
    identities = {r["urn"]: r for r in of(IDENTITY)}
    principal_of: dict[str, str] = {}
    for r in of(ROLE_ASSIGNMENT) + of(PG_ADMIN):
        pid = r["inputs"].get("principalId") or r["inputs"].get("objectId")
        scope = str(r["inputs"].get("scope", ""))
        for dep in r["dependencies"]:
            if dep not in identities or not isinstance(pid, str):
                continue
            name = identities[dep]["inputs"].get("resourceName", identities[dep]["name"])
            if scope.rstrip("/").endswith(f"/{name}"):
                continue  # a grant *on* the identity (e.g. Managed Identity Operator): not its principal
            principal_of.setdefault(dep, pid)

    # The bootstrap Job's ConfigMap carries its grants as data (role, Entra object id, database).
    grants = [
        g
        for r in of(CONFIGMAP)
        for g in json.loads(((r["inputs"].get("metadata") or {}).get("annotations") or {}).get(GRANTS_ANNOTATION, "[]"))
    ]
    role_oid = {g["role"]: str(g["objectId"]).lower() for g in grants}
    owners = {g["database"]: g["role"] for g in grants}  # database -> role
    databases_in_plan = {r["inputs"].get("databaseName") for r in of(PG_DATABASE)}
    if not of(PG_SERVER):
        # a recovery stack (components/recovery.py): the server and its databases came with the
        # promoted geo-replica, and the bootstrap creates any that is missing
        databases_in_plan |= set(owners)
    pg_admins = {str(r["inputs"].get("objectId")).lower(): r["inputs"].get("principalName") for r in of(PG_ADMIN)}
    pg_names = {k: v for k, v in pg_admins.items() if isinstance(v, str)}

    # custom roles (the image importer): their GUID -> name and actions, from the plan's own
    # definitions and the ones the bootstrap creates for this environment (components/custom_roles.py)
    # (a stack's environment: prod-dr is prod's recovery stack and assigns prod's)
    declared = custom_role_defs.definitions(str((doc.get("outputs") or {}).get("environment") or doc.get("stack", "")))
    custom_roles = {g: c.role_name for g, c in declared.items()} | {
        str(r["inputs"].get("roleDefinitionId", "")).lower(): r["inputs"].get("roleName", r["name"])
        for r in of(ROLE_DEFINITION)
    }
    custom_actions = {g: sorted(c.actions) for g, c in declared.items()} | {
        str(r["inputs"].get("roleDefinitionId", "")).lower(): sorted(
            a for perm in r["inputs"].get("permissions") or [] for a in perm.get("actions") or []
        )
        for r in of(ROLE_DEFINITION)
    }

    rows: dict[str, dict] = {}

    def row(key: str, kind: str, name: str, principal: str) -> dict:
        return rows.setdefault(
            principal.lower(),
            {
                "identity": key,
                "kind": kind,
                "name": name,
                "principal": principal,
                "serviceAccounts": [],
                "keyVault": [],
                "otherRoles": [],
                "broker": [],
                "database": [],
                "redis": [],
                "network": [],
            },
        )

    for urn, ident in identities.items():
        tags = ident["inputs"].get("tags") or {}
        name = ident["inputs"].get("resourceName", ident["name"])
        if tags.get("service"):
            key, kind = f"service {tags['service']}", "service"
        else:  # <prefix>-<env>-id-<component>
            key, kind = f"platform {tags.get('component') or name.split('-id-', 1)[-1]}", "platform"
        row(key, kind, name, principal_of.get(urn, f"(unknown: {name})"))
    for fed in of(FEDERATION):
        ident = next((identities[d] for d in fed["dependencies"] if d in identities), None)
        if ident is None:
            continue
        r = rows[principal_of.get(ident["urn"], f"(unknown: {ident['inputs'].get('resourceName')})").lower()]
        subject = fed["inputs"]["subject"]
        if subject.startswith("system:serviceaccount:"):
            r["serviceAccounts"].append(subject.removeprefix("system:serviceaccount:"))
        else:  # a GitHub Actions job (repo:<owner>/<repo>:environment:<env>): no pods, no network
            r.setdefault("federated", []).append({"issuer": fed["inputs"]["issuer"], "subject": subject})

    for grant in of(ROLE_ASSIGNMENT):
        p = grant["inputs"]
        guid, role_name = _role(p)
        pid = str(p.get("principalId"))
        if pid.lower() not in rows:
            kind = "group" if p.get("principalType") == "Group" else "deployer"
            label = f"group {pg_names.get(pid.lower(), pid)}" if kind == "group" else "deployer"
            row(label, kind, pid, pid)
        r = rows[pid.lower()]
        scope = str(p.get("scope", ""))
        if guid in KV_ROLES:
            secret = _secret_of(scope)
            r["keyVault"].append(
                {"secret": secret or "*", "scope": "secret" if secret else _scope_label(scope), "role": role_name}
            )
        else:
            other = {"role": custom_roles.get(guid, role_name), "scope": _scope_label(scope)}
            repo = REPOSITORY_CONDITION.search(str(p.get("condition") or ""))
            if repo:
                other["repository"] = repo.group(1)
            r["otherRoles"].append(other)

    # Azure Managed Redis: who holds an access-policy assignment on which database, and the key
    # prefix its namespace is told to keep to (the ConfigMap <svc>-redis).
    prefixes = {
        ((r["inputs"].get("metadata") or {}).get("namespace")): (r["inputs"].get("data") or {}).get(REDIS_PREFIX_KEY)
        for r in of(CONFIGMAP)
        if REDIS_PREFIX_KEY in (r["inputs"].get("data") or {})
    }
    redis_clusters = {r["inputs"].get("clusterName") for r in of(REDIS_CLUSTER)}
    for a in of(REDIS_ASSIGNMENT):
        p = a["inputs"]
        oid = str((p.get("user") or {}).get("objectId"))
        if oid.lower() not in rows:
            row(f"principal {oid}", "other", oid, oid)
        r = rows[oid.lower()]
        namespaces = [sa.split(":", 1)[0] for sa in r["serviceAccounts"]]
        r["redis"].append(
            {
                "cluster": p.get("clusterName"),
                "clusterInPlan": p.get("clusterName") in redis_clusters,
                "database": p.get("databaseName"),
                "accessPolicy": p.get("accessPolicyName"),
                "assignment": p.get("accessPolicyAssignmentName"),
                "keyPrefix": next((prefixes[n] for n in namespaces if prefixes.get(n)), None),
            }
        )

    for pid, r in rows.items():
        readable = {g["secret"] for g in r["keyVault"]}
        if "*" in readable:
            readable = set(all_secrets)
        r["secretsReadable"] = sorted(readable)
        users = sorted(
            {f"svc-{secret_tags[s]['service']}" for s in readable if secret_tags.get(s, {}).get("service")}
            | {secret_tags[s]["user"] for s in readable if secret_tags.get(s, {}).get("user")}
        )
        r["broker"] = [broker_access(definitions, u) for u in users]
        for role, oid in role_oid.items():
            if oid == pid:
                r["database"] += [
                    f"owns {db} (role {role})"
                    for db, owner in owners.items()
                    if owner == role and db in databases_in_plan
                ]
        if pid in pg_admins:
            r["database"].append(f"PostgreSQL Entra administrator ({pg_admins[pid]})")
        for sa in r["serviceAccounts"]:
            r["network"].append(network_of(sa.split(":", 1)[0], policies, subnets))
        r["keyVault"].sort(key=lambda g: g["secret"])

    order = {"service": 0, "platform": 1, "group": 2, "deployer": 3, "other": 4}
    ordered = sorted(rows.values(), key=lambda r: (order[r["kind"]], r["identity"]))
    readers: dict[str, list[str]] = {s: [] for s in all_secrets}
    for r in ordered:
        for s in r["secretsReadable"]:
            readers.setdefault(s, []).append(r["identity"])
    pushers = push_rights(ordered, custom_actions, custom_roles)
    return {
        "project": doc["project"],
        "stack": doc["stack"],
        "identities": ordered,
        "secretReaders": readers,
        "imagePushers": pushers,
    }


def push_rights(rows: list[dict], custom_actions: dict[str, list[str]], custom_roles: dict[str, str]) -> list[dict]:
    """Who can put an image into a registry: every identity holding a repository-writing role
    (with the repository its ABAC condition allows, or all) or an import role, and who it signs in as."""
    importers = {custom_roles[g] for g, actions in custom_actions.items() if any("importImage" in a for a in actions)}
    out = []
    for r in rows:
        writes = [o for o in r["otherRoles"] if o["role"] in ("Container Registry Repository Writer", "AcrPush")]
        imports = [o for o in r["otherRoles"] if o["role"] in importers]
        if not writes and not imports:
            continue
        out.append(
            {
                "identity": r["identity"],
                "signsInAs": [f["subject"] for f in r.get("federated", [])] + r["serviceAccounts"],
                "pushes": [{"scope": o["scope"], "repository": o.get("repository", "*")} for o in writes],
                "imports": [{"scope": o["scope"], "role": o["role"]} for o in imports],
                "signsWith": [o["scope"] for o in r["otherRoles"] if o["role"] == "Key Vault Crypto User"],
            }
        )
    return out


# ----------------------------------------------------------------- rendering
def _names(access: dict, kind: str) -> str:
    if kind not in access:
        return "—"
    a = access[kind]
    items = [f"exchange {n}" for n in a["exchanges"]] + [f"queue {n}" for n in a["queues"]]
    return ", ".join(items) or "nothing"


def markdown(m: dict) -> str:
    lines = [
        f"# Access matrix: {m['project']}/{m['stack']}",
        "",
        "Derived from the recorded plan (build/<stack>/plan.json) and the rendered broker definitions",
        "(rabbitmq/definitions.json) by dryrun/access.py: what each identity can read and reach.",
        "",
        "| Identity | Signs in as | Key Vault secrets it can read | Broker user: configure / write / read"
        " | Database | Redis (access policy; keys) | Pods may reach (egress) | Pods reachable from (ingress) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in m["identities"]:
        kv = (
            "; ".join(
                f"**all ({g['scope']}, {g['role']})**" if g["secret"] == "*" else f"`{g['secret']}`"
                for g in r["keyVault"]
            )
            or "none"
        )
        broker = (
            "<br>".join(
                f"`{b['user']}`{' (tags ' + ', '.join(b['tags']) + ')' if b['tags'] else ''}: "
                f"{_names(b, 'configure')} / {_names(b, 'write')} / {_names(b, 'read')}"
                for b in r["broker"]
            )
            or "none"
        )
        if r["kind"] == "deployer":
            broker = "any (reads every password)"
        net = r["network"]
        egress = (
            "<br>".join(
                (f"default deny ({', '.join(n['defaultDeny'])})<br>" if n["defaultDeny"] else "")
                + "<br>".join(n["egress"])
                for n in net
            )
            or "n/a (not a pod)"
        )
        ingress = "<br>".join("<br>".join(n["ingress"]) or "nothing" for n in net) or "n/a"
        other = "".join(
            f"<br>{o['role']} on {o['scope']}"
            + (f" (repository `{o['repository']}` only)" if "repository" in o else "")
            for o in r["otherRoles"]
        )
        signs_in = r["serviceAccounts"] + [f["subject"] for f in r.get("federated", [])]
        redis = (
            "<br>".join(
                f"`{x['accessPolicy']}` on {x['cluster']}/{x['database']}; keys `{x['keyPrefix'] or '?'}*`"
                for x in r["redis"]
            )
            or "none"
        )
        lines.append(
            f"| {r['identity']} | {', '.join(signs_in) or r['name']}{other} | {kv} | {broker} |"
            f" {'; '.join(r['database']) or 'none'} | {redis} | {egress} | {ingress} |"
        )
    lines += ["", "## Who can read each secret", "", "| Secret | Readers |", "|---|---|"]
    for secret, readers in m["secretReaders"].items():
        lines.append(f"| `{secret}` | {', '.join(readers)} |")
    lines += [
        "",
        "## Who can push images",
        "",
        "Repository roles as their ABAC condition limits them (`*`: every repository), the import role"
        " (ImportImage: a control-plane action no condition can limit to a repository), the signing key.",
        "",
        "| Identity | Signs in as | Pushes to | Imports into | Signs with |",
        "|---|---|---|---|---|",
    ]
    for p in m.get("imagePushers", []):
        pushes = "<br>".join(f"repository `{x['repository']}` of {x['scope']}" for x in p["pushes"]) or "nothing"
        imports = "<br>".join(f"{x['scope']} ({x['role']})" for x in p["imports"]) or "nothing"
        lines.append(
            f"| {p['identity']} | {'<br>'.join(f'`{x}`' for x in p['signsInAs']) or 'n/a'} | {pushes} | {imports}"
            f" | {'<br>'.join(p['signsWith']) or 'nothing'} |"
        )
    return "\n".join(lines) + "\n"


def summary_line(m: dict) -> str:
    services = [r for r in m["identities"] if r["kind"] == "service"]
    wide = sorted({r["identity"] for r in m["identities"] for g in r["keyVault"] if g["secret"] == "*"})
    first = services[0] if services else None
    text = f"access: {len(m['identities'])} identities; vault-wide readers: {', '.join(wide) or 'none'}"
    if first:
        queues = sorted({q for b in first["broker"] for q in b.get("read", {}).get("queues", [])})
        text += (
            f"; {first['identity']} reads {len(first['secretsReadable'])} secrets"
            f" ({', '.join(first['secretsReadable'])}), queues {', '.join(queues) or 'none'}, "
            f"database {', '.join(first['database']) or 'none'}"
        )
    redis = sorted(r["identity"] for r in m["identities"] if r["redis"])
    return text + f"; Redis: {', '.join(redis) or 'nobody'}"


def write_access(result: Any, doc: dict, out_dir: Path) -> tuple[list[str], str]:
    """Writes access.json and access.md (through the checked writer); returns them and the summary line."""
    from . import plan

    definitions = json.loads((out_dir / "rabbitmq" / "definitions.json").read_text())
    m = matrix(doc, definitions)
    plan.write(result, out_dir, "access.json", json.dumps(m, indent=2) + "\n")
    plan.write(result, out_dir, "access.md", markdown(m))
    return ["access.json", "access.md"], summary_line(m)
