"""Keys scoped to a cooperation area (issue 17): the access matrix of tests/test_access.py for
keys bound to an area instead of a jurisdiction.

The area of these tests has one member of each kind: former An Giang (VN-44), a drawn polygon in
Hà Nội and a 5 km strip along the Lao border. Its keys see the incidents the area holds plus its
cooperation zone (10 km): An Giang's neighbours within 10 km of it, anything within 10 km of the
polygon, the strip as wide again by 10 km. Which incidents those are is computed independently
of PostGIS: shapely over the bundled boundary files, pyproj for distances.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import httpx
import pytest
import shapely
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from test_access import PROBLEM, UNIT, World, world  # noqa: F401  (fixtures)
from test_access_eras import COOPERATION_KM, Area, _on_land
from test_access_tiles import features as tile_features
from test_access_tiles import tile_of

from app.config import Settings
from conftest import GEODATA, app_client, make_key
from geo_reference import GEOD, features, lines_only, local_metric, nearest_line_km, projected

ROLES = ("viewer", "officer", "analyst", "admin")
READERS = ("officer", "analyst", "admin")
PARK_BOUNDS = (105.70, 21.10, 105.74, 21.14)  # a drawn polygon in Hà Nội (not a real park)
STRIP_KM = 5.0
STRIP_BOX = (104.2, 18.9, 105.0, 19.5)  # Nghệ An: the Lao border is the nearest one
EDGE_KM = 0.3  # closer than this to an edge of the rule, a point is left out (rounding)
INSERT = text(
    """
    INSERT INTO incident (category, severity, status, occurred_at, geom)
    VALUES ('smuggling', 2, 'reported', :at, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
    RETURNING id::text
    """
)


def area_body(**over: Any) -> dict[str, Any]:
    """The test area: one member of each kind."""
    x1, y1, x2, y2 = PARK_BOUNDS
    ring = [[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]
    return {
        "name": "Thử nghiệm khóa theo vùng hợp tác",
        "name_en": "Area-key test",
        "valid_from": "2025-07-01",
        "members": [
            {"kind": "jurisdiction", "code": "VN-44"},
            {"kind": "polygon", "name": "Khu thử", "geometry": {"type": "Polygon",
                                                                 "coordinates": [ring]}},
            {"kind": "border_segment", "code": "VNM-LAO", "border_km": STRIP_KM},
        ],
    } | over  # fmt: skip


@cache
def _lao_line() -> Any:
    feats = features(GEODATA / "jurisdictions.geojson")
    return lines_only(feats["VNM"][1].boundary.intersection(feats["LAO"][1].boundary))


class Expected:
    """Whether a key of the test area sees a point, from the bundled files (None: too close to
    an edge of the rule to tell)."""

    def __init__(self) -> None:
        self.an_giang = Area("VN-44")  # its polygon and former neighbours; the 10 km rule
        self.park = shapely.box(*PARK_BOUNDS)
        self.fwd, _ = local_metric(*self.park.centroid.coords[0])
        self.park_m = projected(self.park, self.fwd)
        self.lao = _lao_line()

    def park_km(self, lon: float, lat: float) -> float:
        """Distance to the drawn polygon (0 inside), in a metric projection centred on it."""
        point = projected(shapely.Point(lon, lat), self.fwd)
        return float(self.park_m.distance(point)) / 1000

    def lao_km(self, lon: float, lat: float) -> float:
        """Geodesic distance to the Lao border line (far points: a planar lower bound)."""
        point = shapely.Point(lon, lat)
        if self.lao.distance(point) > 0.5:
            return 999.0  # more than 50 km in any direction at these latitudes
        near = self.lao.intersection(point.buffer(1.0))
        return nearest_line_km(lon, lat, near)

    def __call__(self, lon: float, lat: float) -> bool | None:
        park = self.park_km(lon, lat)
        lao = self.lao_km(lon, lat)
        outcomes = [
            self.an_giang.expected(lon, lat),
            None if abs(park - COOPERATION_KM) < EDGE_KM else park < COOPERATION_KM,
            None if abs(lao - STRIP_KM - COOPERATION_KM) < EDGE_KM else lao < STRIP_KM + 10,
        ]
        if True in outcomes:
            return True
        return None if None in outcomes else False


@dataclass
class AreaWorld:
    """The incidents of test_access.World plus six near the area's other members."""

    area: dict[str, Any]
    ids: dict[str, str]
    visible: set[str]  # names
    hidden: set[str]


def _strip_points() -> dict[str, tuple[float, float]]:
    """Points in Việt Nam about 3, 12 and 25 km from the Lao border (pyproj, brute force)."""
    vietnam = features(GEODATA / "jurisdictions.geojson")["VNM"][1]
    near = _lao_line().intersection(shapely.box(*STRIP_BOX).buffer(1.0))
    wanted = {"strip_in": (2.0, 4.0), "strip_zone": (10.5, 13.5), "strip_far": (22.0, 30.0)}
    rng = random.Random(1717)
    found: dict[str, tuple[float, float]] = {}
    while len(found) < len(wanted):
        lon, lat = rng.uniform(STRIP_BOX[0], STRIP_BOX[2]), rng.uniform(STRIP_BOX[1], STRIP_BOX[3])
        if not vietnam.contains(shapely.Point(lon, lat)):
            continue
        km = nearest_line_km(lon, lat, near)
        for name, (lo, hi) in wanted.items():
            if lo < km < hi and name not in found:
                found[name] = (lon, lat)
    return found


@pytest.fixture
async def area_world(world: World, client: httpx.AsyncClient) -> AreaWorld:  # noqa: F811
    created = await client.post("/cooperation-areas", json=area_body())
    assert created.status_code == 201, created.text
    x1, y1, x2, y2 = PARK_BOUNDS
    east = (x2, (y1 + y2) / 2)
    points = {
        "poly_in": ((x1 + x2) / 2, (y1 + y2) / 2),
        "poly_near": tuple(GEOD.fwd(*east, 90, 5000)[:2]),
        "poly_far": tuple(GEOD.fwd(*east, 90, 15000)[:2]),
        **_strip_points(),
    }
    ids = dict(world.ids)
    for name, (lon, lat) in points.items():
        r = await client.post(
            "/incidents",
            json={
                "category": "smuggling",
                "severity": 3,
                "occurred_at": "2025-05-05T05:05:05Z",
                "location": {"type": "Point", "coordinates": [lon, lat]},
                "unit": "another unit",
            },
        )
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    # where every point lies, by the bundled files (not the database)
    expect = Expected()
    seen = {}
    for name, ident in ids.items():
        lon, lat = (await client.get(f"/incidents/{ident}")).json()["geometry"]["coordinates"]
        seen[name] = expect(lon, lat)
    assert seen == {
        "inside": True, "zone": True, "far_neighbour": False, "elsewhere": False,
        "poly_in": True, "poly_near": True, "poly_far": False,
        "strip_in": True, "strip_zone": True, "strip_far": False,
    }  # fmt: skip
    visible = {n for n, v in seen.items() if v}
    return AreaWorld(created.json(), ids, visible, set(ids) - visible)


@pytest.fixture
async def area_clients(
    engine: AsyncEngine, session: AsyncSession, settings: Settings, area_world: AreaWorld
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """One client per role bound to the area, a national admin, an An Giang (VN-44) admin."""
    area_id = area_world.area["id"]
    out: dict[str, httpx.AsyncClient] = {}
    for role in ROLES:
        key = await make_key(
            session, role, unit=UNIT if role == "officer" else None, cooperation_area=area_id
        )
        out[role] = app_client(engine, session, settings, key)
    out["national"] = app_client(engine, session, settings, await make_key(session, "admin"))
    out["an_giang_admin"] = app_client(
        engine, session, settings, await make_key(session, "admin", "VN-44")
    )
    try:
        yield out
    finally:
        for c in out.values():
            await c.aclose()


def assert_no_leak(body: str, w: AreaWorld, visible: set[str]) -> None:
    for name in w.ids:
        if name not in visible:
            assert w.ids[name] not in body, f"{name} leaked"


async def test_area_keys_see_the_members_and_their_zone(
    area_world: AreaWorld, area_clients: dict[str, httpx.AsyncClient]
) -> None:
    """Lists, counts, single reads, histories, exports, OGC items and statistics of every role
    show exactly the incidents of the members and their zone."""
    w = area_world
    want = {w.ids[n] for n in w.visible}
    assert len(want) == 6
    for role in ROLES:
        c = area_clients[role]
        me = (await c.get("/me")).json()
        assert me["jurisdiction"] is None
        assert me["cooperation_area"] == {"id": w.area["id"], "name": w.area["name"]}
        r = await c.get("/incidents", params={"limit": 1000, "count": "true"})
        if role == "viewer":
            assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
        else:
            assert r.status_code == 200, (role, r.text)
            assert {f["id"] for f in r.json()["features"]} == want, role
            assert r.json()["numberMatched"] == len(want)
            assert_no_leak(r.text, w, w.visible)
        for name, ident in w.ids.items():
            for path in (f"/incidents/{ident}", f"/incidents/{ident}/history"):
                got = await c.get(path)
                status = 403 if role == "viewer" else 200 if name in w.visible else 404
                assert got.status_code == status, (role, name, path)
                if status != 200:
                    assert "smuggling" not in got.text
        export = await c.get("/incidents/export", params={"format": "geojson"})
        if role in ("analyst", "admin"):
            assert export.status_code == 200
            assert {f["id"] for f in export.json()["features"]} == want
        else:
            assert export.status_code == 403
        ogc = await c.get("/ogc/collections/incidents/items", params={"limit": 1000})
        if role == "viewer":
            assert ogc.status_code == 403
        else:
            assert {f["id"] for f in ogc.json()["features"]} == want, role
            assert_no_leak(ogc.text, w, w.visible)
        stats = (await c.get("/analysis/stats", params={"group_by": "category"})).json()
        assert stats["total"] == len(want) and stats["scope"] == f"cooperation:{w.area['id']}"
    # filters narrow, never widen
    analyst = area_clients["analyst"]
    for params in ({"jurisdiction": "VN-HN"}, {"bbox": "105.8,20.9,106.0,21.1"}):
        r = await analyst.get("/incidents", params=params)
        assert {f["id"] for f in r.json()["features"]} <= want, params
    national = await area_clients["national"].get("/incidents", params={"limit": 1000})
    assert {f["id"] for f in national.json()["features"]} == set(w.ids.values())


async def test_area_key_tiles(
    area_world: AreaWorld, area_clients: dict[str, httpx.AsyncClient], session: AsyncSession
) -> None:
    """Incident tiles show the area's incidents and no other, at any zoom; their version token
    is the area key's own."""
    w = area_world
    rows = await session.execute(
        text("SELECT id::text, ST_X(geom), ST_Y(geom) FROM incident WHERE deleted_at IS NULL")
    )
    where = {r[0]: (float(r[1]), float(r[2])) for r in rows}
    points = {name: where[ident] for name, ident in w.ids.items()}
    for role in ROLES:
        c = area_clients[role]
        for z in (4, 10, 14):
            tiles = {tile_of(lon, lat, z) for lon, lat in points.values()}
            feats = []
            for x, y in sorted(tiles):
                r = await c.get(f"/tiles/incidents/{z}/{x}/{y}.mvt")
                assert r.status_code == 200, r.text
                feats += tile_features(r.content, "incidents")
            body = str([f["properties"] for f in feats])
            for name in w.hidden:
                assert w.ids[name] not in body
            assert sum(f["properties"].get("count", 1) for f in feats) == len(w.visible), (role, z)
            if role != "viewer" and z >= 10:
                assert {f["properties"]["id"] for f in feats} == {w.ids[n] for n in w.visible}
    versions = {
        who: (await area_clients[who].get("/tiles/incidents.json")).json()["data_version"]
        for who in ("analyst", "national", "an_giang_admin")
    }
    assert len(set(versions.values())) == 3, versions


async def test_area_key_writes(
    area_world: AreaWorld, area_clients: dict[str, httpx.AsyncClient]
) -> None:
    """Officers and admins of the area write only where they see; a refusal names the area and
    leaves nothing behind."""
    w = area_world
    national, officer, admin = (area_clients[k] for k in ("national", "officer", "admin"))

    def body(lon: float, lat: float) -> dict[str, Any]:
        return {
            "category": "fraud",
            "severity": 2,
            "occurred_at": "2025-06-06T06:06:06Z",
            "location": {"type": "Point", "coordinates": [lon, lat]},
        }

    x1, y1, x2, y2 = PARK_BOUNDS
    made = await officer.post("/incidents", json=body((x1 + x2) / 2, (y1 + y2) / 2 + 0.005))
    assert made.status_code == 201, made.text
    assert made.json()["properties"]["unit"] == UNIT
    for role in ("viewer", "analyst"):
        assert (
            await area_clients[role].post("/incidents", json=body(105.72, 21.12))
        ).status_code == 403
    for who in (officer, admin):
        outside = await who.post("/incidents", json=body(105.854, 21.028))
        assert outside.status_code == 403 and outside.json()["field"] == "location"
        detail = outside.json()["detail"]
        assert f"cooperation area {w.area['id']}" in detail and w.area["name"] in detail
    fraud = await national.get("/incidents", params={"category": "fraud"})
    assert fraud.json()["numberReturned"] == 1  # the refused ones left nothing behind

    async def stored(name: str) -> Any:
        r = await national.get(f"/incidents/{w.ids[name]}")
        return r.json(), r.headers["etag"]

    before = {n: await stored(n) for n in ("inside", "strip_zone", "poly_far", "elsewhere")}
    v1 = {"If-Match": '"v1"'}
    moved = await officer.patch(
        f"/incidents/{w.ids['inside']}",
        json={"location": {"type": "Point", "coordinates": [105.854, 21.028]}},
        headers=v1,
    )
    assert moved.status_code == 403 and moved.headers["content-type"] == PROBLEM
    assert await stored("inside") == before["inside"]  # not moved out of the area
    for name in ("poly_far", "elsewhere"):  # out of scope: existence not revealed
        r = await admin.patch(f"/incidents/{w.ids[name]}", json={"severity": 5}, headers=v1)
        assert r.status_code == 404
        assert (await admin.delete(f"/incidents/{w.ids[name]}")).status_code == 404
        assert await stored(name) == before[name]
    # the officer's unit did not report the strip's incident; the admin may correct it
    other = await officer.patch(
        f"/incidents/{w.ids['strip_zone']}", json={"severity": 5}, headers=v1
    )
    assert other.status_code == 403 and await stored("strip_zone") == before["strip_zone"]
    fixed = await admin.patch(f"/incidents/{w.ids['strip_zone']}", json={"severity": 5}, headers=v1)
    assert fixed.status_code == 200 and fixed.json()["properties"]["severity"] == 5
    ok = await officer.patch(f"/incidents/{w.ids['inside']}", json={"severity": 4}, headers=v1)
    assert ok.status_code == 200


async def test_only_national_admins_make_area_keys(
    area_world: AreaWorld,
    area_clients: dict[str, httpx.AsyncClient],
    session: AsyncSession,
    engine: AsyncEngine,
    settings: Settings,
) -> None:
    w = area_world
    area_id = w.area["id"]
    national = area_clients["national"]
    count = text("SELECT count(*) FROM principal")
    before = (await session.execute(count)).scalar_one()
    for who in ("an_giang_admin", "admin"):  # a jurisdiction's admin, the area's own admin
        for body in (
            {"name": "sneaky", "role": "viewer", "cooperation_area": area_id},
            {"name": "sneaky", "role": "viewer"},
            {"name": "sneaky", "role": "viewer", "jurisdiction": "VN-45"},
        ):
            r = await area_clients[who].post("/principals", json=body)
            assert r.status_code == 403 and r.headers["content-type"] == PROBLEM, (who, body)
            assert "key" not in r.json()
    bad = [
        ({"cooperation_area": 2_000_000_000}, "no cooperation area"),
        ({"cooperation_area": area_id, "jurisdiction": "VN-44"}, "not both"),
        ({"cooperation_area": 0}, "greater than or equal to 1"),
    ]
    ended = await national.post(
        "/cooperation-areas",
        json=area_body(name="ended", valid_from="2020-01-01", valid_to="2021-01-01"),
    )
    later = await national.post(
        "/cooperation-areas", json=area_body(name="later", valid_from="2099-01-01")
    )
    bad += [
        ({"cooperation_area": ended.json()["id"]}, "not in force today"),
        ({"cooperation_area": later.json()["id"]}, "not in force today"),
    ]
    for extra, says in bad:
        r = await national.post("/principals", json={"name": "x", "role": "viewer", **extra})
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, extra
        assert says in r.text, (extra, r.text)
    assert (await session.execute(count)).scalar_one() == before

    made = await national.post(
        "/principals", json={"name": "Tổ công tác", "role": "analyst", "cooperation_area": area_id}
    )
    assert made.status_code == 201, made.text
    record = made.json()["principal"]
    assert record["jurisdiction"] is None
    assert record["cooperation_area"] == {"id": area_id, "name": w.area["name"]}
    async with app_client(engine, session, settings, made.json()["key"]) as c:
        assert (await c.get("/me")).json()["cooperation_area"]["id"] == area_id
    listed = (await national.get("/principals")).json()["principals"]
    mine = next(p for p in listed if p["id"] == record["id"])
    assert mine["scope"]["label"] == f"cooperation area {area_id} {w.area['name']}"
    assert mine["scope"]["in_force"] is True
    audit = (
        await national.get(
            "/audit", params={"entity_type": "principal", "entity_id": str(record["id"])}
        )
    ).json()
    assert [e["action"] for e in audit["entries"]] == ["key_create"]
    assert audit["entries"][0]["after"]["cooperation_area"]["id"] == area_id

    # the area's admin manages the area's keys only; a jurisdiction's admin never sees them
    area_admin, an_giang_admin = area_clients["admin"], area_clients["an_giang_admin"]
    seen = (await area_admin.get("/principals")).json()["principals"]
    assert seen and all(p["cooperation_area"]["id"] == area_id for p in seen)
    assert record["id"] in {p["id"] for p in seen}
    assert (await area_admin.post(f"/principals/{record['id']}/rotate")).status_code == 200
    their = (await an_giang_admin.get("/principals")).json()["principals"]
    assert all(p["cooperation_area"] is None for p in their)
    assert (await an_giang_admin.post(f"/principals/{record['id']}/revoke")).status_code == 404
    national_ids = [
        p["id"] for p in listed if p["jurisdiction"] is None and p["cooperation_area"] is None
    ]
    for pid in national_ids[:3]:
        assert (await area_admin.post(f"/principals/{pid}/revoke")).status_code == 404


async def test_an_ended_area_refuses_its_keys(
    area_world: AreaWorld,
    area_clients: dict[str, httpx.AsyncClient],
    session: AsyncSession,
) -> None:
    """Ending an area does not widen (or silently keep) what its keys see: they stop working,
    with a message that says why; an expired area key is refused as any expired key."""
    w = area_world
    analyst, national = area_clients["analyst"], area_clients["national"]
    assert (await analyst.get("/me")).status_code == 200
    ended = await national.post(
        f"/cooperation-areas/{w.area['id']}/end", json={}, headers={"If-Match": '"v1"'}
    )
    assert ended.status_code == 200, ended.text
    for path in ("/me", "/incidents", f"/incidents/{w.ids['inside']}", "/analysis/stats"):
        r = await analyst.get(path)
        assert r.status_code == 401 and r.headers["content-type"] == PROBLEM, path
        assert r.json()["detail"] == "the cooperation area of this key has ended"
    # the area back in force (valid_to in the future): its keys work again; expiry still holds
    await session.execute(
        text("UPDATE cooperation_area SET valid_to = :d WHERE id = :i"),
        {"d": date.today() + timedelta(days=30), "i": w.area["id"]},
    )
    assert (await analyst.get("/me")).status_code == 200
    await session.execute(
        text(
            "UPDATE principal SET expires_at = now() - interval '1 minute'"
            " WHERE cooperation_area_id = :i AND role = 'analyst'"
        ),
        {"i": w.area["id"]},
    )
    r = await analyst.get("/me")
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    # an area with keys cannot be deleted (its keys would silently become national)
    with pytest.raises(Exception, match="foreign key"):
        async with session.begin_nested():
            await session.execute(
                text("DELETE FROM cooperation_area WHERE id = :i"), {"i": w.area["id"]}
            )


async def test_area_keys_elsewhere(
    area_world: AreaWorld, area_clients: dict[str, httpx.AsyncClient]
) -> None:
    """Every other reader of the scope: imports, area writes, the summary's national share,
    the OGC extent, the audit log."""
    w = area_world
    area_id = w.area["id"]
    admin = area_clients["admin"]
    imported = await admin.post(
        "/incidents/import",
        content=b"lat,lon,occurred_at,category\n",
        headers={"content-type": "text/csv"},
    )
    assert imported.status_code == 403 and "national admin" in imported.json()["detail"]
    write = await admin.post("/cooperation-areas", json=area_body(name="by an area admin"))
    assert write.status_code == 403
    # the summary counts the members' incidents (not the zone's); the country's total is
    # for national keys only
    summary = (await admin.get(f"/cooperation-areas/{area_id}/summary")).json()
    assert summary["incidents"] == 3  # inside An Giang, in the polygon, on the strip
    assert summary["national_total"] is None and summary["share_of_national"] is None
    national = (await area_clients["national"].get(f"/cooperation-areas/{area_id}/summary")).json()
    assert national["incidents"] == 3 and national["national_total"] == len(w.ids)

    # the OGC extent: every member, widened by the cooperation distance (from the files)
    extent = (await admin.get("/ogc/collections/incidents")).json()["extent"]["spatial"]["bbox"][0]
    parts = [Area("VN-44").geom, shapely.box(*PARK_BOUNDS), _lao_line()]
    x1, y1, x2, y2 = shapely.union_all([shapely.box(*g.bounds) for g in parts]).bounds
    reach = 0.3  # degrees: the strip's 5 km and the 10 km of the zone, about 0.15° here
    assert extent[0] <= x1 and extent[1] <= y1 and extent[2] >= x2 and extent[3] >= y2
    assert extent[0] > x1 - reach and extent[1] > y1 - reach
    assert extent[2] < x2 + reach and extent[3] < y2 + reach

    # audit: the entries of the incidents it sees, none of the others
    entries = (await admin.get("/audit", params={"limit": 1000})).json()["entries"]
    about = {e["entity_id"] for e in entries if e["entity_type"] == "incident"}
    assert {w.ids[n] for n in w.visible} <= about
    assert not about & {w.ids[n] for n in w.hidden}
    assert {e["entity_type"] for e in entries} <= {"incident", "principal"}


async def test_an_area_key_never_sees_an_incident_outside(
    engine: AsyncEngine, session: AsyncSession, settings: Settings, client: httpx.AsyncClient
) -> None:
    """Random incidents around each member (land only): the area key's list and statistics
    hold exactly those that the bundled files put in the members or within 10 km as the rule
    says — nothing outside, nothing missing."""
    assert settings.cooperation_m == COOPERATION_KM * 1000
    created = (await client.post("/cooperation-areas", json=area_body())).json()
    expect = Expected()
    vietnam = features(GEODATA / "jurisdictions.geojson")["VNM"][1]
    boxes = [
        expect.an_giang.geom.buffer(0.2).bounds,
        shapely.box(*PARK_BOUNDS).buffer(0.2).bounds,
        STRIP_BOX,
    ]
    rng = random.Random(1617)
    at = datetime(2026, 4, 4, tzinfo=UTC)
    expected: dict[str, bool] = {}
    while len(expected) < 270:
        x1, y1, x2, y2 = boxes[len(expected) % 3]
        lon, lat = rng.uniform(x1, x2), rng.uniform(y1, y2)
        on_land = (
            _on_land(lon, lat)
            if len(expected) % 3 == 0
            else vietnam.contains(shapely.Point(lon, lat))
        )
        if not on_land:
            continue
        want = expect(lon, lat)
        if want is None:
            continue
        ident = (await session.execute(INSERT, {"lon": lon, "lat": lat, "at": at})).scalar_one()
        expected[ident] = want
    inside = {i for i, v in expected.items() if v}
    for n in range(3):  # both outcomes around every member
        box = [i for k, i in enumerate(expected) if k % 3 == n]
        assert 10 < len(set(box) & inside) < len(box) - 10, n
    key = await make_key(session, "analyst", cooperation_area=created["id"])
    day = {"datetime": "2026-04-04T00:00:00Z/2026-04-04T00:00:01Z"}
    async with app_client(engine, session, settings, key) as c:
        r = await c.get("/incidents", params={"limit": 5000, **day})
        got = {f["id"] for f in r.json()["features"]}
        assert got - inside == set(), "an incident outside the area leaked"
        assert got == inside
        stats = (await c.get("/analysis/stats", params={"group_by": "status", **day})).json()
        assert stats["total"] == len(inside)
