"""Warming the dashboard's per-version caches in the background, so that the first visit of the
day (after a start, or after a write moved a layer version) finds them filled: the country
outlines and provinces it reads first (app/jurisdictions/service.py, LISTS), the national
incident snapshot and cross-boundary hits (app/analysis/snapshot.py, adjacency.py), the
border-zone bands of the default parameters, the hot-spot grid without filter and the
aggregate incident tiles of the country's low zooms (z3-z7 over Vietnam, and the 24 z8 tiles
holding the most incidents), the point tiles around the busiest z11 and z12 tiles and of a z12
view centred on each border gate (kept per version in app/tiles/incidents.py) and the hot-spot
tiles of z5-z7 over Vietnam (kept with their grid, app/tiles/hotspots.py). Everything is for a
national key without filter (what the dashboard opens with); another scope or filter fills its
own entries on first use as before.

    install(app)  # once, in create_app (app/main.py): starts with the app, stops with it

After start the warmer fills everything once (`app.state.dashboard_warm_rounds` counts the
fills); then it reads the versions every POLL_S seconds
and, when they moved, fills again, at most once per `dashboard_warm_gap_s` (a setting, 300 s by
default; each API process warms its own caches, so a fill is paid once per process: under a
steady stream of writes the answers between two fills come from PostgreSQL, as without the
warmer). A fill after a small change is cheap: the snapshot is updated from the incident change
log (snapshot.delta) and the kept aggregate tiles far from the change are proven unchanged by it
(app/tiles/change_log.py) instead of being made again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.analysis import adjacency, snapshot
from app.analysis.borderzone_routes import zone_cache, zone_key
from app.analysis.stats_routes import snapshots_in
from app.auth.scope import Scope
from app.errors import log_failure
from app.i18n import Lang
from app.incidents.filters import IncidentFilter
from app.jurisdictions import eras
from app.posts import service as posts
from app.tiles import hotspots as hotspot_tiles
from app.tiles import incidents as incident_tiles
from app.tiles import versions
from app.tiles.tile import Tile

log = logging.getLogger("borderwatch.warm")

POLL_S = 5.0
TILE_ZOOMS = range(3, 8)  # aggregate tiles over Vietnam kept after each change
BUSIEST_ZOOM, BUSIEST_TILES = 8, 24  # and the busiest tiles of z8 (the cities' opening views)
VIETNAM_BBOX = (102.1, 8.4, 109.5, 23.4)
# and the point tiles (readers, Vietnamese names) of the POINT_BUSIEST busiest tiles of each
# of POINT_ZOOMS with the 8 around each: a city view at z11-z12 opens on them
POINT_ZOOMS, POINT_BUSIEST = (11, 12), 4
# and the point tiles of a view centred on each border gate in force at GATE_ZOOM (a border
# unit opens its gate's view), a map of VIEW_PX (the dashboard's map at 1366 x 768 is ~780 x
# 690 px beside its side bar)
GATE_ZOOM, VIEW_PX = 12, (800, 700)
HOTSPOT_ZOOMS = range(5, 8)  # hot-spot tiles kept with the grid (the layer starts at z5)
ZONE_BANDS = (0.0, 5.0, 20.0, 50.0)  # the dashboard's border-zone request (js/layers.js)
ZONE_SIMPLIFY_M = 1000.0
# the country outlines and provinces the dashboard reads before it makes its map (js/era.js:
# simplified to 500 m, place names in Vietnamese whatever the page's language)
REFERENCE_LEVELS, REFERENCE_SIMPLIFY_M = ("country", "province"), 500.0
REFERENCE_LANG: Lang = "vi"


def national(app: FastAPI) -> IncidentFilter:
    """The filter of a national key's request without parameters."""
    return IncidentFilter(scope=Scope(code=None, distance_m=app.state.settings.cooperation_m))


def world_px(lon: float, lat: float, z: int) -> tuple[float, float]:
    """A point's Web Mercator position in pixels of zoom z's world of 512-px tiles."""
    world = 512 * 2**z
    r = math.radians(max(-85.0511, min(85.0511, lat)))
    return (lon + 180) / 360 * world, (1 - math.asinh(math.tan(r)) / math.pi) / 2 * world


