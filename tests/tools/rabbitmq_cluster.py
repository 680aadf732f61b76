"""A throwaway N-node RabbitMQ cluster on loopback, for tests and benchmarks.

    cluster = RabbitCluster.for_stack(tmp / "cluster", settings)   # prod topology, 3 nodes
    cluster.start()              # boot in parallel, join, definitions imported once all are in
    leader = cluster.leader("candystore.events")       # index of the node holding the leader
    cluster.kill(leader); ...; cluster.restart(leader)  # SIGKILL by PID, relaunch on the same data
    cluster.wait_for_members("candystore.events", 3)
    cluster.close()

How it mirrors the RabbitMQ Cluster Operator (what runs in the stack):
- every node gets the operator's default configuration (``10-operatorDefaults.conf``:
  ``queue_master_locator``, ``disk_free_limit``, ``cluster_partition_handling``,
  ``cluster_formation.target_cluster_size_hint = <replicas>``, ``cluster_name``) followed by the
  stack's rendered ``additionalConfig`` (``components/render/broker.additional_config``), whose
  ``load_definitions`` points at the stack's rendered definitions (with password hashes of
  generated passwords) instead of the secret mount ``/etc/rabbitmq/definitions``;
- nodes join as the operator's peer discovery makes them do; the size hint makes every node
  but the last to join skip the queue import, so the quorum queues are declared once, with a
  member on every node (without it they would get one member: cluster-operator issue #1123);
- Kubernetes' peer discovery is replaced by ``rabbitmqctl join_cluster`` on loopback.

Loopback only: every socket any process of the cluster listens on is checked to be on
127.0.0.1 / ::1 (``assert_loopback_only``). Processes are started and stopped by PID: one epmd
for the cluster (own session) and each node's process group; no process is found by name.
Ports are below 32768 (tests/tools/rabbitmq_node.py).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools import toolchain
from tools.rabbitmq_node import Epmd, RabbitNode, TlsFiles

UPGRADE = toolchain.tool("rabbitmq-upgrade")


def operator_defaults(replicas: int, cluster_name: str) -> str:
    """The Cluster Operator's 10-operatorDefaults.conf without the Kubernetes peer discovery."""
    return "\n".join(
        [
            "queue_master_locator = min-masters",
            "disk_free_limit.absolute = 2GB",
            "cluster_partition_handling = pause_minority",
            f"cluster_formation.target_cluster_size_hint = {replicas}",
            f"cluster_name = {cluster_name}",
        ]
    )


