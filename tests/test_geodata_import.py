"""Operators' own boundaries: field mapping, repair of invalid geometries, re-derivation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
import shapely
from shapely.geometry import Polygon
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import InvalidInput
from app.geodata import load as geodata
from conftest import GEODATA
from geo_reference import features


def _districts(tmp_path: Path, suffix: str) -> Path:
    # Two "districts" inside An Giang; the second is a bow-tie (self-intersecting) ring.
    square = Polygon([(105.30, 10.30), (105.50, 10.30), (105.50, 10.50), (105.30, 10.50)])
    bowtie = Polygon([(105.05, 10.55), (105.25, 10.75), (105.25, 10.55), (105.05, 10.75)])
    frame = gpd.GeoDataFrame(
        {
            "MA_HUYEN": ["VN-44-LX", "VN-44-BT"],
            "TEN": ["Long Xuyen", "Bowtie district"],
            "TEN_VI": ["Long Xuyên", "Huyện nơ"],
        },
        geometry=[square, bowtie],
        crs="EPSG:4326",
    )
    path = tmp_path / f"districts.{suffix}"
    frame.to_file(path, driver="GPKG" if suffix == "gpkg" else "GeoJSON")
    return path


FIELDS = geodata.FieldMap(
    code="MA_HUYEN", name="TEN", name_local="TEN_VI", level=None, parent_code=None, country=None
)


@pytest.mark.parametrize("suffix", ["gpkg", "geojson"])
async def test_load_with_mapping_and_repair(
    session: AsyncSession, settings: Settings, tmp_path: Path, suffix: str
) -> None:
    incident = await session.execute(
        text(
            "INSERT INTO incident (category, severity, occurred_at, geom) VALUES"
            " ('smuggling', 2, now(), ST_SetSRID(ST_MakePoint(105.40, 10.40), 4326)) RETURNING id"
        )
    )
    incident_id = incident.scalar_one()
    report = await geodata.load_file(
        session=session,
        settings=settings,
        path=_districts(tmp_path, suffix),
        fields=FIELDS,
        level="district",
        country="VNM",
        parent_code="VN-44",
        source="test districts",
        actor="cli:tester",
    )
    assert report.jurisdictions == 2
    # the load records itself in the audit log, whoever calls it
    audit = await session.execute(
        text(
            "SELECT actor, entity_type, entity_id, after->>'jurisdictions' FROM audit_event"
            " WHERE action = 'geodata_load' AND entity_id LIKE '%districts%'"
        )
    )
    assert [tuple(r) for r in audit] == [
        ("cli:tester", "geodata", str(tmp_path / f"districts.{suffix}"), "2")
    ]
    assert len(report.repaired) == 1 and "VN-44-BT" in report.repaired[0]
    assert "Self-intersection" in report.repaired[0]
    rows = (
        await session.execute(
            text(
                "SELECT code, name_local, level, parent_code, ST_IsValid(geom),"
                " round(ST_Area(geom::geography) / 1e6)"
                " FROM jurisdiction WHERE level = 'district' ORDER BY code"
            )
        )
    ).all()
    assert [r[:5] for r in rows] == [
        ("VN-44-BT", "Huyện nơ", "district", "VN-44", True),
        ("VN-44-LX", "Long Xuyên", "district", "VN-44", True),
    ]
    path = await session.execute(
        text("SELECT jurisdiction_path FROM incident WHERE id = :id"), {"id": incident_id}
    )
    # every unit of every era that holds it, widest level first, older before newer: the
    # district (no dates: always in force) sits between the provinces and today's commune
    point = shapely.Point(105.40, 10.40)
    holding = {
        name: sorted(
            (level, code)
            for code, (level, geom) in features(GEODATA / name).items()
            if geom.covers(point)
        )
        for name in ("jurisdictions.geojson", "units_2025.geojson")
    }
    assert holding["jurisdictions.geojson"] == [("country", "VNM"), ("province", "VN-44")]
    (_, today_commune), (_, today_province) = holding["units_2025.geojson"]
    assert today_province == "VN-P91"  # An Giang since 2025-07-01
    assert path.scalar_one() == ["VNM", "VN-44", today_province, "VN-44-LX", today_commune]
    assert report.incidents_rederived >= 1


async def test_missing_field_is_a_clear_error(tmp_path: Path) -> None:
    path = _districts(tmp_path, "geojson")
    with pytest.raises(InvalidInput, match="no attribute 'code'"):
        geodata.read_boundaries(path, geodata.FieldMap(), level="district", country="VNM")
    with pytest.raises(InvalidInput, match="not found"):
        geodata.read_boundaries(tmp_path / "nope.gpkg")
    with pytest.raises(InvalidInput, match="level"):
        geodata.read_boundaries(path, FIELDS, level=None, country="VNM")


def _official_communes(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """An agency's file of two An Giang communes (Phường Hà Tiên and its neighbour to the
    east, as the bundled approximations have them) with official polygons: here the two
    approximate polygons with their shared edge moved 2 km east, so a point just east of the
    old edge changes commune; the codes as a spreadsheet writes them (integers), plus a code
    that names no unit."""
    import json

    fc = json.loads((GEODATA / "units_2025.geojson").read_text("utf-8"))
    communes = {
        f["properties"]["code"]: f for f in fc["features"] if f["properties"]["level"] == "commune"
    }
    ha_tien = communes["VN-C30769"]
    a = shapely.geometry.shape(ha_tien["geometry"])
    neighbours = [
        f
        for f in communes.values()
        if f["properties"]["parent_code"] == "VN-P91"
        and f["properties"]["code"] != "VN-C30769"
        and shapely.geometry.shape(f["geometry"]).intersection(a.boundary).length > 0.01
    ]
    b_feature = max(
        neighbours,
        key=lambda f: shapely.geometry.shape(f["geometry"]).intersection(a.boundary).length,
    )
    b = shapely.geometry.shape(b_feature["geometry"])
    edge = a.boundary.intersection(b.boundary)
    probe = edge.interpolate(0.5, normalized=True)  # a point on the old shared edge
    inside_b = shapely.Point(probe.x, probe.y).buffer(0.01).intersection(b)
    point = inside_b.representative_point()  # inside B, near the old edge
    grow = point.buffer(0.005)  # the official A takes this bit of B
    official_a, official_b = a.union(grow.intersection(b)), b.difference(grow)
    frame = gpd.GeoDataFrame(
        {"MA_XA": [30769, int(b_feature["properties"]["official_code"]), 99999]},
        geometry=[official_a, official_b, shapely.box(0, 0, 0.1, 0.1)],
        crs="EPSG:4326",
    )
    path = tmp_path / "xa.gpkg"
    frame.to_file(path, driver="GPKG")
    return path, {
        "a": "VN-C30769",
        "b": b_feature["properties"]["code"],
        "point": point,
        "official_a": official_a,
    }


async def test_official_commune_polygons_replace_the_approximations(
    session: AsyncSession, settings: Settings, tmp_path: Path
) -> None:
    path, case = _official_communes(tmp_path)
    point = case["point"]
    incident = await session.execute(
        text(
            "INSERT INTO incident (category, severity, occurred_at, geom) VALUES"
            " ('smuggling', 2, now(), ST_SetSRID(ST_MakePoint(:x, :y), 4326))"
            " RETURNING id, commune_code"
        ),
        {"x": point.x, "y": point.y},
    )
    incident_id, before = incident.one()
    assert before == case["b"]
    report = await geodata.load_official(
        session=session, settings=settings, path=path, level="commune", official_field="MA_XA"
    )
    assert report.jurisdictions == 2
    assert any("99999" in line and "no commune" in line for line in report.skipped)
    rows = await session.execute(
        text(
            "SELECT code, geometry_approximate, ST_Area(geom), name_local FROM jurisdiction"
            " WHERE code IN (:a, :b) ORDER BY code = :a DESC"
        ),
        {"a": case["a"], "b": case["b"]},
    )
    (a_code, a_approx, a_area, a_name), (_, b_approx, _, _) = rows.all()
    assert (a_code, a_approx, b_approx, a_name) == (case["a"], False, False, "Phường Hà Tiên")
    assert a_area == pytest.approx(case["official_a"].area, rel=1e-6)
    after = await session.execute(
        text("SELECT commune_code FROM incident WHERE id = :id"), {"id": incident_id}
    )
    assert after.scalar_one() == case["a"]  # re-derived into the official polygon


async def test_official_polygons_need_a_known_field_and_level(
    session: AsyncSession, settings: Settings, tmp_path: Path
) -> None:
    path, _ = _official_communes(tmp_path)
    with pytest.raises(InvalidInput, match="no attribute 'MA'"):
        await geodata.load_official(
            session=session, settings=settings, path=path, level="commune", official_field="MA"
        )
    with pytest.raises(InvalidInput, match="--level"):
        await geodata.load_official(
            session=session, settings=settings, path=path, level="district", official_field="MA_XA"
        )
