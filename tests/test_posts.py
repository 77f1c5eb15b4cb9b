"""Border posts: real international gates, each within 15 km of its national border."""

from __future__ import annotations

import httpx
import pytest
import shapely
from sqlalchemy.ext.asyncio import AsyncSession

from app.posts import service
from conftest import GEODATA
from geo_reference import features, lines_only, nearest_line_km


async def test_posts_listed_with_properties(client: httpx.AsyncClient) -> None:
    r = await client.get("/border-posts")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/geo+json"
    feats = r.json()["features"]
    assert len(feats) >= 25
    names = {f["properties"]["name"] for f in feats}
    for gate in ("Huu Nghi", "Mong Cai", "Lao Cai", "Lao Bao", "Cau Treo", "Moc Bai", "Xa Mat"):
        assert gate in names
    for f in feats:
        p = f["properties"]
        assert p["kind"] == "border_gate"
        assert p["border"] in {"VNM-CHN", "VNM-LAO", "VNM-KHM"}
        assert p["position_approximate"] is True
        assert p["agency"]
        lon, lat = f["geometry"]["coordinates"]
        assert 102 < lon < 110 and 8 < lat < 24  # lon, lat order (RFC 7946)


async def test_each_post_within_15_km_of_its_border(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    feats = features(GEODATA / "jurisdictions.geojson")
    vn = feats["VNM"][1]
    lines = {
        f"VNM-{c}": lines_only(vn.boundary.intersection(feats[c][1].boundary))
        for c in ("CHN", "LAO", "KHM")
    }
    db_km = await service.distances_to_border_km(session=session)
    posts = (await client.get("/border-posts")).json()["features"]
    for f in posts:
        lon, lat = f["geometry"]["coordinates"]
        own = nearest_line_km(lon, lat, lines[f["properties"]["border"]])
        nearest = min(nearest_line_km(lon, lat, line) for line in lines.values())
        assert own <= 15.0, f["id"]
        assert own == pytest.approx(nearest, abs=0.2), f"{f['id']} is nearer another border"
        # the reference overestimates by at most ~0.1 km (densified to ~200 m)
        assert db_km[f["id"]] == pytest.approx(nearest, abs=0.15), f["id"]
        assert vn.buffer(0.2).contains(shapely.Point(lon, lat)), f["id"]


async def test_filter_by_border_and_kind(client: httpx.AsyncClient) -> None:
    r = await client.get("/border-posts", params={"border": "VNM-KHM"})
    feats = r.json()["features"]
    assert feats and all(f["properties"]["border"] == "VNM-KHM" for f in feats)
    none = await client.get("/border-posts", params={"kind": "coast_guard"})
    assert none.json()["features"] == []
    bad = await client.get("/border-posts", params={"kind": "submarine"})
    assert bad.status_code == 422
