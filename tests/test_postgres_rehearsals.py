"""The restore and failover runbooks rehearsed: their own ``# rehearse:`` command blocks
(tests/tools/runbook.py) run against a real PostgreSQL 16 (the pgserver wheel), with the incident
in between done by the test:

* docs/runbooks/postgres-restore.md: a primary archiving its WAL, a base backup, rows written,
  the time noted, ``DROP TABLE`` (the operator error), then point-in-time recovery into a new
  server to that time: every row committed before it is back, nothing after it; timed.
* docs/runbooks/postgres-failover.md: a streaming replica, writes on the primary, the primary
  SIGKILLed, the replica promoted and taking writes (``target_session_attrs=read-write``), the
  old primary brought back fenced (read-only, refused by ``read-write`` clients); timed from
  the kill to the first write, and the commits lost (asynchronous replication) counted.

The figures are printed (``pytest -s`` or the captured output) and written to
``build/rehearsals.json``; docs/disaster-recovery.md quotes a measured run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, require_tool
from tools import runbook
from tools.postgres_node import bin_dir, free_port

pytestmark = pytest.mark.postgres

RESTORE_RUNBOOK = ROOT / "docs" / "runbooks" / "postgres-restore.md"
FAILOVER_RUNBOOK = ROOT / "docs" / "runbooks" / "postgres-failover.md"
RESULTS = ROOT / "build" / "rehearsals.json"
DB = "candystore"


@pytest.fixture
def pg_bin() -> Path:
    found = bin_dir()
    if found is None:
        require_tool("pgserver PostgreSQL 16 (pip install -r requirements.txt)")  # fails in CI, skips locally
    assert found is not None
    version = subprocess.run([str(found / "postgres"), "--version"], capture_output=True, text=True).stdout
    assert " 16." in version, version  # the major the stack's Flexible Server runs
    return found


@pytest.fixture
def work(pg_bin):
    path = runbook.owned_workdir(Path(tempfile.mkdtemp(prefix="pg-rehearsal-")))
    try:
        yield path
    finally:
        runbook.stop_all(path, pg_bin)
        shutil.rmtree(path, ignore_errors=True)


def psql(pg_bin: Path, port: int, sql: str, *, db: str = DB, conninfo: str = "", check: bool = True):
    target = conninfo or f"host=127.0.0.1 port={port} user=postgres dbname={db}"
    proc = subprocess.run(
        [str(pg_bin / "psql"), target, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"psql on {port}: {sql}\n{proc.stderr}")
    return proc


def record(name: str, figures: dict) -> None:
    RESULTS.parent.mkdir(exist_ok=True)
    done = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    done[name] = {**figures, "postgres": "16 (pgserver wheel)", "at": at}
    RESULTS.write_text(json.dumps(done, indent=2) + "\n")
    print(f"\nrehearsal {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def test_the_runbooks_carry_the_blocks_the_rehearsals_run():
    assert list(runbook.blocks(RESTORE_RUNBOOK)) == ["pitr-primary", "pitr-base-backup", "pitr-restore", "pitr-verify"]
    assert list(runbook.blocks(FAILOVER_RUNBOOK)) == [
        "failover-primary",
        "failover-replica",
        "failover-promote",
        "failover-fence",
    ]


def test_point_in_time_restore_to_just_before_a_dropped_table(pg_bin, work, capsys):
    steps = runbook.blocks(RESTORE_RUNBOOK)
    env = {
        "PGBIN": str(pg_bin),
        "WORK": str(work),
        "ARCHIVE": str(work / "wal-archive"),
        "PRIMARY_PORT": str(free_port()),
        "RESTORE_PORT": str(free_port()),
        "DB": DB,
    }
    primary = int(env["PRIMARY_PORT"])
    runbook.run(steps["pitr-primary"], env)
    psql(pg_bin, primary, "create table events (id bigserial primary key, note text not null)")
    psql(pg_bin, primary, "insert into events (note) select 'before the backup ' || g from generate_series(1, 500) g")
    runbook.run(steps["pitr-base-backup"], env)
    # after the base backup: these rows exist only in the WAL archive
    psql(pg_bin, primary, "insert into events (note) select 'after the backup ' || g from generate_series(1, 1500) g")
    committed = psql(pg_bin, primary, "select count(*), max(id) from events").stdout.split("|")
    now = "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US+00')"
    target = psql(pg_bin, primary, now)
    time.sleep(0.3)
    psql(pg_bin, primary, "drop table events")  # the operator error
    # the segment holding the DROP's commit, archived (Azure ships WAL continuously)
    segment = psql(pg_bin, primary, "select pg_walfile_name(pg_switch_wal())").stdout.strip()
    deadline = time.monotonic() + 30
    while not (work / "wal-archive" / segment).exists():
        assert time.monotonic() < deadline, f"{segment} never archived"
        time.sleep(0.05)
    archived = len(list((work / "wal-archive").iterdir()))
    env["TARGET_TIME"] = target.stdout.strip()

    t0 = time.perf_counter()
    runbook.run(steps["pitr-restore"], env)
    restore_s = time.perf_counter() - t0
    restored = runbook.run(steps["pitr-verify"], env).stdout.strip().split("|")

    assert restored == [c.strip() for c in committed], (restored, committed)
    assert restored[0] == "2000"
    # the restored server is a new primary: it takes writes; the damaged one still has no table
    psql(pg_bin, int(env["RESTORE_PORT"]), "insert into events (note) values ('after the restore')")
    gone = psql(pg_bin, primary, "select to_regclass('events') is null").stdout.strip()
    assert gone == "t"
    log = (work / "restored.log").read_text()
    assert "recovery stopping before commit" in log and "archive recovery complete" in log, log[-2000:]
    with capsys.disabled():
        record(
            "pitr",
            {
                "rows_restored": int(restored[0]),
                "restore_seconds": round(restore_s, 2),
                "target_time": env["TARGET_TIME"],
                "wal_segments_archived": archived,
            },
        )
    assert restore_s < 60


def test_streaming_replica_promoted_after_the_primary_is_killed(pg_bin, work, capsys):
    steps = runbook.blocks(FAILOVER_RUNBOOK)
    env = {
        "PGBIN": str(pg_bin),
        "WORK": str(work),
        "PRIMARY_PORT": str(free_port()),
        "REPLICA_PORT": str(free_port()),
        "DB": DB,
    }
    primary, replica = int(env["PRIMARY_PORT"]), int(env["REPLICA_PORT"])
    runbook.run(steps["failover-primary"], env)
    psql(pg_bin, primary, "create table events (id bigserial primary key, note text not null)")
    lag = runbook.run(steps["failover-replica"], env).stdout.strip().splitlines()[-1]
    assert lag.split("|")[0] in ("startup", "catchup", "streaming"), lag
    deadline = time.monotonic() + 30
    while psql(pg_bin, primary, "select state from pg_stat_replication").stdout.strip() != "streaming":
        assert time.monotonic() < deadline, "the replica never reached streaming"
        time.sleep(0.1)
    # the replica is read-only, with the primary's roles and tables (physical replication)
    refused = psql(pg_bin, replica, "insert into events (note) values ('on the replica')", check=False)
    assert refused.returncode != 0 and "read-only transaction" in refused.stderr

    # writes up to the moment the primary dies: each insert its own transaction, committed on the primary
    script = work.parent / f"{work.name}-writes.sql"
    script.write_text("".join(f"insert into events (note) values ('w{i}') returning id;\n" for i in range(3000)))
    writer = subprocess.Popen(
        [str(pg_bin / "psql"), f"host=127.0.0.1 port={primary} user=postgres dbname={DB}", "-XAtq", "-f", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    t_kill = time.perf_counter()
    runbook.kill(work / "primary")
    out, _ = writer.communicate(timeout=30)
    script.unlink()
    committed = [int(x) for x in out.split() if x.isdigit()]  # ids the primary confirmed committed
    assert committed, "no write committed before the kill"

    runbook.run(steps["failover-promote"], env)
    first_write_s = time.perf_counter() - t_kill
    on_new = {int(x) for x in psql(pg_bin, replica, "select id from events").stdout.split()}
    lost = [i for i in committed if i not in on_new]

    # the old primary comes back fenced: read-only, and refused by a read-write client
    time.sleep(0.5)  # the killed postmaster's children exit on its death
    fenced = runbook.run(steps["failover-fence"], env).stdout.strip().splitlines()[-1]
    assert fenced == "t"
    write_old = psql(pg_bin, primary, "insert into events (note) values ('on the old primary')", check=False)
    assert write_old.returncode != 0 and "read-only transaction" in write_old.stderr
    rw = psql(
        pg_bin,
        primary,
        "select 1",
        conninfo=f"host=127.0.0.1 port={primary} user=postgres dbname={DB} target_session_attrs=read-write",
        check=False,
    )
    assert rw.returncode != 0 and "session is read-only" in rw.stderr, rw.stderr
    # the new primary keeps taking writes
    psql(pg_bin, replica, "insert into events (note) values ('still writing')")
    assert psql(pg_bin, replica, "select pg_is_in_recovery()").stdout.strip() == "f"

    with capsys.disabled():
        record(
            "failover",
            {
                "kill_to_first_write_seconds": round(first_write_s, 2),
                "commits_before_kill": len(committed),
                "committed_but_lost": len(lost),
            },
        )
    assert first_write_s < 60
    # asynchronous replication: a commit the primary confirmed may be lost; count it, bound it
    assert len(lost) <= len(committed)


def test_service_roles_reach_the_replica_read_only(pg_bin, work, tmp_path):
    """How a service's read-only use is expressed: the bootstrap script runs on the primary only;
    its roles, their databases and the revoked CONNECT arrive on the replica by replication. The
    service reads there with its own role and ``target_session_attrs=read-only``; a write is
    refused (SQLSTATE 25006); another service's role still cannot connect to the database."""
    from components.render.database import DatabaseGrant, bootstrap_sql

    steps = runbook.blocks(FAILOVER_RUNBOOK)
    env = {
        "PGBIN": str(pg_bin),
        "WORK": str(work),
        "PRIMARY_PORT": str(free_port()),
        "REPLICA_PORT": str(free_port()),
        "DB": "postgres_rehearsal",
    }
    primary, replica = int(env["PRIMARY_PORT"]), int(env["REPLICA_PORT"])
    runbook.run(steps["failover-primary"], env)
    runbook.run(steps["failover-replica"], env)
    script = tmp_path / "bootstrap.sql"
    script.write_text(bootstrap_sql([DatabaseGrant("bloodbank"), DatabaseGrant("candystore")], principal="local"))
    subprocess.run(
        [
            str(pg_bin / "psql"),
            f"host=127.0.0.1 port={primary} user=postgres dbname=postgres",
            "-XAtq",
            "-f",
            str(script),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    owner = f"host=127.0.0.1 port={primary} user=svc-candystore dbname=candystore"
    psql(
        pg_bin, primary, "create table orders (id int primary key); insert into orders values (1), (2)", conninfo=owner
    )
    lsn = psql(pg_bin, primary, "select pg_current_wal_lsn()", db="postgres").stdout.strip()
    deadline = time.monotonic() + 30
    while psql(pg_bin, replica, f"select pg_last_wal_replay_lsn() >= '{lsn}'", db="postgres").stdout.strip() != "t":
        assert time.monotonic() < deadline, "the replica never caught up"
        time.sleep(0.1)

    reader = f"host=127.0.0.1 port={replica} user=svc-candystore dbname=candystore target_session_attrs=read-only"
    assert psql(pg_bin, replica, "select count(*) from orders", conninfo=reader).stdout.strip() == "2"
    write = psql(pg_bin, replica, "insert into orders values (3)", conninfo=reader, check=False)
    assert write.returncode != 0 and "read-only transaction" in write.stderr
    other = f"host=127.0.0.1 port={replica} user=svc-bloodbank dbname=candystore"
    refused = psql(pg_bin, replica, "select 1", conninfo=other, check=False)
    assert refused.returncode != 0 and "permission denied for database" in refused.stderr, refused.stderr
    # the writer's setting refuses the replica: a read-write client never lands on it
    rw = f"host=127.0.0.1 port={replica} user=svc-candystore dbname=candystore target_session_attrs=read-write"
    assert "session is read-only" in psql(pg_bin, replica, "select 1", conninfo=rw, check=False).stderr
