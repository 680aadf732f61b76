"""The toolchain every proof runs on: the servers and CLIs at the versions the stack deploys.

* RabbitMQ, promtool/Prometheus, amtool/Alertmanager and Redis come from a root of Debian's
  testing suite that ``tests/tools/install.sh`` builds once per machine (``ROOT``; override with
  ``EB_TESTING_ROOT``). Their host-side names are the wrappers in ``tests/tools/bin/`` (links to
  ``inroot``): each runs its tool inside the root, in a mount namespace of its own that lasts
  as long as the process, with ``/proc``, ``/tmp`` and the working directory mounted in, so paths
  under ``/tmp`` (pytest's ``tmp_path``) mean the same inside and out. The wrapper ``exec``s at
  every step: a caller's PID and process group are the tool's own, as with a host binary.
* PostgreSQL comes from the pinned ``pgserver`` wheel (``requirements.txt``): its
  ``pginstall/bin`` holds ``initdb``, ``postgres``, ``pg_ctl``, ``psql`` and ``pg_basebackup``.

``versions()`` reads what is installed (the root's dpkg database, ``postgres --version``);
``tests/test_versions.py`` compares it with what the stack deploys.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from functools import cache
from pathlib import Path

BIN = Path(__file__).resolve().parent / "bin"
ROOT = Path(os.environ.get("EB_TESTING_ROOT", "/var/cache/event-backbone/testing-root"))

# Every tool name a proof may ask for that runs inside the root (each has a link in BIN).
ROOT_TOOLS = frozenset(
    {
        "promtool",
        "amtool",
        "prometheus",
        "alertmanager",
        "rabbitmq-server",
        "rabbitmqctl",
        "rabbitmq-plugins",
        "rabbitmq-queues",
        "rabbitmq-diagnostics",
        "rabbitmq-upgrade",
        "epmd",
        "redis-server",
        "redis-cli",
        "notation",
        "cosign",
    }
)
# The root's Debian packages whose versions the proofs stand for.
ROOT_PACKAGES = ("rabbitmq-server", "erlang-base", "prometheus", "prometheus-alertmanager", "redis-server")


def root_ready() -> bool:
    return (ROOT / "usr/bin/promtool").is_file() and (ROOT / "usr/lib/rabbitmq/bin/rabbitmq-server").is_file()


def tool(name: str) -> str:
    """The host-side path of a tool that runs in the root."""
    if name not in ROOT_TOOLS:
        raise KeyError(f"{name} is not a tool of the testing root ({sorted(ROOT_TOOLS)})")
    return str(BIN / name)


def pg_bin() -> Path | None:
    """The pgserver wheel's PostgreSQL bin directory, or None when the wheel is not installed."""
    spec = importlib.util.find_spec("pgserver")  # located, not imported (its import sets up dirs)
    if spec is None or not spec.origin:
        return None
    found = Path(spec.origin).resolve().parent / "pginstall" / "bin"
    return found if (found / "pg_ctl").is_file() else None


@cache
def root_packages() -> dict[str, str]:
    """Debian package -> version, read from the root's dpkg database (no process started)."""
    status = ROOT / "var/lib/dpkg/status"
    if not status.is_file():
        return {}
    found: dict[str, str] = {}
    for block in status.read_text(errors="replace").split("\n\n"):
        fields = dict(re.findall(r"^(Package|Version|Status): (.*)$", block, re.M))
        if fields.get("Package") in ROOT_PACKAGES and fields.get("Status", "").endswith(" installed"):
            found[fields["Package"]] = fields["Version"]
    return found


def upstream(debian_version: str) -> str:
    """'4.3.6-1' -> '4.3.6'; '3.5.3+ds1-6' -> '3.5.3'; '5:8.0.6-3' -> '8.0.6'; '1:29.1.1+dfsg-1' -> '29.1.1'."""
    text = debian_version.split(":", 1)[-1]
    match = re.match(r"\d+(\.\d+)*", text)
    return match.group(0) if match else text


@cache
def postgres_version() -> str | None:
    """The pgserver wheel's server version ('16.2'), from ``postgres --version``."""
    found = pg_bin()
    if found is None:
        return None
    out = subprocess.run([str(found / "postgres"), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+\.\d+)", out)
    return match.group(1) if match else None


def versions() -> dict[str, str]:
    """What the proofs run: {'rabbitmq': '4.3.6', 'erlang': ..., 'prometheus': ..., 'alertmanager':
    ..., 'redis': ..., 'postgresql': '16.2'} (a part is missing when it is not installed)."""
    names = {
        "rabbitmq-server": "rabbitmq",
        "erlang-base": "erlang",
        "prometheus": "prometheus",
        "prometheus-alertmanager": "alertmanager",
        "redis-server": "redis",
    }
    found = {names[pkg]: upstream(ver) for pkg, ver in root_packages().items()}
    pg = postgres_version()
    if pg:
        found["postgresql"] = pg
    return found


def major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])
