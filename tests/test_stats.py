"""GET /analysis/stats: counts, clearance rate and share per group, checked by hand and against
an independent grouping in Python; the caller's scope bounds every number."""

from __future__ import annotations

import json
import zoneinfo
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import pytest
import shapely
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from conftest import GEODATA, app_client, make_key
from geo_reference import features

PROBLEM = "application/problem+json"
VN = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")

# (lon, lat, category, status, occurred_at)
AN_GIANG = [
    (105.435, 10.386, "smuggling", "solved", "2024-01-05T10:00:00Z"),
    (105.439, 10.388, "smuggling", "solved", "2024-01-31T20:00:00Z"),  # 1 Feb in Viet Nam
    (105.443, 10.390, "smuggling", "closed", "2024-02-10T10:00:00Z"),
    (105.447, 10.392, "gambling", "closed", "2024-02-11T10:00:00Z"),
    (105.451, 10.394, "gambling", "reported", "2024-04-01T00:00:00+07:00"),  # 31 Mar UTC
    (105.455, 10.396, "gambling", "reported", "2024-04-20T10:00:00Z"),
    (105.459, 10.398, "fraud", "verified", "2024-04-21T10:00:00Z"),
    (105.463, 10.400, "fraud", "under_investigation", "2024-06-01T10:00:00Z"),
    (105.467, 10.402, "fraud", "rejected", "2024-06-02T10:00:00Z"),
    (105.471, 10.404, "other", "duplicate", "2024-06-03T10:00:00Z"),
]
HA_NOI = [
    (105.854, 21.028, "fraud", "solved", "2024-01-07T10:00:00Z"),
    (105.830, 21.010, "fraud", "reported", "2024-02-07T10:00:00Z"),
    (105.860, 21.040, "robbery_theft", "closed", "2024-06-07T10:00:00Z"),
]
LANG_SON = [
    (106.705, 21.960, "smuggling", "reported", "2024-01-09T10:00:00Z"),
    (106.690, 21.940, "counterfeit_goods", "verified", "2024-04-09T10:00:00Z"),
]
ROWS = AN_GIANG + HA_NOI + LANG_SON


