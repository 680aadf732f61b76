"""Azure Managed Redis's contract, proven on a real Redis (8.0 from the testing root): a
throwaway TLS-only redis-server on 127.0.0.1 with a CA and server certificate made the way the
stack makes its own (tests/test_broker_tls.py), no plaintext listener.

Proven: TLS with the CA and the host name, >= 1.2, plaintext refused; a user per service with
the ACL rule the platform renders (components/render/redis.py, the contract's ``keys.acl``): its
own ``<svc>:*`` keys read, written, expired and used in transactions, and every other key, SCAN,
KEYS, RANDOMKEY, FLUSHALL, CONFIG, ACL, scripting and pub/sub refused; token-style rotation
(re-AUTH with a new secret on the open connection keeps it, the old secret is refused once
retired); VolatileLRU keeps keys without a TTL under memory pressure; the reference client's
correlation tracking end to end (clients/python/correlation.py, and EventClient over AMQPS with
the prod definitions: a child event carries its parent's correlation id)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from conftest import ROOT, require_tool
from redis.credentials import CredentialProvider
from test_broker_tls import issue_certificates
from tools.rabbitmq_node import free_port

from components.render import redis as render

sys.path.insert(0, str(ROOT / "clients" / "python"))
from correlation import CorrelationTracker, RedisConfig, connect  # noqa: E402

HOST = render.host_name("ebb-prod-redis-test1", "westeurope")  # the name the certificate carries
SERVICES = ("bloodbank", "candystore")
ADMIN_PASSWORD = secrets.token_urlsafe(24)


@dataclass
class RedisServer:
    port: int
    cacert: Path
    directory: Path
    users: dict[str, tuple[str, str]]  # service -> (username = its identity's object ID, secret)

    def client(self, username: str | None = None, password: str | None = None, **kw) -> redis.Redis:
        return redis.Redis(
            host="localhost",
            port=self.port,
            ssl=True,
            ssl_ca_certs=str(self.cacert),
            ssl_min_version=ssl.TLSVersion.TLSv1_2,
            username=username or "default",
            password=password if username else ADMIN_PASSWORD,
            decode_responses=True,
            socket_timeout=10,
            **kw,
        )

    def service(self, svc: str) -> redis.Redis:
        return self.client(*self.users[svc])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = require_tool("redis-server")
    d = tmp_path_factory.mktemp("redis")
    tls = issue_certificates(d, ["localhost", HOST])
    port = free_port()
    conf = d / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                "protected-mode yes",
                "port 0",  # no plaintext listener at all (clientProtocol: Encrypted)
                f"tls-port {port}",
                f"tls-cert-file {tls.cert}",
                f"tls-key-file {tls.key}",
                f"tls-ca-cert-file {tls.cacert}",
                "tls-auth-clients no",  # clients prove who they are with AUTH (a token on Azure)
                'tls-protocols "TLSv1.2 TLSv1.3"',  # minimumTlsVersion 1.2
                f"dir {d}",
                'save ""',
                "appendonly no",
                "maxmemory-policy volatile-lru",  # evictionPolicy VolatileLRU
                f"user default on >{ADMIN_PASSWORD} ~* &* +@all",
                f"logfile {d / 'redis.log'}",
                "",
            ]
        )
    )
    proc = subprocess.Popen([binary, str(conf)], cwd=d, start_new_session=True)
    try:
        s = RedisServer(port, tls.cacert, d, {})
        deadline = time.monotonic() + 30
        while True:
            try:
                assert s.client().ping()
                break
            except (redis.ConnectionError, OSError):
                assert proc.poll() is None, (d / "redis.log").read_text()
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)
        admin = s.client()
        for svc in SERVICES:
            username, secret = str(uuid.uuid4()), secrets.token_urlsafe(24)  # an object ID, a token
            admin.execute_command("ACL", "SETUSER", username, "reset", *render.acl_rule(svc).split(), f">{secret}")
            s.users[svc] = (username, secret)
        yield s
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # the wrapper execs: this PID is redis-server itself
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


# ------------------------------------------------------------------ TLS only
def test_tls_with_the_ca_and_the_host_name_1_2_or_newer(server):
    context = ssl.create_default_context(cafile=str(server.cacert))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=HOST) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            tls.sendall(f"AUTH default {ADMIN_PASSWORD}\r\nPING\r\n".encode())
            time.sleep(0.2)
            assert tls.recv(100) == b"+OK\r\n+PONG\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:  # a wrong name
        with pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(raw, server_hostname="other.westeurope.redis.azure.net")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:  # without the CA
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(raw, server_hostname=HOST)

    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(server.cacert))
    with pytest.warns(DeprecationWarning):  # the point: an old client
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError) as exc:
            old.wrap_socket(raw, server_hostname=HOST).do_handshake()
    assert "no protocols available" not in str(exc.value).lower(), exc.value  # the server refused it


def test_plaintext_is_refused(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"PING\r\n")
        raw.settimeout(5)
        try:
            answer = raw.recv(100)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert b"PONG" not in answer
    plain = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    assert server.client().config_get("port") == {"port": "0"}  # no plaintext port is open


# ------------------------------------------------------------------ least privilege inside Redis
def test_the_rendered_rule_is_the_contracts():
    from prod_broker import prod_settings

    from components.render import broker as broker_render
    from components.render import clients

    prod = prod_settings()
    contracts = clients.client_contracts(prod, broker_render.definitions(prod, broker_render.placeholder_hashes(prod)))
    assert contracts["bloodbank"]["redis"]["keys"]["acl"] == render.acl_rule("bloodbank")
    assert contracts["bloodbank"]["redis"]["keys"]["prefix"] == "bloodbank:"
    assert all(c["redis"] is None for svc, c in contracts.items() if svc not in prod.redis_services)


def test_a_service_user_works_on_its_own_keys(server):
    r = server.service("bloodbank")
    user = server.client().acl_getuser(server.users["bloodbank"][0])
    assert user["keys"] == ["~bloodbank:*"] and user["channels"] == ["&bloodbank:*"] and "on" in user["flags"]
    assert r.set("bloodbank:cache:k1", "v", ex=60)
    assert r.get("bloodbank:cache:k1") == "v"
    assert r.hset("bloodbank:corr:event:e1", mapping={"correlationId": "c1"}) == 1
    assert r.expire("bloodbank:corr:event:e1", 60)
    assert 0 < r.ttl("bloodbank:corr:event:e1") <= 60
    assert r.rpush("bloodbank:corr:chain:c1", "e1") == 1
    assert r.mget("bloodbank:cache:k1", "bloodbank:none") == ["v", None]
    with r.pipeline(transaction=True) as pipe:  # MULTI/EXEC on its own keys
        pipe.incr("bloodbank:counter").expire("bloodbank:counter", 60)
        assert pipe.execute() == [1, True]
    assert r.delete("bloodbank:cache:k1") == 1


REFUSED = [
    ("GET", "candystore:cache:k1"),
    ("SET", "candystore:cache:k1", "stolen"),
    ("DEL", "candystore:cache:k1"),
    ("MGET", "bloodbank:x", "candystore:cache:k1"),
    ("SET", "unprefixed", "v"),
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("RANDOMKEY",),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "*"),
    ("ACL", "LIST"),
    ("SAVE",),
    ("EVAL", "return redis.call('GET', KEYS[1])", "1", "bloodbank:x"),
    ("PUBLISH", "bloodbank:events", "x"),
    ("CLIENT", "LIST"),
    ("INFO",),
]


@pytest.mark.parametrize("command", REFUSED, ids=lambda c: " ".join(c[:2]))
def test_everything_else_is_refused(server, command):
    server.client().set("candystore:cache:k1", "candystore's", ex=60)
    r = server.service("bloodbank")
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.execute_command(*command)
    assert server.client().get("candystore:cache:k1") == "candystore's"  # untouched


def test_the_other_service_is_fenced_the_same_way(server):
    c = server.service("candystore")
    server.service("bloodbank").set("bloodbank:secret", "b", ex=60)
    assert c.set("candystore:cache:k2", "v", ex=60)
    with pytest.raises(redis.exceptions.NoPermissionError):
        c.get("bloodbank:secret")


# ------------------------------------------------------------------ rotation
def test_token_style_rotation_keeps_the_connection_and_retires_the_old_secret(server):
    """Entra tokens expire: the client AUTHs again with a new one on the open connection. Here
    the user's secret plays the token: a second one is added, the client re-AUTHs, the first is
    retired (as an expired token is), and only the new one opens connections."""
    admin = server.client()
    username, old = str(uuid.uuid4()), secrets.token_urlsafe(24)
    admin.execute_command("ACL", "SETUSER", username, "reset", *render.acl_rule("bloodbank").split(), f">{old}")
    conn = server.client(username, old, single_connection_client=True)
    assert conn.set("bloodbank:rotation", "1", ex=60)
    before = conn.client_id()

    new = secrets.token_urlsafe(24)
    admin.execute_command("ACL", "SETUSER", username, f">{new}")
    assert conn.execute_command("AUTH", username, new) in (True, b"OK", "OK")
    admin.execute_command("ACL", "SETUSER", username, f"<{old}")  # the old token expires

    assert conn.client_id() == before  # the same connection
    assert conn.get("bloodbank:rotation") == "1"
    with pytest.raises(redis.exceptions.AuthenticationError):
        server.client(username, old).ping()  # a new connection with the old secret
    assert server.client(username, new).get("bloodbank:rotation") == "1"
    conn.close()


# ------------------------------------------------------------------ eviction policy
def test_volatile_lru_evicts_keys_with_a_ttl_and_keeps_the_others(server):
    admin = server.client()
    admin.flushall()
    admin.set("bloodbank:pinned", "no ttl")
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory", str(used + 2 * 1024 * 1024))
    try:
        r = server.service("bloodbank")
        value = "x" * 1024
        with r.pipeline(transaction=False) as pipe:
            for i in range(6000):  # about 6 MiB of cache entries, each with a TTL
                pipe.set(f"bloodbank:cache:{i}", value, ex=600)
            pipe.execute()
        stats = admin.info("stats")
        assert int(stats["evicted_keys"]) > 0
        assert admin.get("bloodbank:pinned") == "no ttl"
        assert admin.dbsize() < 6001
    finally:
        admin.config_set("maxmemory", "0")
        admin.flushall()


# ------------------------------------------------------------------ the reference client
class TokenProvider(CredentialProvider):
    """Stands in for redis-entraid's provider: (object ID, current token)."""

    def __init__(self, username: str, token: str):
        self.username, self.token = username, token

    def get_credentials(self):
        return self.username, self.token

    async def get_credentials_async(self):
        return self.username, self.token


