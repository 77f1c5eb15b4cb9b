"""Vector tiles made in PostgreSQL (ST_TileEnvelope / ST_AsMVTGeom / ST_AsMVT), layer versions,
and the in-process cache of the hot-spot grid.

Tiles are Web Mercator (EPSG:3857) XYZ tiles, 4096 units across. Every MVT byte is made by
PostgreSQL; Python only chooses the query. Points belong to exactly one tile: a point is in tile
(x, y) when west <= lon < east and south < lat <= north, so no incident is drawn twice at a tile
edge and the features of a tile can be compared with the incidents inside its bounds.

Incidents: below POINT_MIN_ZOOM (and for viewers at every zoom) the matching incidents are
aggregated on a grid of CELLS x CELLS cells per tile (32 px at MapLibre's 512 px tiles),
anchored at the world's corner so every cell lies inside one tile; a tile therefore never holds
more than CELLS² features. See docs/tiles.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
from sqlalchemy import (
    BindParameter,
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
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from app.analysis import hotspots as hotspot_analysis
from app.borders.models import BorderSegment
from app.db import DriverStatement, fetch_row
from app.errors import AppError, NotFound
from app.incidents.filters import IncidentFilter
from app.incidents.models import Incident
from app.jurisdictions.models import Jurisdiction
from app.posts.models import BorderPost

SRID_MERCATOR = 3857
WORLD_M = 20037508.342789244  # half the width of the Web Mercator world (π x 6 378 137 m)
EXTENT = 4096  # tile coordinate units across a tile
BUFFER = 64  # units kept beyond the tile edge for lines and polygons (no seams when drawn)
MAX_ZOOM = 22
LAYERS = ("incidents", "jurisdictions", "borders", "border_posts", "hotspots")

POINT_MIN_ZOOM = 10  # from here on, readers get one feature per incident ...
MAX_TILE_POINTS = 5_000  # ... unless the tile holds more (~450 kB): then DENSE_CELLS
CELLS = 16  # aggregate cells per tile side below POINT_MIN_ZOOM: 32 px on a 512 px tile
DENSE_CELLS = 64  # cells per side for an over-full tile at a point zoom: 8 px
# A viewer's cells are never smaller than the 16 x 16 grid of zoom 12 (611 m at the equator,
# ~570 m in Vietnam): about the finest hot-spot cell (0.5 km) viewers may already ask for.
VIEWER_MIN_CELL_M = 2 * WORLD_M / 2**12 / CELLS
SIMPLIFY_PER_TILE = 1024  # reference layers: simplify with tolerance (tile width / 1024), ½ px

HOTSPOT_CELL_KM = 5.0  # the hot-spot layer: Gi* for the default parameters of /analysis/hotspots
HOTSPOT_CACHE_SIZE = 8

# the data each layer is made of: a change to any of them changes the layer's version
DEPENDS: dict[str, tuple[str, ...]] = {
    "incidents": ("incidents", "jurisdictions"),  # scopes follow the boundaries too
    "hotspots": ("incidents", "jurisdictions", "borders"),
    "jurisdictions": ("jurisdictions",),
    "borders": ("borders",),
    "border_posts": ("border_posts",),
}


class InvalidTile(AppError):
    """A tile address that is not z/x/y with non-negative integers and z <= 22 (HTTP 400)."""

    title = "Invalid tile address"


@dataclass(frozen=True)
class Tile:
    """An XYZ tile and its bounds in Web Mercator metres and in degrees."""

    z: int
    x: int
    y: int

    @property
    def width_m(self) -> float:
        """Width (and height) of the tile in Web Mercator metres."""
        return 2 * WORLD_M / 2**self.z

    def mercator(self, pad_m: float = 0.0) -> tuple[float, float, float, float]:
        """xmin, ymin, xmax, ymax in EPSG:3857, widened by pad_m (clamped to the world)."""
        w = self.width_m
        xmin, ymax = -WORLD_M + self.x * w, WORLD_M - self.y * w
        return (
            max(-WORLD_M, xmin - pad_m),
            max(-WORLD_M, ymax - w - pad_m),
            min(WORLD_M, xmin + w + pad_m),
            min(WORLD_M, ymax + pad_m),
        )

    def lonlat(self, pad_m: float = 0.0) -> tuple[float, float, float, float]:
        """west, south, east, north in degrees."""
        return mercator_to_lonlat(self.mercator(pad_m))


def mercator_to_lonlat(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A Web Mercator box as west, south, east, north in degrees."""

    def lat(y: float) -> float:
        return math.degrees(math.atan(math.sinh(y / WORLD_M * math.pi)))

    return box[0] / WORLD_M * 180, lat(box[1]), box[2] / WORLD_M * 180, lat(box[3])


