"""GET /places (issue 16, "People read Vietnamese"): provinces and communes of both eras and
border posts found by name whatever the accents and the case, ranked, with their extent; and
`display_name` in the reader's language on /places and /jurisdictions.

Every expectation comes from the bundled files (geodata/*.geojson, border_posts.csv) read here
with the standard library and shapely, and from a folding written here (NFD, marks dropped,
đ → d), never from the service's own answers."""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from datetime import date, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from shapely.geometry import Point, shape

from app.i18n import from_accept_language
from conftest import GEODATA

PROBLEM = "application/problem+json"
FORMER_FILE = GEODATA / "jurisdictions.geojson"
UNITS_FILE = GEODATA / "units_2025.geojson"
POSTS_FILE = GEODATA / "border_posts.csv"
# the names of the neighbour countries in Vietnamese
COUNTRIES_VI = {
    "CHN": "Trung Quốc",
    "LAO": "Lào",
    "KHM": "Campuchia",
    "THA": "Thái Lan",
    "VNM": "Việt Nam",
}
TIERS = ("exact", "prefix", "word_prefix", "substring")


def fold(text: str) -> str:
    """Accents and case away, as a person typing without them would write it."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", bare).split())


@cache
def unit_features() -> list[dict[str, Any]]:
    """Provinces of both eras and communes (countries are not searched)."""
    out = []
    for path in (FORMER_FILE, UNITS_FILE):
        for f in json.loads(path.read_text("utf-8"))["features"]:
            if f["properties"]["level"] in ("province", "commune"):
                out.append(f)
    return out


@cache
def by_code() -> dict[str, dict[str, Any]]:
    found = {}
    for path in (FORMER_FILE, UNITS_FILE):
        for f in json.loads(path.read_text("utf-8"))["features"]:
            found[f["properties"]["code"]] = f
    return found


@cache
def posts() -> list[dict[str, str]]:
    with POSTS_FILE.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def today() -> date:
    return datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()


def in_force(p: dict[str, Any]) -> bool:
    start, end = p.get("valid_from"), p.get("valid_to")
    now = today().isoformat()
    return (start is None or start <= now) and (end is None or end > now)


def vietnamese_name(p: dict[str, Any]) -> str:
    """What a Vietnamese reader calls a unit: its type in front unless its name has it."""
    name, kind = p["name_local"], p.get("type_local")
    return f"{kind} {name}" if kind and not name.startswith(kind + " ") else name


def bare(p: dict[str, Any]) -> str:
    name, kind = p["name_local"] or "", p.get("type_local")
    return name[len(kind) + 1 :] if kind and name.startswith(kind + " ") else name


def tier(names: list[str], k: str) -> int | None:
    if k in names:
        return 0
    if any(n.startswith(k) for n in names):
        return 1
    if any(f" {k}" in n for n in names):
        return 2
    if any(k in n for n in names):
        return 3
    return None


def expected(q: str, level: str | None = None) -> list[tuple[str, str]]:
    """(code, match) of every place matching `q`, in the documented order: match, today's
    before former, province < commune < post, then the name."""
    k = fold(q)
    rows = []
    for f in unit_features():
        p = f["properties"]
        if level not in (None, p["level"]):
            continue
        t = tier([fold(p["name_local"] or ""), fold(bare(p)), fold(p["name"])], k)
        if t is not None:
            lvl = 0 if p["level"] == "province" else 1
            rows.append((t, 0 if in_force(p) else 1, lvl, fold(bare(p)), p["code"]))
    if level in (None, "border_post"):
        for row in posts():
            t = tier([fold(row["name_local"]), fold(row["name"])], k)
            if t is not None:
                rows.append((t, 0, 2, fold(row["name"]), row["code"]))
    return [(r[4], TIERS[r[0]]) for r in sorted(rows)]


async def search(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    r = await client.get("/places", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/geo+json")
    body = r.json()
    assert body["type"] == "FeatureCollection"
    features: list[dict[str, Any]] = body["features"]
    return features


def extent_of(code: str) -> tuple[float, float, float, float]:
    """The geometry's extent from the bundled files (a post: its point)."""
    if code in by_code():
        minx, miny, maxx, maxy = shape(by_code()[code]["geometry"]).bounds
        return minx, miny, maxx, maxy
    row = next(r for r in posts() if r["code"] == code)
    lon, lat = float(row["lon"]), float(row["lat"])
    return lon, lat, lon, lat


