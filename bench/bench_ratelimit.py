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
from dataclasses import dataclass

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


@dataclass
class Figures:
    """One measurement: median latency (ms), requests/s, CPU per request (ms) of the API
    processes and of the database's backends, and TCP_NODELAY on the client's connections."""

    median_ms: float
    per_s: float
    api_cpu_ms: float
    pg_cpu_ms: float
    nodelay: list[bool]


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (all their threads) so far."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


async def _backends(url: str) -> list[int]:
    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, database="postgres"
    )
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", DATABASE)
    finally:
        await conn.close()
    return [int(r["pid"]) for r in rows]


async def _measure(served: Served, url: str, key: str, concurrency: int, requests: int) -> Figures:
    """GET /me `requests` times from `concurrency` keep-alive clients (after as many to warm
    up): latency, throughput, and CPU per request read from /proc (a loaded machine moves the
    wall-clock figures, much less the CPU spent per request)."""
    samples: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    transport = httpx.AsyncHTTPTransport(retries=2, limits=limits)  # connect errors only
    async with httpx.AsyncClient(
        base_url=served.base, transport=transport, headers=headers, timeout=30
    ) as client:
        left = requests
        deadline = time.monotonic() + CAP_S

        async def worker() -> None:
            nonlocal left
            while left > 0 and time.monotonic() < deadline:
                left -= 1
                t = time.perf_counter()
                try:
                    r = await client.get("/me")
                except httpx.RemoteProtocolError:  # a keep-alive connection closed as we sent
                    r = await client.get("/me")
                samples.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text

        await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm the connections
        api = [served.pid, *_children(served.pid)]
        pg = await _backends(url)
        left = requests
        samples.clear()
        cpu_api, cpu_pg = _cpu_s(api), _cpu_s(pg)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu_api, cpu_pg = _cpu_s(api) - cpu_api, _cpu_s(pg) - cpu_pg
        nodelay: list[bool] = []
        for pid in _children(served.pid) or [served.pid]:
            nodelay += tcp_nodelay(Served(served.base, served.port, pid)) or []
    n = len(samples)
    return Figures(
        statistics.median(samples) * 1000, n / elapsed, cpu_api / n * 1000, cpu_pg / n * 1000,
        nodelay,
    )  # fmt: skip


async def _memory_limiter_us(hits: int = 20_000) -> float:
    """µs per hit of limits' in-memory sliding window counter (the limiter before)."""
    limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
    item = parse("1000000/minute")
    started = time.perf_counter()
    for _ in range(hits):
        await limiter.hit(item, "42")
    return (time.perf_counter() - started) / hits * 1e6


@dataclass
class TakeFigures:
    """In-process figures of the counting call (µs per check)."""

    one_wall: float  # one check at a time: a round trip each
    one_cpu: float  # ... of which this process's CPU
    many_wall: float  # 16 checks in flight: they share calls
    many_cpu: float
    per_call: float  # checks per call with 16 in flight


async def _take_figures(url: str, calls: int = 2000) -> TakeFigures:
    """The counting call in process, on this database, one check at a time and 16 at once:
    wall-clock and this process's CPU per check (the API's side of the cost; the database's
    is in the served figures)."""
    engine = create_engine(url, Settings(environment="test"))
    item = parse("1000000/minute")
    try:
        checks = [ratelimit.Check("bench", str(n % 50), item) for n in range(calls)]
        await ratelimit.take(engine, checks[:1])  # connect
        started, cpu = time.perf_counter(), time.process_time()
        for check in checks:
            await ratelimit.take(engine, [check])
        one = (time.perf_counter() - started) / calls * 1e6
        one_cpu = (time.process_time() - cpu) / calls * 1e6
        shared = ratelimit.counter(engine)
        before = shared.calls
        queue = list(checks)

        async def worker() -> None:
            while queue:
                await ratelimit.take(engine, [queue.pop()])

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(16)))
        many = (time.perf_counter() - started) / calls * 1e6
        many_cpu = (time.process_time() - cpu) / calls * 1e6
        per_call = calls / max(1, shared.calls - before)
    finally:
        await engine.dispose()
    return TakeFigures(one, one_cpu, many, many_cpu, per_call)


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
    t = asyncio.run(_take_figures(url))
    print(
        f"PostgreSQL counting (after), in process: one check at a time {t.one_wall:.0f} µs"
        f" ({t.one_cpu:.0f} µs of this process's CPU); 16 in flight {t.many_wall:.0f} µs per"
        f" check ({t.many_cpu:.0f} µs CPU, {t.per_call:.1f} checks per call)"
    )
    if rounds == 0:
        asyncio.run(_drop(url))
        return
    results: dict[tuple[int, int, str], list[Figures]] = {}
    try:
        for workers in (1, 2):
            for n in range(rounds):
                order = [("off", OFF), ("on", ON)]
                if n % 2:
                    order.reverse()
                for mode, env in order:
                    with _server(url, workers, env) as served:
                        for c in (1, 16):
                            got = asyncio.run(_measure(served, url, key, c, requests))
                            results.setdefault((workers, c, mode), []).append(got)
                            print(f"  processes={workers} round {n + 1} {mode} c={c}:"
                                  f" {got.median_ms:.2f} ms, {got.per_s:.0f}/s, CPU per request"
                                  f" API {got.api_cpu_ms:.2f} ms + PostgreSQL"
                                  f" {got.pg_cpu_ms:.2f} ms; connections with TCP_NODELAY"
                                  f" {sum(got.nodelay)}/{len(got.nodelay)}",
                                  file=sys.stderr)  # fmt: skip
    finally:
        asyncio.run(_drop(url))
    print(
        "| processes | c | median ms off → on | req/s off → on | API CPU ms/request off → on"
        " | PostgreSQL CPU ms/request off → on | on/off: latency, throughput, total CPU |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")  # fmt: skip
    for workers in (1, 2):
        for c in (1, 16):
            off, on = results[(workers, c, "off")], results[(workers, c, "on")]

            cpu = statistics.median(
                (b.api_cpu_ms + b.pg_cpu_ms) / (a.api_cpu_ms + a.pg_cpu_ms)
                for a, b in zip(off, on, strict=True)
            )
            print(
                f"| {workers} | {c} | {med(off, 'median_ms'):.2f} → {med(on, 'median_ms'):.2f}"
                f" | {med(off, 'per_s'):.0f} → {med(on, 'per_s'):.0f}"
                f" | {med(off, 'api_cpu_ms'):.2f} → {med(on, 'api_cpu_ms'):.2f}"
                f" | {med(off, 'pg_cpu_ms'):.2f} → {med(on, 'pg_cpu_ms'):.2f}"
                f" | {ratio(off, on, 'median_ms'):.2f}, {ratio(off, on, 'per_s'):.2f}, {cpu:.2f} |"
            )


def med(rows: list[Figures], field: str) -> float:
    """The median of one field over the rounds."""
    return float(statistics.median(float(getattr(r, field)) for r in rows))


def ratio(off: list[Figures], on: list[Figures], field: str) -> float:
    """The median over the rounds of on / off for one field."""
    pairs = zip(off, on, strict=True)
    return float(statistics.median(float(getattr(b, field)) / getattr(a, field) for a, b in pairs))


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
    parser.add_argument("--rounds", type=int, default=3, help="0: the in-process figures only")
    parser.add_argument("--requests", type=int, default=1500)
    args = parser.parse_args()
    main(args.rounds, args.requests)
