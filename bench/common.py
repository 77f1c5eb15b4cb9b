"""Shared set-up for the benchmarks: a private cluster with N demo incidents and a live server.

The cluster lives in $BORDERWATCH_BENCH_DIR (default /tmp/borderwatch-bench) and is reused
between runs when it already holds the requested number of incidents. Everything listens on
127.0.0.1 only; every load loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import ClauseElement, text
from sqlalchemy.engine import make_url

from app import migrate
from app.config import Settings
from app.db import create_engine, ensure_database, sessionmaker
from app.embedded import SERVICE_USER, SUPERUSER, EmbeddedCluster, bindir
from app.geodata import load as geodata
from app.incidents import demo

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(os.environ.get("BORDERWATCH_BENCH_DIR", "/tmp/borderwatch-bench"))
BENCH_PORT = int(os.environ.get("BORDERWATCH_BENCH_PG_PORT", "54399"))
TIPG_VENV = ROOT / "bench" / ".tipg-venv"
SYS_PIDFD_GETFD = 438  # Linux syscall number (the same on x86-64 and arm64)
# PostgreSQL's dialect (sqlalchemy.dialects.postgresql.dialect), built through its URL: its
# constructor is untyped, the class a URL names is typed as Dialect
PG_DIALECT = make_url("postgresql://").get_dialect()()


T = TypeVar("T")


def literal_sql(stmt: ClauseElement) -> str:
    """The statement's SQL text with its values written in, as the service would send it."""
    return str(stmt.compile(dialect=PG_DIALECT, compile_kwargs={"literal_binds": True}))


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cluster() -> EmbeddedCluster:
    """The benchmark cluster, created and started if needed."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    BENCH_DIR.chmod(0o755)
    c = EmbeddedCluster(home=BENCH_DIR, port=BENCH_PORT)
    c.init()
    c.start()
    return c


REPLICA_DIR = Path(
    os.environ.get("BORDERWATCH_BENCH_REPLICA_DIR", "/tmp/borderwatch-bench-replica")
)
REPLICA_PORT = BENCH_PORT - 1


def replica(primary: EmbeddedCluster) -> EmbeddedCluster:
    """A streaming replica (hot standby) of the benchmark cluster, made once with
    `pg_basebackup -R` (a copy of the whole cluster: minutes at 1 M incidents) and started."""
    c = EmbeddedCluster(home=REPLICA_DIR, port=REPLICA_PORT)
    if not c.initialised():
        REPLICA_DIR.mkdir(parents=True, exist_ok=True)
        REPLICA_DIR.chmod(0o755)
        shutil.rmtree(c.pgdata, ignore_errors=True)
        c.pgdata.mkdir(mode=0o700)  # empty: pg_basebackup fills it
        if os.geteuid() == 0:  # it must belong to the server's user
            service = pwd.getpwnam(SERVICE_USER)
            os.chown(c.pgdata, service.pw_uid, service.pw_gid)
        cmd = [
            str(bindir() / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
            "-U", SUPERUSER, "-D", str(c.pgdata), "-R", "-X", "stream", "-c", "fast",
        ]  # fmt: skip
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", SERVICE_USER, "--", *cmd]
        env = dict(os.environ, PGPASSWORD=primary.password())
        subprocess.run(cmd, env=env, check=True)
        shutil.copy(primary.password_file, c.password_file)  # the same users: a copy
    c.start()
    return c


async def prepare(url: str, incidents: int, seed: int = 2026) -> None:
    """Migrate, load boundaries, and top the demo incidents up to `incidents` rows."""
    settings = Settings(environment="test")
    await ensure_database(url)
    engine = create_engine(url, settings)
    await migrate.upgrade(engine)
    async with sessionmaker(engine)() as session, session.begin():
        if await geodata.needs_default(session=session):  # empty, or without today's units
            await session.execute(text("SET LOCAL statement_timeout = 0"))
            await geodata.load_default(session=session, settings=settings)
    async with sessionmaker(engine)() as session:
        have = int((await session.execute(text("SELECT count(*) FROM incident"))).scalar_one())
    batch = 100_000
    while have < incidents:
        n = min(batch, incidents - have)
        started = time.perf_counter()
        async with sessionmaker(engine)() as session, session.begin():
            await session.execute(text("SET LOCAL statement_timeout = 0"))
            written = await demo.load(session=session, count=n, seed=seed + have)
        have += written
        rate = written / (time.perf_counter() - started)
        print(f"  demo incidents: {have:,} ({rate:,.0f} rows/s)", file=sys.stderr)
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    await engine.dispose()


async def admin_key(url: str) -> str:
    """A fresh national admin key for the benchmark client."""
    return await bench_key(url, "admin")


async def bench_key(
    url: str, role: str, *, jurisdiction: str | None = None, name: str = "bench"
) -> str:
    """A fresh key of `role` (national, or bound to `jurisdiction`) for a benchmark client."""
    from app.auth import service as auth_service

    engine = create_engine(url, Settings(environment="test"))
    try:
        async with sessionmaker(engine)() as session, session.begin():
            _, key = await auth_service.create_principal(
                session=session, name=name, role=role, jurisdiction_code=jurisdiction,
                unit=None, actor="bench",
            )  # fmt: skip
        return key
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Served:
    """A server process this benchmark started: where it listens and its PID."""

    base: str
    port: int
    pid: int


@contextmanager
def _serve(
    cmd: list[str], env: dict[str, str], cwd: Path, port: int, log: Path | None = None
) -> Iterator[Served]:
    """Start `cmd` (listening on 127.0.0.1:port; its output to `log` when given), wait for
    /healthz, and stop that PID after, even on error (SIGTERM, then SIGKILL after 20 s)."""
    out = log.open("ab") if log is not None else None
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # TiPg reads the table catalogue before it answers
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[2:4]} exited with {proc.returncode}")
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"{cmd[2:4]} did not start")
        yield Served(base, port, proc.pid)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if out is not None:
            out.close()


@contextmanager
def served(
    url: str,
    *,
    factory: str = "app.main:create_app",
    root: Path = ROOT,
    env_extra: dict[str, str] | None = None,
) -> Iterator[Served]:
    """Our API in a uvicorn process (one worker, as `make run` starts it) on 127.0.0.1: the
    app made by `factory`, from the code in `root` (this checkout unless told), with
    `env_extra` added to the environment."""
    port = free_port()
    # no rate limit: the benchmark is one principal sending far more than 600 requests a minute
    env = dict(
        os.environ, DATABASE_URL=url, BORDERWATCH_ENVIRONMENT="test", BORDERWATCH_RATE_LIMIT=""
    )
    if root != ROOT:
        env["PYTHONPATH"] = str(root)
    env |= env_extra or {}
    cmd = [
        sys.executable, "-m", "uvicorn", factory, "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    with _serve(cmd, env, root, port) as s:
        yield s


@contextmanager
def served_at(
    url: str, ref: str, *, node_modules: bool = False, factory: str = "app.main:create_app"
) -> Iterator[Served]:
    """Our API as it was at git `ref` (app/ and what it reads, exported with git archive into
    a temporary directory; the checkout's node_modules linked in when the dashboard needs
    them), served as `served` does, the app made by `factory`: a factory of the benchmarks
    (`bench.…`) is this checkout's, linked in, applied to the old app/."""
    with tempfile.TemporaryDirectory(prefix="bw-at-") as tmp:
        archive = subprocess.run(
            ["git", "archive", ref, "app", "migrations", "geodata", "alembic.ini"],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        if node_modules:
            (Path(tmp) / "node_modules").symlink_to(ROOT / "node_modules")
        if factory.startswith("bench."):
            (Path(tmp) / "bench").symlink_to(ROOT / "bench")
        with served(url, root=Path(tmp), factory=factory) as s:
            yield s


@contextmanager
def server(url: str) -> Iterator[str]:
    """Our API on 127.0.0.1 (see `served`): its base URL."""
    with served(url) as s:
        yield s.base


def tipg_python() -> Path:
    """The interpreter of bench/.tipg-venv, created with TiPg when missing (TiPg is a
    benchmark peer, not a dependency of the project)."""
    python = TIPG_VENV / "bin" / "python"
    if not python.exists():
        print(f"  creating {TIPG_VENV} with TiPg (pip) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(TIPG_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "tipg", "uvicorn"], check=True
        )  # fmt: skip
    return python


@contextmanager
def tipg(url: str, table: str = "incident") -> Iterator[Served]:
    """TiPg (uvicorn, one worker) serving `table` of the same database on 127.0.0.1.

    Extents and the periodic catalogue refresh are switched off: they cost TiPg time at start
    and every 5 minutes, not per request, so the comparison only gets fairer to TiPg."""
    python = tipg_python()
    port = free_port()
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    keep = ("PATH", "HOME", "LANG", "TMPDIR")  # not our BORDERWATCH_* or DATABASE_URL
    env = {k: v for k, v in os.environ.items() if k in keep}
    env |= {
        "DATABASE_URL": dsn,
        "TIPG_DB_SCHEMAS": '["public"]',
        "TIPG_DB_TABLES": f'["public.{table}"]',
        "TIPG_DB_SPATIAL_EXTENT": "false",
        "TIPG_DB_DATETIME_EXTENT": "false",
        "TIPG_CATALOG_TTL": "0",
    }
    cmd = [
        str(python), "-m", "uvicorn", "tipg.main:app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    with _serve(cmd, env, TIPG_VENV, port) as s:  # cwd without a .env for TiPg to read
        yield s


def tcp_nodelay(server: Served) -> list[bool] | None:
    """TCP_NODELAY on each connection the server process has accepted on its port (read from
    the process's own sockets through pidfd_getfd; needs Linux >= 5.6 and ptrace rights),
    or None when it cannot be read. Off = Nagle: ~40 ms per keep-alive request here."""
    try:
        pidfd = os.pidfd_open(server.pid)
    except (AttributeError, OSError):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    out: list[bool] = []
    try:
        for name in os.listdir(f"/proc/{server.pid}/fd"):
            try:
                if not os.readlink(f"/proc/{server.pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                return None
            with socket.socket(fileno=fd) as sock:  # our duplicate; closing it leaves theirs
                try:
                    if sock.family not in (socket.AF_INET, socket.AF_INET6):
                        continue
                    if sock.type != socket.SOCK_STREAM or sock.getsockname()[1] != server.port:
                        continue
                    sock.getpeername()  # accepted connections only, not the listener
                except OSError:
                    continue
                out.append(bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
    finally:
        os.close(pidfd)
    return out


def summary(samples_s: list[float]) -> dict[str, float]:
    """Median, p95 and mean in milliseconds."""
    ordered = sorted(samples_s)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": p95 * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


async def load_samples(
    fetch: Callable[[Any], Awaitable[bytes]], jobs: Sequence[Any], concurrency: int, cap_s: float
) -> tuple[list[float], list[int], float]:
    """Run every job once through `concurrency` workers, none starting after cap_s seconds:
    the latencies (s), the body sizes and the elapsed wall time (s)."""
    samples: list[float] = []
    sizes: list[int] = []
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    deadline = time.monotonic() + cap_s

    async def worker() -> None:
        while not queue.empty() and time.monotonic() < deadline:
            job = queue.get_nowait()
            t = time.perf_counter()
            body = await fetch(job)
            samples.append(time.perf_counter() - t)
            sizes.append(len(body))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples, sizes, time.perf_counter() - started


async def load(
    fetch: Callable[[Any], Awaitable[bytes]], jobs: Sequence[Any], concurrency: int, cap_s: float
) -> dict[str, float]:
    """load_samples summarised: latency, requests per second and the median body size."""
    samples, sizes, elapsed = await load_samples(fetch, jobs, concurrency, cap_s)
    return {
        **summary(samples),
        "requests": len(samples),
        "per_s": len(samples) / elapsed,
        "median_bytes": statistics.median(sizes),
    }


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run with a typed result for scripts."""
    return asyncio.run(coro)