def tile_address(z: str, x: str, y: str) -> Tile:
    """Parse z/x/y: malformed, negative or z > 22 → InvalidTile (400); x or y beyond the
    2^z tiles of the zoom → NotFound (404)."""
    values = []
    for name, raw in (("z", z), ("x", x), ("y", y)):
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 8):
            raise InvalidTile(f"tile {name} must be a non-negative integer; got '{raw[:20]}'")
        values.append(int(raw))
    zz, xx, yy = values
    if zz > MAX_ZOOM:
        raise InvalidTile(f"zoom {zz} is beyond the deepest served ({MAX_ZOOM})", field="z")
    if xx >= 2**zz or yy >= 2**zz:
        raise NotFound(f"no tile {zz}/{xx}/{yy}: at zoom {zz}, x and y go from 0 to {2**zz - 1}")
    return Tile(zz, xx, yy)


# ---------------------------------------------------------------------------------------------
# versions


# every layer's counter and epoch as one JSON value: read alone, or beside a tile in the tile's
# statement (one snapshot)
VERSIONS_JSON: ColumnElement[Any] = literal_column(
    "(SELECT json_object_agg(layer, json_build_array(version, epoch)) FROM layer_version)"
)


@lru_cache(maxsize=4)
def _versions_statement(dialect: Dialect) -> DriverStatement:
    return DriverStatement(select(VERSIONS_JSON), dialect, {})


async def layer_versions(*, session: AsyncSession) -> dict[str, tuple[int, str]]:
    """Each layer's change counter and its database epoch (one tiny query, on the driver
    connection: a 304 answered from it costs no transaction)."""
    conn = await session.connection()
    row = await fetch_row(conn, _versions_statement(conn.dialect), {})
    assert row is not None  # one row, always
    return _versions(row[0])


def _versions(value: Any) -> dict[str, tuple[int, str]]:
    data = orjson.loads(value) if isinstance(value, str | bytes) else (value or {})
    return {str(k): (int(v[0]), str(v[1])) for k, v in data.items()}


def data_version(layer: str, versions: dict[str, tuple[int, str]], view: str = "") -> str:
    """The version token of a layer: epoch, the counters it depends on, and for incident layers
    a short tag of the viewer's scope (what a key may see can change without any data change,
    e.g. the cooperation distance)."""
    deps = DEPENDS[layer]
    epoch = versions[deps[0]][1]
    token = "-".join([epoch, *(str(versions[d][0]) for d in deps)])
    if view:
        token += "-" + hashlib.sha256(view.encode()).hexdigest()[:6]
    return token


def incident_view(filt: IncidentFilter, *, aggregate_only: bool, home: str = "") -> str:
    """What, besides the data, decides an incident tile's content for this principal."""
    s = filt.scope
    return f"{s.code}|{s.distance_m}|{int(aggregate_only)}|{home}"


# ---------------------------------------------------------------------------------------------
# SQL building blocks
#
# The incident statements depend on the filter only: everything that depends on the tile is a
# bound parameter, so a statement is built once per filter (an LRU) and a map panning with one
# filter builds none. Building the statement of a point tile cost ~3 ms of Python per tile,
# about ten times what PostgreSQL needs for a small tile (docs/performance.md).

Box = tuple[BindParameter[Any], BindParameter[Any], BindParameter[Any], BindParameter[Any]]


def _box(west: str, south: str, east: str, north: str) -> Box:
    """Four float parameters: a box in degrees."""
    return (
        bindparam(west, type_=Float),
        bindparam(south, type_=Float),
        bindparam(east, type_=Float),
        bindparam(north, type_=Float),
    )


