"""Period comparison (GET /analysis/stats?compare=…) against the plain statistics, in one run.

    PYTHONPATH=. .venv/bin/python -m bench.bench_compare [--repeat 7]

On the shared benchmark database (1 M incidents, bench.common.cluster()), in-process on one
session (the service functions the route calls), national key:

Beside each, "plain ×2 periods": the plain statistics asked once per period (two statements,
or two passes over the snapshot), what a client would do without compare=.

1. a province (`jurisdiction=`, PostgreSQL: the snapshot does not answer area filters) over a
   quarter, by category and by commune: stats.stats vs stats.compare_counts with each mode;
2. the whole country over a year, by category and by province: the same, from PostgreSQL;
3. the whole country over a year by category from the in-memory snapshot (both periods'
   groups counted from one snapshot) vs the plain statistics from the same snapshot.

Plain and compared runs alternate (the machine is shared: others benchmark meanwhile), and the
figures are medians and their ratio. Every answer's totals are checked against a direct count.
Bounded: `repeat` rounds, each loop capped at CAP_S.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import text

from app.analysis import snapshot, stats
from app.auth.scope import NATIONAL
from app.config import Settings
from app.db import create_engine, sessionmaker
from app.incidents.filters import IncidentFilter, parse_datetime
from bench.common import cluster

CAP_S = 120.0
PROVINCE = "VN-P91"  # An Giang (today's unit): a border province, ~30 000 incidents a year
QUARTER = "2025-07-01T00:00:00+07:00/2025-09-30T23:59:59.999999+07:00"
YEAR = "2025-01-01T00:00:00+07:00/2025-12-31T23:59:59.999999+07:00"
MODES: tuple[stats.Compare, ...] = ("previous_period", "same_period_last_year")


def _filter(period: str, jurisdiction: str | None = None) -> IncidentFilter:
    start, end = parse_datetime(period)
    return IncidentFilter(scope=NATIONAL, start=start, end=end, jurisdiction=jurisdiction)


async def _timed(
    make: Callable[[], Awaitable[dict[str, Any]]], samples: list[float]
) -> dict[str, Any]:
    t = time.perf_counter()
    body = await make()
    samples.append(time.perf_counter() - t)
    return body


async def _direct(session: Any, filt: IncidentFilter) -> int:
    """The period's count by a plain statement (the independent side)."""
    where = "deleted_at IS NULL AND occurred_at >= :a AND occurred_at <= :b"
    if filt.jurisdiction:
        where += " AND jurisdiction_path @> ARRAY[CAST(:j AS varchar)]"
    found = await session.execute(
        text(f"SELECT count(*) FROM incident WHERE {where}"),
        {"a": filt.start, "b": filt.end, "j": filt.jurisdiction},
    )
    return int(found.scalar_one())


async def case(
    session: Any,
    label: str,
    filt: IncidentFilter,
    group_by: stats.GroupBy,
    repeat: int,
    snap: snapshot.Snapshot | None = None,
    level: stats.Level = "province",
) -> None:
    plain: list[float] = []
    twice: list[float] = []  # the plain statistics of each period, one after the other
    compared: dict[str, list[float]] = {m: [] for m in MODES}
    before = stats.comparison_period(stats.bounded_period(filt), "previous_period")
    earlier = replace(filt, start=before.start, end=before.end)
    deadline = time.monotonic() + CAP_S
    body: dict[str, Any] = {}
    answers: dict[str, dict[str, Any]] = {}
    for _ in range(repeat):
        body = await _timed(
            lambda: stats.stats(
                session=session, filt=filt, group_by=group_by, level=level, snap=snap
            ),
            plain,
        )
        t = time.perf_counter()
        for f in (filt, earlier):
            await stats.stats(session=session, filt=f, group_by=group_by, level=level, snap=snap)
        twice.append(time.perf_counter() - t)
        for mode in MODES:
            answers[mode] = await _timed(
                lambda mode=mode: stats.compare_counts(  # type: ignore[misc]
                    session=session,
                    filt=filt,
                    group_by=group_by,
                    compare=mode,
                    level=level,
                    snap=snap,
                ),
                compared[mode],
            )
        if time.monotonic() > deadline:
            break
    direct = await _direct(session, filt)
    assert body["total"] == direct, (body["total"], direct)
    base = statistics.median(plain)
    line = f"{label:<52} plain {1000 * base:7.1f} ms"
    for mode in MODES:
        a = answers[mode]
        assert a["total"] == direct
        cp = a["comparison_period"]
        other = replace(
            filt,
            start=parse_datetime(cp["start"])[0],
            end=parse_datetime(cp["end"])[0],
        )
        assert a["previous_total"] == await _direct(session, other), mode
        m = statistics.median(compared[mode])
        short = "prev" if mode == "previous_period" else "last year"
        line += f" | {short} {1000 * m:7.1f} ms (×{m / base:.2f})"
    two = statistics.median(twice)
    line += f" | plain ×2 periods {1000 * two:7.1f} ms (×{two / base:.2f})"
    groups = len(answers[MODES[0]]["groups"])
    print(f"{line} | {groups} groups, {direct} incidents, n={len(plain)}", flush=True)


async def main_async(repeat: int) -> None:
    url = cluster().url("bench")
    engine = create_engine(url, Settings(environment="test"))
    try:
        async with sessionmaker(engine)() as session, session.begin():
            await session.execute(text("SET LOCAL statement_timeout = '120s'"))
            quarter = _filter(QUARTER, PROVINCE)
            await case(
                session, f"{PROVINCE}, Q3 2025, by category (SQL)", quarter, "category", repeat
            )
            await case(
                session,
                f"{PROVINCE}, Q3 2025, by commune (SQL)",
                quarter,
                "jurisdiction",
                repeat,
                level="commune",
            )
            year = _filter(YEAR)
            await case(session, "national, 2025, by category (SQL)", year, "category", repeat)
            await case(session, "national, 2025, by province (SQL)", year, "jurisdiction", repeat)
            t = time.perf_counter()
            snap = await snapshot.build(session=session, filt=IncidentFilter(scope=NATIONAL))
            print(f"national snapshot built in {time.perf_counter() - t:.1f} s", flush=True)
            if snap is not None:
                await case(
                    session,
                    "national, 2025, by category (snapshot)",
                    year,
                    "category",
                    repeat,
                    snap,
                )
                await case(
                    session, "national, 2025, by month (snapshot)", year, "month", repeat, snap
                )
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main_async(args.repeat))


if __name__ == "__main__":
    main()
