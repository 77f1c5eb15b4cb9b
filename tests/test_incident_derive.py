"""The database derives jurisdiction, border distance and nearest post on every incident write;
each value is checked against shapely / pyproj computed from the bundled files."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
import shapely
from shapely import STRtree
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from conftest import GEODATA
from geo_reference import GEOD, features, lines_only, nearest_line_km

# `province` here is the province in force on AT (one of the 63 of geodata/jurisdictions.geojson),
# `path` the units of that era (the country and that province): the 2025 units are checked by
# _today (and by test_two_eras.py)
INSERT = text(
    """
    INSERT INTO incident (category, severity, occurred_at, geom)
    VALUES ('smuggling', 3, :at, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
    RETURNING country_code, province_at_occurrence,
              ARRAY(SELECT c FROM unnest(jurisdiction_path) c WHERE c !~ '^VN-[PC][0-9]'),
              jurisdiction_method, border_segment, border_distance_km,
              (SELECT code FROM border_post WHERE id = nearest_post_id), nearest_post_km,
              province_code, commune_code
    """
)
AT = datetime(2024, 5, 1, tzinfo=UTC)
LAST_INSERT: dict[str, object] = {}


async def _insert(session: AsyncSession, lon: float, lat: float) -> tuple[Any, ...]:
    row = (await session.execute(INSERT, {"lon": lon, "lat": lat, "at": AT})).one()
    LAST_INSERT.update(province=row[8], commune=row[9])
    path = row[2] or None  # no unit at all: NULL, as the column holds it
    return (row[0], row[1], path, *row[3:8])


@cache
def _communes_2025() -> tuple[STRtree, list[tuple[str, str, BaseGeometry]]]:
    fc = json.loads((GEODATA / "units_2025.geojson").read_text("utf-8"))
    communes: list[tuple[str, str, BaseGeometry]] = [
        (f["properties"]["code"], f["properties"]["parent_code"], shape(f["geometry"]))
        for f in fc["features"]
        if f["properties"]["level"] == "commune"
    ]
    return STRtree([g for *_, g in communes]), communes


def _today(lon: float, lat: float) -> tuple[str, str] | None:
    """Today's province and commune that hold the point, by shapely (None: on a boundary or
    in none)."""
    tree, communes = _communes_2025()
    point = shapely.Point(lon, lat)
    hits = [communes[i] for i in tree.query(point) if communes[i][2].contains(point)]
    return (hits[0][1], hits[0][0]) if len(hits) == 1 else None


def _border_lines() -> dict[str, object]:
    feats = features(GEODATA / "jurisdictions.geojson")
    vn = feats["VNM"][1]
    return {
        f"VNM-{c}": lines_only(vn.boundary.intersection(feats[c][1].boundary))
        for c in ("CHN", "LAO", "KHM")
    }


async def _posts(session: AsyncSession) -> list[tuple[str, float, float]]:
    rows = await session.execute(text("SELECT code, ST_X(geom), ST_Y(geom) FROM border_post"))
    return [tuple(r) for r in rows.all()]


async def test_point_in_a_province(session: AsyncSession) -> None:
    # Long Xuyen, An Giang
    country, province, path, method, segment, border_km, post, post_km = await _insert(
        session, 105.435, 10.386
    )
    assert (country, province, path, method) == ("VNM", "VN-44", ["VNM", "VN-44"], "contains")
    lines = _border_lines()
    expected = {code: nearest_line_km(105.435, 10.386, line) for code, line in lines.items()}
    assert segment == min(expected, key=lambda k: expected[k])
    assert border_km == pytest.approx(expected[segment], abs=0.12)
    posts = await _posts(session)
    _, _, dist = GEOD.inv(
        [105.435] * len(posts), [10.386] * len(posts), [p[1] for p in posts], [p[2] for p in posts]
    )
    best = min(range(len(posts)), key=lambda i: dist[i])
    assert post == posts[best][0]
    assert post_km == pytest.approx(dist[best] / 1000, abs=0.001)


async def test_random_points_match_shapely_containment(session: AsyncSession) -> None:
    feats = features(GEODATA / "jurisdictions.geojson")
    provinces = {c: g for c, (lvl, g) in feats.items() if lvl == "province"}
    for g in provinces.values():
        shapely.prepare(g)
    rng = random.Random(42)
    checked = 0
    while checked < 150:
        lon, lat = rng.uniform(102.2, 109.4), rng.uniform(8.6, 23.3)
        inside = [c for c, g in provinces.items() if g.contains(shapely.Point(lon, lat))]
        if len(inside) != 1:
            continue
        today = _today(lon, lat)
        if today is None:
            continue
        _, province, path, method, *_ = await _insert(session, lon, lat)
        assert (province, path, method) == (inside[0], ["VNM", inside[0]], "contains")
        assert (LAST_INSERT["province"], LAST_INSERT["commune"]) == today, (lon, lat)
        checked += 1


async def test_point_in_a_neighbouring_country(session: AsyncSession) -> None:
    # Vientiane: in Laos, no Vietnamese province
    country, province, path, method, segment, border_km, *_ = await _insert(session, 102.6, 17.97)
    assert (country, province, path, method) == ("LAO", None, ["LAO"], "contains")
    assert segment == "VNM-LAO"
    expected = nearest_line_km(102.6, 17.97, _border_lines()["VNM-LAO"])
    assert border_km == pytest.approx(expected, abs=0.12)


async def test_offshore_takes_the_nearest_province(session: AsyncSession) -> None:
    feats = features(GEODATA / "jurisdictions.geojson")
    lon, lat = 109.30, 12.25  # off Nha Trang
    point = shapely.Point(lon, lat)
    assert not any(g.contains(point) for _, g in feats.values())
    provinces = {c: g for c, (lvl, g) in feats.items() if lvl == "province"}
    nearest = min(provinces, key=lambda c: provinces[c].distance(point))
    country, province, path, method, *_ = await _insert(session, lon, lat)
    assert (country, province, path, method) == ("VNM", nearest, ["VNM", nearest], "nearest")
    assert nearest == "VN-34"  # Khanh Hoa
    # today: the 2025 province that holds the former one, and its nearest commune (geodesic)
    tree, communes = _communes_2025()
    near = [communes[i] for i in tree.query(point.buffer(0.5))]
    closest = min(near, key=lambda c: nearest_line_km(lon, lat, c[2].boundary, 0.001))
    assert (LAST_INSERT["province"], LAST_INSERT["commune"]) == (closest[1], closest[0])


async def test_far_at_sea_has_no_jurisdiction(session: AsyncSession) -> None:
    country, province, path, method, segment, border_km, *_ = await _insert(session, 112.0, 12.0)
    assert (country, province, path, method) == (None, None, None, None)
    assert segment is not None and border_km > 300


async def test_hoang_sa_and_truong_sa_are_vietnams(session: AsyncSession) -> None:
    """Vietnam's point of view (geodata/README.md): Phú Lâm island (Woody Island) in Hoàng Sa
    lies in Đà Nẵng, not in China; a point beside Trường Sa Lớn takes Khánh Hòa, the
    province that administers Trường Sa (checked against the bundled file with shapely)."""
    feats = features(GEODATA / "jurisdictions.geojson")
    woody, spratly = shapely.Point(112.33, 16.83), shapely.Point(111.92, 8.64)
    assert feats["VN-DN"][1].contains(woody) and not feats["CHN"][1].contains(woody)
    country, province, path, method, *_ = await _insert(session, woody.x, woody.y)
    assert (country, province, path, method) == ("VNM", "VN-DN", ["VNM", "VN-DN"], "contains")
    assert LAST_INSERT["province"] == "VN-P48"  # Đà Nẵng (2025), test_two_eras checks by name
    provinces = {c: g for c, (lvl, g) in feats.items() if lvl == "province"}
    nearest = min(provinces, key=lambda c: provinces[c].distance(spratly))
    assert nearest == "VN-34" and provinces[nearest].distance(spratly) < 0.01  # ~1 km off
    country, province, path, method, *_ = await _insert(session, spratly.x, spratly.y)
    assert (country, province, path, method) == ("VNM", "VN-34", ["VNM", "VN-34"], "nearest")


async def test_moving_an_incident_rederives(session: AsyncSession) -> None:
    row = (
        await session.execute(
            text(
                "INSERT INTO incident (category, severity, occurred_at, geom) VALUES"
                " ('fraud', 2, now(), ST_SetSRID(ST_MakePoint(105.854, 21.028), 4326))"
                " RETURNING id, province_code, commune_code"
            )
        )
    ).one()
    assert (row.province_code, row.commune_code) == _today(105.854, 21.028)
    moved = await session.execute(
        text(
            "UPDATE incident SET geom = ST_SetSRID(ST_MakePoint(106.700, 10.776), 4326),"
            " occurred_at = '2024-01-02T03:00:00Z'"
            " WHERE id = :id RETURNING province_code, commune_code, province_at_occurrence"
        ),
        {"id": row.id},
    )
    today = _today(106.700, 10.776)
    assert today is not None
    assert tuple(moved.one()) == (*today, "VN-SG")


async def test_random_points_border_and_post_distances(session: AsyncSession) -> None:
    """Distances for points all over Vietnam agree with pyproj (densified lines / all posts)."""
    feats = features(GEODATA / "jurisdictions.geojson")
    vietnam = feats["VNM"][1]
    shapely.prepare(vietnam)
    lines = _border_lines()
    posts = await _posts(session)
    rng = random.Random(7)
    checked = 0
    while checked < 60:
        lon, lat = rng.uniform(102.2, 109.4), rng.uniform(8.6, 23.3)
        if not vietnam.contains(shapely.Point(lon, lat)):
            continue
        *_, segment, border_km, post, post_km = await _insert(session, lon, lat)
        expected = {code: nearest_line_km(lon, lat, line) for code, line in lines.items()}
        best = min(expected, key=lambda k: expected[k])
        assert border_km == pytest.approx(expected[best], rel=0.003, abs=0.12), (lon, lat)
        if abs(expected[best] - sorted(expected.values())[1]) > 1:
            assert segment == best, (lon, lat)
        _, _, dist = GEOD.inv(
            [lon] * len(posts), [lat] * len(posts), [p[1] for p in posts], [p[2] for p in posts]
        )
        i = min(range(len(posts)), key=lambda k: dist[k])
        assert post == posts[i][0], (lon, lat)
        assert post_km == pytest.approx(dist[i] / 1000, abs=0.001)
        checked += 1


async def test_offshore_prefilter_never_drops_a_piece_within_reach(session: AsyncSession) -> None:
    """incident_surely_beyond (bounding boxes only, widened for great-circle edges) is only
    ever true for a polygon farther than the distance on the spheroid, PostGIS's own measure:
    wide boxes at high latitudes, where edges bulge most, and the real province pieces."""
    rng = random.Random(16)
    cases = []
    for _ in range(400):
        lat = rng.uniform(-85, 85)
        west, width = rng.uniform(-179, 170), rng.choice([0.2, 2, 10, 40, 120])
        east = min(west + width, 179.9)
        height = rng.uniform(0.01, 3)
        south, north = max(lat - height, -89.9), min(lat + height, 89.9)
        px = rng.uniform(west - 2, east + 2)
        py = rng.choice([north, south]) + rng.uniform(-0.6, 0.6)
        metres = rng.choice([500.0, 22_224.0, 150_000.0])
        cases.append((west, south, east, north, max(-179.9, min(179.9, px)),
                      max(-89.9, min(89.9, py)), metres))  # fmt: skip
    rows = (
        await session.execute(
            text(
                "SELECT incident_surely_beyond(g, pt, m), ST_Distance(g::geography, pt::geography)"
                " FROM unnest(CAST(:w AS float8[]), CAST(:s AS float8[]), CAST(:e AS float8[]),"
                "             CAST(:n AS float8[]), CAST(:x AS float8[]), CAST(:y AS float8[]),"
                "             CAST(:m AS float8[])) AS c(w, s, e, n, x, y, m),"
                " LATERAL (SELECT ST_MakeEnvelope(c.w, c.s, c.e, c.n, 4326) AS g,"
                "                 ST_SetSRID(ST_MakePoint(c.x, c.y), 4326) AS pt) v"
            ),
            {k: [c[i] for c in cases] for i, k in enumerate("wsenxym")},
        )
    ).all()
    beyond = [
        (surely, metres_apart, c) for (surely, metres_apart), c in zip(rows, cases, strict=True)
    ]
    assert all(apart > c[6] for surely, apart, c in beyond if surely)
    assert 50 < sum(1 for surely, *_ in beyond if surely) < len(cases) - 50  # both outcomes
    real = (
        await session.execute(
            text(
                "SELECT count(*) FILTER (WHERE incident_surely_beyond(p.geom, x.pt, 22224)"
                "                          AND ST_DWithin(p.geom::geography, x.pt::geography,"
                "                                         22224)),"
                "       count(*) FILTER (WHERE incident_surely_beyond(p.geom, x.pt, 22224))"
                "  FROM jurisdiction_piece p,"
                "       LATERAL (SELECT ST_SetSRID(ST_MakePoint(ST_X(c) + dx, ST_Y(c) + dy), 4326)"
                "                   AS pt"
                "                  FROM (SELECT ST_PointOnSurface(p.geom) AS c) s,"
                "                       (VALUES (0.15, 0.0), (-0.2, 0.1), (0.0, -0.25), (0.5, 0.5))"
                "                           d(dx, dy)) x"
                " WHERE p.level = 'province'"
            )
        )
    ).one()
    assert real[0] == 0 and real[1] > 0


async def test_sea_search_answers_what_the_previous_version_did(session: AsyncSession) -> None:
    """incident_derive_v6.sql only searches less at sea than v5 (migration 0012 derives nothing
    again): v5's incident_sea, loaded as a temporary function from its frozen file, answers
    exactly what today's does at every uncovered point of a 0.25° grid over the region (off
    Vietnam, China, Cambodia and Thailand, near land and far from it) and near the coast."""
    from app import sqlfiles

    (v5,) = [
        s
        for s in sqlfiles.statements("incident_derive_v5.sql")
        if "CREATE OR REPLACE FUNCTION incident_sea(" in s
    ]
    await session.execute(
        text(v5.replace("FUNCTION incident_sea(", "FUNCTION pg_temp.incident_sea_v5(", 1))
    )
    rng = random.Random(12)
    coast = (
        await session.execute(
            text(
                "SELECT ST_X(d.geom), ST_Y(d.geom) FROM jurisdiction j, ST_DumpPoints(j.geom) d"
                " WHERE j.level = 'country' AND j.code IN ('VNM', 'CHN', 'KHM', 'THA')"
                "   AND ST_X(d.geom) BETWEEN 100 AND 115 AND ST_Y(d.geom) BETWEEN 6 AND 24"
            )
        )
    ).all()
    xs = [102 + 0.25 * i for i in range(41)]
    ys = [7 + 0.25 * j for j in range(69)]
    points = [(x, y) for x in xs for y in ys]
    points += [
        (float(x) + rng.uniform(-0.3, 0.3), float(y) + rng.uniform(-0.3, 0.3))
        for x, y in rng.sample(coast, 600)
    ]
    rows = (
        await session.execute(
            text(
                "SELECT x, y, n.piece_ids, n.offshore_m, n.maritime_zone,"
                "       o.piece_ids, o.offshore_m, o.maritime_zone"
                "  FROM unnest(CAST(:x AS float8[]), CAST(:y AS float8[])) AS u(x, y)"
                "  CROSS JOIN LATERAL (SELECT ST_SetSRID(ST_MakePoint(x, y), 4326) AS pt) p"
                "  LEFT JOIN LATERAL incident_sea(p.pt) n ON true"
                "  LEFT JOIN LATERAL pg_temp.incident_sea_v5(p.pt) o ON true"
                " WHERE cardinality(incident_covering(p.pt)) = 0"
            ),
            {"x": [p[0] for p in points], "y": [p[1] for p in points]},
        )
    ).all()
    differ = [r for r in rows if tuple(r[2:5]) != tuple(r[5:8])]
    assert differ == []
    near = [r for r in rows if r[3] is not None]
    by_country = {
        code
        for (code,) in (
            await session.execute(
                text("SELECT DISTINCT country FROM jurisdiction_piece WHERE id = ANY(:ids)"),
                {"ids": [r[2][0] for r in near]},
            )
        ).all()
    }
    # at sea near each of the four countries, and far from any land (no answer)
    assert {"VNM", "CHN", "KHM", "THA"} <= by_country
    assert len(near) > 300 and len(rows) - len(near) > 300
