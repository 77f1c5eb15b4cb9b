"""Alert rules of kind `post_area` ("incidents in my post's area") over a real API process: an
incident inside the post's area of responsibility raises the alert, one just outside it (but
within the radius of a `post` rule on the same post, which does raise) does not — inside and
outside checked with shapely against the area read from `GET /border-posts/areas`, not with the
rule code; closing the post stops the rule for incidents that occur from its valid_to on; bad
rules are refused with problem+json."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import shapely
from pyproj import Geod
from shapely.geometry import shape
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from test_alerts import Served, alerts_of, create, settle
from test_events import ENV, incident

from app.auth import service as auth_service
from app.db import sessionmaker
from conftest import live_app

GEOD = Geod(ellps="WGS84")
VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
POST = (106.70, 21.80)  # Lạng Sơn, inland
AN_GIANG = (105.435, 10.386)  # Long Xuyên, in VN-44 (test_alerts checks it)
HA_GIANG = (104.98, 22.82)  # far from VN-44
HALF = 0.015  # the drawn area: a square 0.03° wide around the post


def square(lon: float, lat: float, half: float) -> dict[str, Any]:
    ring = [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half],
            [lon - half, lat + half], [lon - half, lat - half]]  # fmt: skip
    return {"type": "Polygon", "coordinates": [ring]}


def post_body(code: str, where: tuple[float, float], **extra: Any) -> dict[str, Any]:
    return {
        "code": code, "name": f"Post {code}", "name_local": f"Đồn biên phòng {code}",
        "kind": "border_guard_station", "agency": "Bộ đội Biên phòng", "valid_from": "2020-01-01",
        "location": {"type": "Point", "coordinates": list(where)},
    } | extra  # fmt: skip


@pytest.fixture(scope="module")
async def served(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    logs = tmp_path_factory.mktemp("alerts_post_area")
    async with live_app(
        server_url, logs / "server.log", name="bw_alerts_post_area", env=ENV,
        principals={"admin": "admin"},
    ) as live:  # fmt: skip
        out = Served(live, {"admin": live.keys["admin"].key}, {"admin": live.keys["admin"].id})
        async with sessionmaker(live.engine)() as s, s.begin():
            for name, role, code in (("analyst", "analyst", None), ("ag", "officer", "VN-44")):
                record, key = await auth_service.create_principal(
                    session=s, name=name, role=role, jurisdiction_code=code, unit=None, actor="test"
                )
                out.keys[name], out.ids[name] = key, int(record["id"])
        async with out.client("admin") as c:
            for code, where in (("pa-ls", POST), ("pa-ag", AN_GIANG), ("pa-hg", HA_GIANG)):
                r = await c.post(
                    "/border-posts", json=post_body(code, where, area=square(*where, HALF))
                )
                assert r.status_code == 201, r.text
            r = await c.post("/border-posts", json=post_body(
                "pa-lao", (106.80, 21.95), country="LAO", kind="police", agency="Công an Lào",
            ))  # fmt: skip
            assert r.status_code == 201, r.text
        yield out


async def area_of(s: Served, code: str, closed: bool = False) -> Any:
    """The post's area as the map overlay serves it (a shapely geometry)."""
    async with s.client("analyst") as c:
        r = await c.get("/border-posts/areas", params={"closed": "true"} if closed else {})
        assert r.status_code == 200, r.text
        [area] = [shape(f["geometry"]) for f in r.json()["features"] if f["id"] == code]
        return area


async def rule(s: Served, who: str, body: dict[str, Any]) -> dict[str, Any]:
    async with s.client(who) as c:
        r = await c.post("/alert-rules", json={"name": "r", "categories": ["smuggling"]} | body)
        assert r.status_code == 201, r.text
        made: dict[str, Any] = r.json()
        return made


async def raised(s: Served, who: str, rule_id: int) -> set[str]:
    page = await alerts_of(s, who, limit=500)
    return {a["incident"]["id"] for a in page["alerts"] if a["rule"]["id"] == rule_id}


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(GEOD.inv(a[0], a[1], b[0], b[1])[2])