class RabbitCluster:
    def __init__(
        self,
        workdir: Path,
        n: int = 3,
        *,
        extra_config: str = "",
        admin: tuple[str, str] = ("guest", "guest"),
        cluster_name: str = "rabbitmq",
        tls: TlsFiles | None = None,
        plaintext: bool = True,
        vhost: str = "/",
    ):
        """``extra_config``: the rendered additionalConfig (after the operator defaults)."""
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.vhost = vhost
        self.epmd = Epmd()
        cookie = secrets.token_hex(20)
        token = secrets.token_hex(3)
        config = operator_defaults(n, cluster_name) + "\n" + extra_config
        self.nodes = [
            RabbitNode(
                self.dir / f"node{i + 1}",
                extra_config=config,
                tls=tls,
                plaintext=plaintext,
                admin=admin,
                name=f"rabbit{i + 1}-{token}@localhost",
                epmd=self.epmd,
                cookie=cookie,
            )
            for i in range(n)
        ]
        self.wildcard_udp: list[str] = []
        # set by for_stack()
        self.settings: Any = None
        self.passwords: dict[str, str] = {}

    # ------------------------------------------------------------------ the stack
    @classmethod
    def for_stack(cls, workdir: Path, settings, n: int | None = None, **kwargs) -> RabbitCluster:
        """A cluster that boots with the stack's rendered definitions and additionalConfig.
        Passwords are generated (``cluster.passwords[user]``); the harness logs in as the
        definitions' administrator, as the operator does."""
        from components.render import broker as render

        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        passwords = {u: secrets.token_urlsafe(24) for u in render.users_and_secrets(settings)}
        hashes = {u: render.password_hash(pw, render.stable_salt(u, 0)) for u, pw in passwords.items()}
        definitions = workdir / "definitions.json"
        definitions.write_text(json.dumps(render.definitions(settings, hashes), indent=2))
        definitions.chmod(0o600)
        config = render.additional_config(settings).replace(f"{render.DEFINITIONS_DIR}/", f"{workdir}/")
        assert f"load_definitions = {definitions}" in config
        cluster = cls(
            workdir,
            n or settings.broker.replicas,
            extra_config=config,
            admin=(render.ADMIN_USER, passwords[render.ADMIN_USER]),
            cluster_name=settings.broker.cluster_name,
            vhost=settings.vhost,
            **kwargs,
        )
        cluster.settings, cluster.passwords = settings, passwords
        return cluster

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 180) -> RabbitCluster:
        """Boot all nodes in parallel, join nodes 2..N to node 1, wait until every node is
        running, every listener is checked and (with definitions) every quorum queue has N
        members."""
        started = time.monotonic()
        self.epmd.start()
        for node in self.nodes:
            node.launch()
        self._parallel(lambda node: node.wait_booted(timeout))
        seed = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", seed.name)
            node.ctl("start_app")
        self._parallel(lambda node: node.wait_ready(timeout))
        self.wait_for_nodes(len(self.nodes), timeout=60)
        self.assert_loopback_only()
        if self.settings is not None:
            for queue in self.queue_names():
                self.wait_for_members(queue, len(self.nodes), timeout=60)
        self.boot_seconds = time.monotonic() - started
        return self

    def close(self) -> None:
        for node in self.nodes:
            node.kill()
        self.epmd.stop()

    def __enter__(self) -> RabbitCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def kill(self, i: int) -> float:
        """SIGKILL node i's whole process group; returns the monotonic time of the kill."""
        t = time.monotonic()
        self.nodes[i].kill()
        return t

    def stop(self, i: int, timeout: float = 120) -> None:
        """Graceful stop of node i (rabbitmqctl stop, then its process ends)."""
        self.nodes[i].stop(timeout)

    def restart(self, i: int, timeout: float = 140) -> None:
        """Relaunch node i on its data directory: it rejoins the cluster by itself."""
        node = self.nodes[i]
        if node.is_running():
            node.stop()
        node.launch()
        node.wait_booted(timeout)
        node.wait_ready(timeout)

    def upgrade_restart(self, i: int, timeout: float = 140) -> dict:
        """One step of a rolling upgrade as the operator's pods do it: the preStop hook
        (``rabbitmq-upgrade await_online_quorum_plus_one`` then ``drain``: leaders move away,
        clients are disconnected), a graceful stop, a start on the same data, and ``revive``
        if the node came back still in maintenance mode. Returns the seconds of each phase."""
        node, phases = self.nodes[i], {}
        t = time.monotonic()
        self.upgrade(i, "await_online_quorum_plus_one", "-t", str(int(timeout)), timeout=timeout + 30)
        self.upgrade(i, "drain", timeout=timeout)
        phases["await+drain"] = time.monotonic() - t
        t = time.monotonic()
        node.stop(timeout)
        phases["stop"] = time.monotonic() - t
        t = time.monotonic()
        node.launch()
        node.wait_booted(timeout)
        node.wait_ready(timeout)
        phases["boot"] = time.monotonic() - t
        phases["drained after boot"] = self.is_being_drained(i)
        if phases["drained after boot"]:
            self.upgrade(i, "revive", timeout=timeout)
        return phases

    def is_being_drained(self, i: int) -> bool:
        out = self.nodes[i].ctl("eval", "rabbit_maintenance:is_being_drained_local_read(node()).").stdout
        return out.strip() == "true"

    def upgrade(self, i: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        node = self.nodes[i]
        proc = subprocess.run(
            [UPGRADE, "-n", node.name, *args], env=node.env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise RuntimeError(f"rabbitmq-upgrade {' '.join(args)} on {node.name}: {proc.stdout}{proc.stderr}")
        return proc

    # ------------------------------------------------------------------ inspection
    def running(self) -> list[int]:
        return [i for i, node in enumerate(self.nodes) if node.is_running()]

    def api(self, method: str, path: str, body=None, timeout: float = 10) -> Any:
        """The management API of the first running node that answers."""
        last: Exception | None = None
        for i in self.running():
            try:
                return self.nodes[i].api(method, path, body, timeout=timeout)
            except urllib.error.HTTPError:
                raise
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                last = exc
        raise RuntimeError(f"no node's management API answers: {last}")

    def index_of(self, node_name: str) -> int:
        return [n.name for n in self.nodes].index(node_name)

    def node_info(self, i: int) -> dict:
        return self.nodes[i].api("GET", f"/api/nodes/{self.nodes[i].name}")

    def running_in_cluster(self) -> set[str]:
        return {n["name"] for n in self.api("GET", "/api/nodes") if n.get("running")}

    def queue_names(self) -> list[str]:
        from components.render import broker as render

        t = self.settings.broker.topology
        plans = render.queue_plans(t, self.settings.services)
        return [p.queue for p in plans] + ["dlq.all"] + [p.dead_letter_queue for p in plans if p.dead_letter_queue]

    def queue(self, name: str) -> dict:
        return self.api("GET", f"/api/queues/{RabbitNode.vhost_path(self.vhost)}/{RabbitNode.vhost_path(name)}")

    def leader(self, queue: str) -> int:
        """Index of the node holding the queue's Raft leader (management API)."""
        return self.index_of(self.queue(queue)["leader"])

    def members(self, queue: str) -> tuple[list[str], list[str]]:
        """(members, online members) of a quorum queue."""
        q = self.queue(queue)
        return q.get("members", []), q.get("online", [])

    def purge(self, queue: str) -> None:
        self.api("DELETE", f"/api/queues/{RabbitNode.vhost_path(self.vhost)}/{RabbitNode.vhost_path(queue)}/contents")

    # ------------------------------------------------------------------ waiting
    def wait_until(self, what: str, check: Callable[[], bool], timeout: float, interval: float = 0.25) -> float:
        """Poll ``check`` until true; returns the seconds it took. Errors count as false."""
        started = time.monotonic()
        last: Exception | None = None
        while time.monotonic() - started < timeout:
            try:
                if check():
                    return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, OSError, RuntimeError, KeyError, ValueError) as exc:
                last = exc
            time.sleep(interval)
        raise TimeoutError(f"{what}: not after {timeout}s (last error: {last})")

    def wait_for_nodes(self, count: int, timeout: float = 60) -> float:
        return self.wait_until(f"{count} running nodes", lambda: len(self.running_in_cluster()) >= count, timeout)

    def wait_for_members(self, queue: str, count: int, timeout: float = 60) -> float:
        """Until the quorum queue has ``count`` members, all of them online."""

        def check() -> bool:
            members, online = self.members(queue)
            return len(members) >= count and set(members) <= set(online)

        return self.wait_until(f"{queue} with {count} online members", check, timeout)

    def wait_for_leader(self, queue: str, not_on: int | None = None, timeout: float = 30) -> float:
        """Until the queue has a leader on a running node (other than ``not_on``)."""
        running = {self.nodes[i].name for i in self.running() if i != not_on}
        return self.wait_until(f"a leader for {queue}", lambda: self.queue(queue).get("leader") in running, timeout)

    # ------------------------------------------------------------------ loopback
    def pids(self) -> set[int]:
        """Every process of the cluster: each node's process group and the epmd."""
        groups = {node.proc.pid for node in self.nodes if node.is_running() and node.proc}
        out = subprocess.run(["ps", "-eo", "pid=,pgid="], capture_output=True, text=True, check=True).stdout
        pids = {int(pid) for pid, pgid in (line.split() for line in out.splitlines()) if int(pgid) in groups}
        return pids | ({self.epmd.pid} if self.epmd.pid else set())

    def listeners(self) -> list[tuple[str, int, str]]:
        """(local address, pid, ss line) of every TCP listener and bound UDP socket of the
        cluster's processes."""
        pids = self.pids()
        out = subprocess.run(["ss", "-lntupH"], capture_output=True, text=True, check=True).stdout
        found = []
        for line in out.splitlines():
            for pid in pids:
                if f"pid={pid}," in line:
                    found.append((line.split()[4], pid, " ".join(line.split())))
        return found

    def assert_loopback_only(self) -> list[tuple[str, int, str]]:
        """Every TCP listener of the cluster's processes is on 127.0.0.1 / ::1. UDP sockets
        bound to a wildcard address (seen now and then on a node's beam.smp, an outgoing
        client socket on an ephemeral port, not a service) are kept in ``wildcard_udp``
        for the caller to report rather than failing the run."""
        found = self.listeners()
        tcp = [f for f in found if f[2].startswith("tcp")]
        assert tcp, "no TCP listener found for the cluster's processes"
        wrong = [f for f in tcp if not f[0].startswith(("127.", "[::1]:"))]
        if wrong:
            pids = ",".join(str(f[1]) for f in wrong)
            ps = subprocess.run(["ps", "-o", "pid=,pgid=,args=", "-p", pids], capture_output=True, text=True).stdout
            raise AssertionError(f"listeners outside loopback: {[f[2] for f in wrong]}\n{ps[:300]}")
        self.wildcard_udp += [f[2] for f in found if f[2].startswith("udp") and not f[0].startswith(("127.", "[::1]:"))]
        return tcp

    # ------------------------------------------------------------------ clients
    def amqp_ports(self) -> list[int]:
        return [node.amqp_port for node in self.nodes if node.amqp_port]

    def _parallel(self, fn: Callable[[RabbitNode], object]) -> None:
        errors: list[BaseException] = []

        def run(node: RabbitNode) -> None:
            try:
                fn(node)
            except BaseException as exc:  # re-raised below, in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(node,)) for node in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
