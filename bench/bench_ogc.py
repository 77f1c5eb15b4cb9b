"""OGC API – Features items and incident vector tiles: ours against TiPg serving the same table
of the same database, and against the raw SQL our service runs, in one run.

    .venv/bin/python -m bench.bench_ogc --incidents 1000000

1. Items: GET /ogc/collections/incidents/items?bbox=<the 0.5° hotspot box of bench_api>&limit=1000
   (national admin key) against TiPg's /collections/public.incident/items with the same bbox and
   limit (TiPg's default order is by id; its answer sorted like ours, newest first, is fetched
   once to check that both return the same 1 000 incidents) — and against the statement our
   service runs for the page (Features, paging and numberMatched in one; here wrapped into the
   FeatureCollection text), sent with asyncpg.
2. Tiles z8 and z12: the tiles holding the sampled incidents of bench_tiles, ours
   (/tiles/incidents/…) against TiPg's /collections/public.incident/tiles/WebMercatorQuad/… (all
   columns, and only the properties our point tiles carry) and the statement our service runs
   for each tile. Our tiles aggregate below z10 and past 5 000 points (docs/tiles.md); TiPg
   sends up to 10 000 raw points per tile: sizes and feature counts are reported beside the
   times.

Every HTTP client keeps its connections alive and asks for no compression (TiPg compresses
when asked, we never do). Before timing, TCP_NODELAY is read from each server's accepted
sockets and small keep-alive requests are timed: Nagle + delayed ACK (~40 ms per keep-alive
request, docs/performance.md) would show there. Targets are measured in alternating blocks so
that load from elsewhere on the machine hits them alike. Bounded: a fixed number of requests per
loop, no request started after a wall-clock cap, 127.0.0.1 only; both servers are stopped by
PID even on error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import mapbox_vector_tile
import orjson
from sqlalchemy import ClauseElement, Text, cast, func, literal, select
from starlette.datastructures import QueryParams

from app.auth.scope import NATIONAL
from app.ogc import collections, params, service
from bench.bench_api import hotspot_sql
from bench.bench_tiles import raw_statements, sample_points, tile_of
from bench.common import (
    Served,
    admin_key,
    cluster,
    literal_sql,
    load_samples,
    prepare,
    served,
    summary,
    tcp_nodelay,
    tipg,
)

CAP_S = 120.0  # per loop: no request is started after this
LIMIT = 1000
OURS_ITEMS = "/ogc/collections/incidents/items"
OURS_TILE = "/tiles/incidents/{z}/{x}/{y}.mvt"
TIPG_ITEMS = "/collections/public.incident/items"
TIPG_TILE = "/collections/public.incident/tiles/WebMercatorQuad/{z}/{x}/{y}"
OUR_POINT_PROPERTIES = "id,category,severity,status,occurred_at"
TIPG_SORTED_LIKE_OURS = "-occurred_at,-id"
# the session settings of our engine (app/db.py): the raw SQL runs the way the service does
SERVER_SETTINGS = {
    "TimeZone": "UTC",
    "jit": "off",
    "plan_cache_mode": "force_custom_plan",
    "application_name": "bench-raw",
    # the service runs its items and tile statements without parallel workers (SET LOCAL);
    # asyncpg's fetchval (one row asked for) would run them so anyway
    "max_parallel_workers": "0",
}
NO_COMPRESSION = {"Accept-Encoding": "identity"}

Fetch = Callable[[Any], Awaitable[bytes]]


@dataclass
class Target:
    """Something that answers a job (an items request, or a tile address) with bytes."""

    name: str
    fetch: Fetch


def compile_sql(stmt: ClauseElement) -> str:
    """SQL text with literal values, as the service would send it."""
    return literal_sql(stmt)


def items_sql(bbox: tuple[float, float, float, float], limit: int) -> str:
    """The statement of our items route (page and numberMatched in one) for a national admin,
    the Features wrapped into the FeatureCollection text."""
    info = next(i for i in collections.infos([]) if i.id == collections.INCIDENTS)
    source = collections.incidents(info, NATIONAL)
    query = params.parse_items(
        QueryParams({"bbox": ",".join(map(str, bbox)), "limit": str(limit)}), source
    )
    page = service.page_statement(source, query).subquery()
    text, returned, fetched, counted = page.c
    body = select(
        literal('{"type":"FeatureCollection","features":[')
        + func.coalesce(cast(text, Text), literal(""))
        + literal("]}"),
        returned,
        fetched,
        counted,
    )
    return compile_sql(body)


def http_target(name: str, client: httpx.AsyncClient, path: str, query: dict[str, Any]) -> Target:
    """GET `path` (a template with {z}/{x}/{y} for tile jobs) with `query`."""

    async def fetch(job: Any) -> bytes:
        url = path.format(z=job[0], x=job[1], y=job[2]) if isinstance(job, tuple) else path
        r = await client.get(url, params=query)
        if r.status_code != 200:
            raise RuntimeError(f"{name}: {r.status_code} {r.text[:300]}")
        return r.content

    return Target(name, fetch)


def items_sql_target(pool: asyncpg.Pool, page_sql: str) -> Target:
    """The statement our items route runs."""

    async def fetch(_: Any) -> bytes:
        async with pool.acquire() as conn:
            body = await conn.fetchval(page_sql)
        return str(body).encode()

    return Target("raw SQL (asyncpg)", fetch)


def tile_sql_target(pool: asyncpg.Pool, statements: dict[Any, str]) -> Target:
    """The statement our service runs for each tile."""

    async def fetch(job: Any) -> bytes:
        async with pool.acquire() as conn:
            value = await conn.fetchval(statements[job])
        return bytes(value or b"")

    return Target("raw SQL (asyncpg)", fetch)


async def compare(
    targets: list[Target], jobs: list[Any], concurrency: int, blocks: int
) -> dict[str, dict[str, float]]:
    """Every target runs all jobs, in `blocks` alternating slices, the order of the targets
    rotated from one slice to the next (A B C, B C A, C A B …): load from elsewhere on the
    machine hits every target alike, and none always runs right after the same other one
    (a server's first requests after another one ran are slower: caches gone cold)."""
    got: dict[str, tuple[list[float], list[int], float]] = {t.name: ([], [], 0.0) for t in targets}
    size = -(-len(jobs) // blocks)
    for b in range(blocks):
        part = jobs[b * size : (b + 1) * size]
        for t in targets[b % len(targets) :] + targets[: b % len(targets)]:
            samples, sizes, elapsed = await load_samples(t.fetch, part, concurrency, CAP_S / blocks)
            s, z, e = got[t.name]
            got[t.name] = (s + samples, z + sizes, e + elapsed)
    out = {}
    for name, (samples, sizes, elapsed) in got.items():
        out[name] = {
            **summary(samples),
            "requests": len(samples),
            "per_s": len(samples) / elapsed,
            "median_bytes": statistics.median(sizes),
            "max_bytes": max(sizes),
        }
        print(
            f"  c{concurrency} {name}: median {out[name]['median_ms']:.1f} ms,"
            f" {out[name]['per_s']:.1f}/s ({len(samples)} requests)",
            flush=True,
        )
    return out


async def nagle_check(servers: dict[str, tuple[Served, httpx.AsyncClient]]) -> dict[str, Any]:
    """TCP_NODELAY on each server's accepted sockets, and small keep-alive requests timed."""
    out: dict[str, Any] = {}
    for name, (srv, client) in servers.items():
        times = []
        for _ in range(20):
            t = time.perf_counter()
            r = await client.get("/healthz")
            times.append(time.perf_counter() - t)
            assert r.status_code == 200
        flags = tcp_nodelay(srv)
        out[name] = {
            "tcp_nodelay": "unknown" if flags is None else f"{sum(flags)}/{len(flags)} on",
            "healthz_keepalive_median_ms": round(statistics.median(times) * 1000, 2),
        }
        if flags is not None and not all(flags):
            print(f"  WARNING: {name} has TCP_NODELAY off on {flags.count(False)} sockets")
    return out


async def fresh_vs_keepalive(
    target_url: str, headers: dict[str, str], n: int = 8
) -> dict[str, float]:
    """The same request on a new connection each time and on one kept-alive connection: a
    Nagle stall shows as keep-alive being tens of ms slower."""
    fresh, kept = [], []
    for _ in range(n):
        async with httpx.AsyncClient(headers=headers, timeout=120) as c:
            t = time.perf_counter()
            await c.get(target_url)
            fresh.append(time.perf_counter() - t)
    async with httpx.AsyncClient(headers=headers, timeout=120) as c:
        await c.get(target_url)
        for _ in range(n):
            t = time.perf_counter()
            await c.get(target_url)
            kept.append(time.perf_counter() - t)
    return {
        "new_connection_median_ms": round(statistics.median(fresh) * 1000, 1),
        "keepalive_median_ms": round(statistics.median(kept) * 1000, 1),
    }


def features_of(body: bytes) -> dict[str, Any]:
    """What an items response holds (asserting it is a FeatureCollection of LIMIT features)."""
    doc = orjson.loads(body)
    assert doc["type"] == "FeatureCollection", doc.get("type")
    feats = doc["features"]
    assert len(feats) == LIMIT, len(feats)
    props = sorted({k for f in feats for k in f.get("properties", {})})
    return {
        "features": len(feats),
        "numberMatched": doc.get("numberMatched"),
        "numberReturned": doc.get("numberReturned"),
        "ids": [str(f["id"]) for f in feats],
        "coords": {str(f["id"]): f["geometry"]["coordinates"] for f in feats},
        "properties": props,
        "feature_links": "links" in feats[0],
        "bytes": len(body),
    }


def tile_features(body: bytes) -> int:
    """Features in an MVT (all layers)."""
    if not body:
        return 0
    return sum(len(layer["features"]) for layer in mapbox_vector_tile.decode(body).values())


async def run_items(
    targets: list[Target], requests: int, blocks: int, checks: dict[str, Any]
) -> dict[str, Any]:
    """Check each target's answer once, then time them at concurrency 1 and 16."""
    content = {t.name: features_of(await t.fetch(None)) for t in targets}
    ours, tipg_sorted = content[targets[0].name], content[targets[2].name]
    raw = content[targets[-1].name]
    checks["items"] = {
        name: {k: v for k, v in c.items() if k not in ("ids", "coords")}
        for name, c in content.items()
    }
    checks["items_same_features"] = {
        "ours_vs_raw_sql_ids_identical": ours["ids"] == raw["ids"],
        "ours_vs_tipg_sorted_same_ids": set(ours["ids"]) == set(tipg_sorted["ids"]),
        "ours_vs_tipg_sorted_same_order": ours["ids"] == tipg_sorted["ids"],
        "coordinates_differing": sum(
            1
            for k, v in ours["coords"].items()
            if k in tipg_sorted["coords"]
            and any(abs(a - b) > 1e-6 for a, b in zip(v, tipg_sorted["coords"][k], strict=True))
        ),
        "only_ours": sorted(set(ours["properties"]) - set(tipg_sorted["properties"])),
        "only_tipg": sorted(set(tipg_sorted["properties"]) - set(ours["properties"])),
    }
    timed = [t for t in targets if t is not targets[2]]  # the sorted TiPg: content check only
    for t in timed:  # warm-up: plans, caches, pool connections
        for _ in range(3):
            await t.fetch(None)
    out: dict[str, Any] = {}
    for concurrency in (1, 16):
        jobs = [None] * (requests if concurrency == 1 else requests * 2)
        out[f"c{concurrency}"] = await compare(timed, jobs, concurrency, blocks)
    return out


async def run_tiles(
    targets: list[Target], tiles: list[tuple[int, int, int]], rounds: int
) -> dict[str, Any]:
    """Feature counts and sizes of each target's tiles, then times at concurrency 1 and 16."""
    content: dict[str, Any] = {}
    for t in targets:
        bodies = [await t.fetch(tile) for tile in tiles]
        counts = [tile_features(b) for b in bodies]
        content[t.name] = {
            "tiles": len(tiles),
            "features_median": statistics.median(counts),
            "features_max": max(counts),
            "bytes_median": statistics.median(len(b) for b in bodies),
            "bytes_max": max(len(b) for b in bodies),
        }
    out: dict[str, Any] = {"content": content}
    jobs = [t for _ in range(rounds) for t in tiles]
    for concurrency in (1, 16):
        out[f"c{concurrency}"] = await compare(targets, jobs, concurrency, rounds)
    return out


async def measure(
    url: str, ours: Served, peer: Served, key: str, args: argparse.Namespace
) -> dict[str, Any]:
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(hotspot_sql())
        assert row is not None, "no incidents"
        bbox = (float(row["x"]), float(row["y"]), float(row["x"]) + 0.5, float(row["y"]) + 0.5)
        in_box = int(row["n"])
        points = await sample_points(conn, args.sample)
    finally:
        await conn.close()
    result: dict[str, Any] = {"bbox": bbox, "incidents_in_bbox": in_box}
    checks: dict[str, Any] = {}
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    pool = await asyncpg.create_pool(dsn, min_size=16, max_size=16, server_settings=SERVER_SETTINGS)
    assert pool is not None
    auth = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(
            base_url=ours.base, timeout=120, limits=limits, headers=auth | NO_COMPRESSION
        ) as oc,
        httpx.AsyncClient(
            base_url=peer.base, timeout=120, limits=limits, headers=NO_COMPRESSION
        ) as tc,
    ):
        box = ",".join(map(str, bbox))
        page_sql = items_sql(bbox, LIMIT)
        items_targets = [
            http_target("ours GET /ogc/…/items", oc, OURS_ITEMS, {"bbox": box, "limit": LIMIT}),
            http_target("TiPg (default order)", tc, TIPG_ITEMS, {"bbox": box, "limit": LIMIT}),
            http_target(
                "TiPg (sorted like ours)",
                tc,
                TIPG_ITEMS,
                {"bbox": box, "limit": LIMIT, "sortby": TIPG_SORTED_LIKE_OURS},
            ),
            items_sql_target(pool, page_sql),
        ]
        checks["nagle_before"] = await nagle_check({"ours": (ours, oc), "TiPg": (peer, tc)})
        print(f"items: bbox {bbox} ({in_box:,} incidents)", flush=True)
        result["items"] = await run_items(items_targets, args.requests, args.blocks, checks)
        item_query = f"?bbox={box}&limit={LIMIT}"
        checks["fresh_vs_keepalive_items"] = {
            "ours": await fresh_vs_keepalive(ours.base + OURS_ITEMS + item_query, auth),
            "TiPg": await fresh_vs_keepalive(peer.base + TIPG_ITEMS + item_query, {}),
        }
        for z in (8, 12):
            tiles = sorted({(z, *tile_of(lon, lat, z)) for lon, lat in points})
            statements = raw_statements(tiles)
            targets = [
                http_target("ours /tiles/incidents", oc, OURS_TILE, {}),
                http_target("TiPg (all columns)", tc, TIPG_TILE, {}),
                http_target(
                    "TiPg (our point properties)",
                    tc,
                    TIPG_TILE,
                    {"properties": OUR_POINT_PROPERTIES},
                ),
                tile_sql_target(pool, statements),
            ]
            print(f"tiles z{z}: {len(tiles)} tiles x {args.rounds} rounds", flush=True)
            result[f"z{z}"] = await run_tiles(targets, tiles, args.rounds)
        checks["nagle_after"] = await nagle_check({"ours": (ours, oc), "TiPg": (peer, tc)})
    await pool.close()
    result["checks"] = checks
    return result


def report(result: dict[str, Any]) -> None:
    """Markdown tables for docs/performance.md."""
    print(f"\nbbox {result['bbox']}: {result['incidents_in_bbox']:,} incidents")
    print("\n| what | c | median | p95 | req/s | median size | ÷ TiPg | ÷ raw SQL |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for section in ("items", "z8", "z12"):
        for c in ("c1", "c16"):
            rows = result[section][c]
            names = list(rows)
            ours, tipg_default, raw = rows[names[0]], rows[names[1]], rows[names[-1]]
            for name, s in rows.items():
                vs_tipg = s["median_ms"] / tipg_default["median_ms"]
                vs_raw = s["median_ms"] / raw["median_ms"]
                print(
                    f"| {section} {name} | {c[1:]} | {s['median_ms']:.1f} ms |"
                    f" {s['p95_ms']:.1f} ms | {s['per_s']:.1f} |"
                    f" {s['median_bytes'] / 1024:.1f} kB | {vs_tipg:.2f} | {vs_raw:.2f} |"
                )
            fastest_tipg = min(s["median_ms"] for n, s in rows.items() if n.startswith("TiPg"))
            verdict = (
                "met" if ours["median_ms"] <= fastest_tipg else "NOT met",
                "met" if ours["median_ms"] <= 1.5 * raw["median_ms"] else "NOT met",
            )
            print(
                f"| **{section} c{c[1:]} goals** | | ours ≤ every TiPg: {verdict[0]} |"
                f" ours ≤ 1.5× raw: {verdict[1]} ({ours['median_ms'] / raw['median_ms']:.2f}×)"
                " | | | | |"
            )
    for z in ("z8", "z12"):
        print(f"\n{z} tile content (one pass):")
        for name, c in result[z]["content"].items():
            print(
                f"  {name}: features median {c['features_median']}, max {c['features_max']};"
                f" bytes median {c['bytes_median'] / 1024:.1f} kB,"
                f" max {c['bytes_max'] / 1024:.1f} kB"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30, help="items requests per loop at c=1")
    parser.add_argument("--blocks", type=int, default=3, help="alternating blocks per loop")
    parser.add_argument("--rounds", type=int, default=4, help="passes over the sampled tiles")
    parser.add_argument("--sample", type=int, default=24, help="incidents whose tiles are timed")
    parser.add_argument("--database", default="bench")
    parser.add_argument("--out", help="also write the JSON result here")
    args = parser.parse_args()
    c = cluster()
    url = c.url(args.database)
    asyncio.run(prepare(url, args.incidents))
    key = asyncio.run(admin_key(url))
    started = time.time()
    with served(url) as ours, tipg(url) as peer:
        result = asyncio.run(measure(url, ours, peer, key, args))
    result["wall_s"] = round(time.time() - started, 1)
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    report(result)


if __name__ == "__main__":
    main()
