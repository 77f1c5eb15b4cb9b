"""GET /analysis/stats by era (issue 16): `group_by=jurisdiction` groups by today's units by
default and by the units in force on another day with `at=`; communes too. Every expectation
comes from the bundled boundary files read with shapely, never from the database's answers."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime
from functools import cache
from typing import Any

import httpx
import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from conftest import GEODATA

PROBLEM = "application/problem+json"
INSERT = text(
    """
    INSERT INTO incident (category, severity, status, occurred_at, geom)
    VALUES (:category, 2, :status, :at, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
    """
)


@cache
def _file(name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads((GEODATA / name).read_text("utf-8"))["features"]
    return found


@cache
def _units(era: str, level: str) -> tuple[list[str], list[Any], dict[str, dict[str, Any]]]:
    """Codes, shapes and properties of the units of `level` of an era in the bundled files
    (`2025`: units_2025.geojson; `former`: the 63 provinces of jurisdictions.geojson)."""
    pool = _file("units_2025.geojson") if era == "2025" else _file("jurisdictions.geojson")
    chosen = [
        f
        for f in pool
        if f["properties"]["level"] == level and f["properties"].get("country") == "VNM"
    ]
    codes = [f["properties"]["code"] for f in chosen]
    return codes, [shape(f["geometry"]) for f in chosen], {c: f["properties"] for c, f in zip(
        codes, (f for f in chosen), strict=True)}  # fmt: skip


def _code_named(name_local: str, era: str) -> str:
    codes, _, props = _units(era, "province")
    found = [c for c in codes if props[c]["name_local"] == name_local]
    assert len(found) == 1, (name_local, found)
    return found[0]


def _unit_of(lon: float, lat: float, era: str, level: str) -> str | None:
    codes, shapes, _ = _units(era, level)
    point = shapely.Point(lon, lat)
    hits = [c for c, g in zip(codes, shapes, strict=True) if g.covers(point)]
    assert len(hits) <= 1, hits
    return hits[0] if hits else None


def _on_land(lon: float, lat: float) -> bool:
    point = shapely.Point(lon, lat)
    return any(
        shape(f["geometry"]).covers(point)
        for f in _file("jurisdictions.geojson")
        if f["properties"]["level"] == "country"
    )


Point = tuple[float, float, str]  # lon, lat, status


@pytest.fixture
async def points(session: AsyncSession) -> list[Point]:
    """Incidents on land around the former An Giang and Kiên Giang (some in Cambodia), half
    before the merger, half after, and a few in Hà Nội."""
    former = [_code_named(n, "former") for n in ("An Giang", "Kiên Giang")]
    codes, shapes, _ = _units("former", "province")
    box = shapely.union_all([g for c, g in zip(codes, shapes, strict=True) if c in former])
    minx, miny, maxx, maxy = box.bounds
    rng = random.Random(1607)
    chosen: list[Point] = []
    while len(chosen) < 90:
        lon, lat = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if _on_land(lon, lat):  # at sea the nearest coastal unit applies: not tested here
            chosen.append((lon, lat, rng.choice(("reported", "solved", "closed", "verified"))))
    chosen += [(105.854, 21.028, "solved"), (105.83, 21.01, "reported")]
    for i, (lon, lat, status) in enumerate(chosen):
        at = datetime(2024 if i % 2 else 2026, 1 + i % 12, 5, 3, tzinfo=UTC)
        params = {"lon": lon, "lat": lat, "status": status, "at": at, "category": "smuggling"}
        await session.execute(INSERT, params)
    return chosen


def _expected(points: list[Point], era: str, level: str) -> dict[str | None, tuple[int, int]]:
    keys = [_unit_of(lon, lat, era, level) for lon, lat, _ in points]
    count = Counter(keys)
    solved = Counter(
        k for k, (_, _, s) in zip(keys, points, strict=True) if s in ("solved", "closed")
    )
    return {k: (n, solved[k]) for k, n in count.items()}


async def _groups(client: httpx.AsyncClient, **params: Any) -> dict[str | None, tuple[int, int]]:
    r = await client.get("/analysis/stats", params={"group_by": "jurisdiction", **params})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == sum(g["count"] for g in body["groups"])
    return {g["key"]: (g["count"], g["solved"]) for g in body["groups"]}


async def test_today_by_default_and_another_day_with_at(
    client: httpx.AsyncClient, points: list[Point]
) -> None:
    today = await _groups(client)
    assert today == _expected(points, "2025", "province")
    new_codes = set(_units("2025", "province")[0])
    old_codes = set(_units("former", "province")[0])
    assert {k for k in today if k is not None} <= new_codes
    before = await _groups(client, at="2024-06-01")
    assert before == _expected(points, "former", "province")
    assert {k for k in before if k is not None} <= old_codes
    # the same data: An Giang (2025) = the former An Giang + Kiên Giang
    an_giang = _code_named("An Giang", "2025")
    parts = [_code_named(n, "former") for n in ("An Giang", "Kiên Giang")]
    assert today[an_giang][0] == before[parts[0]][0] + before[parts[1]][0] > 0
    assert today[an_giang][1] == before[parts[0]][1] + before[parts[1]][1]
    assert sorted(_units("2025", "province")[2][an_giang]["formed_from"]) == sorted(parts)
    # 2020: the 63 as well; any day since the merger: today's 34
    assert await _groups(client, at="2020-01-01") == before
    assert await _groups(client, at="2025-07-01") == today
    assert await _groups(client, at="2025-06-30") == before
    # abroad (Cambodia) in no province of either day: the null group, the same size
    assert today.get(None) == before.get(None)


async def test_names_in_vietnamese(client: httpx.AsyncClient, points: list[Point]) -> None:
    r = await client.get("/analysis/stats", params={"group_by": "jurisdiction", "at": "2024-06-01"})
    body = r.json()
    assert body["at"] == "2024-06-01" and body["level"] == "province"
    kien_giang = _code_named("Kiên Giang", "former")
    group = next(g for g in body["groups"] if g["key"] == kien_giang)
    props = _units("former", "province")[2][kien_giang]
    assert (group["name"], group["name_local"]) == (props["name"], "Kiên Giang")
    r = await client.get("/analysis/stats", params={"group_by": "jurisdiction"})
    assert r.json()["at"] is None
    an_giang = _code_named("An Giang", "2025")
    group = next(g for g in r.json()["groups"] if g["key"] == an_giang)
    assert group["name_local"] == "An Giang"
    r = await client.get("/analysis/stats", params={"group_by": "category"})
    assert r.json()["groups"][0]["name_local"] == "Buôn lậu"  # the category's Vietnamese name


async def test_communes_sum_to_their_province(
    client: httpx.AsyncClient, points: list[Point]
) -> None:
    communes = await _groups(client, level="commune")
    assert communes == _expected(points, "2025", "commune")
    _, _, props = _units("2025", "commune")
    provinces = await _groups(client)
    by_parent: Counter[str | None] = Counter()
    for code, (n, _) in communes.items():
        by_parent[props[code]["parent_code"] if code else None] += n
    assert {k: n for k, n in by_parent.items() if k} == {
        k: n for k, (n, _) in provinces.items() if k
    }
    # the same with at= today's date (the communes in force), none before the communes existed
    assert await _groups(client, level="commune", at="2026-01-01") == communes
    before = await _groups(client, level="commune", at="2024-06-01")
    assert list(before) == [None] and before[None][0] == len(points)


async def test_scoped_key_groups_by_era(
    client: httpx.AsyncClient, points: list[Point], session: AsyncSession, engine: Any,
    settings: Any,
) -> None:  # fmt: skip
    """A key of the former Kiên Giang keeps its area in every grouping."""
    from conftest import app_client, make_key

    kien_giang = _code_named("Kiên Giang", "former")
    key = await make_key(session, "viewer", kien_giang)
    async with app_client(engine, session, settings, key) as viewer:
        before = await _groups(viewer, at="2024-06-01")
        today = await _groups(viewer)
    assert before[kien_giang][0] == _expected(points, "former", "province")[kien_giang][0]
    assert sum(n for n, _ in today.values()) == sum(n for n, _ in before.values())


@pytest.mark.parametrize(
    "params",
    [
        {"group_by": "category", "at": "2024-06-01"},
        {"group_by": "jurisdiction", "at": "yesterday"},
        {"group_by": "jurisdiction", "at": "2024-13-01"},
        {"group_by": "jurisdiction", "level": "district"},
    ],
)
async def test_bad_at(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    r = await client.get("/analysis/stats", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
