"""The incidents layer: points from POINT_MIN_ZOOM for readers, aggregates below it (and for
viewers at every zoom), built once per filter and run on the driver connection.

Aggregates: the matching incidents of a tile are grouped on a grid of CELLS x CELLS cells per
tile (32 px at MapLibre's 512 px tiles), anchored at the world's corner so every cell lies inside
one tile; a tile therefore never holds more than CELLS² features. See docs/tiles.md.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, TypeVar, overload

from sqlalchemy import (
    BigInteger,
    BindParameter,
    Boolean,
    ColumnElement,
    Float,
    Integer,
    LargeBinary,
    Select,
    SmallInteger,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    not_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from app import i18n
from app.analysis.cache import VersionedCache
from app.db import DriverStatement, fetch_row
from app.geo.spatial import SRID_WEB_MERCATOR, SRID_WGS84
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
# an aggregate tile, its versions and its cells (a write in its region recounts only the cells
# it touched: `_recounted`)
AggregateTile = tuple[bytes, versions.Versions, "Cells"]
AGGREGATES: VersionedCache[AggregateTile] = VersionedCache(AGGREGATE_TILES_KEPT)
# Point tiles (z >= POINT_MIN_ZOOM, readers) are kept the same way, fewer of them: a busy one is
# up to ~750 kB and takes 0.3-1 s at 1 M incidents (the dashboard's city and gate views); the
# warmer keeps ~230 (app/analysis/warm.py: the busiest cities' and the border gates' views; 48 MB
# at 1 M, median 121 kB): at most ~100 MB at that median, ~290 MB were all of them the largest
POINT_TILES_KEPT = 384
POINTS: VersionedCache[tuple[bytes, versions.Versions]] = VersionedCache(POINT_TILES_KEPT)
# what a kept tile is, besides its stamp: filter, role, tile, and the language of a point
# tile's names (None for aggregates, which carry none)
Which = tuple[IncidentFilter, bool, Tile, Lang | None]
# The newest stamp each kept tile was kept under by a reader that had not written: when the
# incidents counter moved since, the change log (app/tiles/change_log.py) may prove that tile
# still valid (docs/tiles.md, "Kept tiles that survive writes").
LATEST: OrderedDict[Which, str] = OrderedDict()
# how the kept tiles (aggregates and points) not kept for their stamp were answered since start:
# made afresh, kept bytes proven valid at a later version by the change log, or a kept
# aggregate tile recounted in the cells the changes since touched (/metrics)
REUSE = {"made": 0, "checked": 0, "reused": 0, "recounted": 0}
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
    AGGREGATES per versions' stamp (docs/tiles.md, "Aggregate tiles kept per version"), with
    their cells, point tiles in POINTS per stamp and language; when only the incidents counter
    moved since a kept tile was made, the change log may prove it unchanged (`_proof`): then it
    is sent with the versions the proof read; an aggregate tile whose proof fails only because
    changes lie in its region is recounted in the cells they touch (`_recount`).

    Run without parallel workers (fetch_row): on 2 cores, starting and feeding them made busy
    tiles slower than the same plan run by the leader alone (docs/decisions.md)."""
    made = incident_tile_statement(
        filt, tile, aggregate_only=aggregate_only, cap=MAX_TILE_POINTS, lang=lang
    )
    if made is None:
        return b"", await versions.read(session=session)
    points = not (aggregate_only or tile.z < POINT_MIN_ZOOM)
    _, stamp, writing = await versions.read_stamped(session=session)
    if writing and not TRUST_OWN_WRITES:  # it sees changes its versions do not name yet
        return await _run(session, made)
    which: Which = (filt, aggregate_only, tile, lang if points else None)
    # what a writer saw may be rolled back: never the base of a proof, unless its counters
    # name its own writes (TRUST_OWN_WRITES; the proof then checks the commit it was made at)
    proven = not writing or TRUST_OWN_WRITES

    async def point_tile() -> tuple[bytes, versions.Versions]:
        proof = await _proof(session, POINTS, which, stamp, made[1]) if proven else None
        if proof is not None and proof.unchanged:
            REUSE["reused"] += 1
            return proof.kept[0], proof.versions
        REUSE["made"] += 1
        return await _run(session, made)

    async def aggregate_tile() -> AggregateTile:
        proof = await _proof(session, AGGREGATES, which, stamp, made[1]) if proven else None
        if proof is not None and proof.unchanged:
            REUSE["reused"] += 1
            return proof.kept[0], proof.versions, proof.kept[2]
        if proof is not None:  # only changes in the region stand in the way
            again = await _recounted(session, which, made[1], proof)
            if again is not None:
                return again
        REUSE["made"] += 1
        fresh = _aggregates_kept(filt, at_centre=aggregate_only)
        return await _run(session, (fresh, made[1]), _aggregate_row)

    # a write committed between the stamp and the tile gives a tile newer than the stamp,
    # kept with the versions it was made from: never older than the versions sent with it
    if points:
        value = await POINTS.get((stamp, *which), point_tile)
    else:
        body, found, _ = await AGGREGATES.get((stamp, *which), aggregate_tile)
        value = body, found
    if proven:
        LATEST[which] = stamp
        LATEST.move_to_end(which)
        while len(LATEST) > AGGREGATE_TILES_KEPT + POINT_TILES_KEPT:
            LATEST.popitem(last=False)
    return value


