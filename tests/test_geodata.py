"""The default boundary data: 63 provinces, valid, tiling Vietnam; names keyed on ISO codes."""

from __future__ import annotations

import unicodedata

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def test_sixty_three_valid_provinces(session: AsyncSession) -> None:
    rows = (
        await session.execute(
            text(
                "SELECT code, ST_IsValid(geom), ST_GeometryType(geom), ST_SRID(geom)"
                " FROM jurisdiction WHERE level = 'province' AND country = 'VNM'"
            )
        )
    ).all()
    assert len(rows) == 63
    assert all(valid for _, valid, _, _ in rows)
    assert {t for _, _, t, _ in rows} == {"ST_MultiPolygon"}
    assert {srid for *_, srid in rows} == {4326}
    assert len({code for code, *_ in rows}) == 63


async def test_countries_present(session: AsyncSession) -> None:
    codes = (
        await session.execute(text("SELECT code FROM jurisdiction WHERE level = 'country'"))
    ).scalars()
    assert set(codes) == {"VNM", "LAO", "KHM", "CHN", "THA"}


async def test_provinces_tile_vietnam(session: AsyncSession) -> None:
    row = (
        await session.execute(
            text(
                """
                WITH p AS (SELECT geom FROM jurisdiction
                            WHERE level = 'province' AND country = 'VNM')
                SELECT (SELECT ST_Area(geom::geography) FROM jurisdiction WHERE code = 'VNM'),
                       (SELECT sum(ST_Area(geom::geography)) FROM p),
                       (SELECT ST_Area(ST_Union(geom)::geography) FROM p)
                """
            )
        )
    ).one()
    country, summed, union = row
    # Vietnam's land area is about 331 000 km²; Natural Earth's outline gives ~329 000 km².
    assert 320_000e6 < country < 340_000e6
    assert abs(summed - country) / country < 0.01  # no overlaps beyond 1 %
    assert abs(union - country) / country < 0.01  # no holes beyond 1 %


async def test_overlaps_are_negligible(session: AsyncSession) -> None:
    overlap = (
        await session.execute(
            text(
                """
                SELECT coalesce(sum(ST_Area(ST_Intersection(a.geom, b.geom)::geography)), 0)
                  FROM jurisdiction a JOIN jurisdiction b
                    ON a.id < b.id AND a.level = 'province' AND b.level = 'province'
                   AND ST_Intersects(a.geom, b.geom)
                """
            )
        )
    ).scalar_one()
    assert overlap < 1e6  # under 1 km² in all, against ~329 000 km²


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
