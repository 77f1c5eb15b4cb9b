"""Emerging hot spots and near-repeat on the 1 M bench cluster, end to end and step by step.

    .venv/bin/python -m bench.bench_emerging

1. GET /analysis/emerging-hotspots over the border zone, 36 monthly steps
   (December 2023 to November 2026, local), 5 km cells, over HTTP (one uvicorn worker): median
   of a few requests and the response size (goal: under 10 s).
2. GET /analysis/near-repeat on one province's incidents of 2025 (about 20 000), 99
   permutations, the default bands, over HTTP (goal: under 10 s).
3. The same work in-process on one session, each step timed on its own, so the figures say
   where the time goes.

Bounded: a fixed number of requests, each with a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from app.analysis import emerging, gistar, hotspots, nearrepeat
from app.auth.scope import NATIONAL
from app.config import Settings
from app.db import create_engine, sessionmaker
from app.incidents.filters import IncidentFilter, parse_datetime
from bench.common import admin_key, cluster, server

SPAN = "2023-12-01T00:00:00+07:00/2026-12-01T00:00:00+07:00"  # 36 local months
PROVINCE = "VN-P80"
YEAR = "2025-01-01T00:00:00+07:00/2026-01-01T00:00:00+07:00"
EMERGING: dict[str, Any] = {"area": "border-zone", "cell_km": 5, "datetime": SPAN, "step": "month"}
NEAR: dict[str, Any] = {"jurisdiction": PROVINCE, "datetime": YEAR, "permutations": 99}


def timed_get(base: str, key: str, path: str, params: dict[str, Any], n: int) -> dict[str, Any]:
    samples: list[float] = []
    size = 0
    body: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=180, headers={"Authorization": f"Bearer {key}"}) as c:
        for _ in range(n):
            t = time.perf_counter()
            r = c.get(path, params=params)
            samples.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text[:500]
            size = len(r.content)
            body = r.json()
    return {"samples_s": [round(s, 2) for s in samples], "median_s": statistics.median(samples),
            "bytes": size, "body": body}  # fmt: skip


async def steps(url: str) -> None:
    engine = create_engine(url, Settings(environment="test"))
    start, end = parse_datetime(SPAN)
    filt = IncidentFilter(scope=NATIONAL, start=start, end=end)
    out: dict[str, float] = {}

    def note(name: str, t: float) -> float:
        now = time.perf_counter()
        out[name] = now - t
        return now

    async with sessionmaker(engine)() as session:
        t = time.perf_counter()
        edges = emerging.step_edges("month", start, end, datetime.now(UTC))
        study = await hotspots.study_area(session=session, area="border-zone", home="VNM")
        t = note("study area", t)
        grid = await hotspots.grid(session=session, study=study, cell_km=5, cached=False)
        t = note("grid (built)", t)
        points = await emerging.located(session=session, filt=filt, study=study, edges=edges)
        t = note(f"incidents: projected + step ({len(points.x):,})", t)
        counts = emerging.bin_counts(points, grid, 5, len(edges) - 1)
        t = note(f"bin counts ({counts.size:,} bins)", t)
        spatial = gistar.hex_neighbours(grid.cells)
        nb = emerging.space_time_neighbours(spatial, len(edges) - 1, 1)
        t = note("space-time neighbours", t)
        z = gistar.gi_star(counts.reshape(-1), nb)
        p = gistar.two_sided_p(z)
        gistar.confidence_bins(z, p, fdr=True)
        t = note("Gi*, p, FDR bins", t)
        cube = emerging.analyse(counts, spatial, 1, True)
        t = note("analyse() whole (Gi* + trend + categories)", t)
        tally: dict[str, int] = {}
        for c in cube.category:
            tally[c] = tally.get(c, 0) + 1
        print("  categories:", dict(sorted(tally.items(), key=lambda kv: -kv[1])))
        t = time.perf_counter()
        await emerging.emerging_hotspots(
            session=session, filt=filt, area="border-zone", cell_km=5, step="month",
            time_neighbours=1, fdr=True, home="VNM", lang="vi",
        )  # fmt: skip
        note("emerging_hotspots() whole, grid kept", t)

        ys, ye = parse_datetime(YEAR)
        nfilt = IncidentFilter(scope=NATIONAL, start=ys, end=ye, jurisdiction=PROVINCE)
        t = time.perf_counter()
        ev = await nearrepeat.events(session=session, filt=nfilt, study=None)
        t = note(f"near-repeat: incidents ({len(ev.x):,})", t)
        a, _ = nearrepeat.near_pairs(ev.x, ev.y, 1000.0, 99)
        t = note(f"near-repeat: pairs within 1 km ({len(a):,})", t)
        nearrepeat.knox(ev.x, ev.y, ev.days, list(nearrepeat.DEFAULT_DISTANCES),
                        list(nearrepeat.DEFAULT_DAYS), 99, 1)  # fmt: skip
        note("near-repeat: knox() whole, 99 permutations", t)
    await engine.dispose()
    for name, secs in out.items():
        print(f"  {name:<48} {secs * 1000:8.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3)
    args = parser.parse_args()
    url = cluster().url("bench")
    key = asyncio.run(admin_key(url))
    with server(url) as base:
        got = timed_get(base, key, "/analysis/emerging-hotspots", EMERGING, args.requests)
        body = got.pop("body")
        print(f"emerging hot spots, border zone, 36 months, 5 km: {body['cells']:,} cells,"
              f" {body['bins']:,} bins, {body['incidents']:,} incidents: {got}")  # fmt: skip
        got = timed_get(base, key, "/analysis/near-repeat", NEAR, args.requests)
        body = got.pop("body")
        print(
            f"near-repeat, {PROVINCE} 2025: {body['incidents']:,} incidents,"
            f" {body['near_pairs']:,} pairs within 1 km, 99 permutations: {got}"
        )
    print("in-process, step by step:")
    asyncio.run(steps(url))


if __name__ == "__main__":
    main()
