"""Proof 7: with the prod settings (plaintext listener off) the broker speaks AMQPS only,
and a client that trusts the stack's CA and checks the service host name connects."""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import subprocess

import pika
import pika.exceptions
import pytest
from conftest import ROOT, require_tool
from test_broker_rabbitmq import real_definitions
from tools.rabbitmq_node import SERVER, RabbitNode, TlsFiles

from components import settings as S
from components.render import broker as render
from dryrun.runner import config_from_yaml

pytestmark = pytest.mark.rabbitmq


def issue_certificates(directory, dns_names: list[str]) -> TlsFiles:
    """A CA and a server certificate for exactly the names the stack's CertRequest carries
    (P-256 keys, serverAuth), made with openssl the way pulumi-tls makes them in the stack."""
    openssl = require_tool("openssl")
    d = directory

    def run(*args):
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/O=event-backbone/CN=event-backbone broker CA (test)",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )
    run(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        f"/O=event-backbone/CN={dns_names[1]}",
    )
    (d / "ext.cnf").write_text(
        "subjectAltName=" + ",".join(f"DNS:{n}" for n in dns_names) + "\n"
        "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    (d / "server.key").chmod(0o644)
    return TlsFiles(cacert=d / "ca.crt", cert=d / "server.crt", key=d / "server.key")


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    require_tool(SERVER)
    prod = S.from_config_map(config_from_yaml((ROOT / "Pulumi.prod.yaml").read_text())[0], "prod")
    assert prod.broker.plaintext_listener is False
    work = tmp_path_factory.mktemp("rabbitmq-tls")
    files = issue_certificates(work, render.server_dns_names(prod))
    passwords = {u: secrets.token_urlsafe(24) for u in render.users_and_secrets(prod)}
    (work / "definitions.json").write_text(json.dumps(real_definitions(prod, passwords)))
    config = render.additional_config(prod).replace(f"{render.DEFINITIONS_DIR}/", f"{work}/")
    node = RabbitNode(
        work / "node",
        extra_config=config,
        tls=files,
        plaintext=False,
        admin=(render.ADMIN_USER, passwords[render.ADMIN_USER]),
    )
    try:
        node.start()
        yield prod, node, files, passwords
    finally:
        node.close()


def amqps(prod, node, passwords, context: ssl.SSLContext, server_hostname: str):
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=node.amqps_port,
        virtual_host=prod.vhost,
        credentials=pika.PlainCredentials("svc-bloodbank", passwords["svc-bloodbank"]),
        ssl_options=pika.SSLOptions(context, server_hostname=server_hostname),
    )
    return pika.BlockingConnection(params)


def test_definitions_were_loaded_at_boot(tls_broker):
    """This node got the prod definitions the way the cluster does: load_definitions at boot."""
    import time

    prod, node, files, passwords = tls_broker
    expected = {q["name"] for q in render.definitions(prod, render.placeholder_hashes(prod))["queues"]}
    deadline, names = time.time() + 30, set()
    while time.time() < deadline and names != expected:  # the queue listing lags boot briefly
        names = {q["name"] for q in node.api("GET", f"/api/queues/{RabbitNode.vhost_path(prod.vhost)}")}
        time.sleep(0.5)
    assert names == expected
    users = {u["name"] for u in node.api("GET", "/api/users")}
    assert users == set(render.users_and_secrets(prod))  # no default guest: the definitions' admin only


def test_amqps_client_with_the_stack_ca_connects_and_publishes(tls_broker):
    prod, node, files, passwords = tls_broker
    context = ssl.create_default_context(cafile=str(files.cacert))  # verifies chain and host name
    conn = amqps(prod, node, passwords, context, render.service_host(prod))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish(prod.broker.topology.exchange, "order.cart.created", b"over tls", mandatory=True)
    assert conn.is_open
    conn.close()


def test_tls_is_1_2_or_newer(tls_broker):
    prod, node, files, passwords = tls_broker
    context = ssl.create_default_context(cafile=str(files.cacert))
    with socket.create_connection(("127.0.0.1", node.amqps_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=render.service_host(prod)) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(files.cacert))
    with pytest.warns(DeprecationWarning):  # the point: an old client
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", node.amqps_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError) as exc:
            old.wrap_socket(raw, server_hostname=render.service_host(prod)).do_handshake()
    # the server refused the version; the client itself could offer it
    assert "no protocols available" not in str(exc.value).lower(), exc.value


def test_client_without_the_ca_or_with_a_wrong_host_name_is_rejected(tls_broker):
    prod, node, files, passwords = tls_broker
    # pika re-raises the TLS verification error itself
    with pytest.raises(ssl.SSLCertVerificationError, match="self-signed certificate in certificate chain"):
        amqps(prod, node, passwords, ssl.create_default_context(), render.service_host(prod))
    context = ssl.create_default_context(cafile=str(files.cacert))
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        amqps(prod, node, passwords, context, "rabbitmq.elsewhere.example")


def test_plaintext_amqp_is_refused(tls_broker):
    prod, node, files, passwords = tls_broker
    listeners = {(x["protocol"], x["port"]) for x in node.api("GET", "/api/overview")["listeners"]}
    assert ("amqp/ssl", node.amqps_port) in listeners
    assert not any(proto == "amqp" for proto, _ in listeners)
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=node.node_port,
        virtual_host=prod.vhost,
        credentials=pika.PlainCredentials("svc-bloodbank", passwords["svc-bloodbank"]),
    )
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(params)
    # Speaking plain AMQP to the TLS port gets no AMQP session either.
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(
            pika.ConnectionParameters(
                host="127.0.0.1",
                port=node.amqps_port,
                virtual_host=prod.vhost,
                credentials=params.credentials,
                socket_timeout=5,
                blocked_connection_timeout=5,
            )
        )