K = TypeVar("K", tuple[bytes, versions.Versions], tuple[bytes, versions.Versions, "Cells"])


@dataclass(frozen=True)
class Proof(Generic[K]):
    """What the change log says of a tile kept under an older stamp, the log covering the range
    and the other counters as they were: `unchanged` (no change since lies in its region: it is
    the tile of `versions`) or not (changes lie in its region: an aggregate tile may be
    recounted); `log` holds the parameters the question was asked with, `old` the parts of
    the stamp the tile was kept under."""

    kept: K
    versions: versions.Versions
    unchanged: bool
    log: dict[str, Any]
    old: dict[str, tuple[str, int, str]]


async def _proof(
    session: AsyncSession,
    cache: VersionedCache[K],
    which: Which,
    stamp: str,
    params: dict[str, Any],
) -> Proof[K] | None:
    """The tile kept in `cache` under an older stamp of the same filter, role, tile (and
    language), with what the change log says of it now (Proof); None when there is none or
    nothing can be proven (another counter moved, the log no longer reaches back that far).

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
    log = change_log.touched_params(old["incidents"][1], old["incidents"][2], box)
    row = (await conn.execute(_TOUCHED, log)).one()
    if not row.covered or not _same_base(old, str(row.stamp)):
        return None
    return Proof(
        kept=kept,
        versions=versions.parse(row.versions),
        unchanged=not row.touched,
        log=log,
        old=old,
    )


def _same_base(old: dict[str, tuple[str, int, str]], stamp: str) -> bool:
    """Whether the STAMP `stamp` has the jurisdictions part and the incidents epoch of `old`
    (a kept tile may then be proven or recounted at it)."""
    now = versions.stamp_parts(stamp)
    return (
        now.get("jurisdictions") == old.get("jurisdictions")
        and now.get("incidents", ("",))[0] == old["incidents"][0]
    )


async def _recounted(
    session: AsyncSession,
    which: Which,
    params: dict[str, Any],
    proof: Proof[AggregateTile],
) -> AggregateTile | None:
    """The kept aggregate tile of `proof` brought to now by recounting the cells the changes
    since touched (`_recount`, one statement), or made afresh by that statement when it cannot
    be (a change without box, too many cells, the log no longer covers the range; counted as
    made); None when the other counters moved meanwhile (the kept cells may not be used)."""
    filt, aggregate_only = which[0], which[1]
    stmt = _recount(filt, at_centre=aggregate_only)
    values = params | proof.log | proof.kept[2].params()
    row = await _run(session, (stmt, values), _row)
    if not row["ok"]:
        REUSE["made"] += 1
        return _aggregate_row(row)
    if not _same_base(proof.old, str(row["stamp"])):
        return None
    REUSE["recounted"] += 1
    return _aggregate_row(row)


def _row(row: Any) -> Any:
    """The row itself (what the recount's caller reads)."""
    return row


def _aggregate_row(row: Any) -> AggregateTile:
    """An aggregate tile, its versions and its cells from a _with_cells row."""
    tile = row["tile"]
    return (bytes(tile) if tile else b""), versions.parse(row["versions"]), Cells.of(row)


# the log's answer with the versions and their STAMP, all in the statement's one snapshot
_TOUCHED = text(
    f"SELECT t.covered, t.touched, {versions.VERSIONS_SQL} AS versions,"
    f" {versions.STAMP_SQL} AS stamp FROM ({change_log.TOUCHED_SQL}) t"
)

R = TypeVar("R")


@overload
async def _run(
    session: AsyncSession, made: tuple[Select[Any], dict[str, Any]]
) -> tuple[bytes, versions.Versions]: ...


@overload
async def _run(
    session: AsyncSession, made: tuple[Select[Any], dict[str, Any]], read: Callable[[Any], R]
) -> R: ...


async def _run(
    session: AsyncSession,
    made: tuple[Select[Any], dict[str, Any]],
    read: Callable[[Any], Any] | None = None,
) -> Any:
    """The tile, with the versions read in the same statement; with `read`, what it reads
    from the row of a statement that names its own columns (versions among them: the kept
    aggregates and their recount). Every statement that makes a tile runs here (tests count
    the tiles made by PostgreSQL with it)."""
    stmt, params = made
    conn = await session.connection()
    driver = _driver_statement(stmt, conn.dialect, frozenset(params), read is not None)
    row = await fetch_row(conn, driver, params)
    assert row is not None  # one row, always
    if read is not None:
        return read(row)
    return (bytes(row[0]) if row[0] else b""), versions.parse(row[1])


@lru_cache(maxsize=5 * STATEMENT_CACHE)  # per filter: points, aggregates, kept, recount
def _driver_statement(
    stmt: Select[Any], dialect: Dialect, names: frozenset[str], whole: bool = False
) -> DriverStatement:
    """The tile statement with the layer versions beside it (`whole`: the statement as it
    is), compiled once per filter and kind, to run on the driver connection (app/db.py)."""
    if not whole:
        stmt = select(stmt.scalar_subquery(), versions.VERSIONS_JSON)
    return DriverStatement(stmt, dialect, dict.fromkeys(names))


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


def _cell_of(geom: Any) -> tuple[ColumnElement[Any], ...]:
    """A point's position in Web Mercator metres (mx, my) and its grid cell (cx, cy, doubles):
    the clamp keeps a point that rounding puts a hair past the region's edge in its cell."""
    mx, my = _mercator_x(func.ST_X(geom)), _mercator_y(func.ST_Y(geom))
    cx = func.least(func.greatest(func.floor((mx + WORLD_M) / CELL), IX0), IX1)
    cy = func.least(func.greatest(func.floor((WORLD_M - my) / CELL), IY0), IY1)
    return mx, my, cx, cy


def _grouped(filt: IncidentFilter, *where: Any, outer: Any = None) -> Select[Any]:
    """The cells (grid_params) holding matching incidents of the region, with `where` added:
    cx, cy, count, severity_max, category (the most frequent; ties: the first), ax, ay (the
    mean position in Web Mercator metres). A kept tile's cells (Cells) are these rows.
    `outer`: a FROM item before it whose columns `where` names (the recount's cells)."""
    i = Incident
    mx, my, cx, cy = _cell_of(i.geom)
    chosen = select(
        mx.label("mx"),
        my.label("my"),
        cx.label("cx"),
        cy.label("cy"),
        i.category,
        i.severity,
    ).where(*filt.conditions(), *inside(i.geom, REGION_BOX), *where)
    points = chosen.subquery("p") if outer is None else chosen.correlate(outer).lateral("p")
    p = points.c
    return select(
        p.cx,
        p.cy,
        func.count().label("count"),
        func.max(p.severity).label("severity_max"),
        func.mode().within_group(p.category).label("category"),
        func.avg(p.mx).label("ax"),
        func.avg(p.my).label("ay"),
    ).group_by(p.cx, p.cy)


def _drawn(cells: Any, *, at_centre: bool) -> Select[Any]:
    """The aggregate tile of the cell rows `cells` (a subquery or CTE with _grouped's
    columns): one point per cell, `count`, `severity_max`, `category`, `cluster` = true, at the
    cell's centre (`at_centre`, for viewers: no incident position leaks) or at the mean
    position of its incidents. Features in the order of the cells (row, then column), so a tile
    drawn from the same cells is the same bytes whichever way they were counted."""
    g = cells.c
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
    ).order_by(g.cy, g.cx)
    return mvt(rows, "incidents")


