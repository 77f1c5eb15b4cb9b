"""Aggregate tiles recounted where a write lies (app/tiles/incidents.py `_recount`): a kept
aggregate tile whose region holds a committed change since is brought up to date by counting
again only the cells the change log names, and equals the same tile made afresh — count,
highest severity and most frequent category per cell exactly, position within one tile unit —
after a create, a move, a new category, a new severity and a delete, for a reader and a viewer
(cells drawn at their centres), without and with a filter; a change without box or one that
touches too many cells makes the tile afresh instead (counted in incident_tiles.REUSE).

The database of tests/test_change_log.py (its fixtures: committed demo incidents, writes through
the API), a database of this module's own.
"""

from __future__ import annotations

import math

import httpx
from sqlalchemy import text
from test_change_log import (
    BUSY,
    IN_REGION,
    INSIDE,
    Db,
    api,
    counted,
    create,
    db,
    delete,
    move,
    region,
    same_tile,
    total,
)

from app.auth.scope import NATIONAL
from app.db import sessionmaker
from app.incidents.filters import IncidentFilter
from app.tiles import change_log
from app.tiles import incidents as incident_tiles
from app.tiles.tile import Tile

__all__ = ["api", "db"]  # the fixtures, imported for pytest

SMUGGLING = IncidentFilter(scope=NATIONAL, categories=("smuggling",))
# (filter, viewer, tile): the busy z8 tile for a reader and a viewer, without and with a filter,
# and a viewer's z11 tile around INSIDE (cells of 611 m: the viewer's smallest)
VIEWS: list[tuple[IncidentFilter, bool, Tile]] = [
    (IncidentFilter(scope=NATIONAL), False, BUSY),
    (IncidentFilter(scope=NATIONAL), True, BUSY),
    (SMUGGLING, False, BUSY),
    (SMUGGLING, True, BUSY),
]


def tile_at(lon: float, lat: float, z: int) -> Tile:
    """The tile holding (lon, lat) at zoom z (slippy-map formula)."""
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return Tile(z, x, y)


VIEWS.append((IncidentFilter(scope=NATIONAL), True, tile_at(*INSIDE, 11)))


async def kept(db: Db, filt: IncidentFilter, viewer: bool, t: Tile) -> bytes:
    """The tile as a reader's session gets it (through the kept tiles)."""
    async with sessionmaker(db.engine)() as session, session.begin():
        body, _ = await incident_tiles.incidents_tile(
            session=session, filt=filt, tile=t, aggregate_only=viewer
        )
    return body


async def fresh(db: Db, filt: IncidentFilter, viewer: bool, t: Tile) -> bytes:
    """The tile made afresh by its statement (no kept tile)."""
    made = incident_tiles.incident_tile_statement(filt, t, aggregate_only=viewer, cap=5000)
    assert made is not None
    async with sessionmaker(db.engine)() as session, session.begin():
        body, _ = await incident_tiles._run(session, made)
    return body


async def all_views(db: Db) -> list[bytes]:
    """Each view's tile through the kept tiles, checked against the same tile made afresh."""
    out = []
    for filt, viewer, t in VIEWS:
        body = await kept(db, filt, viewer, t)
        same_tile(body, await fresh(db, filt, viewer, t))
        out.append(body)
    return out


def within(t: Tile, fx: float, fy: float) -> tuple[float, float]:
    """A point at fractions (fx, fy) of the tile's width and height from its north-west corner."""
    w, s, e, n = region(t)
    return w + (e - w) * fx, n - (n - s) * fy


