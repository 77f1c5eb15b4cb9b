"""Server CPU per tile request, in process: what our Python costs around PostgreSQL's work.

    .venv/bin/python -m bench.bench_tile_cpu [--incidents 300000] [--requests 600]

The whole application (middleware, routing, key lookup, versions, ETag) is called as an ASGI
app, without a server or a network, on the benchmark cluster (bench/common.py) with a national
admin key; process CPU (`time.process_time`, this process only: PostgreSQL's own work is not in
it) and wall time per request for the busiest z8 and z12 incident tiles, an empty z12 tile, a
304 on the busiest z12 tile, a hot-spot tile (grid kept), a reference tile and a TileJSON.

To compare two versions of the code, run this file from a checkout of each (`git archive <rev>
| tar -x -C /tmp/x`, then `cd /tmp/x && python -m bench.bench_tile_cpu --url … --key …`),
alternating, on the same cluster: `--url` and `--key` skip the set-up. Bounded: a fixed number of
requests per case and a wall-clock cap on each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import asyncpg

from app.config import Settings
from app.db import create_engine
from app.main import create_app
from bench.common import admin_key, cluster, prepare

CAP_S = 60.0  # no case runs longer than this
WARM_UP = 20

BUSIEST_SQL = """
WITH p AS (
    SELECT floor((ST_X(geom) + 180) / 360 * $1) AS tx,
           floor((1 - asinh(tan(radians(ST_Y(geom)))) / pi()) / 2 * $1) AS ty
      FROM incident WHERE deleted_at IS NULL
)
SELECT tx::int, ty::int FROM p GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1
"""


def _scope(path: str, key: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode()), *extra],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _call(app: Any, scope: dict[str, Any]) -> tuple[int, int, dict[str, str]]:
    """One request through the ASGI app: status, body size, headers."""
    sent = False
    status, size, headers = 0, 0, {}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)  # a disconnect never comes during a request here
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, size, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            size += len(message.get("body", b""))

    await app(dict(scope, state={}), receive, send)
    return status, size, headers


async def _busiest(dsn: str, z: int) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(BUSIEST_SQL, 2**z)
    finally:
        await conn.close()
    assert row is not None
    return int(row[0]), int(row[1])


async def measure(url: str, key: str, requests: int) -> dict[str, dict[str, float]]:
    """CPU and wall milliseconds per request for each case."""
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    x8, y8 = await _busiest(dsn, 8)
    x12, y12 = await _busiest(dsn, 12)
    settings = Settings(environment="test", database_url=url, rate_limit="", tile_rate_limit="")
    engine = create_engine(url, settings)
    app = create_app(settings, engine=engine)
    busy12 = f"/tiles/incidents/12/{x12}/{y12}.mvt"
    cases = {
        "z8 busiest": (_scope(f"/tiles/incidents/8/{x8}/{y8}.mvt", key), max(1, requests // 10)),
        "z12 busiest": (_scope(busy12, key), max(1, requests // 4)),
        "z12 empty": (_scope("/tiles/incidents/12/0/0.mvt", key), requests),
        "z8 hotspots": (_scope(f"/tiles/hotspots/8/{x8}/{y8}.mvt", key), requests),
        "z5 jurisdictions": (_scope("/tiles/jurisdictions/5/25/14.mvt", key), requests // 4),
        "TileJSON incidents": (_scope("/tiles/incidents.json", key), requests),
    }
    _, _, headers = await _call(app, cases["z12 busiest"][0])
    etag = ((b"if-none-match", headers["etag"].encode()),)
    cases["z12 busiest, 304"] = (_scope(busy12, key, etag), requests)
    out: dict[str, dict[str, float]] = {}
    try:
        for name, (scope, count) in cases.items():
            for _ in range(min(WARM_UP, count)):
                status, size, _ = await _call(app, scope)
            assert status in (200, 304), (name, status)
            cpu, wall = time.process_time(), time.perf_counter()
            done = 0
            while done < max(1, count) and time.perf_counter() - wall < CAP_S:
                await _call(app, scope)
                done += 1
            out[name] = {
                "cpu_ms": (time.process_time() - cpu) / done * 1000,
                "wall_ms": (time.perf_counter() - wall) / done * 1000,
                "requests": done,
                "status": status,
                "bytes": size,
            }
    finally:
        await engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=300_000)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--url", help="a prepared database (skips the set-up)")
    parser.add_argument("--key", help="an admin key of that database")
    args = parser.parse_args()
    url, key = args.url, args.key
    if url is None:
        url = cluster().url("bench")
        asyncio.run(prepare(url, args.incidents))
    if key is None:
        key = asyncio.run(admin_key(url))
    print(json.dumps(asyncio.run(measure(url, key, args.requests))))


if __name__ == "__main__":
    main()
