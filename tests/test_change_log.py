"""The incident change log (migration 0022, app/tiles/change_log.py) and the caches it keeps
alive across writes: a kept aggregate tile is served again after a committed write far from it
(counted in incident_tiles.REUSE, and equal to the tile made afresh), recounted as made afresh
after a write inside it (a create, a move out, a delete; tests/test_tile_recount.py has each
kind of write and the cases made afresh), never stale when transactions commit in another
order than they began; the dashboard snapshot brought up to date from the changed ids equals a
full rebuild, column by column.

A database of its own with committed demo incidents (the caches are meant for readers that have
not written: their sessions see committed rows only); writes go through the API.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import mapbox_vector_tile
import numpy as np
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.analysis import adjacency, snapshot
from app.analysis import hotspots as hotspot_analysis
from app.auth.scope import NATIONAL
from app.config import Settings
from app.db import create_engine, ensure_database, sessionmaker
from app.i18n import Lang
from app.incidents.filters import IncidentFilter
from app.jurisdictions import eras
from app.main import create_app
from app.tiles import change_log, versions
from app.tiles import hotspots as hotspot_tiles
from app.tiles import incidents as incident_tiles
from app.tiles.hotspots import HotspotCache
from app.tiles.tile import Tile
from conftest import Demo, database_on, drop_database, prepare_database

NOW = datetime(2025, 6, 1, tzinfo=UTC)
BUSY = Tile(8, 203, 120)  # around Hồ Chí Minh City: the busiest low-zoom tile
INSIDE = (106.70, 10.78)  # in BUSY
FAR = (105.85, 21.03)  # Hà Nội: far from BUSY (another z8 tile, 1 100 km north)
FILT = IncidentFilter(scope=NATIONAL)


@dataclass
class Db:
    engine: AsyncEngine
    admin: str


@pytest.fixture(scope="module")
async def db(server_url: str) -> AsyncIterator[Db]:
    """A database of its own with boundaries, 1 100 committed demo incidents and an admin key."""
    settings = Settings(environment="test", database_url=None)
    name = f"bw_changes_{uuid.uuid4().hex[:8]}"
    url = database_on(server_url, name)
    await ensure_database(url)
    engine = create_engine(url, settings)
    try:
        keys = await prepare_database(
            engine, settings, demo=Demo(1100, 7, NOW), principals={"log admin": "admin"}
        )
        yield Db(engine, keys["log admin"].key)
    finally:
        await engine.dispose()
        await drop_database(server_url, name)


@pytest.fixture
async def api(db: Db) -> AsyncIterator[httpx.AsyncClient]:
    """The application over the database, as the admin; the kept tiles emptied."""
    incident_tiles.AGGREGATES.values.clear()
    incident_tiles.POINTS.values.clear()
    incident_tiles.LATEST.clear()
    app = create_app(Settings(environment="test", database_url=None), engine=db.engine)
    headers = {"Authorization": f"Bearer {db.admin}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        yield c


async def create(api: httpx.AsyncClient, at: tuple[float, float]) -> dict[str, Any]:
    """A committed incident at `at` (lon, lat); its body and ETag."""
    r = await api.post(
        "/incidents",
        json={
            "category": "smuggling", "severity": 4, "status": "reported",
            "occurred_at": "2025-05-01T10:00:00+07:00",
            "location": {"type": "Point", "coordinates": list(at)},
        },
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return {"id": r.json()["id"], "etag": r.headers["etag"]}


async def move(api: httpx.AsyncClient, made: dict[str, Any], at: tuple[float, float]) -> None:
    r = await api.patch(
        f"/incidents/{made['id']}",
        json={"location": {"type": "Point", "coordinates": list(at)}},
        headers={"If-Match": made["etag"]},
    )
    assert r.status_code == 200, r.text
    made["etag"] = r.headers["etag"]


async def delete(api: httpx.AsyncClient, made: dict[str, Any]) -> None:
    assert (await api.delete(f"/incidents/{made['id']}")).status_code == 204


async def tile(db: Db) -> tuple[bytes, versions.Versions]:
    """BUSY as the dashboard gets it (a reader's session, through the kept tiles)."""
    async with sessionmaker(db.engine)() as session, session.begin():
        return await incident_tiles.incidents_tile(
            session=session, filt=FILT, tile=BUSY, aggregate_only=False
        )


async def fresh(db: Db) -> tuple[bytes, versions.Versions]:
    """BUSY made afresh (the statement itself, no kept tile)."""
    made = incident_tiles.incident_tile_statement(FILT, BUSY, aggregate_only=False, cap=5000)
    assert made is not None
    async with sessionmaker(db.engine)() as session, session.begin():
        return await incident_tiles._run(session, made)


def region(t: Tile) -> tuple[float, float, float, float]:
    """The box of the tile's aggregate cells (the tile itself at z8), from the slippy-map
    formula."""
    n = 2**t.z

    def lat(k: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * k / n))))

    return t.x / n * 360 - 180, lat(t.y + 1), (t.x + 1) / n * 360 - 180, lat(t.y)


