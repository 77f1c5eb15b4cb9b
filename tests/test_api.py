"""HTTP surface of the foundation: GeoJSON shapes, content types, problem+json errors."""

from __future__ import annotations

import httpx
import shapely
from shapely.geometry import MultiPolygon, shape

from app import migrate

PROBLEM = "application/problem+json"


async def test_health(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["schema"] == migrate.head_revision()


async def test_provinces_collection(client: httpx.AsyncClient) -> None:
    r = await client.get("/jurisdictions", params={"level": "province"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    assert fc["type"] == "FeatureCollection"
    assert len(fc["features"]) == 63
    codes = [f["id"] for f in fc["features"]]
    assert codes == sorted(codes)
    f = next(x for x in fc["features"] if x["id"] == "VN-44")
    assert f["properties"] | {"valid_from": None, "valid_to": None, "source": None} == {
        "code": "VN-44",
        "name": "An Giang",
        "name_local": "An Giang",
        "level": "province",
        "parent_code": "VNM",
        "country": "VNM",
        "valid_from": None,
        "valid_to": None,
        "source": None,
    }
    geom = shape(f["geometry"])
    assert geom.is_valid and isinstance(geom, MultiPolygon)
    # RFC 7946: lon, lat; exterior rings counter-clockwise
    lon, lat = geom.representative_point().coords[0]
    assert 104 < lon < 106 and 10 < lat < 11
    assert all(shapely.is_ccw(p.exterior) for p in geom.geoms)


async def test_filters(client: httpx.AsyncClient) -> None:
    everything = (await client.get("/jurisdictions")).json()["features"]
    assert len(everything) == 68
    assert [f["id"] for f in everything[:5]] == ["CHN", "KHM", "LAO", "THA", "VNM"]
    children = (await client.get("/jurisdictions", params={"parent": "VNM"})).json()
    assert len(children["features"]) == 63
    lao = (await client.get("/jurisdictions", params={"country": "LAO"})).json()
    assert [f["id"] for f in lao["features"]] == ["LAO"]
    none = (await client.get("/jurisdictions", params={"parent": "VN-44"})).json()
    assert none == {"type": "FeatureCollection", "features": []}


async def test_simplify_shrinks_and_stays_valid(client: httpx.AsyncClient) -> None:
    full = await client.get("/jurisdictions", params={"level": "province"})
    thin = await client.get("/jurisdictions", params={"level": "province", "simplify": 1000})
    assert len(thin.content) < len(full.content) / 2
    feats = thin.json()["features"]
    assert len(feats) == 63
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
