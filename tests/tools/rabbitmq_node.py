"""A throwaway RabbitMQ node on loopback ports, in its own directory.

Everything binds 127.0.0.1 (AMQP, AMQPS, management, prometheus, Erlang distribution and
an epmd on a private port that this module starts itself and stops by its PID); the node
runs in its own process group so that it can be killed as a whole, and ``close()`` leaves
nothing behind. RabbitMQ from the testing root (``tests/tools/toolchain.py``: Debian testing's
``rabbitmq-server``, the real script under ``/usr/lib/rabbitmq/bin``, not the su wrapper).
Ports are taken below 32768, outside Linux's ephemeral range, where an outgoing connection can
grab a port between the check and the bind (``eaddrinuse`` was seen there for the distribution
port).

tests/tools/rabbitmq_cluster.py builds an N-node cluster out of these nodes."""

from __future__ import annotations

import base64
import json
import os
import random
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
from typing import Any

from tools import toolchain

# RabbitMQ and its epmd from the testing root (tests/tools/toolchain.py): the wrapper execs the
# real server script inside the root, so the PID and process group here are the node's own.
SERVER = toolchain.tool("rabbitmq-server")
CTL = toolchain.tool("rabbitmqctl")
EPMD = toolchain.tool("epmd")
PLUGINS = ["rabbitmq_management", "rabbitmq_prometheus", "rabbitmq_shovel", "rabbitmq_shovel_management"]


# Below the ephemeral range (32768-60999). The CLI tools use distribution ports
# RABBITMQ_DIST_PORT + 10000..10010, so every port handed out stays under 22700.
PORT_RANGE = (12000, 22700)
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port below 32768 that is free now and not handed out before by this process."""
    for _ in range(500):
        port = random.randrange(*PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {PORT_RANGE}")


def wait_for_port(port: int, timeout: float, alive=lambda: True) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not alive():
            raise RuntimeError(f"the process meant to listen on 127.0.0.1:{port} exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Epmd:
    """The Erlang port mapper on a private loopback port, started here in its own session
    (not daemonised) so that its PID is known and ``stop()`` ends exactly this process.
    Nodes find it through ERL_EPMD_PORT; an epmd a node would start itself daemonises out
    of the node's process group and could then only be found by name."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10) -> Epmd:
        self.proc = subprocess.Popen(
            [EPMD, "-address", "127.0.0.1", "-port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc = self.proc
        wait_for_port(self.port, timeout, alive=lambda: proc.poll() is None)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it lingers; reaped either way."""
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


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
        name: str | None = None,
        epmd: Epmd | None = None,
        cookie: str | None = None,
    ):
        """``epmd``: a shared, already started port mapper (a cluster's); without one the node
        starts its own on ``start()`` and stops it on ``close()``. ``cookie``: the Erlang
        cookie (nodes of one cluster share it); without one Erlang makes one up."""
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name or f"rabbit-test-{secrets.token_hex(3)}@localhost"
        self.amqp_port = free_port() if plaintext else None
        self.node_port = self.amqp_port or free_port()  # what RABBITMQ_NODE_PORT names
        self.amqps_port = free_port() if tls else None
        self.mgmt_port, self.prom_port, self.dist_port = (free_port() for _ in range(3))
        self.own_epmd = epmd is None
        self.epmd = epmd or Epmd()
        self.epmd_port = self.epmd.port
        self.admin = admin
        self.proc: subprocess.Popen | None = None
        if cookie:
            path = self.dir / ".erlang.cookie"
            if path.exists():
                path.chmod(0o600)
            path.write_text(cookie)
            path.chmod(0o400)
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
    @property
    def pid_file(self) -> Path:
        return self.dir / "rabbit.pid"

    def launch(self) -> RabbitNode:
        """Start the node (and its own epmd if it has no shared one) without waiting for it.
        The same data directory is reused, so a relaunch after ``kill()`` is a node restart."""
        if self.own_epmd and (self.epmd.proc is None or self.epmd.proc.poll() is not None):
            self.epmd.start()
        self.pid_file.unlink(missing_ok=True)  # a stale one would make `rabbitmqctl wait` watch a dead PID
        with open(self.dir / "server.out", "ab") as log:
            self.proc = subprocess.Popen(
                [SERVER], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait_booted(self, timeout: float = 140) -> None:
        """`rabbitmqctl wait <pidfile>`: returns once the rabbit application runs (unlike
        `await_startup`, it works before the node has registered with epmd)."""
        proc = self.ctl("wait", "--timeout", str(int(timeout)), str(self.pid_file), timeout=timeout + 30, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name} did not boot: {proc.stdout}{proc.stderr}\n{self.tail()}")

    def wait_ready(self, timeout: float = 90) -> RabbitNode:
        """Until the management API answers and the AMQP(S) listeners accept."""
        assert self.proc is not None, "launch() first"
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

    def start(self, timeout: float = 90) -> RabbitNode:
        return self.launch().wait_ready(timeout)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ctl(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """rabbitmqctl against this node, with the node's own environment (cookie, epmd)."""
        proc = subprocess.run(
            [CTL, "-n", self.name, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.name}: {proc.stdout}{proc.stderr}")
        return proc

    def stop(self, timeout: float = 60) -> None:
        """Graceful: rabbitmqctl stop, then wait for the process group to end."""
        if not self.proc or self.proc.poll() is not None:
            return
        self.ctl("stop", timeout=timeout, check=False)
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
        if self.own_epmd:
            self.epmd.stop()

    def tail(self, lines: int = 30) -> str:
        out = []
        for path in [self.dir / "server.out", *sorted((self.dir / "log").glob("*.log"))]:
            if path.exists():
                out += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out[-lines:])

    # ------------------------------------------------------------------ HTTP API
    def api(self, method: str, path: str, body=None, auth: tuple[str, str] | None = None, timeout: float = 10) -> Any:
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
