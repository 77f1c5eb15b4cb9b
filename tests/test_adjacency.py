"""Jurisdiction adjacency: symmetric, equal to an independent shapely computation, and right
for neighbours we know (including river and estuary gaps)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from conftest import GEODATA
from geo_reference import adjacency

PAIRS_SQL = text(
    """
    SELECT a.code, b.code, x.shared_km, x.touches, x.gap_m, x.method
      FROM jurisdiction_adjacency x
      JOIN jurisdiction a ON a.id = x.a_id
      JOIN jurisdiction b ON b.id = x.b_id
     WHERE a.level = :level
    """
)


async def _pairs(session: AsyncSession, level: str) -> dict[tuple[str, str], tuple[Any, ...]]:
    rows = (await session.execute(PAIRS_SQL, {"level": level})).all()
    return {(a, b): (km, touches, gap, method) for a, b, km, touches, gap, method in rows}


async def test_symmetric(session: AsyncSession) -> None:
    pairs = await _pairs(session, "province")
    assert pairs
    for (a, b), value in pairs.items():
        assert pairs[(b, a)] == value


def _codes(path: Path, level: str, parent: str | None = None) -> set[str]:
    fc = json.loads(path.read_text("utf-8"))
    return {
        f["properties"]["code"]
        for f in fc["features"]
        if f["properties"]["level"] == level
        and (parent is None or f["properties"]["parent_code"] == parent)
    }


FORMER = GEODATA / "jurisdictions.geojson"
TODAY = GEODATA / "units_2025.geojson"
CORRECTIONS = GEODATA / "adjacency_corrections.csv"


@pytest.mark.parametrize(
    ("path", "level", "parent"),
    [
        (FORMER, "province", None),  # the 63
        (TODAY, "province", None),  # the 34
        (TODAY, "commune", "VN-P91"),  # An Giang's communes (the pairs among them)
    ],
)
async def test_agrees_with_independent_computation(
    session: AsyncSession, path: Path, level: str, parent: str | None
) -> None:
    codes = _codes(path, level, parent)
    expected = adjacency(path, CORRECTIONS, only=codes)
    pairs = await _pairs(session, level)
    stored = {k: v for k, v in pairs.items() if k[0] < k[1] and {*k} <= codes}
    assert set(stored) == set(expected)
    # units of one era never neighbour units of the other
    assert all((a in codes) == (b in codes) for a, b in pairs if parent is None)
    for key, (km, touches, gap_m, method) in stored.items():
        ref = expected[key]
        assert method == ref["method"], key
        if method == "correction":
            continue
        assert touches == ref["touches"], key
        assert gap_m == pytest.approx(ref["gap_m"], rel=0.01, abs=20), key
        if method == "shared_line":
            assert km == pytest.approx(ref["shared_km"], rel=0.005, abs=0.05), key
        else:  # facing length: whole segments vs clipped lines
            assert km == pytest.approx(ref["shared_km"], rel=0.15), key


KNOWN_NEIGHBOURS = [
    ("VN-44", "VN-47"),  # An Giang – Kien Giang
    ("VN-02", "VN-01"),  # Lao Cai – Lai Chau
    ("VN-HN", "VN-70"),  # Ha Noi – Vinh Phuc
    ("VN-43", "VN-SG"),  # Ba Ria-Vung Tau – Ho Chi Minh City
    ("VN-50", "VN-51"),  # Ben Tre – Tra Vinh, across the Co Chien river
    ("VN-51", "VN-52"),  # Tra Vinh – Soc Trang, across the Hau river mouth
    ("VN-46", "VN-SG"),  # Tien Giang – Ho Chi Minh City, across the Soai Rap estuary
    ("VN-45", "VN-49"),  # Dong Thap – Vinh Long (correction: NE meets at a point)
    ("VN-49", "VN-52"),  # Vinh Long – Soc Trang (correction: Hau river, 5 km gap in NE)
]
KNOWN_NOT_NEIGHBOURS = [
    ("VN-21", "VN-67"),  # Thanh Hoa – Nam Dinh: Ninh Binh lies between (4.5 km at sea)
    ("VN-03", "VN-53"),  # Ha Giang – Bac Kan: a corner point only
    ("VN-46", "VN-CT"),  # Tien Giang – Can Tho: a corner point only
    ("VN-28", "VN-31"),  # Kon Tum – Binh Dinh
    ("VN-HN", "VN-SG"),
]


async def test_known_neighbours(session: AsyncSession) -> None:
    pairs = await _pairs(session, "province")
    for a, b in KNOWN_NEIGHBOURS:
        assert (a, b) in pairs, (a, b)
    for a, b in KNOWN_NOT_NEIGHBOURS:
        assert (a, b) not in pairs, (a, b)
    km, touches, gap_m, method = pairs[("VN-50", "VN-51")]
    assert (touches, method) == (False, "gap")
    assert 1000 < gap_m < 3000 and km > 5


async def test_country_neighbours(session: AsyncSession) -> None:
    pairs = await _pairs(session, "country")
    assert {b for a, b in pairs if a == "VNM"} == {"CHN", "LAO", "KHM"}
