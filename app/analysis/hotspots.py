"""Hot spots: Getis-Ord Gi* of the incidents on a hexagonal grid over a study area.

Everything metric happens in WGS 84 / UTM zone 48N (EPSG:32648): the zone's central meridian
(105°E) runs through Vietnam, so within the country (102°E to 109.5°E) its scale factor stays
between 0.9996 and 1.0026: lengths are true to 0.3 % and areas to 0.6 %, hexagons keep their
shape, and PostGIS transforms to it fast (a registered SRID; a custom equal-area PROJ string is
re-initialised on every call). See docs/hotspots.md.

The grid and the counts are made in PostgreSQL; Gi* is computed with numpy
(app/analysis/gistar.py: it needs the counts of all cells at once); the Features' geometries are
GeoJSON text made by PostgreSQL and joined as text, never parsed. DBSCAN clusters:
app/analysis/clusters.py.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from sqlalchemy import (
    Float,
    Integer,
    LargeBinary,
    Select,
    Subquery,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.analysis import gistar, snapshot
from app.errors import InvalidInput
from app.geo.spatial import SRID_UTM48N, SRID_WGS84, overlaps_bbox
from app.incidents.filters import IncidentFilter, parse_bbox
from app.incidents.models import Incident
from app.tiles import versions

MIN_CELL_KM, MAX_CELL_KM = 0.5, 100.0
MAX_CELLS = 50_000
BORDER_ZONE_KM = 50.0
BORDER_ZONE = "border-zone"
SQRT3 = math.sqrt(3.0)


@dataclass(frozen=True)
class StudyArea:
    """The area a grid covers, in EPSG:32648, with its extent in lon/lat."""

    label: str
    wkb: bytes
    area_m2: float
    perimeter_m: float
    extent: tuple[float, float, float, float]


def hexagon_area_m2(cell_km: float) -> float:
    """Area of one (unclipped) cell: a hexagon whose opposite edges are cell_km apart."""
    return SQRT3 / 2 * (cell_km * 1000) ** 2


def estimated_cells(area_m2: float, perimeter_m: float, cell_km: float) -> int:
    """About how many cells a grid over an area has: the whole cells it needs plus the cut
    ones along its edge (0.6 per cell spacing of perimeter, measured on the border zone)."""
    return math.ceil(area_m2 / hexagon_area_m2(cell_km) + 0.6 * perimeter_m / (cell_km * 1000))


def check_cell_km(cell_km: float) -> None:
    """cell_km within [0.5, 100] (InvalidInput otherwise)."""
    if not (math.isfinite(cell_km) and MIN_CELL_KM <= cell_km <= MAX_CELL_KM):
        raise InvalidInput(
            f"cell_km must be between {MIN_CELL_KM:g} and {MAX_CELL_KM:g} km; got {cell_km:g}",
            field="cell_km",
        )


HOME_CTE = """
    home AS (
        SELECT geom FROM jurisdiction WHERE level = 'country' AND code = :home
        ORDER BY valid_from DESC NULLS LAST LIMIT 1
    )"""

# Each query yields one polygonal geometry `g` in EPSG:32648 (possibly empty).
BORDER_ZONE_SQL = f"""
    WITH {HOME_CTE}, zone AS (
        SELECT ST_Buffer(ST_Transform(ST_Collect(s.geom), {SRID_UTM48N}),
                         CAST(:zone_m AS float8), 'quad_segs=32') AS g
          FROM border_segment s
         WHERE s.country_a = :home OR s.country_b = :home
    )
    SELECT ST_Intersection(zone.g, ST_Transform(home.geom, {SRID_UTM48N})) AS g FROM zone, home
"""
JURISDICTION_SQL = f"""
    SELECT ST_Transform(geom, {SRID_UTM48N}) AS g FROM jurisdiction WHERE code = :code
    ORDER BY valid_from DESC NULLS LAST LIMIT 1
"""
# the box is segmentized (0.01°) so that its edges stay parallels and meridians once projected
BBOX_SQL = f"""
    WITH {HOME_CTE}
    SELECT ST_Transform(ST_Intersection(
               ST_Segmentize(ST_MakeEnvelope(:x1, :y1, :x2, :y2, {SRID_WGS84}), 0.01), home.geom),
           {SRID_UTM48N}) AS g
      FROM home
