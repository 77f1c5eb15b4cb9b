"""List and create latency against PostgreSQL itself, in one run.

    .venv/bin/python -m bench.bench_api --incidents 1000000

1. GET /incidents?bbox=<0.5° box at the densest hotspot>&limit=1000 over HTTP (keep-alive,
   one uvicorn worker) against the same SQL run directly with asyncpg producing the same
   GeoJSON text (string_agg of the same Feature expressions): medians and their ratio.
2. POST /incidents at concurrency 1 (median, p95) and throughput at concurrency 16.
Bounded: a fixed number of requests, and a wall-clock cap on every loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import asyncpg
import httpx
from sqlalchemy import Text, cast, func, literal, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from app.auth.scope import NATIONAL
from app.incidents.filters import IncidentFilter
from app.incidents.models import Incident
from app.incidents.service import feature_expr
from bench.common import admin_key, cluster, literal_sql, prepare, server, summary

CAP_S = 120.0  # no loop runs longer than this


def nearby_sql(lon: float, lat: float, radius_m: float, limit: int) -> str:
    """The SQL of GET /incidents/nearby for a national principal, values written in."""
    from app.incidents import nearby

    stmt = nearby.statement(IncidentFilter(scope=NATIONAL))
    values = nearby.parameters(lon=lon, lat=lat, radius_m=radius_m, limit=limit)
    return literal_sql(stmt.params(values))


def time_get(base: str, path: str, params: dict[str, Any], n: int, key: str) -> list[float]:
    samples = []
    with httpx.Client(base_url=base, timeout=30, headers=auth(key)) as client:
        deadline = time.monotonic() + CAP_S
        for _ in range(n):
            t = time.perf_counter()
            r = client.get(path, params=params)
            samples.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
            if time.monotonic() > deadline:
                break
    return samples


async def get_concurrent(
    base: str, path: str, params: dict[str, Any], workers: int, per_worker: int, key: str
) -> tuple[float, list[float]]:
    samples: list[float] = []
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(
        base_url=base, timeout=60, limits=limits, headers=auth(key)
    ) as client:

        async def worker() -> None:
            for _ in range(per_worker):
                t = time.perf_counter()
                r = await client.get(path, params=params)
                samples.append(time.perf_counter() - t)
                assert r.status_code == 200

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(workers))), CAP_S)
        return time.perf_counter() - started, samples


def hotspot_sql() -> str:
    return """
        SELECT floor(ST_X(geom) * 2) / 2 AS x, floor(ST_Y(geom) * 2) / 2 AS y, count(*) n
          FROM incident WHERE deleted_at IS NULL GROUP BY 1, 2 ORDER BY n DESC LIMIT 1
    """


def direct_sql(bbox: tuple[float, float, float, float], limit: int) -> str:
    """The list query of the service, aggregated into one GeoJSON text by PostgreSQL."""
    page = (
        select(Incident)
        .where(*IncidentFilter(scope=NATIONAL, bbox=bbox).conditions())
        .order_by(Incident.occurred_at.desc(), Incident.id.desc())
        .limit(limit)
        .subquery("page")
    )
    f, from_ = feature_expr(rows=page)
    inner = (
        select(cast(f, Text).label("f"), page.c.occurred_at, page.c.id)
        .select_from(from_)
        .subquery()
    )
    agg = func.string_agg(
        inner.c.f, aggregate_order_by(literal(","), inner.c.occurred_at.desc(), inner.c.id.desc())
    )
    stmt = select(literal('{"type":"FeatureCollection","features":[') + agg + literal("]}"))
    return literal_sql(stmt)


async def time_direct(dsn: str, sql: str, n: int, min_len: int = 1000) -> list[float]:
    """`sql` run `n` times on one connection. asyncpg's `fetchval` asks PostgreSQL for one row,
    a portal that may be suspended, so the plan never starts parallel workers: the service
    runs nearby the same way (fetch_row) since 2026-12-07; before, it ran it through SQLAlchemy
    (every row asked for: two workers), which this comparison did not show (1.05× here against
    2.65× measured against the parallel plan's own time; docs/performance.md)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET TimeZone = 'UTC'")
        samples = []
        deadline = time.monotonic() + CAP_S
        for _ in range(n):
            t = time.perf_counter()
            body = await conn.fetchval(sql)
            samples.append(time.perf_counter() - t)
            assert body and len(body) > min_len
            if time.monotonic() > deadline:
                break
        return samples
    finally:
        await conn.close()


def time_http(base: str, params: dict[str, Any], n: int, key: str) -> tuple[list[float], int]:
    samples = []
    returned = 0
    with httpx.Client(base_url=base, timeout=30, headers=auth(key)) as client:
        deadline = time.monotonic() + CAP_S
        for _ in range(n):
            t = time.perf_counter()
            r = client.get("/incidents", params=params)
            body = r.content
            samples.append(time.perf_counter() - t)
            assert r.status_code == 200
            returned = json.loads(body)["numberReturned"]
            if time.monotonic() > deadline:
                break
    return samples, returned


# where the created incidents are: near the Hữu Nghị gate (land, by the border), and at sea
# off Vũng Tàu (the sea rule: nearest land, province and commune within 24 nautical miles)
PLACES = {"land": (106.70, 21.96), "sea": (107.16, 10.25)}


def body(i: int, where: str = "land") -> dict[str, Any]:
    lon, lat = PLACES[where]
    return {
        "category": "smuggling",
        "severity": 1 + i % 5,
        "occurred_at": "2026-01-15T08:00:00Z",
        "location": {"type": "Point", "coordinates": [lon + (i % 100) * 1e-4, lat]},
        "description": f"bench {i}",
        "source": "bench",
    }


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def time_create_serial(base: str, n: int, key: str, where: str = "land") -> list[float]:
    samples = []
    with httpx.Client(base_url=base, timeout=30, headers=auth(key)) as client:
        deadline = time.monotonic() + CAP_S
        for i in range(n):
            t = time.perf_counter()
            r = client.post("/incidents", json=body(i, where))
            samples.append(time.perf_counter() - t)
            assert r.status_code == 201, r.text
            if time.monotonic() > deadline:
                break
    return samples


async def create_concurrent(
    base: str, workers: int, per_worker: int, key: str
) -> tuple[float, int, list[float]]:
    samples: list[float] = []
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(
        base_url=base, timeout=60, limits=limits, headers=auth(key)
    ) as client:

        async def worker(w: int) -> None:
            for i in range(per_worker):
                t = time.perf_counter()
                r = await client.post("/incidents", json=body(100_000 + w * per_worker + i))
                samples.append(time.perf_counter() - t)
                assert r.status_code == 201, r.text

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker(w) for w in range(workers))), CAP_S)
        elapsed = time.perf_counter() - started
    return elapsed, len(samples), samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument(
        "--only-create", action="store_true", help="only POST /incidents (land and sea, c=1)"
    )
    args = parser.parse_args()

    c = cluster()
    url = c.url("bench")
    asyncio.run(prepare(url, args.incidents))
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")

    async def hotspot() -> tuple[float, float, int]:
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow(hotspot_sql())
            assert row is not None, "no incidents"
            return float(row["x"]), float(row["y"]), int(row["n"])
        finally:
            await conn.close()

    if args.only_create:
        key = asyncio.run(admin_key(url))
        with server(url) as base:
            for where in ("land", "sea", "land", "sea"):  # interleaved rounds
                time_create_serial(base, 10, key, where)  # warm-up
                serial = summary(time_create_serial(base, 200, key, where))
                print(
                    f"create at {where}, concurrency 1: median {serial['median_ms']:.1f} ms"
                    f"  p95 {serial['p95_ms']:.1f} ms"
                )
        return
    x, y, n_cell = asyncio.run(hotspot())
    bbox = (x, y, x + 0.5, y + 0.5)
    limit = 1000
    print(f"incidents: {args.incidents:,}; hotspot box {bbox} holds {n_cell:,}")
    sql = direct_sql(bbox, limit)
    key = asyncio.run(admin_key(url))
    with server(url) as base:
        params = {"bbox": ",".join(str(v) for v in bbox), "limit": limit}
        time_http(base, params, 5, key)  # warm-up (plans, caches, connections)
        asyncio.run(time_direct(dsn, sql, 5))
        direct = asyncio.run(time_direct(dsn, sql, args.requests))
        http, returned = time_http(base, params, args.requests, key)
        d, h = summary(direct), summary(http)
        print(f"list bbox limit={limit} (returned {returned}):")
        print(f"  PostgreSQL direct: median {d['median_ms']:.1f} ms  p95 {d['p95_ms']:.1f} ms")
        print(f"  GET /incidents:    median {h['median_ms']:.1f} ms  p95 {h['p95_ms']:.1f} ms")
        print(f"  ratio (median): {h['median_ms'] / d['median_ms']:.2f}x")

        # nearby: 5 km around the middle of the hotspot box, limit 50
        lon, lat = x + 0.25, y + 0.25
        near_params = {"lon": lon, "lat": lat, "radius_m": 5000, "limit": 50}
        near_sql = nearby_sql(lon, lat, 5000, 50)
        time_get(base, "/incidents/nearby", near_params, 5, key)
        direct_near = summary(asyncio.run(time_direct(dsn, near_sql, args.requests, 100)))
        http_near = summary(time_get(base, "/incidents/nearby", near_params, args.requests, key))
        elapsed, samples = asyncio.run(
            get_concurrent(base, "/incidents/nearby", near_params, 16, 25, key)
        )
        conc_near = summary(samples)
        print("nearby 5 km, limit 50:")
        print(f"  PostgreSQL direct: median {direct_near['median_ms']:.1f} ms")
        print(
            f"  GET /incidents/nearby: median {http_near['median_ms']:.1f} ms  "
            f"p95 {http_near['p95_ms']:.1f} ms  "
            f"ratio {http_near['median_ms'] / direct_near['median_ms']:.2f}x"
        )
        print(
            f"  concurrency 16: {len(samples) / elapsed:,.0f} requests/s; "
            f"median {conc_near['median_ms']:.1f} ms  p95 {conc_near['p95_ms']:.1f} ms"
        )

        time_create_serial(base, 10, key)  # warm-up
        serial = summary(time_create_serial(base, 200, key))
        print(
            f"create, concurrency 1: median {serial['median_ms']:.1f} ms  "
            f"p95 {serial['p95_ms']:.1f} ms"
        )
        elapsed, done, samples = asyncio.run(create_concurrent(base, 16, 40, key))
        conc = summary(samples)
        print(
            f"create, concurrency 16: {done / elapsed:,.0f} incidents/s; "
            f"median {conc['median_ms']:.1f} ms  p95 {conc['p95_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
