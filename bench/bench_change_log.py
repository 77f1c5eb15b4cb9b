"""The incident change log (migration 0022) at 1 M incidents: what it saves and what it costs.

1. the busy aggregate tile 8/203/120 (around Hồ Chí Minh City) after an unrelated create (in Hà
   Nội): made afresh, as every write made it before (`recompute`), against the kept tile proven
   unchanged by the log (`reuse`: the log's query and the bytes handed back);
2. the dashboard snapshot of a national key after a few changes: the delta from the changed ids
   against a full rebuild from every row;
3. the cross-boundary hits of the dashboard's table (which incident is near which shared
   province line) and the hot-spot tiles' Gi* grid after 1, 10 and 100 changes: brought up to
   date from the changed ids (`adjacency.hits_delta`, `hotspots.members_delta`) against made
   from every incident; and what keeping the grid's members costs a full count (`members`
   against `cell_counts`, the statement before);
4. what the log adds to writes: the log's own INSERT for 1 000 rows; a 5 000-row INSERT ...
   SELECT (an import batch: one box row), four 500-row ones (logged row by row) and 50
   one-row creates, each with and without the log's triggers (CPU seconds of the backend:
   steadier than wall time on a shared machine).

    .venv/bin/python -m bench.bench_change_log [--database bench] [--rounds 7]
        [--parts tiles,snapshots,hits,hotspots,writes]

Everything runs in ONE transaction that is rolled back: the log's tables, functions and
triggers are made inside it when the database does not have them yet (the shared `bench`
database keeps no trace), the writes are copies of existing incidents, and SET CONSTRAINTS ALL
IMMEDIATE makes the counter move (and the log record the version) at each statement, read by
the same transaction (incident_tiles.TRUST_OWN_WRITES). While it runs it holds the trigger
lock on `incident` (other writers wait: a few minutes). Each pair is measured alternately;
the machine is shared: read the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.analysis import adjacency, snapshot
from app.analysis import hotspots as hotspot_analysis
from app.auth.scope import NATIONAL
from app.config import Settings
from app.db import create_engine, sessionmaker
from app.incidents.filters import IncidentFilter
from app.jurisdictions import eras
from app.tiles import hotspots as hotspot_tiles
from app.tiles import incidents as incident_tiles
from app.tiles.tile import Tile
from bench.common import ROOT, cluster

BUSY = Tile(8, 203, 120)
FILT = IncidentFilter(scope=NATIONAL)
LOG_TRIGGERS = (
    "incident_change_insert",
    "incident_change_update",
    "incident_change_delete",
    "incident_change_truncate",
)


def migration() -> ModuleType:
    """Migration 0022 as a module (its SQL, to install the log inside the transaction)."""
    path = ROOT / "migrations" / "versions" / "0022_incident_change_log.py"
    spec = importlib.util.spec_from_file_location("m0022", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def install(session: AsyncSession) -> bool:
    """The log's objects, made in this transaction when absent; whether they were made."""
    have = await session.scalar(text("SELECT to_regclass('incident_change') IS NOT NULL"))
    if have:
        return False
    m = migration()
    for sql in (*m.TABLES, m.LOG_FN, m.PRUNE_FN, m.BUMP_FN):
        await session.execute(text(sql))
    for name, when in m.TRIGGERS.items():
        await session.execute(
            text(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION incident_change_log()")
        )
    return True


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = await fn()
    return time.perf_counter() - started, value


def ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:8.1f} ms (n={len(samples)})"


async def copies(session: AsyncSession, n: int, *, north: bool = True) -> None:
    """`n` copies of existing incidents (new ids, no source id) in one INSERT ... SELECT, from
    the north (far from BUSY) or from anywhere."""
    where = "ST_Y(geom) > 20.5" if north else "true"
    await session.execute(
        text(
            "CREATE TEMP TABLE IF NOT EXISTS cl_src ON COMMIT DROP AS"
            " SELECT * FROM incident WHERE false"
        )
    )
    await session.execute(text("TRUNCATE cl_src"))
    await session.execute(
        text(
            f"INSERT INTO cl_src SELECT * FROM incident WHERE deleted_at IS NULL AND {where}"
            " ORDER BY id LIMIT :n"
        ),
        {"n": n},
    )
    await session.execute(text("UPDATE cl_src SET id = gen_random_uuid(), source_id = NULL"))
    await session.execute(text("INSERT INTO incident SELECT * FROM cl_src"))


