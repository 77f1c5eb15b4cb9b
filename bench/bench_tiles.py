"""Vector tiles at 1 000 000 incidents: tile sizes at low zoom, and z8 / z12 latency against
the raw SQL, in one run.

    .venv/bin/python -m bench.bench_tiles --incidents 1000000

1. Sizes: every tile of z0-z3 and the BUSIEST busiest tiles of z4, z5 (and z8, z10, z12 for
   reference), fetched over HTTP with a national admin key (readers: the biggest tiles) and a
   viewer key; the largest must stay under 500 kB at z0-z5.
2. Latency of GET /tiles/incidents/{z}/{x}/{y}.mvt at z8 and z12 (the tiles holding SAMPLE
   randomly chosen incidents: what a map over the busy areas asks for), keep-alive, one
   uvicorn worker, concurrency 1 and 16 — against the same tile made by PostgreSQL alone: the
   statement the service runs, sent with asyncpg over a pool (no auth, no version lookup).

Targets are plain `fetch(z, x, y) -> bytes` callables: another tile server (e.g. TiPg on the
same table) is one more entry in `targets` (see `http_target`). Bounded: a fixed number of
requests per loop and a wall-clock cap on each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from app.auth.scope import NATIONAL
from app.incidents.filters import IncidentFilter
from app.tiles import incidents
from app.tiles.tile import Tile
from bench.common import admin_key, bench_key, cluster, literal_sql, load, prepare, server

CAP_S = 120.0  # no loop runs longer than this
BUSIEST = 5
SAMPLE = 24
LIMIT_BYTES = 500 * 1024

OURS = "/tiles/incidents/{z}/{x}/{y}.mvt"

Fetch = Callable[[int, int, int], Awaitable[bytes]]


@dataclass
class Target:
    """Something that serves incident tiles."""

    name: str
    fetch: Fetch


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The XYZ tile holding a point."""
    n = 2**z
    return (
        int((lon + 180) / 360 * n),
        int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n),
    )


BUSY_SQL = """
WITH p AS (
    SELECT floor((ST_X(geom) + 180) / 360 * $1) AS tx,
           floor((1 - asinh(tan(radians(ST_Y(geom)))) / pi()) / 2 * $1) AS ty
      FROM incident WHERE deleted_at IS NULL
)
SELECT tx::int, ty::int, count(*) AS n FROM p GROUP BY 1, 2 ORDER BY n DESC LIMIT $2
"""


async def busiest(conn: asyncpg.Connection, z: int, k: int) -> list[tuple[int, int, int]]:
    """The k tiles of zoom z holding the most incidents: (x, y, incidents)."""
    rows = await conn.fetch(BUSY_SQL, 2**z, k)
    return [(int(r[0]), int(r[1]), int(r[2])) for r in rows]


async def sample_points(conn: asyncpg.Connection, k: int) -> list[tuple[float, float]]:
    """k incident positions chosen at random (fixed seed)."""
    await conn.execute("SELECT setseed(0.42)")
    rows = await conn.fetch(
        "SELECT ST_X(geom), ST_Y(geom) FROM incident WHERE deleted_at IS NULL"
        " ORDER BY random() LIMIT $1",
        k,
    )
    return [(float(r[0]), float(r[1])) for r in rows]


def http_target(name: str, client: httpx.AsyncClient, template: str) -> Target:
    """A tile server reached over HTTP; `template` has {z}, {x}, {y}."""

    async def fetch(z: int, x: int, y: int) -> bytes:
        r = await client.get(template.format(z=z, x=x, y=y))
        assert r.status_code == 200, r.text
        return r.content

    return Target(name, fetch)


def raw_statements(tiles: list[tuple[int, int, int]]) -> dict[Any, str]:
    """The SQL text the service runs for each tile (national admin), with literal values."""
    out: dict[Any, str] = {}
    for z, x, y in tiles:
        made = incidents.incident_tile_statement(
            IncidentFilter(scope=NATIONAL),
            Tile(z, x, y),
            aggregate_only=False,
            cap=incidents.MAX_TILE_POINTS,
        )
        assert made is not None
        stmt, params = made
        out[(z, x, y)] = literal_sql(stmt.params(params))
    return out


def sql_target(pool: asyncpg.Pool, statements: dict[Any, str]) -> Target:
    """PostgreSQL alone making the same tile."""

    async def fetch(z: int, x: int, y: int) -> bytes:
        async with pool.acquire() as conn:
            value = await conn.fetchval(statements[(z, x, y)])
        return bytes(value or b"")

    return Target("raw SQL (asyncpg)", fetch)


async def timed(
    target: Target, tiles: list[tuple[int, int, int]], concurrency: int, rounds: int
) -> dict[str, float]:
    """Fetch every tile `rounds` times at the given concurrency: latency summary and rate."""
    jobs = [t for _ in range(rounds) for t in tiles]
    return await load(lambda t: target.fetch(*t), jobs, concurrency, CAP_S)


