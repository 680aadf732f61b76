"""Runs a runbook's own command blocks: the rehearsal is the runbook's text, not a copy of it.

A block to run is a fenced ``sh`` block whose first line is ``# rehearse: <name>``::

    ```sh
    # rehearse: pitr-restore
    "$PGBIN/pg_ctl" -D "$WORK/restored" -w start
    ```

:func:`blocks` reads them from the markdown; :func:`run` runs one with ``bash -euo pipefail``, its
variables (``$PGBIN``, ``$WORK``, ports, ...) given as environment, as the unprivileged ``pgtest``
user when the tests run as root (``initdb`` refuses root; tests/tools/postgres_node.py). Every
server a block starts lives in a data directory under ``WORK``; :func:`stop_all` stops each by the
PID in its ``postmaster.pid`` (``pg_ctl stop``, then a signal to that PID), never by name.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from tools import postgres_node

_FENCE = re.compile(r"^```sh\n# rehearse: ([a-z0-9-]+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(markdown: Path) -> dict[str, str]:
    """name -> the block's commands, in the order they appear."""
    found: dict[str, str] = {}
    for name, body in _FENCE.findall(markdown.read_text()):
        if name in found:
            raise ValueError(f"{markdown}: block {name} appears twice")
        found[name] = body
    return found


def owned_workdir(path: Path) -> Path:
    """A work directory the server user owns."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        user = postgres_node._ensure_user(postgres_node.RUN_AS)
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


def run(body: str, env: dict[str, str], *, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs one block; raises with its output when it fails."""
    script = ["bash", "-euo", "pipefail", "-c", body]
    values = [f"{k}={v}" for k, v in env.items()]
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "PGCONNECT_TIMEOUT": "5"}
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", postgres_node.RUN_AS, "--", "env", "-i", *[f"{k}={v}" for k, v in base.items()]]
        cmd += [*values, *script]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
    else:
        proc = subprocess.run(script, capture_output=True, text=True, timeout=timeout, env={**base, **env})
    if proc.returncode != 0:
        raise RuntimeError(f"block failed ({proc.returncode}):\n{body}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill(data: Path) -> int:
    """SIGKILL of the postmaster of ``data`` (the primary "lost"); returns its PID."""
    pid = postmaster_pid(data)
    assert pid is not None and alive(pid), f"no running postmaster in {data}"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return pid


def stop_all(work: Path, pg_bin: Path) -> None:
    """Stops every server under ``work`` by its own PID."""
    for pidfile in work.glob("*/postmaster.pid"):
        data = pidfile.parent
        pid = postmaster_pid(data)
        if pid is None or not alive(pid):
            continue
        cmd = [str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", postgres_node.RUN_AS, "--", *cmd]
        subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
