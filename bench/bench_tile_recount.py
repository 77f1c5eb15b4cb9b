"""The busiest aggregate tile (8/203/120, around Hồ Chí Minh City) after one create inside it:
made afresh against recounted in the cells the change touched (app/tiles/incidents.py
`_recount`); and what keeping the cells costs a tile made afresh.

    BORDERWATCH_BENCH_DIR=/tmp/my-bench BORDERWATCH_BENCH_PG_PORT=54417 \\
        .venv/bin/python -m bench.bench_tile_recount [--database bench] [--rounds 9] [--explain]

1. the tile made afresh: the statement as before (the MVT alone) against the statement that
   keeps the cells beside the MVT (`_aggregates_kept`), alternately;
2. after one create inside the tile (a copy of an existing incident moved to a spot of the tile,
   a new spot each round; then each in the cell holding the most incidents): the tile
   recounted (`incidents_tile`, which finds the kept tile, asks the change log and recounts the
   touched cells) against the same tile made afresh; the recounted cells are checked against
   the fresh ones (count, severity_max, category exactly);
3. with --explain: the recount statement's plan (EXPLAIN ANALYZE), to see each touched cell read
   through the GiST index.

The creates are committed, one per version, as the field units' are (a transaction that wrote
is never proven: each write here is its own transaction and each tile a reader's), and deleted
at the end. Run it on a database of your own, not the shared one while others measure. The
machine is shared: read the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.scope import NATIONAL
from app.config import Settings
from app.db import create_engine, sessionmaker
from app.incidents.filters import IncidentFilter
from app.tiles import incidents, versions
from app.tiles.tile import WORLD_M, Tile, mercator_to_lonlat
from bench.bench_change_log import backend_cpu_s
from bench.common import cluster

BUSY = Tile(8, 203, 120)
FILT = IncidentFilter(scope=NATIONAL)


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = await fn()
    return time.perf_counter() - started, value


def ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:8.1f} ms (n={len(samples)})"


async def create_inside(
    engine: AsyncEngine, k: int, created: list[Any], at: tuple[float, float] | None = None
) -> None:
    """A committed copy of an existing incident (new id) at the k-th spot of a spread inside
    BUSY, or at `at` (its id added to `created`, deleted at the end)."""
    w, s, e, n = BUSY.lonlat()
    fx, fy = 0.3 + 0.4 * ((k * 0.37) % 1), 0.3 + 0.4 * ((k * 0.61) % 1)
    x, y = at or (w + (e - w) * fx, n - (n - s) * fy)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TEMP TABLE IF NOT EXISTS rc_src ON COMMIT DROP AS"
                " SELECT * FROM incident WHERE false"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO rc_src SELECT * FROM incident WHERE deleted_at IS NULL"
                " ORDER BY id LIMIT 1"
            )
        )
        made = await conn.execute(
            text(
                "UPDATE rc_src SET id = gen_random_uuid(), source_id = NULL,"
                " geom = ST_SetSRID(ST_MakePoint(:x, :y), 4326) RETURNING id"
            ),
            {"x": x, "y": y},
        )
        created.append(made.scalar_one())
        await conn.execute(text("INSERT INTO incident SELECT * FROM rc_src"))


def made_statement() -> tuple[Any, dict[str, Any]]:
    made = incidents.incident_tile_statement(FILT, BUSY, aggregate_only=False, cap=5000)
    assert made is not None
    return made


def reader(engine: AsyncEngine) -> Any:
    """A reader's session in a transaction (as a tile request has)."""
    return sessionmaker(engine).begin()


async def fresh_paths(engine: AsyncEngine, rounds: int) -> None:
    """Wall time and the backend's CPU time (steadier on a shared machine) of each way."""
    stmt, params = made_statement()
    kept_stmt = incidents._aggregates_kept(FILT, at_centre=False)
    wall: dict[str, list[float]] = {"the MVT alone": [], "the MVT and its cells": []}
    cpu: dict[str, list[float]] = {name: [] for name in wall}
    async with reader(engine) as session:
        pid = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
        await incidents._run(session, (stmt, params))  # warm: plans, caches
        for k in range(2 * rounds):
            alone = k % 2 == 0
            name = "the MVT alone" if alone else "the MVT and its cells"
            spent = backend_cpu_s(pid)
            if alone:
                t, (body, _) = await timed(lambda: incidents._run(session, (stmt, params)))
            else:
                t, made = await timed(
                    lambda: incidents._run(session, (kept_stmt, params), incidents._aggregate_row)
                )
                assert made[0] == body and len(made[2].cx) > 0
            cpu[name].append(backend_cpu_s(pid) - spent)
            wall[name].append(t)
    print(f"tile {BUSY.z}/{BUSY.x}/{BUSY.y} made afresh ({len(made[2].cx)} cells,")
    print(f"  the fullest holding {max(made[2].count):,} incidents):")
    for name, samples in wall.items():
        print(
            f"  {name:22} {ms(samples)}; backend CPU {statistics.median(cpu[name]) * 1000:6.0f} ms"
        )


