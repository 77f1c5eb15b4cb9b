"""The 2025 units (geodata/units_2025.geojson, built by geodata/build_2025.py): 34 provinces
that are unions of whole former provinces, 3 321 communes with approximate polygons, checked
against the former provinces' file, a second registry package (vietnam-provinces) and
geodesic areas from pyproj — never against the build's own numbers."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from functools import cache
from typing import Any

import pytest
import shapely
from shapely.geometry import shape

from conftest import GEODATA
from geo_reference import GEOD

UNITS = GEODATA / "units_2025.geojson"


@cache
def units() -> list[dict[str, Any]]:
    features: list[dict[str, Any]] = json.loads(UNITS.read_text("utf-8"))["features"]
    return features


@cache
def geoms() -> dict[str, Any]:
    return {f["properties"]["code"]: shape(f["geometry"]) for f in units()}


def level(name: str) -> list[dict[str, Any]]:
    return [f for f in units() if f["properties"]["level"] == name]


def by_official(name: str) -> dict[str, dict[str, Any]]:
    return {f["properties"]["official_code"]: f["properties"] for f in level(name)}


def area_km2(geom: Any) -> float:
    return abs(float(GEOD.geometry_area_perimeter(geom)[0])) / 1e6


@cache
def former() -> dict[str, Any]:
    fc = json.loads((GEODATA / "jurisdictions.geojson").read_text("utf-8"))
    return {f["properties"]["code"]: shape(f["geometry"]) for f in fc["features"]}


def test_counts_codes_and_names() -> None:
    provinces, communes = level("province"), level("commune")
    assert len(provinces) == 34 and len(communes) == 3321
    codes = [f["properties"]["code"] for f in units()]
    assert len(set(codes)) == len(codes)
    # our own codes cannot collide with ISO 3166-2 (VN- and two characters)
    assert all(len(c.split("-", 1)[1]) > 2 for c in codes)
    for f in units():
        p = f["properties"]
        assert p["valid_from"] == "2025-07-01" and p["valid_to"] is None
        assert unicodedata.is_normalized("NFC", p["name_local"]), p["name_local"]
        assert p["name"].isascii() and p["name"], p
    provinces_by_code = {p["properties"]["code"] for p in provinces}
    assert all(c["properties"]["parent_code"] in provinces_by_code for c in communes)
    assert all(c["properties"]["geometry_approximate"] for c in communes)
    assert by_official("province")["91"]["name_local"] == "An Giang"
    assert by_official("province")["79"]["name_local"] == "Hồ Chí Minh"
    assert by_official("province")["79"]["name"] == "Ho Chi Minh City"
    ha_tien = by_official("commune")["30769"]
    assert (ha_tien["name_local"], ha_tien["name"]) == ("Phường Hà Tiên", "Ha Tien ward")
    assert ha_tien["parent_code"] == "VN-P91"
    # the 16 border units of the seeds include these, all formerly in Kiên Giang
    for official, name in (("30766", "Phường Tô Châu"), ("30796", "Xã Giang Thành"),
                           ("30781", "Xã Tiên Hải")):  # fmt: skip
        assert by_official("commune")[official]["name_local"] == name
        assert by_official("commune")[official]["parent_code"] == "VN-P91"


CROSSCHECK = GEODATA / "units_2025_crosscheck.csv"
CROSSCHECK_FIELDS = ["province", "kind", "ours_code", "theirs_code", "ours_name", "theirs_name"]


def crosscheck() -> list[dict[str, str]]:
    """Every difference between our 2025 units and vietnam-provinces' (another registry
    package): a commune both list under different official codes, or under other spellings."""
    from vietnam_provinces import NESTED_DIVISIONS_JSON_PATH

    other = json.loads(NESTED_DIVISIONS_JSON_PATH.read_text("utf-8"))
    provinces, communes = by_official("province"), by_official("commune")
    out: list[dict[str, str]] = []
    for p in other:
        code = f"{p['code']:02d}"
        short = provinces[code]["name_local"]
        # it writes the type for cities only ("Thành phố Hà Nội", "Cao Bằng")
        if p["name"] not in (short, f"{provinces[code]['type_local']} {short}"):
            out.append(dict(province=code, kind="province name", ours_code=code,
                            theirs_code=code, ours_name=short, theirs_name=p["name"]))  # fmt: skip
    theirs = {
        f"{w['code']:05d}": (w["name"], f"{p['code']:02d}") for p in other for w in p["wards"]
    }
    by_name = {(v["parent_code"], _plain(v["name_local"])): c for c, v in communes.items()}
    for code, (name, province) in sorted(theirs.items()):
        mine = communes.get(code)
        if mine is None or _plain(name) != _plain(mine["name_local"]):
            # the unit is ours under another code (and this code, if ours, is another unit)
            other_code = by_name.get((f"VN-P{province}", _plain(name)), "")
            ours_name = communes[other_code]["name_local"] if other_code else ""
            out.append(dict(province=province, kind="official code", ours_code=other_code,
                            theirs_code=code, ours_name=ours_name, theirs_name=name))  # fmt: skip
        elif unicodedata.normalize("NFC", name) != mine["name_local"]:
            out.append(dict(province=province, kind="spelling", ours_code=code, theirs_code=code,
                            ours_name=mine["name_local"], theirs_name=name))  # fmt: skip
        elif mine["parent_code"] != f"VN-P{province}":
            out.append(dict(province=province, kind="province", ours_code=code,
                            theirs_code=code, ours_name=mine["parent_code"], theirs_name=name))  # fmt: skip
    return out


def _plain(name: str) -> str:
    """A name compared across spellings: tone marks placed either way (Hoà/Hòa), spaces and
    dashes folded."""
    text = unicodedata.normalize("NFD", name.replace("đ", "d").replace("Đ", "D"))
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    return " ".join(text.replace("–", "-").replace("’", "'").lower().split())


def test_codes_and_names_against_a_second_source() -> None:
    """vietnam-provinces lists the same 34 provinces and 3 321 units; where the two packages
    differ (the official code chosen for a merged commune, a spelling), the difference is
    recorded in geodata/units_2025_crosscheck.csv (the README discusses it): a new one fails."""
    import csv

    with CROSSCHECK.open(encoding="utf-8") as f:
        recorded = list(csv.DictReader(f))
    found = crosscheck()
    assert found == recorded
    kinds = Counter(d["kind"] for d in found)
    assert set(kinds) <= {"official code", "spelling"}  # names of provinces and parents agree
    # every commune listed under another code is one of ours by the same name, in the same province
    assert all(d["ours_code"] for d in found if d["kind"] == "official code")
    assert all(_plain(d["ours_name"]) == _plain(d["theirs_name"]) for d in found)


def test_each_province_is_the_union_of_whole_former_provinces() -> None:
    provinces = by_official("province")
    used = Counter(c for p in provinces.values() for c in p["formed_from"])
    former_codes = {c for c in former() if c.startswith("VN-")}
    assert set(used) == former_codes and set(used.values()) == {1}  # each exactly once
    assert sorted(provinces["91"]["formed_from"]) == ["VN-44", "VN-47"]  # An Giang, Kiên Giang
    assert sorted(provinces["79"]["formed_from"]) == ["VN-43", "VN-57", "VN-SG"]
    for p in provinces.values():
        geom = geoms()[p["code"]]
        assert geom.is_valid, p["code"]
        parts = sum(area_km2(former()[c]) for c in p["formed_from"])
        assert area_km2(geom) == pytest.approx(parts, rel=1e-3), p["code"]


def test_hoang_sa_and_truong_sa_are_vietnams() -> None:
    paracel, spratly = shapely.Point(112.33, 16.83), shapely.Point(111.92, 8.64)
    assert geoms()["VN-P48"].contains(paracel)  # Đà Nẵng
    assert geoms()["VN-C20333"].contains(paracel)  # Đặc khu Hoàng Sa
    assert by_official("commune")["20333"]["name_local"] == "Đặc khu Hoàng Sa"
    # Trường Sa Lớn: the point is just off the island (the sea rule gives it the special zone)
    truong_sa = geoms()["VN-C22736"]
    assert by_official("commune")["22736"]["name_local"] == "Đặc khu Trường Sa"
    assert geoms()["VN-P56"].buffer(1e-4).covers(truong_sa)  # Khánh Hòa (to the rounding)
    assert truong_sa.distance(spratly) < 0.01  # degrees: about 1 km
    assert former()["VNM"].contains(paracel) and not former()["CHN"].contains(paracel)


def test_commune_polygons_tile_their_province() -> None:
    communes_of: dict[str, list[Any]] = {}
    for f in level("commune"):
        communes_of.setdefault(f["properties"]["parent_code"], []).append(
            geoms()[f["properties"]["code"]]
        )
    for code, parts in communes_of.items():
        assert all(g.is_valid and not g.is_empty for g in parts), code
        union = shapely.union_all(parts)
        # no two communes overlap (beyond rounding), and together they cover the province
        assert sum(g.area for g in parts) == pytest.approx(union.area, rel=1e-4), code
        province = geoms()[code]
        assert province.difference(union).area < 1e-4 * province.area, code


def test_approximate_areas_and_centroids() -> None:
    """How far the approximations are from the official figures (the README reports them)."""
    ratios, inside = [], 0
    for f in level("commune"):
        p = f["properties"]
        geom = geoms()[p["code"]]
        inside += geom.covers(shapely.Point(*p["official_centroid"]))
        if p["official_area_km2"]:
            ratios.append(area_km2(geom) / p["official_area_km2"])
    ratios.sort()
    median = ratios[len(ratios) // 2]
    assert 0.9 < median < 1.1
    assert ratios[len(ratios) // 20] > 0.5 and ratios[-len(ratios) // 20] < 2.0  # 5 % and 95 %
    assert inside >= 0.97 * 3321
    # the two communes the package gives no area still have a polygon
    no_area = [f for f in level("commune") if f["properties"]["official_area_km2"] is None]
    assert len(no_area) == 2 and all(not geoms()[f["properties"]["code"]].is_empty for f in no_area)
    ha_tien = by_official("commune")["30769"]
    assert geoms()["VN-C30769"].contains(shapely.Point(*ha_tien["official_centroid"]))
