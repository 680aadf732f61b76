"""A throwaway RabbitMQ node shaped like prod for the client proofs: AMQPS only, the stack's
certificate names, the rendered prod definitions loaded at boot (as the cluster loads them),
and the per-service client contracts read back from the same render.

Clients connect with the connection string the landing zone hands them (the Key Vault
secret ``broker-<svc>-url``, whose host is ``rabbitmq.messaging.svc.cluster.local``); the
test resolves the cluster's DNS names to 127.0.0.1 (``cluster_dns``) so TLS host name
checks run against the real names, and only the port is the node's loopback port."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import ROOT
from test_broker_rabbitmq import real_definitions
from test_broker_tls import issue_certificates
from tools.rabbitmq_node import RabbitNode, TlsFiles

from components import settings as S
from components.render import broker as render
from components.render import clients
from dryrun.runner import config_from_yaml

CLUSTER_SUFFIXES = (".svc.cluster.local", ".svc")


def prod_settings() -> S.StackSettings:
    return S.from_config_map(config_from_yaml((ROOT / "Pulumi.prod.yaml").read_text())[0], "prod")


@dataclass
class ProdBroker:
    settings: S.StackSettings
    nodes: list[RabbitNode]
    tls: TlsFiles
    passwords: dict[str, str]
    definitions: dict  # rendered with placeholder hashes: exactly build/prod/rabbitmq/definitions.json
    contracts: dict[str, dict]  # exactly build/prod/rabbitmq/clients/*.json
    cluster: Any = None  # tools.rabbitmq_cluster.RabbitCluster when the nodes form one

    @property
    def node(self) -> RabbitNode:
        return self.nodes[0]

    def url(self, service: str, node: RabbitNode | None = None, host: str | None = None) -> str:
        """The service's connection string as Key Vault holds it, pointed at a node's port."""
        node = node or self.node
        url = render.connection_string(self.settings, service, self.passwords[render.user_name(service)], host=host)
        return url.replace(f":{render.AMQPS}/", f":{node.amqps_port}/", 1)

    def node_urls(self, service: str) -> list[str]:
        """One URL per running node, with the node names of the contract's ``amqps.nodes``."""
        hosts = [urllib.parse.urlsplit(u).hostname for u in self.contracts[service]["amqps"]["nodes"]]
        return [self.url(service, node, host) for node, host in zip(self.nodes, hosts, strict=False)]

    def take(self, queue: str, count: int = 10_000) -> list[dict]:
        """Take (ack) up to ``count`` messages from a queue as the platform admin."""
        path = f"/api/queues/{RabbitNode.vhost_path(self.settings.vhost)}/{urllib.parse.quote(queue, safe='')}/get"
        got = self.node.api("POST", path, {"count": count, "ackmode": "ack_requeue_false", "encoding": "auto"})
        assert isinstance(got, list)
        return got

    def vhost_definitions(self) -> dict:
        found = self.node.api("GET", f"/api/definitions/{RabbitNode.vhost_path(self.settings.vhost)}")
        assert isinstance(found, dict)
        return found


@contextlib.contextmanager
def cluster_dns() -> Iterator[None]:
    """Resolve the cluster's service and pod names to 127.0.0.1 inside this process."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode()
        if isinstance(host, str) and host.endswith(CLUSTER_SUFFIXES):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = real


@contextlib.contextmanager
def prod_broker(work: Path) -> Iterator[ProdBroker]:
    s = prod_settings()
    assert s.broker.plaintext_listener is False
    files = issue_certificates(work, render.server_dns_names(s))
    passwords = {u: secrets.token_urlsafe(24) for u in render.users_and_secrets(s)}
    (work / "definitions.json").write_text(json.dumps(real_definitions(s, passwords)))
    config = render.additional_config(s).replace(f"{render.DEFINITIONS_DIR}/", f"{work}/")
    node = RabbitNode(
        work / "node",
        extra_config=config,
        tls=files,
        plaintext=False,
        admin=(render.ADMIN_USER, passwords[render.ADMIN_USER]),
    )
    definitions = render.definitions(s, render.placeholder_hashes(s))
    try:
        node.start()
        expected, names, deadline = {q["name"] for q in definitions["queues"]}, set(), time.time() + 30
        while names != expected and time.time() < deadline:  # the boot-time import lags start briefly
            names = {q["name"] for q in node.api("GET", f"/api/queues/{RabbitNode.vhost_path(s.vhost)}") or []}
            time.sleep(0.3)
        assert names == expected, f"definitions not loaded at boot: {sorted(names)}"
        yield ProdBroker(s, [node], files, passwords, definitions, clients.client_contracts(s, definitions))
    finally:
        node.close()
