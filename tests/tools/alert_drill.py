"""The alert-path drill: the stack's rendered rules and routing in a real Prometheus and a real
Alertmanager (Debian's ``prometheus`` 2.42 and ``prometheus-alertmanager`` 0.25), local
receivers standing in for PagerDuty and Slack, and a synthetic service with chaos-lite
failure injection.

What the drill changes in the rendered configuration, and nothing else (``drill_rules`` /
``drill_alertmanager``; tests/test_alert_drill.py proves the diff):

* every duration of the alert timeline divided by one factor, ``FACTOR``: the rules' ``for:``
  and rule-group ``interval``; Alertmanager's ``group_wait``, ``group_interval``,
  ``repeat_interval`` and ``resolve_timeout``; and the drill Prometheus' scrape and evaluation
  intervals (the ServiceMonitor's 30 s, the operator's default 30 s evaluation interval) and
  its alert resend delay (Prometheus' default 1 m).
  The PromQL range windows (``[5m]``, ``[1h]``...) are part of the expressions and stay as
  rendered, so rate-based alerts still need real time for their windows to fill;
* the receivers' endpoints: PagerDuty gets a local ``url`` (the Events API v2 path); the files
  the receivers read their credentials from (``routing_key_file``, ``api_url_file``) move from
  the Kubernetes secret mount to a directory of the drill, same file names; the webhook's
  ``url_file`` (Alertmanager >= 0.26) becomes ``url`` because Debian's 0.25 lacks it.

Every process binds 127.0.0.1, runs in its own process group and is stopped by its PID.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from tools import toolchain

from components.render import alertmanager as AM

# Prometheus and Alertmanager of the testing root (tests/tools/toolchain.py): the versions the
# pinned kube-prometheus-stack runs, same major.minor (tests/test_versions.py).
PROMETHEUS = toolchain.tool("prometheus")
ALERTMANAGER = toolchain.tool("alertmanager")

# One factor for every duration of the alert timeline (see the module docstring).
FACTOR = 30
# What the cluster runs, before the factor: the broker ServiceMonitor scrapes every 30 s
# (components.render.broker.service_monitor); kube-prometheus-stack leaves
# prometheusSpec.evaluationInterval empty, so the operator's default of 30 s applies.
CLUSTER_EVALUATION_INTERVAL = "30s"
# Prometheus re-sends a firing alert to Alertmanager every --rules.alert.resend-delay (default
# 1m, which the operator keeps); an alert sent before Alertmanager is discovered waits for it.
CLUSTER_RESEND_DELAY = "1m"

RULE_DURATION_KEYS = ("for", "interval")
ROUTE_DURATION_KEYS = ("group_wait", "group_interval", "repeat_interval")
PAGERDUTY_PATH = "/pagerduty/v2/enqueue"
SLACK_PATH = "/slack/webhook"
DEADMANS_PATH = "/deadmans/ping"

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "y": 31_536_000_000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


# ----------------------------------------------------------------------------- durations
def duration_ms(text: str) -> int:
    """A Prometheus duration ("1h30m", "500ms") in milliseconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNITS_MS[u] for n, u in parts)


def format_ms(ms: int) -> str:
    if ms == 0:
        return "0s"
    for unit in ("h", "m", "s"):
        if ms % _UNITS_MS[unit] == 0:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return f"{ms}ms"


