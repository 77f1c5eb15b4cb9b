"""The emerging-hot-spot layer: the cells of GET /analysis/emerging-hotspots with its default
parameters (border zone, 5 km hexagons, monthly steps, one time neighbour, FDR) for the
request's filters, computed once per (filters, version) in each process and kept in a small
LRU, as the hot-spot layer does (app/tiles/hotspots.py); a tile sends PostgreSQL only the cells
that reach into it.

The cube's span is part of the layer's version: without `datetime` it is the last 24 complete
local months, which move on the first of each month without any write (the version, so the
URL, moves with it)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import numpy as np
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.analysis import emerging as analysis
from app.analysis import hotspots as hotspot_analysis
from app.analysis.cache import VersionedCache
from app.errors import InvalidInput
from app.geo.spatial import SRID_WEB_MERCATOR
from app.i18n import Lang
from app.incidents.filters import IncidentFilter
from app.tiles.hotspots import GRID_TO_MERCATOR, cells_in
from app.tiles.tile import BUFFER, EXTENT, Tile

# the defaults of GET /analysis/emerging-hotspots
CELL_KM = 5.0
STEP: analysis.Step = "month"
TIME_NEIGHBOURS = 1
FDR = True
T = TypeVar("T")
CACHE_SIZE = 4  # cubes kept per process (each ~10 000 cells at 5 km over the border zone)


@dataclass(frozen=True)
class EmergingGrid:
    """The cells of one (filter, version): EPSG:3857 WKB, their boxes and properties."""

    wkb: list[bytes]
    boxes: np.ndarray  # (n, 4): xmin, ymin, xmax, ymax in EPSG:3857
    cell: list[str]  # the Feature id of the analysis, "i:j"
    category: list[str]
    trend_s: list[int | None]
    trend_z: list[float | None]
    trend_p: list[float | None]
    count: list[int]
    count_last: list[int]
    hot_steps: list[int]
    cold_steps: list[int]
    period: str  # first and last step, "2024-12/2026-11"


def period_of(filt: IncidentFilter, now: datetime) -> str:
    """The cube's first and last step for these filters at `now` ("2024-12/2026-11"), checked
    as the analysis checks them (422 when the span cannot carry a trend)."""
    for bound in (filt.start, filt.end):
        if bound is not None and not analysis.EARLIEST <= bound < analysis.LATEST:
            raise InvalidInput(
                f"datetime must lie between {analysis.EARLIEST.year} and"
                f" {analysis.LATEST.year - 1} for the cube's steps",
                field="datetime",
            )
    edges = analysis.step_edges(STEP, filt.start, filt.end, now)
    steps = len(edges) - 1
    if steps < analysis.MIN_STEPS:
        raise InvalidInput(
            f"datetime spans {steps} {STEP}(s); the emerging hot spots need at least"
            f" {analysis.MIN_STEPS} (ten or more are advised)",
            field="datetime",
            min_steps=analysis.MIN_STEPS,
        )
    return f"{analysis.step_label(edges[0], STEP)}/{analysis.step_label(edges[-2], STEP)}"


class EmergingCache:
    """The computed cubes per (filter, version) for one process: a small LRU
    (app/analysis/cache.py); one computation per key at a time."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.grids: VersionedCache[EmergingGrid] = VersionedCache(size)

    async def get(
        self, key: Hashable, session: AsyncSession, filt: IncidentFilter, home: str, now: datetime
    ) -> EmergingGrid:
        """The cells for `key`, computed with the analysis when missing."""

        async def make() -> EmergingGrid:
            return await emerging_grid(session=session, filt=filt, home=home, now=now)

        return await self.grids.get(key, make)


