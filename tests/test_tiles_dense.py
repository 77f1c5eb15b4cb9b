"""Aggregate tiles kept per data snapshot (app/tiles/incidents.py AGGREGATES): a kept tile is what the statement makes for the same data — counts per
cell, highest severity and most frequent category checked against pyproj over the stored rows,
for several filters and a scoped key — and a create, a change or a delete is in the very next
tile (no stale tile).

The incident counter moves at COMMIT, which these rolled-back tests never reach: the counter is
fired per statement instead (as in tests/test_tiles.py), and the cache is told that the
transaction's own writes are named by the counters it reads (incidents.TRUST_OWN_WRITES); one
test checks that without that, a transaction that wrote is never served from the cache.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from test_tiles import Row, bounds, decode, in_tile, seed, stored, tile_of, to_tile_units

from app.config import Settings
from app.tiles import incidents
from conftest import app_client, make_key


@pytest.fixture(autouse=True)
async def made(session: AsyncSession, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[int]]:
    """Counters fired per statement, the cache trusting them and empty before and after; the
    tiles made by a statement (not taken from the cache) are counted in the list."""
    await session.execute(text("SET CONSTRAINTS layer_version_incidents IMMEDIATE"))
    monkeypatch.setattr(incidents, "TRUST_OWN_WRITES", True)
    incidents.AGGREGATES.values.clear()
    incidents.POINTS.values.clear()
    calls: list[int] = []
    run = incidents._run

    async def counted(*args: Any) -> Any:
        calls.append(1)
        return await run(*args)

    monkeypatch.setattr(incidents, "_run", counted)
    yield calls
    incidents.AGGREGATES.values.clear()
    incidents.POINTS.values.clear()


Cells = dict[tuple[int, int], tuple[int, int, str]]


def expected_cells(rows: list[Row], z: int, x: int, y: int) -> Cells:
    """Per 16 x 16 cell of the tile (pyproj): count, highest severity, and the most frequent
    category (ties: the first code alphabetically)."""
    return {cell: v[:3] for cell, v in _cells(rows, z, x, y).items()}


def _cells(
    rows: list[Row], z: int, x: int, y: int
) -> dict[tuple[int, int], tuple[int, int, str, float, float]]:
    b = bounds(z, x, y)
    members: dict[tuple[int, int], list[tuple[Row, float, float]]] = {}
    for r in rows:
        if in_tile(r.lon, r.lat, b):
            px, py = to_tile_units(r.lon, r.lat, z, x, y)
            members.setdefault((int(px // 256), int(py // 256)), []).append((r, px, py))
    out = {}
    for cell, ms in members.items():
        tally = Counter(m.category for m, _, _ in ms)
        top = max(tally.values())
        out[cell] = (
            len(ms),
            max(m.severity for m, _, _ in ms),
            min(c for c, n in tally.items() if n == top),
            sum(px for _, px, _ in ms) / len(ms),
            sum(py for _, _, py in ms) / len(ms),
        )
    return out


def tile_cells(body: bytes, rows: list[Row], z: int, x: int, y: int) -> Cells:
    """The aggregates of a tile (count, severity_max, category), each under the cell whose
    incidents' mean position (pyproj) it is drawn at, to the unit (a cell of one incident near
    a cell edge may round onto the edge, so the cell is not read from the position alone)."""
    means = _cells(rows, z, x, y)
    out: Cells = {}
    for f in decode(body, "incidents"):
        p = f["properties"]
        assert p["cluster"] is True
        px, py = f["geometry"]["coordinates"]
        near = [c for c, v in means.items() if abs(v[3] - px) <= 1 and abs(v[4] - py) <= 1]
        assert len(near) == 1, (px, py, near)
        assert near[0] not in out
        out[near[0]] = (p["count"], p["severity_max"], p["category"])
    return out


FILTERS: list[tuple[dict[str, Any], Callable[[Row], bool]]] = [
    ({}, lambda r: True),
    ({"category": "fraud,smuggling"}, lambda r: r.category in ("fraud", "smuggling")),
    ({"severity_min": 3}, lambda r: r.severity >= 3),
    ({"status": "verified"}, lambda r: r.status == "verified"),
    (
        {"datetime": "2025-03-01T00:00:00Z/2025-09-01T00:00:00Z"},
        lambda r: (
            datetime(2025, 3, 1, tzinfo=UTC) <= r.occurred_at <= datetime(2025, 9, 1, tzinfo=UTC)
        ),
    ),
]


async def fetch_twice(
    client: httpx.AsyncClient, path: str, params: dict[str, Any], made: list[int]
) -> bytes:
    """The tile, then again: the first made by the statement, the second kept, the same bytes
    and ETag."""
    before = len(made)
    first = await client.get(path, params=params)
    assert first.status_code == 200, first.text
    assert len(made) == before + 1
    again = await client.get(path, params=params)
    assert len(made) == before + 1  # kept
    assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
    return first.content


@pytest.mark.parametrize("z", [6, 8, 9])
async def test_kept_aggregates_equal_an_independent_count_for_each_filter(
    client: httpx.AsyncClient, session: AsyncSession, made: list[int], z: int
) -> None:
    await seed(session, count=600)
    rows = await stored(session)
    x, y = tile_of(105.6, 10.5, z)
    path = f"/tiles/incidents/{z}/{x}/{y}.mvt"
    seen = set()
    for params, keep in FILTERS:
        body = await fetch_twice(client, path, params, made)
        mine = [r for r in rows if keep(r)]
        expected = expected_cells(mine, z, x, y)
        assert expected
        assert tile_cells(body, mine, z, x, y) == expected, params
        seen.add(body)
    assert len(seen) == len(FILTERS)  # each filter its own tile, none served another's


async def test_create_change_and_delete_are_in_the_next_tile(
    client: httpx.AsyncClient, session: AsyncSession, made: list[int]
) -> None:
    await seed(session, count=300)
    z = 8
    x, y = tile_of(105.6, 10.5, z)
    path = f"/tiles/incidents/{z}/{x}/{y}.mvt"
    w, s, e, n = bounds(z, x, y)
    at = [w + (e - w) * 0.37, s + (n - s) * 0.41]

    async def check() -> Cells:
        rows = await stored(session)
        got = tile_cells(await fetch_twice(client, path, {}, made), rows, z, x, y)
        assert got == expected_cells(rows, z, x, y)
        return got

    before = await check()
    created = await client.post(
        "/incidents",
        json={
            "category": "weapons",
            "severity": 5,
            "occurred_at": "2025-07-07T07:07:07Z",
            "location": {"type": "Point", "coordinates": at},
        },
    )
    assert created.status_code == 201, created.text
    after = await check()
    assert sum(c for c, _, _ in after.values()) == sum(c for c, _, _ in before.values()) + 1
    ident = created.json()["id"]
    # a change of severity: severity_max of its cell follows, and so does a filtered tile
    assert (await client.get(path, params={"severity_min": 5})).status_code == 200
    patched = await client.patch(
        f"/incidents/{ident}", json={"severity": 1}, headers={"If-Match": '"v1"'}
    )
    assert patched.status_code == 200, patched.text
    await check()
    rows = [r for r in await stored(session) if r.severity >= 5]
    high = (await client.get(path, params={"severity_min": 5})).content
    assert tile_cells(high, rows, z, x, y) == expected_cells(rows, z, x, y)
    assert ident not in {r.id for r in rows}
    # a delete
    deleted = await client.delete(f"/incidents/{ident}", headers={"If-Match": '"v2"'})
    assert deleted.status_code == 204, deleted.text
    assert await check() == before


async def test_a_scoped_key_gets_its_own_aggregates(
    engine: AsyncEngine,
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    made: list[int],
) -> None:
    # An Giang (VN-44) and its neighbours: the scoped key sees part of the tile
    await seed(session, lon0=104.8, lat0=10.0, dlon=1.4, dlat=1.0, count=500)
    rows = await stored(session)
    key = await make_key(session, "admin", jurisdiction="VN-44")
    z = 8
    x, y = tile_of(105.4, 10.4, z)
    path = f"/tiles/incidents/{z}/{x}/{y}.mvt"
    national = await fetch_twice(client, path, {}, made)
    assert tile_cells(national, rows, z, x, y) == expected_cells(rows, z, x, y)
    async with app_client(engine, session, settings, key) as scoped:
        listed = await scoped.get("/incidents", params={"limit": 1000})
        visible = {f["id"] for f in listed.json()["features"]}
        assert 0 < len(visible) < len(rows)
        for params, keep in FILTERS[:3]:
            body = await fetch_twice(scoped, path, params, made)
            mine = [r for r in rows if r.id in visible and keep(r)]
            assert tile_cells(body, mine, z, x, y) == expected_cells(mine, z, x, y), params
            if not params:
                assert body != national


async def test_a_transaction_that_wrote_is_not_served_from_the_cache(
    client: httpx.AsyncClient,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    made: list[int],
) -> None:
    # as in production: the counter moves at COMMIT, so this transaction's writes are not named
    await session.execute(text("SET CONSTRAINTS layer_version_incidents DEFERRED"))
    monkeypatch.setattr(incidents, "TRUST_OWN_WRITES", False)
    await seed(session, count=200)
    z = 7
    x, y = tile_of(105.6, 10.5, z)
    path = f"/tiles/incidents/{z}/{x}/{y}.mvt"
    first = await client.get(path)
    await seed(session, count=50, lon0=105.3, lat0=10.2, dlon=0.5, dlat=0.5)
    second = await client.get(path)
    rows = await stored(session)
    assert tile_cells(second.content, rows, z, x, y) == expected_cells(rows, z, x, y)
    assert second.content != first.content
    assert len(made) == 2 and not incidents.AGGREGATES.values  # made each time, none kept


async def test_point_tiles_are_kept_per_language(
    client: httpx.AsyncClient, session: AsyncSession, made: list[int]
) -> None:
    await seed(session, count=100)
    x, y = tile_of(105.6, 10.5, 10)
    path = f"/tiles/incidents/10/{x}/{y}.mvt"
    bodies = []
    for lang in ("vi", "vi", "en", "en"):
        r = await client.get(path, params={"lang": lang})
        assert r.status_code == 200
        bodies.append(r.content)
    # made once per language, kept apart from the aggregates; the names differ
    assert len(made) == 2 and not incidents.AGGREGATES.values and len(incidents.POINTS.values) == 2
    assert bodies[0] == bodies[1] != bodies[2] == bodies[3]
