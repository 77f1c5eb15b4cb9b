"""Import throughput: a 100 000-row CSV end to end against a bare COPY of the same file.

    .venv/bin/python -m bench.bench_import [--rows 100000]

Runs in one transaction on the benchmark cluster and rolls everything back.
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
from app.db import create_engine, sessionmaker
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


class _Phases:
    """A progress callback that adds up the time spent in each phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.phase, self.since = "", time.perf_counter()

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        now = time.perf_counter()
        self.seconds[self.phase] = self.seconds.get(self.phase, 0.0) + now - self.since
        self.phase = "reading+validating" if phase in ("reading", "validating") else phase
        self.since = now


async def measure(session: AsyncSession, tmp_path: Path, count: int) -> None:
    """Bare COPY, set-based import, unchanged re-import, per-row-trigger import; rolled back."""
    posts = (
        await session.execute(text("SELECT code, ST_X(geom), ST_Y(geom) FROM border_post"))
    ).all()
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
    print(f"\nbare COPY of the file into a temp table: {bare:.2f} s, {count / bare:,.0f} rows/s")
    await conn.execute("DROP TABLE bare")
    runs = [
        ("set-based", "bench", True, count),
        ("re-import, nothing changed", "bench", True, 0),
        ("per-row trigger", "bench-trigger", False, count),
    ]
    for label, source, set_based, expected in runs:
        phases = _Phases()
        t0 = time.perf_counter()
        report = await imports.import_file(
            session=session, path=path, fmt="csv", actor="bench", source=source,
            progress=phases, set_based=set_based,
        )  # fmt: skip
        total = time.perf_counter() - t0
        phases("done", 0, None)
        assert report.inserted == expected
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in phases.seconds.items() if k)
        print(f"{label}: {total:.2f} s, {count / total:,.0f} rows/s ({steps})")


async def main_async(rows: int) -> None:
    """Prepare the benchmark database (boundaries only needed) and measure."""
    c = cluster()
    url = c.url("bench")
    await prepare(url, 0)
    engine = create_engine(url, Settings(environment="test"))
    try:
        async with sessionmaker(engine)() as session:
            await session.execute(text("SET statement_timeout = 0"))
            with tempfile.TemporaryDirectory() as tmp:
                await measure(session, Path(tmp), rows)
            await session.rollback()
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    asyncio.run(main_async(parser.parse_args().rows))


if __name__ == "__main__":
    main()
