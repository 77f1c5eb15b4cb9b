"""The default boundary data: 63 provinces until 2025-07-01 and 34 since, each era valid and
tiling Vietnam; names keyed on ISO codes."""

from __future__ import annotations

import json
import unicodedata
from datetime import date
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from conftest import GEODATA

# the provinces of each era (a day in force, the bundled file that holds them)
ERAS = {"2020-01-01": "jurisdictions.geojson", "2025-06-30": "jurisdictions.geojson",
        "2025-07-01": "units_2025.geojson", "2026-12-06": "units_2025.geojson"}  # fmt: skip
IN_FORCE = (
    "coalesce(valid_from, '-infinity'::date) <= CAST(:day AS date)"
    " AND CAST(:day AS date) < coalesce(valid_to, 'infinity'::date)"
)


def _bundled_provinces(name: str) -> set[str]:
    fc = json.loads((GEODATA / name).read_text("utf-8"))
    return {
        f["properties"]["code"]
        for f in fc["features"]
        if f["properties"]["level"] == "province" and f["properties"]["country"] == "VNM"
    }


@pytest.mark.parametrize("day", ERAS)
async def test_sixty_three_valid_provinces(session: AsyncSession, day: str) -> None:
    """63 provinces in force before 2025-07-01, 34 since: valid, typed, one row per code."""
    rows = (
        await session.execute(
            text(
                "SELECT code, ST_IsValid(geom), ST_GeometryType(geom), ST_SRID(geom)"
                f" FROM jurisdiction WHERE level = 'province' AND country = 'VNM' AND {IN_FORCE}"
            ),
            {"day": date.fromisoformat(day)},
        )
    ).all()
    expected = _bundled_provinces(ERAS[day])
    assert len(expected) == (63 if day < "2025-07-01" else 34)
    assert len(rows) == len(expected)
    assert all(valid for _, valid, _, _ in rows)
    assert {t for _, _, t, _ in rows} == {"ST_MultiPolygon"}
    assert {srid for *_, srid in rows} == {4326}
    assert {code for code, *_ in rows} == expected


async def test_countries_present(session: AsyncSession) -> None:
    codes = (
        await session.execute(text("SELECT code FROM jurisdiction WHERE level = 'country'"))
    ).scalars()
    assert set(codes) == {"VNM", "LAO", "KHM", "CHN", "THA"}


@pytest.mark.parametrize("day", ["2020-01-01", "2026-12-06"])
async def test_provinces_tile_vietnam(session: AsyncSession, day: str) -> None:
    """The provinces of one era tile the country (either era's; not both together)."""
    row = (
        await session.execute(
            text(
                f"""
                WITH p AS (SELECT geom FROM jurisdiction
                            WHERE level = 'province' AND country = 'VNM' AND {IN_FORCE})
                SELECT (SELECT ST_Area(geom::geography) FROM jurisdiction WHERE code = 'VNM'),
                       (SELECT sum(ST_Area(geom::geography)) FROM p),
                       (SELECT ST_Area(ST_Union(geom)::geography) FROM p),
                       (SELECT count(*) FROM p)
                """
            ),
            {"day": date.fromisoformat(day)},
        )
    ).one()
    country, summed, union, count = row
    assert count == (63 if day < "2025-07-01" else 34)
    # Vietnam's land area is about 331 000 km²; Natural Earth's outline gives ~329 000 km².
    assert 320_000e6 < country < 340_000e6
    assert abs(summed - country) / country < 0.01  # no overlaps beyond 1 %
    assert abs(union - country) / country < 0.01  # no holes beyond 1 %


async def test_overlaps_are_negligible(session: AsyncSession) -> None:
    """Provinces of the same era hardly overlap; those of different eras cover the same land
    (every 2025 province is a union of former ones) and are not compared."""
    overlaps: dict[Any, float] = dict(
        (
            await session.execute(
                text(
                    """
                    SELECT a.valid_from,
                           sum(ST_Area(ST_Intersection(a.geom, b.geom)::geography))
                      FROM jurisdiction a JOIN jurisdiction b
                        ON a.id < b.id AND a.level = 'province' AND b.level = 'province'
                       AND coalesce(a.valid_from, '-infinity'::date)
                           < coalesce(b.valid_to, 'infinity'::date)
                       AND coalesce(b.valid_from, '-infinity'::date)
                           < coalesce(a.valid_to, 'infinity'::date)
                       AND ST_Intersects(a.geom, b.geom)
                     GROUP BY a.valid_from
                    """
                )
            )
        ).all()
    )
    # under 1 km² within each era, against ~329 000 km²
    assert all(area < 1e6 for area in overlaps.values()), overlaps


async def test_names_keyed_on_iso_code_with_diacritics(session: AsyncSession) -> None:
    rows: dict[str, list[str]] = dict(
        (
            await session.execute(
                text(
                    "SELECT code, json_build_array(name, name_local, source_name)"
                    " FROM jurisdiction WHERE level = 'province'"
                )
            )
        ).all()
    )
    # Natural Earth labels VN-39 "Đông Nam Bộ", VN-53 "Đông Bắc", VN-66 "Đồng Bằng Sông Hồng":
    # the name follows the ISO code and the source's label is kept.
    assert rows["VN-39"] == ["Dong Nai", "Đồng Nai", "Đông Nam Bộ"]
    assert rows["VN-53"][:2] == ["Bac Kan", "Bắc Kạn"]
    assert rows["VN-66"][:2] == ["Hung Yen", "Hưng Yên"]
    assert rows["VN-SG"][1] == "Thành phố Hồ Chí Minh"
    assert rows["VN-44"][1] == "An Giang"
    for code, (name, local, _) in rows.items():
        assert name.isascii(), code
        assert unicodedata.is_normalized("NFC", local), code
    assert sum(1 for _, local, _ in rows.values() if not local.isascii()) >= 55