async def test_a_post_area_rule_raises_inside_the_area_only_and_stops_when_closed(
    served: Served,
) -> None:
    area = await area_of(served, "pa-ls")
    in_area = await rule(served, "analyst", {"kind": "post_area", "post": "pa-ls"})
    assert in_area["kind"] == "post_area" and in_area["post"] == "pa-ls"
    assert in_area["distance_km"] is None
    radius = await rule(served, "analyst", {"kind": "post", "post": "pa-ls", "distance_km": 5})
    assert radius["kind"] == "post" and radius["distance_km"] == 5
    async with served.live.engine.connect() as conn:  # stored as its own kind (0025)
        stored: dict[int, str] = dict((await conn.execute(text(
            "SELECT id, kind FROM alert_rule WHERE id IN (:a, :b)"
        ), {"a": in_area["id"], "b": radius["id"]})).all())  # fmt: skip
    assert stored == {in_area["id"]: "post_area", radius["id"]: "post"}
    # inside near a corner; just outside the east edge (about 200 m), well within 5 km
    inside = (POST[0] + HALF - 0.002, POST[1] + HALF - 0.002)
    outside = (POST[0] + HALF + 0.002, POST[1])
    assert area.contains(shapely.Point(inside)) and not area.intersects(shapely.Point(outside))
    assert metres(POST, outside) < 5000 and metres(POST, inside) < 5000
    ids = {n: await create(served, incident(*p)) for n, p in (("in", inside), ("out", outside))}
    await settle(served, ids["out"])
    assert await raised(served, "analyst", in_area["id"]) == {ids["in"]}
    assert await raised(served, "analyst", radius["id"]) == {ids["in"], ids["out"]}

    # closing the post today: incidents that occur from today on are no longer its area's;
    # a late report of one that occurred while it was in force still is
    async with served.client("admin") as c:
        r = await c.post("/border-posts/pa-ls/close", json={})
        assert r.status_code == 200, r.text
        valid_to = r.json()["properties"]["valid_to"]
    now = datetime.now(VIETNAM)
    assert valid_to == now.date().isoformat()
    kept = await area_of(served, "pa-ls", closed=True)  # a closed post keeps its last area
    assert kept.contains(shapely.Point(inside))
    later = await create(served, incident(*inside, occurred_at=now.isoformat()))
    late = await create(
        served, incident(*inside, occurred_at=(now - timedelta(days=2)).isoformat())
    )
    await settle(served, late)
    assert await raised(served, "analyst", in_area["id"]) == {ids["in"], late}
    assert later in await raised(served, "analyst", radius["id"])  # the radius rule goes on


async def test_a_scoped_key_names_only_posts_of_its_scope(served: Served) -> None:
    area = await area_of(served, "pa-ag")
    assert area.contains(shapely.Point(AN_GIANG))
    own = await rule(served, "ag", {"kind": "post_area", "post": "pa-ag"})
    async with served.client("ag") as c:
        r = await c.post("/alert-rules", json={"name": "x", "kind": "post_area", "post": "pa-hg"})
        assert r.status_code == 403, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "outside your scope" in r.text
    marker = await create(served, incident(*AN_GIANG))
    await settle(served, marker)
    assert await raised(served, "ag", own["id"]) == {marker}


async def test_post_area_rules_refuse_bad_input(served: Served) -> None:
    async with served.client("analyst") as c:
        r = await c.get("/border-posts/pa-lao")
        assert r.status_code == 200, r.text
        assert r.json()["properties"]["area"] is None  # a neighbour's post: no area
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"kind": "post_area"}, 422, "names its post"),
            ({"kind": "post_area", "post": "no-such-post"}, 422, "no-such-post"),
            ({"kind": "post_area", "post": "pa-lao"}, 422, "no area of responsibility"),
            ({"kind": "post_area", "post": "pa-ag", "distance_km": 3}, 422, "no distance_km"),
            ({"kind": "post_area", "post": "pa-ag", "jurisdiction": "VN-44"}, 422, "no jurisdiction"),
        ]  # fmt: skip
        for body, status, says in cases:
            r = await c.post("/alert-rules", json={"name": "x"} | body)
            assert r.status_code == status, (body, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert says in r.text, r.text
        made = (await c.post("/alert-rules", json={
            "name": "x", "kind": "post_area", "post": "pa-ag"})).json()  # fmt: skip
        r = await c.patch(f"/alert-rules/{made['id']}", json={"distance_km": 2},
                          headers={"If-Match": "*"})  # fmt: skip
        assert r.status_code == 422 and "no distance_km" in r.text, r.text
        with pytest.raises(IntegrityError, match="ck_alert_rule_post_area"):  # nor in the table
            async with served.live.engine.begin() as conn:
                await conn.execute(text("UPDATE alert_rule SET distance_km = 2 WHERE id = :id"),
                                   {"id": made["id"]})  # fmt: skip
        near = (await c.post("/alert-rules", json={
            "name": "x", "kind": "post", "post": "pa-ag", "distance_km": 2})).json()  # fmt: skip
        r = await c.patch(f"/alert-rules/{near['id']}", json={"distance_km": None},
                          headers={"If-Match": "*"})  # fmt: skip
        assert r.status_code == 422 and "keeps a distance_km" in r.text, r.text
        r = await c.get(f"/alert-rules/{made['id']}")
        assert r.json()["kind"] == "post_area" and r.json()["version"] == 1


async def test_a_closed_post_is_refused(served: Served) -> None:
    async with served.client("admin") as c:
        r = await c.post("/border-posts", json=post_body("pa-closed", (106.60, 21.70),
                                                          area=square(106.60, 21.70, 0.01)))  # fmt: skip
        assert r.status_code == 201, r.text
        r = await c.post("/border-posts/pa-closed/close", json={"on": "2026-01-01"})
        assert r.status_code == 200, r.text
    async with served.client("analyst") as c:
        r = await c.post(
            "/alert-rules", json={"name": "x", "kind": "post_area", "post": "pa-closed"}
        )
        assert r.status_code == 422 and "closed" in r.text, r.text
        assert r.headers["content-type"] == "application/problem+json"
