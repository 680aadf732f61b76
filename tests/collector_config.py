"""What `otelcol validate` would check of a collector configuration, for the configurations the
two collector releases get (no collector binary is installable here: no PyPI, npm or Debian
package ships one with these components, and the Go module proxy is out of reach).

The configuration the collector runs is the chart's default `config` with ours merged over it
(Helm: maps merge, lists replace, null deletes). The chart's defaults are known by their keys
(the reference extract); where a default pipeline is left in place its lists are unknown here,
so every default pipeline must be stated in full or removed.

Component types are those of the pinned image, otelcol-k8s 0.158.0 (the chart's appVersion):
its manifest (open-telemetry/opentelemetry-collector-releases, tag v0.158.0,
distributions/otelcol-k8s/manifest.yaml) lists the modules; each module's type, and the older
names still accepted as deprecated aliases, come from the components' metadata and rename pull
requests (e.g. open-telemetry/opentelemetry-collector-contrib#48533: `loadbalancing` →
`load_balancing`). Only the components this project and the chart's defaults use are listed."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

# kind -> type -> signals it takes (receivers/exporters/processors) or (from, to) pairs (connectors)
TYPES: dict[str, dict[str, set]] = {
    "receivers": {
        "otlp": {"traces", "metrics", "logs"},
        "jaeger": {"traces"},
        "zipkin": {"traces"},
        "prometheus": {"metrics"},
    },
    "processors": {
        "batch": {"traces", "metrics", "logs"},
        "memory_limiter": {"traces", "metrics", "logs"},
        "k8s_attributes": {"traces", "metrics", "logs"},
        "tail_sampling": {"traces"},
    },
    "exporters": {
        "debug": {"traces", "metrics", "logs"},
        "otlp_grpc": {"traces", "metrics", "logs"},
        "otlp_http": {"traces", "metrics", "logs"},
        "load_balancing": {"traces", "metrics", "logs"},
    },
    "connectors": {"span_metrics": {("traces", "metrics")}},
    "extensions": {"health_check": set()},
}
# kind -> deprecated alias -> type (still accepted by 0.158.0, with a warning)
ALIASES = {
    "processors": {"k8sattributes": "k8s_attributes"},  # the chart's kubernetesAttributes preset writes this
    "exporters": {"otlp": "otlp_grpc", "otlphttp": "otlp_http", "loadbalancing": "load_balancing"},
    "connectors": {"spanmetrics": "span_metrics"},
}
# load_balancing's routing keys and the signals each routes (the exporter's README)
ROUTING_KEYS = {"traceID": {"traces", "logs"}, "service": {"traces", "logs", "metrics"}}
SIGNALS = ("traces", "metrics", "logs")
KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")
# the chart's default container ports of its otlp and otlp-http entries
CHART_PORTS = {"otlp": 4317, "otlp-http": 4318}


def merge(base: dict, over: dict) -> dict:
    """Helm's coalescing of user values over defaults."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def chart_defaults(keys: set[str]) -> dict:
    """The chart's default config as far as its keys tell: which components and pipelines exist
    (a pipeline's lists are not known: marked ``...``)."""
    config: dict = {kind: {} for kind in KINDS}
    for key in keys:
        parts = key.split(".")
        if parts[0] != "config" or len(parts) < 3:
            continue
        if parts[1] in KINDS and len(parts) == 3:
            config[parts[1]][parts[2]] = {}
        if parts[1:3] == ["service", "pipelines"] and len(parts) == 4:
            config.setdefault("service", {}).setdefault("pipelines", {})[parts[3]] = ...
    config.setdefault("service", {})["extensions"] = ["health_check"]
    return config


@dataclass
class Checked:
    problems: list[str] = field(default_factory=list)
    deprecated: list[str] = field(default_factory=list)


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def canonical(kind: str, component_id: str) -> str:
    t = _type(component_id)
    return ALIASES.get(kind, {}).get(t, t)


def _port(endpoint: str) -> int | None:
    m = re.search(r":(\d+)$", endpoint or "")
    return int(m.group(1)) if m else None


