"""GET /analysis/border-zone and /analysis/border-posts against an independent classification.

The fixture points are placed at random (fixed seed) up to 70 km from the national border. The
reference takes the border lines from the bundled boundary file with shapely (the shared
boundary of Viet Nam and each neighbour) and measures geodesic distances with pyproj — to the
lines and to the border posts of geodata/border_posts.csv — never through PostGIS. Points too
close to a band edge or equidistant from two segments or two posts are not used, so the
reference's ~25 m densification error cannot flip a class.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Any

import httpx
import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from conftest import GEODATA, app_client, make_key
from geo_reference import GEOD, features, lines_only, nearest_line_km

TODAY_FORMED_FROM: dict[str, list[str]] = {
    f["properties"]["code"]: f["properties"]["formed_from"]
    for f in json.loads((GEODATA / "units_2025.geojson").read_text("utf-8"))["features"]
    if f["properties"]["level"] == "province"
}

PROBLEM = "application/problem+json"
GEOJSON = "application/geo+json"
SEGMENTS = ("VNM-CHN", "VNM-KHM", "VNM-LAO")
EDGES = (0.0, 5.0, 20.0, 50.0)
OTHER_EDGES = (0.0, 10.0, 35.0, 60.0, 200.0)
MARGIN_KM = 0.3  # from any band edge, and between the nearest and the second segment
CATEGORIES = ("smuggling", "drug_trafficking", "fraud")


@dataclass(frozen=True)
class Point:
    lon: float
    lat: float
    category: str
    home: bool  # inside Viet Nam
    segment: str | None  # nearest border segment (home points)
    km: float | None  # distance to it
    post: str | None  # nearest border post (home points)


def _countries() -> dict[str, Any]:
    feats = features(GEODATA / "jurisdictions.geojson")
    return {c: feats[c][1] for c in ("VNM", "LAO", "KHM", "CHN", "THA")}


@lru_cache
def border_lines() -> dict[str, Any]:
    """Segment code -> the shared boundary of Viet Nam and the neighbour (shapely)."""
    c = _countries()
    return {
        f"VNM-{o}": lines_only(c["VNM"].boundary.intersection(c[o].boundary))
        for o in ("CHN", "KHM", "LAO")
    }


@lru_cache
def posts() -> dict[str, tuple[float, float]]:
    with (GEODATA / "border_posts.csv").open(newline="", encoding="utf-8") as fh:
        return {r["code"]: (float(r["lon"]), float(r["lat"])) for r in csv.DictReader(fh)}


def _nearest_posts(lon: float, lat: float) -> list[tuple[float, str]]:
    codes = sorted(posts())
    xs = [posts()[c][0] for c in codes]
    ys = [posts()[c][1] for c in codes]
    _, _, d = GEOD.inv([lon] * len(codes), [lat] * len(codes), xs, ys)
    return sorted((float(m) / 1000, c) for m, c in zip(d, codes, strict=True))


@lru_cache
def fixture_points() -> tuple[Point, ...]:
    """60 points on the Vietnamese side within 70 km of the border, two abroad, one far inland."""
    rng = random.Random(20250505)
    countries = _countries()
    vnm = countries["VNM"]
    lines = border_lines()
    out: list[Point] = []
    for code in SEGMENTS:
        coords = shapely.get_coordinates(lines[code])
        kept = 0
        while kept < 20:
            x, y = coords[rng.randrange(len(coords))]
            lon, lat, _ = GEOD.fwd(x, y, rng.uniform(0, 360), rng.uniform(200, 70_000))
            p = shapely.Point(lon, lat)
            if not vnm.contains(p) or any(
                countries[o].contains(p) for o in countries if o != "VNM"
            ):
                continue
            dist = sorted((nearest_line_km(lon, lat, lines[s], 0.0005), s) for s in SEGMENTS)
            km, seg = dist[0]
            if (
                dist[1][0] - km < MARGIN_KM
                or min(abs(km - e) for e in EDGES + OTHER_EDGES) < MARGIN_KM
            ):
                continue
            near = _nearest_posts(lon, lat)
            if near[1][0] - near[0][0] < 0.05:
                continue
            category = CATEGORIES[len(out) % len(CATEGORIES)]
            out.append(Point(round(lon, 6), round(lat, 6), category, True, seg, km, near[0][1]))
            kept += 1
    # abroad (counted in the total, never in a band or a post's area) and far inland
    for lon, lat in ((102.9, 20.4), (105.3, 11.3)):
        assert countries["LAO"].contains(shapely.Point(lon, lat)) or countries["KHM"].contains(
            shapely.Point(lon, lat)
        )
        out.append(Point(lon, lat, "smuggling", False, None, None, None))
    hanoi = sorted((nearest_line_km(105.854, 21.028, lines[s], 0.0005), s) for s in SEGMENTS)
    km, seg = hanoi[0]
    assert 60.3 < km < 199.7 and hanoi[1][0] - km > MARGIN_KM
    assert vnm.contains(shapely.Point(105.854, 21.028))
    near = _nearest_posts(105.854, 21.028)
    # Ha Noi: beyond the default bands and every post's zone, in the 60-200 km band
    out.append(Point(105.854, 21.028, "fraud", True, seg, km, near[0][1]))
    return tuple(out)


async def _insert(session: AsyncSession, points: tuple[Point, ...] | list[Point]) -> None:
    await session.execute(
        text(
            "INSERT INTO incident (category, severity, occurred_at, geom)"
            " VALUES (:category, 3, timestamptz '2025-03-03 03:00+07',"
            " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"
        ),
        [{"category": p.category, "lon": p.lon, "lat": p.lat} for p in points],
    )


def _band(km: float, edges: tuple[float, ...]) -> int | None:
    for k in range(1, len(edges)):
        if edges[k - 1] <= km < edges[k]:
            return k
    return None


async def _zone(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get("/analysis/border-zone", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == GEOJSON
    body: dict[str, Any] = r.json()
    assert body["type"] == "FeatureCollection"
    return body


async def test_band_counts_match_independent_distances(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    points = fixture_points()
    await _insert(session, points)
    total = len(points)
    for edges in (EDGES, OTHER_EDGES):
        expected: Counter[tuple[str, int]] = Counter()
        for p in points:
            if p.home and p.segment is not None and p.km is not None:
                k = _band(p.km, edges)
                if k is not None:
                    if min(abs(p.km - e) for e in edges) < MARGIN_KM:
                        pytest.fail(f"fixture point {p} sits on a band edge of {edges}")
                    expected[(p.segment, k)] += 1
        body = await _zone(client, bands=",".join(f"{e:g}" for e in edges))
        assert body["total"] == total and body["bands"] == list(edges)
        assert body["segment"] == "all" and body["home_country"] == "VNM"
        got = [
            (
                f["id"],
                f["properties"]["segment"],
                f["properties"]["from_km"],
                f["properties"]["to_km"],
            )
            for f in body["features"]
        ]
        assert got == [
            (f"{s}:{edges[k - 1]:g}-{edges[k]:g}", s, edges[k - 1], edges[k])
            for s in SEGMENTS
            for k in range(1, len(edges))
        ]
        for f in body["features"]:
            s, k = f["properties"]["segment"], edges.index(f["properties"]["from_km"]) + 1
            assert f["properties"]["count"] == expected[(s, k)], (s, k, edges)
            assert f["properties"]["share"] == expected[(s, k)] / total
        if edges == EDGES:  # the fixture populates every default band
            assert all(expected[(s, k)] > 0 for s in SEGMENTS for k in (1, 2, 3))
    # one segment, and the shared filters
    lao = await _zone(client, segment="VNM-LAO", category="fraud")
    fraud = [p for p in points if p.category == "fraud"]
    assert lao["total"] == len(fraud)
    expected_lao = [
        sum(
            1
            for p in fraud
            if p.segment == "VNM-LAO" and p.km is not None and _band(p.km, EDGES) == k
        )
        for k in (1, 2, 3)
    ]
    assert sum(expected_lao) > 0  # the filters are tested on data they keep
    assert [f["properties"]["count"] for f in lao["features"]] == expected_lao


async def test_band_polygons(client: httpx.AsyncClient, session: AsyncSession) -> None:
    points = fixture_points()
    await _insert(session, points)
    body = await _zone(client)
    vnm = _countries()["VNM"]
    near_vnm = vnm.buffer(0.0005)  # ~50 m: the 6-decimal rounding of the output
    polygons: dict[tuple[str, int], Any] = {}
    for f in body["features"]:
        geom = shape(f["geometry"])
        assert f["geometry"]["type"] == "MultiPolygon"
        assert geom.is_valid and not geom.is_empty, f["id"]
        assert near_vnm.covers(geom), f["id"]
        k = EDGES.index(f["properties"]["from_km"]) + 1
        polygons[(f["properties"]["segment"], k)] = geom
    for s in SEGMENTS:
        for a, b in combinations((1, 2, 3), 2):
            overlap = polygons[(s, a)].intersection(polygons[(s, b)]).area
            assert overlap < 1e-7 * polygons[(s, a)].area, (s, a, b, overlap)
    # every point lies in the band polygon of its nearest segment and distance (the buffers
    # are metric: a buffer in degrees would misplace points by kilometres)
    for p in points:
        if p.segment is not None and p.km is not None and (band := _band(p.km, EDGES)):
            assert polygons[(p.segment, band)].contains(shapely.Point(p.lon, p.lat)), p
    # the 0-5 km band is about 5 km deep: its area is close to 5 km x the border's length
    lengths = {s: GEOD.geometry_length(line) / 1000 for s, line in border_lines().items()}
    for s in SEGMENTS:
        area_km2 = abs(GEOD.geometry_area_perimeter(polygons[(s, 1)])[0]) / 1e6
        assert 0.85 * 5 * lengths[s] < area_km2 < 1.0 * 5 * lengths[s], (s, area_km2)
    simplified = await _zone(client, simplify=500)
    assert [f["properties"] for f in simplified["features"]] == [
        f["properties"] for f in body["features"]
    ]
    assert len(str(simplified["features"])) < len(str(body["features"]))


async def test_border_posts_match_brute_force(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    points = fixture_points()
    await _insert(session, points)
    for zone_km in (50.0, 20.0):
        expected: dict[str, Counter[str]] = {c: Counter() for c in posts()}
        for p in points:
            if p.home and p.km is not None and p.km <= zone_km and p.post is not None:
                expected[p.post][p.category] += 1
        r = await client.get("/analysis/border-posts", params={"zone_km": zone_km})
        assert r.status_code == 200 and r.headers["content-type"] == GEOJSON
        feats = r.json()["features"]
        got = {f["id"]: (f["properties"]["count"], f["properties"]["by_category"]) for f in feats}
        assert got == {c: (sum(n.values()), dict(n)) for c, n in expected.items()}
        assert sum(n for n, _ in got.values()) > 10
        for f in feats:
            assert f["geometry"] == {"type": "Point", "coordinates": list(posts()[f["id"]])}
            assert f["properties"]["code"] == f["id"] and f["properties"]["border"] in SEGMENTS
            # today's province: the 2025 province formed from the one recorded with the post
            assert (
                f["properties"]["province_code"] in TODAY_FORMED_FROM[f["properties"]["province"]]
            )
        order = [(-f["properties"]["count"], f["id"]) for f in feats]
        assert order == sorted(order)
    # zone_km = 0 leaves nothing; the shared filters apply
    r = await client.get("/analysis/border-posts", params={"zone_km": 0})
    assert all(f["properties"]["count"] == 0 for f in r.json()["features"])
    r = await client.get("/analysis/border-posts", params={"category": "fraud"})
    total = sum(f["properties"]["count"] for f in r.json()["features"])
    expected_fraud = sum(
        1 for p in points if p.category == "fraud" and p.post and p.km is not None and p.km <= 50
    )
    assert expected_fraud > 0 and total == expected_fraud


async def test_scope(
    client: httpx.AsyncClient, engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    an_giang = features(GEODATA / "jurisdictions.geojson")["VN-44"][1]
    inside = [
        Point(105.160, 10.880, "smuggling", True, None, None, None),
        Point(105.05, 10.62, "fraud", True, None, None, None),
    ]
    elsewhere = [
        Point(103.970, 22.500, "weapons", True, None, None, None),
        Point(106.600, 16.620, "fraud", True, None, None, None),
    ]
    assert all(an_giang.contains(shapely.Point(p.lon, p.lat)) for p in inside)
    khm = border_lines()["VNM-KHM"]
    kms = [nearest_line_km(p.lon, p.lat, khm, 0.0005) for p in inside]
    assert 0.3 < kms[0] < 4.7 and 5.3 < kms[1] < 19.7, kms  # bands 0-5 and 5-20 of VNM-KHM
    await _insert(session, inside + elsewhere)
    key = await make_key(session, "viewer", "VN-44")
    async with app_client(engine, session, settings, key) as viewer:
        body = await _zone(viewer)
        assert body["scope"] == "VN-44" and body["total"] == 2
        counts = {f["id"]: f["properties"]["count"] for f in body["features"]}
        assert counts == {
            f"{s}:{a:g}-{b:g}": 0 for s in SEGMENTS for a, b in ((0, 5), (5, 20), (20, 50))
        } | {"VNM-KHM:0-5": 1, "VNM-KHM:5-20": 1}
        r = await viewer.get("/analysis/border-posts")
        assert r.status_code == 200
        assert sum(f["properties"]["count"] for f in r.json()["features"]) == 2
    national = await _zone(client)
    assert national["total"] == 4 and national["scope"] is None
    async with app_client(engine, session, settings, None) as anonymous:
        assert (await anonymous.get("/analysis/border-zone")).status_code == 401
        assert (await anonymous.get("/analysis/border-posts")).status_code == 401


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/analysis/border-zone", {"bands": "0,20,5"}, "bands"),
        ("/analysis/border-zone", {"bands": "0,5,5"}, "bands"),
        ("/analysis/border-zone", {"bands": "5,20,50"}, "bands"),
        ("/analysis/border-zone", {"bands": "0"}, "bands"),
        ("/analysis/border-zone", {"bands": "0,1,2,3,4,5,6,7,8,9,10"}, "bands"),
        ("/analysis/border-zone", {"bands": "0,50,250"}, "bands"),
        ("/analysis/border-zone", {"bands": "0,-5"}, "bands"),
        ("/analysis/border-zone", {"bands": "0,five"}, "bands"),
        ("/analysis/border-zone", {"bands": "0,nan"}, "bands"),
        ("/analysis/border-zone", {"segment": "VNM-THA"}, "segment"),
        ("/analysis/border-zone", {"segment": "VNM LAO"}, None),
        ("/analysis/border-posts", {"zone_km": "-1"}, None),
        ("/analysis/border-posts", {"zone_km": "500"}, None),
        ("/analysis/border-posts", {"datetime": "2025-13-01T00:00:00Z"}, "datetime"),
    ],
)
async def test_bad_inputs(
    client: httpx.AsyncClient, path: str, params: dict[str, str], field: str | None
) -> None:
    r = await client.get(path, params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    if field is not None:
        assert body["field"] == field
    if field == "segment":
        assert body["allowed"] == [*SEGMENTS, "all"]
        assert "VNM-LAO" in body["detail"]
