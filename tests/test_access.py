"""Access control: every route × every role × in-scope / cooperation-zone / out-of-scope data.

A principal bound to An Giang (VN-44) sees incidents in An Giang plus those in its neighbours
within the cooperation distance (10 km) of An Giang; nothing else — not in lists, exports,
single reads, histories or counts. The fixture points are checked independently (shapely +
pyproj) so the test does not trust the scope code it is testing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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

    # a client id of an incident outside the area tells nothing: the same answers as an id
    # nobody has (403 for a location outside the area, 409 inside it, where a new id would do)
    officer = clients["officer"]
    unknown = "7d0c5a9e-0000-4000-8000-000000000001"
    for name in HIDDEN:
        for lon, lat in ((105.854, 21.028), (105.44, 10.39)):
            taken = await officer.post("/incidents", json={**body(lon, lat), "id": world.ids[name]})
            fresh = await officer.post("/incidents", json={**body(lon, lat), "id": unknown})
            if (
                fresh.status_code == 201
            ):  # inside: the unknown id is now stored; the taken one is not
                assert taken.status_code == 409, (name, taken.text)
                await clients["national"].delete(f"/incidents/{unknown}")
                unknown = str(uuid.uuid4())
                continue
            assert (taken.status_code, fresh.status_code) == (403, 403), name
            # the same answer but for the request's own id
            assert {**taken.json(), "request_id": None} == {**fresh.json(), "request_id": None}
    stored = (await clients["national"].get(f"/incidents/{world.far_neighbour}")).json()
    assert stored["properties"]["category"] == "smuggling"  # untouched


async def test_patch_and_delete_by_role(
    world: World, clients: dict[str, httpx.AsyncClient]
) -> None:
    own, zone, far = world.ids["inside"], world.ids["zone"], world.ids["elsewhere"]
    national = clients["national"]

    async def stored(ident: str) -> tuple[dict[str, Any], str]:
        """The incident as stored (read with the national key) and its ETag."""
        r = await national.get(f"/incidents/{ident}")
        assert r.status_code == 200
        return r.json(), r.headers["etag"]

    async def refused(ident: str, response: httpx.Response, status: int) -> None:
        """A refused write answers `status` and leaves the incident as it was."""
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == PROBLEM
        assert await stored(ident) == before[ident]

    before = {i: await stored(i) for i in (own, zone, far)}
    patch = {"severity": 5}
    v1 = {"If-Match": '"v1"'}
    for role in ("viewer", "analyst"):
        await refused(
            own, await clients[role].patch(f"/incidents/{own}", json=patch, headers=v1), 403
        )
    # officers: their unit's incidents only; the zone incident belongs to another unit
    await refused(
        zone, await clients["officer"].patch(f"/incidents/{zone}", json=patch, headers=v1), 403
    )
    # out of scope: existence not revealed
    await refused(
        far, await clients["officer"].patch(f"/incidents/{far}", json=patch, headers=v1), 404
    )
    r = await clients["officer"].patch(f"/incidents/{own}", json=patch, headers=v1)
    assert r.status_code == 200 and r.json()["properties"]["severity"] == 5
    before[own] = await stored(own)
    assert before[own][1] == '"v2"'
    moved = await clients["officer"].patch(
        f"/incidents/{own}",
        json={"location": {"type": "Point", "coordinates": [105.854, 21.028]}},
        headers={"If-Match": '"v2"'},
    )
    await refused(own, moved, 403)  # cannot move an incident out of its own area
    r = await clients["admin"].patch(f"/incidents/{zone}", json=patch, headers=v1)
    assert r.status_code == 200  # a scoped admin may correct anything in scope
    await refused(far, await clients["admin"].delete(f"/incidents/{far}"), 404)
    await refused(own, await clients["analyst"].delete(f"/incidents/{own}"), 403)
    history = (await national.get(f"/incidents/{own}/history")).json()
    assert [h["action"] for h in history["entries"]] == ["create", "update"]  # nothing refused
    assert (await clients["officer"].delete(f"/incidents/{own}")).status_code == 204
    assert (await national.get(f"/incidents/{own}")).status_code == 404


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


async def test_audit_filters(client: httpx.AsyncClient, session: AsyncSession) -> None:
    """Each filter of /audit against the rows themselves (inserted here with known times)."""
    t0 = datetime(2031, 1, 1, tzinfo=UTC)  # after anything else in the test database
    rows = [
        (t0 + timedelta(hours=1), "cli:ops", "geodata_load", "geodata", None),
        (t0 + timedelta(hours=2), "cli:ops", "key_revoke", "principal", "1"),
        (t0 + timedelta(hours=3), "principal:7:x", "key_create", "principal", "2"),
        (t0 + timedelta(hours=4), "principal:7:x", "demo_load", "incident", None),
    ]
    for at, actor, action, entity_type, entity_id in rows:
        await session.execute(
            text(
                "INSERT INTO audit_event (at, actor, action, entity_type, entity_id)"
                " VALUES (:at, :actor, :action, :entity_type, :entity_id)"
            ),
            {
                "at": at,
                "actor": actor,
                "action": action,
                "entity_type": entity_type,
                "entity_id": entity_id,
            },
        )

    async def actions(**params: str) -> list[str]:
        r = await client.get("/audit", params={"since": t0.isoformat(), **params})
        assert r.status_code == 200, r.text
        return [e["action"] for e in r.json()["entries"]]

    newest_first = [r[2] for r in reversed(rows)]
    assert await actions() == newest_first
    assert await actions(until=(t0 + timedelta(hours=2)).isoformat()) == [
        "key_revoke",
        "geodata_load",
    ]
    assert await actions(since=(t0 + timedelta(hours=3)).isoformat()) == ["demo_load", "key_create"]
    assert await actions(actor="cli:ops") == ["key_revoke", "geodata_load"]
    assert await actions(action="key_create") == ["key_create"]
    assert await actions(entity_type="principal") == ["key_create", "key_revoke"]
    assert await actions(entity_type="principal", entity_id="1") == ["key_revoke"]
    assert await actions(actor="principal:7:x", entity_type="incident") == ["demo_load"]
    assert await actions(actor="nobody") == []
    for bad in ({"since": "yesterday"}, {"limit": "0"}, {"limit": "1001"}, {"cursor": "nonsense"}):
        r = await client.get("/audit", params=bad)
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, bad


async def test_rate_limit(engine: AsyncEngine, session: AsyncSession) -> None:
    settings = Settings(environment="test", rate_limit="3/minute")
    key = await make_key(session, "analyst")
    async with app_client(engine, session, settings, key) as c:
        codes = [(await c.get("/me")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = await c.get("/me")
        assert r.status_code == 429 and r.headers["content-type"] == PROBLEM
        # a sliding window counter: the next request is allowed once this window's 3 requests
        # become the previous window's, weigh at most 2, i.e. a third of the way into the next
        # window (app/auth/ratelimit.py): up to 60 + 20 s away
        assert 1 <= int(r.headers["retry-after"]) <= 80
    other = await make_key(session, "analyst")
    async with app_client(engine, session, settings, other) as c:
        assert (await c.get("/me")).status_code == 200  # per principal, not global


async def test_failed_authentications_are_limited_per_client_address(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    from app.db import get_session
    from app.main import create_app

    app = create_app(Settings(environment="test", auth_failure_limit="5/minute"), engine=engine)

    async def _session() -> AsyncIterator[AsyncSession]:
        yield session

    app.dependency_overrides[get_session] = _session
    good = await make_key(session, "analyst")
    wrong = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://test")

    async with client("127.0.0.2") as guesser, client("127.0.0.3") as neighbour:
        bad = {"Authorization": f"Bearer {wrong}"}
        codes = [(await guesser.get("/me", headers=bad)).status_code for _ in range(7)]
        assert codes == [401] * 5 + [429] * 2
        # past the limit the address is refused without its key being looked at, even a good one
        r = await guesser.get("/me", headers={"Authorization": f"Bearer {good}"})
        assert r.status_code == 429 and r.headers["content-type"] == PROBLEM
        # a sliding window counter: 5 failures weigh at most 4 a fifth into the next window,
        # up to 60 + 12 s away (as in test_rate_limit)
        assert 1 <= int(r.headers["retry-after"]) <= 72
        assert "failed authentications" in r.json()["detail"]
        # requests without a key are not counted or refused (health, public files)
        assert (await guesser.get("/healthz")).status_code == 200
        # other addresses are not affected
        ok = await neighbour.get("/me", headers={"Authorization": f"Bearer {good}"})
        assert ok.status_code == 200


async def test_keys_may_expire(
    engine: AsyncEngine, session: AsyncSession, settings: Settings, client: httpx.AsyncClient
) -> None:
    made = await client.post(
        "/principals", json={"name": "short-lived", "role": "viewer", "expires_in": "2w"}
    )
    assert made.status_code == 201
    record, key = made.json()["principal"], made.json()["key"]
    expires = datetime.fromisoformat(record["expires_at"])
    assert abs((expires - datetime.now(UTC)) - timedelta(weeks=2)) < timedelta(minutes=1)
    async with app_client(engine, session, settings, key) as c:
        me = (await c.get("/me")).json()
        assert me["key_expires_at"] == record["expires_at"]
        listed = (await client.get("/principals")).json()["principals"]
        used = next(p for p in listed if p["id"] == record["id"])
        assert used["last_used_at"] is not None and used["expires_at"] == record["expires_at"]
        # time passes: the key stops working with a message that says why
        await session.execute(
            text(
                "UPDATE principal SET created_at = created_at - interval '15 days',"
                " expires_at = expires_at - interval '15 days' WHERE id = :i"
            ),
            {"i": record["id"]},
        )
        r = await c.get("/me")
        assert r.status_code == 401 and "expired" in r.json()["detail"]
    # a rotation without a lifetime gives the new key as long as the old one was given
    rotated = await client.post(f"/principals/{record['id']}/rotate")
    new_expiry = datetime.fromisoformat(rotated.json()["principal"]["expires_at"])
    assert abs((new_expiry - datetime.now(UTC)) - timedelta(weeks=2)) < timedelta(minutes=1)
    renewed = await client.post(f"/principals/{record['id']}/rotate", json={"expires_in": "90d"})
    renewed_expiry = datetime.fromisoformat(renewed.json()["principal"]["expires_at"])
    assert abs((renewed_expiry - datetime.now(UTC)) - timedelta(days=90)) < timedelta(minutes=1)
    async with app_client(engine, session, settings, renewed.json()["key"]) as c:
        assert (await c.get("/me")).status_code == 200
    at = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    fixed = await client.post(
        "/principals", json={"name": "until", "role": "viewer", "expires_at": at}
    )
    assert datetime.fromisoformat(
        fixed.json()["principal"]["expires_at"]
    ) == datetime.fromisoformat(at)
    for bad in (
        {"expires_in": "forever"},
        {"expires_in": "0h"},
        {"expires_in": "9999w"},
        {"expires_in": "1d", "expires_at": at},
        {"expires_at": "2020-01-01T00:00:00Z"},
        {"expires_at": "2030-01-01T00:00:00"},  # no offset: refused, never read as UTC
    ):
        r = await client.post("/principals", json={"name": "bad", "role": "viewer", **bad})
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, bad
    unnamed = await client.post(
        "/principals", json={"name": "bad", "role": "viewer", "expires_in": "x"}
    )
    assert "90d" in unnamed.json()["detail"]


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
    aggregates: list[tuple[str, dict[str, str | int | float]]] = [
        ("/analysis/stats", {"group_by": "category"}),
        ("/analysis/border-zone", {}),
        ("/analysis/border-posts", {}),
        ("/analysis/cross-boundary", {"km": 50}),
        ("/jurisdictions/VN-44/neighbours", {}),
        ("/analysis/hotspots", {"area": HOTSPOT_BOX, "cell_km": 10}),
        ("/analysis/clusters", {"eps_m": 50_000, "min_points": 2}),
    ]
    incident_level: list[tuple[str, dict[str, str | int | float]]] = [
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


async def _principal(session: AsyncSession, name: str, role: str, code: str | None) -> int:
    """A principal made by the operator; its id."""
    from app.auth import service as auth_service

    record, _ = await auth_service.create_principal(
        session=session, name=name, role=role, jurisdiction_code=code, unit=None, actor="test"
    )
    return int(record["id"])


async def _inner_units(session: AsyncSession) -> tuple[str, str]:
    """Two units inside An Giang: a district below it in the hierarchy, and a unit of another
    era with no parent link whose area lies inside it (checked with shapely, not PostGIS)."""
    an_giang = features(GEODATA / "jurisdictions.geojson")["VN-44"][1]
    square = shapely.box(105.40, 10.36, 105.46, 10.40)
    assert an_giang.contains(square)
    for code, level, parent, valid_to in (
        ("VN-44-T1", "district", "VN-44", None),
        ("VN-44-OLD", "province", "VNM", date(2025, 7, 1)),
    ):
        await session.execute(
            text(
                "INSERT INTO jurisdiction (id, code, name, level, parent_code, country, geom,"
                " valid_to, source) SELECT (SELECT max(id) + 1 FROM jurisdiction), :code, :name,"
                " :level, :parent, 'VNM', ST_Multi(ST_GeomFromText(:wkt, 4326)),"
                " CAST(:valid_to AS date), 'test'"
            ),
            {
                "code": code,
                "name": code,
                "level": level,
                "parent": parent,
                "wkt": square.wkt,
                "valid_to": valid_to,
            },
        )
    return "VN-44-T1", "VN-44-OLD"


async def test_a_scoped_admin_manages_only_principals_inside_its_area(
    session: AsyncSession, clients: dict[str, httpx.AsyncClient]
) -> None:
    admin, national = clients["admin"], clients["national"]
    district, former = await _inner_units(session)
    ids = {
        "national_admin": await _principal(session, "national admin Z", "admin", None),
        "national_analyst": await _principal(session, "national analyst Z", "analyst", None),
        "dong_thap": await _principal(session, "Dong Thap viewer Z", "viewer", "VN-45"),
        "an_giang": await _principal(session, "An Giang viewer Z", "viewer", "VN-44"),
        "district": await _principal(session, "district officer Z", "officer", district),
        "former": await _principal(session, "former-era analyst Z", "analyst", former),
    }
    inside = {"an_giang", "district", "former"}
    me = (await admin.get("/me")).json()

    listed = await admin.get("/principals")
    assert listed.status_code == 200
    seen = {p["id"] for p in listed.json()["principals"]}
    assert {ids[n] for n in inside} <= seen and me["id"] in seen
    assert all(
        p["jurisdiction"] in {"VN-44", district, former} for p in listed.json()["principals"]
    )
    for name in set(ids) - inside:
        assert f"{name.replace('_', ' ')}" not in listed.text
        assert ids[name] not in seen
    everyone = {p["id"] for p in (await national.get("/principals")).json()["principals"]}
    assert set(ids.values()) <= everyone

    # outside principals do not exist for it: the same 404 as an id nobody has
    unknown = 2_000_000_000
    for path in ("rotate", "revoke"):
        nobody = await admin.post(f"/principals/{unknown}/{path}")
        assert nobody.status_code == 404
        for name in set(ids) - inside:
            r = await admin.post(f"/principals/{ids[name]}/{path}")
            assert r.status_code == 404, (name, path)
            assert r.headers["content-type"] == PROBLEM
            assert r.json()["detail"] == nobody.json()["detail"].replace(
                str(unknown), str(ids[name])
            )
            assert "key" not in r.json()
    rows = (
        await session.execute(
            text("SELECT id, rotated_at, revoked_at FROM principal WHERE id = ANY(:ids)"),
            {"ids": [ids[n] for n in set(ids) - inside]},
        )
    ).all()
    assert len(rows) == 3 and all(r.rotated_at is None and r.revoked_at is None for r in rows)

    # inside its area it manages fully
    for name in inside:
        rotated = await admin.post(f"/principals/{ids[name]}/rotate")
        assert rotated.status_code == 200 and rotated.json()["key"].startswith("bw_")
    assert (await admin.post(f"/principals/{ids['district']}/revoke")).status_code == 200
    own = await admin.post(f"/principals/{me['id']}/revoke")
    assert own.status_code == 409 and own.headers["content-type"] == PROBLEM

    # it never makes a national key or one of another area
    before = (await session.execute(text("SELECT count(*) FROM principal"))).scalar()
    for body in (
        {"name": "sneaky", "role": "admin"},
        {"name": "sneaky", "role": "analyst", "jurisdiction": None},
        {"name": "sneaky", "role": "viewer", "jurisdiction": "VN-45"},
        {"name": "sneaky", "role": "admin", "jurisdiction": "VNM"},
    ):
        r = await admin.post("/principals", json=body)
        assert r.status_code == 403, body
        assert r.headers["content-type"] == PROBLEM and "key" not in r.json()
    assert (await session.execute(text("SELECT count(*) FROM principal"))).scalar() == before
    for code in ("VN-44", district, former):
        made = await admin.post(
            "/principals", json={"name": f"new {code}", "role": "admin", "jurisdiction": code}
        )
        assert made.status_code == 201 and made.json()["principal"]["jurisdiction"] == code
    # a national admin still makes national keys
    assert (
        await national.post("/principals", json={"name": "n", "role": "admin"})
    ).status_code == 201


async def test_a_scoped_admin_reads_only_its_part_of_the_audit_log(
    world: World, session: AsyncSession, clients: dict[str, httpx.AsyncClient]
) -> None:
    admin, national = clients["admin"], clients["national"]
    patch = {"description": "corrected"}
    for name in ("inside", "zone", "far_neighbour", "elsewhere"):
        r = await national.patch(
            f"/incidents/{world.ids[name]}", json=patch, headers={"If-Match": '"v1"'}
        )
        assert r.status_code == 200
    outside_key = await _principal(session, "national analyst Y", "analyst", None)
    inside_key = await _principal(session, "An Giang analyst Y", "analyst", "VN-44")
    await session.execute(
        text(
            "INSERT INTO audit_event (actor, action, entity_type, entity_id)"
            " VALUES ('cli:root', 'geodata_load', 'geodata', NULL)"
        )
    )

    everything = (await national.get("/audit", params={"limit": 1000})).json()["entries"]
    for name in ("inside", "zone", "far_neighbour", "elsewhere"):
        mine = [e for e in everything if e["entity_id"] == world.ids[name]]
        assert [e["action"] for e in mine] == ["update", "create"], name

    scoped = await admin.get("/audit", params={"limit": 1000})
    assert scoped.status_code == 200
    entries = scoped.json()["entries"]
    by_entity = {(e["entity_type"], e["entity_id"]) for e in entries}
    for name in VISIBLE:
        assert ("incident", world.ids[name]) in by_entity, name
        assert len([e for e in entries if e["entity_id"] == world.ids[name]]) == 2
    assert_no_leak(scoped.text, world, VISIBLE)
    assert ("principal", str(inside_key)) in by_entity
    assert ("principal", str(outside_key)) not in by_entity
    assert "national analyst Y" not in scoped.text
    assert not {e["entity_type"] for e in entries} - {"incident", "principal"}

    # a filter on an outside id answers like an id nobody has: nothing
    for name in HIDDEN:
        for params in (
            {"entity_id": world.ids[name]},
            {"entity_id": world.ids[name], "entity_type": "incident", "action": "update"},
        ):
            r = await admin.get("/audit", params=params)
            assert r.status_code == 200 and r.json() == {"entries": [], "next_cursor": None}
    r = await admin.get("/audit", params={"entity_id": str(outside_key)})
    assert r.json()["entries"] == []
    # paging through the scoped log never reaches outside entries either
    cursor, paged = None, []
    for _ in range(len(entries) + 1):
        page = (
            await admin.get("/audit", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        ).json()
        paged += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["id"] for e in paged] == [e["id"] for e in entries]


async def test_units_by_role_and_area(clients: dict[str, httpx.AsyncClient]) -> None:
    """Units (docs/units.md): every role reads them (no contacts); contacts go to keys of a unit
    and admins; admins write units inside their area (the scoped admin here is An Giang's)."""
    unit = {"name": "Công an tỉnh An Giang (thử)", "agency": "police", "level": "province"}
    made: dict[str, int] = {}
    for role in ROLES:
        assert (await clients[role].get("/units")).status_code == 200, role
        r = await clients[role].post(
            "/units", json=unit | {"code": f"t-acc-{role}", "jurisdiction": "VN-44"}
        )
        assert r.status_code == (201 if role == "admin" else 403), (role, r.text)
        if r.status_code == 201:
            made[role] = r.json()["id"]
    unit_id = made["admin"]
    for role in ROLES:
        r = await clients[role].get(f"/units/{unit_id}/contacts")
        assert r.status_code == (200 if role == "admin" else 403), role
        r = await clients[role].get(f"/units/{unit_id}")
        assert r.status_code == 200 and "contacts" not in r.json(), role
    outside = unit | {"code": "t-acc-out", "jurisdiction": "VN-45"}  # Dong Thap
    assert (await clients["admin"].post("/units", json=outside)).status_code == 403
    assert (await clients["national"].post("/units", json=outside)).status_code == 201
    central = unit | {"code": "t-acc-central", "level": "central"}
    assert (await clients["admin"].post("/units", json=central)).status_code == 403
    for method, path in (("GET", "/units"), ("POST", "/units"), ("GET", f"/units/{unit_id}")):
        r = await clients["anonymous"].request(method, path)
        assert r.status_code == 401 and r.headers["content-type"] == PROBLEM, (method, path)