# the live incidents in a region (:w :s :e :n) as the aggregate cells count them, without the
# tile code: west <= lon < east, south < lat <= north
IN_REGION = (
    "deleted_at IS NULL AND ST_X(geom) >= :w AND ST_X(geom) < :e AND ST_Y(geom) > :s"
    " AND ST_Y(geom) <= :n"
)


async def counted(db: Db) -> int:
    """The incidents in BUSY, counted by PostgreSQL without the tile code (IN_REGION)."""
    w, s, e, n = region(BUSY)
    async with db.engine.connect() as conn:
        found = await conn.execute(
            text(f"SELECT count(*) FROM incident WHERE {IN_REGION}"),
            {"w": w, "s": s, "e": e, "n": n},
        )
        return int(found.scalar_one())


def total(body: bytes) -> int:
    """The sum of the aggregate counts of a tile."""
    if not body:
        return 0
    layers = mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})
    return sum(int(f["properties"]["count"]) for f in layers["incidents"]["features"])


def features(body: bytes) -> list[tuple[Any, ...]]:
    """The features of an aggregate tile in their order: count, severity_max, category, x, y."""
    if not body:
        return []
    layers = mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})
    return [
        (
            f["properties"]["count"],
            f["properties"]["severity_max"],
            f["properties"]["category"],
            f["properties"]["cluster"],
            *f["geometry"]["coordinates"],
        )
        for f in layers["incidents"]["features"]
    ]


def same_tile(got: bytes, want: bytes) -> None:
    """Two aggregate tiles with the same cells in the same order (cells are drawn row by row):
    count, severity_max and category exactly, the position within one tile unit (a mean of the
    same positions summed in another order may round to the next unit)."""
    a, b = features(got), features(want)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x[:4] == y[:4], (x, y)
        assert abs(x[4] - y[4]) <= 1 and abs(x[5] - y[5]) <= 1, (x, y)


async def current(db: Db) -> versions.Versions:
    async with sessionmaker(db.engine)() as session:
        return await versions.read(session=session)


async def test_the_log_names_each_version_and_its_positions(db: Db, api: httpx.AsyncClient) -> None:
    """A create logs its new position, a move the old and new ones, a delete the last one,
    each under the version its commit took."""
    made = await create(api, INSIDE)
    v_create = (await current(db))["incidents"][0]
    await move(api, made, FAR)
    v_move = (await current(db))["incidents"][0]
    await delete(api, made)
    v_delete = (await current(db))["incidents"][0]
    assert v_create < v_move < v_delete
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT k.version, c.west, c.south, c.east, c.north"
                " FROM incident_change c JOIN incident_change_commit k ON k.xid = c.xid"
                " WHERE c.incident_id = :i ORDER BY k.version, c.west, c.south"
            ),
            {"i": made["id"]},
        )
        logged = [(int(v), (float(w), float(s))) for v, w, s, e, n in rows if (w, s) == (e, n)]
    # a soft delete is an update: its position before and after
    positions = {v: sorted({p for k, p in logged if k == v}) for v in {k for k, _ in logged}}
    assert positions[v_create] == [INSIDE]
    assert positions[v_move] == sorted({INSIDE, FAR})
    assert positions[v_delete] == [FAR]
    assert set(positions) <= {v_create, v_move, v_delete}


