"""Cooperation areas (issue 17): create, change, end (audited, If-Match), bad input, who may
write, the `cooperation=` filter on lists, statistics and tiles, the summary, the examples.
Which incidents an area holds is computed independently: shapely over the bundled boundary
files, pyproj for distances to the border."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from functools import cache
from typing import Any

import httpx
import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from conftest import GEODATA, app_client, make_key
from geo_reference import features, lines_only, nearest_line_km

INSERT = text(
    """
    INSERT INTO incident (category, severity, status, occurred_at, geom)
    VALUES ('smuggling', 3, :status, :at, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
    RETURNING id::text
    """
)
PARK = {  # a drawn polygon in Đồng Tháp's countryside (not a real park)
    "type": "Polygon",
    "coordinates": [[[105.60, 10.45], [105.70, 10.45], [105.70, 10.55], [105.60, 10.55],
                     [105.60, 10.45]]],
}  # fmt: skip


@cache
def _units(name: str) -> dict[str, dict[str, Any]]:
    fc = json.loads((GEODATA / name).read_text("utf-8"))
    return {f["properties"]["code"]: f for f in fc["features"]}


def _named(name_local: str, level: str, era: str = "2025") -> str:
    pool = _units("units_2025.geojson" if era == "2025" else "jurisdictions.geojson")
    found = [
        c
        for c, f in pool.items()
        if f["properties"]["level"] == level and f["properties"]["name_local"] == name_local
    ]
    assert len(found) == 1, (name_local, found)
    return found[0]


def _geom(code: str) -> Any:
    for name in ("units_2025.geojson", "jurisdictions.geojson"):
        if code in _units(name):
            return shape(_units(name)[code]["geometry"])
    raise KeyError(code)


@cache
def _lao_line() -> Any:
    feats = features(GEODATA / "jurisdictions.geojson")
    return lines_only(feats["VNM"][1].boundary.intersection(feats["LAO"][1].boundary))


def _body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Phối hợp vùng giáp ranh An Giang – Đồng Tháp",
        "name_en": "An Giang – Đồng Tháp adjacent areas",
        "purpose": "tuần tra chung",
        "lead_unit": "Công an tỉnh An Giang",
        "valid_from": "2025-07-01",
        "members": [
            {"kind": "jurisdiction", "code": "VN-44"},  # An Giang before 2025
            {"kind": "jurisdiction", "code": _named("Phường Hà Tiên", "commune")},
            {"kind": "polygon", "name": "Khu thử nghiệm", "approximate": True, "geometry": PARK},
            {"kind": "border_segment", "code": "VNM-LAO", "border_km": 5},
        ],
    }
    return body | over


async def test_create_read_change_end_audited(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    r = await client.post("/cooperation-areas", json=_body())
    assert r.status_code == 201, r.text
    area = r.json()
    assert (
        r.headers["etag"] == '"v1"' and r.headers["location"] == f"/cooperation-areas/{area['id']}"
    )
    kinds = [m["kind"] for m in area["members"]]
    assert kinds == ["jurisdiction", "jurisdiction", "polygon", "border_segment"]
    assert area["members"][0]["name"] == "An Giang"
    assert area["members"][1]["name"] == "Phường Hà Tiên"  # diacritics kept
    assert area["members"][2]["approximate"] is True
    assert shape(area["members"][2]["geometry"]).equals(shape(PARK).buffer(0))
    assert area["members"][3]["border_km"] == 5 and area["in_force"] is True
    # the box frames every member: the units, the polygon, the Lao line widened by its 5 km
    parts = [_geom("VN-44"), _geom(area["members"][1]["code"]), shape(PARK), _lao_line()]
    x1, y1, x2, y2 = shapely.union_all([shapely.box(*g.bounds) for g in parts]).bounds
    bx1, by1, bx2, by2 = area["bbox"]
    assert bx1 <= x1 + 1e-4 and by1 <= y1 + 1e-4 and bx2 >= x2 - 1e-4 and by2 >= y2 - 1e-4
    assert bx1 > x1 - 0.1 and by1 > y1 - 0.1 and bx2 < x2 + 0.1 and by2 < y2 + 0.1
    listed = (await client.get("/cooperation-areas")).json()["areas"]
    assert [a["member_count"] for a in listed if a["id"] == area["id"]] == [4]
    path = f"/cooperation-areas/{area['id']}"
    assert (await client.patch(path, json={"purpose": "x"})).status_code == 428
    stale = await client.patch(path, json={"purpose": "x"}, headers={"If-Match": '"v7"'})
    assert stale.status_code == 412
    assert stale.headers["content-type"].startswith("application/problem+json")
    changed = await client.patch(
        path,
        json={"purpose": "tuần tra chung trên sông Hậu", "members": _body()["members"][:1]},
        headers={"If-Match": '"v1"'},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2 and len(changed.json()["members"]) == 1
    ended = await client.post(f"{path}/end", json={"on": "2026-12-31"})
    assert ended.status_code == 200, ended.text
    assert ended.json()["valid_to"] == "2026-12-31" and ended.json()["version"] == 3
    again = await client.post(f"{path}/end", json={"on": "2026-12-31"})
    assert again.status_code == 409
    in_force_2027 = (await client.get("/cooperation-areas", params={"on": "2027-01-01"})).json()
    assert area["id"] not in [a["id"] for a in in_force_2027["areas"]]
    audit = (
        await session.execute(
            text(
                "SELECT action, jsonb_typeof(before) = 'object', after->>'version' FROM audit_event"
                " WHERE entity_type = 'cooperation_area' AND entity_id = :id ORDER BY id"
            ),
            {"id": str(area["id"])},
        )
    ).all()
    assert [tuple(a) for a in audit] == [
        ("cooperation_create", False, "1"),
        ("cooperation_update", True, "2"),
        ("cooperation_end", True, "3"),
    ]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"members": [{"kind": "jurisdiction", "code": "VN-XX9"}]}, "no jurisdiction has the code"),
        ({"members": [{"kind": "border_segment", "code": "VNM-USA"}]}, "no border segment"),
        (
            {
                "members": [
                    {
                        "kind": "polygon",
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [
                                [[105, 10], [106, 11], [106, 10], [105, 11], [105, 10]]
                            ],
                        },
                    }
                ]
            },
            "not a valid polygon",
        ),
        ({"members": [{"kind": "polygon", "code": "VN-44", "geometry": PARK}]}, "not a code"),
        ({"members": [{"kind": "star", "code": "VN-44"}]}, "kind must be one of"),
        ({"members": []}, "at least 1"),
        ({"valid_from": "2026-01-01", "valid_to": "2025-01-01"}, "valid_to must be after"),
        ({"name": ""}, "at least 1 character"),
    ],
)
async def test_bad_input_is_a_clear_422_and_writes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, change: dict[str, Any], says: str
) -> None:
    count = text("SELECT (SELECT count(*) FROM cooperation_area), count(*) FROM cooperation_member")
    before = tuple((await session.execute(count)).one())
    r = await client.post("/cooperation-areas", json=_body(**change))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert says in r.text
    assert tuple((await session.execute(count)).one()) == before


async def test_only_national_admins_write(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    scoped = await make_key(session, "admin", "VN-P91")
    officer = await make_key(session, "officer")
    async with app_client(engine, session, settings, scoped) as c:
        r = await c.post("/cooperation-areas", json=_body())
        assert r.status_code == 403 and "national admin" in r.text
        assert (await c.get("/cooperation-areas")).status_code == 200  # reading is for all
    async with app_client(engine, session, settings, officer) as c:
        assert (await c.post("/cooperation-areas", json=_body())).status_code == 403


def _expected_in_area(lon: float, lat: float, hatien: str) -> bool | None:
    """In the test area by the bundled files (None: too close to an edge to tell)."""
    point = shapely.Point(lon, lat)
    for geom in (_geom("VN-44"), _geom(hatien), shape(PARK)):
        if geom.boundary.distance(point) < 0.0005:
            return None
        if geom.contains(point):
            return True
    km = nearest_line_km(lon, lat, _lao_line())  # the box near Laos: that border is nearest
    return None if abs(km - 5) < 0.3 else km < 5


async def test_the_filter_holds_what_the_members_hold(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """Random incidents around An Giang, Hà Tiên, the drawn polygon and the Lao border: a list
    with `cooperation=` returns exactly those inside a member (shapely over the bundled files;
    the Lao strip: pyproj distance to the border line within 5 km); statistics, the summary and
    a tile count the same."""
    hatien = _named("Phường Hà Tiên", "commune")
    created = (await client.post("/cooperation-areas", json=_body())).json()
    rng = random.Random(17)
    expected: dict[str, bool] = {}
    boxes = [(104.4, 9.9, 105.9, 10.99), (105.55, 10.4, 105.75, 10.6), (103.9, 18.6, 104.4, 19.1)]
    at = datetime(2026, 3, 1, tzinfo=UTC)
    vietnam = features(GEODATA / "jurisdictions.geojson")["VNM"][1]
    while len(expected) < 240:
        x1, y1, x2, y2 = boxes[len(expected) % 3]
        lon, lat = rng.uniform(x1, x2), rng.uniform(y1, y2)
        if not vietnam.contains(shapely.Point(lon, lat)):
            continue
        inside = _expected_in_area(lon, lat, hatien)
        if inside is None:
            continue
        status = "solved" if len(expected) % 4 == 0 else "reported"
        row = await session.execute(INSERT, {"lon": lon, "lat": lat, "at": at, "status": status})
        expected[row.scalar_one()] = inside
    ours = set(expected)
    r = await client.get("/incidents", params={"cooperation": created["id"], "limit": 1000})
    assert r.status_code == 200, r.text
    got = {f["id"] for f in r.json()["features"]} & ours
    want = {i for i, inside in expected.items() if inside}
    assert got == want
    assert 40 < len(want) < len(expected) - 40  # both outcomes, every box
    # the same through OGC API – Features (GDAL, QGIS), where only incidents take the area
    ogc = await client.get(
        "/ogc/collections/incidents/items", params={"cooperation": created["id"], "limit": 5000}
    )
    assert ogc.status_code == 200, ogc.text
    assert {f["id"] for f in ogc.json()["features"]} & ours == want
    other = await client.get(
        "/ogc/collections/border_posts/items", params={"cooperation": created["id"]}
    )
    assert other.status_code == 400 and "unknown parameter 'cooperation'" in other.text
    api = (await client.get("/ogc/api")).json()["paths"]
    assert "cooperation" in {
        p.get("name") for p in api["/collections/incidents/items"]["get"]["parameters"]
    }
    # statistics and the summary over the same incidents (this test's day only)
    day = {"datetime": "2026-03-01T00:00:00Z/2026-03-01T00:00:01Z"}
    stats = await client.get(
        "/analysis/stats", params={"cooperation": created["id"], "group_by": "status", **day}
    )
    assert stats.status_code == 200, stats.text
    assert stats.json()["total"] == len(want)
    summary = await client.get(f"/cooperation-areas/{created['id']}/summary", params=day)
    assert summary.status_code == 200, summary.text
    s = summary.json()
    assert s["incidents"] == len(want)
    national = (await session.execute(
        text("SELECT count(*) FROM incident WHERE deleted_at IS NULL AND occurred_at BETWEEN"
             " '2026-03-01T00:00:00Z' AND '2026-03-01T00:00:01Z'")
    )).scalar_one()  # fmt: skip
    assert s["national_total"] == national
    assert s["share_of_national"] == pytest.approx(len(want) / national, abs=1e-4)
    solved = {i for i, inside in expected.items() if inside} & set(
        (await session.execute(text("SELECT id::text FROM incident WHERE status = 'solved'")))
        .scalars()
        .all()
    )
    assert s["cleared"] == len(solved)
    by_member = {m.get("code") or m.get("name"): m["incidents"] for m in s["by_member"]}
    rows = (await session.execute(
        text("SELECT id::text, ST_X(geom), ST_Y(geom) FROM incident WHERE id = ANY(CAST(:ids AS uuid[]))"),
        {"ids": sorted(want)},
    )).all()  # fmt: skip
    assert by_member["Khu thử nghiệm"] == sum(
        1 for _, x, y in rows if shape(PARK).contains(shapely.Point(x, y))
    )
    assert by_member["VN-44"] == sum(
        1 for _, x, y in rows if _geom("VN-44").contains(shapely.Point(x, y))
    )
    assert [m["month"] for m in s["by_month"]] == ["2026-03"]
    tile = await client.get("/tiles/incidents/6/50/29.mvt", params={"cooperation": created["id"]})
    assert tile.status_code in (200, 204), tile.text


async def test_a_scoped_reader_sees_its_part_without_the_national_total(
    engine: AsyncEngine, session: AsyncSession, settings: Settings, client: httpx.AsyncClient
) -> None:
    created = (await client.post("/cooperation-areas", json=_body())).json()
    inside_park = (105.65, 10.5)
    inside_an_giang = (105.12, 10.7)
    at = datetime(2026, 3, 2, tzinfo=UTC)
    ids = []
    for lon, lat in (inside_park, inside_an_giang):
        row = await session.execute(
            INSERT, {"lon": lon, "lat": lat, "at": at, "status": "reported"}
        )
        ids.append(row.scalar_one())
    dong_thap = _named("Đồng Tháp", "province")
    assert _geom(dong_thap).contains(shapely.Point(*inside_park))
    key = await make_key(session, "analyst", dong_thap)
    async with app_client(engine, session, settings, key) as c:
        day = {"datetime": "2026-03-02T00:00:00Z/2026-03-02T00:00:01Z"}
        listed = await c.get(
            "/incidents", params={"cooperation": created["id"], "group_by": "status", **day}
        )
        got = {f["id"] for f in listed.json()["features"]}
        assert ids[0] in got and ids[1] not in got  # An Giang is outside Đồng Tháp's scope
        s = (await c.get(f"/cooperation-areas/{created['id']}/summary", params=day)).json()
        assert s["incidents"] == len(got)
        assert s["national_total"] is None and s["share_of_national"] is None
    unknown = await client.get("/incidents", params={"cooperation": 999999})
    assert unknown.status_code == 422 and "cooperation area 999999" in unknown.text
    missing = await client.get("/cooperation-areas/999999/summary")
    assert missing.status_code == 404


async def test_the_examples_of_the_seeds(session: AsyncSession, client: httpx.AsyncClient) -> None:
    from app.cooperation import examples

    assert await examples.load(session) == 3
    assert await examples.load(session) == 0  # not twice
    areas = {a["name"]: a for a in (await client.get("/cooperation-areas")).json()["areas"]}
    assert all(a["example"] for a in areas.values()) and len(areas) == 3
    full = [(await client.get(f"/cooperation-areas/{a['id']}")).json() for a in areas.values()]
    codes = [{m.get("code") for m in a["members"]} for a in full]
    hcmc, an_giang, park = codes
    former = {_named(n, "province", "former") for n in (
        "Thành phố Hồ Chí Minh", "Bà Rịa – Vũng Tàu", "Đồng Nai", "Bình Dương", "Tây Ninh",
        "Long An", "Tiền Giang")}  # fmt: skip
    assert hcmc == former and full[0]["valid_from"] == "2018-01-01"
    named = {
        _named(n, "commune")
        for n in ("Phường Hà Tiên", "Phường Tô Châu", "Xã Giang Thành", "Xã Tiên Hải")
    }
    assert named <= an_giang
    an_giang_2025 = _named("An Giang", "province")
    for code in an_giang - {"VNM-KHM"}:
        assert _units("units_2025.geojson")[code]["properties"]["parent_code"] == an_giang_2025
    polygon = [m for m in full[2]["members"] if m["kind"] == "polygon"]
    assert len(polygon) == 1 and polygon[0]["approximate"] is True
    assert "Tràng Duệ" in polygon[0]["name"]
    hai_phong = _named("Hải Phòng", "province")
    assert park - {None} and all(
        _units("units_2025.geojson")[c]["properties"]["parent_code"] == hai_phong
        for c in park - {None}
    )


async def test_tile_urls_change_with_the_area(client: httpx.AsyncClient) -> None:
    """The incident tiles of an area are version-keyed on the area too: changing its members
    gives new tile URLs (and ETags), so no cache serves the old members' incidents."""
    created = (await client.post("/cooperation-areas", json=_body())).json()
    params = {"cooperation": created["id"]}
    before = (await client.get("/tiles/incidents.json", params=params)).json()["tiles"][0]
    assert f"cooperation={created['id']}" in before
    tile = f"/tiles/incidents/6/50/29.mvt?cooperation={created['id']}"
    etag_before = (await client.get(tile)).headers.get("etag")
    changed = await client.patch(
        f"/cooperation-areas/{created['id']}",
        json={"members": _body()["members"][:2]},
        headers={"If-Match": '"v1"'},
    )
    assert changed.status_code == 200, changed.text
    after = (await client.get("/tiles/incidents.json", params=params)).json()["tiles"][0]
    assert after != before
    assert (await client.get(tile)).headers.get("etag") != etag_before
