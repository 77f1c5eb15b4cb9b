"""National border segments: derived in PostGIS, lengths checked against pyproj's Geod."""

from __future__ import annotations

import httpx
import pytest

from conftest import GEODATA
from geo_reference import features, geodesic_km, lines_only


async def test_segments_and_lengths(client: httpx.AsyncClient) -> None:
    r = await client.get("/borders")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    by_code = {f["id"]: f for f in fc["features"]}
    assert set(by_code) == {"VNM-CHN", "VNM-LAO", "VNM-KHM"}
    feats = features(GEODATA / "jurisdictions.geojson")
    vn = feats["VNM"][1]
    for code, f in by_code.items():
        other = feats[code.split("-")[1]][1]
        expected = geodesic_km(lines_only(vn.boundary.intersection(other.boundary)))
        props = f["properties"]
        assert props["country_a"] == "VNM" and props["country_b"] == code[4:]
        assert props["length_km"] == pytest.approx(expected, rel=0.005), code
        assert f["geometry"]["type"] == "MultiLineString"
    # Natural Earth generalises: the true borders are ~1281 (CN), ~2067 (LA), ~1137 (KH) km.
    assert 900 < by_code["VNM-CHN"]["properties"]["length_km"] < 1300


async def test_filter_by_country(client: httpx.AsyncClient) -> None:
    r = await client.get("/borders", params={"country": "LAO"})
    assert [f["id"] for f in r.json()["features"]] == ["VNM-LAO"]
    bad = await client.get("/borders", params={"country": "laos"})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
