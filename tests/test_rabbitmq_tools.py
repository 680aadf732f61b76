"""The throwaway-server tools clean up after themselves by PID, never by process name."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import ROOT, require_tool
from tools.rabbitmq_node import EPMD, PORT_RANGE, Epmd, free_port


def test_ports_are_below_the_ephemeral_range():
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    assert all(PORT_RANGE[0] <= p < PORT_RANGE[1] + 10010 < 32768 for p in ports)


def test_epmd_is_started_on_its_port_and_stopped_by_its_pid():
    require_tool(EPMD)
    epmd = Epmd().start()
    pid = epmd.pid
    assert pid is not None
    try:
        listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        mine = [line for line in listening.splitlines() if f":{epmd.port} " in line]
        # epmd always adds the IPv6 loopback beside the address it is given
        assert mine and all(line.split()[3].startswith(("127.0.0.1:", "[::1]:")) for line in mine), mine
        assert f"pid={pid}," in mine[0]
    finally:
        epmd.stop()  # also when an assertion above failed: nothing is left running
    assert not os.path.exists(f"/proc/{pid}"), "epmd still running after stop()"


@pytest.mark.parametrize("word", ["pk" + "ill", "kill" + "all"])
def test_no_process_is_stopped_by_name_anywhere_in_the_repo(word):
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    hits = [
        path
        for path in tracked.splitlines()
        if (ROOT / path).is_file() and word in (ROOT / path).read_text(errors="replace")
    ]
    # the rule itself may be written down (BRIEF-style docs), but no code may run it
    code = [p for p in hits if p.endswith((".py", ".sh", "Makefile", ".yml", ".yaml"))]
    assert code == [], f"{word} in {code}"