def _tiles_between(z: int, x0: float, y0: float, x1: float, y1: float) -> list[Tile]:
    """The tiles of zoom z under the pixel box (x0, y0)-(x1, y1), inside the matrix, rows first."""
    n = 2**z

    def span(a: float, b: float) -> range:
        return range(max(0, int(a // 512)), min(n - 1, int(b // 512)) + 1)

    return [Tile(z, x, y) for y in span(y0, y1) for x in span(x0, x1)]


def tiles_over(bbox: tuple[float, float, float, float], z: int) -> list[Tile]:
    """The tiles of zoom z that cover the box (west, south, east, north)."""
    x0, y0 = world_px(bbox[0], bbox[3], z)
    x1, y1 = world_px(bbox[2], bbox[1], z)
    return _tiles_between(z, x0, y0, x1, y1)


def with_neighbours(tiles: list[Tile]) -> list[Tile]:
    """The tiles and the 8 around each (inside the zoom's matrix), each once, in order."""
    seen: dict[Tile, None] = {}
    for t in tiles:
        n = 2**t.z
        for dx, dy in ((0, 0), *((a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if a or b)):
            x, y = t.x + dx, t.y + dy
            if 0 <= x < n and 0 <= y < n:
                seen.setdefault(Tile(t.z, x, y), None)
    return list(seen)


def view_tiles(lon: float, lat: float, z: int, px: tuple[int, int]) -> list[Tile]:
    """The 512-px tiles of zoom z a screen of px (width, height) centred on (lon, lat) shows
    (MapLibre's vector tiles at an integer zoom), rows first."""
    cx, cy = world_px(lon, lat, z)
    w, h = px[0] / 2, px[1] / 2
    return _tiles_between(z, cx - w, cy - h, cx + w, cy + h)


def busiest_tiles(snap: snapshot.Snapshot, z: int, n: int) -> list[Tile]:
    """The n tiles of zoom z holding the most incidents of the snapshot (where a tile made
    afresh costs the most), busiest first."""
    if not len(snap):
        return []
    size = 2**z
    x = np.clip(((snap.x + 180.0) / 360.0 * size).astype(np.int64), 0, size - 1)
    lat = np.radians(np.clip(snap.y, -85.0511, 85.0511))
    y = np.clip(((1 - np.arcsinh(np.tan(lat)) / np.pi) / 2 * size).astype(np.int64), 0, size - 1)
    cells, counts = np.unique(x * size + y, return_counts=True)
    top = cells[np.argsort(-counts, kind="stable")[:n]]
    return [Tile(z, int(c // size), int(c % size)) for c in top]


async def warm_once(app: FastAPI) -> None:
    """Fill every cache named above for the versions of now (each step on its own session;
    one failing step is logged and the others still run)."""
    state = app.state
    filt = national(app)
    home: str = state.settings.home_country
    cache = snapshots_of(app)
    sessions = state.sessionmaker

    async def step(name: str, fn: Any) -> None:
        try:
            async with sessions() as session, session.begin():
                await fn(session)
        except Exception as exc:
            log_failure(log, f"warming {name}", exc)

    async def snap(session: AsyncSession) -> None:
        found = await versions.read(session=session)
        key = snapshot.token(found, filt)
        if cache.ready(key) is None:
            previous = cache.previous(found, filt)  # updated from the change log when small

            async def make(s: AsyncSession) -> snapshot.Snapshot | None:
                return await snapshot.build(session=s, filt=filt, previous=previous)

            await cache.schedule(key, make)

    async def hits(session: AsyncSession) -> None:
        level, km, day = adjacency.MEMORY_LEVEL, adjacency.MEMORY_KM, eras.today()
        found = await versions.read(session=session)
        key = adjacency.hits_token(found, level, km, day)
        if cache.ready(key) is None:
            await adjacency.build_hits(cache, found, level, km, day)
        snap = cache.ready(snapshot.token(await versions.read(session=session), filt))
        kept = cache.ready(key)
        if snap is not None and kept is not None:  # where each hit's incident is in the snapshot
            await asyncio.to_thread(adjacency.table_from_memory, snap, kept, filt)

    async def zone(session: AsyncSession) -> None:
        from app.analysis import borderzone

        found = await versions.read(session=session)
        key = zone_key(found, filt, borderzone.ALL, ZONE_BANDS, home, ZONE_SIMPLIFY_M)

        async def make() -> bytes:
            return await borderzone.border_zone(
                session=session, filt=filt, segment=borderzone.ALL, bands=ZONE_BANDS,
                home=home, simplify_m=ZONE_SIMPLIFY_M,
            )  # fmt: skip

        await zone_cache(state).get(key, make)

    async def hotspots(session: AsyncSession) -> None:
        grids = getattr(state, "hotspot_cache", None)
        if grids is None:
            return
        found = await versions.read(session=session)
        view = versions.incident_view(filt, aggregate_only=False, home=home)
        version = versions.token(("incidents", "jurisdictions", "borders"), found, view)
        grid = await grids.get((filt, version), session, filt, home)
        for tile in (t for z in HOTSPOT_ZOOMS for t in tiles_over(VIETNAM_BBOX, z)):
            await hotspot_tiles.hotspots_tile(session=session, grid=grid, tile=tile)

    async def tiles(session: AsyncSession) -> None:
        wanted = [t for z in TILE_ZOOMS for t in tiles_over(VIETNAM_BBOX, z)]
        found = await versions.read(session=session)
        snap = cache.ready(snapshot.token(found, filt))
        if snap is not None:
            wanted += busiest_tiles(snap, BUSIEST_ZOOM, BUSIEST_TILES)
            for z in POINT_ZOOMS:  # the point tiles a reader's city view opens with
                wanted += with_neighbours(busiest_tiles(snap, z, POINT_BUSIEST))
        for lon, lat in await posts.gate_positions(session=session, country=home):
            wanted += view_tiles(lon, lat, GATE_ZOOM, VIEW_PX)
        wanted = list(dict.fromkeys(wanted))  # each tile once, in order
        for tile in wanted:
            await incident_tiles.incidents_tile(
                session=session, filt=filt, tile=tile, aggregate_only=False
            )

    async def reference(session: AsyncSession) -> None:
        from app.jurisdictions import service as jurisdictions

        for level in REFERENCE_LEVELS:
            await jurisdictions.list_features(
                session=session, level=level, simplify_m=REFERENCE_SIMPLIFY_M, lang=REFERENCE_LANG
            )

    async def timed(name: str, fn: Any) -> None:
        started = time.perf_counter()
        await step(name, fn)
        log.info("warmed %s in %.1f s", name, time.perf_counter() - started)

    for name, fn in (
        ("reference", reference), ("snapshot", snap), ("cross-boundary hits", hits),
        ("border zone", zone), ("hot spots", hotspots), ("tiles", tiles),
    ):  # fmt: skip
        await timed(name, fn)


def snapshots_of(app: FastAPI) -> snapshot.SnapshotCache:
    """The application's SnapshotCache (the one the routes use)."""
    return snapshots_in(app.state)


async def run(app: FastAPI) -> None:
    """Warm after start, then again whenever the versions moved (at most once per the
    settings' dashboard_warm_gap_s); until cancelled."""
    gap_s: float = app.state.settings.dashboard_warm_gap_s
    seen: dict[str, tuple[int, str]] | None = None
    last = -math.inf
    while True:
        try:
            async with app.state.sessionmaker() as session:
                found = await versions.read(session=session)
        except Exception:  # the database may come up later
            found = None
        if found is not None and found != seen and time.monotonic() - last >= gap_s:
            last = time.monotonic()
            started = time.perf_counter()
            await warm_once(app)
            seen = found
            app.state.dashboard_warm_rounds = getattr(app.state, "dashboard_warm_rounds", 0) + 1
            log.info("dashboard caches warmed in %.1f s", time.perf_counter() - started)
        await asyncio.sleep(POLL_S)


def install(app: FastAPI) -> None:
    """Run the warmer for the application's lifetime (once per application)."""
    if getattr(app.state, "dashboard_warmer", False):
        return
    app.state.dashboard_warmer = True
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        async with inner(a) as value:
            task = asyncio.get_running_loop().create_task(run(a))
            try:
                yield value
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app.router.lifespan_context = lifespan