@lru_cache(maxsize=STATEMENT_CACHE)
def _aggregates(filt: IncidentFilter, *, at_centre: bool) -> Select[Any]:
    """One point per grid cell (grid_params) holding matching incidents: `count`,
    `severity_max`, `category` (the most frequent), `cluster` = true; at the cell's centre
    (`at_centre`, for viewers: no incident position leaks) or at the mean position of its
    incidents."""
    return _drawn(_grouped(filt).subquery("g"), at_centre=at_centre)


# The cell rows of an aggregate tile, kept beside its bytes (AGGREGATES): a write inside its
# region recounts only the cells the change log names (docs/tiles.md, "Aggregate tiles
# recounted where a write lies").
CELL_COLUMNS = ("cx", "cy", "count", "severity_max", "category", "ax", "ay")
RECOUNT_CELLS_MAX = 64  # more touched cells than this: the tile is made afresh
# a touched cell's box in degrees is widened by this much in the GiST test (the exact cell is
# then decided by the same expression as the tile's): ~1 cm, far above rounding
CELL_PAD_DEG = 1e-7
_KEPT_PARAMS = {
    "k_cx": ARRAY(Float),
    "k_cy": ARRAY(Float),
    "k_count": ARRAY(BigInteger),
    "k_severity_max": ARRAY(SmallInteger),
    "k_category": ARRAY(String),
    "k_ax": ARRAY(Float),
    "k_ay": ARRAY(Float),
}


