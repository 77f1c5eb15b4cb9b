"""Hot spots over the whole border zone, end to end and step by step, in one run.

    .venv/bin/python -m bench.bench_analysis --incidents 1000000

1. GET /analysis/hotspots?area=border-zone&cell_km=5 over HTTP (one uvicorn worker): median,
   p95 and the response size; the same with a one-year `datetime` filter; and at 2 km cells.
2. The same work in-process, each step timed on its own (study area, grid cells, counts per
   cell, Gi* in numpy, the response text), so the closing figures say where the time goes.
3. GET /analysis/stats by jurisdiction and by month (national key).
4. GET /analysis/clusters (DBSCAN) in the border zone for one year, and with its defaults
   (every incident, eps 1 km, 5 points): over HTTP, then in-process step by step beside
   PostGIS's ST_ClusterDBSCAN (the former statement, as the "before" and as an independent
   check: the same number of clusters and of clustered incidents).
5. GET /analysis/cross-boundary (defaults: provinces, 5 km): the first request (computed),
   the same again (kept per version) and a revalidation (If-None-Match: 304).

    .venv/bin/python -m bench.bench_analysis --only clusters,cross-boundary

Bounded: a fixed number of requests, and a wall-clock cap on every loop.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx
import numpy as np
from sqlalchemy import func, select, text

from app.analysis import clusters as dbscan_clusters
from app.analysis import gistar, hotspots
from app.auth.scope import NATIONAL
from app.config import Settings
from app.db import create_engine, sessionmaker
from app.geo.spatial import SRID_UTM48N
from app.incidents.filters import IncidentFilter
from app.incidents.models import Incident
from bench.common import admin_key, cluster, prepare, server, summary

CAP_S = 180.0  # no loop runs longer than this
POSTGIS_CAP_S = 300  # the former ST_ClusterDBSCAN statement: given up after this
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


async def clusters_steps(
    url: str, datetime: str | None, border_km_max: float | None, eps_m: float, min_points: int
) -> dict[str, Any]:
    """The clusters in-process, step by step, and PostGIS's ST_ClusterDBSCAN on the same
    incidents (statement timeout lifted, capped at POSTGIS_CAP_S): seconds and counts."""
    from app.incidents.filters import parse_datetime

    engine = create_engine(url, Settings(environment="test"))
    start, end = parse_datetime(datetime) if datetime else (None, None)
    filt = IncidentFilter(scope=NATIONAL, start=start, end=end, border_km_max=border_km_max)
    out: dict[str, Any] = {}
    try:
        async with sessionmaker(engine)() as session, session.begin():
            await session.execute(text("SET LOCAL statement_timeout = 0"))
            t = time.perf_counter()
            points = await dbscan_clusters.projected(session=session, filt=filt)
            t1 = time.perf_counter()
            found = dbscan_clusters.cluster_points(points, eps_m, min_points)
            t2 = time.perf_counter()
            await dbscan_clusters._features(session=session, found=found, eps_m=eps_m)
            t3 = time.perf_counter()
            out |= {
                "incidents": found.incidents,
                "clusters": len(found.count),
                "clustered": found.clustered,
                "projected coordinates (PostgreSQL, one row)": t1 - t,
                "grid DBSCAN + sums + hulls (numpy, shapely)": t2 - t1,
                "features (PostGIS buffer, GeoJSON)": t3 - t2,
            }
            cid = func.ST_ClusterDBSCAN(
                func.ST_Transform(Incident.geom, SRID_UTM48N), eps_m, min_points
            ).over()
            labelled = select(cid.label("cid")).where(*filt.conditions()).subquery()
            c = labelled.c.cid
            stmt = select(func.count(func.distinct(c)), func.count(c))
            await session.execute(text(f"SET LOCAL statement_timeout = '{POSTGIS_CAP_S}s'"))
            t = time.perf_counter()
            try:
                n, clustered = (await session.execute(stmt)).one()
                out |= {"postgis_s": time.perf_counter() - t, "postgis_clusters": int(n)}
                out["postgis_clustered"] = int(clustered)
            except Exception as exc:  # the statement timeout: the "before" did not finish
                out |= {"postgis_s": None, "postgis_error": type(exc).__name__}
    finally:
        await engine.dispose()
    return out


def bench_clusters(base: str, key: str, url: str, incidents: int) -> None:
    """Clusters with the defaults and in the border zone for one year, HTTP and in-process."""
    path = "/analysis/clusters"
    print(f"clusters ({incidents:,} incidents):")
    year = {"border_km_max": 50, "datetime": YEAR, "eps_m": 1000, "min_points": 10}
    show("border zone, one year, eps 1 km, 10 points", *time_get(base, path, year, 3, key))
    show("defaults (every incident, eps 1 km, 5 points)", *time_get(base, path, {}, 3, key))
    cases = (("border zone, one year", YEAR, 50.0, 10), ("defaults", None, None, 5))
    for label, datetime, border, min_points in cases:
        got = asyncio.run(clusters_steps(url, datetime, border, 1000.0, min_points))
        print(f"  in-process, {label}: {got['incidents']:,} incidents, {got['clusters']:,}"
              f" clusters, {got['clustered']:,} clustered")  # fmt: skip
        for name, value in got.items():
            if name.endswith(")"):
                print(f"    {name}: {value * 1000:.0f} ms")
        if got["postgis_s"] is None:
            print(f"    ST_ClusterDBSCAN (before): no answer within {POSTGIS_CAP_S} s")
        else:
            same = (got["postgis_clusters"], got["postgis_clustered"]) == (
                got["clusters"],
                got["clustered"],
            )
            print(f"    ST_ClusterDBSCAN (before): {got['postgis_s']:.1f} s,"
                  f" {got['postgis_clusters']:,} clusters, {got['postgis_clustered']:,}"
                  f" clustered ({'the same' if same else 'DIFFERENT'})")  # fmt: skip


def bench_cross_boundary(base: str, key: str) -> None:
    """The cross-boundary table: the first request after start (computed: what every request
    cost before), then the same again (kept), then a revalidation (304)."""
    path = "/analysis/cross-boundary"
    print("cross-boundary table (provinces, 5 km):")
    with httpx.Client(
        base_url=base, timeout=120, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        for params in ({}, {"bbox": "102,8,110,23.5"}):
            t = time.perf_counter()
            first = client.get(path, params=params)
            cold = time.perf_counter() - t
            assert first.status_code == 200, first.text[:500]
            warm: list[float] = []
            revalidate: list[float] = []
            for _ in range(20):
                t = time.perf_counter()
                again = client.get(path, params=params)
                warm.append(time.perf_counter() - t)
                assert again.content == first.content
                t = time.perf_counter()
                r = client.get(
                    path, params=params, headers={"If-None-Match": first.headers["etag"]}
                )
                revalidate.append(time.perf_counter() - t)
                assert r.status_code == 304
            w, v = summary(warm), summary(revalidate)
            print(f"  {params or 'defaults'}: first {cold * 1000:.0f} ms; kept: median"
                  f" {w['median_ms']:.1f} ms (p95 {w['p95_ms']:.1f}); 304: median"
                  f" {v['median_ms']:.1f} ms; {len(first.content) / 1e3:.1f} kB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=7)
    parser.add_argument(
        "--only",
        default="hotspots,stats,clusters,cross-boundary",
        help="comma-separated parts: hotspots, stats, clusters, cross-boundary",
    )
    args = parser.parse_args()
    parts = set(args.only.split(","))

    c = cluster()
    url = c.url("bench")
    asyncio.run(prepare(url, args.incidents))
    key = asyncio.run(admin_key(url))
    n = args.requests
    with server(url) as base:
        if "cross-boundary" in parts:  # first: its first request must find the cache empty
            bench_cross_boundary(base, key)
        if "hotspots" in parts:
            path = "/analysis/hotspots"
            zone5 = {"area": "border-zone", "cell_km": 5}
            time_get(base, path, zone5, 1, key)  # warm-up
            print(f"hot spots over the border zone ({args.incidents:,} incidents):")
            show("cell_km=5, all incidents", *time_get(base, path, zone5, n, key))
            year5 = zone5 | {"datetime": YEAR}
            show("cell_km=5, one year", *time_get(base, path, year5, n, key))
            show("cell_km=5, fdr=true", *time_get(base, path, zone5 | {"fdr": "true"}, n, key))
            zone2 = {"area": "border-zone", "cell_km": 2}
            show("cell_km=2", *time_get(base, path, zone2, 3, key))
        if "stats" in parts:
            stats = "/analysis/stats"
            by_place = {"group_by": "jurisdiction"}
            time_get(base, stats, by_place, 1, key)  # warm-up
            print(f"statistics ({args.incidents:,} incidents):")
            show("group_by=jurisdiction", *time_get(base, stats, by_place, n, key))
            show("group_by=month", *time_get(base, stats, {"group_by": "month"}, n, key))
        if "clusters" in parts:
            bench_clusters(base, key, url, args.incidents)

    if "hotspots" in parts:
        print("where the time goes (cell_km=5, all incidents, in-process medians):")
        for name, secs in asyncio.run(steps(url, 5.0, None, max(3, n // 2))).items():
            print(f"  {name}: {secs * 1000:.0f} ms")


if __name__ == "__main__":
    main()