async def test_a_far_write_keeps_the_tile_a_write_inside_changes_it(
    db: Db, api: httpx.AsyncClient
) -> None:
    first, v0 = await tile(db)
    assert total(first) == await counted(db) > 0
    # a create far away: the kept bytes are served with the new versions
    reused = incident_tiles.REUSE["reused"]
    far = await create(api, FAR)
    body, v1 = await tile(db)
    assert incident_tiles.REUSE["reused"] == reused + 1
    assert v1["incidents"][0] > v0["incidents"][0] and v1 == await current(db)
    again, v_fresh = await fresh(db)
    assert body == first == again and v_fresh == v1
    # and once more after the far incident moves (far still): kept again
    await move(api, far, (FAR[0] + 0.1, FAR[1]))
    body, _ = await tile(db)
    assert incident_tiles.REUSE["reused"] == reused + 2 and body == first
    # a create inside: recounted in the cell it lies in (tests/test_tile_recount.py), as made
    # afresh, one more incident counted
    made_before, recounted = incident_tiles.REUSE["made"], incident_tiles.REUSE["recounted"]
    inside = await create(api, INSIDE)
    body, v2 = await tile(db)
    assert incident_tiles.REUSE["recounted"] == recounted + 1
    same_tile(body, (await fresh(db))[0])
    assert body != first
    assert total(body) == await counted(db) == total(first) + 1
    # moved out of the tile: recounted, back to the first count
    await move(api, inside, FAR)
    body, v3 = await tile(db)
    assert incident_tiles.REUSE["recounted"] == recounted + 2
    same_tile(body, (await fresh(db))[0])
    assert total(body) == total(first)
    # moved back in, then deleted: each recounted
    await move(api, inside, INSIDE)
    body, _ = await tile(db)
    assert total(body) == total(first) + 1 == await counted(db)
    await delete(api, inside)
    body, v4 = await tile(db)
    assert incident_tiles.REUSE["recounted"] == recounted + 4
    assert incident_tiles.REUSE["made"] == made_before
    same_tile(body, (await fresh(db))[0])
    same_tile(body, first)
    assert v0["incidents"][0] < v1["incidents"][0] < v2["incidents"][0] < v3["incidents"][0]
    assert v3["incidents"][0] < v4["incidents"][0]
    await delete(api, far)
    # what /metrics says is what the tile code counted
    scraped = await api.get("/metrics")
    assert scraped.status_code == 200, scraped.text
    for outcome in ("made", "checked", "reused", "recounted"):
        start = f'borderwatch_incident_tile_cache_total{{outcome="{outcome}"}} '
        line = next(x for x in scraped.text.splitlines() if x.startswith(start))
        assert float(line.split()[-1]) == incident_tiles.REUSE[outcome]
    assert incident_tiles.REUSE["reused"] >= 2


async def test_a_later_commit_of_an_earlier_transaction_is_never_missed(
    db: Db, api: httpx.AsyncClient
) -> None:
    """T1 writes inside the tile first and commits last; T2 writes far away and commits in
    between; the tile read between the two commits is kept (T2 is far), and the one read after
    T1's commit counts T1's incident."""
    first, _ = await tile(db)
    async with db.engine.connect() as t1, db.engine.connect() as t2:
        await t1.begin()
        # T1: a copy of one incident moved inside the tile (its xid is the older one)
        copied = await t1.execute(
            text(
                "UPDATE incident SET geom = ST_SetSRID(ST_MakePoint(:x, :y), 4326),"
                " version = version + 1"
                " WHERE id = (SELECT id FROM incident WHERE deleted_at IS NULL"
                "  AND ST_Y(geom) > 20 ORDER BY id LIMIT 1) RETURNING id"
            ),
            {"x": INSIDE[0], "y": INSIDE[1]},
        )
        moved = copied.scalar_one()
        await t2.begin()
        await t2.execute(
            text(
                "UPDATE incident SET severity = 5, version = version + 1 WHERE id ="
                " (SELECT id FROM incident WHERE deleted_at IS NULL AND ST_Y(geom) > 20"
                "  AND id <> :m ORDER BY id LIMIT 1)"
            ),
            {"m": moved},
        )
        await t2.commit()
        reused = incident_tiles.REUSE["reused"]
        between, _ = await tile(db)
        assert incident_tiles.REUSE["reused"] == reused + 1 and between == first
        await t1.commit()
    after, _ = await tile(db)
    assert incident_tiles.REUSE["reused"] == reused + 1  # not kept: T1 moved one inside
    same_tile(after, (await fresh(db))[0])
    assert total(after) == total(first) + 1
    assert total(after) == await counted(db)


