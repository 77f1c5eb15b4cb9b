"""Access control: every route × every role × in-scope / cooperation-zone / out-of-scope data.

A principal bound to An Giang (VN-44) sees incidents in An Giang plus those in its neighbours
within the cooperation distance (10 km) of An Giang; nothing else — not in lists, exports,
single reads, histories or counts. The fixture points are checked independently (shapely +
pyproj) so the test does not trust the scope code it is testing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import shapely
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from conftest import GEODATA, app_client, make_key
from geo_reference import features, local_metric, projected

PROBLEM = "application/problem+json"
ROLES = ("viewer", "officer", "analyst", "admin")
UNIT = "An Giang PC unit 3"
HOTSPOT_BOX = "bbox:104.3,9.8,106.3,11.2"  # An Giang and Dong Thap, not Ha Noi


def km_to(poly: Any, lon: float, lat: float) -> float:
    """Geodesic-ish distance (km) from a point to a polygon, in a local metric projection."""
    fwd, _ = local_metric(lon, lat)
    return float(projected(poly, fwd).distance(projected(shapely.Point(lon, lat), fwd))) / 1000


@dataclass
class World:
    inside: str  # in An Giang
    zone: str  # in Dong Thap, within 10 km of An Giang
    far_neighbour: str  # in Dong Thap, more than 20 km from An Giang
    elsewhere: str  # in Ha Noi
    ids: dict[str, str]


async def _point(session: AsyncSession, sql: str) -> tuple[float, float]:
    row = (await session.execute(text(sql))).one()
    return float(row[0]), float(row[1])


@pytest.fixture
async def world(client: httpx.AsyncClient, session: AsyncSession) -> World:
    feats = features(GEODATA / "jurisdictions.geojson")
    an_giang, dong_thap = feats["VN-44"][1], feats["VN-45"][1]
    zone_pt = await _point(
        session,
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(ST_Intersection(b.geom,"
        " ST_Buffer(a.geom::geography, 4000)::geometry)) p FROM jurisdiction a, jurisdiction b"
        " WHERE a.code = 'VN-44' AND b.code = 'VN-45') x",
    )
    far_pt = await _point(
        session,
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(ST_Difference(b.geom,"
        " ST_Buffer(a.geom::geography, 25000)::geometry)) p FROM jurisdiction a, jurisdiction b"
        " WHERE a.code = 'VN-44' AND b.code = 'VN-45') x",
    )
    points = {
        "inside": (105.435, 10.386),
        "zone": zone_pt,
        "far_neighbour": far_pt,
        "elsewhere": (105.854, 21.028),
    }
    # independent checks of where the fixture points are
    assert an_giang.contains(shapely.Point(points["inside"]))
    assert dong_thap.contains(shapely.Point(zone_pt)) and km_to(an_giang, *zone_pt) < 9.5
    assert dong_thap.contains(shapely.Point(far_pt)) and km_to(an_giang, *far_pt) > 20
    assert km_to(an_giang, *points["elsewhere"]) > 500
    ids = {}
    for name, (lon, lat) in points.items():
        r = await client.post(
            "/incidents",
            json={
                "category": "smuggling",
                "severity": 3,
                "occurred_at": "2025-05-05T05:05:05Z",
                "location": {"type": "Point", "coordinates": [lon, lat]},
                "unit": UNIT if name == "inside" else "Dong Thap PC",
            },
        )
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    return World(ids=ids, **ids)


@pytest.fixture
async def clients(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """One client per role bound to An Giang, plus a national admin and an anonymous one."""
    out: dict[str, httpx.AsyncClient] = {}
    for role in ROLES:
        key = await make_key(session, role, "VN-44", UNIT if role == "officer" else None)
        out[role] = app_client(engine, session, settings, key)
    out["national"] = app_client(engine, session, settings, await make_key(session, "admin"))
    out["anonymous"] = app_client(engine, session, settings, None)
    try:
        yield out
    finally:
        for c in out.values():
            await c.aclose()


VISIBLE = {"inside", "zone"}
HIDDEN = {"far_neighbour", "elsewhere"}


def assert_no_leak(body: str, world: World, visible: set[str]) -> None:
    for name in HIDDEN | VISIBLE:
        if name not in visible:
            assert world.ids[name] not in body, f"{name} leaked"


async def test_list_and_count_by_role(world: World, clients: dict[str, httpx.AsyncClient]) -> None:
    for role in ROLES:
        r = await clients[role].get("/incidents", params={"limit": 1000, "count": "true"})
        if role == "viewer":
            assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
            assert_no_leak(r.text, world, set())
            continue
        assert r.status_code == 200, (role, r.text)
        got = {f["id"] for f in r.json()["features"]}
        assert got == {world.ids[n] for n in VISIBLE}, role
        assert r.json()["numberMatched"] == 2
        assert_no_leak(r.text, world, VISIBLE)
    national = (await clients["national"].get("/incidents", params={"limit": 1000})).json()
    assert {f["id"] for f in national["features"]} == set(world.ids.values())
    # filters cannot widen the scope
    r = await clients["analyst"].get("/incidents", params={"jurisdiction": "VN-HN"})
    assert r.json()["features"] == []
    r = await clients["analyst"].get("/incidents", params={"bbox": "105.5,20.5,106.5,21.5"})
    assert r.json()["features"] == [] and r.json()["numberMatched"] == 0


async def test_single_reads_and_history(
    world: World, clients: dict[str, httpx.AsyncClient]
) -> None:
    for role in ROLES:
        for name, ident in world.ids.items():
            for path in (f"/incidents/{ident}", f"/incidents/{ident}/history"):
                r = await clients[role].get(path)
                expected = 403 if role == "viewer" else 200 if name in VISIBLE else 404
                assert r.status_code == expected, (role, name, path, r.text)
                if expected != 200:
                    assert r.headers["content-type"] == PROBLEM
                    assert "smuggling" not in r.text


async def test_export_by_role(world: World, clients: dict[str, httpx.AsyncClient]) -> None:
    for role in ROLES:
        for fmt in ("geojson", "csv"):
            r = await clients[role].get("/incidents/export", params={"format": fmt})
            if role in ("viewer", "officer"):
                assert r.status_code == 403, (role, fmt)
                continue
            assert r.status_code == 200
            assert world.ids["inside"] in r.text and world.ids["zone"] in r.text
            assert_no_leak(r.text, world, VISIBLE)


async def test_create_by_role_and_area(world: World, clients: dict[str, httpx.AsyncClient]) -> None:
    def body(lon: float, lat: float) -> dict[str, Any]:
        return {
            "category": "fraud",
            "severity": 2,
            "occurred_at": "2025-06-06T06:06:06Z",
            "location": {"type": "Point", "coordinates": [lon, lat]},
            "unit": "someone else",
        }

    for role in ROLES:
        r = await clients[role].post("/incidents", json=body(105.44, 10.39))
        if role in ("viewer", "analyst"):
            assert r.status_code == 403, role
            continue
        assert r.status_code == 201, (role, r.text)
        if role == "officer":
            assert r.json()["properties"]["unit"] == UNIT  # officers record for their unit
    outside = await clients["officer"].post("/incidents", json=body(105.854, 21.028))
    assert outside.status_code == 403 and outside.json()["field"] == "location"
    count = (await clients["national"].get("/incidents", params={"category": "fraud"})).json()
    assert count["numberReturned"] == 2  # the refused one left nothing behind


async def test_patch_and_delete_by_role(
    world: World, clients: dict[str, httpx.AsyncClient]
) -> None:
    own, zone, far = world.ids["inside"], world.ids["zone"], world.ids["elsewhere"]
    patch = {"severity": 5}
    for role in ("viewer", "analyst"):
        r = await clients[role].patch(f"/incidents/{own}", json=patch, headers={"If-Match": '"v1"'})
        assert r.status_code == 403, role
    # officers: their unit's incidents only; the zone incident belongs to another unit
    r = await clients["officer"].patch(
        f"/incidents/{zone}", json=patch, headers={"If-Match": '"v1"'}
    )
    assert r.status_code == 403
    r = await clients["officer"].patch(
        f"/incidents/{far}", json=patch, headers={"If-Match": '"v1"'}
    )
    assert r.status_code == 404  # out of scope: existence not revealed
    r = await clients["officer"].patch(
        f"/incidents/{own}", json=patch, headers={"If-Match": '"v1"'}
    )
    assert r.status_code == 200 and r.json()["properties"]["severity"] == 5
    moved = await clients["officer"].patch(
        f"/incidents/{own}",
        json={"location": {"type": "Point", "coordinates": [105.854, 21.028]}},
        headers={"If-Match": '"v2"'},
    )
    assert moved.status_code == 403  # cannot move an incident out of its own area
    r = await clients["admin"].patch(f"/incidents/{zone}", json=patch, headers={"If-Match": '"v1"'})
    assert r.status_code == 200  # a scoped admin may correct anything in scope
    assert (await clients["admin"].delete(f"/incidents/{far}")).status_code == 404
    assert (await clients["analyst"].delete(f"/incidents/{own}")).status_code == 403
    assert (await clients["officer"].delete(f"/incidents/{own}")).status_code == 204
    assert (await clients["national"].get(f"/incidents/{own}")).status_code == 404


async def test_reference_data_and_admin_routes(
    world: World, clients: dict[str, httpx.AsyncClient]
) -> None:
    for role in ROLES:
        for path in ("/jurisdictions/VN-44", "/borders", "/border-posts", "/categories", "/me"):
            assert (await clients[role].get(path)).status_code == 200, (role, path)
        for path in ("/principals", "/audit"):
            r = await clients[role].get(path)
            assert r.status_code == (200 if role == "admin" else 403), (role, path)
    import_r = await clients["admin"].post(
        "/incidents/import",
        content=b"lat,lon,occurred_at,category\n",
        headers={"content-type": "text/csv"},
    )
    assert import_r.status_code == 403  # imports are for national admins
    anon = clients["anonymous"]
    for method, path in (
        ("GET", "/incidents"),
        ("GET", f"/incidents/{world.inside}"),
        ("GET", "/jurisdictions"),
        ("GET", "/categories"),
        ("POST", "/incidents"),
        ("GET", "/incidents/export"),
        ("GET", "/audit"),
        ("GET", "/me"),
    ):
        r = await anon.request(method, path)
        assert r.status_code == 401, (method, path)
        assert r.headers["content-type"] == PROBLEM
        assert r.headers["www-authenticate"].startswith("Bearer")
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):
        assert (await anon.get(path)).status_code == 200, path


async def test_bad_and_revoked_keys(
    engine: AsyncEngine, session: AsyncSession, settings: Settings, client: httpx.AsyncClient
) -> None:
    created = await client.post(
        "/principals", json={"name": "temp", "role": "analyst", "jurisdiction": "VN-44"}
    )
    assert created.status_code == 201
    key, pid = created.json()["key"], created.json()["principal"]["id"]
    assert "key_hash" not in created.text
    async with app_client(engine, session, settings, key) as c:
        assert (await c.get("/me")).json()["jurisdiction"] == "VN-44"
        rotated = await client.post(f"/principals/{pid}/rotate")
        new_key = rotated.json()["key"]
        assert (await c.get("/me")).status_code == 401  # the old key is dead at once
    async with app_client(engine, session, settings, new_key) as c:
        assert (await c.get("/me")).status_code == 200
        await client.post(f"/principals/{pid}/revoke")
        assert (await c.get("/me")).status_code == 401
    for bad in ("nonsense", "bw_short_x", new_key[:-1] + ("A" if new_key[-1] != "A" else "B"), ""):
        async with app_client(engine, session, settings, None) as c:
            r = await c.get("/me", headers={"Authorization": f"Bearer {bad}"})
            assert r.status_code == 401, bad
            r = await c.get("/me", headers={"X-API-Key": bad})
            assert r.status_code == 401, bad
    async with app_client(engine, session, settings, None) as c:
        assert (await c.get("/me", headers={"Authorization": "Basic abc"})).status_code == 401
    bad_body = await client.post("/principals", json={"name": "x", "role": "god"})
    assert bad_body.status_code == 422
    unknown = await client.post(
        "/principals", json={"name": "x", "role": "viewer", "jurisdiction": "VN-99"}
    )
    assert unknown.status_code == 422
    stored = (
        await session.execute(
            text("SELECT key_hash, key_prefix FROM principal WHERE id = :i"), {"i": pid}
        )
    ).one()
    assert new_key not in "".join(stored) and key not in "".join(stored)


async def test_audit_log(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/incidents",
        json={
            "category": "weapons",
            "severity": 4,
            "occurred_at": "2025-01-01T00:00:00Z",
            "location": {"type": "Point", "coordinates": [103.97, 22.5]},
        },
    )
    ident = r.json()["id"]
    await client.patch(f"/incidents/{ident}", json={"severity": 5}, headers={"If-Match": '"v1"'})
    await client.post("/principals", json={"name": "auditor test", "role": "viewer"})
    log = (await client.get("/audit", params={"limit": 50})).json()["entries"]
    mine = [e for e in log if e["entity_id"] == ident]
    assert [e["action"] for e in mine] == ["update", "create"]
    assert mine[0]["before"]["severity"] == 4 and mine[0]["after"]["severity"] == 5
    assert mine[1]["before"] is None and mine[1]["after"]["category"] == "weapons"
    assert mine[0]["actor"].startswith("principal:")
    key_events = [e for e in log if e["entity_type"] == "principal"]
    assert key_events and key_events[0]["action"] == "key_create"
    assert "key" not in key_events[0]["after"] and "key_hash" not in key_events[0]["after"]
    only = (await client.get("/audit", params={"entity_id": ident, "action": "update"})).json()
    assert len(only["entries"]) == 1
    # read-only through the API
    for method in ("POST", "PATCH", "DELETE", "PUT"):
        assert (await client.request(method, "/audit")).status_code == 405
    paged = (await client.get("/audit", params={"limit": 1})).json()
    assert paged["next_cursor"]
    second = (
        await client.get("/audit", params={"limit": 1, "cursor": paged["next_cursor"]})
    ).json()
    assert second["entries"][0]["id"] != paged["entries"][0]["id"]


async def test_rate_limit(engine: AsyncEngine, session: AsyncSession) -> None:
    settings = Settings(environment="test", rate_limit="3/minute")
    key = await make_key(session, "analyst")
    async with app_client(engine, session, settings, key) as c:
        codes = [(await c.get("/me")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = await c.get("/me")
        assert r.status_code == 429 and r.headers["content-type"] == PROBLEM
        assert 1 <= int(r.headers["retry-after"]) <= 60
    other = await make_key(session, "analyst")
    async with app_client(engine, session, settings, other) as c:
        assert (await c.get("/me")).status_code == 200  # per principal, not global


async def test_tiles_have_a_rate_limit_of_their_own(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    settings = Settings(environment="test", rate_limit="2/minute", tile_rate_limit="4/minute")
    key = await make_key(session, "analyst")
    async with app_client(engine, session, settings, key) as c:
        tiles = [(await c.get("/tiles/borders/0/0/0.mvt")).status_code for _ in range(5)]
        assert tiles == [200, 200, 200, 200, 429]
        # the tiles did not use up the API budget, and the API does not use up the tiles'
        assert [(await c.get("/me")).status_code for _ in range(3)] == [200, 200, 429]
        r = await c.get("/tiles/borders/0/0/0.mvt")
        assert r.status_code == 429 and r.headers["content-type"] == PROBLEM


async def test_public_reference_setting_and_cors(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    settings = Settings(
        environment="test", public_reference_data=True, cors_origins=["https://map.example"]
    )
    async with app_client(engine, session, settings, None) as c:
        assert (await c.get("/jurisdictions/VN-44")).status_code == 200
        assert (await c.get("/incidents")).status_code == 401
        pre = await c.options(
            "/incidents",
            headers={"Origin": "https://map.example", "Access-Control-Request-Method": "GET"},
        )
        assert pre.headers["access-control-allow-origin"] == "https://map.example"
        other = await c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_analysis_routes_by_role_and_scope(
    world: World, clients: dict[str, httpx.AsyncClient]
) -> None:
    """Aggregates are open to viewers but count only what the key may see; incident-level
    analysis (nearby, shared zone) needs a reader role and never shows hidden incidents."""
    aggregates = [
        ("/analysis/stats", {"group_by": "category"}),
        ("/analysis/border-zone", {}),
        ("/analysis/border-posts", {}),
        ("/analysis/cross-boundary", {"km": 50}),
        ("/jurisdictions/VN-44/neighbours", {}),
        ("/analysis/hotspots", {"area": HOTSPOT_BOX, "cell_km": 10}),
        ("/analysis/clusters", {"eps_m": 50_000, "min_points": 2}),
    ]
    incident_level = [
        ("/incidents/nearby", {"lon": 105.435, "lat": 10.386, "radius_m": 100_000, "limit": 500}),
        ("/incidents/nearby", {"lon": 105.854, "lat": 21.028, "radius_m": 1000}),
        ("/jurisdictions/VN-44/shared-zone/VN-45", {"km": 50}),
    ]
    for role in ROLES:
        c = clients[role]
        for path, params in aggregates:
            r = await c.get(path, params=params)
            assert r.status_code == 200, (role, path, r.text)
            assert_no_leak(r.text, world, set())  # aggregates never carry incident ids
        stats = (await c.get("/analysis/stats", params={"group_by": "category"})).json()
        assert stats["total"] == 2, role  # inside + cooperation zone only
        neighbours = (await c.get("/jurisdictions/VN-44/neighbours")).json()["features"]
        counts = {f["id"]: f["properties"]["incident_count"] for f in neighbours}
        assert counts["VN-45"] == 1, role  # the zone incident, not the far one
        grid = (await c.get("/analysis/hotspots", params={"area": HOTSPOT_BOX})).json()
        assert grid["incidents"] == 2 and grid["scope"] == "VN-44", role
        assert sum(f["properties"]["count"] for f in grid["features"]) == 2, role
        dbscan = (await c.get("/analysis/clusters", params={"min_points": 2})).json()
        assert dbscan["incidents"] == 2, role
        for path, params in incident_level:
            r = await c.get(path, params=params)
            if role == "viewer":
                assert r.status_code == 403, (role, path)
                continue
            assert r.status_code == 200, (role, path, r.text)
            assert_no_leak(r.text, world, VISIBLE)
    national = (
        await clients["national"].get("/analysis/stats", params={"group_by": "category"})
    ).json()
    assert national["total"] == 4
    grid = await clients["national"].get("/analysis/hotspots", params={"area": HOTSPOT_BOX})
    assert grid.json()["incidents"] == 3  # all but Ha Noi, which is outside the box
    dbscan = await clients["national"].get("/analysis/clusters", params={"min_points": 2})
    assert dbscan.json()["incidents"] == 4
    for path, _ in aggregates + incident_level:
        assert (await clients["anonymous"].get(path)).status_code == 401, path
