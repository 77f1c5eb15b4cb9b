"""Alerts over a real API process: rules of each kind raise exactly the alerts their place
says (the points are placed and checked with pyproj and shapely, not with the rule code), a
scoped key's default rule raises for severe incidents in and near its area only, the feed
carries alerts to their audience only, and an acknowledgement shows for everyone in it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import shapely
from pyproj import Geod
from sqlalchemy import text
from test_access import km_to
from test_events import ENV, WAIT_S, area_key, feed, incident, polygon_area, square_at, until

from app.auth import service as auth_service
from app.db import sessionmaker
from conftest import GEODATA, LiveApp, live_app
from geo_reference import features

GEOD = Geod(ellps="WGS84")


@dataclass
class Served:
    live: LiveApp
    keys: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def client(self, who: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.live.base, headers={"Authorization": f"Bearer {self.keys[who]}"},
            timeout=WAIT_S,
        )  # fmt: skip


PRINCIPALS = {
    # name: (role, jurisdiction, unit)
    "ag officer 1": ("officer", "VN-44", "An Giang PC"),
    "ag officer 2": ("officer", "VN-44", None),
    "hn officer": ("officer", "VN-HN", None),
    "analyst": ("analyst", None, "Cục C04"),
    "analyst 2": ("analyst", None, "Cục C04"),
}


@pytest.fixture(scope="module")
async def served(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    logs = tmp_path_factory.mktemp("alerts")
    async with live_app(
        server_url, logs / "server.log", name="bw_alerts", env=ENV,
        principals={"admin": "admin"},
    ) as live:  # fmt: skip
        out = Served(live, {"admin": live.keys["admin"].key}, {"admin": live.keys["admin"].id})
        async with sessionmaker(live.engine)() as s, s.begin():
            for name, (role, code, unit) in PRINCIPALS.items():
                record, key = await auth_service.create_principal(
                    session=s, name=name, role=role, jurisdiction_code=code, unit=unit,
                    actor="test",
                )  # fmt: skip
                out.keys[name], out.ids[name] = key, int(record["id"])
        yield out


async def create(s: Served, body: dict[str, Any]) -> str:
    async with s.client("admin") as c:
        r = await c.post("/incidents", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


async def alerts_of(s: Served, who: str, **params: Any) -> dict[str, Any]:
    async with s.client(who) as c:
        r = await c.get("/alerts", params=params)
        assert r.status_code == 200, r.text
        page: dict[str, Any] = r.json()
        return page


async def settle(s: Served, marker: str) -> None:
    """Wait until the alerts of every event up to incident `marker` are raised: the raiser's
    cursor has passed the event that created it."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        async with s.live.engine.connect() as conn:
            done = (await conn.execute(text(
                "SELECT (c.xid, c.id) >= (e.xid, e.id) FROM alert_cursor c, event_log e"
                " WHERE e.incident_id = CAST(:m AS uuid) AND e.kind = 'incident.created'"
            ), {"m": marker})).scalar()  # fmt: skip
        if done:
            return
        assert asyncio.get_running_loop().time() < deadline, "alerts not raised in time"
        await asyncio.sleep(0.2)


def name_local(path: Path, code: str) -> str:
    """A unit's Vietnamese name in a bundled GeoJSON file (read here, not from the database)."""
    fc = json.loads(path.read_text("utf-8"))
    [name] = [f["properties"]["name_local"] for f in fc["features"]
              if f["properties"]["code"] == code]  # fmt: skip
    return str(name)


def incident_ids(page: dict[str, Any]) -> set[str]:
    return {a["incident"]["id"] for a in page["alerts"]}


async def test_a_scoped_key_default_rule_alerts_on_severe_incidents_in_and_near_its_area(
    served: Served,
) -> None:
    feats = features(GEODATA / "jurisdictions.geojson")
    an_giang, dong_thap = feats["VN-44"][1], feats["VN-45"][1]
    async with served.live.engine.connect() as conn:
        zone = (await conn.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(ST_Intersection(b.geom,"
            " ST_Buffer(a.geom::geography, 4000)::geometry)) p FROM jurisdiction a, jurisdiction b"
            " WHERE a.code = 'VN-44' AND b.code = 'VN-45') x"
        ))).one()  # fmt: skip
    inside, near, far = (105.435, 10.386), (float(zone[0]), float(zone[1])), (105.854, 21.028)
    assert an_giang.contains(shapely.Point(inside))
    assert dong_thap.contains(shapely.Point(near)) and km_to(an_giang, *near) < 9.5
    assert km_to(an_giang, *far) > 500
    async with feed(served.live.base, served.keys["ag officer 2"]) as got:
        ids = {
            "inside severe": await create(served, incident(*inside, severity=4)),
            "inside minor": await create(served, incident(*inside, severity=3)),
            "near severe": await create(served, incident(*near, severity=5)),
            "far severe": await create(served, incident(*far, severity=5)),
        }
        await settle(served, ids["far severe"])
        await until(lambda: len(got.of("alert.raised")) >= 2, got)
    expected = {ids["inside severe"], ids["near severe"]}
    page = await alerts_of(served, "ag officer 1")
    assert incident_ids(page) == expected
    assert page["unacknowledged"] == 2
    # named in Vietnamese after the unit, with diacritics (the bundled file's name)
    assert {a["rule"]["name"] for a in page["alerts"]} == {
        f"Sự việc nghiêm trọng tại và gần {name_local(GEODATA / 'jurisdictions.geojson', 'VN-44')}"
        " (VN-44)"
    }
    assert {d["incident"]["id"] for d in got.of("alert.raised")} == expected
    # Ha Noi's keys have their own default rule: the severe one there only
    assert incident_ids(await alerts_of(served, "hn officer")) == {ids["far severe"]}
    # a national analyst has no default rule: no alert
    assert incident_ids(await alerts_of(served, "analyst")) == set()


