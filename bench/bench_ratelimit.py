"""What counting the rate limits in PostgreSQL costs per request (app/auth/ratelimit.py).

    .venv/bin/python -m bench.bench_ratelimit [--rounds 3] [--requests 1500]

A database of its own on the benchmark cluster (`bench_ratelimit`, migrated, one national
key; dropped at the end), served by uvicorn with 1 and then 2 worker processes (the supervisor
`borderwatch serve --workers` uses). Each round starts a server with the limits off
(BORDERWATCH_RATE_LIMIT, _TILE_RATE_LIMIT and _AUTH_FAILURE_LIMIT empty: no counting at all)
and one with them on but never reached (1 000 000/minute: every request counted in
PostgreSQL), in alternating order, and times GET /me (authentication + the limit: the
smallest authenticated request) from keep-alive clients at concurrency 1 and 16. Reported:
median latency and requests/s per mode, and on/off ratios (median of the rounds' ratios).

Also, in process, the limiter this replaced (limits' in-memory sliding window counter): its
cost per hit, for reference. Bounded: a fixed number of requests per measurement, a wall-clock
cap on each, servers stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import httpx
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from sqlalchemy.engine import make_url

from app import migrate
from app.auth import ratelimit
from app.config import Settings
from app.db import create_engine, ensure_database
from bench.common import ROOT, Served, _serve, bench_key, cluster, free_port, tcp_nodelay

DATABASE = "bench_ratelimit"
CAP_S = 60.0
OFF = {"BORDERWATCH_RATE_LIMIT": "", "BORDERWATCH_TILE_RATE_LIMIT": "",
       "BORDERWATCH_AUTH_FAILURE_LIMIT": ""}  # fmt: skip
ON = {"BORDERWATCH_RATE_LIMIT": "1000000/minute",
      "BORDERWATCH_TILE_RATE_LIMIT": "1000000/minute",
      "BORDERWATCH_AUTH_FAILURE_LIMIT": "30/minute"}  # fmt: skip


@contextmanager
def _server(url: str, workers: int, limits: dict[str, str]) -> Iterator[Served]:
    port = free_port()
    env = dict(os.environ, DATABASE_URL=url, BORDERWATCH_ENVIRONMENT="test",
               BORDERWATCH_DB_POOL_SIZE="20", **limits)  # fmt: skip
    cmd = [
        sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--workers", str(workers), "--timeout-worker-healthcheck", "30",
    ]  # fmt: skip
    with _serve(cmd, env, ROOT, port) as served:
        yield served


async def _measure(
    served: Served, key: str, concurrency: int, requests: int
) -> tuple[float, float, list[bool]]:
    """Median latency (ms) and requests per second of GET /me, and TCP_NODELAY on each
    connection the server's processes hold open for the client (bench.common.tcp_nodelay)."""
    samples: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=served.base, limits=limits, headers=headers) as client:
        left = requests
        deadline = time.monotonic() + CAP_S

        async def worker() -> None:
            nonlocal left
            while left > 0 and time.monotonic() < deadline:
                left -= 1
                t = time.perf_counter()
                r = await client.get("/me")
                samples.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text

        await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm the connections
        left = requests
        samples.clear()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        nodelay: list[bool] = []
        for pid in _children(served.pid) or [served.pid]:
            nodelay += tcp_nodelay(Served(served.base, served.port, pid)) or []
    return statistics.median(samples) * 1000, len(samples) / elapsed, nodelay


async def _memory_limiter_us(hits: int = 20_000) -> float:
    """µs per hit of limits' in-memory sliding window counter (the limiter before)."""
    limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
    item = parse("1000000/minute")
    started = time.perf_counter()
    for _ in range(hits):
        await limiter.hit(item, "42")
    return (time.perf_counter() - started) / hits * 1e6


async def _take_figures(url: str, calls: int = 2000) -> tuple[float, float, float]:
    """In process, on this database: µs per check sent one at a time (one round trip each),
    µs per check when 16 are in flight at once (they share calls), and checks per call then."""
    engine = create_engine(url, Settings(environment="test"))
    item = parse("1000000/minute")
    try:
        checks = [ratelimit.Check("bench", str(n % 50), item) for n in range(calls)]
        await ratelimit.take(engine, checks[:1])  # connect
        started = time.perf_counter()
        for check in checks:
            await ratelimit.take(engine, [check])
        one = (time.perf_counter() - started) / calls * 1e6
        shared = ratelimit.counter(engine)
        before = shared.calls
        queue = list(checks)

        async def worker() -> None:
            while queue:
                await ratelimit.take(engine, [queue.pop()])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(16)))
        many = (time.perf_counter() - started) / calls * 1e6
        per_call = calls / max(1, shared.calls - before)
    finally:
        await engine.dispose()
    return one, many, per_call


async def _prepare(url: str) -> str:
    await ensure_database(url)
    engine = create_engine(url, Settings(environment="test"))
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    return await bench_key(url, "analyst", name="bench ratelimit")


async def _drop(url: str) -> None:
    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, database="postgres"
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    finally:
        await conn.close()


def main(rounds: int, requests: int) -> None:
    """Print the table of figures (markdown)."""
    url = cluster().url(DATABASE)
    key = asyncio.run(_prepare(url))
    print(f"limits' in-memory counter (before): {asyncio.run(_memory_limiter_us()):.1f} µs/hit")
    one, many, per_call = asyncio.run(_take_figures(url))
    print(
        f"PostgreSQL counting (after), in process: {one:.0f} µs per check one at a time;"
        f" {many:.0f} µs per check with 16 in flight ({per_call:.1f} checks per call)"
    )
    results: dict[tuple[int, int, str], list[tuple[float, float]]] = {}
    try:
        for workers in (1, 2):
            for n in range(rounds):
                order = [("off", OFF), ("on", ON)]
                if n % 2:
                    order.reverse()
                for mode, env in order:
                    with _server(url, workers, env) as served:
                        for c in (1, 16):
                            *got, nodelay = asyncio.run(_measure(served, key, c, requests))
                            results.setdefault((workers, c, mode), []).append((got[0], got[1]))
                            print(f"  processes={workers} round {n + 1} {mode} c={c}:"
                                  f" {got[0]:.2f} ms, {got[1]:.0f}/s; connections with"
                                  f" TCP_NODELAY {sum(nodelay)}/{len(nodelay)}",
                                  file=sys.stderr)  # fmt: skip
    finally:
        asyncio.run(_drop(url))
    print("| processes | concurrency | off: median ms, req/s | on: median ms, req/s |"
          " on/off latency | on/off throughput |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for workers in (1, 2):
        for c in (1, 16):
            off, on = results[(workers, c, "off")], results[(workers, c, "on")]
            lat = statistics.median(b[0] / a[0] for a, b in zip(off, on, strict=True))
            thr = statistics.median(b[1] / a[1] for a, b in zip(off, on, strict=True))
            print(
                f"| {workers} | {c} | {statistics.median(a[0] for a in off):.2f},"
                f" {statistics.median(a[1] for a in off):.0f} |"
                f" {statistics.median(b[0] for b in on):.2f},"
                f" {statistics.median(b[1] for b in on):.0f} | {lat:.3f} | {thr:.3f} |"
            )


def _children(pid: int) -> list[int]:
    """The worker processes of a uvicorn supervisor (none when it serves by itself)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1500)
    args = parser.parse_args()
    main(args.rounds, args.requests)
