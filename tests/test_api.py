"""HTTP surface of the foundation: GeoJSON shapes, content types, problem+json errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import shapely
from shapely.geometry import MultiPolygon, shape

from app import migrate
from conftest import GEODATA

PROBLEM = "application/problem+json"


async def test_health(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["schema"] == migrate.head_revision()


def _bundled(name: str) -> dict[str, dict[str, Any]]:
    """code -> Feature of a bundled boundary file, read without the service."""
    fc = json.loads((GEODATA / name).read_text("utf-8"))
    return {f["properties"]["code"]: f for f in fc["features"]}


def _codes(name: str, level: str) -> list[str]:
    return sorted(c for c, f in _bundled(name).items() if f["properties"]["level"] == level)


# the properties GET /jurisdictions gives (docs/api.md "Jurisdictions")
LISTED = ("code", "name", "name_local", "level", "parent_code", "country", "valid_from",
          "valid_to", "official_code", "type_local", "formed_from", "geometry_approximate",
          "source")  # fmt: skip


async def test_provinces_collection(client: httpx.AsyncClient) -> None:
    # today (default): the 34 provinces of 1 July 2025
    r = await client.get("/jurisdictions", params={"level": "province"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    assert fc["type"] == "FeatureCollection"
    codes = [f["id"] for f in fc["features"]]
    assert codes == _codes("units_2025.geojson", "province") and len(codes) == 34
    f = next(x for x in fc["features"] if x["id"] == "VN-P91")
    source = _bundled("units_2025.geojson")["VN-P91"]
    expected = {k: source["properties"].get(k) for k in LISTED}
    assert expected["formed_from"] == ["VN-44", "VN-47"]  # An Giang and Kien Giang
    assert {k: f["properties"].get(k) for k in LISTED} == expected
    geom = shape(f["geometry"])
    assert isinstance(geom, MultiPolygon) and geom.is_valid
    assert all(shapely.is_ccw(p.exterior) for p in geom.geoms)  # RFC 7946
    assert geom.symmetric_difference(shape(source["geometry"])).area < 1e-4 * geom.area

    # before 2025-07-01: the 63 former provinces
    r = await client.get("/jurisdictions", params={"level": "province", "at": "2020-01-01"})
    fc = r.json()
    codes = [f["id"] for f in fc["features"]]
    assert codes == _codes("jurisdictions.geojson", "province") and len(codes) == 63
    last_day = await client.get("/jurisdictions", params={"level": "province", "at": "2025-06-30"})
    assert [f["id"] for f in last_day.json()["features"]] == codes
    first_day = await client.get("/jurisdictions", params={"level": "province", "at": "2025-07-01"})
    assert len(first_day.json()["features"]) == 34
    f = next(x for x in fc["features"] if x["id"] == "VN-44")
    assert {k: f["properties"].get(k) for k in LISTED} == {
        "code": "VN-44",
        "name": "An Giang",
        "name_local": "An Giang",
        "level": "province",
        "parent_code": "VNM",
        "country": "VNM",
        "valid_from": "2008-08-01",
        "valid_to": "2025-07-01",
        "official_code": None,
        "type_local": None,
        "formed_from": None,
        "geometry_approximate": False,
        "source": _bundled("jurisdictions.geojson")["VN-44"]["properties"]["source"],
    }
    geom = shape(f["geometry"])
    assert geom.is_valid and isinstance(geom, MultiPolygon)
    # RFC 7946: lon, lat; exterior rings counter-clockwise
    lon, lat = geom.representative_point().coords[0]
    assert 104 < lon < 106 and 10 < lat < 11
    assert all(shapely.is_ccw(p.exterior) for p in geom.geoms)


async def test_filters(client: httpx.AsyncClient) -> None:
    countries = _codes("jurisdictions.geojson", "country")
    provinces = _codes("units_2025.geojson", "province")
    communes = _codes("units_2025.geojson", "commune")
    everything = (await client.get("/jurisdictions")).json()["features"]
    # today: countries, then the 34 provinces, then the 3 321 communes, each by code
    assert [f["id"] for f in everything] == countries + provinces + communes
    assert len(everything) == 5 + 34 + 3321
    assert [f["id"] for f in everything[:5]] == ["CHN", "KHM", "LAO", "THA", "VNM"]
    former = (await client.get("/jurisdictions", params={"at": "2020-01-01"})).json()["features"]
    assert [f["id"] for f in former] == countries + _codes("jurisdictions.geojson", "province")
    assert len(former) == 68
    children = (await client.get("/jurisdictions", params={"parent": "VNM"})).json()
    assert [f["id"] for f in children["features"]] == provinces
    old = (await client.get("/jurisdictions", params={"parent": "VNM", "at": "2020-01-01"})).json()
    assert len(old["features"]) == 63
    in_an_giang = (await client.get("/jurisdictions", params={"parent": "VN-P91"})).json()
    assert [f["id"] for f in in_an_giang["features"]] == sorted(
        c for c, f in _bundled("units_2025.geojson").items()
        if f["properties"]["parent_code"] == "VN-P91"
    )  # fmt: skip
    lao = (await client.get("/jurisdictions", params={"country": "LAO"})).json()
    assert [f["id"] for f in lao["features"]] == ["LAO"]
    none = (await client.get("/jurisdictions", params={"parent": "VN-44"})).json()
    assert none == {"type": "FeatureCollection", "features": []}


async def test_simplify_shrinks_and_stays_valid(client: httpx.AsyncClient) -> None:
    for params in ({}, {"at": "2020-01-01"}):
        full = await client.get("/jurisdictions", params={"level": "province", **params})
        thin = await client.get(
            "/jurisdictions", params={"level": "province", "simplify": 1000, **params}
        )
        assert len(thin.content) < len(full.content) / 2
        feats = thin.json()["features"]
        assert len(feats) == (63 if params else 34)
        assert all(shape(f["geometry"]).is_valid for f in feats)


async def test_one_jurisdiction(client: httpx.AsyncClient) -> None:
    r = await client.get("/jurisdictions/VN-39")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/geo+json"
    f = r.json()
    assert f["type"] == "Feature" and f["id"] == "VN-39"
    assert (f["properties"]["name"], f["properties"]["name_local"]) == ("Dong Nai", "Đồng Nai")
    country = (await client.get("/jurisdictions/VNM")).json()
    assert country["properties"]["level"] == "country"
    assert country["properties"]["parent_code"] is None


async def test_unknown_code_is_404_problem(client: httpx.AsyncClient) -> None:
    for path in ("/jurisdictions/VN-99", "/jurisdictions/VN-99/neighbours"):
        r = await client.get(path)
        assert r.status_code == 404
        assert r.headers["content-type"] == PROBLEM
        body = r.json()
        assert body["status"] == 404
        assert "VN-99" in body["detail"]
        assert body["instance"] == path


async def test_neighbours(client: httpx.AsyncClient) -> None:
    r = await client.get("/jurisdictions/VN-51/neighbours")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/geo+json"
    feats = {f["id"]: f["properties"] for f in r.json()["features"]}
    assert set(feats) == {"VN-50", "VN-52", "VN-49"}
    ben_tre = feats["VN-50"]
    assert ben_tre["touches"] is False
    assert 1800 < ben_tre["gap_m"] < 2100
    assert ben_tre["shared_km"] > 5
    assert ben_tre["adjacency_method"] == "gap"
    kms = [f["properties"]["shared_km"] for f in r.json()["features"]]
    assert kms == sorted(kms, reverse=True)
    vietnam = (await client.get("/jurisdictions/VNM/neighbours")).json()["features"]
    assert {f["id"] for f in vietnam} == {"CHN", "LAO", "KHM"}
    assert all(f["properties"]["touches"] for f in vietnam)


async def test_bad_parameters_are_422_problem(client: httpx.AsyncClient) -> None:
    for params in ({"level": "galaxy"}, {"simplify": -1}, {"country": "vn"}):
        r = await client.get("/jurisdictions", params=params)
        assert r.status_code == 422, params
        assert r.headers["content-type"] == PROBLEM
        body = r.json()
        assert body["errors"] and body["errors"][0]["location"].startswith("query.")


async def test_unknown_route_is_problem(client: httpx.AsyncClient) -> None:
    r = await client.get("/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    wrong_method = await client.delete("/jurisdictions")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == PROBLEM


async def test_openapi_lists_the_endpoints(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for p in (
        "/healthz",
        "/readyz",
        "/jurisdictions",
        "/jurisdictions/{code}",
        "/jurisdictions/{code}/neighbours",
        "/borders",
        "/border-posts",
    ):
        assert p in paths
