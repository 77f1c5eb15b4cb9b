"""Import throughput against the goals of docs/performance.md (2026-12-06):

1. a 100 000-row CSV imported end to end into the benchmark database (1 M incidents) takes at
   most 1.5x a plain INSERT ... SELECT of the same, already-parsed rows into the same table
   (same indexes, constraints and history triggers; no derivation);
2. the first-load fast path (indexes built after the load) into an empty incident table
   reaches at least 50 000 rows/s end to end.

    .venv/bin/python -m bench.bench_import [--rows 100000] [--database bench]
        [--empty-database bench_empty] [--detail]

Each measurement runs inside one outer transaction and is rolled back: the import's own commit
only releases a savepoint, so the deferred triggers that would run at COMMIT are fired (and
timed, and counted) with SET CONSTRAINTS ALL IMMEDIATE. --detail also takes the plain write
apart (without the history, the secondary indexes, the foreign keys). Each measurement also
prints the CPU seconds of the database's client backends and of this process, and the goals the
load average: on a shared machine the CPU seconds move far less than the wall times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import math
import os
import random
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.db import create_engine
from app.incidents import imports
from bench.common import cluster, prepare

GOAL_RATIO = 1.5
GOAL_FIRST_LOAD_ROWS_S = 50_000


def load() -> str:
    """The machine's load averages (1, 5, 15 min): the machine is shared, figures swing with
    it."""
    try:
        return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "load unknown"


def bench_csv(path: Path, count: int, posts: Sequence[Any]) -> None:
    """`count` rows: 85 % within ~12 km of the border gates, like real incidents, 15 %
    anywhere in the region (land, the neighbours, the sea)."""
    rng = random.Random(11)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["source_id", "occurred_at", "lat", "lon", "category", "severity",
                    "status", "description", "unit"])  # fmt: skip
        for i in range(count):
            if rng.random() < 0.85:
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
BARE_DDL = (
    "CREATE TEMP TABLE bare (source_id text, occurred_at timestamptz, lat float8, lon float8,"
    " category text, severity int2, status text, description text, unit text)"
)
# the same rows, parsed, into the same table: no derivation (borderwatch.bulk = on)
PLAIN_INSERT = """
INSERT INTO incident (category, severity, status, occurred_at, geom, description, unit, source,
                      source_id, created_by, updated_by)
SELECT 'smuggling', b.severity, b.status, b.occurred_at,
       ST_SetSRID(ST_MakePoint(b.lon, b.lat), 4326), b.description, b.unit, 'bench-plain',
       b.source_id, 'bench', 'bench'
  FROM bare b
"""


@asynccontextmanager
async def rolled_back(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session whose commits are savepoints of an outer transaction rolled back after."""
    async with engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            await session.execute(text("SET LOCAL statement_timeout = 0"))
            yield session
        finally:
            await session.close()
            await outer.rollback()


BACKENDS = """
SELECT pid FROM pg_stat_activity
 WHERE datname = current_database() AND backend_type = 'client backend'
"""
TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user and system) of a local process, 0 when it cannot be read."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    return 0.0


async def _cpu(session: AsyncSession) -> tuple[dict[int, float], float]:
    """CPU seconds so far of the database's client backends (read from /proc: the cluster is
    local) and of this process (its threads included). Unlike wall time, CPU time moves little
    with the rest of a shared machine's work."""
    await session.execute(text("SELECT pg_stat_clear_snapshot()"))
    pids = (await session.execute(text(BACKENDS))).scalars().all()
    return {int(pid): _proc_cpu(int(pid)) for pid in pids}, time.process_time()


async def _cpu_since(session: AsyncSession, before: tuple[dict[int, float], float]) -> str:
    after = await _cpu(session)
    server = sum(t - before[0].get(pid, 0.0) for pid, t in after[0].items())
    return f"CPU: server {server:.2f} s, Python {after[1] - before[1]:.2f} s"


async def _timed(session: AsyncSession, sql: str) -> float:
    t0 = time.perf_counter()
    await session.execute(text(sql))
    return time.perf_counter() - t0


async def _deferred(session: AsyncSession) -> float:
    """Fire (and time) the triggers that would run at COMMIT."""
    seconds = await _timed(session, "SET CONSTRAINTS ALL IMMEDIATE")
    await session.execute(text("SET CONSTRAINTS ALL DEFERRED"))
    return seconds


async def _import(
    session: AsyncSession, path: Path, label: str, count: int, expected: int, **kw: Any
) -> float:
    cpu = await _cpu(session)
    t0 = time.perf_counter()
    report = await imports.import_file(
        session=session,
        path=path,
        fmt="csv",
        actor="bench",
        source="bench",
        statement_timeout_ms=Settings(environment="test").import_statement_timeout_ms,
        **kw,
    )
    seconds = time.perf_counter() - t0
    assert report.inserted == expected, report
    deferred = await _deferred(session)
    total = seconds + deferred
    steps = ", ".join(f"{k} {v:.2f} s" for k, v in report.timings.items())
    print(
        f"{label}: {total:.2f} s end to end ({count / total:,.0f} rows/s): import {seconds:.2f} s"
        f" ({steps}); deferred commit-time triggers {deferred:.2f} s;"
        f" {await _cpu_since(session, cpu)}"
    )
    return total


