"""Nearby incidents and nearest posts: true geodesic distances (pyproj Geod), brute-force sets,
and an index-assisted plan at 100 000 incidents."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from conftest import app_client, make_key
from geo_reference import GEOD

CENTER = (105.435, 10.386)  # Long Xuyen, An Giang


async def _add(
    session: AsyncSession, points: list[tuple[float, float]], category: str = "smuggling"
) -> list[str]:
    ids = []
    for lon, lat in points:
        row = await session.execute(
            text(
                "INSERT INTO incident (category, severity, occurred_at, geom) VALUES"
                " (:c, 3, '2025-01-01T00:00:00Z', ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"
                " RETURNING id::text"
            ),
            {"c": category, "lon": lon, "lat": lat},
        )
        ids.append(row.scalar_one())
    return ids


def _at(distance_m: float, azimuth: float) -> tuple[float, float]:
    lon, lat, _ = GEOD.fwd(CENTER[0], CENTER[1], azimuth, distance_m)
    return float(lon), float(lat)


async def test_rings_and_order(client: httpx.AsyncClient, session: AsyncSession) -> None:
    rings = [100, 999, 2500, 4999.0, 5001.0, 8000]
    ids = await _add(
        session, [_at(d, az) for d, az in zip(rings, (0, 45, 90, 180, 270, 300), strict=True)]
    )
    r = await client.get(
        "/incidents/nearby", params={"lon": CENTER[0], "lat": CENTER[1], "radius_m": 5000}
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    body = r.json()
    got = [f["id"] for f in body["features"]]
    assert got == ids[:4]  # nearest first; 5001 m just outside is excluded
    assert body["numberReturned"] == 4
    for f, expected in zip(body["features"], rings[:4], strict=True):
        assert f["properties"]["distance_m"] == pytest.approx(expected, abs=0.1)
    limited = (
        await client.get(
            "/incidents/nearby",
            params={"lon": CENTER[0], "lat": CENTER[1], "radius_m": 10000, "limit": 2},
        )
    ).json()
    assert [f["id"] for f in limited["features"]] == ids[:2]


async def test_random_fixture_matches_brute_force(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    rng = random.Random(3)
    points = [_at(rng.uniform(0, 20_000), rng.uniform(0, 360)) for _ in range(200)]
    ids = await _add(session, points)
    await _add(session, [_at(1000, 10)], category="fraud")
    radius = 7000.0
    _, _, dist = GEOD.inv(
        [CENTER[0]] * len(points),
        [CENTER[1]] * len(points),
        [p[0] for p in points],
        [p[1] for p in points],
    )
    expected = sorted((d, i) for d, i in zip(dist, ids, strict=True) if d <= radius)
    r = await client.get(
        "/incidents/nearby",
        params={
            "lon": CENTER[0],
            "lat": CENTER[1],
            "radius_m": radius,
            "limit": 500,
            "category": "smuggling",
        },
    )
    feats = r.json()["features"]
    assert [f["id"] for f in feats] == [i for _, i in expected]
    for f, (d, _) in zip(feats, expected, strict=True):
        assert f["properties"]["distance_m"] == pytest.approx(d, rel=0.001, abs=0.1)


async def test_near_a_pole_without_an_index_box(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    # within 5 km of 89.97° N no lon/lat box can hold the circle (it reaches past TOP_LAT):
    # the statement then searches the whole world; the answer is still pyproj's
    pole = (40.0, 89.97)
    rng = random.Random(7)
    points = []
    for _ in range(40):
        lon, lat, _ = GEOD.fwd(pole[0], pole[1], rng.uniform(0, 360), rng.uniform(0, 9000))
        points.append((float(lon), float(lat)))
    ids = await _add(session, points)
    _, _, dist = GEOD.inv(
        [pole[0]] * len(points),
        [pole[1]] * len(points),
        [p[0] for p in points],
        [p[1] for p in points],
    )
    expected = sorted((d, i) for d, i in zip(dist, ids, strict=True) if d <= 5000)
    assert 0 < len(expected) < len(points)
    r = await client.get(
        "/incidents/nearby",
        params={"lon": pole[0], "lat": pole[1], "radius_m": 5000, "limit": 500},
    )
    assert r.status_code == 200
    feats = r.json()["features"]
    assert [f["id"] for f in feats] == [i for _, i in expected]
    for f, (d, _) in zip(feats, expected, strict=True):
        assert f["properties"]["distance_m"] == pytest.approx(d, rel=0.001, abs=0.1)


async def test_scope_applies(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    await _add(session, [_at(500, 0)])
    key = await make_key(session, "analyst", "VN-HN")
    async with app_client(engine, session, settings, key) as c:
        r = await c.get("/incidents/nearby", params={"lon": CENTER[0], "lat": CENTER[1]})
        assert r.json()["features"] == []
    viewer = await make_key(session, "viewer", "VN-44")
    async with app_client(engine, session, settings, viewer) as c:
        assert (
            await c.get("/incidents/nearby", params={"lon": CENTER[0], "lat": CENTER[1]})
        ).status_code == 403


@pytest.mark.parametrize(
    "params",
    [
        {"lat": 10, "lon": 105, "radius_m": 0},
        {"lat": 10, "lon": 105, "radius_m": 100_001},
        {"lat": 10, "lon": 105, "limit": 501},
        {"lat": 91, "lon": 105},
        {"lat": 10, "lon": "nan"},
        {"lat": 10},
        {"lat": "x", "lon": 105},
    ],
)
async def test_bad_input(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    r = await client.get("/incidents/nearby", params=params)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


async def test_nearest_posts(client: httpx.AsyncClient, session: AsyncSession) -> None:
    lon, lat = 106.55, 16.60  # just west of Lao Bao
    r = await client.get("/border-posts/nearest", params={"lon": lon, "lat": lat, "k": 3})
    feats = r.json()["features"]
    posts = (
        await session.execute(text("SELECT code, ST_X(geom), ST_Y(geom) FROM border_post"))
    ).all()
    _, _, dist = GEOD.inv(
        [lon] * len(posts), [lat] * len(posts), [p[1] for p in posts], [p[2] for p in posts]
    )
    expected = sorted(zip(dist, [p[0] for p in posts], strict=True))[:3]
    assert [f["id"] for f in feats] == [c for _, c in expected]
    assert feats[0]["id"] == "lao-bao"
    for f, (d, _) in zip(feats, expected, strict=True):
        assert f["properties"]["distance_m"] == pytest.approx(d, abs=0.1)
    assert (
        await client.get("/border-posts/nearest", params={"lon": lon, "lat": lat, "k": 0})
    ).status_code == 422
    # the same Features as /border-posts (counterpart and source included), plus distance_m
    listed = {f["id"]: f for f in (await client.get("/border-posts")).json()["features"]}
    for f in feats:
        props = dict(f["properties"])
        del props["distance_m"]
        assert props == listed[f["id"]]["properties"]
        assert f["geometry"] == listed[f["id"]]["geometry"]
        assert {"counterpart", "source"} <= props.keys()


async def test_plan_uses_the_index_at_100k(session: AsyncSession) -> None:
    # 100 000 incidents (derivation skipped: only the plan matters here); no statement timeout:
    # on a busy machine the insert alone can pass the request default of 30 s
    await session.execute(text("SET LOCAL statement_timeout = 0"))
    await session.execute(text("SELECT set_config('borderwatch.bulk', 'on', true)"))
    await session.execute(
        text(
            "INSERT INTO incident (category, severity, occurred_at, geom)"
            " SELECT 'other', 1, timestamptz '2024-01-01' + n * interval '1 minute',"
            " ST_SetSRID(ST_MakePoint(102.2 + random() * 7, 8.6 + random() * 14.6), 4326)"
            " FROM generate_series(1, 100000) n"
        )
    )
    await session.execute(text("SELECT set_config('borderwatch.bulk', '', true)"))
    await session.execute(text("ANALYZE incident"))
    from app.auth.scope import NATIONAL
    from app.incidents import nearby
    from app.incidents.filters import IncidentFilter

    # the statement the route runs (built once per filter), with this call's values written in
    stmt = nearby.statement(IncidentFilter(scope=NATIONAL))
    values = nearby.parameters(lon=105.4, lat=10.4, radius_m=5000, limit=50)
    # PostgreSQL's dialect through its URL (its constructor is untyped)
    dialect = make_url("postgresql://").get_dialect()()
    sql = str(stmt.params(values).compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    plan = "\n".join(r[0] for r in (await session.execute(text("EXPLAIN " + sql))).all())
    assert "Seq Scan on incident" not in plan, plan
    assert "ix_incident_geom" in plan, plan
