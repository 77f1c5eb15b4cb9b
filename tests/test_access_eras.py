"""Keys of either era (issue 16): a key on a former province keeps exactly its area, a key on a
2025 province or a commune sees its unit and its cooperation zone, and the key lists say where
an old scope lies today. Expectations from the bundled files (shapely + pyproj), not the DB."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from functools import cache
from typing import Any

import httpx
import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from conftest import GEODATA, app_client, make_key
from geo_reference import local_metric, projected

COOPERATION_KM = 10.0  # Settings().cooperation_m, the default the clients run with
INSERT = text(
    """
    INSERT INTO incident (category, severity, occurred_at, geom)
    VALUES ('smuggling', 2, :at, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) RETURNING id::text
    """
)


@cache
def _features(name: str) -> dict[str, dict[str, Any]]:
    fc = json.loads((GEODATA / name).read_text("utf-8"))
    return {f["properties"]["code"]: f for f in fc["features"]}


def _shape(code: str) -> Any:
    for name in ("jurisdictions.geojson", "units_2025.geojson"):
        if code in _features(name):
            return shape(_features(name)[code]["geometry"])
    raise KeyError(code)


def _named(name_local: str, level: str, era: str) -> str:
    pool = _features("units_2025.geojson" if era == "2025" else "jurisdictions.geojson")
    found = [
        c
        for c, f in pool.items()
        if f["properties"]["level"] == level and f["properties"]["name_local"] == name_local
    ]
    assert len(found) == 1, found
    return found[0]


def _same_era(code: str) -> list[str]:
    """The units of the same file and level as `code` (the candidates for its neighbours)."""
    for name in ("jurisdictions.geojson", "units_2025.geojson"):
        pool = _features(name)
        if code in pool:
            level = pool[code]["properties"]["level"]
            valid_to = pool[code]["properties"]["valid_to"]
            return [
                c
                for c, f in pool.items()
                if c != code
                and f["properties"]["level"] == level
                and f["properties"]["valid_to"] == valid_to
            ]
    raise KeyError(code)


class Area:
    """A unit's polygon and its neighbours (same era and level, touching), in metres."""

    def __init__(self, code: str) -> None:
        g = _shape(code)
        c = g.centroid
        self.fwd, _ = local_metric(c.x, c.y)
        self.code, self.geom, self.m = code, g, projected(g, self.fwd)
        near = [n for n in _same_era(code) if _shape(n).intersects(g.buffer(0.05))]
        self.neighbours = {n: projected(_shape(n), self.fwd) for n in near}
        self.neighbours = {n: m for n, m in self.neighbours.items() if m.distance(self.m) < 50}

    def km_to(self, lon: float, lat: float) -> float:
        return float(self.m.distance(projected(shapely.Point(lon, lat), self.fwd))) / 1000

    def expected(self, lon: float, lat: float) -> bool | None:
        """Visible to a key on this unit (None: too close to an edge of the rule to tell)."""
        p = projected(shapely.Point(lon, lat), self.fwd)
        if self.m.distance(p) < 30 and not self.m.contains(p):
            return None  # on the boundary (digitising of the two sides)
        if self.geom.covers(shapely.Point(lon, lat)):
            return True
        km = self.km_to(lon, lat)
        if abs(km - COOPERATION_KM) < 0.5:
            return None
        in_neighbour = any(m.distance(p) < 1 for m in self.neighbours.values())
        return in_neighbour and km < COOPERATION_KM


def _on_land(lon: float, lat: float) -> bool:
    point = shapely.Point(lon, lat)
    return any(
        shape(f["geometry"]).covers(point)
        for f in _features("jurisdictions.geojson").values()
        if f["properties"]["level"] == "country"
    )