async def tile(engine: AsyncEngine) -> tuple[bytes, Any]:
    """BUSY as a reader gets it, through the kept tiles."""
    async with reader(engine) as session:
        return await incidents.incidents_tile(
            session=session, filt=FILT, tile=BUSY, aggregate_only=False
        )


def fullest_cell(cells: incidents.Cells, cell_m: float) -> tuple[float, float]:
    """The centre (lon, lat) of the cell holding the most incidents."""
    i = max(range(len(cells.count)), key=lambda j: cells.count[j])
    x = -WORLD_M + (cells.cx[i] + 0.5) * cell_m
    y = WORLD_M - (cells.cy[i] + 0.5) * cell_m
    lon, lat, _, _ = mercator_to_lonlat((x, y, x, y))
    return lon, lat


async def after_a_create(engine: AsyncEngine, rounds: int, created: list[Any]) -> None:
    """Spread creates, then creates in the fullest cell (the dearest recount of one cell)."""
    _, params = made_statement()
    kept_stmt = incidents._aggregates_kept(FILT, at_centre=False)
    which = (FILT, False, BUSY, None)
    await tile(engine)  # kept once
    kept = incidents.AGGREGATES.peek((incidents.LATEST[which], *which))
    assert kept is not None
    fullest = fullest_cell(kept[2], params["cell"])
    for label, at in (("a spread of spots", None), ("the fullest cell", fullest)):
        fresh: list[float] = []
        recounted: list[float] = []
        for k in range(rounds):
            await create_inside(engine, k, created, at)
            before = incidents.REUSE["recounted"]
            t, (body, _) = await timed(lambda: tile(engine))
            assert incidents.REUSE["recounted"] == before + 1, incidents.REUSE
            recounted.append(t)
            async with reader(engine) as session:
                t, made = await timed(
                    lambda: incidents._run(
                        session,
                        (kept_stmt, params),
                        incidents._aggregate_row,
                    )
                )
            fresh.append(t)
            kept = incidents.AGGREGATES.peek((incidents.LATEST[which], *which))
            assert kept is not None and kept[0] == body
            cells, again = made[2], kept[2]
            assert (cells.cx, cells.cy, cells.count) == (again.cx, again.cy, again.count)
            assert (cells.severity_max, cells.category) == (again.severity_max, again.category)
        ratio = statistics.median(fresh) / statistics.median(recounted)
        print(f"tile {BUSY.z}/{BUSY.x}/{BUSY.y} after one committed create inside it, {label}:")
        print(f"  made afresh  {ms(fresh)}")
        print(f"  recounted    {ms(recounted)}  (the request: stamp, proof, recount)")
        print(f"  afresh / recounted: {ratio:.0f}x")


async def explain(engine: AsyncEngine, created: list[Any]) -> None:
    """The recount statement's plan after one create inside BUSY."""
    _, params = made_statement()
    which = (FILT, False, BUSY, None)
    await tile(engine)
    kept = incidents.AGGREGATES.peek((incidents.LATEST[which], *which))
    assert kept is not None
    await create_inside(engine, 100, created)
    async with reader(engine) as session:
        _, stamp, _ = await versions.read_stamped(session=session)
        proof = await incidents._proof(session, incidents.AGGREGATES, which, stamp, params)
        assert proof is not None and not proof.unchanged
        values = params | proof.log | kept[2].params()
        conn = await session.connection()
        recount = incidents._recount(FILT, at_centre=False)
        driver = incidents._driver_statement(recount, conn.dialect, frozenset(values), True)
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        rows = await raw.fetch(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + driver.sql, *driver.args(values)
        )
    print("the recount statement's plan after one create:")
    for r in rows:
        print("  " + r[0])


async def main_async(database: str, rounds: int, plan: bool) -> None:
    engine = create_engine(cluster().url(database), Settings(environment="test"))
    created: list[Any] = []
    try:
        w, s, e, n = BUSY.lonlat()
        async with engine.connect() as conn:
            total = await conn.scalar(text("SELECT count(*) FROM incident"))
            inside = await conn.scalar(
                text(
                    "SELECT count(*) FROM incident WHERE deleted_at IS NULL"
                    " AND geom && ST_MakeEnvelope(:w, :s, :e, :n, 4326)"
                ),
                {"w": w, "s": s, "e": e, "n": n},
            )
        print(f"database {database}: {total:,} incidents, {inside:,} in the tile")
        await fresh_paths(engine, rounds)
        await after_a_create(engine, rounds, created)
        if plan:
            await explain(engine, created)
    finally:
        if created:  # the copies leave (a hard delete: nothing of them stays)
            async with engine.begin() as conn:
                await conn.execute(
                    text("DELETE FROM incident WHERE id = ANY(:ids)"), {"ids": created}
                )
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", default="bench")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    asyncio.run(main_async(args.database, args.rounds, args.explain))


if __name__ == "__main__":
    main()
