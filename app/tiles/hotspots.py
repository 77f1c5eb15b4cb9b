"""The hot-spot layer: the Gi* grid of GET /analysis/hotspots (its defaults) for the request's
filters, computed once per (filters, version) in each process and kept in a small LRU; a tile
sends PostgreSQL only the cells that reach into it. A new version's grid is made from the last
one of the same filter when the change log names the changed incidents (their cells counted
again, alone; app/analysis/hotspots.py, members_delta), not by counting every incident."""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.analysis import hotspots as hotspot_analysis
from app.analysis.cache import VersionedCache
from app.geo.spatial import SRID_WEB_MERCATOR
from app.incidents.filters import IncidentFilter
from app.tiles.tile import BUFFER, EXTENT, Tile

CELL_KM = 5.0  # the default cell size of /analysis/hotspots
CACHE_SIZE = 8  # grids kept per process
TILE_BYTES_KEPT = 8 << 20  # the tiles made from one grid kept with it, up to this many bytes
LATEST_KEPT = 4  # filters whose newest grid is kept as the base of a delta (~14 MB at 1 M)


@dataclass(frozen=True)
class HotspotGrid:
    """The Gi* cells of one (filter, version): EPSG:3857 WKB, their boxes and properties; the
    counted incidents per cell (the base of the next version's delta) and the grid's key."""

    wkb: list[bytes]
    boxes: np.ndarray  # (n, 4): xmin, ymin, xmax, ymax in EPSG:3857
    count: list[int]
    gi_z: list[float | None]
    gi_p: list[float | None]
    bin: list[int]
    members: hotspot_analysis.CellMembers | None = None
    grid_key: bytes = b""
    tiles: MadeTiles = field(default_factory=lambda: MadeTiles(TILE_BYTES_KEPT), compare=False)


class MadeTiles:
    """The tiles made from one grid, least recently used dropped first past `limit` bytes: a
    grid never changes, so neither does a tile made from it (it goes with the grid)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept: OrderedDict[Tile, bytes] = OrderedDict()
        self.size = 0
        self.hits = 0  # tests, benchmarks

    def get(self, tile: Tile) -> bytes | None:
        body = self.kept.get(tile)
        if body is not None:
            self.kept.move_to_end(tile)
            self.hits += 1
        return body

    def put(self, tile: Tile, body: bytes) -> None:
        if len(body) > self.limit or tile in self.kept:
            return
        self.kept[tile] = body
        self.size += len(body)
        while self.size > self.limit:
            _, dropped = self.kept.popitem(last=False)
            self.size -= len(dropped)


class HotspotCache:
    """The computed grids per (filter, version) for one process: a small LRU
    (app/analysis/cache.py); one computation per key at a time (concurrent requests for the
    same grid wait for the first). The newest grid of each filter is kept too: a later version
    is made from it and the change log when the change is small (hotspot_grid)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.grids: VersionedCache[HotspotGrid] = VersionedCache(size)
        self.latest: OrderedDict[IncidentFilter, HotspotGrid] = OrderedDict()
        self.deltas = 0  # grids made from a previous one (tests, benchmarks)

    async def get(
        self, key: Hashable, session: AsyncSession, filt: IncidentFilter, home: str
    ) -> HotspotGrid:
        """The grid for `key`, computed with the hot-spot service when missing."""

        async def make() -> HotspotGrid:
            previous = self.latest.get(filt)
            made = await hotspot_grid(session=session, filt=filt, home=home, previous=previous)
            self.deltas += int(made.members is not None and made.members.from_delta)
            self._remember(filt, made)
            return made

        return await self.grids.get(key, make)

    def _remember(self, filt: IncidentFilter, made: HotspotGrid) -> None:
        known = self.latest.get(filt)
        newer = (
            known is None
            or known.members is None
            or (made.members is not None and made.members.version >= known.members.version)
        )
        if newer:
            self.latest[filt] = made
            self.latest.move_to_end(filt)
            while len(self.latest) > LATEST_KEPT:
                self.latest.popitem(last=False)


GRID_TO_MERCATOR = text(
    f"""
    SELECT ST_AsBinary(g), ST_XMin(g), ST_YMin(g), ST_XMax(g), ST_YMax(g)
      FROM unnest(CAST(:geoms AS text[])) WITH ORDINALITY AS u(t, n),
           ST_Transform(ST_GeomFromGeoJSON(u.t), {SRID_WEB_MERCATOR}) AS g
     ORDER BY u.n
    """
)