TZ, TX, TY = (bindparam(n, type_=Integer) for n in ("tz", "tx", "ty"))
# the tile in degrees; a point is inside when west <= lon < east and south < lat <= north
TILE_BOX = _box("tw", "ts", "te", "tn")
# the aggregate grid: cell size (m), first and last column and row, and the cells' region
CELL = bindparam("cell", type_=Float)
IX0, IX1, IY0, IY1 = (bindparam(n, type_=Float) for n in ("ix0", "ix1", "iy0", "iy1"))
REGION_BOX = _box("rw", "rs", "re", "rn")
CAP = bindparam("cap", type_=Integer)
STATEMENT_CACHE = 128  # filters whose statements are kept (per kind)


def _mvt(rows: Select[Any], layer: str) -> Select[Any]:
    """ST_AsMVT over the rows (a `geom` column in tile coordinates plus properties)."""
    sub = rows.subquery("t")
    return select(func.ST_AsMVT(sub.table_valued(), layer, EXTENT, "geom")).where(
        sub.c.geom.is_not(None)
    )


async def _run(session: AsyncSession, stmt: Select[Any], params: dict[str, Any]) -> bytes:
    # on the session's connection (Core): the ORM's execution steps cost more Python than a
    # small tile costs PostgreSQL, and a tile has no ORM entities
    value = (await (await session.connection()).execute(stmt, params)).scalar()
    return bytes(value) if value else b""


def tile_params(tile: Tile) -> dict[str, Any]:
    """The values of the tile's parameters (TZ, TX, TY and TILE_BOX)."""
    w, s, e, n = tile.lonlat()
    return {"tz": tile.z, "tx": tile.x, "ty": tile.y, "tw": w, "ts": s, "te": e, "tn": n}


def _inside(geom: Any, box: tuple[Any, Any, Any, Any]) -> list[ColumnElement[bool]]:
    """Point in [west, east) x (south, north]: the GiST-friendly box test, then the exact
    half-open one, so a point on a shared edge belongs to one tile only."""
    w, s, e, n = box
    lon, lat = func.ST_X(geom), func.ST_Y(geom)
    return [
        geom.op("&&")(func.ST_MakeEnvelope(w, s, e, n, 4326)),
        lon >= w,
        lon < e,
        lat > s,
        lat <= n,
    ]


def _envelope() -> ColumnElement[Any]:
    return func.ST_TileEnvelope(TZ, TX, TY)


def _shape(geom: Any, tile: Tile) -> ColumnElement[Any]:
    """A line or polygon in tile coordinates: clipped in degrees to the buffered tile (so the
    projection never sees the poles), projected, simplified to about half a display pixel."""
    pad = tile.width_m * BUFFER / EXTENT
    w, s, e, n = tile.lonlat(pad)
    clipped = func.ST_ClipByBox2D(geom, func.ST_MakeEnvelope(w, s, e, n, 4326))
    projected = func.ST_Transform(clipped, SRID_MERCATOR)
    simple = func.ST_Simplify(projected, tile.width_m / SIMPLIFY_PER_TILE)
    return func.ST_AsMVTGeom(simple, _envelope(), EXTENT, BUFFER, True)


def _point(geom: Any) -> ColumnElement[Any]:
    return func.ST_AsMVTGeom(
        func.ST_Transform(geom, SRID_MERCATOR), _envelope(), EXTENT, BUFFER, True
    )


def _iso(ts: Any) -> ColumnElement[Any]:
    """A timestamp as the API writes it in JSON (ISO 8601, e.g. 2025-05-05T05:05:05+00:00):
    PostgreSQL's JSON text of it without the quotes (`#>> '{}'` parses the JSON again: ~1 µs
    more per feature, 10–15 % of a full z12 tile)."""
    return func.btrim(cast(func.to_json(ts), Text), '"')


# ---------------------------------------------------------------------------------------------
# incidents


