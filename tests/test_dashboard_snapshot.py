"""The dashboard's answers from memory (app/analysis/snapshot.py, the cross-boundary hits of
app/analysis/adjacency.py, the kept border-zone bodies) are the direct query's answers: for
every filter the page sends (bbox, months, categories, statuses, severity), for a national and a
province-scoped key, over committed demo incidents in a database of its own (the snapshot is
built on the application's own connections, which see committed rows only), before and after a
write. The direct query (PostgreSQL's GROUP BY and the cross-boundary statement) is the
independent side.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from test_tiles import HALF, TO_MERC, decode, tile_of

from app.analysis import adjacency, snapshot, stats, warm
from app.analysis.stats_routes import snapshots_in
from app.auth.scope import NATIONAL, Scope
from app.config import Settings
from app.db import create_engine, ensure_database, sessionmaker
from app.incidents.filters import IncidentFilter, parse_datetime
from app.jurisdictions import eras
from app.jurisdictions import service as jurisdictions
from app.main import create_app
from app.tiles import hotspots as hotspot_tiles
from app.tiles import incidents as incident_tiles
from app.tiles import versions
from app.tiles.tile import Tile
from conftest import Demo, database_on, drop_database, prepare_database

NOW = datetime(2025, 6, 1, tzinfo=UTC)
SCOPE = "VN-P79"  # Hồ Chí Minh City (today's units)


@dataclass
class Db:
    engine: AsyncEngine
    admin: str
    scoped: str


@pytest.fixture(scope="module")
async def db(server_url: str) -> AsyncIterator[Db]:
    """A database of its own with boundaries, 400 committed demo incidents and two keys."""
    settings = Settings(environment="test", database_url=None)
    name = f"bw_snap_{uuid.uuid4().hex[:8]}"
    url = database_on(server_url, name)
    await ensure_database(url)
    engine = create_engine(url, settings)
    try:
        keys = await prepare_database(
            engine, settings, demo=Demo(400, 5, NOW), principals={"snap admin": "admin"}
        )
        from app.auth import service as auth_service

        async with sessionmaker(engine)() as session, session.begin():
            _, scoped = await auth_service.create_principal(
                session=session, name="snap scoped", role="admin", jurisdiction_code=SCOPE,
                unit=None, actor="test",
            )  # fmt: skip
        yield Db(engine, keys["snap admin"].key, scoped)
    finally:
        await engine.dispose()
        await drop_database(server_url, name)


async def _edge_x(engine: AsyncEngine) -> float:
    """The longitude of one incident, exactly (a box edge through it)."""
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT ST_X(geom) FROM incident ORDER BY id LIMIT 1"))
        return float(found.scalar_one())


def _filters(scope: Scope, edge_x: float) -> list[IncidentFilter]:
    """What the page sends: the view's box (one edge through an incident), months (Viet Nam's
    calendar months, as js/state.js writes them), categories, statuses, severity."""
    start, end = parse_datetime("2024-07-01T00:00:00+07:00/2025-02-28T23:59:59.999999+07:00")
    boxes = [
        None,
        (102.0, 8.0, 110.0, 24.0),
        (105.0, 9.0, 108.0, 12.0),
        (edge_x, 8.0, 110.0, 24.0),  # a box edge through an incident: the closed box holds it
        (102.0, 8.0, edge_x, 24.0),
    ]
    out = [IncidentFilter(scope=scope, bbox=b) for b in boxes]
    out += [
        IncidentFilter(scope=scope, bbox=boxes[1], start=start, end=end),
        IncidentFilter(scope=scope, start=start),
        IncidentFilter(scope=scope, categories=("smuggling", "fraud", "no_such_category")),
        IncidentFilter(scope=scope, statuses=("solved", "reported")),
        IncidentFilter(scope=scope, bbox=boxes[2], severity_min=4),
        IncidentFilter(
            scope=scope,
            bbox=boxes[1],
            start=start,
            end=end,
            categories=("smuggling",),
            statuses=("closed", "solved", "verified"),
            severity_min=2,
        ),
    ]
    return out


async def _compare(engine: AsyncEngine, scope: Scope) -> int:
    """Every filter's statistics and cross-boundary table from memory against the direct
    query; the number of filters compared."""
    edge_x = await _edge_x(engine)
    async with sessionmaker(engine)() as session, session.begin():
        snap = await snapshot.build(session=session, filt=IncidentFilter(scope=scope))
        hits = await adjacency.pair_hits(session=session, level="province", km=5.0, at=eras.today())
        assert snap is not None and hits is not None
        assert (
            len(snap)
            == await session.scalar(text("SELECT count(*) FROM incident WHERE deleted_at IS NULL"))
            or scope is not NATIONAL
        )
        filters = _filters(scope, edge_x)
        totals: list[int] = []
        near_lines: list[int] = []
        for filt in filters:
            assert snapshot.answerable(filt)
            for group_by in ("category", "status", "month"):
                direct = await stats.stats(session=session, filt=filt, group_by=group_by, now=NOW)
                kept = await stats.stats(
                    session=session, filt=filt, group_by=group_by, now=NOW, snap=snap
                )
                assert kept == direct, (filt, group_by)
            totals.append(direct["total"])
            direct_pairs = await adjacency.cross_boundary(
                session=session, level="province", km=5.0, filt=filt, at=eras.today()
            )
            assert adjacency.table_from_memory(snap, hits, filt) == direct_pairs, filt
            near_lines.append(sum(p["count"] for p in direct_pairs))
        # not a comparison of empty answers: most filters match some incidents
        assert sum(t > 0 for t in totals) >= len(filters) - 2, totals
        if scope is NATIONAL:
            # the closed box: the incident on the shared edge is counted on both sides
            assert totals[3] + totals[4] == totals[1] + 1, totals
            assert near_lines[0] > 0, near_lines
    return len(filters)


async def test_memory_answers_are_the_direct_query(db: Db) -> None:
    """National key: some filters match nothing, some everything, the edge incident counted."""
    assert await _compare(db.engine, NATIONAL) >= 10
    async with db.engine.connect() as conn:
        total = (await conn.execute(text("SELECT count(*) FROM incident"))).scalar()
    assert total == 400


async def test_memory_answers_for_a_scoped_key(db: Db) -> None:
    """A province key sees its province and the cooperation distance around it, in memory
    as in SQL."""
    scope = Scope(code=SCOPE, distance_m=Settings(environment="test").cooperation_m)
    assert await _compare(db.engine, scope) >= 10


def test_other_filters_go_to_postgresql() -> None:
    """Conditions the snapshot does not hold are never answered from it."""
    assert not snapshot.answerable(IncidentFilter(scope=NATIONAL, jurisdiction="VN-P79"))
    assert not snapshot.answerable(IncidentFilter(scope=NATIONAL, border_km_max=5))
    assert not snapshot.answerable(IncidentFilter(scope=NATIONAL, text="buôn lậu"))


async def _get(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    r = await client.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def _settle(app: Any) -> None:
    """Wait for the background builds the requests started."""
    cache = snapshots_in(app.state)
    for _ in range(200):
        if not cache.building:
            return
        await asyncio.gather(*cache.building.values())
    raise AssertionError("builds never ended")


async def test_routes_answer_alike_before_and_after_a_write(db: Db) -> None:
    """Through the routes: the first answer (PostgreSQL) starts the builds, the second comes
    from memory and is the same; a committed write moves the versions: the next answer counts
    it at once (from the kept snapshot brought up to date by the change log, which the request
    waits for), and so does the one after (memory)."""
    settings = Settings(environment="test", database_url=None)
    app = create_app(settings, engine=db.engine)
    headers = {"Authorization": f"Bearer {db.admin}"}
    transport = httpx.ASGITransport(app=app)
    view = {"bbox": "102,8,110,24"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        first = await _get(c, "/analysis/stats", group_by="category", **view)
        cross_first = await _get(c, "/analysis/cross-boundary", **view)
        await _settle(app)
        await _get(c, "/analysis/cross-boundary", **view)  # the hits build after the snapshot
        await _settle(app)
        assert snapshots_in(app.state).builds == 2
        assert await _get(c, "/analysis/stats", group_by="category", **view) == first
        assert await _get(c, "/analysis/cross-boundary", **view) == cross_first
        bands = await _get(c, "/analysis/border-zone", simplify=1000)
        assert await _get(c, "/analysis/border-zone", simplify=1000) == bands

        # a committed smuggling incident in Hồ Chí Minh City, near Bình Dương's boundary
        async with sessionmaker(db.engine)() as session, session.begin():
            near = (
                await session.execute(
                    text(
                        "SELECT ST_X(geom), ST_Y(geom) FROM incident"
                        " WHERE jurisdiction_path @> ARRAY['VN-P79']::varchar[] LIMIT 1"
                    )
                )
            ).one()
        r = await c.post(
            "/incidents",
            json={
                "category": "smuggling", "severity": 3, "status": "reported",
                "occurred_at": "2025-05-01T10:00:00+07:00",
                "location": {"type": "Point", "coordinates": [near[0], near[1]]},
            },
        )  # fmt: skip
        assert r.status_code == 201, r.text
        applied = snapshot.DELTAS["applied"]
        for _ in range(2):  # the delta (awaited by the first), then memory
            after = await _get(c, "/analysis/stats", group_by="category", **view)
            # the first request waited for the kept snapshot's delta instead of a scan
            assert snapshot.DELTAS["applied"] == applied + 1
            async with sessionmaker(db.engine)() as session:
                now = (await versions.read(session=session))["incidents"][0]
            kept = snapshots_in(app.state).latest.values()
            assert max(v.version for v in kept if isinstance(v, snapshot.Snapshot)) == now
            assert after["total"] == first["total"] + 1
            count = {g["key"]: g["count"] for g in after["groups"]}
            was = {g["key"]: g["count"] for g in first["groups"]}
            assert count["smuggling"] == was.get("smuggling", 0) + 1
            cross = await _get(c, "/analysis/cross-boundary", **view)
            async with sessionmaker(db.engine)() as session:
                direct = await adjacency.cross_boundary(
                    session=session, level="province", km=5.0,
                    filt=IncidentFilter(scope=NATIONAL, bbox=(102, 8, 110, 24)), at=eras.today(),
                )  # fmt: skip
            assert cross["pairs"] == direct
            await _settle(app)
        assert snapshots_in(app.state).builds >= 3
        moved = await _get(c, "/analysis/border-zone", simplify=1000)
        assert moved["total"] == bands["total"] + 1
        assert (await c.delete(f"/incidents/{r.json()['id']}")).status_code == 204


async def test_warmer_fills_the_national_caches(db: Db) -> None:
    """warm_once builds the national snapshot and hits: the first request is answered from
    memory (no build left to start)."""
    settings = Settings(environment="test", database_url=None)
    app = create_app(settings, engine=db.engine)
    jurisdictions.LISTS.values.clear()
    await warm.warm_once(app)
    cache = snapshots_in(app.state)
    assert cache.builds == 2
    kept = list(jurisdictions.LISTS.values.values())
    assert len(kept) == 2  # the country outlines and the provinces the dashboard reads first
    headers = {"Authorization": f"Bearer {db.admin}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        body = await _get(c, "/analysis/stats", group_by="month")
        assert not cache.building  # nothing to build: it was there
        async with sessionmaker(db.engine)() as session:
            direct = await stats.stats(session=session, filt=warm.national(app), group_by="month")
        assert body == direct
        # the dashboard's own requests (js/era.js) are answered with the kept bodies
        for level in ("country", "province"):
            r = await c.get(
                "/jurisdictions", params={"level": level, "simplify": 500, "lang": "vi"}
            )
            assert r.status_code == 200 and r.content in kept
            assert {f["properties"]["level"] for f in r.json()["features"]} == {level}
        assert len(jurisdictions.LISTS.values) == 2  # nothing made again
        # a reader's city view: the point tiles around the busiest z12 tile were kept (none
        # made again), and are the tiles the statement makes now
        async with sessionmaker(db.engine)() as session:
            found = await versions.read(session=session)
        snap = cache.ready(snapshot.token(found, warm.national(app)))
        assert isinstance(snap, snapshot.Snapshot)
        busiest = warm.busiest_tiles(snap, 12, 1)[0]
        made = incident_tiles.REUSE["made"]
        for t in warm.with_neighbours([busiest]):
            r = await c.get(f"/tiles/incidents/{t.z}/{t.x}/{t.y}.mvt")
            assert r.status_code == 200
            statement = incident_tiles.incident_tile_statement(
                warm.national(app), t, aggregate_only=False, cap=incident_tiles.MAX_TILE_POINTS
            )
            assert statement is not None
            async with sessionmaker(db.engine)() as session:
                fresh, _ = await incident_tiles._run(session, statement)
            assert r.content == fresh
            if t == busiest:
                assert decode(r.content, "incidents")  # the busiest tile holds points
        # a border unit's view of its gate (Hữu Nghị): its point tiles were kept too
        async with sessionmaker(db.engine)() as session:
            gate = (
                await session.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM border_post"
                                           " WHERE code = 'huu-nghi'"))
            ).one()  # fmt: skip
        for t in warm.view_tiles(gate[0], gate[1], warm.GATE_ZOOM, warm.VIEW_PX):
            r = await c.get(f"/tiles/incidents/{t.z}/{t.x}/{t.y}.mvt")
            assert r.status_code == 200
        assert incident_tiles.REUSE["made"] == made
        # the hot-spot tiles of z5-z7 were kept with their grid, the bytes the statement makes
        grids = list(app.state.hotspot_cache.grids.values.values())
        assert len(grids) == 1
        kept = grids[0].tiles
        assert kept.kept and kept.hits == 0
        t, body = next((t, b) for t, b in kept.kept.items() if b)
        r = await c.get(f"/tiles/hotspots/{t.z}/{t.x}/{t.y}.mvt")
        assert r.status_code == 200 and r.content == body and kept.hits == 1
        grids[0].tiles.kept.clear()
        async with sessionmaker(db.engine)() as session:
            again = await hotspot_tiles.hotspots_tile(session=session, grid=grids[0], tile=t)
        assert again == body and decode(body, "hotspots")


def test_neighbours_stay_inside_the_tile_matrix() -> None:
    """with_neighbours: the 3 × 3 block around each tile, each tile once, none off the matrix
    (a corner tile has 3 neighbours; two adjacent tiles share six)."""
    T = Tile
    corner = warm.with_neighbours([T(2, 0, 0)])
    assert corner == [T(2, 0, 0), T(2, 0, 1), T(2, 1, 0), T(2, 1, 1)]
    pair = warm.with_neighbours([T(10, 5, 5), T(10, 6, 5)])
    assert len(pair) == len(set(pair)) == 12
    assert pair[0] == T(10, 5, 5) and T(10, 6, 5) in pair[:9]
    assert {(t.x, t.y) for t in pair} == {(x, y) for x in range(4, 8) for y in range(4, 7)}


@pytest.mark.parametrize(
    ("lon", "lat", "z", "px"),
    [
        (106.705, 21.96, 12, (800, 700)),
        (106.70, 10.78, 11, (1366, 768)),
        (103.15, 22.50, 12, (800, 700)),
    ],
)
def test_view_tiles_are_the_tiles_the_screen_shows(
    lon: float, lat: float, z: int, px: tuple[int, int]
) -> None:
    """view_tiles: the tiles under a screen centred on a point, from its corners projected with
    PROJ and the slippy-map formula (Hữu Nghị at z12, Hồ Chí Minh City at z11, Lào Cai)."""
    cx, cy = TO_MERC.transform(lon, lat)
    m_per_px = 2 * HALF / (512 * 2**z)
    w, n = TO_MERC.transform(
        cx - px[0] / 2 * m_per_px, cy + px[1] / 2 * m_per_px, direction="INVERSE"
    )
    e, s = TO_MERC.transform(
        cx + px[0] / 2 * m_per_px, cy - px[1] / 2 * m_per_px, direction="INVERSE"
    )
    (x0, y0), (x1, y1) = tile_of(w, n, z), tile_of(e, s, z)
    want = {(x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)}
    got = warm.view_tiles(lon, lat, z, px)
    assert {(t.x, t.y) for t in got} == want and len(got) == len(want)
    assert {t.z for t in got} == {z}


def test_busiest_tiles_are_where_the_incidents_are() -> None:
    """Two incidents in Hồ Chí Minh City, one in Hà Nội: the z8 tile around Hồ Chí Minh City
    (8/203/120, the issue's opening tile for the south) first, then Hà Nội's (8/203/112)."""
    n = 3
    snap = snapshot.Snapshot(
        token="t", ids=np.array([bytes([k]) * 16 for k in range(n)], dtype="S16"),
        x=np.array([106.70, 106.66, 105.85]), y=np.array([10.78, 10.80, 21.03]),
        category=np.zeros(n, np.int16), status=np.zeros(n, np.int16),
        occurred=np.zeros(n, np.int64), month=np.zeros(n, np.int32),
        severity=np.ones(n, np.int16), categories=("smuggling",),
    )  # fmt: skip
    tiles = warm.busiest_tiles(snap, 8, 24)
    assert [(t.z, t.x, t.y) for t in tiles] == [(8, 203, 120), (8, 203, 112)]