def validate(values: dict, keys: set[str]) -> Checked:
    """Problems of the configuration one release runs (empty: it would start)."""
    out = Checked()
    p = out.problems
    defaults = chart_defaults(keys)
    if values.get("presets", {}).get("kubernetesAttributes", {}).get("enabled"):
        defaults["processors"]["k8sattributes"] = {}
    config = merge(defaults, values.get("config", {}))

    for kind in KINDS:
        for cid in config.get(kind, {}):
            t = _type(cid)
            if t in ALIASES.get(kind, {}):
                out.deprecated.append(f"{kind}.{cid}")
            if canonical(kind, cid) not in TYPES[kind]:
                p.append(f"{kind}.{cid}: no such {kind[:-1]} in otelcol-k8s 0.158.0")

    def signals(kind: str, cid: str) -> set:
        return TYPES.get(kind, {}).get(canonical(kind, cid), set())

    pipelines = config.get("service", {}).get("pipelines", {})
    used: dict[str, set] = {k: set() for k in KINDS}
    connector_ends: dict[str, dict[str, set]] = {}
    for pid, pipe in pipelines.items():
        if pipe is ...:
            p.append(f"service.pipelines.{pid}: the chart's default pipeline is left in place unstated")
            continue
        signal = pid.split("/", 1)[0]
        if signal not in SIGNALS:
            p.append(f"service.pipelines.{pid}: unknown signal {signal!r}")
            continue
        for role in ("receivers", "exporters"):
            if not pipe.get(role):
                p.append(f"service.pipelines.{pid}: needs at least one of {role}")
        for role, kind in (("receivers", "receivers"), ("processors", "processors"), ("exporters", "exporters")):
            for cid in pipe.get(role, []):
                if role != "processors" and cid in config.get("connectors", {}):
                    connector_ends.setdefault(cid, {"exporters": set(), "receivers": set()})[role].add(signal)
                    used["connectors"].add(cid)
                    continue
                if cid not in config.get(kind, {}):
                    p.append(f"service.pipelines.{pid}.{role}: {cid} is not defined")
                    continue
                used[kind].add(cid)
                if signals(kind, cid) and signal not in signals(kind, cid):
                    p.append(f"service.pipelines.{pid}.{role}: {cid} does not take {signal}")
        procs = pipe.get("processors", [])
        if procs and _type(procs[0]) != "memory_limiter":
            p.append(f"service.pipelines.{pid}.processors: memory_limiter must come first")
        for cid in pipe.get("exporters", []):
            if canonical("exporters", cid) == "load_balancing":
                key = config["exporters"][cid].get("routing_key", "traceID")
                if signal not in ROUTING_KEYS.get(key, set()):
                    p.append(f"exporters.{cid}: routing_key {key!r} does not route {signal}")
    for cid, ends in connector_ends.items():
        pairs = {(a, b) for a in ends["exporters"] for b in ends["receivers"]}
        if not ends["exporters"] or not ends["receivers"]:
            p.append(f"connectors.{cid}: must be an exporter in one pipeline and a receiver in another")
        elif not pairs & signals("connectors", cid):
            p.append(f"connectors.{cid}: connects {sorted(pairs)}, takes {sorted(signals('connectors', cid))}")
    for ext in config.get("service", {}).get("extensions", []):
        if ext not in config.get("extensions", {}):
            p.append(f"service.extensions: {ext} is not defined")

    # every receiver a pipeline uses listens on a port the pod exposes
    ports = dict(CHART_PORTS)
    for name, entry in values.get("ports", {}).items():
        if entry.get("enabled") is False:
            ports.pop(name, None)
        elif "containerPort" in entry:
            ports[name] = entry["containerPort"]
    for cid in used["receivers"]:
        receiver = config["receivers"][cid] or {}
        for proto, spec in (receiver.get("protocols") or {}).items():
            port = _port((spec or {}).get("endpoint", ""))
            if port is not None and port not in ports.values():
                p.append(f"receivers.{cid}.protocols.{proto}: port {port} is not an enabled container port")
    return out


def resolver_targets(values: dict) -> list[tuple[str, int]]:
    """(service, port) each load-balancing exporter resolves."""
    found = []
    for cid, exporter in values.get("config", {}).get("exporters", {}).items():
        if exporter and canonical("exporters", cid) == "load_balancing":
            k8s = exporter["resolver"]["k8s"]
            found += [(k8s["service"], port) for port in k8s["ports"]]
    return found


def receiver_ports(values: dict, keys: set[str]) -> set[int]:
    """The ports a release's pipelines receive on."""
    defaults = chart_defaults(keys)
    config = merge(defaults, values.get("config", {}))
    found = set()
    for pipe in config.get("service", {}).get("pipelines", {}).values():
        if pipe is ...:
            continue
        for cid in pipe.get("receivers", []):
            for spec in ((config["receivers"].get(cid) or {}).get("protocols") or {}).values():
                port = _port((spec or {}).get("endpoint", ""))
                if port is not None:
                    found.add(port)
    return found