def test_correlation_tracking_with_the_reference_client(server):
    username, secret = server.users["bloodbank"]
    env = {
        "REDIS_HOST": "localhost",
        "REDIS_PORT": str(server.port),
        "REDIS_TLS": "true",
        "REDIS_USERNAME": username,
        "REDIS_SCOPE": render.SCOPE,
        "REDIS_KEY_PREFIX": "bloodbank:",
    }
    config = RedisConfig.from_env(env)
    with pytest.raises(ValueError, match="REDIS_TLS"):
        RedisConfig.from_env({**env, "REDIS_TLS": "false"})

    async def run():
        client = connect(config, TokenProvider(username, secret), cafile=str(server.cacert))
        tracker = CorrelationTracker(client, config.key_prefix, ttl_seconds=300)
        root = uuid.uuid4().hex
        corr = await tracker.correlation_for(None, root)
        await tracker.record(root, corr, None, "transcription.voice.requested")
        child = uuid.uuid4().hex
        child_corr = await tracker.correlation_for(root, child)
        await tracker.record(child, child_corr, root, "transcription.voice.completed")
        assert child_corr == corr == root
        assert await tracker.chain(corr) == [root, child]
        found = await tracker.lookup(child)
        assert found is not None and found["parentId"] == root and found["correlationId"] == root
        assert 0 < await client.ttl(tracker.event_key(child)) <= 300
        assert 0 < await client.ttl(tracker.chain_key(corr)) <= 300
        # candystore's identity cannot read bloodbank's correlation state
        c_user, c_secret = server.users["candystore"]
        other = connect(config, TokenProvider(c_user, c_secret), cafile=str(server.cacert))
        with pytest.raises(redis.exceptions.NoPermissionError):
            await CorrelationTracker(other, "candystore:").redis.lrange(tracker.chain_key(corr), 0, -1)
        await other.aclose()
        await client.aclose()

    asyncio.run(run())
    with pytest.raises(ValueError):
        CorrelationTracker(aioredis.Redis(), "bloodbank")  # a prefix must end in ':'