async def emerging_grid(
    *, session: AsyncSession, filt: IncidentFilter, home: str, now: datetime
) -> EmergingGrid:
    """GET /analysis/emerging-hotspots' answer for the defaults, its cells projected to
    EPSG:3857 once."""
    body = await analysis.emerging_hotspots(
        session=session,
        filt=filt,
        area=hotspot_analysis.BORDER_ZONE,
        cell_km=CELL_KM,
        step=STEP,
        time_neighbours=TIME_NEIGHBOURS,
        fdr=FDR,
        home=home,
        lang="en",
        now=now,
    )
    fc = orjson.loads(body)
    features = fc["features"]
    geoms = [orjson.dumps(f["geometry"]).decode() for f in features]
    rows = (await session.execute(GRID_TO_MERCATOR, {"geoms": geoms})).all() if geoms else []
    props = [f["properties"] for f in features]
    steps: list[str] = fc["steps"]
    return EmergingGrid(
        wkb=[bytes(r[0]) for r in rows],
        boxes=np.array([r[1:] for r in rows], dtype=float).reshape(-1, 4),
        cell=[str(f["id"]) for f in features],
        category=[p["category"] for p in props],
        trend_s=[p["trend_s"] for p in props],
        trend_z=[p["trend_z"] for p in props],
        trend_p=[p["trend_p"] for p in props],
        count=[int(p["count"]) for p in props],
        count_last=[int(p["counts"][-1]) if p["counts"] else 0 for p in props],
        hot_steps=[int(p["hot_steps"]) for p in props],
        cold_steps=[int(p["cold_steps"]) for p in props],
        period=f"{steps[0]}/{steps[-1]}" if steps else "",
    )


def _pick(values: Sequence[T], idx: list[int]) -> list[T]:
    return [values[k] for k in idx]


EMERGING_TILE = text(
    f"""
    SELECT ST_AsMVT(t.*, 'emerging-hotspots', {EXTENT}, 'geom') FROM (
        SELECT ST_AsMVTGeom(ST_GeomFromWKB(u.w, {SRID_WEB_MERCATOR}),
                            ST_TileEnvelope(:z, :x, :y), {EXTENT}, {BUFFER}, true) AS geom,
               u.cell, u.category, u.category_name, u.trend_s, u.trend_z, u.trend_p,
               u.count, u.count_last, u.hot_steps, u.cold_steps,
               CAST(:period AS text) AS period
          FROM unnest(CAST(:w AS bytea[]), CAST(:cell AS text[]), CAST(:category AS text[]),
                      CAST(:category_name AS text[]), CAST(:trend_s AS int[]),
                      CAST(:trend_z AS float8[]), CAST(:trend_p AS float8[]),
                      CAST(:count AS int[]), CAST(:count_last AS int[]),
                      CAST(:hot_steps AS int[]), CAST(:cold_steps AS int[]))
               AS u(w, cell, category, category_name, trend_s, trend_z, trend_p, count,
                    count_last, hot_steps, cold_steps)
    ) t WHERE t.geom IS NOT NULL
    """
)


async def emerging_tile(
    *, session: AsyncSession, grid: EmergingGrid, tile: Tile, lang: Lang
) -> bytes:
    """The cells of a computed cube that reach into the tile, with their category (and its
    name in `lang`), trend and counts; only those cells travel to PostgreSQL."""
    idx = cells_in(grid.boxes, tile)
    if not idx:
        return b""

    params = {
        "z": tile.z,
        "x": tile.x,
        "y": tile.y,
        "period": grid.period,
        "w": _pick(grid.wkb, idx),
        "cell": _pick(grid.cell, idx),
        "category": _pick(grid.category, idx),
        "category_name": [analysis.NAMES[grid.category[k]][lang] for k in idx],
        "trend_s": _pick(grid.trend_s, idx),
        "trend_z": _pick(grid.trend_z, idx),
        "trend_p": _pick(grid.trend_p, idx),
        "count": _pick(grid.count, idx),
        "count_last": _pick(grid.count_last, idx),
        "hot_steps": _pick(grid.hot_steps, idx),
        "cold_steps": _pick(grid.cold_steps, idx),
    }
    value = (await session.execute(EMERGING_TILE, params)).scalar()
    return bytes(value) if value else b""
