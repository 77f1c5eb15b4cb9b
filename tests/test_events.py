"""The live feed (GET /events) over two real API processes on one database.

A write through one process reaches a subscriber of the other; a subscriber that drops its
connection and resumes with Last-Event-ID gets every event exactly once, in the order the log
has them, while both processes write concurrently; a scoped subscriber gets exactly the events
of incidents its key may see (the points are placed and checked with shapely + pyproj, not with
the scope code under test), and of one that moves away only that it left, never where it went.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import shapely
from pyproj import Geod
from sqlalchemy import text
from test_access import km_to

from app.auth import service as auth_service
from app.config import Settings
from app.db import sessionmaker
from conftest import GEODATA, ROOT, LiveApp, live_app, live_server
from geo_reference import features

WAIT_S = 20.0  # the longest any one event may take to arrive (a bound, not a measure)
ENV = {
    "BORDERWATCH_EVENTS_HEARTBEAT_S": "0.5",
    "BORDERWATCH_EVENTS_POLL_S": "0.5",
    "BORDERWATCH_EVENTS_KEY_CHECK_S": "0.5",
}


@dataclass
class Two:
    """One database, two API processes, and keys."""

    a: str
    b: str
    live: LiveApp
    keys: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def two(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Two]:
    logs = tmp_path_factory.mktemp("events")
    async with contextlib.AsyncExitStack() as stack:
        live = await stack.enter_async_context(live_app(
            server_url, logs / "a.log", name="bw_events", env=ENV,
            principals={"events admin": "admin"},
        ))  # fmt: skip
        b = await stack.enter_async_context(live_server(live.url, logs / "b.log", env=ENV))
        two = Two(live.base, b, live, {"admin": live.keys["events admin"].key})
        async with sessionmaker(live.engine)() as s, s.begin():
            _, key = await auth_service.create_principal(
                session=s, name="an giang officer", role="officer", jurisdiction_code="VN-44",
                unit=None, actor="test",
            )  # fmt: skip
            two.keys["an giang officer"] = key
        yield two


@dataclass
class Received:
    """What a feed client got: each event as (event, id, data)."""

    events: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)
    comments: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for e, _, d in self.events if e == kind]

    @property
    def last_id(self) -> str | None:
        ids = [i for _, i, _ in self.events if i]
        return ids[-1] if ids else None


async def _read(response: httpx.Response, got: Received) -> None:
    event, ident, data = "message", None, list[str]()
    async for line in response.aiter_lines():
        if line == "":
            if data:
                got.events.append((event, ident, orjson.loads("\n".join(data))))
                got.arrived.set()
            event, ident, data = "message", None, []
        elif line.startswith(":"):
            got.comments += 1
            got.arrived.set()
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "id":
                ident = value
            elif name == "data":
                data.append(value)


@contextlib.asynccontextmanager
async def feed(
    base: str, key: str, *, last_id: str | None = None, **params: str
) -> AsyncIterator[Received]:
    """A subscriber of `base`/events; its events arrive in the yielded Received."""
    headers = {"Authorization": f"Bearer {key}"}
    if last_id:
        headers["Last-Event-ID"] = last_id
    got = Received()
    async with (
        httpx.AsyncClient(base_url=base, headers=headers, timeout=WAIT_S) as c,
        c.stream("GET", "/events", params=params) as r,
    ):
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        task = asyncio.create_task(_read(r, got))
        try:
            await until(lambda: got.comments >= 1, got)  # the opening comment: subscribed
            yield got
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task


async def until(check: Any, got: Received) -> None:
    """Wait until check() holds (at most WAIT_S)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not check():
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, f"timed out; received {got.events[-5:]}"
        got.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(got.arrived.wait(), min(left, 1.0))


def incident(lon: float, lat: float, **extra: Any) -> dict[str, Any]:
    return {
        "category": "smuggling",
        "severity": 3,
        "occurred_at": "2026-11-30T08:00:00+07:00",
        "location": {"type": "Point", "coordinates": [lon, lat]},
    } | extra


