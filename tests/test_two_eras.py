"""Vietnam's two maps in the database (issue 16): the 63 provinces until 2025-07-01, the 34
provinces and 3 321 communes since, Hoàng Sa and Trường Sa, the sea. Every expectation comes
from the bundled files read with shapely / pyproj, never from the database's own answers."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

import httpx
import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from conftest import GEODATA
from geo_reference import GEOD, features, nearest_line_km

INSERT = text(
    """
    INSERT INTO incident (category, severity, occurred_at, geom)
    VALUES ('smuggling', 3, :at, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
    RETURNING country_code, province_code, commune_code, province_at_occurrence,
              commune_at_occurrence, jurisdiction_path, jurisdiction_method, offshore_km,
              maritime_zone
    """
)


@cache
def units() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads((GEODATA / "units_2025.geojson").read_text("utf-8"))[
        "features"
    ]
    return found


@cache
def former() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(
        (GEODATA / "jurisdictions.geojson").read_text("utf-8")
    )["features"]
    return found


def code_named(name_local: str, level: str, era: str = "2025") -> str:
    """The code of the unit with this Vietnamese name (exactly one) in the bundled files."""
    pool = units() if era == "2025" else former()
    found: list[str] = [
        f["properties"]["code"]
        for f in pool
        if f["properties"]["level"] == level and f["properties"]["name_local"] == name_local
    ]
    assert len(found) == 1, (name_local, found)
    return found[0]


def containing(lon: float, lat: float, level: str, era: str = "2025") -> str | None:
    pool = units() if era == "2025" else former()
    point = shapely.Point(lon, lat)
    hits = [
        f["properties"]["code"]
        for f in pool
        if f["properties"]["level"] == level and shape(f["geometry"]).covers(point)
    ]
    assert len(hits) <= 1
    return hits[0] if hits else None


async def _insert(session: AsyncSession, lon: float, lat: float, at: datetime) -> Any:
    return (await session.execute(INSERT, {"lon": lon, "lat": lat, "at": at})).one()


async def test_ha_tien_today_and_before_the_merger(session: AsyncSession) -> None:
    """Phường Hà Tiên's official centroid: today An Giang (91) in both columns in 2026; in 2024
    the province in force was Kiên Giang, today's still An Giang, and no commune was."""
    ha_tien = [
        f["properties"] for f in units() if f["properties"]["name_local"] == "Phường Hà Tiên"
    ]
    assert len(ha_tien) == 1
    lon, lat = ha_tien[0]["official_centroid"]
    assert (lon, lat) == (104.469, 10.4029)
    an_giang = code_named("An Giang", "province")
    kien_giang = code_named("Kiên Giang", "province", era="former")
    assert [
        f["properties"]["official_code"] for f in units() if f["properties"]["code"] == an_giang
    ] == ["91"]
    assert containing(lon, lat, "province", era="former") == kien_giang

    now = await _insert(session, lon, lat, datetime(2026, 3, 1, 3, tzinfo=UTC))
    assert (now.country_code, now.province_code, now.commune_code) == (
        "VNM",
        an_giang,
        ha_tien[0]["code"],
    )
    assert (now.province_at_occurrence, now.commune_at_occurrence) == (an_giang, ha_tien[0]["code"])
    assert now.jurisdiction_method == "contains" and now.maritime_zone is None
    # every unit of every era that holds it: a key or filter on Kiên Giang still finds it
    assert set(now.jurisdiction_path) == {"VNM", kien_giang, an_giang, ha_tien[0]["code"]}

    before = await _insert(session, lon, lat, datetime(2024, 3, 1, 3, tzinfo=UTC))
    assert (before.province_code, before.province_at_occurrence) == (an_giang, kien_giang)
    assert before.commune_code == ha_tien[0]["code"] and before.commune_at_occurrence is None


@pytest.mark.parametrize(
    ("utc", "era"),
    [
        # 23:30 on 30 June in Vietnam (UTC+7): the former province
        (datetime(2025, 6, 30, 16, 30, tzinfo=UTC), "former"),
        # 00:30 on 1 July in Vietnam, still 30 June in UTC: today's province
        (datetime(2025, 6, 30, 17, 30, tzinfo=UTC), "2025"),
    ],
)
async def test_the_day_of_the_merger_is_vietnams(
    session: AsyncSession, utc: datetime, era: str
) -> None:
    lon, lat = 104.469, 10.4029
    expected = containing(lon, lat, "province", era=era)
    row = await _insert(session, lon, lat, utc)
    assert row.province_at_occurrence == expected


async def test_hoang_sa_and_truong_sa_in_both_eras(session: AsyncSession) -> None:
    da_nang, khanh_hoa = code_named("Đà Nẵng", "province"), code_named("Khánh Hòa", "province")
    hoang_sa = code_named("Đặc khu Hoàng Sa", "commune")
    truong_sa = code_named("Đặc khu Trường Sa", "commune")
    china = features(GEODATA / "jurisdictions.geojson")["CHN"][1]
    for lon, lat, province, commune in (
        (112.33, 16.83, da_nang, hoang_sa),
        (111.92, 8.64, khanh_hoa, truong_sa),
    ):
        assert not china.covers(shapely.Point(lon, lat))
        for at in (datetime(2026, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC)):
            row = await _insert(session, lon, lat, at)
            assert (row.country_code, row.province_code, row.commune_code) == (
                "VNM",
                province,
                commune,
            )
            assert "CHN" not in row.jurisdiction_path
        former_code = containing(lon, lat, "province", era="former")
        if former_code is not None:  # Phú Lâm lies inside the former Đà Nẵng's polygon
            assert row.province_at_occurrence == former_code


def _offshore_point(start: tuple[float, float], azimuth: float, km: float, land: Any) -> Any:
    """Walk from `start` along `azimuth` until the point is `km` (geodesic, ±50 m) from the
    coastline of `land`; the point and its distance."""
    coast = land.boundary
    lo, hi = 0.0, 3 * km
    for _ in range(40):
        mid = (lo + hi) / 2
        lon, lat, _ = GEOD.fwd(start[0], start[1], azimuth, mid * 1000)
        inside = land.covers(shapely.Point(lon, lat))
        d = 0.0 if inside else nearest_line_km(lon, lat, coast, step_deg=0.0005)
        if d < km:
            lo = mid
        else:
            hi = mid
    lon, lat, _ = GEOD.fwd(start[0], start[1], azimuth, hi * 1000)
    return (lon, lat), nearest_line_km(lon, lat, coast, step_deg=0.0005)


async def test_five_km_off_vung_tau(session: AsyncSession) -> None:
    """5 km off Vũng Tàu (south-east of its cape): Thành phố Hồ Chí Minh (which took in Bà Rịa –
    Vũng Tàu), its nearest commune, territorial sea, offshore_km the geodesic distance to the
    coast (brute force over the densified coastline of Vietnam)."""
    vietnam = features(GEODATA / "jurisdictions.geojson")["VNM"][1]
    (lon, lat), km = _offshore_point((107.07, 10.34), 160.0, 5.0, vietnam)
    assert km == pytest.approx(5.0, abs=0.1)
    hcmc = code_named("Hồ Chí Minh", "province")
    communes = [f for f in units() if f["properties"]["parent_code"] == hcmc]
    point = shapely.Point(lon, lat)
    nearest_commune = min(
        communes, key=lambda f: nearest_line_km(lon, lat, shape(f["geometry"]).boundary, 0.001)
    )
    row = await _insert(session, lon, lat, datetime(2026, 2, 1, tzinfo=UTC))
    assert not vietnam.covers(point)
    assert (row.province_code, row.jurisdiction_method, row.maritime_zone) == (
        hcmc,
        "nearest",
        "territorial_sea",
    )
    assert row.offshore_km == pytest.approx(km, abs=0.05)
    assert row.commune_code == nearest_commune["properties"]["code"]


async def test_contiguous_zone_and_beyond(session: AsyncSession) -> None:
    vietnam = features(GEODATA / "jurisdictions.geojson")["VNM"][1]
    (lon, lat), km = _offshore_point((107.07, 10.34), 160.0, 30.0, vietnam)
    row = await _insert(session, lon, lat, datetime(2026, 2, 1, tzinfo=UTC))
    assert 22.224 < km < 44.448
    assert (row.maritime_zone, row.country_code) == ("contiguous_zone", "VNM")
    assert row.offshore_km == pytest.approx(km, abs=0.05)
    (lon, lat), km = _offshore_point((107.07, 10.34), 160.0, 50.0, vietnam)
    assert km == pytest.approx(50.0, abs=0.1)
    row = await _insert(session, lon, lat, datetime(2026, 2, 1, tzinfo=UTC))
    assert row.province_code is None and row.maritime_zone is None and row.offshore_km is None


async def test_hcmc_neighbours(client: httpx.AsyncClient) -> None:
    """Thành phố Hồ Chí Minh (2025): Tây Ninh, Đồng Nai, Lâm Đồng and Đồng Tháp (across the
    Soài Rạp estuary, as HCMC and Tiền Giang before)."""
    hcmc = code_named("Hồ Chí Minh", "province")
    r = await client.get(f"/jurisdictions/{hcmc}/neighbours")
    assert r.status_code == 200, r.text
    names = {f["properties"]["name_local"] for f in r.json()["features"]}
    assert names == {"Tây Ninh", "Đồng Nai", "Lâm Đồng", "Đồng Tháp"}
    # the former city's neighbours are former provinces only
    old = code_named("Thành phố Hồ Chí Minh", "province", era="former")
    r = await client.get(f"/jurisdictions/{old}/neighbours")
    olds = {f["properties"]["code"] for f in r.json()["features"]}
    assert olds and all(f["properties"]["valid_to"] == "2025-07-01" for f in r.json()["features"])
    assert code_named("Tiền Giang", "province", era="former") in olds


async def test_units_in_force_on_a_day(client: httpx.AsyncClient) -> None:
    r = await client.get("/jurisdictions", params={"level": "province", "at": "2026-01-01"})
    assert r.status_code == 200
    today = {f["properties"]["official_code"]: f["properties"] for f in r.json()["features"]}
    expected = {
        f["properties"]["official_code"]: f["properties"]["name_local"]
        for f in units()
        if f["properties"]["level"] == "province"
    }
    assert len(today) == 34 and {k: v["name_local"] for k, v in today.items()} == expected
    assert today["91"]["name_local"] == "An Giang" and today["79"]["type_local"] == "Thành phố"
    r = await client.get("/jurisdictions", params={"level": "province", "at": "2020-01-01"})
    assert len(r.json()["features"]) == 63
    r = await client.get("/jurisdictions", params={"level": "province"})  # today
    assert len(r.json()["features"]) == 34
    # any era by code
    kien_giang = code_named("Kiên Giang", "province", era="former")
    r = await client.get(f"/jurisdictions/{kien_giang}")
    assert r.json()["properties"]["valid_to"] == "2025-07-01"


async def test_an_giang_counts_both_former_provinces(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    """Statistics for An Giang (2025) equal the sum of the former An Giang and Kiên Giang on the
    same data, whatever year the incidents occurred."""
    an_giang = code_named("An Giang", "province")
    parts = [code_named(n, "province", era="former") for n in ("An Giang", "Kiên Giang")]
    shapes = {c: g for c, (lvl, g) in features(GEODATA / "jurisdictions.geojson").items()}
    box = shapely.union_all([shapes[c] for c in parts]).envelope
    rng = random.Random(16)
    minx, miny, maxx, maxy = box.bounds
    for i in range(120):
        lon, lat = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        year = 2024 if i % 2 else 2026
        await _insert(session, lon, lat, datetime(year, 1 + i % 12, 3, tzinfo=UTC))
    counted = {}
    for code in (an_giang, *parts):
        r = await client.get(
            "/analysis/stats", params={"jurisdiction": code, "group_by": "category"}
        )
        counted[code] = r.json()["total"]
    assert counted[an_giang] == counted[parts[0]] + counted[parts[1]] > 0
    r = await client.get("/analysis/stats", params={"group_by": "jurisdiction"})
    groups = {g["key"]: g["count"] for g in r.json()["groups"]}
    assert groups[an_giang] >= counted[an_giang]


def test_today_is_vietnams() -> None:
    from app.jurisdictions import eras

    assert eras.today() in (
        date.today(),
        *(date.fromordinal(date.today().toordinal() + d) for d in (-1, 1)),
    )