def code_named(name_local: str, era: str, level: str = "province") -> str:
    found = [
        f["properties"]["code"]
        for f in unit_features()
        if f["properties"]["name_local"] == name_local
        and f["properties"]["level"] == level
        and (f["properties"].get("valid_to") is None) == (era == "today")
    ]
    assert len(found) == 1, (name_local, era, found)
    return str(found[0])


# ---- the examples -------------------------------------------------------------------


async def test_ha_tien_finds_phuong_ha_tien(client: httpx.AsyncClient) -> None:
    code = code_named("Phường Hà Tiên", "today", "commune")
    unit = by_code()[code]["properties"]
    province = by_code()[unit["parent_code"]]["properties"]
    features = await search(client, q="ha tien")
    first = features[0]
    assert first["id"] == code
    p = first["properties"]
    assert p["name_local"] == "Phường Hà Tiên" and p["display_name"] == "Phường Hà Tiên"
    assert p["match"] == "exact" and p["current"] is True and p["became"] is None
    assert p["level"] == "commune" and p["type_local"] == unit["type_local"]
    assert p["parent_code"] == unit["parent_code"]
    assert p["parent"] == vietnamese_name(province) == "Tỉnh An Giang"
    assert first["bbox"] == pytest.approx(extent_of(code), abs=1e-6)
    assert first["geometry"]["type"] == "Point"
    assert first["geometry"]["coordinates"] == pytest.approx(unit["official_centroid"], abs=1e-6)
    # every answer has "ha tien" in one of its names
    for f in features:
        names = [f["properties"]["name_local"], f["properties"]["name"]]
        assert any("ha tien" in fold(n) for n in names), names


async def test_kien_giang_says_where_it_went(client: httpx.AsyncClient) -> None:
    code = code_named("Kiên Giang", "former")
    successors = [
        f["properties"]
        for f in unit_features()
        if code in (f["properties"].get("formed_from") or [])
    ]
    assert [s["code"] for s in successors] == ["VN-P91"]  # An Giang, official code 91
    first = (await search(client, q="kien giang"))[0]
    p = first["properties"]
    assert first["id"] == code and p["name_local"] == "Kiên Giang"
    assert p["current"] is False and p["valid_to"] == "2025-07-01"
    assert p["match"] == "exact"
    assert p["became"] == [
        {
            "code": s["code"],
            "name": s["name"],
            "name_local": s["name_local"],
            "display_name": vietnamese_name(s),
        }
        for s in successors
    ]
    assert p["became"][0]["display_name"] == "Tỉnh An Giang"
    assert first["bbox"] == pytest.approx(extent_of(code), abs=1e-6)


async def test_ha_noi_in_capitals_today_before_the_former(client: httpx.AsyncClient) -> None:
    features = await search(client, q="HA NOI", limit=2)
    today_code, former_code = code_named("Hà Nội", "today"), code_named("Hà Nội", "former")
    assert [f["id"] for f in features] == [today_code, former_code]
    assert [f["properties"]["match"] for f in features] == ["exact", "exact"]
    assert features[0]["properties"]["display_name"] == "Thành phố Hà Nội"
    assert features[1]["properties"]["became"][0]["code"] == today_code


@pytest.mark.parametrize("q", ["da nang", "Đà Nẵng", "ĐÀ NẴNG", "dA nAnG", "Đa Năng"])
async def test_d_with_stroke_folds_to_d(client: httpx.AsyncClient, q: str) -> None:
    features = await search(client, q=q, level="province")
    assert [f["id"] for f in features[:2]] == [
        code_named("Đà Nẵng", "today"),
        code_named("Đà Nẵng", "former"),
    ]
    assert features[0]["properties"]["name_local"] == "Đà Nẵng"


async def test_decomposed_accents_match_too(client: httpx.AsyncClient) -> None:
    q = unicodedata.normalize("NFD", "Phường Hà Tiên")
    assert q != "Phường Hà Tiên"
    first = (await search(client, q=q))[0]
    assert first["properties"]["name_local"] == "Phường Hà Tiên"
    assert first["properties"]["match"] == "exact"


async def test_every_border_post_by_its_name_without_accents(client: httpx.AsyncClient) -> None:
    for row in posts():
        for q in (fold(row["name_local"]), row["name"].upper()):
            features = await search(client, q=q, level="border_post")
            codes = [f["id"] for f in features]
            assert row["code"] in codes, (q, codes)
            found = features[codes.index(row["code"])]
            assert found["properties"]["match"] == "exact"
            assert found["properties"]["display_name"] == row["name_local"]
            assert found["properties"]["level"] == "border_post"
            assert found["bbox"] == pytest.approx(extent_of(row["code"]), abs=1e-9)