@pytest.mark.rabbitmq
def test_event_client_tracks_correlation_end_to_end(server, tmp_path_factory):
    """EventClient (AMQPS, prod definitions, the services' own users) with correlation tracking on
    the real Redis: bloodbank publishes a root event and a child of it, transcription consumes both
    with the root's correlation id, and the chain is in bloodbank's keys."""
    from event_client import Contract, EventClient, Metrics
    from prod_broker import cluster_dns, prod_broker
    from prometheus_client import CollectorRegistry
    from tools.rabbitmq_node import SERVER

    require_tool(SERVER)
    username, secret = server.users["bloodbank"]
    config = RedisConfig("localhost", server.port, username, "bloodbank:")

    async def run(b):
        client = connect(config, TokenProvider(username, secret), cafile=str(server.cacert))
        tracker = CorrelationTracker(client, config.key_prefix, ttl_seconds=300)
        pub_contract = Contract.from_dict(b.contracts["bloodbank"])
        publisher = EventClient(
            b.node_urls("bloodbank"),
            pub_contract,
            cafile=b.tls.cacert,
            metrics=Metrics(pub_contract, CollectorRegistry()),
            correlation=tracker,
        )
        sub_contract = Contract.from_dict(b.contracts["transcription"])
        consumer = EventClient(
            b.node_urls("transcription"),
            sub_contract,
            cafile=b.tls.cacert,
            metrics=Metrics(sub_contract, CollectorRegistry()),
        )
        got: list[tuple[str, str | None, str | None]] = []
        stop = asyncio.Event()

        async def handle(message):
            headers = message.headers or {}
            parent = headers.get("event-parent-id")
            got.append((str(message.message_id), message.correlation_id, str(parent) if parent else None))
            if len(got) == 2:
                stop.set()

        task = asyncio.create_task(consumer.consume(handle, stop))
        root = await publisher.publish("transcription.voice.requested", json.dumps({"n": 1}).encode())
        child = await publisher.publish("transcription.voice.completed", json.dumps({"n": 2}).encode(), parent_id=root)
        await asyncio.wait_for(task, 60)
        assert sorted(got) == sorted([(root, root, None), (child, root, root)])
        assert await tracker.chain(root) == [root, child]
        assert publisher.stats["correlation_errors"] == 0
        await publisher.close()
        await consumer.close()
        await client.aclose()

    with prod_broker(tmp_path_factory.mktemp("rabbitmq-correlation")) as b, cluster_dns():
        asyncio.run(run(b))
