"""The hot-spot layer: the Gi* grid of GET /analysis/hotspots (its defaults) for the request's
filters, computed once per (filters, version) in each process and kept in a small LRU; a tile
sends PostgreSQL only the cells that reach into it."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.analysis import hotspots as hotspot_analysis
from app.analysis.cache import VersionedCache
from app.geo.spatial import SRID_WEB_MERCATOR
from app.incidents.filters import IncidentFilter
from app.tiles.tile import BUFFER, EXTENT, Tile

CELL_KM = 5.0  # the default cell size of /analysis/hotspots
CACHE_SIZE = 8  # grids kept per process


@dataclass(frozen=True)
class HotspotGrid:
    """The Gi* cells of one (filter, version): EPSG:3857 WKB, their boxes and properties."""

    wkb: list[bytes]
    boxes: np.ndarray  # (n, 4): xmin, ymin, xmax, ymax in EPSG:3857
    count: list[int]
    gi_z: list[float | None]
    gi_p: list[float | None]
    bin: list[int]


class HotspotCache:
    """The computed grids per (filter, version) for one process: a small LRU
    (app/analysis/cache.py); one computation per key at a time (concurrent requests for the
    same grid wait for the first)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.grids: VersionedCache[HotspotGrid] = VersionedCache(size)

    async def get(
        self, key: Hashable, session: AsyncSession, filt: IncidentFilter, home: str
    ) -> HotspotGrid:
        """The grid for `key`, computed with the hot-spot service when missing."""

        async def make() -> HotspotGrid:
            return await hotspot_grid(session=session, filt=filt, home=home)

        return await self.grids.get(key, make)


GRID_TO_MERCATOR = text(
    f"""
    SELECT ST_AsBinary(g), ST_XMin(g), ST_YMin(g), ST_XMax(g), ST_YMax(g)
      FROM unnest(CAST(:geoms AS text[])) WITH ORDINALITY AS u(t, n),
           ST_Transform(ST_GeomFromGeoJSON(u.t), {SRID_WEB_MERCATOR}) AS g
     ORDER BY u.n
    """
)


async def hotspot_grid(*, session: AsyncSession, filt: IncidentFilter, home: str) -> HotspotGrid:
    """Gi* over the border zone with the default cell size (app/analysis/hotspots.py), its
    cells projected to EPSG:3857 once."""
    body = await hotspot_analysis.hotspots(
        session=session,
        filt=filt,
        area=hotspot_analysis.BORDER_ZONE,
        cell_km=CELL_KM,
        fdr=False,
        home=home,
    )
    features = orjson.loads(body)["features"]
    geoms = [orjson.dumps(f["geometry"]).decode() for f in features]
    rows = (await session.execute(GRID_TO_MERCATOR, {"geoms": geoms})).all() if geoms else []
    props = [f["properties"] for f in features]
    return HotspotGrid(
        wkb=[bytes(r[0]) for r in rows],
        boxes=np.array([r[1:] for r in rows], dtype=float).reshape(-1, 4),
        count=[int(p["count"]) for p in props],
        gi_z=[p["gi_z"] for p in props],
        gi_p=[p["gi_p"] for p in props],
        bin=[int(p["bin"]) for p in props],
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
    `bin`; only those cells travel to PostgreSQL."""
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
    return bytes(value) if value else b""