def shorten(text: str, factor: int = FACTOR) -> str:
    """``text`` divided by ``factor``, exactly (a duration the factor does not divide is refused)."""
    ms = duration_ms(text)
    if ms % factor:
        raise ValueError(f"{text} is not divisible by the drill factor {factor}")
    return format_ms(ms // factor)


# ----------------------------------------------------------------------------- the drilled configuration
def drill_rules(rules: dict, factor: int = FACTOR) -> dict:
    """The rendered rules file with ``for:`` and group ``interval`` divided by ``factor``."""
    out = copy.deepcopy(rules)
    for group in out["groups"]:
        if "interval" in group:
            group["interval"] = shorten(group["interval"], factor)
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = shorten(rule["for"], factor)
    return out


def _shorten_route(route: dict, factor: int) -> None:
    for key in ROUTE_DURATION_KEYS:
        if key in route:
            route[key] = shorten(route[key], factor)
    for child in route.get("routes", []):
        _shorten_route(child, factor)


def drill_alertmanager(config: dict, secret_dir: Path, receiver_base: str, factor: int = FACTOR) -> dict:
    """The rendered Alertmanager config with its timings divided by ``factor`` and its
    receivers pointed at the local stand-ins (credential files in ``secret_dir``)."""
    out = copy.deepcopy(config)
    if "resolve_timeout" in out.get("global", {}):
        out["global"]["resolve_timeout"] = shorten(out["global"]["resolve_timeout"], factor)
    _shorten_route(out["route"], factor)

    def relocate(path: str) -> str:
        assert path.startswith(AM.SECRET_DIR + "/"), path
        return str(Path(secret_dir) / Path(path).name)

    for receiver in out["receivers"]:
        for pd in receiver.get("pagerduty_configs", []):
            pd["routing_key_file"] = relocate(pd["routing_key_file"])
            pd["url"] = receiver_base + PAGERDUTY_PATH
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = relocate(slack["api_url_file"])
        for hook in receiver.get("webhook_configs", []):
            hook.pop("url_file")
            hook["url"] = receiver_base + DEADMANS_PATH
    return out


def secret_files(secret_dir: Path, receiver_base: str, routing_key: str) -> dict[str, str]:
    """The contents of the receivers' credential files (the keys of the Kubernetes secret)."""
    return {
        "pagerduty-routing-key": routing_key,
        "slack-webhook-url": receiver_base + SLACK_PATH,
        "deadmans-switch-url": receiver_base + DEADMANS_PATH,
    }


def relabel_config(relabeling: dict) -> dict:
    """A ServiceMonitor relabeling (camelCase CRD fields) as Prometheus configuration."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return {names.get(k, k): v for k, v in relabeling.items()}


def scrape_configs(service_monitor: dict, broker_targets: list[str], service_targets: dict[str, str]) -> list[dict]:
    """One scrape job per ServiceMonitor endpoint (path, params and relabelings as rendered),
    with the labels the Prometheus operator gives such targets (job = the Service, namespace,
    service, endpoint = the port name); plain HTTP because the local nodes serve their metrics
    without TLS. Plus one job per synthetic service."""
    meta = service_monitor["metadata"]
    jobs = []
    for i, endpoint in enumerate(service_monitor["spec"]["endpoints"]):
        labels = {"namespace": meta["namespace"], "service": meta["name"], "endpoint": endpoint["port"]}
        job: dict[str, Any] = {
            "job_name": f"servicemonitor-{meta['name']}-{i}",
            "metrics_path": endpoint["path"],
            "static_configs": [{"targets": broker_targets, "labels": labels}],
            "relabel_configs": [{"target_label": "job", "replacement": meta["name"]}]
            + [relabel_config(r) for r in endpoint.get("relabelings", [])],
        }
        if endpoint.get("params"):
            job["params"] = endpoint["params"]
        jobs.append(job)
    for name, target in service_targets.items():
        # honor_labels: the series keep their own namespace/service labels, as kube-state-metrics'
        # ServiceMonitor in kube-prometheus-stack does
        jobs.append({"job_name": name, "honor_labels": True, "static_configs": [{"targets": [target]}]})
    return jobs


def prometheus_config(
    service_monitor: dict, broker_targets: list[str], service_targets: dict[str, str], alertmanager: str
) -> dict:
    scrape = shorten(service_monitor["spec"]["endpoints"][0]["interval"])
    return {
        "global": {
            "scrape_interval": scrape,
            "scrape_timeout": scrape,
            "evaluation_interval": shorten(CLUSTER_EVALUATION_INTERVAL),
        },
        "rule_files": ["rules.yaml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": scrape_configs(service_monitor, broker_targets, service_targets),
    }


# ----------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


class Server:
    """A throwaway server process in its own process group, stopped by its PID."""

    def __init__(self, name: str, argv: list[str], workdir: Path, port: int, ready_path: str):
        self.name, self.argv, self.dir, self.port, self.ready_path = name, argv, workdir, port, ready_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> Server:
        log = open(self.dir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            self.argv, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready on {self.url} in {timeout}s: {self.tail()}")

    def stop(self) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def tail(self, lines: int = 20) -> str:
        path = self.dir / f"{self.name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def start_prometheus(workdir: Path, config: dict, rules: dict) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (workdir / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    port = free_port()
    argv = [
        PROMETHEUS,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
        f"--rules.alert.resend-delay={shorten(CLUSTER_RESEND_DELAY)}",
    ]
    return Server("prometheus", argv, workdir, port, "/-/ready").start()


def start_alertmanager(workdir: Path, config: dict) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    argv = [
        ALERTMANAGER,
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip listener (it would bind 0.0.0.0:9094)
    ]
    return Server("alertmanager", argv, workdir, port, "/-/ready").start()


def listening_addresses(pid: int) -> list[str]:
    """The local addresses the process ``pid`` listens on (TCP and UDP)."""
    out = subprocess.run(["ss", "-ltunpH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[4] for line in out.splitlines() if f"pid={pid}," in line]


# ----------------------------------------------------------------------------- receivers
@dataclass
class Notification:
    at: float  # time.monotonic() on arrival
    path: str
    body: dict


@dataclass
class Receivers:
    """Local stand-ins for the PagerDuty Events API v2, the Slack webhook and the dead-man's
    switch; every notification is recorded with its arrival time."""

    received: list[Notification] = field(default_factory=list)
    lock: threading.Condition = field(default_factory=threading.Condition)
    server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        assert self.server
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Receivers:
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with receivers.lock:
                    receivers.received.append(Notification(time.monotonic(), self.path, body))
                    receivers.lock.notify_all()
                if self.path == PAGERDUTY_PATH:  # what the Events API v2 answers
                    reply, status = {"status": "success", "message": "Event processed"}, 202
                else:
                    reply, status = {"ok": True}, 200
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class names it)
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def wait(self, match: Callable[[Notification], bool], timeout: float, since: float = 0.0) -> Notification | None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for n in self.received:
                    if n.at >= since and match(n):
                        return n
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.lock.wait(left)

    def at(self, path: str, since: float = 0.0) -> list[Notification]:
        with self.lock:
            return [n for n in self.received if n.path == path and n.at >= since]


def pagerduty(summary_prefix: str, action: str = "trigger") -> Callable[[Notification], bool]:
    return lambda n: (
        n.path == PAGERDUTY_PATH
        and n.body.get("event_action") == action
        and n.body.get("payload", {}).get("summary", "").startswith(summary_prefix)
    )


def slack(alertname: str, needle: str = "") -> Callable[[Notification], bool]:
    def match(n: Notification) -> bool:
        if n.path != SLACK_PATH:
            return False
        text = json.dumps(n.body)
        return any(alertname in a.get("title", "") for a in n.body.get("attachments", [])) and needle in text

    return match


# ----------------------------------------------------------------------------- the synthetic service
class SyntheticService:
    """Emits the metric contract (published/stored counters by outcome, end-to-end latency
    histogram) for one service; ``failure_share`` of publishes fail, as the sprint's
    chaos-lite does (random, per publish). Serves /metrics and /chaos (GET shows, POST
    {"failure_rate_pct": 5} sets) on 127.0.0.1."""

    BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

    def __init__(self, contract, service: str, rate_per_second: int = 200, seed: int = 11):
        self.m, self.service, self.rate = contract, service, rate_per_second
        self.failure_share = 0.0
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.published = {contract.success_value: 0, contract.failure_value: 0}
        self.stored = {contract.success_value: 0, contract.failure_value: 0}
        self.latency_buckets = [0] * len(self.BUCKETS)
        self.latency_count, self.latency_sum = 0, 0.0
        self.server: ThreadingHTTPServer | None = None
        self.stopped = threading.Event()

    @property
    def target(self) -> str:
        assert self.server
        return f"127.0.0.1:{self.server.server_address[1]}"

    def tick(self, n: int) -> None:
        ok, failed = self.m.success_value, self.m.failure_value
        with self.lock:
            for _ in range(n):
                if self.random.random() < self.failure_share:
                    self.published[failed] += 1  # chaos: the publish fails, nothing reaches the consumer
                    continue
                self.published[ok] += 1
                self.stored[ok] += 1
                latency = self.random.uniform(0.01, 0.09)
                self.latency_count += 1
                self.latency_sum += latency
                for i, le in enumerate(self.BUCKETS):
                    if latency <= le:
                        self.latency_buckets[i] += 1

    def exposition(self) -> str:
        m, svc = self.m, self.service
        lines = []
        with self.lock:
            for name, counts in ((m.events_published, self.published), (m.events_stored, self.stored)):
                lines.append(f"# TYPE {name} counter")
                for outcome, value in counts.items():
                    lines.append(f'{name}{{{m.service_label}="{svc}",{m.outcome_label}="{outcome}"}} {value}')
            h = m.end_to_end_latency
            lines.append(f"# TYPE {h} histogram")
            for le, value in zip(self.BUCKETS, self.latency_buckets, strict=True):
                lines.append(f'{h}_bucket{{{m.service_label}="{svc}",le="{le:g}"}} {value}')
            lines.append(f'{h}_bucket{{{m.service_label}="{svc}",le="+Inf"}} {self.latency_count}')
            lines.append(f'{h}_sum{{{m.service_label}="{svc}"}} {self.latency_sum}')
            lines.append(f'{h}_count{{{m.service_label}="{svc}"}} {self.latency_count}')
        return "\n".join(lines) + "\n"

    def start(self) -> SyntheticService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, data: bytes, ctype: str) -> None:
                self.send_response(200)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                if self.path == "/metrics":
                    self._send(service.exposition().encode(), "text/plain; version=0.0.4")
                else:
                    chaos = {"enabled": service.failure_share > 0, "failure_rate_pct": service.failure_share * 100}
                    self._send(json.dumps({"status": "ok", "chaos": chaos}).encode(), "application/json")

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                service.failure_share = float(body["failure_rate_pct"]) / 100
                self.do_GET()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class names it)
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

        def run() -> None:
            step = 0.05
            while not self.stopped.wait(step):
                self.tick(max(1, int(self.rate * step)))

        threading.Thread(target=run, daemon=True).start()
        return self

    def set_failure_rate(self, percent: float) -> dict:
        req = urllib.request.Request(
            f"http://{self.target}/chaos",
            data=json.dumps({"failure_rate_pct": percent}).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        self.stopped.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()


class KubeStateStandIn:
    """Stands in for kube-state-metrics, which only exists in a cluster: serves the series
    BrokerNodeCountLow reads, ``kube_statefulset_status_replicas_ready``, with the number of
    broker nodes whose process is alive (``ready()``)."""

    def __init__(self, namespace: str, statefulset: str, ready: Callable[[], int]):
        self.namespace, self.statefulset, self.ready = namespace, statefulset, ready
        self.server: ThreadingHTTPServer | None = None

    @property
    def target(self) -> str:
        assert self.server
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> KubeStateStandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                data = (
                    "# TYPE kube_statefulset_status_replicas_ready gauge\n"
                    f'kube_statefulset_status_replicas_ready{{namespace="{stand_in.namespace}",'
                    f'statefulset="{stand_in.statefulset}"}} {stand_in.ready()}\n'
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "text/plain; version=0.0.4")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class names it)
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def query(prometheus: Server, promql: str) -> list[dict]:
    url = f"{prometheus.url}/api/v1/query?query={urllib.parse.quote(promql)}"
    return http_json(url)["data"]["result"]


def wait_until(check: Callable[[], Any], timeout: float, step: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(step)
    return None
