"""Cooperation between neighbours: shared zones (two hand-made squares with points at known
distances from the shared edge), the cross-boundary table, and incident counts per neighbour."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import httpx
import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, box
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.geo.spatial import inner_degrees, outer_degrees
from app.geodata import load as geodata
from app.jurisdictions import service as jurisdictions
from conftest import GEODATA
from geo_reference import GEOD, features


def units_2025() -> dict[str, dict[str, Any]]:
    fc = json.loads((GEODATA / "units_2025.geojson").read_text("utf-8"))
    return {f["properties"]["code"]: f["properties"] for f in fc["features"]}


def units_2025_provinces() -> set[str]:
    return {c for c, p in units_2025().items() if p["level"] == "province"}


def former_provinces() -> set[str]:
    return {
        c
        for c, (level, _) in features(GEODATA / "jurisdictions.geojson").items()
        if level == "province"
    }


EDGE = (112.1, 12.05)  # the meridian shared by the two squares, far out at sea
DISTANCES_KM = [1.0, 3.0, 4.9, 5.1, 8.0]


def _square(code: str, x0: float) -> geodata.JurisdictionRecord:
    return geodata.JurisdictionRecord(
        code=code, name=code, name_local=None, level="district", parent_code=None, country="TST",
        geom=MultiPolygon([box(x0, 12.0, x0 + 0.1, 12.1)]), valid_from=date(2020, 1, 1),
        valid_to=None, source="test squares", source_name=None,
    )  # fmt: skip


@pytest.fixture
async def squares(session: AsyncSession, settings: Settings) -> dict[str, list[str]]:
    await geodata.write_jurisdictions(
        session=session, records=[_square("SQ-A", 112.0), _square("SQ-B", 112.1)]
    )
    await jurisdictions.refresh_pieces(session=session)
    # adjacency of the 3 321 communes as well: past the requests' statement timeout
    await session.execute(text("SET LOCAL statement_timeout = 0"))
    await jurisdictions.derive_adjacency(
        session=session, gap_m=settings.adjacency_gap_m, corrections=[], only=["SQ-A", "SQ-B"]
    )
    ids: dict[str, list[str]] = {"SQ-A": [], "SQ-B": []}
    for side, azimuth in (("SQ-A", 270.0), ("SQ-B", 90.0)):
        for km in DISTANCES_KM:
            lon, lat, _ = GEOD.fwd(EDGE[0], EDGE[1], azimuth, km * 1000)
            row = await session.execute(
                text(
                    "INSERT INTO incident (category, severity, occurred_at, geom) VALUES"
                    " ('smuggling', 2, '2025-02-02T00:00:00Z',"
                    " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) RETURNING id::text, jurisdiction_path"
                ),
                {"lon": float(lon), "lat": float(lat)},
            )
            ident, path = row.one()
            assert path == [side]
            ids[side].append(ident)
    return ids


async def test_shared_zone_of_two_squares(
    client: httpx.AsyncClient, squares: dict[str, list[str]]
) -> None:
    r = await client.get("/jurisdictions/SQ-A/shared-zone/SQ-B", params={"km": 5})
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    body = r.json()
    line = body["shared_line"]
    assert line["properties"]["length_km"] == pytest.approx(
        GEOD.inv(112.1, 12.0, 112.1, 12.1)[2] / 1000, rel=1e-3
    )
    got = {f["id"]: f["properties"] for f in body["features"]}
    expected = {
        ident: (side, km)
        for side, idents in squares.items()
        for ident, km in zip(idents, DISTANCES_KM, strict=True)
        if km <= 5
    }
    assert set(got) == set(expected) and body["numberReturned"] == 6
    for ident, (side, km) in expected.items():
        assert got[ident]["side"] == side
        assert got[ident]["distance_to_shared_m"] == pytest.approx(km * 1000, rel=0.003)
    assert body["numberMatched"] == 6
    wider = (await client.get("/jurisdictions/SQ-B/shared-zone/SQ-A", params={"km": 10})).json()
    assert wider["numberReturned"] == 10


async def test_shared_zone_limit(client: httpx.AsyncClient, squares: dict[str, list[str]]) -> None:
    """`limit` keeps the incidents nearest the line; `numberMatched` still counts them all."""
    by_km = sorted(
        (km, ident)
        for idents in squares.values()
        for ident, km in zip(idents, DISTANCES_KM, strict=True)
    )
    url = "/jurisdictions/SQ-A/shared-zone/SQ-B"
    three = (await client.get(url, params={"km": 10, "limit": 3})).json()
    assert three["numberMatched"] == 10 and three["numberReturned"] == 3
    got = [f["id"] for f in three["features"]]
    # both incidents 1 km from the line, and one of the two 3 km from it
    assert {by_km[0][1], by_km[1][1]} <= set(got)
    assert set(got) <= {ident for km, ident in by_km if km <= 3.0}
    metres = [f["properties"]["distance_to_shared_m"] for f in three["features"]]
    assert metres == sorted(metres)
    line_only = (await client.get(url, params={"km": 10, "limit": 0})).json()
    assert line_only["features"] == [] and line_only["numberReturned"] == 0
    assert line_only["numberMatched"] == 10
    assert line_only["shared_line"]["geometry"]["type"] in ("LineString", "MultiLineString")
    roomy = (await client.get(url, params={"km": 10, "limit": 50})).json()
    assert roomy["numberMatched"] == roomy["numberReturned"] == 10
    for bad in (-1, 10_001, "x"):
        assert (await client.get(url, params={"limit": bad})).status_code == 422


async def test_cross_boundary_table(
    client: httpx.AsyncClient, session: AsyncSession, squares: dict[str, list[str]]
) -> None:
    r = await client.get("/analysis/cross-boundary", params={"level": "district", "km": 5})
    assert r.status_code == 200
    assert r.json()["pairs"] == [
        {"a": "SQ-A", "b": "SQ-B", "shared_km": pytest.approx(11.06, abs=0.05), "count": 6}
    ]
    r = await client.get("/analysis/cross-boundary", params={"level": "district", "km": 3.5})
    assert r.json()["pairs"][0]["count"] == 4
    # adjacency is per era: today's provinces pair with today's only, the former with the former
    eras = {"today": units_2025_provinces(), "2020-01-01": former_provinces()}
    for at, codes in eras.items():
        params = {} if at == "today" else {"at": at}
        provinces = (await client.get("/analysis/cross-boundary", params=params)).json()["pairs"]
        assert {p["a"] for p in provinces} | {p["b"] for p in provinces} <= codes, at
        pairs = await session.execute(
            text(
                "SELECT count(*) FROM jurisdiction_adjacency x JOIN jurisdiction a ON a.id = x.a_id"
                " JOIN jurisdiction b ON b.id = x.b_id WHERE a.level = 'province'"
                " AND a.code = ANY(:codes) AND b.code = ANY(:codes)"
            ),
            {"codes": sorted(codes)},
        )
        assert len(provinces) == pairs.scalar_one() // 2 > len(codes)
        assert all(p["count"] == 0 for p in provinces)


async def test_cross_boundary_kept_per_version(
    client: httpx.AsyncClient, session: AsyncSession, squares: dict[str, list[str]]
) -> None:
    """The table is kept per layer version and filter: the same request again is the same body
    with the same ETag (304 on If-None-Match); a new incident in the shared zone moves the
    incidents version, and the next answer counts it; another filter is another table."""
    # the incident counter moves at COMMIT, which a rolled-back test never reaches: fire the
    # same trigger at the end of each statement instead
    await session.execute(text("SET CONSTRAINTS layer_version_incidents IMMEDIATE"))
    url = "/analysis/cross-boundary"
    params: dict[str, str | float] = {"level": "district", "km": 5}
    first = await client.get(url, params=params)
    assert first.status_code == 200 and first.json()["pairs"][0]["count"] == 6
    tag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, no-cache"
    again = await client.get(url, params=params)
    assert again.content == first.content and again.headers["etag"] == tag
    same = await client.get(url, params=params, headers={"If-None-Match": tag})
    assert same.status_code == 304 and same.content == b""
    # a filter is part of the key: only the category of none of the squares' incidents
    other = await client.get(url, params=params | {"category": "fraud"})
    assert other.json()["pairs"][0]["count"] == 0 and other.headers["etag"] != tag
    # an incident 2 km east of the shared edge (in SQ-B) through the API
    lon, lat, _ = GEOD.fwd(EDGE[0], EDGE[1], 90.0, 2000)
    created = await client.post(
        "/incidents",
        json={"category": "smuggling", "severity": 2, "occurred_at": "2025-03-03T00:00:00Z",
              "location": {"type": "Point", "coordinates": [float(lon), float(lat)]}},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    after = await client.get(url, params=params, headers={"If-None-Match": tag})
    assert after.status_code == 200 and after.headers["etag"] != tag
    assert after.json()["pairs"][0]["count"] == 7
    fraud = await client.get(url, params=params | {"category": "fraud"})
    assert fraud.json()["pairs"][0]["count"] == 0
    # and a deletion takes it out again
    ident = created.json()["id"]
    await session.execute(
        text("UPDATE incident SET deleted_at = now() WHERE id = CAST(:id AS uuid)"), {"id": ident}
    )
    assert (await client.get(url, params=params)).json()["pairs"][0]["count"] == 6


async def test_province_zone_matches_table(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    # a few incidents either side of the An Giang / Dong Thap boundary
    points = ((105.45, 10.55), (105.60, 10.45), (105.435, 10.386), (105.854, 21.028))
    for lon, lat in points:
        await client.post(
            "/incidents",
            json={"category": "fraud", "severity": 1, "occurred_at": "2025-01-01T00:00:00Z",
                  "location": {"type": "Point", "coordinates": [lon, lat]}},
        )  # fmt: skip
    zone = (await client.get("/jurisdictions/VN-44/shared-zone/VN-45", params={"km": 10})).json()
    table = (
        await client.get("/analysis/cross-boundary", params={"km": 10, "at": "2024-06-01"})
    ).json()["pairs"]
    pair = next(p for p in table if (p["a"], p["b"]) == ("VN-44", "VN-45"))
    assert pair["count"] == zone["numberReturned"]
    assert sum(p["count"] for p in table) >= zone["numberReturned"]
    neighbours = (
        await client.get("/jurisdictions/VN-44/neighbours", params={"category": "fraud"})
    ).json()
    counts = {f["id"]: f["properties"]["incident_count"] for f in neighbours["features"]}
    own = await session.execute(
        text(
            # the former provinces in force on 2025-01-01, the day these incidents occurred
            "SELECT province_at_occurrence, count(*) FROM incident WHERE category = 'fraud'"
            " AND deleted_at IS NULL GROUP BY 1"
        )
    )
    direct: dict[str, int] = dict(own.all())
    assert counts == {code: direct.get(code, 0) for code in counts}


async def test_not_neighbours_and_bad_input(client: httpx.AsyncClient) -> None:
    r = await client.get("/jurisdictions/VN-HN/shared-zone/VN-SG")
    assert r.status_code == 404 and "not neighbours" in r.json()["detail"]
    assert (await client.get("/jurisdictions/VN-44/shared-zone/VN-99")).status_code == 404
    for km in (0, -1, 51, "x"):
        assert (
            await client.get("/jurisdictions/VN-44/shared-zone/VN-45", params={"km": km})
        ).status_code == 422
    assert (
        await client.get("/analysis/cross-boundary", params={"level": "galaxy"})
    ).status_code == 422


@pytest.mark.parametrize("lat", [0.0, 12.0, 23.0, 45.0, 70.0])
async def test_planar_bounds_around_the_geodesic_test(session: AsyncSession, lat: float) -> None:
    """The cross-boundary table decides most points in degrees: within inner_degrees of a line
    they are surely within the radius on the ground, beyond outer_degrees surely not. Checked
    against pyproj's geodesic distance for points all around a short line, at several
    latitudes, with the points that sit between the two bounds left to the geodesic test."""
    radius_m = 5000.0
    line = shapely.LineString([(105.0, lat), (105.03, lat + 0.02), (105.05, lat + 0.021)])
    dense = shapely.segmentize(line, 0.0002)  # ~20 m: the vertices stand in for the line
    rng = np.random.default_rng(int(lat * 10) + 1)
    xs = rng.uniform(104.85, 105.2, 1500)
    ys = rng.uniform(lat - 0.12, lat + 0.15, 1500)
    outer = select(outer_degrees(func.ST_GeomFromText(line.wkt, 4326), radius_m))
    outer_deg = float((await session.execute(outer)).scalar_one())
    inner_deg = inner_degrees(radius_m)
    assert 0 < inner_deg < outer_deg
    decided = 0
    for x, y in zip(xs, ys, strict=True):
        planar = line.distance(shapely.Point(x, y))
        if inner_deg < planar <= outer_deg:
            continue  # the geodesic test decides these
        vx, vy = shapely.get_coordinates(dense).T
        ground = float(np.min(GEOD.inv(np.full(len(vx), x), np.full(len(vx), y), vx, vy)[2]))
        assert (ground <= radius_m) == (planar <= inner_deg), (x, y, planar, ground)
        decided += 1
    if abs(lat) < 30:  # near the equator the bounds decide most points (the ring is thin)
        assert decided > 1200