"""
AREA_SQL = f"""
    WITH a AS ({{inner}}), p AS (SELECT ST_CollectionExtract(ST_MakeValid(g), 3) AS g FROM a)
    SELECT ST_AsBinary(g), ST_Area(g), ST_Perimeter(g),
           ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)
      FROM p, ST_Transform(ST_Envelope(g), {SRID_WGS84}) AS e
     WHERE NOT ST_IsEmpty(g) AND ST_Area(g) > 0
"""


async def study_area(*, session: AsyncSession, area: str, home: str) -> StudyArea:
    """The study area named by `area`: `border-zone`, `jurisdiction:{code}` or
    `bbox:minLon,minLat,maxLon,maxLat`, always within the home country."""
    params: dict[str, Any] = {"home": home}
    if area == BORDER_ZONE:
        inner, params["zone_m"] = BORDER_ZONE_SQL, BORDER_ZONE_KM * 1000
    elif area.startswith("jurisdiction:"):
        code = area.removeprefix("jurisdiction:")
        country = (
            await session.execute(
                text(
                    "SELECT country FROM jurisdiction WHERE code = :code"
                    " ORDER BY valid_from DESC NULLS LAST LIMIT 1"
                ),
                {"code": code},
            )
        ).scalar()
        if country is None:
            raise InvalidInput(f"unknown jurisdiction code '{code[:40]}'", field="area")
        if country != home:
            raise InvalidInput(
                f"jurisdiction '{code}' is not in {home}; hot spots cover {home} only",
                field="area",
            )
        inner, params = JURISDICTION_SQL, {"code": code}
    elif area.startswith("bbox:"):
        try:
            x1, y1, x2, y2 = parse_bbox(area.removeprefix("bbox:"))
        except InvalidInput as exc:
            raise InvalidInput(f"area {exc.detail}", field="area") from exc
        inner = BBOX_SQL
        params |= {"x1": x1, "y1": y1, "x2": x2, "y2": y2}
    else:
        raise InvalidInput(
            f"area '{area[:60]}' is not one of border-zone, jurisdiction:CODE,"
            " bbox:minLon,minLat,maxLon,maxLat",
            field="area",
        )
    row = (await session.execute(text(AREA_SQL.format(inner=inner)), params)).one_or_none()
    if row is None:
        raise InvalidInput(f"area '{area[:60]}' has no part inside {home}", field="area")
    wkb, area_m2, perimeter_m, *extent = row
    x1, y1, x2, y2 = (float(v) for v in extent)
    return StudyArea(area, bytes(wkb), float(area_m2), float(perimeter_m), (x1, y1, x2, y2))


# Cells: the hexagons of ST_HexagonGrid (anchored at the projection's origin, so a cell keeps
# its (i, j) between requests) that overlap the study area, clipped to it, and whether the
# clipped cell is the whole hexagon. The grid is made per subdivided piece so that only
# hexagons near the area are generated. A cut cell also comes back as EWKB: the counting
# statement tests the incidents of those cells (and only those) against it.
CELLS_SQL = f"""
    WITH study AS (SELECT ST_GeomFromWKB(:study, {SRID_UTM48N}) AS g),
    piece AS (SELECT p.g FROM study, ST_Subdivide(study.g, 64) AS p(g)),
    part AS (
        SELECT h.i, h.j,
               CASE WHEN ST_Covers(piece.g, h.geom) THEN h.geom
                    ELSE ST_Intersection(piece.g, h.geom) END AS g
          FROM piece, ST_HexagonGrid(CAST(:edge AS float8), piece.g) AS h
         WHERE ST_Intersects(piece.g, h.geom)
    ), merged AS (
        SELECT i, j, ST_CollectionExtract(ST_Union(g), 3) AS g FROM part GROUP BY i, j
    ), cell AS (
        SELECT i, j, g, ST_Area(g) >= CAST(:whole_m2 AS float8) AS whole
          FROM merged
         WHERE NOT ST_IsEmpty(g) AND ST_Area(g) > 0
    )
    SELECT i, j,
           ST_AsGeoJSON(ST_ForcePolygonCCW(ST_Transform(g, {SRID_WGS84})), 6),
           ST_X(c), ST_Y(c),
           CASE WHEN whole THEN NULL ELSE ST_AsEWKB(g) END
      FROM cell,
           ST_Transform(ST_SetSRID(ST_MakePoint(
               1.5 * CAST(:edge AS float8) * i,
               CAST(:spacing AS float8) * (j + 0.5 * (abs(i) % 2))), {SRID_UTM48N}),
                        {SRID_WGS84}) AS c
     ORDER BY i, j