async def test_border_post_among_all_places(client: httpx.AsyncClient) -> None:
    row = next(r for r in posts() if r["code"] == "huu-nghi")
    features = await search(client, q="cua khau quoc te huu nghi")
    assert features[0]["id"] == "huu-nghi"
    assert features[0]["properties"]["name_local"] == row["name_local"]
    # a post's parent is today's province around its point
    lon, lat = float(row["lon"]), float(row["lat"])
    around = [
        f["properties"]
        for f in unit_features()
        if f["properties"]["level"] == "province"
        and in_force(f["properties"])
        and shape(f["geometry"]).intersects(Point(lon, lat))
    ]
    if around:
        assert features[0]["properties"]["parent_code"] == around[0]["code"]
        assert features[0]["properties"]["parent"] == vietnamese_name(around[0])


# ---- ranking -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "level"),
    [
        ("ha tien", None),
        ("giang", None),
        ("tien hai", None),
        ("an", None),
        ("binh", "province"),
        ("mong cai", None),
        ("cua khau", "border_post"),
        ("2", None),
    ],
)
async def test_ranking_follows_the_documented_order(
    client: httpx.AsyncClient, q: str, level: str | None
) -> None:
    want = expected(q, level)
    assert want, q
    params: dict[str, Any] = {"q": q, "limit": 50}
    if level:
        params["level"] = level
    features = await search(client, **params)
    got = [(f["id"], f["properties"]["match"]) for f in features]
    assert got == want[:50]


async def test_ranking_tiers_in_one_answer(client: httpx.AsyncClient) -> None:
    """ "tien": exact names, then names starting with it, then a word starting with it, then
    inside a word, each tier today's units first."""
    features = await search(client, q="tien", limit=50)
    tiers = [TIERS.index(f["properties"]["match"]) for f in features]
    assert tiers == sorted(tiers)
    assert {"prefix", "word_prefix"} <= {f["properties"]["match"] for f in features}
    for t in set(tiers):
        current = [
            f["properties"]["current"] for f, ft in zip(features, tiers, strict=True) if ft == t
        ]
        assert current == sorted(current, reverse=True)


async def test_limit_and_level(client: httpx.AsyncClient) -> None:
    assert len(await search(client, q="xa", limit=3)) == 3
    assert len(await search(client, q="xa")) == 10  # the default
    features = await search(client, q="giang", level="commune", limit=50)
    assert features and {f["properties"]["level"] for f in features} == {"commune"}


async def test_bbox_keeps_places_that_meet_it(client: httpx.AsyncClient) -> None:
    """Around Hà Tiên: the commune and the gate are in; Tiên communes elsewhere are out."""
    box = (104.40, 10.30, 104.60, 10.50)
    features = await search(client, q="tien", bbox=",".join(map(str, box)), limit=50)
    codes = {f["id"] for f in features}
    assert code_named("Phường Hà Tiên", "today", "commune") in codes
    assert "ha-tien" in codes
    for f in features:
        minx, miny, maxx, maxy = extent_of(f["id"])
        assert minx <= box[2] and maxx >= box[0] and miny <= box[3] and maxy >= box[1]
    everywhere = {code for code, _ in expected("tien")}
    assert len(everywhere) > len(codes)


async def test_bbox_is_the_extent_of_the_geometry(client: httpx.AsyncClient) -> None:
    """Provinces of both eras (Đà Nẵng's reaches Hoàng Sa), communes, posts."""
    for q in ("da nang", "an giang", "khanh hoa", "phuong ha tien", "xa tien hai", "lao bao"):
        for f in await search(client, q=q, limit=5):
            assert f["bbox"] == pytest.approx(extent_of(f["id"]), abs=1e-6), f["id"]


# ---- names in the reader's language --------------------------------------------------------


async def test_lang_and_accept_language_on_places(client: httpx.AsyncClient) -> None:
    code = code_named("An Giang", "today")
    unit = by_code()[code]["properties"]

    async def first(headers: dict[str, str] | None = None, **params: Any) -> httpx.Response:
        r = await client.get("/places", params={"q": "an giang", **params}, headers=headers)
        assert r.status_code == 200
        assert r.json()["features"][0]["id"] == code
        return r

    cases = [
        ({}, None, "vi"),  # default
        ({"lang": "en"}, None, "en"),
        ({"lang": "vi"}, {"Accept-Language": "en-GB,en;q=0.9"}, "vi"),  # lang wins
        ({}, {"Accept-Language": "en-US,en;q=0.9"}, "en"),
        ({}, {"Accept-Language": "fr-FR,en;q=0.5,vi;q=0.4"}, "en"),
        ({}, {"Accept-Language": "vi-VN,vi;q=0.9,en;q=0.8"}, "vi"),
        ({}, {"Accept-Language": "de"}, "vi"),  # nothing we speak: the default
    ]
    for params, headers, lang in cases:
        r = await first(headers, **params)
        assert r.headers["content-language"] == lang
        assert "accept-language" in r.headers["vary"].lower()
        props = r.json()["features"][0]["properties"]
        assert props["display_name"] == (unit["name"] if lang == "en" else "Tỉnh An Giang")
        assert props["name_local"] == unit["name_local"] and props["name"] == unit["name"]