async def test_each_kind_of_write_inside_recounts_the_tile_as_made_afresh(
    db: Db, api: httpx.AsyncClient
) -> None:
    first = await all_views(db)
    assert total(first[0]) == await counted(db) > 0
    assert all(first) and first[0] != first[1]  # a viewer's cells are drawn at their centres

    async def recounted(n: int) -> list[bytes]:
        before = dict(incident_tiles.REUSE)
        bodies = await all_views(db)
        assert incident_tiles.REUSE["recounted"] == before["recounted"] + n, incident_tiles.REUSE
        assert incident_tiles.REUSE["made"] == before["made"]
        return bodies

    # a create inside every view: each is recounted, one more incident counted
    made = await create(api, INSIDE)
    bodies = await recounted(len(VIEWS))
    assert total(bodies[0]) == total(first[0]) + 1 == await counted(db)
    assert total(bodies[2]) == total(first[2]) + 1  # a smuggling incident
    # moved within the z8 tile (out of the z11 one): another cell of the busy tile
    await move(api, made, within(BUSY, 0.8, 0.3))
    bodies = await recounted(len(VIEWS))
    assert total(bodies[0]) == total(first[0]) + 1 and total(bodies[4]) == total(first[4])
    # a new category: it leaves the smuggling tile; a new severity; both in place
    r = await api.patch(
        f"/incidents/{made['id']}", json={"category": "fraud"}, headers={"If-Match": made["etag"]}
    )
    assert r.status_code == 200, r.text
    made["etag"] = r.headers["etag"]
    bodies = await recounted(4)  # the z11 viewer's tile is not touched: reused
    assert total(bodies[2]) == total(first[2])
    r = await api.patch(
        f"/incidents/{made['id']}", json={"severity": 1}, headers={"If-Match": made["etag"]}
    )
    assert r.status_code == 200, r.text
    made["etag"] = r.headers["etag"]
    await recounted(4)
    # deleted; then an incident of the demo inside the z11 tile (its cell may empty)
    async with db.engine.connect() as conn:
        w, s, e, n = region(VIEWS[4][2])
        found = await conn.execute(
            text(f"SELECT id, version FROM incident WHERE {IN_REGION} ORDER BY id LIMIT 1"),
            {"w": w, "s": s, "e": e, "n": n},
        )
        demo = found.one()
    await delete(api, made)
    bodies = await recounted(4)
    assert total(bodies[0]) == total(first[0])
    await delete(api, {"id": str(demo[0])})
    bodies = await recounted(len(VIEWS))
    assert total(bodies[0]) == total(first[0]) - 1 == await counted(db)
    assert total(bodies[4]) == total(first[4]) - 1
    # what /metrics says is what the tile code counted
    scraped = await api.get("/metrics")
    start = 'borderwatch_incident_tile_cache_total{outcome="recounted"} '
    line = next(x for x in scraped.text.splitlines() if x.startswith(start))
    assert float(line.split()[-1]) == incident_tiles.REUSE["recounted"]
    async with db.engine.begin() as conn:  # the demo incident back, for the other tests
        await conn.execute(
            text("UPDATE incident SET deleted_at = NULL, version = version + 1 WHERE id = :i"),
            {"i": demo[0]},
        )


async def test_a_statement_logged_as_a_small_box_recounts_its_cells(
    db: Db, api: httpx.AsyncClient
) -> None:
    """A statement changing more incidents than the log's limit (set to 1 here) leaves one box
    of their positions: a box of a few cells is recounted, one of more than RECOUNT_CELLS_MAX
    cells makes the tile afresh; both equal the tile made afresh."""
    first = await all_views(db)
    # a few incidents in one cell's neighbourhood (about 2 x 2 cells of the busy tile)
    spot = [within(BUSY, 0.50 + 0.02 * k, 0.50 + 0.03 * k) for k in range(4)]
    made = [await create(api, at) for at in spot]
    await all_views(db)
    before = dict(incident_tiles.REUSE)
    async with db.engine.begin() as conn:
        await conn.execute(text(f"SET LOCAL {change_log.LOG_ROWS_SETTING} = 1"))
        await conn.execute(
            text("UPDATE incident SET severity = 5, version = version + 1 WHERE id = ANY(:ids)"),
            {"ids": [m["id"] for m in made]},
        )
        boxes = await conn.execute(
            text(
                "SELECT count(*), count(incident_id) FROM incident_change WHERE xid = txid_current()"
            )
        )
        assert tuple(boxes.one()) == (1, 0)  # one box, no ids
    await all_views(db)
    assert incident_tiles.REUSE["recounted"] == before["recounted"] + 4  # the z8 views
    assert incident_tiles.REUSE["made"] == before["made"]
    # the whole busy tile in one box: too many cells, made afresh
    w, s, e, n = region(BUSY)
    async with db.engine.begin() as conn:
        await conn.execute(text(f"SET LOCAL {change_log.LOG_ROWS_SETTING} = 1"))
        changed = await conn.execute(
            text(f"UPDATE incident SET version = version + 1 WHERE {IN_REGION}"),
            {"w": w, "s": s, "e": e, "n": n},
        )
        assert changed.rowcount > 100
    before = dict(incident_tiles.REUSE)
    bodies = await all_views(db)  # the z11 tile too: its 256 cells lie in the box
    assert incident_tiles.REUSE["made"] == before["made"] + len(VIEWS)
    assert incident_tiles.REUSE["recounted"] == before["recounted"]
    for one in made:
        await delete(api, one)
    after = await all_views(db)
    for a, b in zip(after, first, strict=True):
        same_tile(a, b)
    assert bodies[0] != first[0]


async def test_a_change_without_box_makes_the_tile_afresh(db: Db, api: httpx.AsyncClient) -> None:
    """A change row without box (what TRUNCATE leaves: everywhere) among the changes since a
    kept tile: no recount, the tile is made afresh, and equals it."""
    await all_views(db)
    made = await create(api, INSIDE)
    await all_views(db)
    before = dict(incident_tiles.REUSE)
    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE incident SET severity = 2, version = version + 1 WHERE id = :i"),
            {"i": made["id"]},
        )
        await conn.execute(text("INSERT INTO incident_change (xid) VALUES (txid_current())"))
    await all_views(db)
    assert incident_tiles.REUSE["made"] == before["made"] + len(VIEWS)
    assert incident_tiles.REUSE["recounted"] == before["recounted"]
    await delete(api, made)
    # and from the tiles made then, the next write inside is recounted again
    before = dict(incident_tiles.REUSE)
    await all_views(db)
    assert incident_tiles.REUSE["recounted"] == before["recounted"] + len(VIEWS)