async def test_a_pruned_log_proves_nothing(db: Db, api: httpx.AsyncClient) -> None:
    """Once the commits since a kept tile are pruned, the tile is made afresh, even after a
    far write; the commits before it are not needed."""
    await tile(db)
    reused, made = incident_tiles.REUSE["reused"], incident_tiles.REUSE["made"]
    far = await create(api, FAR)
    async with db.engine.begin() as conn:
        newest = (await current(db))["incidents"][0]
        await conn.execute(text("SELECT incident_change_prune(:v)"), {"v": newest + 10_000})
        left = await conn.execute(text("SELECT count(*) FROM incident_change_commit"))
        assert left.scalar_one() == 0
    await tile(db)
    assert incident_tiles.REUSE["made"] == made + 1 and incident_tiles.REUSE["reused"] == reused
    # the commit that tile was made at is pruned too: made afresh after the next far write
    await delete(api, far)
    await tile(db)
    assert incident_tiles.REUSE["made"] == made + 2 and incident_tiles.REUSE["reused"] == reused
    # from then on the log holds what a proof needs: kept
    far = await create(api, FAR)
    await tile(db)
    assert incident_tiles.REUSE["reused"] == reused + 1
    await delete(api, far)


async def test_a_field_a_filter_tests_changes_the_tile_through_its_position(
    db: Db, api: httpx.AsyncClient
) -> None:
    """A severity raised inside the tile (no move) changes the tile of `severity_min=5`: the
    log names the incident's position, so the proof fails and the tile is made afresh."""
    severe = IncidentFilter(scope=NATIONAL, severity_min=5)
    made = incident_tiles.incident_tile_statement(severe, BUSY, aggregate_only=False, cap=5000)
    assert made is not None

    async def kept() -> bytes:
        async with sessionmaker(db.engine)() as session, session.begin():
            body, _ = await incident_tiles.incidents_tile(
                session=session, filt=severe, tile=BUSY, aggregate_only=False
            )
        return body

    async def made_now() -> bytes:
        async with sessionmaker(db.engine)() as session, session.begin():
            return (await incident_tiles._run(session, made))[0]

    inside = await create(api, INSIDE)  # severity 4: not counted
    first = await kept()
    far = await create(api, FAR)
    reused = incident_tiles.REUSE["reused"]
    assert await kept() == first and incident_tiles.REUSE["reused"] == reused + 1
    r = await api.patch(
        f"/incidents/{inside['id']}", json={"severity": 5}, headers={"If-Match": inside["etag"]}
    )
    assert r.status_code == 200, r.text
    body = await kept()
    assert incident_tiles.REUSE["reused"] == reused + 1
    same_tile(body, await made_now())
    assert total(body) == total(first) + 1
    for one in (inside, far):
        await delete(api, one)


async def test_a_point_tile_is_kept_per_language_and_survives_a_far_write(
    db: Db, api: httpx.AsyncClient
) -> None:
    """The z12 tile around INSIDE (points, names in the asked language) is kept: sent again
    after a write far away, made afresh after one inside it, equal to a fresh making each time,
    and kept apart per language."""
    n = 2**12
    x = int((INSIDE[0] + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(INSIDE[1]))) / math.pi) / 2 * n)
    z12 = Tile(12, x, y)

    async def kept(lang: Lang) -> bytes:
        async with sessionmaker(db.engine)() as session, session.begin():
            body, _ = await incident_tiles.incidents_tile(
                session=session, filt=FILT, tile=z12, aggregate_only=False, lang=lang
            )
        return body

    async def made_now(lang: Lang) -> bytes:
        made = incident_tiles.incident_tile_statement(
            FILT, z12, aggregate_only=False, cap=incident_tiles.MAX_TILE_POINTS, lang=lang
        )
        assert made is not None
        async with sessionmaker(db.engine)() as session, session.begin():
            return (await incident_tiles._run(session, made))[0]

    def ids(body: bytes) -> set[str]:
        layers = mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})
        return {str(f["properties"]["id"]) for f in layers["incidents"]["features"]}

    inside = await create(api, INSIDE)
    vi, en = await kept("vi"), await kept("en")
    assert vi != en and inside["id"] in ids(vi) and ids(vi) == ids(en)
    assert vi == await made_now("vi") and en == await made_now("en")
    reused, made = incident_tiles.REUSE["reused"], incident_tiles.REUSE["made"]
    far = await create(api, FAR)
    assert await kept("vi") == vi and await kept("en") == en
    assert incident_tiles.REUSE["reused"] == reused + 2 and incident_tiles.REUSE["made"] == made
    await delete(api, inside)
    after = await kept("vi")
    assert incident_tiles.REUSE["made"] == made + 1
    assert after == await made_now("vi") and ids(after) == ids(vi) - {inside["id"]}
    await delete(api, far)


