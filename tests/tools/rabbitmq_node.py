"""A throwaway RabbitMQ node on loopback ports, in its own directory.

Everything binds 127.0.0.1 (AMQP, AMQPS, management, prometheus, Erlang distribution and
its own epmd on a private port); the node runs in its own process group so that it can be
killed as a whole, and ``close()`` leaves nothing behind. Debian's ``rabbitmq-server``
(``/usr/lib/rabbitmq/bin/rabbitmq-server``, the real script, not the su wrapper)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
PLUGINS = ["rabbitmq_management", "rabbitmq_prometheus", "rabbitmq_shovel", "rabbitmq_shovel_management"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class TlsFiles:
    cacert: Path
    cert: Path
    key: Path


class RabbitNode:
    def __init__(
        self,
        workdir: Path,
        *,
        extra_config: str = "",
        tls: TlsFiles | None = None,
        plaintext: bool = True,
        admin: tuple[str, str] = ("guest", "guest"),
    ):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = f"rabbit-test-{secrets.token_hex(3)}@localhost"
        self.amqp_port = free_port() if plaintext else None
        self.node_port = self.amqp_port or free_port()  # what RABBITMQ_NODE_PORT names
        self.amqps_port = free_port() if tls else None
        self.mgmt_port, self.prom_port, self.dist_port, self.epmd_port = (free_port() for _ in range(4))
        self.admin = admin
        self.proc: subprocess.Popen | None = None
        lines = []
        lines.append(f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}" if plaintext else "listeners.tcp = none")
        if tls:
            lines += [
                f"listeners.ssl.1 = 127.0.0.1:{self.amqps_port}",
                f"ssl_options.cacertfile = {tls.cacert}",
                f"ssl_options.certfile = {tls.cert}",
                f"ssl_options.keyfile = {tls.key}",
            ]
        lines += [
            "management.tcp.ip = 127.0.0.1",
            f"management.tcp.port = {self.mgmt_port}",
            "prometheus.tcp.ip = 127.0.0.1",
            f"prometheus.tcp.port = {self.prom_port}",
            "log.console = false",
            "log.file.level = info",
            extra_config,
        ]
        (self.dir / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (self.dir / "enabled_plugins").write_text("[" + ",".join(PLUGINS) + "].\n")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(self.dir),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.node_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbit.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
        }

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 90) -> RabbitNode:
        log = open(self.dir / "server.out", "ab")
        self.proc = subprocess.Popen(
            [SERVER], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited with {self.proc.returncode}: {self.tail()}")
            try:
                self.api("GET", "/api/overview")
                # the management API can answer before the AMQP(S) listeners accept
                for port in (self.amqp_port, self.amqps_port):
                    if port:
                        socket.create_connection(("127.0.0.1", port), timeout=2).close()
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise TimeoutError(f"RabbitMQ did not answer on 127.0.0.1:{self.mgmt_port} in {timeout}s: {self.tail()}")

    def stop(self, timeout: float = 60) -> None:
        """Graceful: rabbitmqctl stop, then wait for the process group to end."""
        if not self.proc or self.proc.poll() is not None:
            return
        subprocess.run([CTL, "-n", self.name, "stop"], env=self.env, capture_output=True, timeout=timeout)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole node (the Erlang VM and its helpers)."""
        if not self.proc:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)

    def close(self) -> None:
        self.kill()
        subprocess.run(["epmd", "-kill"], env=self.env, capture_output=True, timeout=10)
        # epmd daemonises out of our group: find it by its private port as a last resort.
        subprocess.run(["pkill", "-f", f"epmd.*-port {self.epmd_port}"], capture_output=True)

    def tail(self, lines: int = 30) -> str:
        out = []
        for path in [self.dir / "server.out", *sorted((self.dir / "log").glob("*.log"))]:
            if path.exists():
                out += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out[-lines:])

    # ------------------------------------------------------------------ HTTP API
    def api(self, method: str, path: str, body=None, auth: tuple[str, str] | None = None, timeout: float = 10):
        user, password = auth or self.admin
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.mgmt_port}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "content-type": "application/json",
                "authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                data = resp.read()
                return json.loads(data) if data else None
        except urllib.error.HTTPError as exc:  # keep the broker's reason in the message
            exc.msg = f"{exc.msg}: {exc.read().decode(errors='replace')[:500]}"
            raise

    def import_definitions(self, definitions: dict) -> None:
        self.api("POST", "/api/definitions", definitions, timeout=60)

    def metrics(self, path: str = "/metrics") -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.prom_port}{path}", timeout=10) as resp:
            return resp.read().decode()

    @staticmethod
    def vhost_path(vhost: str) -> str:
        return urllib.parse.quote(vhost, safe="")