def incident_tile_statement(
    filt: IncidentFilter, tile: Tile, *, aggregate_only: bool, cap: int
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
    return capped_points(filt), params | grid | {"cap": cap}


async def incidents_tile(
    *, session: AsyncSession, filt: IncidentFilter, tile: Tile, aggregate_only: bool
) -> tuple[bytes, dict[str, tuple[int, str]]]:
    """The incidents tile (see incident_tile_statement), MAX_TILE_POINTS at most, and the
    layer versions read in the same statement, so in the same snapshot as the tile: a version
    never names data older or newer than the tile sent with it.

    Run without parallel workers (fetch_row): on 2 cores, starting and feeding them made busy
    tiles slower than the same plan run by the leader alone (docs/decisions.md)."""
    made = incident_tile_statement(filt, tile, aggregate_only=aggregate_only, cap=MAX_TILE_POINTS)
    conn = await session.connection()
    if made is None:
        return b"", await layer_versions(session=session)
    stmt, params = made
    row = await fetch_row(conn, _driver_statement(stmt, conn.dialect, frozenset(params)), params)
    assert row is not None  # one row, always
    return (bytes(row[0]) if row[0] else b""), _versions(row[1])


@lru_cache(maxsize=3 * STATEMENT_CACHE)
def _driver_statement(
    stmt: Select[Any], dialect: Dialect, names: frozenset[str]
) -> DriverStatement:
    """The tile statement with the layer versions beside it, compiled once per filter and kind:
    run on the driver connection (app/db.py), ~1 ms less per tile than through SQLAlchemy."""
    return DriverStatement(
        select(stmt.scalar_subquery(), VERSIONS_JSON), dialect, dict.fromkeys(names)
    )


def _point_rows(source: Any) -> Select[Any]:
    """The point features of incidents (columns of `source`) in tile coordinates."""
    c = source.c
    return select(
        _point(c.geom).label("geom"),
        cast(c.id, Text).label("id"),
        c.category,
        c.severity,
        c.status,
        _iso(c.occurred_at).label("occurred_at"),
        literal(False, Boolean).label("cluster"),
    )


def _matching(filt: IncidentFilter) -> Select[Any]:
    i = Incident
    columns: list[Any] = [i.geom, i.id, i.category, i.severity, i.status, i.occurred_at]
    return select(*columns).where(*filt.conditions(), *_inside(i.geom, TILE_BOX))


@lru_cache(maxsize=STATEMENT_CACHE)
def capped_points(filt: IncidentFilter) -> Select[Any]:
    """The points tile, or the dense aggregates when the tile holds more than CAP incidents,
    in one statement: at most CAP + 1 matching rows are read (raw columns only) to decide;
    only the branch taken is evaluated (each is an InitPlan that runs when the CASE reaches
    it), so no feature is projected for nothing and no request costs a second round trip."""
    cand = _matching(filt).limit(CAP + 1).cte("cand").prefix_with("MATERIALIZED")
    empty = literal(b"", LargeBinary)
    mvt = func.coalesce(_mvt(_point_rows(cand), "incidents").scalar_subquery(), empty)
    dense = func.coalesce(_aggregates(filt, at_centre=False).scalar_subquery(), empty)
    n = select(func.count()).select_from(cand).scalar_subquery()
    return select(case((n <= CAP, mvt), else_=dense))


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
        .where(*filt.conditions(), *_inside(i.geom, REGION_BOX))
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
    position = func.ST_SetSRID(func.ST_MakePoint(px, py), SRID_MERCATOR)
    rows = select(
        func.ST_AsMVTGeom(position, _envelope(), EXTENT, BUFFER, True).label("geom"),
        g.count,
        g.severity_max,
        g.category,
        literal(True, Boolean).label("cluster"),
    )
    return _mvt(rows, "incidents")


# ---------------------------------------------------------------------------------------------
# reference layers


async def jurisdictions_tile(*, session: AsyncSession, tile: Tile, level: str | None) -> bytes:
    """Countries and provinces (the newest version of each code) with a `level` property;
    `level` restricts to one level."""
    j = Jurisdiction
    newest = (
        select(j.id).ext(distinct_on(j.code)).order_by(j.code, j.valid_from.desc().nulls_last())
    ).scalar_subquery()
    w, s, e, n = tile.lonlat(tile.width_m * BUFFER / EXTENT)
    rows = select(
        _shape(j.geom, tile).label("geom"),
        j.code,
        j.name,
        j.name_local,
        j.level,
        j.country,
        j.parent_code,
    ).where(j.id.in_(newest), j.geom.op("&&")(func.ST_MakeEnvelope(w, s, e, n, 4326)))
    if level:
        rows = rows.where(j.level == level)
    return await _run(session, _mvt(rows, "jurisdictions"), tile_params(tile))


async def borders_tile(*, session: AsyncSession, tile: Tile) -> bytes:
    """National border segments (one line feature per country pair)."""
    b = BorderSegment
    w, s, e, n = tile.lonlat(tile.width_m * BUFFER / EXTENT)
    rows = select(
        _shape(b.geom, tile).label("geom"),
        b.code,
        b.country_a,
        b.country_b,
        func.round(cast(b.length_km, Float)).label("length_km"),
    ).where(b.geom.op("&&")(func.ST_MakeEnvelope(w, s, e, n, 4326)))
    return await _run(session, _mvt(rows, "borders"), tile_params(tile))


async def border_posts_tile(*, session: AsyncSession, tile: Tile) -> bytes:
    """Border posts as points (each in exactly one tile)."""
    p = BorderPost
    rows = select(
        _point(p.geom).label("geom"),
        p.code,
        p.name,
        p.name_local,
        p.kind,
        p.agency,
        p.border,
        p.province_code,
        p.position_approximate,
    ).where(*_inside(p.geom, tile.lonlat()))
    return await _run(session, _mvt(rows, "border_posts"), tile_params(tile))


# ---------------------------------------------------------------------------------------------
# hot spots


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
    """A small LRU of computed grids per (filter, version) for one process; one computation
    per key at a time (concurrent requests for the same grid wait for the first)."""

    def __init__(self, size: int = HOTSPOT_CACHE_SIZE) -> None:
        self.size = size
        self.grids: OrderedDict[Hashable, HotspotGrid] = OrderedDict()
        self.locks: dict[Hashable, asyncio.Lock] = {}

    async def get(
        self, key: Hashable, session: AsyncSession, filt: IncidentFilter, home: str
    ) -> HotspotGrid:
        """The grid for `key`, computed with the hot-spot service when missing."""
        if key in self.grids:
            self.grids.move_to_end(key)
            return self.grids[key]
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self.grids:
                self.grids[key] = await hotspot_grid(session=session, filt=filt, home=home)
                while len(self.grids) > self.size:
                    old, _ = self.grids.popitem(last=False)
                    self.locks.pop(old, None)
        return self.grids[key]


GRID_TO_MERCATOR = text(
    f"""
    SELECT ST_AsBinary(g), ST_XMin(g), ST_YMin(g), ST_XMax(g), ST_YMax(g)
      FROM unnest(CAST(:geoms AS text[])) WITH ORDINALITY AS u(t, n),
           ST_Transform(ST_GeomFromGeoJSON(u.t), {SRID_MERCATOR}) AS g
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
        cell_km=HOTSPOT_CELL_KM,
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
        SELECT ST_AsMVTGeom(ST_GeomFromWKB(u.w, {SRID_MERCATOR}),
                            ST_TileEnvelope(:z, :x, :y), {EXTENT}, {BUFFER}, true) AS geom,
               u.c AS count, u.gz AS gi_z, u.gp AS gi_p, u.b AS bin
          FROM unnest(CAST(:w AS bytea[]), CAST(:c AS int[]), CAST(:gz AS float8[]),
                      CAST(:gp AS float8[]), CAST(:b AS int[])) AS u(w, c, gz, gp, b)
    ) t WHERE t.geom IS NOT NULL
    """
)


async def hotspots_tile(*, session: AsyncSession, grid: HotspotGrid, tile: Tile) -> bytes:
    """The cells of a computed grid that reach into the tile, with `count`, `gi_z`, `gi_p` and
    `bin`; only those cells travel to PostgreSQL."""
    xmin, ymin, xmax, ymax = tile.mercator(tile.width_m * BUFFER / EXTENT)
    b = grid.boxes
    hit = np.nonzero((b[:, 0] <= xmax) & (b[:, 2] >= xmin) & (b[:, 1] <= ymax) & (b[:, 3] >= ymin))
    idx = [int(k) for k in hit[0]]
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


# ---------------------------------------------------------------------------------------------
# TileJSON


async def bounds(*, session: AsyncSession, layer: str) -> list[float]:
    """West, south, east, north of a layer's data: the reference tables' own extent; for
    incidents and hot spots the loaded countries' extent widened by 0.25° (offshore incidents
    sit within 12 nautical miles of a province)."""
    table, pad = {
        "borders": ("border_segment", 0.0),
        "border_posts": ("border_post", 0.0),
        "jurisdictions": ("jurisdiction", 0.0),
    }.get(layer, ("jurisdiction", 0.25))
    row = (
        await session.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)"
                f" FROM (SELECT ST_Extent(geom) AS e FROM {table}) x"
            )
        )
    ).one()
    if row[0] is None:
        return [-180.0, -85.051129, 180.0, 85.051129]
    w, s, e, n = (float(v) for v in row)
    return [
        round(max(-180.0, w - pad), 6),
        round(max(-85.051129, s - pad), 6),
        round(min(180.0, e + pad), 6),
        round(min(85.051129, n + pad), 6),
    ]