async def test_acknowledgement_shows_for_everyone_in_the_area(served: Served) -> None:
    made = await create(served, incident(105.43, 10.39, severity=5))
    await settle(served, made)
    [alert] = [a for a in (await alerts_of(served, "ag officer 1"))["alerts"]
               if a["incident"]["id"] == made]  # fmt: skip
    assert alert["acknowledged_at"] is None
    async with feed(served.live.base, served.keys["ag officer 2"]) as got:
        async with served.client("ag officer 1") as c:
            r = await c.post(f"/alerts/{alert['id']}/ack")
            assert r.status_code == 200, r.text
            first = r.json()
            again = (await c.post(f"/alerts/{alert['id']}/ack")).json()
        await until(lambda: len(got.of("alert.acknowledged")) == 1, got)
    assert first["acknowledged_by"].endswith(":ag officer 1")
    assert again["acknowledged_at"] == first["acknowledged_at"]  # once
    [seen] = [
        a for a in (await alerts_of(served, "ag officer 2"))["alerts"] if a["id"] == alert["id"]
    ]
    assert seen["acknowledged_by"] == first["acknowledged_by"]
    assert "alert" in got.of("alert.acknowledged")[0], got.events
    ack = got.of("alert.acknowledged")[0]["alert"]
    assert ack["id"] == alert["id"] and ack["acknowledged_by"] == first["acknowledged_by"]
    async with served.client("hn officer") as c:  # not its alert: it does not exist for it
        assert (await c.post(f"/alerts/{alert['id']}/ack")).status_code == 404


async def test_a_post_rule_raises_within_its_radius_only(served: Served) -> None:
    async with served.client("analyst") as c:
        posts = (await c.get("/border-posts")).json()["features"]
        post = next(p for p in posts if p["properties"]["code"] == "mong-cai")
        lon, lat = post["geometry"]["coordinates"]
        r = await c.post("/alert-rules", json={
            "name": "Gần Móng Cái", "kind": "post", "post": "mong-cai", "distance_km": 5,
            "categories": ["smuggling"], "owner": "unit",
        })  # fmt: skip
        assert r.status_code == 201, r.text
        rule = r.json()
    assert rule["owner"] == {"unit": "Cục C04"} and rule["distance_km"] == 5
    points = {}
    for name, metres in (("at 3 km", 3000), ("at 4.9 km", 4900), ("at 5.2 km", 5200)):
        x, y, _ = GEOD.fwd(lon, lat, 225, metres)  # south-west: inland
        points[name] = await create(served, incident(x, y))
    other = await create(served, incident(*GEOD.fwd(lon, lat, 225, 1000)[:2], category="other"))
    await settle(served, other)
    got = {a["incident"]["id"] for a in (await alerts_of(served, "analyst 2"))["alerts"]
           if a["rule"]["id"] == rule["id"]}  # fmt: skip
    assert got == {points["at 3 km"], points["at 4.9 km"]}  # its unit receives them too


async def test_an_area_rule_raises_inside_the_area_only(served: Served) -> None:
    square = square_at(106.58, 20.83, 0.01)
    area = await polygon_area(served.live, served.keys["admin"], "Khu thử", square)
    async with served.client("analyst") as c:
        r = await c.post("/alert-rules", json={
            "name": "Trong khu thử", "kind": "area", "cooperation_area": area, "severity_min": 2,
        })  # fmt: skip
        assert r.status_code == 201, r.text
        rule = r.json()["id"]
    poly = shapely.Polygon(square)
    points = {"in": (106.585, 20.835), "out": (106.595, 20.835), "in minor": (106.583, 20.832)}
    assert poly.contains(shapely.Point(points["in"])) and not poly.contains(
        shapely.Point(points["out"])
    )
    ids = {n: await create(served, incident(*p, severity=1 if n == "in minor" else 3))
           for n, p in points.items()}  # fmt: skip
    await settle(served, ids["in minor"])
    got = {a["incident"]["id"] for a in (await alerts_of(served, "analyst"))["alerts"]
           if a["rule"]["id"] == rule}  # fmt: skip
    assert got == {ids["in"]}
    assert rule not in {a["rule"]["id"] for a in (await alerts_of(served, "analyst 2"))["alerts"]}