async def create(base: str, key: str, body: dict[str, Any]) -> str:
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}) as c:
        r = await c.post("/incidents", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


def square_at(lon: float, lat: float, side: float) -> list[list[float]]:
    """A closed square ring, south-west corner at (lon, lat), `side` degrees wide."""
    return [[lon, lat], [lon + side, lat], [lon + side, lat + side], [lon, lat + side], [lon, lat]]


async def polygon_area(live: LiveApp, key: str, name: str, ring: list[list[float]]) -> int:
    """A cooperation area of one drawn polygon, made through the API; its id."""
    polygon = {"type": "Polygon", "coordinates": [ring]}
    body = {"name": name, "members": [{"kind": "polygon", "name": name, "geometry": polygon}]}
    async with httpx.AsyncClient(
        base_url=live.base, headers={"Authorization": f"Bearer {key}"}
    ) as c:
        r = await c.post("/cooperation-areas", json=body)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


async def area_key(live: LiveApp, area: int, name: str, role: str) -> str:
    """A key bound to cooperation area `area`."""
    async with sessionmaker(live.engine)() as s, s.begin():
        _, key = await auth_service.create_principal(
            session=s, name=name, role=role, jurisdiction_code=None, unit=None, actor="test",
            cooperation_area_id=area,
        )  # fmt: skip
    return key


async def test_a_write_through_one_process_reaches_a_subscriber_of_the_other(two: Two) -> None:
    async with feed(two.b, two.keys["admin"]) as got:
        made = await create(two.a, two.keys["admin"], incident(105.8542, 21.0285, severity=4))
        await until(
            lambda: any(d["incident"]["id"] == made for d in got.of("incident.created")), got
        )
    [event] = [d for d in got.of("incident.created") if d["incident"]["id"] == made]
    assert event["incident"]["location"]["coordinates"] == [105.8542, 21.0285]
    assert event["incident"]["severity"] == 4
    assert event["incident"]["occurred_at"] == "2026-11-30T08:00:00+07:00"
    assert "VN-HN" in event["incident"]["jurisdictions"]


async def test_changes_status_and_delete_are_events(two: Two) -> None:
    key = two.keys["admin"]
    made = await create(two.a, key, incident(105.80, 21.00))
    async with (
        feed(two.b, key) as got,
        httpx.AsyncClient(base_url=two.a, headers={"Authorization": f"Bearer {key}"}) as c,
    ):
        r = await c.patch(
            f"/incidents/{made}", json={"status": "verified"}, headers={"If-Match": '"v1"'}
        )
        assert r.status_code == 200, r.text
        r = await c.patch(f"/incidents/{made}", json={"severity": 5}, headers={"If-Match": '"v2"'})
        assert r.status_code == 200, r.text
        r = await c.delete(f"/incidents/{made}", headers={"If-Match": '"v3"'})
        assert r.status_code == 204, r.text
        await until(lambda: len(got.of("incident.deleted")) == 1, got)
    mine = [
        (e, d["incident"].get("version"))
        for e, _, d in got.events
        if d.get("incident", {}).get("id") == made and e != "incident.created"
    ]  # (its creation may come too: a new feed starts where its process's reader is)
    assert mine == [("incident.status", 2), ("incident.changed", 3), ("incident.deleted", 4)]


async def test_resume_after_a_dropped_connection_loses_and_repeats_nothing(two: Two) -> None:
    key = two.keys["admin"]
    made: list[str] = []

    async def writer(base: str, n: int, lon: float) -> None:
        for k in range(n):
            made.append(await create(base, key, incident(lon + k * 0.001, 20.9)))

    async with feed(two.b, key) as first:
        await asyncio.gather(writer(two.a, 15, 105.6), writer(two.b, 15, 105.7))
        await until(lambda: len(first.of("incident.created")) >= 10, first)
    # the connection is gone; both processes write meanwhile
    await asyncio.gather(writer(two.a, 10, 105.5), writer(two.b, 10, 105.4))
    async with feed(two.a, key, last_id=first.last_id) as second:
        await asyncio.gather(writer(two.a, 5, 105.3), writer(two.b, 5, 105.2))

        def seen() -> set[str]:
            both = first.of("incident.created") + second.of("incident.created")
            return {d["incident"]["id"] for d in both}

        await until(lambda: set(made) <= seen(), second)
    ids = [
        d["incident"]["id"] for d in first.of("incident.created") + second.of("incident.created")
    ]
    assert sorted(ids) == sorted(set(ids))  # no event twice
    assert set(made) <= set(ids)  # none lost
    positions = [tuple(map(int, i.split("-"))) for _, i, _ in first.events + second.events if i]
    assert positions == sorted(positions)  # in log order, across the reconnection


async def test_a_scoped_subscriber_gets_exactly_what_its_key_sees(two: Two) -> None:
    feats = features(GEODATA / "jurisdictions.geojson")
    an_giang, dong_thap = feats["VN-44"][1], feats["VN-45"][1]
    async with two.live.engine.connect() as conn:
        zone = (await conn.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(ST_Intersection(b.geom,"
            " ST_Buffer(a.geom::geography, 4000)::geometry)) p FROM jurisdiction a, jurisdiction b"
            " WHERE a.code = 'VN-44' AND b.code = 'VN-45') x"
        ))).one()  # fmt: skip
    points = {
        "inside": (105.435, 10.386),
        "zone": (float(zone[0]), float(zone[1])),
        "elsewhere": (105.854, 21.028),
    }
    assert an_giang.contains(shapely.Point(points["inside"]))
    assert dong_thap.contains(shapely.Point(points["zone"]))
    assert km_to(an_giang, *points["zone"]) < 9.5
    assert km_to(an_giang, *points["elsewhere"]) > 500
    admin, scoped = two.keys["admin"], two.keys["an giang officer"]
    async with (
        feed(two.b, scoped) as mine,
        feed(two.b, scoped, category="drug_trafficking") as drugs,
        feed(two.a, admin) as everything,
    ):
        ids = {n: await create(two.a, admin, incident(*p)) for n, p in points.items()}
        drug = await create(two.a, admin, incident(*points["inside"], category="drug_trafficking"))
        async with httpx.AsyncClient(
            base_url=two.a, headers={"Authorization": f"Bearer {admin}"}
        ) as c:
            # the inside one moves to Ha Noi: the scoped key hears it left, not where to
            r = await c.patch(
                f"/incidents/{ids['inside']}",
                json={"location": {"type": "Point", "coordinates": [105.86, 21.03]}},
                headers={"If-Match": '"v1"'},
            )
            assert r.status_code == 200, r.text
        await until(lambda: len(everything.of("incident.changed")) >= 1, everything)
        await until(lambda: len(mine.of("incident.left")) >= 1, mine)
        await until(lambda: len(drugs.of("incident.created")) >= 1, drugs)
    created = {d["incident"]["id"] for d in mine.of("incident.created")}
    assert created == {ids["inside"], ids["zone"], drug}
    assert [d["incident"] for d in mine.of("incident.left")] == [{"id": ids["inside"]}]
    assert mine.of("incident.changed") == []
    assert {d["incident"]["id"] for d in drugs.of("incident.created")} == {drug}
    body = orjson.dumps(mine.events + drugs.events).decode()
    assert ids["elsewhere"] not in body and "105.86" not in body  # no id, no position
    assert {d["incident"]["id"] for d in everything.of("incident.created")} == set(ids.values()) | {
        drug
    }


async def test_resync_and_heartbeat(two: Two) -> None:
    key = two.keys["admin"]
    async with feed(two.a, key, last_id="not-an-id") as got:
        await until(lambda: len(got.of("resync")) == 1 and got.comments >= 3, got)
    assert "not one this service issued" in got.of("resync")[0]["reason"]
    # retention removed events: resuming from before them resyncs
    async with two.live.engine.begin() as conn:
        await conn.execute(text(
            "UPDATE event_log_horizon SET xid = (SELECT max(xid) FROM event_log),"
            " id = (SELECT max(id) FROM event_log)"
        ))  # fmt: skip
    try:
        async with feed(two.a, key, last_id="1-1") as old:
            await until(lambda: len(old.of("resync")) == 1, old)
        assert "retention" in old.of("resync")[0]["reason"]
    finally:
        async with two.live.engine.begin() as conn:
            await conn.execute(text("UPDATE event_log_horizon SET xid = 0, id = 0"))


async def test_a_revoked_key_stream_ends(two: Two) -> None:
    async with sessionmaker(two.live.engine)() as s, s.begin():
        record, key = await auth_service.create_principal(
            session=s, name="soon revoked", role="analyst", jurisdiction_code=None, unit=None,
            actor="test",
        )  # fmt: skip
    async with feed(two.b, key) as got:
        async with sessionmaker(two.live.engine)() as s, s.begin():
            await auth_service.revoke(session=s, principal_id=int(record["id"]), actor="test")
        await until(lambda: len(got.of("end")) == 1, got)
    assert "revoked" in got.of("end")[0]["reason"]


def test_settings_bound_the_feed() -> None:
    with pytest.raises(ValueError, match="events_heartbeat_s"):
        Settings(events_heartbeat_s=0)


async def test_imports_and_the_command_line_reach_subscribers(two: Two, tmp_path: Path) -> None:
    rows = ["lon,lat,occurred_at,category,severity,source_id"]
    rows += [f"{105.70 + k * 0.002},20.95,2026-11-30T07:00:00+07:00,smuggling,2,api-{k}"
             for k in range(30)]  # fmt: skip
    cli_file = tmp_path / "cli.csv"
    cli_file.write_text(
        "\n".join(
            ["lon,lat,occurred_at,category,severity,source_id"]
            + [f"{105.60 + k * 0.002},20.95,2026-11-30T07:00:00+07:00,other,1,cli-{k}"
               for k in range(12)]
        ) + "\n"
    )  # fmt: skip
    key = two.keys["admin"]
    async with feed(two.b, key) as got:
        async with httpx.AsyncClient(
            base_url=two.a, headers={"Authorization": f"Bearer {key}"}
        ) as c:
            r = await c.post(
                "/incidents/import", content="\n".join(rows) + "\n",
                headers={"content-type": "text/csv"}, params={"source": "feed-test"},
            )  # fmt: skip
            assert r.status_code == 200, r.text
        env = dict(os.environ, DATABASE_URL=two.live.url, BORDERWATCH_ENVIRONMENT="test")
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", "from app.cli import main; main()",
             "import", str(cli_file), "--source", "feed-cli"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        await until(lambda: len(got.of("incident.created")) >= 42, got)
    async with two.live.engine.connect() as conn:
        made = {
            str(i)
            for (i,) in await conn.execute(
                text("SELECT id FROM incident WHERE source IN ('feed-test', 'feed-cli')")
            )
        }
    assert len(made) == 42
    assert {d["incident"]["id"] for d in got.of("incident.created")} >= made


async def test_an_area_key_stream_holds_its_area_and_zone_only(two: Two) -> None:
    square = square_at(106.60, 20.90, 0.02)
    admin = two.keys["admin"]
    area = await polygon_area(two.live, admin, "Khu luồng", square)
    key = await area_key(two.live, area, "area reader", "analyst")
    geod = Geod(ellps="WGS84")
    poly = shapely.Polygon(square)
    points = {
        "inside": (106.61, 20.91),
        "near": geod.fwd(106.62, 20.91, 90, 6000)[:2],  # 6 km east of its edge
        "far": geod.fwd(106.62, 20.91, 90, 16000)[:2],  # 16 km
    }
    assert poly.contains(shapely.Point(points["inside"]))
    assert not poly.contains(shapely.Point(points["near"]))
    async with feed(two.b, key) as got:
        ids = {n: await create(two.a, admin, incident(*p)) for n, p in points.items()}
        last = await create(two.a, admin, incident(106.611, 20.911))  # inside: the marker
        await until(lambda: last in {d["incident"]["id"] for d in got.of("incident.created")}, got)
    received = {d["incident"]["id"] for d in got.of("incident.created")}
    assert received == {ids["inside"], ids["near"], last}
    body = orjson.dumps(got.events).decode()
    assert ids["far"] not in body and f"{points['far'][0]:.4f}" not in body