@dataclass(frozen=True)
class LayerInfo:
    """What TileJSON says about a layer."""

    description: str
    minzoom: int
    maxzoom: int
    fields: dict[str, str]


INFO: dict[str, LayerInfo] = {
    "incidents": LayerInfo(
        "Incidents: one point per incident from zoom 10 (readers), aggregated below it and"
        " for viewer keys (`cluster` = true)",
        0,
        16,
        {
            "id": "String: incident UUID (points only)",
            "category": "String: category code; for an aggregate the most frequent",
            "severity": "Number: 1 to 5 (points only)",
            "status": "String: lifecycle status (points only)",
            "occurred_at": "String: ISO 8601 time (points only)",
            "count": "Number: incidents in the aggregate (aggregates only)",
            "severity_max": "Number: highest severity in the aggregate (aggregates only)",
            "cluster": "Boolean: true for an aggregate, false for an incident",
        },
    ),
    "jurisdictions": LayerInfo(
        "Countries and provinces (newest boundary of each code)",
        0,
        12,
        {
            "code": "String: ISO 3166 code",
            "name": "String",
            "name_local": "String",
            "level": "String: country or province",
            "country": "String: ISO 3166-1 alpha-3",
            "parent_code": "String",
        },
    ),
    "borders": LayerInfo(
        "National border segments per country pair",
        0,
        12,
        {
            "code": "String: e.g. VNM-LAO",
            "country_a": "String",
            "country_b": "String",
            "length_km": "Number",
        },
    ),
    "border_posts": LayerInfo(
        "Border gates, border-guard stations, police, customs and coast-guard posts",
        0,
        14,
        {
            "code": "String",
            "name": "String",
            "name_local": "String",
            "kind": "String",
            "agency": "String",
            "border": "String: border segment code",
            "province_code": "String",
            "position_approximate": "Boolean",
        },
    ),
    "hotspots": LayerInfo(
        f"Getis-Ord Gi* hot and cold spots: {HOTSPOT_CELL_KM:g} km hexagons over the border"
        " zone (the defaults of /analysis/hotspots)",
        5,
        12,
        {
            "count": "Number: matching incidents in the cell",
            "gi_z": "Number: Gi* z-score",
            "gi_p": "Number: two-sided p-value",
            "bin": "Number: +3/+2/+1 hot (99/95/90 %), 0, -1/-2/-3 cold",
        },
    ),
}


def tilejson(*, layer: str, url: str, version: str, bounds: list[float]) -> dict[str, Any]:
    """A TileJSON 3.0.0 document for one layer."""
    info = INFO[layer]
    return {
        "tilejson": "3.0.0",
        "name": f"borderwatch {layer}",
        "description": info.description,
        "tiles": [url],
        "scheme": "xyz",
        "minzoom": info.minzoom,
        "maxzoom": info.maxzoom,
        "bounds": bounds,
        "center": [
            round((bounds[0] + bounds[2]) / 2, 6),
            round((bounds[1] + bounds[3]) / 2, 6),
            max(info.minzoom, 5),
        ],
        "vector_layers": [
            {
                "id": layer,
                "description": info.description,
                "minzoom": info.minzoom,
                "maxzoom": info.maxzoom,
                "fields": info.fields,
            }
        ],
        "data_version": version,
    }