async def tiles(session: AsyncSession, rounds: int) -> None:
    made = incident_tiles.incident_tile_statement(FILT, BUSY, aggregate_only=False, cap=5000)
    assert made is not None
    await copies(session, 1)  # a version the log holds (it may be new in this transaction)
    await incident_tiles.incidents_tile(
        session=session, filt=FILT, tile=BUSY, aggregate_only=False
    )  # kept once
    recompute: list[float] = []
    reuse: list[float] = []
    for _ in range(rounds):
        await copies(session, 1)  # an unrelated create
        before = dict(incident_tiles.REUSE)
        t, (kept, _) = await timed(
            lambda: incident_tiles.incidents_tile(
                session=session, filt=FILT, tile=BUSY, aggregate_only=False
            )
        )
        assert incident_tiles.REUSE["reused"] == before["reused"] + 1, incident_tiles.REUSE
        reuse.append(t)
        t, (fresh, _) = await timed(lambda: incident_tiles._run(session, made))
        recompute.append(t)
        assert fresh == kept  # the kept bytes are the tile of now
    print(f"tile {BUSY.z}/{BUSY.x}/{BUSY.y} after an unrelated create:")
    print(f"  recompute {ms(recompute)}")
    print(f"  reuse     {ms(reuse)}")
    print(f"  recompute / reuse: {statistics.median(recompute) / statistics.median(reuse):.0f}x")