@dataclass(frozen=True)
class Cells:
    """The cell rows an aggregate tile was drawn from (_grouped's columns, at most CELLS² of
    them), in the tile's order, packed: ~40 bytes a cell (Python lists of floats would take
    ~250), so 2 048 full tiles keep ~22 MB of cells."""

    cx: array[int]
    cy: array[int]
    count: array[int]
    severity_max: array[int]
    category: tuple[str, ...]  # each code one shared string
    ax: array[float]
    ay: array[float]

    @classmethod
    def of(cls, row: Any) -> Cells:
        """The cells of a statement's row (the arrays of _with_cells; NULL: no cell)."""

        def values(name: str) -> list[Any]:
            return list(row[name] or ())

        return cls(
            cx=array("i", (int(v) for v in values("cx"))),
            cy=array("i", (int(v) for v in values("cy"))),
            count=array("q", values("count")),
            severity_max=array("h", values("severity_max")),
            category=tuple(sys.intern(str(c)) for c in values("category")),
            ax=array("d", values("ax")),
            ay=array("d", values("ay")),
        )

    def params(self) -> dict[str, list[Any]]:
        """The kept cells as the recount's array parameters (cx, cy as the doubles the grid
        expressions give)."""
        return {
            "k_cx": [float(v) for v in self.cx],
            "k_cy": [float(v) for v in self.cy],
            "k_count": self.count.tolist(),
            "k_severity_max": self.severity_max.tolist(),
            "k_category": list(self.category),
            "k_ax": self.ax.tolist(),
            "k_ay": self.ay.tolist(),
        }


def _with_cells(cells: Any, *, at_centre: bool, head: tuple[Any, ...] = ()) -> Select[Any]:
    """The tile drawn from `cells` (a CTE with _grouped's columns), the cells as arrays (in
    the tile's order), the versions, and `head`."""
    g = cells.c
    arrays = select(
        *(func.array_agg(aggregate_order_by(g[n], g.cy, g.cx)).label(n) for n in CELL_COLUMNS)
    ).subquery("a")
    return select(
        _drawn(cells, at_centre=at_centre).scalar_subquery().label("tile"),
        *arrays.c,
        versions.VERSIONS_JSON.label("versions"),
        *head,
    ).select_from(arrays)


@lru_cache(maxsize=STATEMENT_CACHE)
def _aggregates_kept(filt: IncidentFilter, *, at_centre: bool) -> Select[Any]:
    """The aggregate tile (as _aggregates) with its cells and the versions, in one statement:
    the cells are grouped once (a materialized CTE of CELLS² rows at most) and read twice."""
    grouped = _grouped(filt).cte("g").prefix_with("MATERIALIZED")
    return _with_cells(grouped, at_centre=at_centre)


def _log_parts() -> tuple[Any, Any]:
    """The change log's parts of the recount (change_log.py, TOUCHED_SQL's pieces): the
    counter now with whether the log covers (A, B], and the change rows of (A, B] in the box
    (:w :s :e :n, the widened region; a row without box: everywhere)."""
    typed: tuple[BindParameter[Any], ...] = (
        bindparam("a", type_=BigInteger),
        bindparam("at", type_=Text),
        *(bindparam(n, type_=Float) for n in ("w", "s", "e", "n")),
    )
    log = (
        text(
            f"SELECT b.version AS newest, {change_log.COVERED_SQL} AS covered"
            " FROM layer_version b WHERE b.layer = 'incidents'"
        )
        .bindparams(*typed[:2])
        .columns(newest=BigInteger, covered=Boolean)
        .cte("log")
    )
    boxes = (
        text(
            "SELECT c.west, c.south, c.east, c.north FROM layer_version b"
            f" JOIN incident_change_commit k ON {change_log.IN_RANGE_SQL}"
            f" JOIN incident_change c ON c.xid = k.xid AND {change_log.IN_BOX_SQL}"
            " WHERE b.layer = 'incidents'"
        )
        .bindparams(typed[0], *typed[2:])
        .columns(west=Float, south=Float, east=Float, north=Float)
        .cte("boxes")
        .prefix_with("MATERIALIZED")
    )
    return log, boxes


