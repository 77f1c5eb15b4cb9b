"""Border posts managed through the service (issue 22, posts): create, change with If-Match,
close with valid_to, history and audit, areas of responsibility, import all-or-nothing, the
nearest-post re-derivation in batches, and who may write (the access matrix for posts).

Distances are checked against pyproj's geodesic on WGS 84 (not the database's), positions
against the bundled boundary file read with shapely.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import mapbox_vector_tile
import pyogrio
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import shape
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.geodata import load as geodata
from app.posts import rederive
from app.posts import service as post_service
from conftest import GEODATA, app_client, make_key
from geo_reference import features

PROBLEM = "application/problem+json"
GEOD = Geod(ellps="WGS84")
LAO_BAO = (106.5960, 16.6220)  # the bundled gate (geodata/border_posts.csv)
NEAR_LAO_BAO = (106.70, 16.65)  # an incident ~11 km east of it, in Quảng Trị
NEW_POST = (106.72, 16.66)  # a new post ~2.5 km from that incident
IN_AN_GIANG = (105.00, 10.55)  # near the Cambodian border, inside An Giang (VN-44)


def km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Geodesic distance on WGS 84, km (independent of PostGIS)."""
    return float(GEOD.inv(a[0], a[1], b[0], b[1])[2]) / 1000


def post_body(code: str, where: tuple[float, float], **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "name": f"Post {code}",
        "name_local": f"Đồn biên phòng {code}",
        "kind": "border_guard_station",
        "agency": "Bộ đội Biên phòng",
        "location": {"type": "Point", "coordinates": list(where)},
        **extra,
    }


async def incident(
    client: httpx.AsyncClient, where: tuple[float, float], occurred: str = "2026-03-10T08:00:00"
) -> str:
    r = await client.post(
        "/incidents",
        json={
            "category": "smuggling",
            "severity": 3,
            "occurred_at": occurred,
            "location": {"type": "Point", "coordinates": list(where)},
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def posts_on_map(client: httpx.AsyncClient, at: tuple[float, float]) -> set[str]:
    """The post codes in the border_posts vector tile (z12) that holds `at`."""
    n = 2**12
    x = int((at[0] + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(at[1]))) / math.pi) / 2 * n)
    r = await client.get(f"/tiles/border_posts/12/{x}/{y}.mvt")
    assert r.status_code == 200, r.text
    if not r.content:
        return set()
    layers = mapbox_vector_tile.decode(r.content)
    return {str(f["properties"]["code"]) for f in layers["border_posts"]["features"]}


async def nearest(client: httpx.AsyncClient, incident_id: str) -> tuple[str | None, float | None]:
    p = (await client.get(f"/incidents/{incident_id}")).json()["properties"]
    return p["nearest_post"], p["nearest_post_km"]