async def _visible_ids(c: httpx.AsyncClient) -> set[str]:
    r = await c.get("/incidents", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return {f["id"] for f in r.json()["features"]}


async def test_a_key_on_a_former_province_keeps_its_area(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    """A key on Kiên Giang (VN-47 until 2025-07-01) sees exactly the incidents inside former
    Kiên Giang's polygon plus those within 10 km of it in its former neighbours, whether they
    occurred before or after the merger."""
    assert settings.cooperation_m == COOPERATION_KM * 1000
    kien_giang = _named("Kiên Giang", "province", "former")
    area = Area(kien_giang)
    minx, miny, maxx, maxy = area.geom.buffer(0.2).bounds
    rng = random.Random(4747)
    expected: dict[str, bool] = {}
    while len(expected) < 160:
        lon, lat = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if not _on_land(lon, lat):
            continue  # at sea the nearest coastal unit applies (the derivation's tests)
        want = area.expected(lon, lat)
        if want is None:
            continue
        year = 2024 if len(expected) % 2 else 2026
        at = datetime(year, 3, 1, 3, tzinfo=UTC)
        ident = (await session.execute(INSERT, {"lon": lon, "lat": lat, "at": at})).scalar_one()
        expected[ident] = want
    inside = {i for i, w in expected.items() if w}
    assert 20 < len(inside) < len(expected) - 20
    key = await make_key(session, "analyst", kien_giang)
    async with app_client(engine, session, settings, key) as c:
        assert await _visible_ids(c) & set(expected) == inside
        me = (await c.get("/me")).json()
        assert me["jurisdiction"] == kien_giang


@pytest.fixture
async def commune_world(session: AsyncSession) -> dict[str, Any]:
    """Phường Hà Tiên (2025): a point inside, one in a neighbouring commune within the
    cooperation distance, one in An Giang (2025) more than 25 km away, one in Hà Nội."""
    code = _named("Phường Hà Tiên", "commune", "2025")
    area = Area(code)
    assert area.neighbours
    inside = area.geom.representative_point()
    _, metric = next(iter(sorted(area.neighbours.items())))
    band = metric.intersection(area.m.buffer(4000)).difference(area.m.buffer(1000))
    zone_m = band.representative_point()
    _, back = local_metric(area.geom.centroid.x, area.geom.centroid.y)
    zone = shapely.Point(back.transform(zone_m.x, zone_m.y))
    province = _features("units_2025.geojson")[code]["properties"]["parent_code"]
    far = next(
        shape(f["geometry"]).representative_point()
        for c, f in sorted(_features("units_2025.geojson").items())
        if f["properties"].get("parent_code") == province
        and area.km_to(*shape(f["geometry"]).representative_point().coords[0]) > 25
    )
    points = {
        "inside": inside,
        "zone": zone,
        "far": far,
        "elsewhere": shapely.Point(105.854, 21.028),
    }
    assert area.expected(inside.x, inside.y) is True
    assert area.expected(zone.x, zone.y) is True and 0.9 < area.km_to(zone.x, zone.y) < 4.1
    assert area.expected(far.x, far.y) is False and area.expected(105.854, 21.028) is False
    ids = {}
    for name, p in points.items():
        at = datetime(2026, 2, 2, tzinfo=UTC)
        ids[name] = (await session.execute(INSERT, {"lon": p.x, "lat": p.y, "at": at})).scalar_one()
    return {"code": code, "province": province, "points": points, "ids": ids}


async def test_a_commune_officer(
    engine: AsyncEngine, session: AsyncSession, settings: Settings, commune_world: dict[str, Any]
) -> None:
    """An officer of a commune sees its commune and the cooperation zone, records inside its
    area and is refused (403) outside it; its stats are bounded the same way."""
    w = commune_world
    key = await make_key(session, "officer", w["code"], "Công an phường Hà Tiên")
    async with app_client(engine, session, settings, key) as officer:
        seen = await _visible_ids(officer)
        assert seen & set(w["ids"].values()) == {w["ids"]["inside"], w["ids"]["zone"]}
        for name, ident in w["ids"].items():
            r = await officer.get(f"/incidents/{ident}")
            assert r.status_code == (200 if name in ("inside", "zone") else 404), name

        def body(p: Any) -> dict[str, Any]:
            return {
                "category": "fraud",
                "severity": 2,
                "occurred_at": "2026-03-03T03:03:03Z",
                "location": {"type": "Point", "coordinates": [p.x, p.y]},
            }

        made = await officer.post("/incidents", json=body(w["points"]["inside"]))
        assert made.status_code == 201, made.text
        assert made.json()["properties"]["unit"] == "Công an phường Hà Tiên"
        for name in ("far", "elsewhere"):
            r = await officer.post("/incidents", json=body(w["points"][name]))
            assert r.status_code == 403 and r.json()["field"] == "location", (name, r.text)
        r = await officer.get("/analysis/stats", params={"group_by": "jurisdiction"})
        assert r.json()["scope"] == w["code"] and r.json()["total"] == 3


async def test_a_key_on_a_2025_province_sees_its_neighbours_zone(
    engine: AsyncEngine, session: AsyncSession, settings: Settings, commune_world: dict[str, Any]
) -> None:
    """A key on An Giang (2025) sees everything in it (the commune world lies in it) and
    points of its 2025 neighbours within the cooperation distance."""
    an_giang = _named("An Giang", "province", "2025")
    area = Area(an_giang)
    assert all(n.startswith("VN-P") for n in area.neighbours)
    dong_thap = _named("Đồng Tháp", "province", "2025")
    band = area.neighbours[dong_thap].intersection(area.m.buffer(4000))
    _, back = local_metric(area.geom.centroid.x, area.geom.centroid.y)
    zone_m = band.representative_point()
    zone = shapely.Point(back.transform(zone_m.x, zone_m.y))
    assert area.expected(zone.x, zone.y) is True
    at = datetime(2026, 2, 2, tzinfo=UTC)
    zone_id = (await session.execute(INSERT, {"lon": zone.x, "lat": zone.y, "at": at})).scalar_one()
    key = await make_key(session, "analyst", an_giang)
    ids = commune_world["ids"]
    async with app_client(engine, session, settings, key) as c:
        seen = await _visible_ids(c)
    assert seen & {*ids.values(), zone_id} == {ids["inside"], ids["zone"], ids["far"], zone_id}


async def test_keys_of_either_era_and_their_place_today(
    client: httpx.AsyncClient, commune_world: dict[str, Any]
) -> None:
    kien_giang = _named("Kiên Giang", "province", "former")
    an_giang = _named("An Giang", "province", "2025")
    commune = commune_world["code"]
    made = {}
    for code in (kien_giang, an_giang, commune):
        r = await client.post(
            "/principals", json={"name": f"era {code}", "role": "viewer", "jurisdiction": code}
        )
        assert r.status_code == 201, r.text
        made[code] = r.json()["principal"]["id"]
    for bad in ("VN-C00000", "VN-P00"):
        r = await client.post(
            "/principals", json={"name": "x", "role": "viewer", "jurisdiction": bad}
        )
        assert r.status_code == 422, bad
    listed = {p["id"]: p for p in (await client.get("/principals")).json()["principals"]}
    old = listed[made[kien_giang]]["scope"]
    assert old["in_force"] is False and old["name_local"] == "Kiên Giang"
    assert old["today_in"] == [{"code": an_giang, "name_local": "An Giang"}]
    assert old["label"] == f"{kien_giang} Kiên Giang (former; today in {an_giang} An Giang)"
    assert kien_giang in _features("units_2025.geojson")[an_giang]["properties"]["formed_from"]
    new = listed[made[an_giang]]["scope"]
    assert new["in_force"] is True and new["label"] == f"{an_giang} An Giang"
    ha_tien = listed[made[commune]]["scope"]
    assert ha_tien["level"] == "commune" and ha_tien["today_in"][0]["code"] == an_giang
    assert ha_tien["label"] == f"{commune} Phường Hà Tiên (in {an_giang} An Giang)"
    national = [p for p in listed.values() if p["jurisdiction"] is None]
    assert national and all(p["scope"] is None for p in national)