async def snapshots(session: AsyncSession, rounds: int) -> None:
    full: list[float] = []
    delta: list[float] = []
    previous = await snapshot.build(session=session, filt=FILT)
    assert previous is not None
    print(f"snapshot: {len(previous):,} incidents")
    for changes in (1, 10, 100):
        full.clear()
        delta.clear()
        for _ in range(max(2, rounds // 3)):
            await copies(session, changes, north=False)
            applied = snapshot.DELTAS["applied"]
            base = previous
            t, updated = await timed(
                lambda: snapshot.build(session=session, filt=FILT, previous=base)  # noqa: B023
            )
            assert snapshot.DELTAS["applied"] == applied + 1 and updated is not None
            delta.append(t)
            t, rebuilt = await timed(lambda: snapshot.build(session=session, filt=FILT))
            assert rebuilt is not None and len(rebuilt) == len(updated)
            full.append(t)
            previous = updated
        ratio = statistics.median(full) / statistics.median(delta)
        print(f"  {changes:>3} new incidents per version:")
        print(f"    full rebuild {ms(full)}")
        print(f"    delta        {ms(delta)}   full / delta: {ratio:.1f}x")


async def _full_and_delta(
    session: AsyncSession,
    rounds: int,
    first: Any,
    full: Callable[[], Awaitable[Any]],
    delta: Callable[[Any], Awaitable[Any]],
    size: Callable[[Any], Any],
) -> None:
    """After 1, 10 and 100 copies per version: `delta(previous)` against `full()`, alternately;
    the two answers' `size` must agree."""
    previous = first
    for changes in (1, 10, 100):
        fulls: list[float] = []
        deltas: list[float] = []
        for _ in range(max(2, rounds // 3)):
            await copies(session, changes, north=False)
            base = previous
            t, updated = await timed(lambda: delta(base))  # noqa: B023
            assert updated is not None, "the delta did not apply"
            deltas.append(t)
            t, made = await timed(full)
            assert made is not None and size(made) == size(updated), (size(made), size(updated))
            fulls.append(t)
            previous = updated
        ratio = statistics.median(fulls) / statistics.median(deltas)
        print(f"  {changes:>3} new incidents per version:")
        print(f"    from every incident {ms(fulls)}")
        print(f"    delta               {ms(deltas)}   full / delta: {ratio:.1f}x")


async def hits(session: AsyncSession, rounds: int) -> None:
    level, km, at = adjacency.MEMORY_LEVEL, adjacency.MEMORY_KM, eras.today()

    async def full() -> adjacency.PairHits | None:
        return await adjacency.pair_hits(session=session, level=level, km=km, at=at)

    async def delta(previous: adjacency.PairHits) -> adjacency.PairHits | None:
        return await adjacency.hits_delta(
            session=session, previous=previous, level=level, km=km, at=at
        )

    first = await full()
    assert first is not None
    print(f"cross-boundary hits ({level}, {km:g} km): {len(first.ids):,}")
    await _full_and_delta(session, rounds, first, full, delta, lambda h: sorted(
        zip(h.pair.tolist(), h.ids.tolist(), strict=True)))  # fmt: skip


async def hotspot_grids(session: AsyncSession, rounds: int) -> None:
    ha = hotspot_analysis
    study = await ha.study_area(session=session, area=ha.BORDER_ZONE, home="VNM")
    cells = await ha.grid(session=session, study=study, cell_km=hotspot_tiles.CELL_KM)
    counts: list[float] = []
    members: list[float] = []
    for _ in range(max(2, rounds // 2)):
        t, counted = await timed(
            lambda: ha.cell_counts(
                session=session, filt=FILT, study=study, grid=cells, cell_km=hotspot_tiles.CELL_KM
            )
        )
        counts.append(t)
        t, kept = await timed(
            lambda: ha.members(
                session=session, filt=FILT, study=study, grid=cells, cell_km=hotspot_tiles.CELL_KM
            )
        )
        members.append(t)
        assert (kept.counts == counted).all()
    print(f"hot-spot grid: {len(cells.cells):,} cells, {int(kept.counts.sum()):,} incidents")
    print(f"  counts per cell (before)   {ms(counts)}")
    print(f"  counts and members (now)   {ms(members)}")

    async def full() -> hotspot_tiles.HotspotGrid:
        return await hotspot_tiles.hotspot_grid(session=session, filt=FILT, home="VNM")

    async def delta(previous: hotspot_tiles.HotspotGrid) -> hotspot_tiles.HotspotGrid | None:
        made = await hotspot_tiles.hotspot_grid(
            session=session, filt=FILT, home="VNM", previous=previous
        )
        return made if made.members is not None and made.members.from_delta else None

    print("  the whole grid (Gi* and bins included):")
    await _full_and_delta(session, rounds, await full(), full, delta, lambda g: (g.count, g.bin))


def backend_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of one PostgreSQL backend so far (/proc; same machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def writes(session: AsyncSession, rounds: int) -> None:
    pid = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)

    async def toggle(on: bool) -> None:
        verb = "ENABLE" if on else "DISABLE"
        for name in LOG_TRIGGERS:
            await session.execute(text(f"ALTER TABLE incident {verb} TRIGGER {name}"))

    # the log's own work for 1 000 rows: the statement its trigger runs
    await copies(session, 1000, north=False)
    own: list[float] = []
    for _ in range(rounds):
        await session.execute(text("SAVEPOINT w"))
        t, _ = await timed(
            lambda: session.execute(
                text(
                    "INSERT INTO incident_change (xid, incident_id, west, south, east, north)"
                    " SELECT txid_current(), id, ST_X(geom), ST_Y(geom), ST_X(geom), ST_Y(geom)"
                    " FROM cl_src"
                )
            )
        )
        await session.execute(text("ROLLBACK TO SAVEPOINT w"))
        own.append(t)
    print(f"the log's INSERT for 1 000 rows: {ms(own)}")
    cases: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("one 5 000-row statement (one box row)", lambda: copies(session, 5000, north=False)),
        ("four 500-row statements", lambda: _repeat(4, lambda: copies(session, 500, north=False))),
        ("50 one-row statements", lambda: _repeat(50, lambda: copies(session, 1, north=False))),
    ]
    print("writes (INSERT ... SELECT copies; derivation, history, events included), backend CPU:")
    for label, fn in cases:
        with_log: list[float] = []
        without: list[float] = []
        for k in range(2 * rounds):
            on = k % 2 == 0
            await toggle(on)
            await session.execute(text("SAVEPOINT w"))
            cpu = backend_cpu_s(pid)
            await fn()
            (with_log if on else without).append(backend_cpu_s(pid) - cpu)
            await session.execute(text("ROLLBACK TO SAVEPOINT w"))
        await toggle(True)
        a, b = statistics.median(with_log), statistics.median(without)
        print(
            f"  {label}: without {b:6.2f} s, with {a:6.2f} s CPU (median of {rounds}): {a / b:.3f}x"
        )


async def _repeat(n: int, fn: Callable[[], Awaitable[None]]) -> None:
    for _ in range(n):
        await fn()


async def main_async(database: str, rounds: int, parts: set[str]) -> None:
    settings = Settings(environment="test")
    engine = create_engine(cluster().url(database), settings)
    incident_tiles.TRUST_OWN_WRITES = True
    try:
        async with sessionmaker(engine)() as session:
            try:
                await session.execute(text("SET LOCAL statement_timeout = 0"))
                # never queue long behind another writer (the queue would hold writers up)
                await session.execute(text("SET LOCAL lock_timeout = '10s'"))
                made = await install(session)
                await session.execute(text("SET LOCAL lock_timeout = 0"))
                print(f"change log {'installed in the transaction' if made else 'present'}")
                await session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
                n = await session.scalar(text("SELECT count(*) FROM incident"))
                print(f"database {database}: {n:,} incidents")
                if "tiles" in parts:
                    await tiles(session, rounds)
                if "snapshots" in parts:
                    await snapshots(session, rounds)
                if "hits" in parts:
                    await hits(session, rounds)
                if "hotspots" in parts:
                    await hotspot_grids(session, rounds)
                if "writes" in parts:
                    await writes(session, max(2, rounds // 2))
            finally:
                await session.rollback()
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", default="bench")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--parts", default="tiles,snapshots,hits,hotspots,writes")
    args = parser.parse_args()
    asyncio.run(main_async(args.database, args.rounds, set(args.parts.split(","))))


if __name__ == "__main__":
    main()