async def hotspot_grid(
    *,
    session: AsyncSession,
    filt: IncidentFilter,
    home: str,
    previous: HotspotGrid | None = None,
) -> HotspotGrid:
    """Gi* over the border zone with the default cell size (app/analysis/hotspots.py, as GET
    /analysis/hotspots answers it without FDR), its cells projected to EPSG:3857 once per
    grid. With `previous` (an older grid of the same filter), its counts are brought up to
    date from the change log when they can be, instead of counting every incident."""
    ha = hotspot_analysis
    study = await ha.study_area(session=session, area=ha.BORDER_ZONE, home=home)
    cells = await ha.grid(session=session, study=study, cell_km=CELL_KM)
    grid_key = hashlib.sha256(study.wkb).digest()
    same = previous is not None and previous.grid_key == grid_key
    members = None
    if same and previous is not None and previous.members is not None:
        members = await ha.members_delta(
            session=session, previous=previous.members, filt=filt, study=study, grid=cells,
            cell_km=CELL_KM,
        )  # fmt: skip
    if members is None:
        members = await ha.members(
            session=session, filt=filt, study=study, grid=cells, cell_km=CELL_KM
        )
    z, p, bins = ha.gi_bins(members.counts, cells, fdr=False)
    if same and previous is not None:
        wkb, boxes = previous.wkb, previous.boxes
    else:
        geoms = cells.geojson
        rows = (await session.execute(GRID_TO_MERCATOR, {"geoms": geoms})).all() if geoms else []
        wkb = [bytes(r[0]) for r in rows]
        boxes = np.array([r[1:] for r in rows], dtype=float).reshape(-1, 4)
    return HotspotGrid(
        wkb=wkb,
        boxes=boxes,
        count=[int(c) for c in members.counts],
        gi_z=[None if math.isnan(v) else float(v) for v in z],
        gi_p=[None if math.isnan(v) else float(v) for v in p],
        bin=[int(b) for b in bins],
        members=members,
        grid_key=grid_key,
    )


HOTSPOT_TILE = text(
    f"""
    SELECT ST_AsMVT(t.*, 'hotspots', {EXTENT}, 'geom') FROM (
        SELECT ST_AsMVTGeom(ST_GeomFromWKB(u.w, {SRID_WEB_MERCATOR}),
                            ST_TileEnvelope(:z, :x, :y), {EXTENT}, {BUFFER}, true) AS geom,
               u.c AS count, u.gz AS gi_z, u.gp AS gi_p, u.b AS bin
          FROM unnest(CAST(:w AS bytea[]), CAST(:c AS int[]), CAST(:gz AS float8[]),
                      CAST(:gp AS float8[]), CAST(:b AS int[])) AS u(w, c, gz, gp, b)
    ) t WHERE t.geom IS NOT NULL
    """
)


def cells_in(boxes: np.ndarray, tile: Tile) -> list[int]:
    """The cells whose Web Mercator boxes (xmin, ymin, xmax, ymax rows) reach into the tile
    with its buffer."""
    xmin, ymin, xmax, ymax = tile.mercator(tile.buffer_m)
    b = boxes
    hit = np.nonzero((b[:, 0] <= xmax) & (b[:, 2] >= xmin) & (b[:, 1] <= ymax) & (b[:, 3] >= ymin))
    return [int(k) for k in hit[0]]


async def hotspots_tile(*, session: AsyncSession, grid: HotspotGrid, tile: Tile) -> bytes:
    """The cells of a computed grid that reach into the tile, with `count`, `gi_z`, `gi_p` and
    `bin`; only those cells travel to PostgreSQL, once per grid and tile while the grid's
    made tiles keep it (MadeTiles)."""
    kept = grid.tiles.get(tile)
    if kept is not None:
        return kept
    idx = cells_in(grid.boxes, tile)
    if not idx:
        return b""
    params = {
        "z": tile.z,
        "x": tile.x,
        "y": tile.y,
        "w": [grid.wkb[k] for k in idx],
        "c": [grid.count[k] for k in idx],
        "gz": [grid.gi_z[k] for k in idx],
        "gp": [grid.gi_p[k] for k in idx],
        "b": [grid.bin[k] for k in idx],
    }
    value = (await session.execute(HOTSPOT_TILE, params)).scalar()
    body = bytes(value) if value else b""
    grid.tiles.put(tile, body)
    return body