def _same(a: snapshot.Snapshot, b: snapshot.Snapshot) -> None:
    assert a.token == b.token and a.version == b.version and a.lineage == b.lineage
    assert a.categories == b.categories
    for name in snapshot.COLUMNS:
        left, right = getattr(a, name), getattr(b, name)
        assert left.dtype == right.dtype, name
        assert np.array_equal(left, right), name


async def build(db: Db, previous: snapshot.Snapshot | None = None) -> snapshot.Snapshot:
    async with sessionmaker(db.engine)() as session, session.begin():
        snap = await snapshot.build(session=session, filt=FILT, previous=previous)
    assert snap is not None
    return snap


async def test_the_snapshot_updated_from_the_log_equals_a_rebuild(
    db: Db, api: httpx.AsyncClient
) -> None:
    before = await build(db)
    a = await create(api, INSIDE)
    b = await create(api, FAR)
    await move(api, a, (106.60, 10.70))
    r = await api.patch(
        f"/incidents/{b['id']}", json={"severity": 1}, headers={"If-Match": b["etag"]}
    )
    assert r.status_code == 200, r.text
    async with sessionmaker(db.engine)() as session:
        gone = (await session.execute(text("SELECT id FROM incident ORDER BY id LIMIT 1"))).one()
    await delete(api, {"id": str(gone[0])})
    applied = snapshot.DELTAS["applied"]
    updated = await build(db, before)
    assert snapshot.DELTAS["applied"] == applied + 1
    rebuilt = await build(db)
    _same(updated, rebuilt)
    assert len(updated) == len(before) + 1  # two created, one deleted
    # then from that one: nothing changed but one move back
    await move(api, a, INSIDE)
    _same(await build(db, updated), await build(db))
    assert snapshot.DELTAS["applied"] == applied + 2
    for made in (a, b):
        await delete(api, made)


async def test_the_snapshot_is_rebuilt_when_the_log_cannot_tell(
    db: Db, api: httpx.AsyncClient
) -> None:
    """A statement changing more than the log's limit of incidents (LOG_ROWS_MAX, set smaller
    here) leaves one box without ids: the next snapshot is a full rebuild (and the same as one).
    Under the limit, the same statement (every incident: an import's size here) is logged
    incident by incident and the snapshot follows it by a delta."""
    before = await build(db)
    async with db.engine.begin() as conn:
        await conn.execute(text(f"SET LOCAL {change_log.LOG_ROWS_SETTING} = 1000"))
        await conn.execute(text("UPDATE incident SET version = version + 1"))
        logged = await conn.execute(
            text(
                "SELECT count(*), count(incident_id) FROM incident_change"
                " WHERE xid = txid_current()"
            )
        )
        assert tuple(logged.one()) == (1, 0)
    applied = snapshot.DELTAS["applied"]
    rebuilt = await build(db, before)
    _same(rebuilt, await build(db))
    assert snapshot.DELTAS["applied"] == applied
    async with db.engine.begin() as conn:
        changed = (await conn.execute(text("UPDATE incident SET version = version + 1"))).rowcount
        logged = await conn.execute(
            text(
                "SELECT count(*), count(DISTINCT incident_id) FROM incident_change"
                " WHERE xid = txid_current()"
            )
        )
        assert changed > 1000 and tuple(logged.one()) == (2 * changed, changed)
    _same(await build(db, rebuilt), await build(db))
    assert snapshot.DELTAS["applied"] == applied + 1


async def three_of(db: Db, ids: np.ndarray) -> list[Any]:
    """Three of these incidents (uuid bytes, S16: numpy drops trailing zero bytes): id, lon,
    lat and version."""
    async with db.engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT id, ST_X(geom), ST_Y(geom), version FROM incident"
                " WHERE id = ANY(:ids) ORDER BY id LIMIT 3"
            ),
            {"ids": [uuid.UUID(bytes=bytes(i).ljust(16, b"\0")) for i in ids]},
        )
        return list(found.all())


async def hits(db: Db, previous: adjacency.PairHits | None = None) -> adjacency.PairHits | None:
    """The cross-boundary hits of the dashboard's table: from `previous` and the log only
    (hits_delta) when given, else made from every incident."""
    level, km, at = adjacency.MEMORY_LEVEL, adjacency.MEMORY_KM, eras.today()
    async with sessionmaker(db.engine)() as session, session.begin():
        if previous is None:
            return await adjacency.pair_hits(session=session, level=level, km=km, at=at)
        return await adjacency.hits_delta(
            session=session, previous=previous, level=level, km=km, at=at
        )


