"""Operators' own boundaries: field mapping, repair of invalid geometries, re-derivation."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import Polygon
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import InvalidInput
from app.geodata import load as geodata


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
    assert path.scalar_one() == ["VNM", "VN-44", "VN-44-LX"]
    assert report.incidents_rederived >= 1


async def test_missing_field_is_a_clear_error(tmp_path: Path) -> None:
    path = _districts(tmp_path, "geojson")
    with pytest.raises(InvalidInput, match="no attribute 'code'"):
        geodata.read_boundaries(path, geodata.FieldMap(), level="district", country="VNM")
    with pytest.raises(InvalidInput, match="not found"):
        geodata.read_boundaries(tmp_path / "nope.gpkg")
    with pytest.raises(InvalidInput, match="level"):
        geodata.read_boundaries(path, FIELDS, level=None, country="VNM")
