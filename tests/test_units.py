"""Units and the four-level hotline network (app/units/, docs/units.md), against real PostGIS.

The chain for a point on the Lao border is checked against SQL written here, not the service's:
the commune and the province by ST_Contains over the jurisdictions in force today (not their
pieces), the nearest post by geodesic distance over every open Vietnamese post (no KNN)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from typer.testing import CliRunner

from app.cli import app as cli
from app.config import Settings
from app.units import demo
from app.units.service import chain_order
from app.units.stats import unit_key, unit_names
from conftest import app_client, drop_database, make_key

PROBLEM = "application/problem+json"
PLANTED = "+84 000 777 123 456"  # a number that must never leave through public routes


async def _one(session: AsyncSession, sql: str, **params: Any) -> Any:
    return (await session.execute(text(sql), params)).one()


async def _unit_id(session: AsyncSession, code: str) -> int:
    return int((await _one(session, "SELECT id FROM unit WHERE code = :c", c=code))[0])


async def _bound_key(
    session: AsyncSession, client: httpx.AsyncClient, code: str, role: str = "officer"
) -> str:
    """A new key of `role` bound to the unit `code` through the API."""
    key = await make_key(session, role)
    found = await session.execute(
        text("SELECT id FROM principal ORDER BY id DESC LIMIT 1"),
    )
    principal_id = int(found.scalar_one())
    r = await client.put(f"/units/{await _unit_id(session, code)}/keys/{principal_id}")
    assert r.status_code == 200, r.text
    return key


def _codes(chain: list[dict[str, Any]], level: str) -> list[str]:
    return [u["code"] for step in chain if step["level"] == level for u in step["units"]]


async def test_the_chain_for_a_point_on_the_lao_border(
    client: httpx.AsyncClient, session: AsyncSession, engine: AsyncEngine, settings: Settings
) -> None:
    assert await demo.load(session=session) > 10
    assert await demo.load(session=session) == 0  # idempotent
    # a point inside the commune nearest the Na Mèo gate (Thanh Hóa, on the Lao border)
    commune_code = (
        await _one(
            session,
            "SELECT j.code FROM jurisdiction j, border_post p WHERE p.code = 'na-meo'"
            " AND j.level = 'commune' ORDER BY j.geom <-> p.geom LIMIT 1",
        )
    )[0]
    lon, lat = await _one(
        session,
        "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM jurisdiction"
        " WHERE code = :c",
        c=commune_code,
    )
    # independent answers: containment over whole jurisdictions, distance over every post
    (commune,) = await _one(
        session,
        "SELECT code FROM jurisdiction WHERE level = 'commune' AND country = 'VNM'"
        " AND (valid_to IS NULL OR valid_to > current_date)"
        " AND ST_Contains(geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))",
        lon=lon,
        lat=lat,
    )
    (province,) = await _one(
        session,
        "SELECT code FROM jurisdiction WHERE level = 'province' AND country = 'VNM'"
        " AND (valid_from IS NULL OR valid_from <= current_date)"
        " AND (valid_to IS NULL OR valid_to > current_date)"
        " AND ST_Contains(geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))",
        lon=lon,
        lat=lat,
    )
    post_code, border, post_m = await _one(
        session,
        "SELECT code, border, ST_Distance(geom::geography,"
        " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography) AS d FROM border_post"
        " WHERE country = 'VNM' AND (valid_to IS NULL OR valid_to > current_date)"
        " ORDER BY d, code LIMIT 1",
        lon=lon,
        lat=lat,
    )
    (laos_km,) = await _one(
        session,
        "SELECT ST_Distance(geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)"
        "::geography) / 1000 FROM jurisdiction WHERE code = 'LAO'",
        lon=lon,
        lat=lat,
    )
    assert commune == commune_code and province == "VN-P38"
    assert border == "VNM-LAO" and laos_km < 30, (border, laos_km)

    asker = await _unit_id(session, "VN-P38-CA")
    key = await _bound_key(session, client, "VN-P38-CA")
    async with app_client(engine, session, settings, key) as c:
        r = await c.get(f"/units/{asker}/contacts-for", params={"lat": lat, "lon": lon})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["commune"]["code"] == commune and body["province"]["code"] == province
    assert body["post"]["code"] == post_code
    assert abs(body["post"]["distance_km"] * 1000 - post_m) < 1.0
    chain = body["chain"]
    # from the asker's level (province) outwards, the counterpart last; the asker left out
    assert [s["level"] for s in chain] == chain_order("province")
    assert chain_order("province") == ["province", "post", "central", "commune", "counterpart"]
    assert _codes(chain, "commune") == [f"{commune}-CA"]
    assert f"VN-P38-BP-{post_code}" in _codes(chain, "post")
    assert _codes(chain, "province") == ["VN-P38-BP"]  # the asker (VN-P38-CA) is left out
    assert set(_codes(chain, "central")) == {"VN-BCA-C04", "VN-BTL-BDBP"}
    assert _codes(chain, "counterpart") == [f"LAO-CA-{post_code}"]
    counterpart = chain[-1]["units"][0]
    assert counterpart["country"] == "LAO" and counterpart["contacts"][0]["value"].startswith(
        "+856"
    )
    assert body["counterpart"]["name"]  # the post across the border, from border_post
    # every unit in the chain comes with its contacts, and the demo numbers say they are demo
    units = [u for s in chain for u in s["units"]]
    assert all(u["contacts"] for u in units)
    assert all("DEMO" in c["note"] for u in units for c in u["contacts"])
    # names keep their diacritics
    assert "Công an xã" in next(u["name"] for u in units if u["level"] == "commune")


async def test_a_post_asker_starts_at_the_posts(
    client: httpx.AsyncClient, session: AsyncSession, engine: AsyncEngine, settings: Settings
) -> None:
    await demo.load(session=session)
    post = await _unit_id(session, "VN-P44-BP-lao-bao")
    r = await client.get(f"/units/{post}/contacts-for", params={"lat": 16.62, "lon": 106.58})
    assert r.status_code == 200, r.text  # a national admin asks for any unit
    body = r.json()
    assert [s["level"] for s in body["chain"]] == ["post", "commune", "province", "central",
                                                   "counterpart"]  # fmt: skip
    assert body["post"]["code"] == "lao-bao"
    assert "VN-P44-BP-lao-bao" not in _codes(body["chain"], "post")
    assert "VN-P44-HQ-lao-bao" in _codes(body["chain"], "post")
    # another unit's key may not ask as this unit
    key = await _bound_key(session, client, "VN-P38-CA")
    async with app_client(engine, session, settings, key) as c:
        r = await c.get(f"/units/{post}/contacts-for", params={"lat": 16.62, "lon": 106.58})
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM


async def test_contacts_never_in_public_reference_data(
    client: httpx.AsyncClient, session: AsyncSession, engine: AsyncEngine
) -> None:
    await demo.load(session=session)
    unit = await _unit_id(session, "VN-P42-BP-cau-treo")
    r = await client.post(f"/units/{unit}/contacts", json={"channel": "hotline", "value": PLANTED})
    assert r.status_code == 201, r.text
    public = Settings(environment="test", public_reference_data=True)
    paths = (
        "/units",
        "/units?include_closed=true",
        f"/units/{unit}",
        "/units?post=cau-treo",
        "/border-posts",
        "/jurisdictions?level=province",
        "/categories",
        "/openapi.json",
    )
    async with app_client(engine, session, public, None) as anon:
        for path in paths:
            r = await anon.get(path)
            assert r.status_code == 200, (path, r.status_code)
            assert PLANTED not in r.text and "+84 000" not in r.text, path
        listed = (await anon.get("/units?post=cau-treo")).json()["units"]
        assert {u["code"] for u in listed} >= {"VN-P42-BP-cau-treo", "LAO-CA-cau-treo"}
        assert all("contacts" not in u for u in listed)
        for path in (f"/units/{unit}/contacts", f"/units/{unit}/contacts-for?lat=18.4&lon=105.1"):
            r = await anon.get(path)
            assert r.status_code == 401 and r.headers["content-type"] == PROBLEM, path
    # a key without a unit (not an admin) is refused; a key of a unit sees them
    viewer = await make_key(session, "analyst")
    async with app_client(engine, session, public, viewer) as c:
        r = await c.get(f"/units/{unit}/contacts")
        assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
        assert PLANTED not in r.text
    own = await _bound_key(session, client, "VN-P42-CA", role="viewer")
    async with app_client(engine, session, public, own) as c:
        r = await c.get(f"/units/{unit}/contacts")
        assert r.status_code == 200 and PLANTED in r.text


async def test_a_key_of_a_unit_records_the_reporting_unit(
    client: httpx.AsyncClient, session: AsyncSession, engine: AsyncEngine, settings: Settings
) -> None:
    await demo.load(session=session)
    unit = await _unit_id(session, "VN-P38-BP-na-meo")
    key = await _bound_key(session, client, "VN-P38-BP-na-meo", role="officer")
    incident = {
        "category": "drug_trafficking",
        "severity": 4,
        "occurred_at": "2026-11-30T08:00:00",
        "location": {"type": "Point", "coordinates": [104.46, 20.37]},
    }
    async with app_client(engine, session, settings, key) as c:
        r = await c.post("/incidents", json=incident)
        assert r.status_code == 201, r.text
        mine = r.json()["id"]
        props = r.json()["properties"]
        assert props["reporting_unit"] == "VN-P38-BP-na-meo"
        assert props["reporting_unit_name"] == "Đồn Biên phòng cửa khẩu quốc tế Na Mèo"
        english = (await c.get(f"/incidents/{mine}", params={"lang": "en"})).json()
        assert english["properties"]["reporting_unit_name"] == (
            "Na Meo international border gate border-guard station"
        )
        # an officer reports for its own unit, whatever it names
        other = await _unit_id(session, "VN-P38-CA")
        r = await c.post("/incidents", json=incident | {"reporting_unit_id": other})
        assert r.status_code == 201, r.text
        forced = r.json()["id"]
    rows = await session.execute(
        text("SELECT id::text, reporting_unit_id, unit FROM incident WHERE id::text IN (:a, :b)"),
        {"a": mine, "b": forced},
    )
    by_id = {r.id: r for r in rows}
    assert by_id[mine].reporting_unit_id == unit and by_id[forced].reporting_unit_id == unit
    # the exports carry the code and the name beside the free text
    export = await client.get("/incidents/export", params={"format": "csv"})
    assert export.status_code == 200
    table = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig"))))
    row = next(x for x in table if x["id"] == mine)
    assert (row["reporting_unit"], row["reporting_unit_name"], row["unit"]) == (
        "VN-P38-BP-na-meo",
        "Đồn Biên phòng cửa khẩu quốc tế Na Mèo",
        "Đồn Biên phòng cửa khẩu quốc tế Na Mèo",
    )
    assert by_id[mine].unit == "Đồn Biên phòng cửa khẩu quốc tế Na Mèo"
    # a key without a unit: none, unless named; a unit that does not exist is 422
    r = await client.post("/incidents", json=incident)
    assert r.status_code == 201
    plain = r.json()["id"]
    (none,) = await _one(session, "SELECT reporting_unit_id FROM incident WHERE id::text = :i",
                         i=plain)  # fmt: skip
    assert none is None
    r = await client.post("/incidents", json=incident | {"reporting_unit_id": 2_000_000_000})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert "reporting_unit_id" in r.text
    # a closed unit reports nothing any more
    closed = await client.post(f"/units/{await _unit_id(session, 'VN-P38-CA')}/close")
    assert closed.status_code == 200 and closed.json()["in_force"] is False
    r = await client.post("/incidents", json=incident | {"reporting_unit_id": closed.json()["id"]})
    assert r.status_code == 422


async def test_a_scoped_admin_manages_units_inside_its_area_only(
    session: AsyncSession, engine: AsyncEngine, settings: Settings
) -> None:
    await demo.load(session=session)
    key = await make_key(session, "admin", "VN-P38")  # Thanh Hóa
    count = "SELECT count(*) FROM unit"
    audit = "SELECT count(*) FROM audit_event WHERE entity_type = 'unit'"
    before = (await _one(session, count))[0], (await _one(session, audit))[0]
    commune = (
        await _one(
            session,
            "SELECT code FROM jurisdiction WHERE level = 'commune' AND parent_code = 'VN-P38'"
            " ORDER BY code LIMIT 1",
        )
    )[0]
    outside = (
        {"code": "t-out-1", "name": "Công an tỉnh Nghệ An (thử)", "agency": "police",
         "level": "province", "jurisdiction": "VN-P40"},
        {"code": "t-out-2", "name": "Đồn Biên phòng Lao Bảo (thử)", "agency": "border_guard",
         "level": "post", "post": "lao-bao"},
        {"code": "t-out-3", "name": "Bộ Công an (thử)", "agency": "police", "level": "central"},
    )  # fmt: skip
    async with app_client(engine, session, settings, key) as c:
        for body in outside:
            r = await c.post("/units", json=body)
            assert r.status_code == 403, (body, r.text)
            assert r.headers["content-type"] == PROBLEM
        assert ((await _one(session, count))[0], (await _one(session, audit))[0]) == before
        # another province's unit cannot be changed or given contacts either
        other = await _unit_id(session, "VN-P40-CA")
        r = await c.patch(f"/units/{other}", json={"name": "x"}, headers={"If-Match": '"v1"'})
        assert r.status_code == 403
        r = await c.post(f"/units/{other}/contacts", json={"channel": "phone", "value": "1"})
        assert r.status_code == 403
        # inside: a commune of Thanh Hóa, and its own gate's post
        r = await c.post(
            "/units",
            json={"code": "t-in-1", "name": "Công an xã (thử)", "agency": "police",
                  "level": "commune", "jurisdiction": commune},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        r = await c.post(
            "/units",
            json={"code": "t-in-2", "name": "Trạm kiểm soát Na Mèo (thử)", "agency": "customs",
                  "level": "post", "post": "na-meo"},
        )  # fmt: skip
        # the Na Mèo point of the bundled file lies just across the line, in Laos: outside
        # Thanh Hóa's polygon, so a Thanh Hóa admin may not place a unit there
        (inside,) = await _one(
            session,
            "SELECT ST_Covers(j.geom, p.geom) FROM jurisdiction j, border_post p"
            " WHERE j.code = 'VN-P38' AND p.code = 'na-meo'",
        )
        assert r.status_code == (201 if inside else 403), r.text
        # moving its unit out of its area is refused, and leaves it as it was
        unit = await _unit_id(session, "t-in-1")
        r = await c.patch(
            f"/units/{unit}", json={"jurisdiction": "VN-P40", "level": "province"},
            headers={"If-Match": '"v1"'},
        )  # fmt: skip
        assert r.status_code == 403
        (code,) = await _one(session, "SELECT jurisdiction_code FROM unit WHERE id = :i", i=unit)
        assert code == commune


async def test_bad_input_is_a_problem(client: httpx.AsyncClient, session: AsyncSession) -> None:
    await demo.load(session=session)
    good = {"code": "t-bad", "name": "Công an tỉnh (thử)", "agency": "police",
            "level": "province", "jurisdiction": "VN-P38"}  # fmt: skip
    cases: list[tuple[dict[str, Any], int]] = [
        (good | {"level": "district"}, 422),
        (good | {"agency": "army"}, 422),
        (good | {"code": "has space"}, 422),
        (good | {"jurisdiction": "VN-NOPE"}, 422),
        (good | {"jurisdiction": "VN-C14866"}, 422),  # a commune is not a province
        (good | {"level": "post", "jurisdiction": None}, 422),  # a post unit needs its post
        (good | {"level": "post", "post": "no-such-post"}, 422),
        (good | {"parent_id": 2_000_000_000}, 422),
        (good | {"extra": 1}, 422),
        (good | {"code": "VN-P38-CA"}, 409),
    ]
    for body, status in cases:
        r = await client.post("/units", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"] == PROBLEM
    r = await client.post(
        "/units", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code in (400, 422) and r.headers["content-type"] == PROBLEM
    unit = await _unit_id(session, "VN-P38-CA")
    bad: list[dict[str, str | int]] = [
        {"lat": 200, "lon": 105},
        {"lat": 20},
        {"lat": "x", "lon": 1},
    ]
    for params in bad:
        r = await client.get(f"/units/{unit}/contacts-for", params=params)
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, params
    r = await client.get("/units/2000000000/contacts-for", params={"lat": 20, "lon": 105})
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = await client.patch(f"/units/{unit}", json={"name": "Công an tỉnh Thanh Hóa"})
    assert r.status_code == 428 and r.headers["content-type"] == PROBLEM
    r = await client.patch(f"/units/{unit}", json={"name": "x"}, headers={"If-Match": '"v9"'})
    assert r.status_code == 412
    r = await client.patch(f"/units/{unit}", json={"parent_id": unit}, headers={"If-Match": '"v1"'})
    assert r.status_code == 422  # its own ancestor
    r = await client.post(f"/units/{unit}/contacts", json={"channel": "fax", "value": "1"})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    # a good change moves the version and is audited
    r = await client.patch(
        f"/units/{unit}", json={"name_en": "Thanh Hoa Provincial Police Department"},
        headers={"If-Match": '"v1"'},
    )  # fmt: skip
    assert r.status_code == 200 and r.headers["etag"] == '"v2"'
    (n,) = await _one(
        session,
        "SELECT count(*) FROM audit_event WHERE entity_type = 'unit' AND action = 'unit_update'"
        " AND entity_id = :i",
        i=str(unit),
    )
    assert n == 1


async def test_counts_by_reporting_unit(
    client: httpx.AsyncClient, session: AsyncSession, engine: AsyncEngine, settings: Settings
) -> None:
    """The pieces of group_by=unit (app/units/stats.py) against a GROUP BY written here."""
    await demo.load(session=session)
    incident = {
        "category": "smuggling",
        "severity": 2,
        "occurred_at": "2026-11-01T10:00:00+07:00",
        "location": {"type": "Point", "coordinates": [105.15, 18.40]},
    }
    made = {"VN-P42-BP-cau-treo": 3, "VN-P42-HQ-cau-treo": 1}
    for code, n in made.items():
        unit_key_ = await _bound_key(session, client, code)
        async with app_client(engine, session, settings, unit_key_) as c:
            for _ in range(n):
                assert (await c.post("/incidents", json=incident)).status_code == 201
    assert (await client.post("/incidents", json=incident)).status_code == 201  # no unit
    group = unit_key().label("k")
    rows = await session.execute(select(group, func.count()).group_by(group))
    got = {k: n for k, n in rows}
    expected = await session.execute(
        text("SELECT reporting_unit_id::text, count(*) FROM incident GROUP BY 1")
    )
    assert got == {k: n for k, n in expected}
    ids = {code: str(await _unit_id(session, code)) for code in made}
    assert {got[ids[c]] for c in made} == set(made.values())
    assert got[None] >= 1
    names = await unit_names(session, [k for k in got if k is not None])
    assert names[ids["VN-P42-BP-cau-treo"]] == (
        "Cau Treo international border gate border-guard station",
        "Đồn Biên phòng cửa khẩu quốc tế Cầu Treo",
    )


async def test_the_command_line(cli_database: str, server_url: str, tmp_path: Path) -> None:
    """`borderwatch units …` on a database of its own (it commits; dropped afterwards)."""
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, list(args))  # its own event loop: off the test's loop
        assert result.exit_code == code, result.output
        return result.output

    try:
        await asyncio.to_thread(run, "migrate")
        await asyncio.to_thread(run, "geodata", "load")
        added = await asyncio.to_thread(run, "units", "demo")
        assert int(added.split()[0]) > 10
        assert (await asyncio.to_thread(run, "units", "demo")).startswith("0 demo units")
        central = await asyncio.to_thread(run, "units", "list", "--level", "central")
        assert "VN-BCA-C04" in central and "Bộ Tư lệnh Bộ đội Biên phòng" in central
        assert "VN-P38-CA" not in central
        body = tmp_path / "unit.json"
        body.write_text(
            json.dumps({"code": "VN-P11-CA", "name": "Công an tỉnh Điện Biên", "agency": "police",
                        "level": "province", "jurisdiction": "VN-P11"}, ensure_ascii=False),
            encoding="utf-8",
        )  # fmt: skip
        made = await asyncio.to_thread(run, "units", "create", str(body))
        assert "VN-P11-CA Công an tỉnh Điện Biên [province, police, VNM] VN-P11" in made
        await asyncio.to_thread(run, "units", "create", str(body), code=1)  # the code is taken
        out = await asyncio.to_thread(
            run, "units", "add-contact", "VN-P11-CA", "hotline", "+84 000 011 113"
        )
        assert "hotline +84 000 011 113" in out
        await asyncio.to_thread(run, "units", "add-contact", "VN-P11-CA", "fax", "1", code=1)
        await asyncio.to_thread(run, "units", "add-contact", "NO-SUCH", "phone", "1", code=1)
        key = await asyncio.to_thread(
            run, "keys", "create", "--name", "Điện Biên officer", "--role", "officer"
        )
        listed = await asyncio.to_thread(run, "keys", "list")
        principal = next(x for x in listed.splitlines() if "Điện Biên officer" in x).split()[0]
        bound = await asyncio.to_thread(run, "units", "bind-key", principal, "VN-P11-CA")
        assert "Công an tỉnh Điện Biên" in bound and key
        closed = await asyncio.to_thread(run, "units", "close", "VN-P11-CA")
        assert "(closed " in closed
        everything = await asyncio.to_thread(run, "units", "list", "--include-closed")
        assert "VN-P11-CA" in everything
        assert "VN-P11-CA" not in await asyncio.to_thread(run, "units", "list")
    finally:
        await drop_database(server_url, cli_database)