async def test_rules_refuse_bad_input_and_are_audited(served: Served) -> None:
    async with served.client("ag officer 1") as c:
        cases = [
            ({"name": "x", "kind": "post"}, 422, "names its post"),
            ({"name": "x", "kind": "border_segment", "border_segment": "VNM-XXX"}, 422, "VNM-XXX"),
            ({"name": "x", "kind": "jurisdiction", "jurisdiction": "VN-44", "categories": ["nope"]}, 422, "nope"),
            ({"name": "x", "kind": "border_segment", "border_segment": "VNM-LAO",
              "webhook_url": "https://example.invalid/hook"}, 403, "admin"),
        ]  # fmt: skip
        for body, status, says in cases:
            r = await c.post("/alert-rules", json=body)
            assert r.status_code == status, (body, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert says in r.text, r.text
        r = await c.post("/alert-rules", json={
            "name": "Biên giới Lào", "kind": "border_segment", "border_segment": "VNM-LAO",
        })  # fmt: skip
        assert r.status_code == 201, r.text
        rule = r.json()
        r = await c.patch(f"/alert-rules/{rule['id']}", json={"active": False})
        assert r.status_code == 428
        r = await c.patch(f"/alert-rules/{rule['id']}", json={"active": False},
                          headers={"If-Match": '"v1"'})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["active"] is False and r.json()["version"] == 2
        stale = await c.patch(f"/alert-rules/{rule['id']}", json={"name": "y"},
                              headers={"If-Match": '"v1"'})  # fmt: skip
        assert stale.status_code == 412
        r = await c.patch(f"/alert-rules/{rule['id']}", json={"name": "Biên giới Việt – Lào"},
                          headers={"If-Match": "*"})  # fmt: skip
        assert r.status_code == 200 and r.json()["version"] == 3, r.text
    async with served.client("hn officer") as c:  # another's rule does not exist for it
        assert (await c.get(f"/alert-rules/{rule['id']}")).status_code == 404
    async with served.live.engine.connect() as conn:
        actions = (await conn.execute(text(
            "SELECT action FROM audit_event WHERE entity_type = 'alert_rule' AND entity_id = :i"
            " ORDER BY id"
        ), {"i": str(rule["id"])})).scalars().all()  # fmt: skip
    assert actions == ["alert_rule_create", "alert_rule_update", "alert_rule_update"]


async def test_an_area_key_default_rule_covers_its_area_and_the_distance_around_it(
    served: Served,
) -> None:
    square = square_at(106.60, 20.90, 0.02)
    area = await polygon_area(served.live, served.keys["admin"], "Khu khóa", square)
    key = await area_key(served.live, area, "area officer", "officer")
    served.keys["area officer"] = key
    poly = shapely.Polygon(square)
    x, y = 106.63, 20.91  # east of the square
    near = GEOD.fwd(106.62, 20.91, 90, 6000)[:2]  # 6 km east of its edge: inside 10 km
    far = GEOD.fwd(106.62, 20.91, 90, 14000)[:2]  # 14 km: outside
    assert not poly.contains(shapely.Point(x, y))
    ids = {
        "inside": await create(served, incident(106.61, 20.91, severity=4)),
        "near": await create(served, incident(*near, severity=5)),
        "far": await create(served, incident(*far, severity=5)),
        "inside minor": await create(served, incident(106.61, 20.91, severity=2)),
    }
    await settle(served, ids["inside minor"])
    page = await alerts_of(served, "area officer")
    assert incident_ids(page) == {ids["inside"], ids["near"]}
    assert {a["rule"]["name"] for a in page["alerts"]} == {
        "Sự việc nghiêm trọng tại và gần khu vực hợp tác Khu khóa"
    }
    # a rule it makes sees nothing outside its area's scope, whatever place it names
    async with served.client("area officer") as c:
        r = await c.post("/alert-rules", json={
            "name": "Hà Nội", "kind": "jurisdiction", "jurisdiction": "VN-HN", "distance_km": 0,
        })  # fmt: skip
        assert r.status_code == 201, r.text
        rule = r.json()["id"]
    hanoi = await create(served, incident(105.854, 21.028, severity=5))
    await settle(served, hanoi)
    mine = await alerts_of(served, "area officer")
    assert rule not in {a["rule"]["id"] for a in mine["alerts"]}
    assert hanoi not in incident_ids(mine)
