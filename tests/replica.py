"""A streaming replica (hot standby) of the tests' cluster, for tests/test_replica.py.

`pg_basebackup -R` copies the running primary into a folder of its own and writes the standby's
connection settings (standby.signal, primary_conninfo); the copy starts on 127.0.0.1 on a free
port with the same launcher as every test cluster (app.embedded) and streams the primary's WAL.
The primary needs nothing more than initdb gives it: wal_level replica, max_wal_senders 10 and a
`host replication all 127.0.0.1/32` line in pg_hba.conf are PostgreSQL's defaults.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from app.embedded import SERVICE_USER, SUPERUSER, EmbeddedCluster, bindir

STREAM_WAIT_S = 60.0


def _as_service(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", SERVICE_USER, "--", *cmd]
    return cmd


def start_standby(primary: EmbeddedCluster, free_port: int) -> EmbeddedCluster:
    """A hot standby of `primary` in a new temporary folder, started on `free_port`."""
    home = Path(tempfile.mkdtemp(prefix="borderwatch-replica-"))
    home.chmod(0o755)  # the unprivileged server user must reach it
    shutil.copy(primary.password_file, home / "password")
    standby = EmbeddedCluster(home=home, port=free_port)
    pgdata = standby.pgdata
    pgdata.mkdir(mode=0o700)
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam(SERVICE_USER)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    cmd = [
        "env", f"PGPASSWORD={primary.password()}",
        str(bindir() / "pg_basebackup"), "-D", str(pgdata), "-R", "-X", "stream",
        "--checkpoint=fast", "-h", "127.0.0.1", "-p", str(primary.port), "-U", SUPERUSER, "-w",
    ]  # fmt: skip
    done = subprocess.run(_as_service(cmd), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        raise RuntimeError(f"pg_basebackup failed: {done.stderr.strip()}")
    (pgdata / "server.log").unlink(missing_ok=True)  # the primary's log, copied along
    try:
        standby.start(hot_standby="on")
    except Exception:
        shutil.rmtree(home, ignore_errors=True)
        raise
    return standby


async def _connect(url: str) -> asyncpg.Connection:
    u = make_url(url)
    return await asyncpg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, database=u.database
    )


async def wait_streaming(standby: EmbeddedCluster) -> None:
    """Wait until the standby's WAL receiver streams from the primary (STREAM_WAIT_S at most)."""
    deadline = time.monotonic() + STREAM_WAIT_S
    while True:
        conn = await _connect(standby.url("postgres"))
        try:
            status = await conn.fetchval("SELECT status FROM pg_stat_wal_receiver")
        finally:
            await conn.close()
        if status == "streaming":
            return
        assert time.monotonic() < deadline, f"the standby does not stream: {status}"
        await asyncio.sleep(0.2)


async def primary_lsn(primary_url: str) -> int:
    """The primary's current WAL position, as a number."""
    conn = await _connect(primary_url)
    try:
        return int(await conn.fetchval("SELECT (pg_current_wal_lsn() - '0/0')::int8"))
    finally:
        await conn.close()


async def wait_replayed(standby_url: str, lsn: int, timeout_s: float = STREAM_WAIT_S) -> float:
    """Wait until the standby has replayed the primary's WAL up to `lsn`; the seconds it took."""
    start = time.monotonic()
    conn = await _connect(standby_url)
    try:
        while True:
            replayed = await conn.fetchval("SELECT (pg_last_wal_replay_lsn() - '0/0')::int8")
            if replayed is not None and int(replayed) >= lsn:
                return time.monotonic() - start
            assert time.monotonic() - start < timeout_s, "the standby did not replay in time"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def replay(standby_url: str, *, paused: bool) -> None:
    """Pause or resume WAL replay on the standby (it keeps receiving WAL meanwhile)."""
    conn = await _connect(standby_url)
    try:
        call = "pg_wal_replay_pause" if paused else "pg_wal_replay_resume"
        await conn.execute(f"SELECT {call}()")
    finally:
        await conn.close()
