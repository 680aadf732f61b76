"""Proof that the load test's JVM trusts exactly the stack's CA: the Job's own init-container
command (keytool, from the rendered manifest) turns ca.crt into a PKCS12 trust store, and a JVM
started with the Job's JAVA_TOOL_OPTIONS completes a TLS handshake with a real RabbitMQ AMQPS
listener whose certificate that CA issued (and reads AMQP's connection.start), through
``SSLContext.getDefault()`` — the context PerfTest uses with ``--use-default-ssl-context``.
A trust store made the same way from another CA is refused (PKIX). The PerfTest jar itself is
not on this machine (no registry ships it); the permissions are proven in
tests/test_load_test_rabbitmq.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool
from test_broker_tls import issue_certificates
from test_settings import mutate
from tools.rabbitmq_node import SERVER, RabbitNode

from components import settings as S
from components.render import broker as broker_render
from components.render import load_test as render
from dryrun.runner import config_from_yaml

pytestmark = pytest.mark.rabbitmq

PROBE = """
import java.io.DataInputStream;
import java.io.OutputStream;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocket;

public class TlsProbe {
  public static void main(String[] args) throws Exception {
    SSLContext context = SSLContext.getDefault();  // what PerfTest's --use-default-ssl-context takes
    int port = Integer.parseInt(args[0]);
    try (SSLSocket socket = (SSLSocket) context.getSocketFactory().createSocket("127.0.0.1", port)) {
      socket.startHandshake();
      OutputStream out = socket.getOutputStream();
      out.write(new byte[] {'A', 'M', 'Q', 'P', 0, 0, 9, 1});
      out.flush();
      DataInputStream in = new DataInputStream(socket.getInputStream());
      int type = in.readUnsignedByte();
      in.readUnsignedShort();
      in.readInt();
      int classId = in.readUnsignedShort();
      int methodId = in.readUnsignedShort();
      System.out.println(socket.getSession().getProtocol() + " frame " + type + " method " + classId + "." + methodId);
    }
  }
}
"""


def settings() -> S.StackSettings:
    config, _ = config_from_yaml(mutate("prod", "broker.loadTest.enabled", True))
    return S.from_config_map(config, "prod")


def java_home() -> Path:
    javac = require_tool("javac")  # the probe runs as a single source file (JEP 330): a JDK
    return Path(os.path.realpath(javac)).parent.parent


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory):
    require_tool(SERVER)
    s = settings()
    work = tmp_path_factory.mktemp("rabbitmq-load-test-tls")
    (work / "stack").mkdir()
    files = issue_certificates(work / "stack", broker_render.server_dns_names(s))
    node = RabbitNode(
        work / "node", extra_config="\n".join(broker_render.tls_config_lines()), tls=files, plaintext=False
    )
    try:
        node.start()
        yield s, node, files, work
    finally:
        node.close()


def make_truststore(s: S.StackSettings, ca_crt: Path, directory: Path) -> dict[str, str]:
    """Runs the Job's init container command as rendered, with its two mount paths moved into a
    temp directory; returns the main container's environment with the same paths moved."""
    pod = render.job(s)["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    mounts = directory / "ca", directory / "truststore"
    for d in mounts:
        d.mkdir(parents=True)
    shutil.copy(ca_crt, mounts[0] / "ca.crt")

    def moved(text: str) -> str:
        return text.replace(render.CA_MOUNT, str(mounts[0])).replace(render.TRUSTSTORE_DIR, str(mounts[1]))

    assert init["command"] == ["sh", "-c"]
    env = {**os.environ, "JAVA_HOME": str(java_home())}
    proc = subprocess.run(["sh", "-c", moved(init["args"][0])], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (mounts[1] / Path(render.TRUSTSTORE).name).exists()
    [main] = pod["containers"]
    job_env = {e["name"]: e["value"] for e in main["env"] if "value" in e}
    return {**env, "JAVA_TOOL_OPTIONS": moved(job_env["JAVA_TOOL_OPTIONS"])}


def probe(node: RabbitNode, env: dict[str, str], directory: Path) -> subprocess.CompletedProcess:
    source = directory / "TlsProbe.java"
    source.write_text(PROBE)
    java = str(Path(env["JAVA_HOME"]) / "bin" / "java")
    return subprocess.run(
        [java, str(source), str(node.amqps_port)], env=env, capture_output=True, text=True, timeout=180
    )


def test_the_jvm_trusts_the_broker_through_the_jobs_trust_store(tls_node):
    s, node, files, work = tls_node
    env = make_truststore(s, files.cacert, work / "good")
    proc = probe(node, env, work / "good")
    print(proc.stdout.strip())
    assert proc.returncode == 0, proc.stderr
    # TLS 1.2 or 1.3 (the listener allows no less), then AMQP connection.start (class 10, method 10)
    assert proc.stdout.split()[0] in ("TLSv1.3", "TLSv1.2") and proc.stdout.split()[1:] == [
        "frame",
        "1",
        "method",
        "10.10",
    ], proc.stdout


def test_a_trust_store_of_another_ca_is_refused(tls_node):
    s, node, _, work = tls_node
    (work / "other").mkdir()
    other = issue_certificates(work / "other", broker_render.server_dns_names(s))  # a CA the broker never used
    env = make_truststore(s, other.cacert, work / "bad")
    proc = probe(node, env, work / "bad")
    assert proc.returncode != 0
    # "PKIX path building failed" or, as here where both CAs carry the same subject,
    # "PKIX path validation failed ... does not chain with any of the trust anchors"
    assert "SSLHandshakeException: PKIX path" in proc.stderr, proc.stderr[-2000:]
