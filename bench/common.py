"""Shared set-up for the benchmarks: a private cluster with N demo incidents and a live server.

The cluster lives in $BORDERWATCH_BENCH_DIR (default /tmp/borderwatch-bench) and is reused
between runs when it already holds the requested number of incidents. Everything listens on
127.0.0.1 only; every load loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import text

from app import migrate
from app.config import Settings
from app.db import create_engine, ensure_database, sessionmaker
from app.embedded import EmbeddedCluster
from app.geodata import load as geodata
from app.incidents import demo

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(os.environ.get("BORDERWATCH_BENCH_DIR", "/tmp/borderwatch-bench"))
BENCH_PORT = int(os.environ.get("BORDERWATCH_BENCH_PG_PORT", "54399"))


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


async def prepare(url: str, incidents: int, seed: int = 2026) -> None:
    """Migrate, load boundaries, and top the demo incidents up to `incidents` rows."""
    settings = Settings(environment="test")
    await ensure_database(url)
    engine = create_engine(url, settings)
    await migrate.upgrade(engine)
    async with sessionmaker(engine)() as session, session.begin():
        if not (await session.execute(text("SELECT count(*) FROM jurisdiction"))).scalar():
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
    from app.auth import service as auth_service

    engine = create_engine(url, Settings(environment="test"))
    try:
        async with sessionmaker(engine)() as session, session.begin():
            _, key = await auth_service.create_principal(
                session=session, name="bench", role="admin", jurisdiction_code=None, unit=None,
                actor="bench",
            )  # fmt: skip
        return key
    finally:
        await engine.dispose()


@contextmanager
def server(url: str) -> Iterator[str]:
    """A uvicorn process (one worker, as `make run` starts it) serving on 127.0.0.1."""
    port = free_port()
    # no rate limit: the benchmark is one principal sending far more than 600 requests a minute
    env = dict(
        os.environ, DATABASE_URL=url, BORDERWATCH_ENVIRONMENT="test", BORDERWATCH_RATE_LIMIT=""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, cwd=ROOT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("server did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def summary(samples_s: list[float]) -> dict[str, float]:
    """Median, p95 and mean in milliseconds."""
    ordered = sorted(samples_s)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": p95 * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


def run(coro: object) -> object:
    """asyncio.run with a typed result for scripts."""
    return asyncio.run(coro)  # type: ignore[arg-type]
