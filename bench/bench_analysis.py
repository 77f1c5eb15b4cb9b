"""Hot spots over the whole border zone, end to end and step by step, in one run.

    .venv/bin/python -m bench.bench_analysis --incidents 1000000

1. GET /analysis/hotspots?area=border-zone&cell_km=5 over HTTP (one uvicorn worker): median,
   p95 and the response size; the same with a one-year `datetime` filter; and at 2 km cells.
2. The same work in-process, each step timed on its own (study area, grid cells, counts per
   cell, Gi* in numpy, the response text), so the closing figures say where the time goes.
3. GET /analysis/stats by jurisdiction and by month (national key).
4. GET /analysis/clusters (DBSCAN) in the border zone for one year.
Bounded: a fixed number of requests, and a wall-clock cap on every loop.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx
import numpy as np

from app.analysis import gistar, hotspots
from app.auth.scope import NATIONAL
from app.config import Settings
from app.db import create_engine, sessionmaker
from app.incidents.filters import IncidentFilter
from bench.common import admin_key, cluster, prepare, server, summary

CAP_S = 180.0  # no loop runs longer than this
YEAR = "2025-01-01T00:00:00Z/2026-01-01T00:00:00Z"


def time_get(
    base: str, path: str, params: dict[str, Any], n: int, key: str
) -> tuple[list[float], int]:
    """n sequential GETs (bounded by CAP_S): durations and the last body's size."""
    samples: list[float] = []
    size = 0
    with httpx.Client(
        base_url=base, timeout=120, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        deadline = time.monotonic() + CAP_S
        for _ in range(n):
            t = time.perf_counter()
            r = client.get(path, params=params)
            samples.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text[:500]
            size = len(r.content)
            if time.monotonic() > deadline:
                break
    return samples, size


async def steps(url: str, cell_km: float, datetime: str | None, repeat: int) -> dict[str, float]:
    """Median seconds of each step of hotspots.hotspots(), run in-process on one session."""
    from app.incidents.filters import parse_datetime

    engine = create_engine(url, Settings(environment="test"))
    start, end = parse_datetime(datetime) if datetime else (None, None)
    filt = IncidentFilter(scope=NATIONAL, start=start, end=end)
    timings: dict[str, list[float]] = {}

    def note(name: str, t: float) -> float:
        now = time.perf_counter()
        timings.setdefault(name, []).append(now - t)
        return now

    try:
        async with sessionmaker(engine)() as session:
            for _ in range(repeat):
                t = time.perf_counter()
                study = await hotspots.study_area(
                    session=session, area=hotspots.BORDER_ZONE, home="VNM"
                )
                t = note("study area (buffer + clip)", t)
                grid = await hotspots.grid(
                    session=session, study=study, cell_km=cell_km, cached=False
                )
                t = note("grid: clipped hexagons (one statement; cached per process)", t)
                counts = await hotspots.cell_counts(
                    session=session, filt=filt, study=study, grid=grid, cell_km=cell_km
                )
                t = note("counts per cell (one statement, parallel)", t)
                cells = grid.cells
                z = gistar.gi_star(counts, gistar.hex_neighbours(cells))
                p = gistar.two_sided_p(z)
                gistar.confidence_bins(z, p, fdr=True)
                note("Gi*, p-values, FDR bins (numpy)", t)
    finally:
        await engine.dispose()
    return {k: float(np.median(v)) for k, v in timings.items()}


def show(label: str, samples: list[float], size: int) -> None:
    s = summary(samples)
    print(
        f"  {label}: median {s['median_ms']:.0f} ms  p95 {s['p95_ms']:.0f} ms"
        f"  ({len(samples)} requests, {size / 1e6:.1f} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=7)
    args = parser.parse_args()

    c = cluster()
    url = c.url("bench")
    asyncio.run(prepare(url, args.incidents))
    key = asyncio.run(admin_key(url))
    n = args.requests
    with server(url) as base:
        path = "/analysis/hotspots"
        zone5 = {"area": "border-zone", "cell_km": 5}
        time_get(base, path, zone5, 1, key)  # warm-up
        print(f"hot spots over the border zone ({args.incidents:,} incidents):")
        show("cell_km=5, all incidents", *time_get(base, path, zone5, n, key))
        show("cell_km=5, one year", *time_get(base, path, zone5 | {"datetime": YEAR}, n, key))
        show("cell_km=5, fdr=true", *time_get(base, path, zone5 | {"fdr": "true"}, n, key))
        show("cell_km=2", *time_get(base, path, {"area": "border-zone", "cell_km": 2}, 3, key))
        stats = "/analysis/stats"
        time_get(base, stats, {"group_by": "jurisdiction"}, 1, key)  # warm-up
        print(f"statistics ({args.incidents:,} incidents):")
        show("group_by=jurisdiction", *time_get(base, stats, {"group_by": "jurisdiction"}, n, key))
        show("group_by=month", *time_get(base, stats, {"group_by": "month"}, n, key))
        clusters = {"border_km_max": 50, "datetime": YEAR, "eps_m": 1000, "min_points": 10}
        show(
            "clusters, border zone, one year",
            *time_get(base, "/analysis/clusters", clusters, 3, key),
        )

    print("where the time goes (cell_km=5, all incidents, in-process medians):")
    for name, secs in asyncio.run(steps(url, 5.0, None, max(3, n // 2))).items():
        print(f"  {name}: {secs * 1000:.0f} ms")


if __name__ == "__main__":
    main()
