"""What the body middleware (app/bodies.py) costs, in process, with and without it.

    .venv/bin/python -m bench.bench_bodies [--requests 20000] [--tiles --incidents 20000]

1. The layer alone: a GET passed through to an application that does nothing, against calling
   that application directly (ns per request).
2. The whole application, in process (no server, no network): process CPU per request for
   GET /healthz (no database: the largest share the layer can have), a POST whose 1 kB body is
   read (401 before any database work), and with --tiles a z8 incident tile on the benchmark
   cluster (bench/common.py) with a national admin key. "without" is the same application with
   the middleware taken out of its stack.
3. Wide CSV headers: the import's header step (read, cap, resolve) for 500 to 10 000 columns,
   seconds and microseconds per column (it must grow in proportion).

Bounded: a fixed number of requests per round, three rounds, and a wall-clock cap per loop.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from app.bodies import body_middleware
from app.config import Settings
from app.db import create_engine
from app.incidents.imports.csv_file import CsvFile
from app.main import create_app
from app.spool import SpoolDir

CAP_S = 60.0  # no loop runs longer than this
ROUNDS = 3


def _scope(
    method: str, path: str, headers: list[tuple[bytes, bytes]], query: bytes = b""
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"bench"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _call(app: Any, scope: dict[str, Any], body: bytes) -> int:
    """One request through the ASGI app; its status."""
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # a disconnect never comes during a request here
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope, state={}), receive, send)
    return status


async def _cpu_per_request(app: Any, scope: dict[str, Any], body: bytes, n: int) -> float:
    """Process CPU seconds per request over n requests (after a warm-up)."""
    for _ in range(min(50, n)):
        await _call(app, scope, body)
    started, wall = time.process_time(), time.monotonic()
    done = 0
    while done < n and time.monotonic() - wall < CAP_S:
        await _call(app, scope, body)
        done += 1
    return (time.process_time() - started) / done


def _without_middleware(app: FastAPI) -> FastAPI:
    # as object: starlette types Middleware.cls as a protocol generic over the factory's
    # parameters, which mypy then sees as never the same object as our function
    ours: object = body_middleware
    app.user_middleware = [m for m in app.user_middleware if m.cls is not ours]
    return app


async def layer_alone(n: int) -> dict[str, float]:
    """ns per GET: the application called directly, and through the middleware."""

    async def nothing(scope: Any, receive: Any, send: Any) -> None:
        return None

    layer = body_middleware(nothing, settings=Settings(environment="test"), spool=SpoolDir())
    scope = _scope("GET", "/tiles/incidents/8/203/113.mvt", [], b"v=12&category=smuggling")

    async def loop(app: Any) -> float:
        started = time.perf_counter_ns()
        for _ in range(n):
            await app(scope, None, None)
        return (time.perf_counter_ns() - started) / n

    out: dict[str, list[float]] = {"direct": [], "through the middleware": []}
    for _ in range(ROUNDS):
        out["direct"].append(await loop(nothing))
        out["through the middleware"].append(await loop(layer))
    return {k: min(v) for k, v in out.items()}


async def whole_app(
    n: int, make: Callable[[], FastAPI], cases: dict[str, tuple[dict[str, Any], bytes, int]]
) -> dict[str, dict[str, float]]:
    """µs of process CPU per request, with and without the middleware (best of ROUNDS)."""
    apps = {"with": make(), "without": _without_middleware(make())}
    result: dict[str, dict[str, float]] = {}
    for name, (scope, body, expected) in cases.items():
        for app in apps.values():
            assert await _call(app, scope, body) == expected, name
        best = {label: float("inf") for label in apps}
        for _ in range(ROUNDS):
            for label, app in apps.items():
                cpu = await _cpu_per_request(app, scope, body, n)
                best[label] = min(best[label], cpu * 1e6)
        result[name] = best
    return result


def header_widths() -> list[tuple[int, float]]:
    """(columns, seconds) of the import's header step, best of five."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for columns in (500, 1000, 2000, 5000, 10_000):
            path = Path(tmp) / f"{columns}.csv"
            names = ["lat", "lon", "date", "category", *(f"c{i}" for i in range(columns - 4))]
            path.write_text(",".join(names) + "\n10.4,105.4,2024-01-01,other\n")
            best = float("inf")
            for _ in range(5):
                started = time.perf_counter()
                CsvFile(path).open()
                best = min(best, time.perf_counter() - started)
            out.append((columns, best))
    return out


async def tile_case(incidents: int) -> tuple[Callable[[], FastAPI], dict[str, Any]]:
    """An app factory on the benchmark cluster and a z8 tile request with an admin key."""
    from bench.bench_tiles import busiest
    from bench.common import admin_key, cluster, prepare

    url = cluster().url("bench_bodies")
    await prepare(url, incidents)
    key = await admin_key(url)
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        (x, y, _), *_ = await busiest(conn, 8, 1)
    finally:
        await conn.close()
    settings = Settings(environment="test", database_url=url, rate_limit="", tile_rate_limit="")
    engine = create_engine(url, settings)
    scope = _scope(
        "GET", f"/tiles/incidents/8/{x}/{y}.mvt", [(b"authorization", f"Bearer {key}".encode())]
    )
    return (lambda: create_app(settings, engine=engine)), scope


async def main_async(requests: int, tiles: bool, incidents: int) -> None:
    print("1. the layer alone (ns per GET, best of 3):")
    for name, ns in (await layer_alone(requests * 10)).items():
        print(f"   {name:24} {ns:8.0f}")
    settings = Settings(environment="test", rate_limit="", tile_rate_limit="")
    body = b'{"description": "' + b"x" * 1000 + b'"}'
    cases: dict[str, tuple[dict[str, Any], bytes, int]] = {
        "GET /healthz": (_scope("GET", "/healthz", []), b"", 200),
        "POST /incidents, 1 kB body (401)": (
            _scope(
                "POST",
                "/incidents",
                [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
            ),
            body,
            401,
        ),
    }
    # an engine that is never connected: these requests end before any database work
    idle = create_engine("postgresql://bench@127.0.0.1:9/none", settings)
    make: Callable[[], FastAPI] = lambda: create_app(settings, engine=idle)  # noqa: E731
    results = await whole_app(requests, make, cases)
    if tiles:
        make_tile, scope = await tile_case(incidents)
        results |= await whole_app(
            max(1, requests // 20), make_tile, {"GET z8 incident tile": (scope, b"", 200)}
        )
    print("2. process CPU per request, µs (best of 3):")
    for name, best in results.items():
        print(
            f"   {name:34} without {best['without']:7.1f}   with {best['with']:7.1f}"
            f"   difference {best['with'] - best['without']:+6.1f}"
        )
    print("3. CSV header step (read, cap, resolve):")
    for columns, seconds in header_widths():
        print(
            f"   {columns:6} columns  {seconds * 1000:7.2f} ms"
            f"  {seconds / columns * 1e6:5.2f} µs/column"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--tiles", action="store_true", help="also a tile on the bench cluster")
    parser.add_argument("--incidents", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(main_async(args.requests, args.tiles, args.incidents))


if __name__ == "__main__":
    main()
