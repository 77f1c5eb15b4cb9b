"""The list filters at their worst, at 1 M incidents: the exact `bbox` and `q=` text search.

    .venv/bin/python -m bench.bench_filters [--incidents 1000000] [--runs 15]

Each case is the statement `GET /incidents` runs (app/incidents/listing.py, the default page of
100 and a page of 1 000), its values written in, run directly with asyncpg as the service runs
it (`jit = off`; no parallel workers, app/db.py LEADER_ONLY): median and p95 of `--runs` runs
after one warm-up, in one run of this script so that the ratios compare like with like.

- bbox: the densest 0.5° box of the data, exact (`ST_Intersects`, the service) against the
  index's `&&` alone (the previous test, which let points ~1e-6° outside through).
- q: a word in most descriptions, a word in few, a word in none (a scan would read every row:
  the worst case), and a word that names a category (matched by code) — accents and case
  folded, through the trigram indexes of migration 0020.
Bounded: a fixed number of runs per case and a wall-clock cap.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg
from sqlalchemy import ColumnElement

from app.auth.scope import NATIONAL
from app.geo import spatial
from app.incidents import listing
from app.incidents.filters import IncidentFilter, Rows, categories_named
from app.incidents.models import Incident
from bench.common import cluster, literal_sql, prepare, summary

CAP_S = 120.0
DENSEST = """
    SELECT floor(ST_X(geom) * 2) / 2 AS x, floor(ST_Y(geom) * 2) / 2 AS y, count(*) n
      FROM incident WHERE deleted_at IS NULL GROUP BY 1, 2 ORDER BY n DESC LIMIT 1
"""


class LooseBox(IncidentFilter):
    """The previous bbox test (`&&` alone), for comparison."""

    def conditions(self, i: Rows = Incident) -> list[ColumnElement[bool]]:
        assert self.bbox is not None
        inner = IncidentFilter(scope=self.scope)
        return [*inner.conditions(i), spatial.overlaps_bbox(i.geom, self.bbox)]


def page_sql(filt: IncidentFilter, limit: int) -> str:
    return literal_sql(listing._page_statement(filt, limit, 500, False))


async def timed(conn: asyncpg.Connection, sql: str, runs: int) -> tuple[list[float], int]:
    """Run times (s) and the rows of the page."""
    await conn.fetch(sql)  # warm-up
    samples: list[float] = []
    rows = 0
    deadline = time.monotonic() + CAP_S
    for _ in range(runs):
        t = time.perf_counter()
        result = await conn.fetch(sql)
        samples.append(time.perf_counter() - t)
        rows = sum(int(r[1]) for r in result)
        if time.monotonic() > deadline:
            break
    return samples, rows


async def main_async(args: argparse.Namespace) -> None:
    c = cluster()
    url = c.url("bench")
    await prepare(url, args.incidents)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("SET jit = off")
        await conn.execute("SET max_parallel_workers = 0")  # the list page's LEADER_ONLY
        total = await conn.fetchval("SELECT count(*) FROM incident")
        x, y = (float(v) for v in (await conn.fetchrow(DENSEST) or (0, 0))[:2])
        box = (x, y, x + 0.5, y + 0.5)
        in_box = await conn.fetchval(
            "SELECT count(*) FROM incident WHERE ST_Intersects(geom, ST_MakeEnvelope($1, $2,"
            " $3, $4, 4326))",
            *box,
        )
        print(f"incidents: {total:,}; densest 0.5° box {box} holds {in_box:,}")
        cases: list[tuple[str, IncidentFilter, int]] = []
        for limit in (100, 1000):
            cases.append((f"bbox exact (ST_Intersects), limit {limit}",
                          IncidentFilter(scope=NATIONAL, bbox=box), limit))  # fmt: skip
            cases.append((f"bbox && alone (before), limit {limit}",
                          LooseBox(scope=NATIONAL, bbox=box), limit))  # fmt: skip
        for q in ("demo incident", "huu nghi", "xyzzy quux", "buôn lậu", "HUU NGHI"):
            named = await _categories(url, q)  # read as the service reads them
            cases.append(
                (f"q={q!r} (categories {', '.join(named) or 'none'}), limit 100",
                 IncidentFilter(scope=NATIONAL, text=q, text_categories=named), 100)
            )  # fmt: skip
        for name, filt, limit in cases:
            samples, rows = await timed(conn, page_sql(filt, limit), args.runs)
            s = summary(samples)
            print(
                f"{name}: median {s['median_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms"
                f" ({rows} rows, {len(samples)} runs)"
            )
    finally:
        await conn.close()


async def _categories(url: str, q: str) -> tuple[str, ...]:
    from app.config import Settings
    from app.db import create_engine, sessionmaker

    engine = create_engine(url, Settings(environment="test"))
    try:
        async with sessionmaker(engine)() as session:
            return await categories_named(session, q)
    finally:
        await engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--incidents", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=15)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