async def sizes(
    client: httpx.AsyncClient, tiles: dict[int, list[tuple[int, int]]]
) -> dict[int, dict[str, Any]]:
    """Largest tile (bytes) and its address per zoom, with the slowest fetch."""
    out: dict[int, dict[str, Any]] = {}
    for z, addresses in tiles.items():
        best: dict[str, Any] = {"bytes": -1}
        slowest = 0.0
        for x, y in addresses:
            t = time.perf_counter()
            r = await client.get(f"/tiles/incidents/{z}/{x}/{y}.mvt")
            slowest = max(slowest, time.perf_counter() - t)
            assert r.status_code == 200, r.text
            if len(r.content) > best["bytes"]:
                best = {"bytes": len(r.content), "tile": f"{z}/{x}/{y}"}
        out[z] = {**best, "tiles": len(addresses), "slowest_ms": round(slowest * 1000, 1)}
    return out


async def viewer_key(url: str) -> str:
    """A national viewer key (aggregates only)."""
    return await bench_key(url, "viewer", name="bench viewer")


async def run(url: str, base: str, key: str, viewer: str, rounds: int) -> dict[str, Any]:
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        size_tiles: dict[int, list[tuple[int, int]]] = {
            z: [(x, y) for x in range(2**z) for y in range(2**z)] for z in range(4)
        }
        busy: dict[int, list[tuple[int, int, int]]] = {}
        for z in (4, 5, 8, 10, 12):
            busy[z] = await busiest(conn, z, BUSIEST)
            size_tiles[z] = [(x, y) for x, y, _ in busy[z]]
        points = await sample_points(conn, SAMPLE)
    finally:
        await conn.close()
    result: dict[str, Any] = {"busiest": {z: v for z, v in busy.items()}}
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=base, timeout=120, headers=headers, limits=limits) as c:
        result["sizes_reader"] = await sizes(c, size_tiles)
    async with httpx.AsyncClient(
        base_url=base, timeout=120, headers={"Authorization": f"Bearer {viewer}"}
    ) as c:
        result["sizes_viewer"] = await sizes(c, {z: size_tiles[z] for z in (0, 1, 2, 3, 4, 5)})
    timing: dict[str, Any] = {}
    for z in (8, 12):
        tiles = sorted({(z, *tile_of(lon, lat, z)) for lon, lat in points})
        statements = raw_statements(tiles)
        pool = await asyncpg.create_pool(dsn, min_size=16, max_size=16)
        assert pool is not None
        async with httpx.AsyncClient(
            base_url=base, timeout=120, headers=headers, limits=limits
        ) as client:
            targets = [
                http_target("GET /tiles/incidents (HTTP)", client, OURS),
                sql_target(pool, statements),
            ]
            for target in targets:  # warm-up: caches and connections
                for t in tiles:
                    await target.fetch(*t)
            for target in targets:
                for concurrency in (1, 16):
                    stats = await timed(target, tiles, concurrency, rounds)
                    timing[f"z{z} {target.name} c{concurrency}"] = stats
            sizes_z = [len(await targets[1].fetch(*t)) for t in tiles]
            timing[f"z{z} tiles"] = {"count": len(tiles), "max_bytes": max(sizes_z)}
        await pool.close()
    result["timing"] = timing
    return result


def report(result: dict[str, Any]) -> None:
    """Markdown tables for docs/performance.md."""
    print("\n| zoom | tiles fetched | largest tile (reader key) | largest (viewer key) | slowest |")
    print("| --- | --- | --- | --- | --- |")
    for z, row in result["sizes_reader"].items():
        viewer = result["sizes_viewer"].get(z, {})
        vb = f"{viewer['bytes'] / 1024:.1f} kB" if viewer else "-"
        print(
            f"| z{z} | {row['tiles']} | {row['bytes'] / 1024:.1f} kB ({row['tile']}) | {vb} |"
            f" {row['slowest_ms']} ms |"
        )
    print("\n| what | median | p95 | requests/s |")
    print("| --- | --- | --- | --- |")
    for name, s in result["timing"].items():
        if "median_ms" in s:
            print(f"| {name} | {s['median_ms']:.1f} ms | {s['p95_ms']:.1f} ms | {s['per_s']:.0f} |")
    for z in (8, 12):
        h1 = result["timing"][f"z{z} GET /tiles/incidents (HTTP) c1"]["median_ms"]
        s1 = result["timing"][f"z{z} raw SQL (asyncpg) c1"]["median_ms"]
        print(f"\nz{z}: HTTP / raw SQL (median, c1) = {h1 / s1:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5, help="passes over the sampled tiles")
    args = parser.parse_args()
    c = cluster()
    url = c.url("bench")
    asyncio.run(prepare(url, args.incidents))
    key = asyncio.run(admin_key(url))
    viewer = asyncio.run(viewer_key(url))
    with server(url) as base:
        result = asyncio.run(run(url, base, key, viewer, args.rounds))
    print(json.dumps(result, indent=1, default=str))
    report(result)
    too_big = {
        z: r["bytes"]
        for z, r in result["sizes_reader"].items()
        if z <= 5 and r["bytes"] > LIMIT_BYTES
    }
    print("\nz0-z5 under 500 kB:", "yes" if not too_big else f"NO {too_big}")


if __name__ == "__main__":
    main()