"""
# a clipped cell this close to the hexagon's area is the whole hexagon (floating-point slack of
# the union of its pieces; 1e-7 of a 5 km cell is 2 mm²)
WHOLE_SLACK = 1e-7
# grids kept per process (they depend on reference data only); the largest allowed grid, 50 000
# cells, holds ~15 MB of GeoJSON text, so at most ~120 MB per process
CELLS_CACHE = 8


@dataclass(frozen=True)
class Grid:
    """The cells over a study area, ordered by (i, j): their columns and rows, the clipped cells
    as GeoJSON text (lon/lat), their centres, and the EWKB of each cut cell (None: whole)."""

    cells: list[tuple[int, int]]
    geojson: list[str]
    centres: list[tuple[float, float]]
    cut: list[bytes | None]


_grids: OrderedDict[tuple[bytes, float], Grid] = OrderedDict()


async def grid(
    *, session: AsyncSession, study: StudyArea, cell_km: float, cached: bool = True
) -> Grid:
    """The grid over the study area (one statement); the last CELLS_CACHE grids are kept,
    keyed by the study area's own geometry, so a changed boundary makes a new grid
    (`cached=False`: build it anew)."""
    key = (hashlib.sha256(study.wkb).digest(), cell_km)
    if cached and key in _grids:
        _grids.move_to_end(key)
        return _grids[key]
    edge = cell_km * 1000 / SQRT3
    params = {
        "study": study.wkb,
        "edge": edge,
        "spacing": cell_km * 1000,
        "whole_m2": hexagon_area_m2(cell_km) * (1 - WHOLE_SLACK),
    }
    rows = (await session.execute(text(CELLS_SQL), params)).all()
    made = Grid(
        cells=[(int(r[0]), int(r[1])) for r in rows],
        geojson=[str(r[2]) for r in rows],
        centres=[(float(r[3]), float(r[4])) for r in rows],
        cut=[None if r[5] is None else bytes(r[5]) for r in rows],
    )
    _grids[key] = made
    while len(_grids) > CELLS_CACHE:
        _grids.popitem(last=False)
    return made


def _fenced(stmt: Select[Any], name: str) -> Subquery:
    """`stmt` as a subquery PostgreSQL evaluates once per row and does not merge into the
    outer query (it has an OFFSET): each expression above it reads its columns instead of
    repeating the expressions they are made of. Unlike a CTE it still runs in parallel workers,
    but only because the OFFSET is written as the string '0': PostgreSQL reads that as a bigint
    constant, whereas a plain `OFFSET 0` is an int-to-bigint cast to the planner, which then
    keeps the subquery out of parallel plans (it cannot prove the offset is zero)."""
    return stmt.offset(literal_column("'0'")).subquery(name)


def _hex_index(points: Subquery, edge: float) -> Subquery:
    """Columns i, j, x, y for each row (x, y) of `points`: the ST_HexagonGrid cell
    (flat-topped hexagons with edge `edge`, centred at x = 1.5·edge·i,
    y = √3·edge·(j + ½·(|i| mod 2))) that contains the point — the nearest cell centre, by
    rounding cube coordinates. Other columns of `points` (an incident's id) are carried."""
    x, y = points.c.x, points.c.y
    carried = [c.name for c in points.c if c.name not in ("x", "y")]
    frac = _fenced(
        select(
            x,
            y,
            *(points.c[n] for n in carried),
            (x * (2.0 / 3.0) / edge).label("q"),
            ((x * (-1.0 / 3.0) + y * (SQRT3 / 3.0)) / edge).label("r"),
        ),
        "frac",
    )
    q, r = frac.c.q, frac.c.r
    s = -q - r
    rounded = _fenced(
        select(
            frac.c.x,
            frac.c.y,
            *(frac.c[n] for n in carried),
            func.round(q).label("rq"),
            func.round(r).label("rr"),
            func.round(s).label("rs"),
            func.abs(func.round(q) - q).label("dq"),
            func.abs(func.round(r) - r).label("dr"),
            func.abs(func.round(s) - s).label("ds"),
        ),
        "rounded",
    )
    c = rounded.c
    q_fixed = (c.dq > c.dr) & (c.dq > c.ds)
    qi = _fenced(
        select(
            case((q_fixed, -c.rr - c.rs), else_=c.rq).label("qi"),
            case((q_fixed, c.rr), (c.dr > c.ds, -c.rq - c.rs), else_=c.rr).label("ri"),
            c.x,
            c.y,
            *(c[n] for n in carried),
        ),
        "axial",
    ).c
    # axial (q, r) to the grid's offset columns: i = q, j = r + floor(q / 2)
    return select(
        cast(qi.qi, Integer).label("i"),
        cast(qi.ri + func.floor(qi.qi / 2.0), Integer).label("j"),
        qi.x,
        qi.y,
        *(qi[n] for n in carried),
    ).subquery("indexed")


def _assigned(
    filt: IncidentFilter,
    study: StudyArea,
    grid: Grid,
    cell_km: float,
    *,
    ids: bool = False,
    only: Select[Any] | None = None,
) -> Subquery:
    """Each matching incident in the study area's box and its cell (i, j; with `ids`, its id
    too; with `only`, a select of ids, those incidents alone): projected once, given its cell
    by arithmetic, and tested against its clipped cell only where the area's edge cuts it (a
    small polygon, passed as a parameter): testing every incident against the whole area
    (thousands of vertices) took most of the time (docs/performance.md). An incident in the
    box but in no cell of the area keeps the (i, j) of a cell the grid does not hold."""
    edge = cell_km * 1000 / SQRT3
    i = Incident
    where = [*filt.conditions(), overlaps_bbox(i.geom, _padded(study.extent))]
    if only is not None:
        where.append(i.id.in_(only))
    projected = _fenced(
        select(func.ST_Transform(i.geom, SRID_UTM48N).label("xy"), *([i.id] if ids else [])).where(
            *where
        ),
        "projected",
    )
    xy = projected.c.xy
    points = _fenced(
        select(
            cast(func.ST_X(xy), Float).label("x"),
            cast(func.ST_Y(xy), Float).label("y"),
            *([projected.c.id] if ids else []),
        ),
        "points",
    )
    indexed = _hex_index(points, edge)
    cut = [(c, w) for c, w in zip(grid.cells, grid.cut, strict=True) if w is not None]
    arrays = (
        func.unnest(
            bindparam("cut_i", [c[0] for c, _ in cut], type_=ARRAY(Integer)),
            bindparam("cut_j", [c[1] for c, _ in cut], type_=ARRAY(Integer)),
            bindparam("cut_g", [w for _, w in cut], type_=ARRAY(LargeBinary)),
        )
        .table_valued("i", "j", "w")
        .render_derived("cut")
    )
    edges = _fenced(
        select(arrays.c.i, arrays.c.j, func.ST_GeomFromEWKB(arrays.c.w).label("g")), "edges"
    )
    point = func.ST_SetSRID(func.ST_MakePoint(indexed.c.x, indexed.c.y), SRID_UTM48N)
    return (
        select(indexed.c.i, indexed.c.j, *([indexed.c.id] if ids else []))
        .select_from(indexed)
        .outerjoin(edges, (edges.c.i == indexed.c.i) & (edges.c.j == indexed.c.j))
        .where(edges.c.g.is_(None) | func.ST_Intersects(edges.c.g, point))
        .subquery("assigned")
    )


async def cell_counts(
    *, session: AsyncSession, filt: IncidentFilter, study: StudyArea, grid: Grid, cell_km: float
) -> npt.NDArray[np.int64]:
    """The matching incidents in each cell of the grid (in the grid's order): one statement
    that PostgreSQL can run in parallel workers (_assigned, counted per cell)."""
    a = _assigned(filt, study, grid, cell_km)
    stmt = select(a.c.i, a.c.j, func.count()).group_by(a.c.i, a.c.j)
    position = {c: n for n, c in enumerate(grid.cells)}
    counts = np.zeros(len(grid.cells), dtype=np.int64)
    for ci, cj, n in (await session.execute(stmt)).all():
        k = position.get((int(ci), int(cj)))
        if k is not None:  # candidates in the area's box but in no cell of the area are not
            counts[k] = int(n)
    return counts


# ---- counts kept across writes -----------------------------------------------------------
# The hot-spot tiles' grid (app/tiles/hotspots.py) keeps, besides the counts, which incident is
# counted in which cell (CellMembers). After a write the change log names the changed ids
# (app/analysis/snapshot.py, `changes`): they leave their cells, and their cells now are found
# by the same statement restricted to them (members_delta), instead of counting 1 M again.

MEMBER = np.dtype([("id", "S16"), ("i", ">i4"), ("j", ">i4")])


@dataclass(frozen=True)
class CellMembers:
    """The counted incidents of one (filter, grid) at incidents `version`: their ids (sorted)
    and cells (positions in the grid's order), the counts per cell, and the lineage (the
    versions of what the grid is made of) that a delta must share."""

    ids: np.ndarray  # S16, sorted
    cell: np.ndarray  # int32
    counts: npt.NDArray[np.int64]
    version: int
    lineage: str
    from_delta: bool = False  # made by members_delta


def _packed_members(a: Subquery) -> Any:
    """SQL: the rows (id, i, j) of an _assigned(ids=True) subquery packed into one bytea
    (MEMBER), read with one numpy view."""
    packed = func.uuid_send(a.c.id).op("||")(func.int4send(a.c.i)).op("||")(func.int4send(a.c.j))
    return select(
        func.coalesce(func.string_agg(packed, literal_column("''::bytea")),
                      literal_column("''::bytea"))
    ).scalar_subquery()  # fmt: skip


def _placed(grid: Grid, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The packed members' ids and grid positions, those in no cell of the grid left out."""
    rows = np.frombuffer(data, dtype=MEMBER)
    cells = np.array(grid.cells, dtype=np.int64).reshape(-1, 2)
    keys = cells[:, 0] * (1 << 32) + cells[:, 1]
    order = np.argsort(keys)
    wanted = rows["i"].astype(np.int64) * (1 << 32) + rows["j"].astype(np.int64)
    at = np.minimum(np.searchsorted(keys[order], wanted), max(len(keys) - 1, 0))
    held = (keys[order][at] == wanted) if len(keys) else np.zeros(len(rows), dtype=bool)
    return rows["id"][held], order[at[held]].astype(np.int32)


def members_lineage(found: Any) -> str:
    """What a grid's members depend on besides the incidents: boundaries and borders."""
    return versions.token(("jurisdictions", "borders"), found)


async def members(
    *, session: AsyncSession, filt: IncidentFilter, study: StudyArea, grid: Grid, cell_km: float
) -> CellMembers:
    """Every counted incident and its cell, with the versions, in one statement."""
    a = _assigned(filt, study, grid, cell_km, ids=True)
    row = (await session.execute(select(versions.VERSIONS_JSON, _packed_members(a)))).one()
    found = versions.parse(row[0])
    ids, cell = _placed(grid, bytes(row[1]))
    order = np.argsort(ids, kind="stable")
    return CellMembers(
        ids=ids[order],
        cell=cell[order],
        counts=np.bincount(cell, minlength=len(grid.cells)).astype(np.int64),
        version=found["incidents"][0],
        lineage=members_lineage(found),
    )


async def members_delta(
    *,
    session: AsyncSession,
    previous: CellMembers,
    filt: IncidentFilter,
    study: StudyArea,
    grid: Grid,
    cell_km: float,
) -> CellMembers | None:
    """`previous` (of this filter and grid) brought to the versions of now from the change
    log, or None when it cannot be (then count every incident again)."""
    ch = snapshot.changes()
    a = _assigned(filt, study, grid, cell_km, ids=True, only=ch.ids())
    stmt = select(*ch.head(), _packed_members(a).label("rows"))
    row = (await session.execute(stmt, snapshot.delta_params(previous.version))).one()
    found = versions.parse(row[0])
    if (
        not snapshot.delta_usable(row)
        or members_lineage(found) != previous.lineage
        or found["incidents"][0] < previous.version
    ):
        return None
    ids, cell, counts = previous.ids, previous.cell, previous.counts.copy()
    gone = np.frombuffer(bytes(row.gone), dtype="S16")
    at = np.minimum(np.searchsorted(ids, gone), max(len(ids) - 1, 0))
    hit = (ids[at] == gone) if len(ids) else np.zeros(len(gone), dtype=bool)
    drop = at[hit]
    counts -= np.bincount(cell[drop], minlength=len(counts)).astype(np.int64)
    ids, cell = np.delete(ids, drop), np.delete(cell, drop)
    new_ids, new_cell = _placed(grid, bytes(row.rows))
    counts += np.bincount(new_cell, minlength=len(counts)).astype(np.int64)
    where = np.searchsorted(ids, new_ids)
    return CellMembers(
        ids=np.insert(ids, where, new_ids),
        cell=np.insert(cell, where, new_cell),
        counts=counts,
        version=found["incidents"][0],
        lineage=previous.lineage,
        from_delta=True,
    )


def gi_bins(
    counts: npt.NDArray[np.int64], cells: Grid, *, fdr: bool
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Gi* z-scores, two-sided p-values and confidence bins of the counts over the grid."""
    z = gistar.gi_star(counts, gistar.hex_neighbours(cells.cells))
    p = gistar.two_sided_p(z)
    return z, p, gistar.confidence_bins(z, p, fdr=fdr)


def _padded(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    pad = 1e-4  # degrees (~11 m): the projected area's edges bulge slightly between vertices
    return box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad


def _too_many(area: str, cell_km: float, study: StudyArea, cells: int) -> InvalidInput:
    # the cell size whose whole cells alone would reach the maximum, rounded up to 10 m
    smallest = math.ceil(math.sqrt(study.area_m2 / (SQRT3 / 2) / MAX_CELLS) / 10) / 100
    return InvalidInput(
        f"cell_km={cell_km:g} over '{area[:60]}' ({study.area_m2 / 1e6:,.0f} km²) makes"
        f" about {cells:,} cells; at most {MAX_CELLS:,} are allowed: use cell_km >"
        f" {smallest:g} or a smaller area",
        field="cell_km",
        max_cells=MAX_CELLS,
        estimated_cells=cells,
    )


async def hotspots(
    *,
    session: AsyncSession,
    filt: IncidentFilter,
    area: str,
    cell_km: float,
    fdr: bool,
    home: str,
) -> bytes:
    """Gi* hot and cold spots of the matching incidents on a hexagonal grid over the study
    area, as a FeatureCollection of the clipped cells."""
    check_cell_km(cell_km)
    study = await study_area(session=session, area=area, home=home)
    estimate = estimated_cells(study.area_m2, study.perimeter_m, cell_km)
    if estimate > MAX_CELLS:
        raise _too_many(area, cell_km, study, estimate)
    cells = await grid(session=session, study=study, cell_km=cell_km)
    if len(cells.cells) > MAX_CELLS:  # the estimate was low: refuse all the same
        raise _too_many(area, cell_km, study, len(cells.cells))
    counts = await cell_counts(session=session, filt=filt, study=study, grid=cells, cell_km=cell_km)
    z, p, bins = gi_bins(counts, cells, fdr=fdr)
    parts: list[bytes] = []
    for n, ((i, j), shape, (lon, lat)) in enumerate(
        zip(cells.cells, cells.geojson, cells.centres, strict=True)
    ):
        props = {
            "count": int(counts[n]),
            "gi_z": None if math.isnan(z[n]) else float(z[n]),
            "gi_p": None if math.isnan(p[n]) else float(p[n]),
            "bin": int(bins[n]),
            "centre": [round(lon, 6), round(lat, 6)],
        }
        parts.append(
            b'{"type":"Feature","id":"%d:%d","geometry":%s,"properties":%s}'
            % (i, j, shape.encode(), orjson.dumps(props))
        )
    head = {
        "type": "FeatureCollection",
        "area": area,
        "cell_km": cell_km,
        "fdr": fdr,
        "cells": len(cells.cells),
        "incidents": int(counts.sum()),
        "scope": filt.scope.name,
        "crs_metric": f"EPSG:{SRID_UTM48N}",
        "neighbours": f"centres within {gistar.BAND:g} x cell spacing, the cell itself included",
    }
    return orjson.dumps(head)[:-1] + b',"features":[' + b",".join(parts) + b"]}"
