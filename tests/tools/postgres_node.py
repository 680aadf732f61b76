"""A throwaway PostgreSQL server on 127.0.0.1, in its own temp directory.

PostgreSQL 16 from the pinned ``pgserver`` wheel (``tests/tools/toolchain.py``: its
``pginstall/bin`` holds ``initdb``, ``pg_ctl``, ``psql``, ``pg_basebackup``), the major the stack's
Flexible Server runs (``tests/test_versions.py``). ``initdb`` refuses to run as root, so as root the
server runs as an unprivileged user (created once, ``pgtest``) through ``runuser``. Clients
(psql) connect over TCP to 127.0.0.1 only. ``close()`` stops the server with ``pg_ctl stop``
(which signals the postmaster PID from ``postmaster.pid``) and, if that fails, signals that
PID itself; it never looks processes up by name. Authentication is ``trust`` on loopback:
the proofs are about privileges (CONNECT, ownership, role attributes), which PostgreSQL
checks whatever the authentication method.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tools import toolchain

RUN_AS = "pgtest"


def bin_dir() -> Path | None:
    """The pgserver wheel's bin directory; never the host's PostgreSQL."""
    return toolchain.pg_bin()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
        return pwd.getpwnam(name)


class PostgresNode:
    """``with PostgresNode() as pg: pg.psql("SELECT 1")``."""

    def __init__(self, *, superuser: str = "postgres", bin_path: Path | None = None):
        found = bin_path or bin_dir()
        if found is None:
            raise FileNotFoundError("the pgserver wheel is not installed (make venv: requirements.txt pins it)")
        self.bin: Path = found
        self.psql_bin = str(self.bin / "psql")
        self.superuser = superuser
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgnode-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            user = _ensure_user(RUN_AS)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.pid: int | None = None
        self.started_in: float | None = None

    # ------------------------------------------------------------------ lifecycle
    def _server_cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", RUN_AS, "--", *args] if self._as_root else list(args)

    def start(self) -> PostgresNode:
        t0 = time.perf_counter()
        subprocess.run(
            self._server_cmd(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                self.superuser,
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
            text=True,
        )
        options = (
            f"-k {self.dir} -c listen_addresses=127.0.0.1 -p {self.port} -c fsync=off -c full_page_writes=off"
            " -c log_connections=off"
        )
        proc = subprocess.run(
            self._server_cmd(
                str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start"
            ),
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {proc.stdout}{proc.stderr}\n{self.log_tail()}")
        self.pid = self._postmaster_pid()
        self.started_in = time.perf_counter() - t0
        return self

    def _postmaster_pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        if self.pid is not None:
            proc = subprocess.run(
                self._server_cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"),
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0 and self._alive(self.pid):
                os.kill(self.pid, signal.SIGQUIT)  # immediate shutdown of this postmaster only
                deadline = time.monotonic() + 10
                while self._alive(self.pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if self._alive(self.pid):
                    os.kill(self.pid, signal.SIGKILL)
            self.pid = None
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def __enter__(self) -> PostgresNode:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    # ------------------------------------------------------------------ clients
    def psql(
        self,
        sql: str | None = None,
        *,
        file: Path | None = None,
        user: str | None = None,
        db: str = "postgres",
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        """Runs psql over TCP on 127.0.0.1 as ``user``; ``-X`` (no psqlrc), ``-v
        ON_ERROR_STOP=1``; with ``check`` a failure raises with psql's stderr."""
        cmd = [
            self.psql_bin,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            user or self.superuser,
            "-d",
            db,
            "-At",
            "-F",
            "\t",
        ]
        stdin = None
        if file is not None:
            cmd += ["-f", str(file)]
        else:
            stdin = sql
        env = {**os.environ, "PGCONNECT_TIMEOUT": "5", "PGAPPNAME": "postgres_node"}
        env.pop("PGPASSWORD", None)
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(f"psql as {user or self.superuser} on {db} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def rows(self, sql: str, *, user: str | None = None, db: str = "postgres") -> list[tuple[str, ...]]:
        out = self.psql(sql, user=user, db=db).stdout
        return [tuple(line.split("\t")) for line in out.splitlines() if line]
