"""The toolchain's own promises (tests/tools/toolchain.py, tests/tools/bin/inroot): the tools are
the testing root's, a caller's PID is the tool's own (so stopping by PID stops the tool), paths
under /tmp and the working directory are the same inside and out, and nothing stays mounted."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import require_tool
from tools import toolchain


def mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


def test_the_tools_are_the_roots_not_the_hosts():
    promtool = require_tool("promtool")
    assert Path(promtool).parent == toolchain.BIN
    out = subprocess.run([promtool, "--version"], capture_output=True, text=True, check=True).stdout
    assert f"version {toolchain.versions()['prometheus']}" in out
    amtool = require_tool("amtool")
    out = subprocess.run([amtool, "--version"], capture_output=True, text=True, check=True).stdout
    assert f"version {toolchain.versions()['alertmanager']}" in out


def test_paths_under_tmp_and_the_cwd_are_the_same_inside(tmp_path):
    require_tool("promtool")
    (tmp_path / "in.txt").write_text("seen inside\n")
    inroot = str(toolchain.BIN / "inroot")
    proc = subprocess.run(
        [inroot, "sh", "-c", "cat in.txt; cat /etc/debian_version; echo made > out.txt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.splitlines()[0] == "seen inside"
    host_release = Path("/etc/debian_version").read_text().strip()
    assert proc.stdout.splitlines()[1] != host_release  # the root's release, not the host's
    assert (tmp_path / "out.txt").read_text() == "made\n"


def test_the_pid_is_the_tools_and_nothing_stays_mounted(tmp_path):
    require_tool("promtool")
    before = mounts().count(str(toolchain.ROOT))
    proc = subprocess.Popen([str(toolchain.BIN / "inroot"), "sleep", "30"], cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        cmdline = ""
        while time.monotonic() < deadline:
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if cmdline.startswith("sleep"):
                break
            time.sleep(0.05)
        assert cmdline.strip() == "sleep 30"  # unshare, sh and chroot exec'd into the tool
        # the tool's mounts live in its own namespace: the host's table does not change
        assert mounts().count(str(toolchain.ROOT)) == before
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGTERM
    assert mounts().count(str(toolchain.ROOT)) == before == 0


def test_a_missing_root_is_reported(tmp_path):
    proc = subprocess.run(
        [str(toolchain.BIN / "promtool"), "--version"],
        env={**os.environ, "EB_TESTING_ROOT": str(tmp_path / "none")},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 127 and "make tools" in proc.stderr


@pytest.mark.parametrize(
    "debian,upstream",
    [("4.3.6-1", "4.3.6"), ("3.5.3+ds1-6", "3.5.3"), ("5:8.0.6-3", "8.0.6"), ("1:29.1.1+dfsg-1", "29.1.1")],
)
def test_debian_versions_read_as_upstream(debian, upstream):
    assert toolchain.upstream(debian) == upstream
