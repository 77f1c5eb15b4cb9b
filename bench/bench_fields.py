"""What the names beside the codes cost (docs/fields.md), at 1 M incidents, in one run.

    .venv/bin/python -m bench.bench_fields [--incidents 1000000] [--runs 9]

Each case runs the service's own statement twice over: as it is (the fields of
app/incidents/schema.py, names joined from the category, jurisdiction and post tables) and with
the names left out (the same statement over the incident and its nearest post only, the names
NULL: what the outputs cost before the names). Cases are the worst realistic ones:

- the busiest zoom-12 tile that is still drawn as points (at most 5 000 incidents: a fuller
  tile is drawn as aggregates, which carry no names);
- the list's page of 100 and of 1 000 in the densest 0.5° box (the page is chosen first, then
  joined);
- the GeoJSON and CSV exports of the newest 100 000 incidents (every row joined).

Statements run with asyncpg as the service runs them (`jit = off`, no parallel workers), the
two variants alternating, median and p95 of `--runs` runs after a warm-up. Bounded: a fixed
number of runs and a wall-clock cap per case.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Collection
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import FromClause

from app.auth.scope import NATIONAL
from app.i18n import Lang
from app.incidents import exports, listing, schema
from app.incidents.filters import IncidentFilter
from app.tiles import incidents as tiles
from app.tiles.tile import Tile
from bench.common import cluster, literal_sql, prepare, summary

CAP_S = 180.0
BUSIEST_Z12 = """
    SELECT x, y, n FROM (
      SELECT x, y, count(*) AS n FROM (
        SELECT floor((ST_X(geom) + 180) / 360 * 4096)::int AS x,
               floor((1 - ln(tan(radians(ST_Y(geom))) + 1 / cos(radians(ST_Y(geom)))) / pi())
                     / 2 * 4096)::int AS y
          FROM incident WHERE deleted_at IS NULL) t
      GROUP BY 1, 2) c
    WHERE n <= 5000 ORDER BY n DESC LIMIT 1
"""
DENSEST = """
    SELECT floor(ST_X(geom) * 2) / 2 AS x, floor(ST_Y(geom) * 2) / 2 AS y, count(*) n
      FROM incident WHERE deleted_at IS NULL GROUP BY 1, 2 ORDER BY n DESC LIMIT 1
"""
NEWEST = "SELECT occurred_at FROM incident ORDER BY occurred_at DESC OFFSET 99999 LIMIT 1"

real_joined = schema.joined


def codes_only(
    lang: Lang,
    rows: FromClause | None = None,
    wanted: Collection[str] | None = None,
    *,
    lookups: bool = False,
) -> schema.Joined:
    """The fields without the names (NULL), so without the joins the names need."""
    return real_joined(lang, rows, set(wanted or schema.BY_NAME) - schema.NAMES, lookups=lookups)


@contextmanager
def names_left_out() -> Any:
    schema.joined = codes_only
    _clear()
    try:
        yield
    finally:
        schema.joined = real_joined
        _clear()


def _clear() -> None:
    listing._page_statement.cache_clear()
    tiles.capped_points.cache_clear()


async def compare(conn: asyncpg.Connection, name: str, make: Callable[[], str], runs: int) -> None:
    """Time the statement `make()` builds with and without the names, alternating."""
    with_names = make()
    with names_left_out():
        without = make()
    assert with_names != without
    samples: dict[str, list[float]] = {"names": [], "codes only": []}
    for sql in (with_names, without):
        await conn.fetch(sql)  # warm-up
    deadline = time.monotonic() + CAP_S
    for _ in range(runs):
        for label, sql in (("names", with_names), ("codes only", without)):
            t = time.perf_counter()
            await conn.fetch(sql)
            samples[label].append(time.perf_counter() - t)
        if time.monotonic() > deadline:
            break
    a, b = summary(samples["names"]), summary(samples["codes only"])
    print(
        f"{name}: names median {a['median_ms']:.1f} ms (p95 {a['p95_ms']:.1f}), codes only"
        f" {b['median_ms']:.1f} ms (p95 {b['p95_ms']:.1f}): ×{a['median_ms'] / b['median_ms']:.2f}"
        f" ({len(samples['names'])} runs)"
    )


def tile_sql(filt: IncidentFilter, tile: Tile) -> str:
    made = tiles.incident_tile_statement(
        filt, tile, aggregate_only=False, cap=tiles.MAX_TILE_POINTS
    )
    assert made is not None
    stmt, params = made
    return literal_sql(stmt.params(params))


async def main_async(args: argparse.Namespace) -> None:
    c = cluster()
    url = c.url("bench")
    await prepare(url, args.incidents)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("SET jit = off")
        await conn.execute("SET max_parallel_workers = 0")
        total = await conn.fetchval("SELECT count(*) FROM incident")
        busiest = await conn.fetchrow(BUSIEST_Z12)
        assert busiest is not None
        tx, ty, in_tile = busiest
        bx, by = (float(v) for v in (await conn.fetchrow(DENSEST) or (0, 0))[:2])
        since: datetime = await conn.fetchval(NEWEST)
        print(f"incidents: {total:,}; busiest z12 point tile {tx}/{ty} holds {in_tile:,}")
        everything = IncidentFilter(scope=NATIONAL)
        tile = Tile(12, tx, ty)
        name = f"busiest z12 point tile 12/{tx}/{ty}"
        await compare(conn, name, lambda: tile_sql(everything, tile), args.runs)
        box = IncidentFilter(scope=NATIONAL, bbox=(bx, by, bx + 0.5, by + 0.5))
        for limit in (100, 1000):

            def page(limit: int = limit) -> str:
                return literal_sql(listing._page_statement(box, limit, 500, False))

            await compare(conn, f"list page of {limit}, densest 0.5° box", page, args.runs)
        newest = IncidentFilter(scope=NATIONAL, start=since)
        await compare(
            conn,
            "GeoJSON export, newest 100 000",
            lambda: literal_sql(exports.geojson_statement(newest, "vi")),
            max(3, args.runs // 3),
        )
        await compare(
            conn,
            "CSV/GeoPackage rows, newest 100 000",
            lambda: literal_sql(exports._rows_stmt(newest, "vi")),
            max(3, args.runs // 3),
        )
    finally:
        await conn.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--incidents", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=9)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