def pairs_of(h: adjacency.PairHits) -> set[tuple[str, str, bytes]]:
    return {
        (*h.pairs[int(k)][:2], bytes(i).ljust(16, b"\0"))
        for k, i in zip(h.pair, h.ids, strict=True)
    }


async def test_the_cross_boundary_hits_updated_from_the_log_equal_a_rebuild(
    db: Db, api: httpx.AsyncClient
) -> None:
    """The hits of incidents near a shared province line, brought up to date from the changed
    ids: a create on a hit's spot, a hit moved far away and another deleted, a write far off."""
    before = await hits(db)
    assert before is not None and len(before.ids) >= 3
    # three incidents near shared lines, and where the first lies
    rows = await three_of(db, before.ids[:50])
    spot = (float(rows[0][1]), float(rows[0][2]))
    added = await create(api, spot)
    far = await create(api, FAR)
    await move(api, {"id": str(rows[1][0]), "etag": f'"v{rows[1][3]}"'}, FAR)
    await delete(api, {"id": str(rows[2][0])})
    updated = await hits(db, before)
    rebuilt = await hits(db)
    assert updated is not None and rebuilt is not None
    assert (updated.token, updated.version, updated.lineage) == (
        rebuilt.token, rebuilt.version, rebuilt.lineage,
    )  # fmt: skip
    assert len(updated.ids) == len(rebuilt.ids) and pairs_of(updated) == pairs_of(rebuilt)
    moved_ids = {uuid.UUID(added["id"]).bytes, rows[1][0].bytes, rows[2][0].bytes}
    assert uuid.UUID(added["id"]).bytes in {i for *_, i in pairs_of(updated)}
    assert not {rows[1][0].bytes, rows[2][0].bytes} & {i for *_, i in pairs_of(updated)}
    assert pairs_of(before) - pairs_of(updated) <= {
        p for p in pairs_of(before) if p[2] in moved_ids
    }
    # a statement changing more incidents than the log's limit leaves a box without ids: no
    # delta, a rebuild
    async with db.engine.begin() as conn:
        await conn.execute(text(f"SET LOCAL {change_log.LOG_ROWS_SETTING} = 1000"))
        await conn.execute(text("UPDATE incident SET version = version + 1"))
    assert await hits(db, updated) is None
    for made in (added, far):
        await delete(api, made)


async def test_the_hot_spot_grid_updated_from_the_log_equals_a_recount(
    db: Db, api: httpx.AsyncClient
) -> None:
    """The hot-spot tiles' Gi* grid of a later version made from the last one and the change
    log (the changed incidents' cells found again, alone) has the counts, z-scores and bins of
    a grid counted afresh, and the counts of GET /analysis/hotspots."""
    grids = HotspotCache()
    home = "VNM"

    async def grid_now() -> tuple[hotspot_tiles.HotspotGrid, int]:
        async with sessionmaker(db.engine)() as session, session.begin():
            found = await versions.read(session=session)
            made = await grids.get((FILT, found["incidents"][0]), session, FILT, home)
            return made, found["incidents"][0]

    before, _ = await grid_now()
    assert before.members is not None and sum(before.count) > 0
    # a counted incident's spot gets a new one; another counted one moves far, a third goes
    rows = await three_of(db, before.members.ids[:60])
    added = await create(api, (float(rows[0][1]), float(rows[0][2])))
    await move(api, {"id": str(rows[1][0]), "etag": f'"v{rows[1][3]}"'}, (106.70, 10.78))
    await delete(api, {"id": str(rows[2][0])})
    deltas = grids.deltas
    after, version = await grid_now()
    assert grids.deltas == deltas + 1
    assert after.members is not None and after.members.version == version
    async with sessionmaker(db.engine)() as session, session.begin():
        fresh = await hotspot_tiles.hotspot_grid(session=session, filt=FILT, home=home)
        body = await hotspot_analysis.hotspots(
            session=session, filt=FILT, area=hotspot_analysis.BORDER_ZONE,
            cell_km=hotspot_tiles.CELL_KM, fdr=False, home=home,
        )  # fmt: skip
    assert after.count == fresh.count
    assert after.bin == fresh.bin
    assert np.allclose(
        np.array(after.gi_z, dtype=float), np.array(fresh.gi_z, dtype=float), equal_nan=True
    )
    analysed = orjson.loads(body)["features"]
    assert after.count == [f["properties"]["count"] for f in analysed]
    assert after.count != before.count  # the writes moved counts
    await delete(api, added)
