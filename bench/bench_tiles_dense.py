"""Aggregate tiles over the densest areas at 1 000 000 incidents: tile 8/203/120 (around Hồ Chí
Minh City, the dashboard's opening view for the south) and the busiest tiles of z5-z9, before
and after in one run, against TiPg's five-property tile; and the hit rate that writes leave.

    .venv/bin/python -m bench.bench_tiles_dense --before-ref HEAD~1

1. Targets, one after another per slice of tiles (the order rotating, so that load from
   elsewhere hits them alike): our API as it is (aggregates kept per version, the second and
   later requests of a tile are kept ones); our API at `--before-ref` (its `app/` exported with
   `git archive` into a temporary directory and served from there: the tile made every time);
   TiPg with `properties=id,category,severity,status,occurred_at`; the statement the service
   runs, sent with asyncpg (what a miss costs). National admin key (no filter) and an admin key
   scoped to Hồ Chí Minh City (VN-P79). Concurrency 1 and 8, p50 / p95.
2. Writes: a writer commits one incident at a time (unit `bench_tiles_dense`, deleted at the
   end) at a few rates while 8 clients load the opening view (the 3 x 3 z8 tiles around
   8/203/120) for a fixed time; a new (tile, ETag) pair is a fill, any other answer was kept.

The machine is shared: compare the targets within one run (ratios), not with other days.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx

from app.auth.scope import NATIONAL
from app.incidents.filters import IncidentFilter
from app.tiles import incidents
from app.tiles.tile import Tile
from bench.bench_tiles import Target, busiest, http_target, sql_target
from bench.common import (
    admin_key,
    bench_key,
    cluster,
    literal_sql,
    load,
    prepare,
    served,
    served_at,
    tipg,
)

CAP_S = 90.0  # no loop starts a request after this
OPENING = (8, 203, 120)
BUSIEST = 2  # per zoom, z5-z9
OURS = "/tiles/incidents/{z}/{x}/{y}.mvt"
TIPG_TILE = (
    "/collections/public.incident/tiles/WebMercatorQuad/{z}/{x}/{y}"
    "?properties=id,category,severity,status,occurred_at"
)
SCOPE = "VN-P79"  # Hồ Chí Minh City since 2025-07-01
WRITE_RATES = (0.0, 0.2, 1.0, 5.0)  # committed incidents per second
WRITE_S = 20.0
WRITER_UNIT = "bench_tiles_dense"
SERVER_SETTINGS = {"jit": "off", "max_parallel_workers": "0", "TimeZone": "UTC"}


async def scoped_key(url: str) -> str:
    """An admin key bound to Hồ Chí Minh City."""
    return await bench_key(url, "admin", jurisdiction=SCOPE, name="bench scoped")


def statements(tiles: list[tuple[int, int, int]]) -> dict[Any, str]:
    """The statement the service runs on a miss (national admin, no filter), literal values."""
    out: dict[Any, str] = {}
    for z, x, y in tiles:
        made = incidents.incident_tile_statement(
            IncidentFilter(scope=NATIONAL), Tile(z, x, y), aggregate_only=False, cap=1
        )
        assert made is not None
        stmt, params = made
        out[(z, x, y)] = literal_sql(stmt.params(params))
    return out


def fetcher(target: Target) -> Callable[[Any], Awaitable[bytes]]:
    """`target.fetch` taking the tile as one job."""

    async def fetch(job: Any) -> bytes:
        return await target.fetch(*job)

    return fetch


async def compare(
    targets: list[Target], tiles: list[tuple[int, int, int]], rounds: int
) -> dict[str, Any]:
    """Every target over the tiles at c=1 and c=8, in slices with the order rotating."""
    out: dict[str, Any] = {}
    for t in targets:  # warm-up: connections, statement caches, and one fill of each tile
        for tile in tiles:
            await t.fetch(*tile)
    for concurrency in (1, 8):
        samples: dict[str, list[float]] = {t.name: [] for t in targets}
        for turn in range(rounds):
            order = targets[turn % len(targets) :] + targets[: turn % len(targets)]
            for t in order:
                jobs = [tile for tile in tiles for _ in range(concurrency)]
                stats = await load(fetcher(t), jobs, concurrency, CAP_S)
                samples[t.name].append(stats["median_ms"])
                out.setdefault(f"{t.name} c{concurrency}", []).append(stats)
        for name in samples:
            runs = out[f"{name} c{concurrency}"]
            out[f"{name} c{concurrency}"] = {
                "median_ms": statistics.median(r["median_ms"] for r in runs),
                "p95_ms": max(r["p95_ms"] for r in runs),
                "per_s": statistics.median(r["per_s"] for r in runs),
                "median_bytes": statistics.median(r["median_bytes"] for r in runs),
            }
    return out


async def at_rate(
    writer: asyncpg.Connection, base: str, key: str, view: list[Any], rate: float
) -> dict[str, Any]:
    """8 clients loading `view` for WRITE_S seconds while `writer` commits `rate` incidents
    per second: requests, fills (new (tile, ETag) pairs), hit rate, latency."""
    stop = asyncio.Event()
    seen: set[tuple[Any, str]] = set()
    latencies: list[float] = []

    async def write() -> int:
        n = 0
        while rate and not stop.is_set():
            await writer.execute(
                "INSERT INTO incident (category, severity, occurred_at, geom, unit)"
                " VALUES ('smuggling', 3, now(), ST_SetSRID(ST_MakePoint(106.6 +"
                " random() * 0.2, 10.7 + random() * 0.2), 4326), $1)",
                WRITER_UNIT,
            )
            n += 1
            await asyncio.sleep(1 / rate)
        return n

    async def client(c: httpx.AsyncClient, first: int) -> None:
        k = first
        while not stop.is_set():
            z, x, y = view[k % len(view)]
            k += 1
            t = time.perf_counter()
            r = await c.get(OURS.format(z=z, x=x, y=y))
            latencies.append(time.perf_counter() - t)
            seen.add(((z, x, y), r.headers["etag"]))

    async def timer() -> None:
        await asyncio.sleep(WRITE_S)
        stop.set()

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as c:
        written, *_ = await asyncio.gather(write(), timer(), *(client(c, i) for i in range(8)))
    ordered = sorted(latencies)
    return {
        "writes_per_s": rate,
        "written": written,
        "requests": len(ordered),
        "fills": len(seen),
        "hit_rate": 1 - len(seen) / len(ordered),
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[int(len(ordered) * 0.95)] * 1000,
    }


async def writes(dsn: str, base: str, key: str) -> list[dict[str, Any]]:
    """Hit rate and latency of the opening view (3 x 3 z8 tiles) under steady write rates."""
    z, x0, y0 = OPENING
    view = [(z, x, y) for x in range(x0 - 1, x0 + 2) for y in range(y0 - 1, y0 + 2)]
    writer = await asyncpg.connect(dsn)
    try:
        return [await at_rate(writer, base, key, view, rate) for rate in WRITE_RATES]
    finally:
        await writer.execute("DELETE FROM incident WHERE unit = $1", WRITER_UNIT)
        await writer.close()


async def run(
    url: str, ours: str, before: str | None, peer: str | None, rounds: int
) -> dict[str, Any]:
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        tiles = [OPENING]
        for z in range(5, 10):
            tiles += [(z, x, y) for x, y, _ in await busiest(conn, z, BUSIEST)]
        tiles = list(dict.fromkeys(tiles))
    finally:
        await conn.close()
    national, scoped = await admin_key(url), await scoped_key(url)
    result: dict[str, Any] = {"tiles": tiles}
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    pool = await asyncpg.create_pool(dsn, min_size=8, max_size=8, server_settings=SERVER_SETTINGS)
    assert pool is not None
    try:
        for who, key in (("national", national), ("scoped VN-P79", scoped)):
            async with (
                httpx.AsyncClient(
                    headers={"Authorization": f"Bearer {key}"}, timeout=120, limits=limits
                ) as c,
                httpx.AsyncClient(timeout=120, limits=limits) as tc,
            ):
                targets = [http_target("ours (kept)", c, ours + OURS)]
                if before:
                    targets.append(http_target("ours before", c, before + OURS))
                if who == "national":
                    if peer:
                        targets.append(http_target("TiPg 5 properties", tc, peer + TIPG_TILE))
                    targets.append(sql_target(pool, statements(tiles)))
                opening = await compare(targets, [OPENING], rounds)
                busy = await compare(targets, tiles, max(1, rounds // 2))
                result[who] = {"8/203/120": opening, "z5-z9 busiest": busy}
    finally:
        await pool.close()
    result["writes"] = await writes(dsn, ours, national)
    return result


def report(result: dict[str, Any]) -> None:
    """Markdown tables for docs/performance.md."""
    print("\n| key | tiles | target | c | p50 ms | p95 ms | requests/s | median bytes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for who in ("national", "scoped VN-P79"):
        for which, rows in result[who].items():
            for name, s in rows.items():
                target, _, c = name.rpartition(" c")
                print(
                    f"| {who} | {which} | {target} | {c} | {s['median_ms']:.1f} |"
                    f" {s['p95_ms']:.1f} | {s['per_s']:.1f} | {s['median_bytes']:.0f} |"
                )
    print("\n| writes/s | written | requests | fills | hit rate | p50 ms | p95 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for w in result["writes"]:
        print(
            f"| {w['writes_per_s']:g} | {w['written']} | {w['requests']} | {w['fills']} |"
            f" {w['hit_rate']:.1%} | {w['median_ms']:.1f} | {w['p95_ms']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=4, help="slices per target and c")
    parser.add_argument("--before-ref", help="a git ref to serve as 'before' (e.g. HEAD~1)")
    parser.add_argument("--no-tipg", action="store_true")
    args = parser.parse_args()
    c = cluster()
    url = c.url("bench")
    asyncio.run(prepare(url, args.incidents))
    with served(url) as ours:
        before_cm = served_at(url, args.before_ref) if args.before_ref else None
        peer_cm = tipg(url) if not args.no_tipg else None
        with before_cm or _none() as before, peer_cm or _none() as peer:
            result = asyncio.run(
                run(
                    url,
                    ours.base,
                    before.base if before else None,
                    peer.base if peer else None,
                    args.rounds,
                )
            )
    print(json.dumps(result, indent=1, default=str))
    report(result)


@contextmanager
def _none() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    main()