async def _plain(
    session: AsyncSession, count: int, drops: Sequence[str] = (), label: str = ""
) -> float:
    """The plain write of the parsed rows (in a savepoint, rolled back), with its deferred
    triggers; printed with `label` when one is given."""
    await session.execute(text("SAVEPOINT plain"))
    await session.execute(text("SELECT set_config('borderwatch.bulk', 'on', true)"))
    for sql in drops:
        await session.execute(text(sql))
    cpu = await _cpu(session)
    seconds = await _timed(session, PLAIN_INSERT) + await _deferred(session)
    if label:
        print(f"{label}: {seconds:.2f} s; {await _cpu_since(session, cpu)}")
    await session.execute(text("ROLLBACK TO SAVEPOINT plain"))
    return seconds


async def _load_bare(session: AsyncSession, path: Path, count: int) -> None:
    raw = await session.connection()
    conn = (await raw.get_raw_connection()).driver_connection
    assert conn is not None
    await conn.execute(BARE_DDL)
    t0 = time.perf_counter()
    await conn.copy_to_table("bare", source=str(path), format="csv", header=True)
    bare = time.perf_counter() - t0
    print(f"bare COPY of the file into a temp table: {bare:.2f} s, {count / bare:,.0f} rows/s")


async def goal_ratio(engine: AsyncEngine, path: Path, count: int, detail: bool) -> None:
    """Goal 1: the import against the plain INSERT ... SELECT, on the big database."""
    async with rolled_back(engine) as session:
        have = (await session.execute(text("SELECT count(*) FROM incident"))).scalar_one()
        print(f"incidents in the database: {have:,} ({load()})")
        await _load_bare(session, path, count)
        plain = await _plain(
            session, count, label="plain INSERT ... SELECT (8 indexes, 2 FKs, history)"
        )
        total = await _import(session, path, "import", count, count)
        again = await _import(session, path, "re-import, nothing changed", count, 0)
        plain_after = await _plain(
            session, count, label="plain INSERT ... SELECT again, after the imports"
        )
        reference = (plain + plain_after) / 2
        ratio = total / reference
        verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
        print(
            f"GOAL 1: import / plain = {total:.2f} / {reference:.2f} s = {ratio:.2f}x"
            f" (goal <= {GOAL_RATIO}x: {verdict}); re-import {again:.2f} s ({load()})"
        )
        if detail:
            undo: list[str] = []
            for label, drop in [
                ("  without the history triggers",
                 [f"ALTER TABLE incident DISABLE TRIGGER {t}" for t in HISTORY_TRIGGERS]),
                ("  and without the 7 secondary indexes",
                 [f"DROP INDEX {i}" for i in SECONDARY_INDEXES]),
                ("  and without the 2 foreign keys",
                 [f"ALTER TABLE incident DROP CONSTRAINT {f}" for f in FOREIGN_KEYS]),
            ]:  # fmt: skip
                undo += drop
                await _plain(session, count, undo, label=label)


async def goal_first_load(engine: AsyncEngine, path: Path, count: int) -> None:
    """Goal 2: the first-load fast path into an empty table (and the normal path, to compare)."""
    async with rolled_back(engine) as session:
        have = (await session.execute(text("SELECT count(*) FROM incident"))).scalar_one()
        print(f"incidents in the empty database: {have:,} ({load()})")
        await _load_bare(session, path, count)
        await _plain(session, count, label="plain INSERT ... SELECT into the empty table")
        normal = await _import(session, path, "import into the empty table", count, count)
    async with rolled_back(engine) as session:
        total = await _import(
            session, path, "first load (indexes after)", count, count, first_load=True
        )
    rate = count / total
    verdict = "met" if rate >= GOAL_FIRST_LOAD_ROWS_S else "NOT met"
    print(
        f"GOAL 2: first load {rate:,.0f} rows/s (goal >= {GOAL_FIRST_LOAD_ROWS_S:,}:"
        f" {verdict}); the normal path {count / normal:,.0f} rows/s ({load()})"
    )


async def main_async(rows: int, database: str, empty_database: str, detail: bool) -> None:
    """Migrate both databases (the big one must hold its incidents already: see
    bench/common.py) and measure."""
    c = cluster()
    settings = Settings(environment="test")
    for name in (database, empty_database):
        await prepare(c.url(name), 0)
    big = create_engine(c.url(database), settings)
    empty = create_engine(c.url(empty_database), settings)
    try:
        async with big.connect() as conn:
            posts = (
                await conn.execute(text("SELECT code, ST_X(geom), ST_Y(geom) FROM border_post"))
            ).all()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.csv"
            bench_csv(path, rows, list(posts))
            await goal_ratio(big, path, rows, detail)
            await goal_first_load(empty, path, rows)
    finally:
        await big.dispose()
        await empty.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database", default="bench", help="the 1 M-incident database")
    parser.add_argument("--empty-database", default="bench_empty", help="boundaries only")
    parser.add_argument("--detail", action="store_true", help="take the plain write apart")
    args = parser.parse_args()
    asyncio.run(main_async(args.rows, args.database, args.empty_database, args.detail))


if __name__ == "__main__":
    main()
