"""Bad input: a 4xx application/problem+json that names the field, and nothing written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from conftest import app_client, make_key

PROBLEM = "application/problem+json"


def good(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "category": "drug_trafficking",
        "severity": 4,
        "occurred_at": "2025-06-01T12:00:00+07:00",
        "location": {"type": "Point", "coordinates": [103.97, 22.5]},
    }
    body.update(overrides)
    return body


def point(lon: Any, lat: Any) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


FUTURE = (datetime.now(UTC) + timedelta(days=2)).isoformat()
BAD_BODIES: list[tuple[str, dict[str, Any], str, str]] = [
    ("lat out of range", good(location=point(105.0, 91.0)), "location", "latitude 91.0"),
    ("lon out of range", good(location=point(181.0, 10.0)), "location", "longitude 181.0"),
    ("swapped", good(location=point(21.0, 105.8)), "location", "[lon, lat]"),
    ("nan string", good(location=point("NaN", 10.0)), "location", "finite"),
    ("infinity string", good(location=point(105.0, "Infinity")), "location", "finite"),
    (
        "one coordinate",
        good(location={"type": "Point", "coordinates": [105.0]}),
        "location",
        "at least 2 items",
    ),
    (
        "not a point",
        good(location={"type": "LineString", "coordinates": [[1, 2], [3, 4]]}),
        "location.type",
        "Point",
    ),
    ("no coordinates", good(location={"type": "Point"}), "location.coordinates", "required"),
    ("geometry not an object", good(location="POINT(105 10)"), "location", "valid dictionary"),
    ("severity 0", good(severity=0), "severity", "greater than or equal to 1"),
    ("severity 6", good(severity=6), "severity", "less than or equal to 5"),
    ("future", good(occurred_at=FUTURE), "occurred_at", "future"),
    ("before 1900", good(occurred_at="1899-12-31T23:00:00Z"), "occurred_at", "1900"),
    ("not a date", good(occurred_at="yesterday"), "occurred_at", "valid datetime"),
    ("unknown status", good(status="lost"), "status", "'under_investigation'"),
    ("unknown field", good(colour="red"), "colour", "Extra inputs"),
    (
        "missing category",
        {k: v for k, v in good().items() if k != "category"},
        "category",
        "required",
    ),
    ("category not a code", good(category="Drugs'; DROP TABLE incident;--"), "category", "pattern"),
    (
        "negative precision",
        good(location_precision_m=-5),
        "location_precision_m",
        "greater than or equal to 0",
    ),
    ("bad id", good(id="not-a-uuid"), "id", "UUID"),
]


async def _count(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT count(*) FROM incident"))).scalar_one())


@pytest.mark.parametrize(
    ("label", "body", "field", "says"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
async def test_bad_body(
    client: httpx.AsyncClient,
    session: AsyncSession,
    label: str,
    body: dict[str, Any],
    field: str,
    says: str,
) -> None:
    before = await _count(session)
    r = await client.post("/incidents", json=body)
    assert r.status_code == 422, (label, r.text)
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    locations = [e["location"] for e in problem["errors"]]
    assert any(loc == f"body.{field}" or loc.startswith(f"body.{field}") for loc in locations), (
        label,
        locations,
    )
    assert says and says in problem["detail"], (label, problem["detail"])
    assert await _count(session) == before


async def test_unknown_category_lists_known_ones(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    before = await _count(session)
    r = await client.post("/incidents", json=good(category="piracy"))
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert r.json()["field"] == "category" and "smuggling" in r.json()["allowed"]
    assert await _count(session) == before


@pytest.mark.parametrize(
    "raw",
    [
        b'{"category": "fraud", "severity": 2, "occurred_at": "2025-01-01T00:00:00Z", '
        b'"location": {"type": "Point", "coordinates": [NaN, 10]}}',
        b'{"category": "fraud", "severity": 2, "location": {"type": "Point", "coordinates": [Infinity, 10]}}',
        b"{not json",
        b"",
        b"[1, 2, 3]",
        b'"just a string"',
    ],
)
async def test_invalid_json(client: httpx.AsyncClient, session: AsyncSession, raw: bytes) -> None:
    before = await _count(session)
    r = await client.post("/incidents", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert await _count(session) == before


async def test_feature_with_wrong_geometry(client: httpx.AsyncClient) -> None:
    feature = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[[1, 1], [2, 1], [2, 2], [1, 1]]]},
        "properties": {k: v for k, v in good().items() if k != "location"},
    }
    r = await client.post("/incidents", json=feature)
    assert r.status_code == 422
    assert any(e["location"].startswith("body.location") for e in r.json()["errors"])
    r = await client.post("/incidents", json={"type": "Feature", "geometry": None, "properties": 5})
    assert r.status_code == 422 and r.json()["errors"][0]["location"] == "body.properties"


async def test_patch_bad_input(client: httpx.AsyncClient) -> None:
    created = (await client.post("/incidents", json=good())).json()
    url = f"/incidents/{created['id']}"
    cases = [
        ({"severity": None}, "severity"),
        ({"location": point(200, 0)}, "location"),
        ({}, "body"),
        ({"id": created["id"]}, "id"),
        ({"occurred_at": FUTURE}, "occurred_at"),
    ]
    for body, field in cases:
        r = await client.patch(url, json=body, headers={"If-Match": '"v1"'})
        assert r.status_code == 422, (body, r.text)
        assert field in r.text
    garbage = await client.patch(url, json={"severity": 2}, headers={"If-Match": "v1"})
    assert garbage.status_code == 412
    after = (await client.get(url)).json()
    assert after == created


LIST_CASES = [
    ({"bbox": "1,2,3"}, "bbox"),
    ({"bbox": "10,10,5,20"}, "bbox"),
    ({"bbox": "a,b,c,d"}, "bbox"),
    ({"bbox": "0,0,200,10"}, "bbox"),
    ({"bbox": "nan,0,1,1"}, "bbox"),
    ({"datetime": "last week"}, "datetime"),
    ({"datetime": "2025-02-01T00:00:00Z/2025-01-01T00:00:00Z"}, "datetime"),
    ({"datetime": "../.."}, "datetime"),
    ({"datetime": "2025-01-01T00:00:00"}, "datetime"),
    ({"limit": "0"}, "limit"),
    ({"limit": "10001"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"cursor": "garbage!!"}, "cursor"),
    ({"cursor": "WyJub3QiLCJ2YWxpZCJd"}, "cursor"),
    ({"severity_min": "9"}, "severity_min"),
    ({"border_km_max": "-1"}, "border_km_max"),
    ({"status": "open' OR '1'='1"}, "status"),
    ({"category": "x' OR 1=1 --"}, "category"),
    ({"category": "smuggling;DELETE FROM incident"}, "category"),
    ({"jurisdiction": "VN-44' OR 'a'='a"}, "jurisdiction"),
    ({"jurisdiction": "VN-44); DROP TABLE incident;--"}, "jurisdiction"),
]


@pytest.mark.parametrize(("params", "field"), LIST_CASES, ids=[str(c[0]) for c in LIST_CASES])
async def test_bad_list_parameters(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    r = await client.get("/incidents", params=params)
    assert r.status_code == 422, (params, r.text)
    assert r.headers["content-type"] == PROBLEM
    assert field in r.text


async def test_injection_text_is_stored_verbatim(client: httpx.AsyncClient) -> None:
    evil = "'); DROP TABLE incident; -- \" OR 1=1 /* ${jndi} */"
    r = await client.post(
        "/incidents", json=good(description=evil, unit=evil, source_id=evil[:100])
    )
    assert r.status_code == 201
    p = r.json()["properties"]
    assert p["description"] == evil and p["unit"] == evil
    assert (
        await client.get("/incidents", params={"category": "drug_trafficking"})
    ).status_code == 200


@pytest.fixture
async def small_limit_client(
    engine: AsyncEngine, session: AsyncSession
) -> AsyncIterator[httpx.AsyncClient]:
    key = await make_key(session, "admin")
    settings = Settings(environment="test", max_body_bytes=2048)
    async with app_client(engine, session, settings, key) as c:
        yield c


async def test_body_over_limit(
    small_limit_client: httpx.AsyncClient, session: AsyncSession
) -> None:
    before = await _count(session)
    r = await small_limit_client.post("/incidents", json=good(description="x" * 5000))
    assert r.status_code == 413
    assert r.headers["content-type"] == PROBLEM
    assert "2048" in r.json()["detail"]
    ok = await small_limit_client.post("/incidents", json=good())
    assert ok.status_code == 201
    assert await _count(session) == before + 1
