"""The briefing of a province over a quarter on the 1 M bench cluster (goal: under 5 s).

    .venv/bin/python -m bench.bench_briefing

1. The briefing (PDF, then HTML) of two provinces over 2026-Q2, as the route makes it
   (gather + render, in-process, one process): every run's time (the first of a province
   builds its hot-spot grid, kept per process afterwards; the first PDF of a process imports
   WeasyPrint) and the size. With --http, also GET /reports/briefing over HTTP (one uvicorn
   worker; it makes a key, so the bench database must be at the current migration).
2. The same work in-process, each part timed on its own, so the figures say where the time
   goes (reading: statements on one session; drawing: HTML, then WeasyPrint's PDF).

Bounded: a fixed number of requests, each with a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx

from app.analysis import stats
from app.auth.scope import Scope
from app.config import Settings
from app.db import create_engine, sessionmaker
from app.incidents.filters import IncidentFilter
from app.reports import briefing, render
from bench.common import admin_key, cluster, server

PROVINCES = ("VN-P91", "VN-P79")  # An Giang (on the Cambodian border), Hồ Chí Minh (the most)
QUARTER = "2026-Q2"


def timed_get(base: str, key: str, params: dict[str, Any], n: int) -> dict[str, Any]:
    samples: list[float] = []
    size = 0
    with httpx.Client(base_url=base, timeout=180, headers={"Authorization": f"Bearer {key}"}) as c:
        for _ in range(n):
            t = time.perf_counter()
            r = c.get("/reports/briefing", params=params)
            samples.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text[:500]
            size = len(r.content)
    return {"samples_s": [round(s, 2) for s in samples], "median_s": round(
        statistics.median(samples), 2), "bytes": size}  # fmt: skip


async def steps(url: str, province: str) -> None:
    engine = create_engine(url, Settings(environment="test"))
    scope = Scope(code=None, distance_m=5000)
    period = briefing.parse_period(QUARTER)
    out: dict[str, float] = {}

    def note(name: str, t: float) -> float:
        now = time.perf_counter()
        out[name] = now - t
        return now

    async with sessionmaker(engine)() as s:
        t = time.perf_counter()
        area = await briefing.resolve_area(
            session=s, area=f"jurisdiction:{province}", lang="vi", home="VNM"
        )
        t = note("area polygon", t)
        filt = briefing._filter(scope, period, area.members)
        cat = await stats.compare_counts(
            session=s, filt=filt, group_by="category", compare="previous_period"
        )
        t = note(f"by category, both periods ({cat['total']:,} incidents)", t)
        await briefing._total(s, briefing._filter(scope, period, None))
        t = note("national total", t)
        await briefing._months(s, scope, area, period)
        t = note("12 months", t)
        km = briefing.cell_km_for(area.study.area_m2)
        whole = IncidentFilter(scope=scope, start=period.start, end=period.end)
        grid, _, _ = await briefing._hot_cells(s, whole, area, km)
        t = note(f"hot spots ({len(grid.cells):,} cells of {km:g} km)", t)
        await briefing._emerging(s, scope, area, period, grid, km, "vi")
        t = note("emerging hot spots (12 months)", t)
        await briefing._pairs(s, scope, area, period, "vi", "VNM")
        t = note("cross-boundary pairs", t)
        await briefing._severe(s, filt, "vi")
        t = note("severe incidents", t)
        await briefing._layers(s, area, briefing.view_box(area.box_m), "vi", "VNM")
        t = note("map layers (ST_AsSVG)", t)
        await briefing._points(s, filt)
        t = note("map points", t)
        found = await briefing.gather(
            session=s, scope=scope, role="admin", area=f"jurisdiction:{province}",
            period=period, lang="vi", home="VNM",
        )  # fmt: skip
        t = note("gather() whole", t)
    await engine.dispose()
    document = render.html(found)
    t = note(f"HTML ({len(document):,} characters)", t)
    pdf = render.pdf(document)
    note(f"PDF by WeasyPrint ({len(pdf):,} bytes)", t)
    for name, secs in out.items():
        print(f"  {name:<48} {secs * 1000:8.0f} ms")


async def whole(url: str, province: str, fmt: str, n: int) -> dict[str, Any]:
    """What the route does, in-process on one session: gather, then render (n times; the first
    of a province builds its hot-spot grid, and the first PDF of a process imports WeasyPrint)."""
    engine = create_engine(url, Settings(environment="test"))
    scope = Scope(code=None, distance_m=5000)
    samples: list[float] = []
    drawing: list[float] = []
    size = 0
    try:
        for _ in range(n):
            t = time.perf_counter()
            async with sessionmaker(engine)() as s:
                found = await briefing.gather(
                    session=s, scope=scope, role="admin", area=f"jurisdiction:{province}",
                    period=briefing.parse_period(QUARTER), lang="vi", home="VNM",
                )  # fmt: skip
            drawn = time.perf_counter()
            body = await asyncio.to_thread(render.render, found, fmt)
            samples.append(time.perf_counter() - t)
            drawing.append(time.perf_counter() - drawn)
            size = len(body)
    finally:
        await engine.dispose()
    return {"samples_s": [round(x, 2) for x in samples], "median_s": round(
        statistics.median(samples), 2), "render_s": [round(x, 2) for x in drawing],
        "bytes": size}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument(
        "--http", action="store_true",
        help="also over HTTP (needs the bench database at the current migration: a key is made)",
    )  # fmt: skip
    args = parser.parse_args()
    url = cluster().url("bench")
    for province in PROVINCES:
        for fmt in ("pdf", "html"):
            got = asyncio.run(whole(url, province, fmt, args.requests))
            print(f"briefing {province} {QUARTER} {fmt}, in-process: {got}")
    if args.http:
        key = asyncio.run(admin_key(url))
        with server(url) as base:
            for province in PROVINCES:
                for fmt in ("pdf", "html"):
                    params = {
                        "area": f"jurisdiction:{province}",
                        "datetime": QUARTER,
                        "format": fmt,
                    }
                    got = timed_get(base, key, params, args.requests)
                    print(f"briefing {province} {QUARTER} {fmt}, HTTP: {got}")
    for province in PROVINCES:
        print(f"in-process, step by step, {province} {QUARTER}:")
        asyncio.run(steps(url, province))


if __name__ == "__main__":
    main()