async def analysis(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    r = await client.get("/analysis/border-posts", params={"zone_km": 50})
    assert r.status_code == 200, r.text
    return {f["id"]: f["properties"] for f in r.json()["features"]}


async def counts(session: AsyncSession, code: str) -> tuple[int, int, int]:
    """Posts with the code, their history rows and audit events (what a refused write must not
    leave behind)."""
    row = (
        await session.execute(
            text(
                "SELECT (SELECT count(*) FROM border_post WHERE code = :c),"
                " (SELECT count(*) FROM border_post_history h JOIN border_post p"
                "   ON p.id = h.post_id WHERE p.code = :c),"
                " (SELECT count(*) FROM audit_event WHERE entity_type = 'border_post'"
                "   AND entity_id = :c)"
            ),
            {"c": code},
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def test_fixture_points() -> None:
    """The fixture points are where the tests say, by the bundled file (not the database)."""
    feats = features(GEODATA / "jurisdictions.geojson")
    vn = feats["VNM"][1]
    assert vn.contains(shapely.Point(NEAR_LAO_BAO)) and vn.contains(shapely.Point(NEW_POST))
    assert feats["VN-44"][1].contains(shapely.Point(IN_AN_GIANG))
    assert not feats["VN-44"][1].contains(shapely.Point(NEW_POST))
    assert 10 < km(NEAR_LAO_BAO, LAO_BAO) < 13
    assert km(NEAR_LAO_BAO, NEW_POST) < 3


async def test_kinds_and_existing_gates(client: httpx.AsyncClient) -> None:
    kinds = {k["code"]: k for k in (await client.get("/border-posts/kinds")).json()["kinds"]}
    assert kinds["border_gate"]["name_vi"] == "Cửa khẩu quốc tế" and kinds["border_gate"]["gate"]
    for code in ("border_gate_main", "border_gate_secondary", "border_guard_station", "police",
                 "customs", "coast_guard", "checkpoint"):  # fmt: skip
        assert code in kinds and kinds[code]["name_en"] and kinds[code]["name_vi"]
    r = await client.get("/border-posts/lao-bao", params={"history": "true"})
    assert r.status_code == 200 and r.headers["ETag"].startswith('"v')
    feature = r.json()
    p = feature["properties"]
    assert p["kind"] == "border_gate" and p["kind_name"] == "Cửa khẩu quốc tế"
    assert p["name_local"] == "Cửa khẩu quốc tế Lao Bảo" and p["in_force"] is True
    assert p["area_source"] == "generated" and p["area"]["type"] == "MultiPolygon"
    assert feature["history"][0]["action"] in ("migrate", "load")


async def test_new_post_changes_nearest_and_analysis(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """A post added near an incident becomes its nearest post, at the geodesic distance, and
    the post-areas analysis moves the incident from Lao Bao's row to the new post's."""
    inc = await incident(client, NEAR_LAO_BAO)
    code, dist = await nearest(client, inc)
    assert code == "lao-bao"
    assert dist == pytest.approx(km(NEAR_LAO_BAO, LAO_BAO), abs=0.01)
    before = await analysis(client)
    assert before["lao-bao"]["count"] >= 1

    r = await client.post("/border-posts", json=post_body("dbp-test-1", NEW_POST))
    assert r.status_code == 201, r.text
    assert r.headers["ETag"] == '"v1"' and r.headers["Location"] == "/border-posts/dbp-test-1"
    created = r.json()
    job = created["rederive"]
    assert job["state"] == "done" and job["done"] == job["total"] >= 1 and job["changed"] >= 1
    assert created["properties"]["border"] == "VNM-LAO"  # derived: the nearest segment

    code, dist = await nearest(client, inc)
    assert code == "dbp-test-1"
    assert dist == pytest.approx(km(NEAR_LAO_BAO, NEW_POST), abs=0.01)
    after = await analysis(client)
    assert after["dbp-test-1"]["count"] == 1
    assert after["lao-bao"]["count"] == before["lao-bao"]["count"] - 1
    # its generated area holds the incident (it is nearer to it than to any other post)
    area = shape((await client.get("/border-posts/dbp-test-1")).json()["properties"]["area"])
    assert area.contains(shapely.Point(NEAR_LAO_BAO))
    assert after["dbp-test-1"]["area_count"] == 1
    overlay = (await client.get("/border-posts/areas")).json()["features"]
    assert "dbp-test-1" in {f["id"] for f in overlay}
    # the neighbour's generated area gave the incident up
    lao_bao_area = shape(next(f for f in overlay if f["id"] == "lao-bao")["geometry"])
    assert not lao_bao_area.contains(shapely.Point(NEAR_LAO_BAO))
    # the history and the audit log name who did it
    hist = (await client.get("/border-posts/dbp-test-1/history")).json()["history"]
    assert hist[0]["action"] == "create" and hist[0]["actor"].startswith("principal:")
    assert (await counts(session, "dbp-test-1"))[2] == 1


async def test_close_keeps_history_and_nearest_before(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """Closing a post: incidents that occurred before its valid_to keep it as nearest post,
    those after get the next one; the post stays (closed) with its history."""
    early = await incident(client, NEAR_LAO_BAO, "2026-01-10T08:00:00")
    late = await incident(client, NEAR_LAO_BAO, "2026-03-10T08:00:00")
    r = await client.post("/border-posts", json=post_body("dbp-test-2", NEW_POST))
    assert r.status_code == 201, r.text
    assert (await nearest(client, early))[0] == "dbp-test-2"
    assert (await nearest(client, late))[0] == "dbp-test-2"
    assert "dbp-test-2" in await posts_on_map(client, NEW_POST)

    r = await client.post(
        "/border-posts/dbp-test-2/close", json={"on": "2026-02-01"}, headers={"If-Match": '"v1"'}
    )
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["valid_to"] == "2026-02-01" and r.headers["ETag"] == '"v2"'
    assert (await nearest(client, early))[0] == "dbp-test-2"
    code, dist = await nearest(client, late)
    assert code == "lao-bao" and dist == pytest.approx(km(NEAR_LAO_BAO, LAO_BAO), abs=0.01)
    # a new incident after the closing day never gets it
    later = await incident(client, NEAR_LAO_BAO, "2026-04-01T08:00:00")
    assert (await nearest(client, later))[0] == "lao-bao"
    # one before it does (the trigger knows validity too)
    before = await incident(client, NEAR_LAO_BAO, "2026-01-20T08:00:00")
    assert (await nearest(client, before))[0] == "dbp-test-2"

    listed = {f["id"] for f in (await client.get("/border-posts")).json()["features"]}
    assert "dbp-test-2" not in listed
    # nor on the map's posts layer (closed before today); Lao Bảo is
    assert "dbp-test-2" not in await posts_on_map(client, NEW_POST)
    assert "lao-bao" in await posts_on_map(client, LAO_BAO)
    every = {f["id"]: f for f in (await client.get("/border-posts?closed=true")).json()["features"]}
    assert every["dbp-test-2"]["properties"]["valid_to"] == "2026-02-01"
    hist = (await client.get("/border-posts/dbp-test-2/history")).json()["history"]
    assert [h["action"] for h in hist if h["action"] != "area_generated"] == ["create", "close"]
    close = next(h for h in hist if h["action"] == "close")
    assert close["changes"]["valid_to"] == [None, "2026-02-01"] and close["version"] == 2
    again = await client.post("/border-posts/dbp-test-2/close", json={"on": "2026-03-01"})
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM
    # the history cannot be rewritten
    with pytest.raises(Exception, match="append-only"):
        async with session.begin_nested():
            await session.execute(text("DELETE FROM border_post_history"))


async def test_a_reload_of_the_bundled_gates_keeps_what_the_service_changed(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """A gate renamed through the API and one closed keep their change when the bundled list
    is loaded again; an untouched gate moved in the file follows the file."""
    gate = await client.get("/border-posts/lao-bao")
    assert gate.status_code == 200, gate.text
    renamed = await client.patch(
        "/border-posts/lao-bao", json={"name_local": "Cửa khẩu Quốc tế Lao Bảo (đã đổi)"},
        headers={"If-Match": gate.headers["ETag"]},
    )  # fmt: skip
    assert renamed.status_code == 200, renamed.text
    records = geodata.read_posts(geodata.DEFAULT_POSTS)
    other = next(r for r in records if r.code != "lao-bao")
    closing = await client.get(f"/border-posts/{other.code}")
    closed = await client.post(
        f"/border-posts/{other.code}/close", json={"on": "2026-02-01"},
        headers={"If-Match": closing.headers["ETag"]},
    )  # fmt: skip
    assert closed.status_code == 200, closed.text
    third = next(r for r in records if r.code not in ("lao-bao", other.code))
    moved = [
        dataclasses.replace(r, lon=r.lon + 0.01) if r.code == third.code else r for r in records
    ]
    await post_service.upsert(session=session, records=moved)
    after = (await client.get("/border-posts/lao-bao")).json()["properties"]
    assert after["name_local"] == "Cửa khẩu Quốc tế Lao Bảo (đã đổi)"
    assert (await client.get(f"/border-posts/{other.code}")).json()["properties"]["valid_to"] == (
        "2026-02-01"
    )
    lon = (
        await session.execute(
            text("SELECT ST_X(geom) FROM border_post WHERE code = :c"), {"c": third.code}
        )
    ).scalar_one()
    assert lon == pytest.approx(third.lon + 0.01, abs=1e-9)


async def test_if_match(client: httpx.AsyncClient, session: AsyncSession) -> None:
    r = await client.post("/border-posts", json=post_body("dbp-test-3", NEW_POST))
    assert r.status_code == 201, r.text
    patch = {"name": "Đồn Biên phòng Lìa", "opening_hours": None}
    missing = await client.patch("/border-posts/dbp-test-3", json=patch)
    assert missing.status_code == 428 and missing.headers["content-type"] == PROBLEM
    stale = await client.patch("/border-posts/dbp-test-3", json=patch, headers={"If-Match": '"v7"'})
    assert stale.status_code == 412 and stale.headers["content-type"] == PROBLEM
    ok = await client.patch("/border-posts/dbp-test-3", json=patch, headers={"If-Match": '"v1"'})
    assert ok.status_code == 200, ok.text
    assert ok.headers["ETag"] == '"v2"' and ok.json()["properties"]["name"] == "Đồn Biên phòng Lìa"
    again = await client.patch(
        "/border-posts/dbp-test-3", json={"name": "x"}, headers={"If-Match": '"v1"'}
    )
    assert again.status_code == 412
    # opening hours are for gates only
    gate_only = await client.patch(
        "/border-posts/dbp-test-3", json={"opening_hours": "07:00-19:00"},
        headers={"If-Match": '"v2"'},
    )  # fmt: skip
    assert gate_only.status_code == 422 and gate_only.headers["content-type"] == PROBLEM
    hist = (await client.get("/border-posts/dbp-test-3/history")).json()["history"]
    update = next(h for h in hist if h["action"] == "update")
    assert update["changes"]["name"] == ["Post dbp-test-3", "Đồn Biên phòng Lìa"]
    audit = (
        await session.execute(
            text(
                "SELECT action, before -> 'properties' ->> 'name', after -> 'properties' ->> 'name'"
                " FROM audit_event WHERE entity_id = 'dbp-test-3' ORDER BY id"
            )
        )
    ).all()
    assert [a[0] for a in audit] == ["post_create", "post_update"]
    assert audit[1][1:] == ("Post dbp-test-3", "Đồn Biên phòng Lìa")


@pytest.fixture
async def clients(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Every role scoped to An Giang (VN-44), a national admin, and no key."""
    out: dict[str, httpx.AsyncClient] = {}
    for role in ("viewer", "officer", "analyst", "admin"):
        out[role] = app_client(engine, session, settings, await make_key(session, role, "VN-44"))
    out["national"] = app_client(engine, session, settings, await make_key(session, "admin"))
    out["anonymous"] = app_client(engine, session, settings, None)
    try:
        yield out
    finally:
        for c in out.values():
            await c.aclose()


async def test_access_matrix(clients: dict[str, httpx.AsyncClient], session: AsyncSession) -> None:
    """Posts: every key reads; a national admin writes anywhere; an admin scoped to An Giang
    writes only posts inside An Giang (403 problem+json outside, nothing written); other roles
    never write."""
    for who in ("viewer", "officer", "analyst", "admin", "national"):
        for path in ("/border-posts", "/border-posts/lao-bao", "/border-posts/kinds",
                     "/border-posts/areas", "/border-posts/lao-bao/history"):  # fmt: skip
            assert (await clients[who].get(path)).status_code == 200, (who, path)
    for role in ("viewer", "officer", "analyst"):
        r = await clients[role].post("/border-posts", json=post_body(f"x-{role}", IN_AN_GIANG))
        assert r.status_code == 403 and r.headers["content-type"] == PROBLEM, role
        assert await counts(session, f"x-{role}") == (0, 0, 0)
    anon = await clients["anonymous"].post("/border-posts", json=post_body("x-anon", IN_AN_GIANG))
    assert anon.status_code == 401

    scoped = clients["admin"]
    outside = await scoped.post("/border-posts", json=post_body("x-outside", NEW_POST))
    assert outside.status_code == 403 and outside.headers["content-type"] == PROBLEM
    assert "outside your scope" in outside.json()["detail"]
    assert await counts(session, "x-outside") == (0, 0, 0)

    inside = await scoped.post("/border-posts", json=post_body("x-inside", IN_AN_GIANG))
    assert inside.status_code == 201, inside.text
    # moving it out of An Giang: 403, nothing changed
    moved = await scoped.patch(
        "/border-posts/x-inside",
        json={"location": {"type": "Point", "coordinates": list(NEW_POST)}},
        headers={"If-Match": '"v1"'},
    )
    assert moved.status_code == 403 and moved.headers["content-type"] == PROBLEM
    still = (await scoped.get("/border-posts/x-inside")).json()
    assert still["geometry"]["coordinates"] == list(IN_AN_GIANG)
    assert still["properties"]["version"] == 1
    assert (await counts(session, "x-inside"))[2] == 1  # the create only
    # a post outside cannot be changed or closed by it; the national admin can
    lao = await scoped.patch("/border-posts/lao-bao", json={"name": "x"}, headers={"If-Match": "*"})
    assert lao.status_code == 403
    closed = await scoped.post("/border-posts/lao-bao/close", json={})
    assert closed.status_code == 403
    national = await clients["national"].patch(
        "/border-posts/x-inside", json={"opening_status": None}, headers={"If-Match": '"v1"'}
    )
    assert national.status_code == 200, national.text
    kind = await scoped.post(
        "/border-posts/kinds",
        json={"code": "river_post", "name_vi": "Trạm sông", "name_en": "River"},
    )
    assert kind.status_code == 403


async def test_import_all_or_nothing_and_export(client: httpx.AsyncClient, tmp_path: Path) -> None:
    header = "code,name,name_local,kind,agency,lon,lat,opening_status,opening_hours\n"
    good = [
        "imp-1,Dak Per,Cửa khẩu Đắk Per,border_gate_main,Biên phòng,107.50,12.10,open,07:00-17:00",
        "imp-2,Tram A,Trạm kiểm soát A,checkpoint,Công an,106.60,16.80,,",
    ]
    bad = [
        *good,
        "imp-3,Bad,Sai,submarine,Hải quân,106.60,16.80,,",
        "imp-4,Far,Xa,police,Công an,106.60,95.0,,",
    ]
    r = await client.post(
        "/border-posts/import", content=(header + "\n".join(bad)).encode(),
        headers={"Content-Type": "text/csv"},
    )  # fmt: skip
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["invalid_rows"] == 2 and problem["rows"] == 4
    by_row = {e["row"]: e for e in problem["errors"]}
    assert by_row[3]["column"] == "kind" and "submarine" in by_row[3]["reason"]
    assert by_row[4]["column"] == "location"
    for code in ("imp-1", "imp-2"):  # nothing written
        assert (await client.get(f"/border-posts/{code}")).status_code == 404

    r = await client.post(
        "/border-posts/import", content=(header + "\n".join(good)).encode(),
        headers={"Content-Type": "text/csv"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["inserted"], report["updated"]) == (2, 0)
    assert [x["result"] for x in report["results"]] == ["inserted", "inserted"]
    p = (await client.get("/border-posts/imp-1")).json()["properties"]
    assert p["kind_name"] == "Cửa khẩu chính" and p["opening_hours"] == "07:00-17:00"

    # exports: every post, read back independently
    gj = (await client.get("/border-posts/export", params={"format": "geojson"})).json()
    coded = {f["id"]: f for f in gj["features"]}
    assert coded["imp-1"]["geometry"]["coordinates"] == [107.5, 12.1]
    assert coded["imp-2"]["properties"]["name_local"] == "Trạm kiểm soát A"
    rows = list(csv.DictReader(io.StringIO((await client.get(
        "/border-posts/export", params={"format": "csv"})).text)))  # fmt: skip
    assert {r["code"] for r in rows} == set(coded)
    gpkg = await client.get("/border-posts/export", params={"format": "gpkg"})
    assert gpkg.headers["content-type"] == "application/geopackage+sqlite3"
    exported = tmp_path / "posts.gpkg"
    exported.write_bytes(gpkg.content)
    frame = pyogrio.read_dataframe(exported)
    assert set(frame["code"]) == set(coded)
    row = frame[frame["code"] == "imp-1"].iloc[0]
    assert (row.geometry.x, row.geometry.y) == pytest.approx((107.5, 12.1))

    # re-import of the GeoJSON export with a change: the existing posts are updated
    coded["imp-2"]["properties"]["name"] = "Tram B"
    again = await client.post(
        "/border-posts/import",
        content=json.dumps({"type": "FeatureCollection", "features": [coded["imp-2"]]}),
        headers={"Content-Type": "application/geo+json"},
    )
    assert again.status_code == 200, again.text
    assert again.json()["updated"] == 1
    assert (await client.get("/border-posts/imp-2")).headers["ETag"] == '"v2"'
    # and a GeoPackage import
    one = frame[frame["code"] == "imp-1"].copy()
    one["code"] = "imp-5"
    buf = io.BytesIO()
    pyogrio.write_dataframe(one, buf, driver="GPKG", layer="border_posts")
    gp = await client.post(
        "/border-posts/import?format=gpkg", content=buf.getvalue(),
        headers={"Content-Type": "application/geopackage+sqlite3"},
    )  # fmt: skip
    assert gp.status_code == 200, gp.text
    assert gp.json()["inserted"] == 1


async def test_rederive_in_batches_with_progress(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """A job runs in bounded batches; between them every incident has either its old or its
    new nearest post, and the status reports the progress."""
    ids = [await incident(client, (NEAR_LAO_BAO[0] + 0.002 * n, NEAR_LAO_BAO[1])) for n in range(7)]
    # a post written without its follow-up (as an import does), then the job by hand
    await session.execute(
        text(
            "INSERT INTO border_post (code, name, kind, agency, position_approximate, geom,"
            " source) VALUES ('dbp-test-9', 'Nine', 'checkpoint', 'Công an', true,"
            " ST_SetSRID(ST_MakePoint(:x, :y), 4326), 'test')"
        ),
        {"x": NEW_POST[0], "y": NEW_POST[1]},
    )
    post_id = (
        await session.execute(text("SELECT id FROM border_post WHERE code = 'dbp-test-9'"))
    ).scalar_one()
    job_id, total = await rederive.plan(
        session=session, post_ids=[post_id], reason="test", actor="test", batch=3
    )
    assert total == 7  # the only incidents of this test database
    status = (await client.get(f"/border-posts/jobs/{job_id}")).json()
    assert (status["state"], status["done"], status["total"]) == ("pending", 0, total)
    # one batch: the 3 first incidents (by id) have the new post, the others still the old
    first = await rederive.run(session=session, job_id=job_id, max_batches=1)
    assert (first["state"], first["done"]) == ("running", 3)
    rows = (
        await session.execute(
            text(
                "SELECT p.code FROM incident i JOIN border_post p ON p.id = i.nearest_post_id"
                " WHERE i.id = ANY(CAST(:ids AS uuid[])) ORDER BY i.id"
            ),
            {"ids": ids},
        )
    ).scalars()
    assert list(rows) == ["dbp-test-9"] * 3 + ["lao-bao"] * 4
    seen: list[tuple[int, int]] = [(3, total)]
    final = await rederive.run(
        session=session, job_id=job_id, progress=lambda d, t: seen.append((d, t))
    )
    assert seen[0] == (3, total) and seen[-1] == (total, total)
    assert all(b[0] - a[0] <= 3 for a, b in itertools.pairwise(seen))
    assert final["state"] == "done" and final["changed"] >= 7
    for i in ids:
        code, dist = await nearest(client, i)
        assert code == "dbp-test-9"
    assert dist == pytest.approx(km((NEAR_LAO_BAO[0] + 0.012, NEAR_LAO_BAO[1]), NEW_POST), abs=0.01)


async def test_cli(cli_database: str, server_url: str, tmp_path: Path) -> None:
    """`borderwatch posts …` on a fresh database: create, close, import all-or-nothing,
    export, and the jobs are finished (the CLI commits; the test drops its database)."""
    import asyncio

    from typer.testing import CliRunner

    from app.cli import app
    from conftest import drop_database

    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result.output

    try:
        await asyncio.to_thread(run, "migrate")
        await asyncio.to_thread(run, "geodata", "load")
        body = tmp_path / "post.json"
        body.write_text(json.dumps(post_body("cli-1", NEW_POST)), "utf-8")
        out = await asyncio.to_thread(run, "posts", "create", str(body))
        assert "cli-1" in out and "v1" in out
        out = await asyncio.to_thread(run, "posts", "close", "cli-1", "--on", "2026-02-01")
        assert "2026-02-01" in out and "v2" in out
        shown = json.loads(await asyncio.to_thread(run, "posts", "show", "cli-1", "--history"))
        assert [h["action"] for h in shown["history"] if h["action"] != "area_generated"] == [
            "create", "close",
        ]  # fmt: skip
        assert shown["history"][0]["actor"].startswith("cli")
        bad = tmp_path / "bad.csv"
        bad.write_text("code,name,kind,agency,lon,lat\ncli-2,A,police,CA,106.6,16.8\n"
                       "cli-3,B,submarine,CA,106.6,16.8\n", "utf-8")  # fmt: skip
        out = await asyncio.to_thread(run, "posts", "import", str(bad), code=1)
        assert "row 2, kind" in " ".join(out.split())
        exported = tmp_path / "all.csv"
        await asyncio.to_thread(run, "posts", "export", str(exported))
        codes = {r["code"] for r in csv.DictReader(io.StringIO(exported.read_text("utf-8")))}
        assert "cli-1" in codes and "lao-bao" in codes and "cli-2" not in codes
        out = await asyncio.to_thread(run, "posts", "rederive")
        assert "job" not in out or "done" in out  # nothing left unfinished
        kinds = await asyncio.to_thread(run, "posts", "kinds")
        assert "Đồn biên phòng" in kinds
    finally:
        await drop_database(server_url, cli_database)