async def test_lang_on_jurisdictions(client: httpx.AsyncClient) -> None:
    hcmc = by_code()["VN-P79"]["properties"]
    r = await client.get("/jurisdictions/VN-P79")
    assert r.status_code == 200 and r.headers["content-language"] == "vi"
    assert r.json()["properties"]["display_name"] == vietnamese_name(hcmc)
    assert r.json()["properties"]["display_name"] == "Thành phố Hồ Chí Minh"
    r = await client.get("/jurisdictions/VN-P79", headers={"Accept-Language": "en"})
    assert r.json()["properties"]["display_name"] == hcmc["name"]

    commune = code_named("Phường Hà Tiên", "today", "commune")
    r = await client.get(f"/jurisdictions/{commune}", params={"lang": "en"})
    assert r.json()["properties"]["display_name"] == by_code()[commune]["properties"]["name"]

    listed = (await client.get("/jurisdictions", params={"level": "province"})).json()
    shown = {f["id"]: f["properties"]["display_name"] for f in listed["features"]}
    for f in unit_features():
        p = f["properties"]
        if p["level"] == "province" and in_force(p):
            assert shown[p["code"]] == vietnamese_name(p)

    countries = (await client.get("/jurisdictions", params={"level": "country"})).json()
    assert {f["id"]: f["properties"]["display_name"] for f in countries["features"]} == {
        code: COUNTRIES_VI[code] for code in (f["id"] for f in countries["features"])
    }


async def test_neighbour_countries_in_vietnamese(client: httpx.AsyncClient) -> None:
    english = {
        f["properties"]["code"]: f["properties"]["name"]
        for f in json.loads(FORMER_FILE.read_text("utf-8"))["features"]
        if f["properties"]["level"] == "country"
    }
    vi = (await client.get("/jurisdictions/VNM/neighbours")).json()["features"]
    names = {f["id"]: f["properties"]["display_name"] for f in vi}
    assert {"CHN", "LAO", "KHM"} <= set(names)
    assert names == {code: COUNTRIES_VI[code] for code in names}
    en = (await client.get("/jurisdictions/VNM/neighbours", params={"lang": "en"})).json()
    assert {f["id"]: f["properties"]["display_name"] for f in en["features"]} == {
        code: english[code] for code in names
    }


def test_accept_language_parsing() -> None:
    assert from_accept_language(None) is None
    assert from_accept_language("") is None
    assert from_accept_language("*") is None
    assert from_accept_language("en") == "en"
    assert from_accept_language("vi-VN") == "vi"
    assert from_accept_language("en;q=0.2, vi;q=0.8") == "vi"
    assert from_accept_language("vi;q=0, en;q=0.1") == "en"  # q=0: not vi
    assert from_accept_language("en, vi") == "en"  # a tie: the first listed
    assert from_accept_language("EN-us") == "en"
    assert from_accept_language("en;q=abc, fr") is None  # unreadable weights are no weight
    assert from_accept_language(";;,,,") is None


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": ""}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "-–/"}, "q"),
        ({"q": "中国"}, "q"),
        ({"q": "a" * 101}, "q"),
        ({"q": "an", "bbox": "104,10,105"}, "bbox"),
        ({"q": "an", "bbox": "104,10,a,11"}, "bbox"),
        ({"q": "an", "bbox": "105,10,104,11"}, "bbox"),
        ({"q": "an", "bbox": "104,10,190,11"}, "bbox"),
        ({"q": "an", "bbox": "104,10,nan,11"}, "bbox"),
        ({"q": "an", "limit": 0}, "limit"),
        ({"q": "an", "limit": 51}, "limit"),
        ({"q": "an", "level": "district"}, "level"),
        ({"q": "an", "lang": "fr"}, "lang"),
    ],
)
async def test_bad_input_is_a_422_problem(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    r = await client.get("/places", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == 422 and body["detail"]
    named = body.get("field") or " ".join(e["location"] for e in body.get("errors", []))
    assert field in named, body