async def _post(client: httpx.AsyncClient, row: tuple[Any, ...]) -> dict[str, Any]:
    lon, lat, category, status, at = row
    r = await client.post(
        "/incidents",
        json={
            "category": category,
            "severity": 3,
            "status": status,
            "occurred_at": at,
            "location": {"type": "Point", "coordinates": [lon, lat]},
        },
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _seed(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    feats = features(GEODATA / "jurisdictions.geojson")
    for rows, code in ((AN_GIANG, "VN-44"), (HA_NOI, "VN-HN"), (LANG_SON, "VN-09")):
        for lon, lat, *_ in rows:  # where the fixture points are, independently
            assert feats[code][1].contains(shapely.Point(lon, lat)), (code, lon, lat)
    seeded = [await _post(client, row) for row in ROWS]
    # a deleted incident counts nowhere
    gone = await _post(client, (105.44, 10.39, "smuggling", "solved", "2024-01-06T00:00:00Z"))
    assert (await client.delete(f"/incidents/{gone['id']}")).status_code == 204
    return seeded


async def _stats(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get("/analysis/stats", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body: dict[str, Any] = r.json()
    return body


def _expected(keys: list[str | None], solved: list[bool]) -> dict[str | None, tuple[int, int]]:
    count: Counter[str | None] = Counter(keys)
    cleared: Counter[str | None] = Counter(k for k, s in zip(keys, solved, strict=True) if s)
    return {k: (n, cleared[k]) for k, n in count.items()}


def _solved(rows: list[tuple[Any, ...]]) -> list[bool]:
    return [r[3] in ("solved", "closed") for r in rows]


def _today(former: str) -> tuple[str, str, str]:
    """Code, name and Vietnamese name of the 2025 province a former one became part of (from
    the bundled units' formed_from)."""
    fc = json.loads((GEODATA / "units_2025.geojson").read_text("utf-8"))
    found = [
        (p["code"], p["name"], p["name_local"])
        for p in (f["properties"] for f in fc["features"])
        if p["level"] == "province" and former in p["formed_from"]
    ]
    assert len(found) == 1, (former, found)
    return found[0]


def _former(code: str) -> tuple[str, str]:
    """Name and Vietnamese name of a former province in the bundled boundary file."""
    fc = json.loads((GEODATA / "jurisdictions.geojson").read_text("utf-8"))
    p = next(f["properties"] for f in fc["features"] if f["properties"]["code"] == code)
    return p["name"], p["name_local"]


async def test_jurisdiction_by_hand(client: httpx.AsyncClient) -> None:
    await _seed(client)
    body = await _stats(client, group_by="jurisdiction")
    assert body["group_by"] == "jurisdiction" and body["level"] == "province"
    assert body["scope"] is None and body["at"] is None
    assert body["total"] == 15 and body["solved"] == 6 and body["clearance_rate"] == 6 / 15
    # by default today's provinces (the 2025 ones the former ones became part of)
    an_giang, ha_noi, lang_son = (_today(c) for c in ("VN-44", "VN-HN", "VN-09"))
    expected = [
        (an_giang, 10, 4, 0.4, 10 / 15),
        (ha_noi, 3, 2, 2 / 3, 3 / 15),
        (lang_son, 2, 0, 0.0, 2 / 15),
    ]
    assert body["groups"] == [
        {
            "key": code,
            "name": name,
            "name_local": name_local,
            "count": n,
            "solved": s,
            "clearance_rate": rate,
            "share": share,
        }
        for (code, name, name_local), n, s, rate, share in expected
    ]
    # the same incidents by the provinces in force on 1 June 2024
    before = await _stats(client, group_by="jurisdiction", at="2024-06-01")
    assert before["at"] == "2024-06-01"
    assert [(g["key"], g["name"], g["name_local"], g["count"]) for g in before["groups"]] == [
        ("VN-44", *_former("VN-44"), 10),
        ("VN-HN", *_former("VN-HN"), 3),
        ("VN-09", *_former("VN-09"), 2),
    ]
    country = await _stats(client, group_by="jurisdiction", level="country")
    assert country["groups"] == [
        {
            "key": "VNM",
            "name": "Vietnam",
            "name_local": _former("VNM")[1],
            "count": 15,
            "solved": 6,
            "clearance_rate": 0.4,
            "share": 1.0,
        }
    ]
    # the shared filters narrow the total that shares are taken of
    smuggling = await _stats(client, group_by="jurisdiction", category="smuggling")
    assert smuggling["total"] == 4
    assert [(g["key"], g["count"], g["solved"], g["share"]) for g in smuggling["groups"]] == [
        (an_giang[0], 3, 3, 3 / 4),
        (lang_son[0], 1, 0, 1 / 4),
    ]
    nothing = await _stats(client, group_by="jurisdiction", bbox="0,0,1,1")
    assert nothing == {
        "group_by": "jurisdiction",
        "level": "province",
        "at": None,
        "scope": None,
        "total": 0,
        "solved": 0,
        "clearance_rate": None,
        "groups": [],
    }


@pytest.mark.parametrize("group_by", ["category", "status", "border_segment"])
async def test_groups_match_python(client: httpx.AsyncClient, group_by: str) -> None:
    seeded = await _seed(client)
    prop = {"category": "category", "status": "status", "border_segment": "border_segment"}
    keys = [f["properties"][prop[group_by]] for f in seeded]
    expected = _expected(keys, _solved(ROWS))
    body = await _stats(client, group_by=group_by)
    got = {g["key"]: (g["count"], g["solved"]) for g in body["groups"]}
    assert got == expected
    assert body["total"] == 15 == sum(g["count"] for g in body["groups"])
    for g in body["groups"]:
        assert g["share"] == g["count"] / 15
        assert g["clearance_rate"] == g["solved"] / g["count"]
    if group_by == "status":  # the lifecycle order
        assert [g["key"] for g in body["groups"]] == [
            "reported",
            "verified",
            "under_investigation",
            "solved",
            "closed",
            "rejected",
            "duplicate",
        ]
    if group_by == "category":
        assert body["groups"][0] == {
            "key": "fraud",
            "name": "Fraud (incl. online)",
            "name_local": body["groups"][0]["name_local"],
            "count": 5,
            "solved": 1,
            "clearance_rate": 0.2,
            "share": 5 / 15,
        }


def _month(at: str, tz: zoneinfo.ZoneInfo) -> str:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(tz).strftime("%Y-%m")


async def test_month_series(client: httpx.AsyncClient) -> None:
    await _seed(client)
    for tz_name in ("Asia/Ho_Chi_Minh", "UTC"):
        tz = zoneinfo.ZoneInfo(tz_name)
        expected = _expected([_month(r[4], tz) for r in ROWS], _solved(ROWS))
        body = await _stats(client, group_by="month", tz=tz_name)
        assert body["tz"] == tz_name and body["total"] == 15
        series = [(g["key"], g["count"], g["solved"]) for g in body["groups"]]
        # continuous from the first to the last month, empty months included
        months = ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06"]
        assert [m for m, _, _ in series] == months
        assert series == [(m, *expected.get(m, (0, 0))) for m in months]
    # Viet Nam's calendar by default: 31 Jan 20:00 UTC is February, 1 Apr 00:00 +07 is April
    default = {g["key"]: g["count"] for g in (await _stats(client, group_by="month"))["groups"]}
    assert default == {
        "2024-01": 3,
        "2024-02": 4,
        "2024-03": 0,
        "2024-04": 4,
        "2024-05": 0,
        "2024-06": 4,
    }
    utc = {
        g["key"]: g["count"] for g in (await _stats(client, group_by="month", tz="UTC"))["groups"]
    }
    assert utc["2024-01"] == 4 and utc["2024-03"] == 1 and utc["2024-04"] == 3
    # a datetime interval widens the series to its months, zero-filled
    body = await _stats(
        client, group_by="month", datetime="2023-11-15T00:00:00Z/2024-02-05T00:00:00Z"
    )
    assert [(g["key"], g["count"], g["share"], g["clearance_rate"]) for g in body["groups"]] == [
        ("2023-11", 0, 0.0, None),
        ("2023-12", 0, 0.0, None),
        ("2024-01", 3, 3 / 4, 2 / 3),
        ("2024-02", 1, 1 / 4, 1.0),
    ]
    assert body["total"] == 4
    # an empty result over an interval is a series of zeros with no share
    empty = await _stats(
        client, group_by="month", datetime="2020-01-01T00:00:00Z/2020-03-01T00:00:00Z"
    )
    assert [(g["key"], g["count"], g["share"]) for g in empty["groups"]] == [
        ("2020-01", 0, None),
        ("2020-02", 0, None),
        ("2020-03", 0, None),
    ]


async def test_scope_bounds_every_number(
    client: httpx.AsyncClient, engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    await _seed(client)
    key = await make_key(session, "viewer", "VN-44")
    async with app_client(engine, session, settings, key) as viewer:
        body = await _stats(viewer, group_by="jurisdiction")
        assert body["scope"] == "VN-44"
        assert body["total"] == 10 and body["solved"] == 4 and body["clearance_rate"] == 0.4
        assert [(g["key"], g["count"], g["share"]) for g in body["groups"]] == [
            (_today("VN-44")[0], 10, 1.0)
        ]
        before = await _stats(viewer, group_by="jurisdiction", at="2024-06-01")
        assert [(g["key"], g["count"]) for g in before["groups"]] == [("VN-44", 10)]
        # a filter cannot widen the scope: Ha Noi stays invisible
        hanoi = await _stats(viewer, group_by="category", jurisdiction="VN-HN")
        assert hanoi["total"] == 0 and hanoi["groups"] == []
        fraud = await _stats(viewer, group_by="category", category="fraud")
        assert [(g["key"], g["count"]) for g in fraud["groups"]] == [("fraud", 3)]
        # viewers see aggregates, never incidents
        assert (await viewer.get("/incidents")).status_code == 403
    async with app_client(engine, session, settings, None) as anonymous:
        assert (await anonymous.get("/analysis/stats?group_by=status")).status_code == 401


async def test_totals_equal_a_direct_count(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await session.execute(
        text(
            "INSERT INTO incident (category, severity, status, occurred_at, geom)"
            " SELECT (ARRAY['smuggling','fraud','gambling','other'])[1 + n % 4], 1 + n % 5,"
            " (ARRAY['reported','verified','under_investigation','solved','closed','rejected',"
            "'duplicate'])[1 + n % 7], timestamptz '2024-01-01' + n * interval '9 hours',"
            " ST_SetSRID(ST_MakePoint(102.5 + (n % 23) * 0.2, 9.0 + (n / 23) * 0.55), 4326)"
            " FROM generate_series(0, 599) n"
        )
    )
    direct = (
        await session.execute(
            text(
                "SELECT province_code, count(*),"
                " count(*) FILTER (WHERE status IN ('solved', 'closed'))"
                " FROM incident WHERE deleted_at IS NULL GROUP BY province_code"
            )
        )
    ).all()
    body = await _stats(client, group_by="jurisdiction")
    assert body["total"] == 600
    assert {g["key"]: (g["count"], g["solved"]) for g in body["groups"]} == {
        r[0]: (r[1], r[2]) for r in direct
    }
    # points offshore or abroad have no province: one group with key null, listed last
    assert body["groups"][-1]["key"] is None and body["groups"][-1]["name"] is None
    assert sum(g["share"] for g in body["groups"]) == pytest.approx(1.0, abs=1e-12)
    for group_by in ("category", "month", "status", "border_segment"):
        assert (await _stats(client, group_by=group_by))["total"] == 600, group_by


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"group_by": "district"},
        {"group_by": "jurisdiction", "level": "district"},
        {"group_by": "jurisdiction", "at": "2024-02-30"},
        {"group_by": "status", "at": "2024-06-01"},
        {"group_by": "month", "tz": "Mars/Olympus_Mons"},
        {"group_by": "month", "tz": "../../etc/passwd"},
        {"group_by": "status", "datetime": "yesterday"},
        {"group_by": "status", "status": "lost"},
    ],
)
async def test_bad_inputs(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    r = await client.get("/analysis/stats", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["status"] == 422
