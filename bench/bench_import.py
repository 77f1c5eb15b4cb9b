"""Import throughput: a 100 000-row CSV end to end against a bare COPY of the same file.

    .venv/bin/python -m bench.bench_import [--rows 100000] [--database bench] [--quick]

Runs in one outer transaction on the benchmark cluster and rolls everything back: the import's
own commit only releases a savepoint, so the deferred triggers that would run at COMMIT are
fired (and timed) with SET CONSTRAINTS ALL IMMEDIATE. Then the write alone is taken apart: the
same rows inserted without derivation, without the history triggers, without the secondary
indexes and without the foreign keys (each in a savepoint, rolled back).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import create_engine
from app.incidents import imports
from bench.common import cluster, prepare


def _bench_csv(path: Path, count: int, posts: list[Any]) -> None:
    rng = random.Random(11)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["source_id", "occurred_at", "lat", "lon", "category", "severity",
                    "status", "description", "unit"])  # fmt: skip
        for i in range(count):
            if rng.random() < 0.85:  # around the border gates, like real incidents
                _, lon0, lat0 = rng.choice(posts)
                spread = 12.0
            else:
                lon0, lat0, spread = rng.uniform(102.2, 109.4), rng.uniform(8.6, 23.3), 0.0
            lon = lon0 + rng.gauss(0, spread) / (111.32 * math.cos(math.radians(lat0)))
            lat = lat0 + rng.gauss(0, spread) / 110.57
            at = start + timedelta(minutes=rng.randrange(0, 700 * 1440))
            category = rng.choice(["smuggling", "fraud", "Buôn lậu"])
            w.writerow([f"b{i}", at.isoformat(), f"{lat:.6f}", f"{lon:.6f}", category,
                        rng.randint(1, 5), "reported", f"bench row {i}", "unit 7"])  # fmt: skip


SECONDARY_INDEXES = (
    "ix_incident_occurred_at_id", "ix_incident_geom", "ix_incident_occurred_at",
    "ix_incident_province_occurred_at", "ix_incident_jurisdiction_path", "ix_incident_category",
    "uq_incident_source_source_id",
)  # fmt: skip
FOREIGN_KEYS = ("fk_incident_category_category", "fk_incident_nearest_post_id_border_post")
HISTORY_TRIGGERS = ("incident_history_inserted", "incident_history_updated")
PLAIN_INSERT = """
INSERT INTO incident (category, severity, status, occurred_at, geom, description, unit, source,
                      source_id, created_by, updated_by)
SELECT 'smuggling', b.severity, b.status, b.occurred_at,
       ST_SetSRID(ST_MakePoint(b.lon, b.lat), 4326), b.description, b.unit, 'bench-plain',
       b.source_id, 'bench', 'bench'
  FROM bare b
"""


async def _timed(session: AsyncSession, sql: str) -> float:
    t0 = time.perf_counter()
    await session.execute(text(sql))
    return time.perf_counter() - t0


async def measure(session: AsyncSession, tmp_path: Path, count: int, quick: bool) -> None:
    """Bare COPY, set-based import, unchanged re-import, per-row-trigger import, the write
    taken apart; all rolled back by the caller."""
    posts = (
        await session.execute(text("SELECT code, ST_X(geom), ST_Y(geom) FROM border_post"))
    ).all()
    have = (await session.execute(text("SELECT count(*) FROM incident"))).scalar_one()
    print(f"incidents in the database: {have:,}")
    path = tmp_path / "bench.csv"
    _bench_csv(path, count, list(posts))
    raw = await session.connection()
    conn = (await raw.get_raw_connection()).driver_connection
    assert conn is not None
    await conn.execute(
        "CREATE TEMP TABLE bare (source_id text, occurred_at timestamptz, lat float8,"
        " lon float8, category text, severity int2, status text, description text, unit text)"
    )
    t0 = time.perf_counter()
    await conn.copy_to_table("bare", source=str(path), format="csv", header=True)
    bare = time.perf_counter() - t0
    print(f"bare COPY of the file into a temp table: {bare:.2f} s, {count / bare:,.0f} rows/s")
    runs = [
        ("set-based", "bench", True, count),
        ("re-import, nothing changed", "bench", True, 0),
    ]
    if not quick:
        runs.append(("per-row trigger", "bench-trigger", False, count))
    for label, source, set_based, expected in runs:
        t0 = time.perf_counter()
        report = await imports.import_file(
            session=session, path=path, fmt="csv", actor="bench", source=source,
            set_based=set_based,
        )  # fmt: skip
        total = time.perf_counter() - t0
        assert report.inserted == expected
        deferred = await _timed(session, "SET CONSTRAINTS ALL IMMEDIATE")
        await session.execute(text("SET CONSTRAINTS ALL DEFERRED"))
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in report.timings.items())
        print(
            f"{label}: {total:.2f} s, {count / total:,.0f} rows/s ({steps});"
            f" deferred commit-time triggers {deferred:.2f} s;"
            f" with them {count / (total + deferred):,.0f} rows/s"
        )
    # the write alone: the same rows, no derivation, then without history, indexes, FKs
    await session.execute(text("SELECT set_config('borderwatch.bulk', 'on', true)"))
    undo: list[str] = []
    for label, drop in [
        ("plain INSERT ... SELECT, no derivation (8 indexes, 2 FKs, history)", []),
        ("  without the history triggers",
         [f"ALTER TABLE incident DISABLE TRIGGER {t}" for t in HISTORY_TRIGGERS]),
        ("  and without the 7 secondary indexes",
         [f"DROP INDEX {i}" for i in SECONDARY_INDEXES]),
        ("  and without the 2 foreign keys",
         [f"ALTER TABLE incident DROP CONSTRAINT {f}" for f in FOREIGN_KEYS]),
    ]:  # fmt: skip
        undo += drop
        await session.execute(text("SAVEPOINT plain"))
        for sql in undo:
            await session.execute(text(sql))
        seconds = await _timed(session, PLAIN_INSERT)
        deferred = await _timed(session, "SET CONSTRAINTS ALL IMMEDIATE")
        await session.execute(text("ROLLBACK TO SAVEPOINT plain"))
        print(f"{label}: {seconds:.2f} s, {count / seconds:,.0f} rows/s"
              f" (+ deferred triggers {deferred:.2f} s)")  # fmt: skip
    await session.execute(text("SELECT set_config('borderwatch.bulk', '', true)"))


async def main_async(rows: int, database: str, quick: bool) -> None:
    """Prepare the benchmark database (boundaries only needed) and measure, rolled back."""
    c = cluster()
    url = c.url(database)
    await prepare(url, 0)
    engine = create_engine(url, Settings(environment="test"))
    try:
        async with engine.connect() as conn:
            outer = await conn.begin()
            session = AsyncSession(
                bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
            )
            try:
                await session.execute(text("SET LOCAL statement_timeout = 0"))
                with tempfile.TemporaryDirectory() as tmp:
                    await measure(session, Path(tmp), rows, quick)
            finally:
                await session.close()
                await outer.rollback()
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database", default="bench", help="database in the benchmark cluster")
    parser.add_argument("--quick", action="store_true", help="leave out the per-row trigger path")
    args = parser.parse_args()
    asyncio.run(main_async(args.rows, args.database, args.quick))


if __name__ == "__main__":
    main()
