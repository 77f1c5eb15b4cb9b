"""The incidents layer: points from POINT_MIN_ZOOM for readers, aggregates below it (and for
viewers at every zoom), built once per filter and run on the driver connection.

Aggregates: the matching incidents of a tile are grouped on a grid of CELLS x CELLS cells per
tile (32 px at MapLibre's 512 px tiles), anchored at the world's corner so every cell lies inside
one tile; a tile therefore never holds more than CELLS² features. See docs/tiles.md.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Float,
    Integer,
    LargeBinary,
    Select,
    Text,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from app import i18n
from app.analysis.cache import VersionedCache
from app.db import DriverStatement, fetch_row
from app.geo.spatial import SRID_WEB_MERCATOR
from app.i18n import Lang
from app.incidents import schema
from app.incidents.filters import IncidentFilter
from app.incidents.models import Incident
from app.tiles import change_log, versions
from app.tiles.sql import TILE_BOX, box_params, envelope, inside, iso, mvt, point, tile_params
from app.tiles.tile import BUFFER, EXTENT, WORLD_M, Tile, mercator_to_lonlat

POINT_MIN_ZOOM = 10  # from here on, readers get one feature per incident ...
MAX_TILE_POINTS = 5_000  # ... unless the tile holds more (~450 kB): then DENSE_CELLS
CELLS = 16  # aggregate cells per tile side below POINT_MIN_ZOOM: 32 px on a 512 px tile
DENSE_CELLS = 64  # cells per side for an over-full tile at a point zoom: 8 px
# A viewer's cells are never smaller than the 16 x 16 grid of zoom 12 (611 m at the equator,
# ~570 m in Vietnam): about the finest hot-spot cell (0.5 km) viewers may already ask for.
VIEWER_MIN_CELL_M = 2 * WORLD_M / 2**12 / CELLS

# The statements depend on the filter only: everything that depends on the tile is a bound
# parameter, so a statement is built once per filter (an LRU) and a map panning with one filter
# builds none (building a point tile's statement costs far more Python than PostgreSQL needs
# for a small tile: docs/performance.md).
# the aggregate grid: cell size (m), first and last column and row, and the cells' region
CELL = bindparam("cell", type_=Float)
IX0, IX1, IY0, IY1 = (bindparam(n, type_=Float) for n in ("ix0", "ix1", "iy0", "iy1"))
REGION_BOX = box_params("rw", "rs", "re", "rn")
CAP = bindparam("cap", type_=Integer)
STATEMENT_CACHE = 128  # filters whose statements are kept (per kind)


def incident_tile_statement(
    filt: IncidentFilter, tile: Tile, *, aggregate_only: bool, cap: int, lang: Lang = i18n.DEFAULT
) -> tuple[Select[Any], dict[str, Any]] | None:
    """The statement and parameters that make an incidents tile (None: nothing to draw):
    points at z >= POINT_MIN_ZOOM for readers (aggregates when the tile holds more than `cap`
    incidents), aggregates below it and for viewers at every zoom."""
    params = tile_params(tile)
    if aggregate_only or tile.z < POINT_MIN_ZOOM:
        min_cell_m = VIEWER_MIN_CELL_M if aggregate_only else 0.0
        grid = grid_params(tile, CELLS, min_cell_m)
        if grid is None:
            return None
        return _aggregates(filt, at_centre=aggregate_only), params | grid
    grid = grid_params(tile, DENSE_CELLS, 0.0)
    assert grid is not None  # cells no bigger than the tile: always drawn by it
    return capped_points(filt, lang), params | grid | {"cap": cap}


# Aggregate tiles are kept per data snapshot: the busiest low-zoom tiles read a quarter of a
# million rows, which no statement makes cheap (docs/decisions.md). A key names the versions'
# STAMP, the filter, the role and the tile; a value is the tile and the versions it was made
# from. At most ~5 kB each (CELLS² features): ~10 MB.
AGGREGATE_TILES_KEPT = 2048
AGGREGATES: VersionedCache[tuple[bytes, versions.Versions]] = VersionedCache(AGGREGATE_TILES_KEPT)
# Point tiles (z >= POINT_MIN_ZOOM, readers) are kept the same way, fewer of them: a busy one is
# up to ~450 kB and takes 0.5-1 s at 1 M incidents (the dashboard's city and gate views).
POINT_TILES_KEPT = 256
POINTS: VersionedCache[tuple[bytes, versions.Versions]] = VersionedCache(POINT_TILES_KEPT)
# what a kept tile is, besides its stamp: filter, role, tile, and the language of a point
# tile's names (None for aggregates, which carry none)
Which = tuple[IncidentFilter, bool, Tile, Lang | None]
# The newest stamp each kept tile was kept under by a reader that had not written: when the
# incidents counter moved since, the change log (app/tiles/change_log.py) may prove that tile
# still valid (docs/tiles.md, "Kept tiles that survive writes").
LATEST: OrderedDict[Which, str] = OrderedDict()
# how the kept tiles (aggregates and points) not kept for their stamp were answered since start:
# made afresh, or kept bytes proven valid at a later version by the change log (/metrics)
REUSE = {"made": 0, "checked": 0, "reused": 0}
# the region box is widened by this much (degrees) in the log's test: a change on its edge
# counts as inside
EDGE_DEG = 1e-9
# Tests that make the incident counter move at each statement (SET CONSTRAINTS … IMMEDIATE)
# may set this: their own writes are then named by the counters they read.
TRUST_OWN_WRITES = False


async def incidents_tile(
    *,
    session: AsyncSession,
    filt: IncidentFilter,
    tile: Tile,
    aggregate_only: bool,
    lang: Lang = i18n.DEFAULT,
) -> tuple[bytes, versions.Versions]:
    """The incidents tile (see incident_tile_statement), MAX_TILE_POINTS at most, and the
    layer versions read in the same statement, so in the same snapshot as the tile: a version
    never names data older or newer than the tile sent with it. Aggregate tiles are kept in
    AGGREGATES per versions' stamp (docs/tiles.md, "Aggregate tiles kept per version"), point
    tiles in POINTS per stamp and language; when
    only the incidents counter moved since a kept tile was made, the change log may prove it
    unchanged (`_still_valid`): then it is sent with the versions the proof read.

    Run without parallel workers (fetch_row): on 2 cores, starting and feeding them made busy
    tiles slower than the same plan run by the leader alone (docs/decisions.md)."""
    made = incident_tile_statement(
        filt, tile, aggregate_only=aggregate_only, cap=MAX_TILE_POINTS, lang=lang
    )
    if made is None:
        return b"", await versions.read(session=session)
    points = not (aggregate_only or tile.z < POINT_MIN_ZOOM)
    kept = POINTS if points else AGGREGATES
    _, stamp, writing = await versions.read_stamped(session=session)
    if writing and not TRUST_OWN_WRITES:  # it sees changes its versions do not name yet
        return await _run(session, made)
    which: Which = (filt, aggregate_only, tile, lang if points else None)
    # what a writer saw may be rolled back: never the base of a proof, unless its counters
    # name its own writes (TRUST_OWN_WRITES; the proof then checks the commit it was made at)
    proven = not writing or TRUST_OWN_WRITES

    async def make() -> tuple[bytes, versions.Versions]:
        still = await _still_valid(session, kept, which, stamp, made[1]) if proven else None
        if still is not None:
            return still
        REUSE["made"] += 1
        return await _run(session, made)

    # a write committed between the stamp and the tile gives a tile newer than the stamp,
    # kept with the versions it was made from: never older than the versions sent with it
    value = await kept.get((stamp, *which), make)
    if proven:
        LATEST[which] = stamp
        LATEST.move_to_end(which)
        while len(LATEST) > AGGREGATE_TILES_KEPT + POINT_TILES_KEPT:
            LATEST.popitem(last=False)
    return value


async def _still_valid(
    session: AsyncSession,
    cache: VersionedCache[tuple[bytes, versions.Versions]],
    which: Which,
    stamp: str,
    params: dict[str, Any],
) -> tuple[bytes, versions.Versions] | None:
    """The tile kept in `cache` under an older stamp of the same filter, role, tile (and
    language), with the versions of
    now, when the change log proves that no change since touched the incidents the tile counts
    (those in its region, the box of its cells); None otherwise (another counter moved, the log
    no longer reaches back that far, or a change lies in the region).

    Any field of an incident a filter may test changes only with a row of the log at that
    incident's position (before and after), so the region test covers every filter; the
    jurisdictions counter (a scope's or filter's units) must not have moved at all."""
    before = LATEST.get(which)
    if before is None or before == stamp:
        return None
    kept = cache.peek((before, *which))
    if kept is None:
        return None
    old, new = versions.stamp_parts(before), versions.stamp_parts(stamp)
    if (
        "incidents" not in old
        or "incidents" not in new
        or old.get("jurisdictions") != new.get("jurisdictions")
        or old["incidents"][0] != new["incidents"][0]
        or old["incidents"][1] >= new["incidents"][1]
    ):
        return None
    box = (
        params["rw"] - EDGE_DEG,
        params["rs"] - EDGE_DEG,
        params["re"] + EDGE_DEG,
        params["rn"] + EDGE_DEG,
    )
    REUSE["checked"] += 1
    conn = await session.connection()
    found = await conn.execute(
        _TOUCHED, change_log.touched_params(old["incidents"][1], old["incidents"][2], box)
    )
    row = found.one()
    now = versions.stamp_parts(str(row.stamp))
    if (
        not row.covered
        or row.touched
        or now.get("jurisdictions") != old.get("jurisdictions")
        or now.get("incidents", ("",))[0] != old["incidents"][0]
    ):
        return None
    REUSE["reused"] += 1
    return kept[0], versions.parse(row.versions)


# the log's answer with the versions and their STAMP, all in the statement's one snapshot
_TOUCHED = text(
    f"SELECT t.covered, t.touched, {versions.VERSIONS_SQL} AS versions,"
    f" {versions.STAMP_SQL} AS stamp FROM ({change_log.TOUCHED_SQL}) t"
)


async def _run(
    session: AsyncSession, made: tuple[Select[Any], dict[str, Any]]
) -> tuple[bytes, versions.Versions]:
    """The tile, with the versions read in the same statement."""
    stmt, params = made
    conn = await session.connection()
    row = await fetch_row(conn, _driver_statement(stmt, conn.dialect, frozenset(params)), params)
    assert row is not None  # one row, always
    return (bytes(row[0]) if row[0] else b""), versions.parse(row[1])


@lru_cache(maxsize=3 * STATEMENT_CACHE)
def _driver_statement(
    stmt: Select[Any], dialect: Dialect, names: frozenset[str]
) -> DriverStatement:
    """The tile statement with the layer versions beside it, compiled once per filter and
    kind, to run on the driver connection (app/db.py)."""
    return DriverStatement(
        select(stmt.scalar_subquery(), versions.VERSIONS_JSON), dialect, dict.fromkeys(names)
    )


def _point_rows(source: Any, lang: Lang) -> Select[Any]:
    """The point features of incidents (`source`: rows with the incident's columns) in tile
    coordinates, with the tile fields of app/incidents/schema.py (datetimes as ISO 8601 text,
    numbers as doubles)."""
    fields = schema.joined(lang, source, schema.TILE_FIELDS)
    values: list[Any] = []
    for name in schema.TILE_FIELDS:
        expr = fields.columns[name]
        kind = schema.BY_NAME[name].type
        if kind == "datetime":
            expr = iso(expr)
        elif kind == "number":
            expr = cast(expr, Float)
        elif kind == "uuid":
            expr = cast(expr, Text)
        values.append(expr.label(name))
    return select(
        point(source.c.geom).label("geom"),
        *values,
        literal(False, Boolean).label("cluster"),
    ).select_from(fields.from_)


def _matching(filt: IncidentFilter) -> Select[Any]:
    i = Incident
    return select(i).where(*filt.conditions(), *inside(i.geom, TILE_BOX))


@lru_cache(maxsize=STATEMENT_CACHE)
def capped_points(filt: IncidentFilter, lang: Lang = i18n.DEFAULT) -> Select[Any]:
    """The points tile, or the dense aggregates when the tile holds more than CAP incidents,
    in one statement: at most CAP + 1 matching rows are read (raw columns only) to decide;
    only the branch taken is evaluated (each is an InitPlan that runs when the CASE reaches
    it), so no feature is projected for nothing and no request costs a second round trip."""
    cand = _matching(filt).limit(CAP + 1).cte("cand").prefix_with("MATERIALIZED")
    empty = literal(b"", LargeBinary)
    points = func.coalesce(mvt(_point_rows(cand, lang), "incidents").scalar_subquery(), empty)
    dense = func.coalesce(_aggregates(filt, at_centre=False).scalar_subquery(), empty)
    n = select(func.count()).select_from(cand).scalar_subquery()
    return select(case((n <= CAP, points), else_=dense))


def _mercator_x(lon: Any) -> ColumnElement[Any]:
    return cast(lon, Float) * (WORLD_M / 180)


def _mercator_y(lat: Any) -> ColumnElement[Any]:
    return func.ln(func.tan(math.pi / 4 + func.radians(lat) / 2)) * (WORLD_M / math.pi)


def grid_params(tile: Tile, cells: int, min_cell_m: float) -> dict[str, Any] | None:
    """The values of the aggregate grid's parameters for a tile: `cells` x `cells` cells, none
    smaller than `min_cell_m`; None when the tile does not draw its cell.

    Cells are anchored at the world's north-west corner, so the cells of a tile lie inside it;
    when a viewer's minimum cell is larger than the tile, the cell containing the tile is
    counted whole and drawn only by the one tile whose corner is its centre."""
    cell = max(tile.width_m / cells, min_cell_m)
    if cell > tile.width_m * 1.5:
        # the tile lies inside one cell, k x k tiles wide: only the tile whose north-west
        # corner is the cell's centre draws it (decided in integers: no rounding at edges)
        k = round(cell / tile.width_m)
        if tile.x % k != k // 2 or tile.y % k != k // 2:
            return None
    xmin, ymin, xmax, ymax = tile.mercator()
    eps = 1e-9
    ix0 = math.floor((xmin + WORLD_M) / cell + eps)
    ix1 = math.ceil((xmax + WORLD_M) / cell - eps) - 1
    iy0 = math.floor((WORLD_M - ymax) / cell + eps)
    iy1 = math.ceil((WORLD_M - ymin) / cell - eps) - 1
    region = (
        -WORLD_M + ix0 * cell,
        WORLD_M - (iy1 + 1) * cell,
        -WORLD_M + (ix1 + 1) * cell,
        WORLD_M - iy0 * cell,
    )
    rw, rs, re, rn = mercator_to_lonlat(region)
    return {
        "cell": cell,
        "ix0": float(ix0),
        "ix1": float(ix1),
        "iy0": float(iy0),
        "iy1": float(iy1),
        "rw": rw,
        "rs": rs,
        "re": re,
        "rn": rn,
    }


@lru_cache(maxsize=STATEMENT_CACHE)
def _aggregates(filt: IncidentFilter, *, at_centre: bool) -> Select[Any]:
    """One point per grid cell (grid_params) holding matching incidents: `count`,
    `severity_max`, `category` (the most frequent), `cluster` = true; at the cell's centre
    (`at_centre`, for viewers: no incident position leaks) or at the mean position of its
    incidents."""
    i = Incident
    mx, my = _mercator_x(func.ST_X(i.geom)), _mercator_y(func.ST_Y(i.geom))
    # the clamp keeps a point that rounding puts a hair past the region's edge in its cell
    points = (
        select(
            mx.label("mx"),
            my.label("my"),
            func.least(func.greatest(func.floor((mx + WORLD_M) / CELL), IX0), IX1).label("cx"),
            func.least(func.greatest(func.floor((WORLD_M - my) / CELL), IY0), IY1).label("cy"),
            i.category,
            i.severity,
        )
        .where(*filt.conditions(), *inside(i.geom, REGION_BOX))
        .subquery("p")
    )
    p = points.c
    grouped = (
        select(
            p.cx,
            p.cy,
            func.count().label("count"),
            func.max(p.severity).label("severity_max"),
            func.mode().within_group(p.category).label("category"),
            func.avg(p.mx).label("ax"),
            func.avg(p.my).label("ay"),
        )
        .group_by(p.cx, p.cy)
        .subquery("g")
    )
    g = grouped.c
    if at_centre:
        px = -WORLD_M + (g.cx + 0.5) * CELL
        py = WORLD_M - (g.cy + 0.5) * CELL
    else:
        px, py = g.ax, g.ay
    position = func.ST_SetSRID(func.ST_MakePoint(px, py), SRID_WEB_MERCATOR)
    rows = select(
        func.ST_AsMVTGeom(position, envelope(), EXTENT, BUFFER, True).label("geom"),
        g.count,
        g.severity_max,
        g.category,
        literal(True, Boolean).label("cluster"),
    )
    return mvt(rows, "incidents")