@lru_cache(maxsize=STATEMENT_CACHE)
def _recount(filt: IncidentFilter, *, at_centre: bool) -> Select[Any]:
    """The aggregate tile of now from a kept one's cells (the array parameters of Cells),
    in one statement and snapshot: the versions and STAMP, whether the log covers (A, B], the
    change boxes of (A, B] in the region, the cells they cover (clamped to the grid), each of
    those counted again (through the GiST index, one cell box at a time) with the tile's
    filter and expressions, and the tile drawn from the kept cells minus the touched ones
    plus the recounted ones (as _with_cells: the same encoder as a tile made afresh). When the
    log does not cover the range, a change has no box, or more than RECOUNT_CELLS_MAX cells are
    touched, `ok` is false, no kept cell is used and the statement makes the tile afresh (as
    _aggregates_kept): a failed recount costs no second statement."""
    log, boxes = _log_parts()
    b = boxes.c
    eps = 1e-9  # in cells: a change on a cell's edge recounts both cells
    x_lo = func.greatest(func.floor((_mercator_x(b.west) + WORLD_M) / CELL - eps), IX0)
    x_hi = func.least(func.floor((_mercator_x(b.east) + WORLD_M) / CELL + eps), IX1)
    y_lo = func.greatest(func.floor((WORLD_M - _mercator_y(b.north)) / CELL - eps), IY0)
    y_hi = func.least(func.floor((WORLD_M - _mercator_y(b.south)) / CELL + eps), IY1)
    gx = func.generate_series(cast(x_lo, Integer), cast(x_hi, Integer)).table_valued("v")
    gy = func.generate_series(cast(y_lo, Integer), cast(y_hi, Integer)).table_valued("v")
    gx, gy = gx.render_derived(name="gx"), gy.render_derived(name="gy")
    touched = (
        select(cast(gx.c.v, Float).label("cx"), cast(gy.c.v, Float).label("cy"))
        .select_from(boxes)
        .join(gx, true())
        .join(gy, true())
        .where(b.west.is_not(None))
        .distinct()
        .cte("touched")
        .prefix_with("MATERIALIZED")
    )
    t = touched.c
    covered = select(log.c.covered).scalar_subquery()
    whole = select(func.coalesce(func.bool_or(b.west.is_(None)), False)).scalar_subquery()
    many = select(func.count()).select_from(touched).scalar_subquery()
    ok = select(and_(covered, not_(whole), many <= RECOUNT_CELLS_MAX)).scalar_subquery()
    # the kept cells that no change touched
    k = func.unnest(*(bindparam(name, type_=kind) for name, kind in _KEPT_PARAMS.items()))
    kept = k.table_valued(*CELL_COLUMNS).render_derived(name="k")
    untouched = select(*(kept.c[n] for n in CELL_COLUMNS)).where(
        ok, ~exists().where(t.cx == kept.c.cx, t.cy == kept.c.cy)
    )
    # the touched cells counted again, each read through the GiST index by its own box
    _, _, cx, cy = _cell_of(Incident.geom)

    def lon(x: Any) -> Any:
        return (-WORLD_M + x * CELL) * (180 / WORLD_M)

    def lat(y: Any) -> Any:
        return func.degrees(func.atan(func.sinh((WORLD_M - y * CELL) * (math.pi / WORLD_M))))

    box = func.ST_MakeEnvelope(
        lon(t.cx) - CELL_PAD_DEG,
        lat(t.cy + 1) - CELL_PAD_DEG,
        lon(t.cx + 1) + CELL_PAD_DEG,
        lat(t.cy) + CELL_PAD_DEG,
        SRID_WGS84,
    )
    on_cell = (Incident.geom.op("&&")(box), cx == t.cx, cy == t.cy)
    again = _grouped(filt, *on_cell, outer=touched).lateral("r")
    recounted = (
        select(*(again.c[n] for n in CELL_COLUMNS))
        .select_from(touched)
        .join(again, true())
        .where(ok)
    )
    # otherwise every cell, as _aggregates_kept counts them
    afresh = _grouped(filt).where(not_(ok))
    cells = union_all(untouched, recounted, afresh).cte("cells").prefix_with("MATERIALIZED")
    head = (
        versions.STAMP.label("stamp"),
        covered.label("covered"),
        whole.label("whole"),
        many.label("n"),
        ok.label("ok"),
    )
    return _with_cells(cells, at_centre=at_centre, head=head)
