"""What the proofs run against what the stack deploys, major.minor for major.minor.

Every proof of durability, alerting and database isolation runs on the toolchain of
tests/tools/toolchain.py (the testing root's RabbitMQ, Prometheus and Alertmanager; the pgserver
wheel's PostgreSQL). A proof on another minor than the one the stack deploys is a claim about
something else, so these tests fail when the two part — after a bump of a pin here, or when
Debian's testing suite moves on and the root is rebuilt — and say what to bump. The rendered
rabbitmq.conf is also booted on the proofs' RabbitMQ: a key it refuses stops the node, a key it
deprecates shows in its log.
"""

from __future__ import annotations

import re
import time

import pytest
from conftest import require_tool
from test_helm_values import releases, user_values
from tools import toolchain
from tools.rabbitmq_node import RabbitNode

from components.render import broker as render

ROOT_HINT = "the proofs' toolchain: tests/tools/install.sh (rm -rf the root and run make tools to rebuild it)"


def proved(part: str) -> str:
    found = toolchain.versions().get(part)
    if found is None:
        require_tool(toolchain.tool("promtool") if part != "postgresql" else "pgserver's postgres (requirements.txt)")
        pytest.fail(f"{part}: no version found in {ROOT_HINT}")
    return found


def tag_version(reference: str) -> str:
    """'rabbitmq:4.3.6-management' -> '4.3.6'; 'v3.5.3' -> '3.5.3'; a registry path in front is fine."""
    tag = reference.rsplit(":", 1)[-1] if ":" in reference.rsplit("/", 1)[-1] else reference
    match = re.match(r"v?(\d+\.\d+(?:\.\d+)?)", tag)
    assert match, f"no version in image reference {reference!r}"
    return match.group(1)


def same_minor(part: str, deployed: str, where: str, bump: str) -> None:
    ran = proved(part)
    assert toolchain.major_minor(deployed) == toolchain.major_minor(ran), (
        f"{part}: the stack deploys {deployed} ({where}) but the proofs ran {ran} ({ROOT_HINT}): {bump}"
    )


def test_rabbitmq_image_is_the_release_the_proofs_ran(stack):
    image = stack.settings.broker.image
    same_minor(
        "rabbitmq",
        tag_version(image),
        f"broker.image = {image}",
        f"set broker.image to rabbitmq:{proved('rabbitmq')}-management (components/settings/broker.py) after "
        "docs/runbooks/rabbitmq-upgrade.md, or keep the image and prove on its minor",
    )
    cluster = stack.inputs("RabbitmqCluster")  # what the operator is told to run: the same release
    assert tag_version(cluster["spec"]["image"]) == tag_version(image)


@pytest.mark.parametrize(
    "part,path",
    [("prometheus", ("prometheus", "prometheusSpec")), ("alertmanager", ("alertmanager", "alertmanagerSpec"))],
)
def test_prometheus_and_alertmanager_are_the_releases_the_proofs_ran(stack, part, path):
    values = user_values(releases(stack)["kube-prometheus-stack"])
    spec = values[path[0]][path[1]]
    tag = spec["image"]["tag"]
    assert "version" not in spec, "the operator derives the version from the image tag: keep one source"
    same_minor(
        part,
        tag_version(tag),
        f"kube-prometheus-stack {path[0]}.{path[1]}.image.tag = {tag}",
        f"set observability.{part}.imageTag to v{proved(part)} (components/settings/observability.py)"
        f", or prove on {tag}",
    )


def test_postgresql_major_is_the_one_the_proofs_ran(stack):
    server = stack.inputs("dbforpostgresql:Server", "server")  # the primary; replicas run its version
    deployed = str(server["version"])
    ran = proved("postgresql")
    assert deployed == ran.split(".")[0], (
        f"postgresql: the Flexible Server runs {deployed} (postgres.version) but the database proofs ran {ran} "
        f"(the pgserver wheel pinned in requirements.txt): pin a pgserver release with PostgreSQL {deployed}, "
        "or move postgres.version to the proven major after the upgrade runbook"
    )


def test_a_version_drift_fails_and_says_what_to_bump(monkeypatch):
    """The guard can fail: a root that moved on to another minor is reported with the bump."""
    ran = proved("rabbitmq")
    major, minor = (int(x) for x in toolchain.major_minor(ran).split("."))
    monkeypatch.setattr(toolchain, "versions", lambda: {"rabbitmq": f"{major}.{minor + 1}.0"})
    with pytest.raises(AssertionError) as exc:
        same_minor("rabbitmq", ran, "broker.image", "set broker.image to the new release")
    assert f"deploys {ran}" in str(exc.value) and f"ran {major}.{minor + 1}.0" in str(exc.value)
    assert "set broker.image" in str(exc.value)


def test_the_rendered_rabbitmq_conf_boots_on_the_proven_release(planned, tmp_path):
    """The keys of the rendered additionalConfig that a bare node can take (the definitions and
    TLS listener need the operator's mounts) boot a node of the proven release; each is applied
    (read back from the node's environment) and none is named in a warning of its log."""
    require_tool(toolchain.tool("rabbitmq-server"))
    lines = [
        line
        for line in render.additional_config(planned["prod"].settings).splitlines()
        if line and not line.startswith(("load_definitions", "ssl_options."))
    ]
    keys = [line.split("=", 1)[0].strip() for line in lines]
    assert "cluster_partition_handling" not in keys, "no effect on 4.3 (Khepri): drop it"
    node = RabbitNode(tmp_path / "node", extra_config="\n".join(lines))
    try:
        node.start(timeout=120)
        assert node.ctl("version").stdout.strip() == proved("rabbitmq")
        env = {
            "disk_free_limit.absolute": ("rabbit", "disk_free_limit", '"2GB"'),
            "queue_leader_locator": ("rabbit", "queue_leader_locator", '<<"balanced">>'),
        }
        for key in keys:
            assert key in env, f"{key}: add how it shows in the node's environment to this test"
            app, name, expected = env[key]
            got = node.ctl("eval", f"application:get_env({app}, {name}).").stdout.strip()
            assert got == f"{{ok,{expected}}}", f"{key}: {got}"
        time.sleep(1)
        log = "\n".join(p.read_text(errors="replace") for p in (node.dir / "log").glob("*.log"))
        warnings = [line for line in log.splitlines() if "[warning]" in line or "[error]" in line]
        for key in keys:
            assert not [w for w in warnings if key.split(".")[0] in w], f"{key} is named in a warning: {warnings}"
    finally:
        node.close()
