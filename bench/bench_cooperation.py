"""`cooperation=<id>` at 1 000 000 incidents, against `jurisdiction=` over the same ground.

    .venv/bin/python -m bench.bench_cooperation [--incidents 1000000] [--requests 7]

The three example areas of the demo data (seeds 000, 003, 004) are created if missing. Over
HTTP (one uvicorn worker, national admin key), each request `--requests` times, sequentially:
the first page of GET /incidents, GET /analysis/stats by category, the area's summary, and an
incident tile at zoom 7 (its `datetime` varied so that no cache answers), for the largest
example area and for the province it lies in. Bounded: a fixed number of requests, and a
wall-clock cap on every loop (bench_analysis.time_get).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx
from sqlalchemy import text

from app.config import Settings
from app.cooperation import examples
from app.db import create_engine, sessionmaker
from bench.bench_analysis import time_get
from bench.common import admin_key, cluster, prepare, server, summary

TILE_Z7_AN_GIANG = (7, 101, 60)  # covers An Giang and the Cambodian border


async def areas(url: str) -> dict[str, Any]:
    """The example areas (created when missing): name → (id, member count, province)."""
    engine = create_engine(url, Settings(environment="test"))
    try:
        async with sessionmaker(engine)() as session, session.begin():
            await session.execute(text("SET LOCAL statement_timeout = 0"))
            await examples.load(session)
            rows = (
                await session.execute(
                    text(
                        "SELECT a.id, a.name, count(m.id) FROM cooperation_area a"
                        " JOIN cooperation_member m ON m.area_id = a.id"
                        " WHERE a.example GROUP BY a.id, a.name ORDER BY a.id"
                    )
                )
            ).all()
            have = int((await session.execute(text("SELECT count(*) FROM incident"))).scalar_one())
    finally:
        await engine.dispose()
    print(f"incidents: {have:,}")
    return {name: (int(i), int(n)) for i, name, n in rows}


def line(label: str, samples: list[float], size: int) -> None:
    s = summary(samples)
    print(f"  {label}: median {s['median_ms']:.0f} ms, p95 {s['p95_ms']:.0f} ms, {size:,} B")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=7)
    args = parser.parse_args()
    c = cluster()
    url = c.url("bench")
    asyncio.run(prepare(url, args.incidents))
    found = asyncio.run(areas(url))
    key = asyncio.run(admin_key(url))
    n = args.requests
    with server(url) as base:
        for name, (area, members) in found.items():
            print(f"{name} (id {area}, {members} members)")
            for what, path, params in (
                ("list, first page", "/incidents", {"cooperation": area, "limit": 100}),
                ("stats by category", "/analysis/stats",
                 {"cooperation": area, "group_by": "category"}),
                ("summary, all time", f"/cooperation-areas/{area}/summary", {}),
            ):  # fmt: skip
                samples, size = time_get(base, path, params, n, key)
                line(what, samples, size)
        an_giang = next(i for name, (i, _) in found.items() if "172" in name)
        for label, filt in (
            ("cooperation (An Giang's border units)", {"cooperation": an_giang}),
            ("jurisdiction=VN-P91 (An Giang)", {"jurisdiction": "VN-P91"}),
        ):
            print(label)
            for what, path, extra in (
                ("list, first page", "/incidents", {"limit": 100}),
                ("stats by category", "/analysis/stats", {"group_by": "category"}),
            ):
                samples, size = time_get(base, path, {**filt, **extra}, n, key)
                line(what, samples, size)
            line(f"tile z{TILE_Z7_AN_GIANG[0]}", *tiles(base, key, filt, n))


def tiles(base: str, key: str, filt: dict[str, Any], n: int) -> tuple[list[float], int]:
    """n incident tiles over An Giang, each with another `datetime` (no cache answers)."""
    z, x, y = TILE_Z7_AN_GIANG
    samples: list[float] = []
    size = 0
    with httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {key}"}) as c:
        for i in range(n):
            t = time.perf_counter()
            r = c.get(f"/tiles/incidents/{z}/{x}/{y}.mvt",
                      params={**filt, "datetime": f"../2030-01-01T00:00:{i:02d}Z"})  # fmt: skip
            samples.append(time.perf_counter() - t)
            assert r.status_code in (200, 204), r.text[:300]
            size = len(r.content)
    return samples, size


if __name__ == "__main__":
    main()
