"""SRIDs, the length of a degree, and the spatial predicates built on them, in one place.

Geometries are stored in lon/lat (EPSG:4326). A distance on the ground becomes degrees only for
an index prefilter or a drawing tolerance; every answer about distance comes from a geodesic
test on the WGS 84 spheroid. The degree bounds (docs/decisions.md, "Near a line"): no degree in
any direction is longer than M_PER_DEG_MAX, and none shorter than a degree of latitude at the
equator or one of longitude at the highest latitude involved.
"""

from __future__ import annotations

import math
from typing import Any

import shapely
from sqlalchemy import ColumnElement, LargeBinary, and_, func, literal, true

SRID_WGS84 = 4326  # storage: lon/lat
SRID_WEB_MERCATOR = 3857  # vector tiles
SRID_UTM48N = 32648  # metric work (hot spots, clusters): WGS 84 / UTM zone 48N

# One degree on the ground (WGS 84 spheroid), in metres.
M_PER_DEG_LAT_MIN = 110_574.0  # latitude at the equator: no degree of latitude is shorter
M_PER_DEG_LON_EQUATOR = 111_320.0  # longitude at the equator; × cos(latitude) elsewhere
M_PER_DEG_MAX = 111_700.0  # latitude at the poles (111 694 m); no degree is longer
# Every bound is widened (or narrowed) by 1 %: rounding must never lose a point.
MARGIN = 1.01
# Nearer the poles a degree of longitude is too short to bound anything: no box at all.
TOP_LAT = 89.9

BBox = tuple[float, float, float, float]
_WKB = LargeBinary()


def point(lon: Any, lat: Any) -> ColumnElement[Any]:
    """SQL: the point (lon, lat) in EPSG:4326 (numbers or SQL expressions)."""
    return func.ST_SetSRID(func.ST_MakePoint(lon, lat), SRID_WGS84)


def literal_geometry(geom: Any) -> ColumnElement[Any]:
    """SQL: a shapely geometry (lon/lat) as a bound WKB parameter in EPSG:4326."""
    return func.ST_GeomFromWKB(literal(shapely.to_wkb(geom), _WKB), SRID_WGS84)


def envelope(bbox: BBox) -> ColumnElement[Any]:
    """SQL: the box (west, south, east, north) in EPSG:4326."""
    return func.ST_MakeEnvelope(*bbox, SRID_WGS84)


def intersects_bbox(col: Any, bbox: BBox) -> ColumnElement[bool]:
    """SQL: `col` intersects the box (exact, index-assisted)."""
    return func.ST_Intersects(col, envelope(bbox))


def overlaps_bbox(col: Any, bbox: BBox) -> ColumnElement[bool]:
    """SQL: the bounding box of `col` overlaps the box (`&&`: the index alone). A prefilter,
    never the answer: the boxes it compares are single precision, rounded outward, so a point
    ~1e-6° outside the box passes (intersects_bbox is exact)."""
    result: ColumnElement[bool] = col.op("&&")(envelope(bbox))
    return result


def tolerance_degrees(tolerance_m: float) -> float:
    """A drawing tolerance in degrees (simplification for maps): metres at the equator, not a
    distance anyone measures."""
    return tolerance_m / M_PER_DEG_LON_EQUATOR


def inner_degrees(metres: float) -> float:
    """A planar distance in degrees within which every point is surely within `metres` on
    the ground: no degree in any direction is longer than M_PER_DEG_MAX."""
    return metres / (M_PER_DEG_MAX * MARGIN)


def _lat_reach(metres: float) -> float:
    """How far `metres` can reach in latitude, in degrees (generously)."""
    return metres / M_PER_DEG_LAT_MIN * MARGIN


def box_around(bounds: BBox, metres: float) -> BBox | None:
    """A lon/lat box that surely contains everything within `metres` on the ground of the box
    `bounds`; None when no box can (it would reach a pole or all the way round)."""
    x1, y1, x2, y2 = bounds
    dlat = _lat_reach(metres)
    top = max(abs(y1), abs(y2)) + dlat
    if top >= TOP_LAT:
        return None
    dlon = metres / (M_PER_DEG_LON_EQUATOR * math.cos(math.radians(top))) * MARGIN
    if dlon >= 180:
        return None
    west, east = max(-180.0, x1 - dlon), min(180.0, x2 + dlon)
    return west, max(-90.0, y1 - dlat), east, min(90.0, y2 + dlat)


def outer_degrees(geom: Any, metres: Any) -> ColumnElement[Any]:
    """SQL: a planar distance in degrees from `geom` beyond which no point is within
    `metres` on the ground: the shortest degree in the band of latitudes involved."""
    reach = func.greatest(func.abs(func.ST_YMin(geom)), func.abs(func.ST_YMax(geom)))
    top = func.least(TOP_LAT, reach + metres / M_PER_DEG_LAT_MIN * MARGIN)
    shortest = func.least(M_PER_DEG_LAT_MIN, M_PER_DEG_LON_EQUATOR * func.cos(func.radians(top)))
    result: ColumnElement[Any] = metres * MARGIN / shortest
    return result


def outer_degrees_sql(geom: str, metres: str) -> str:
    """outer_degrees as SQL text, for statements written as text (`geom` and `metres` are
    SQL expressions)."""
    reach = f"greatest(abs(ST_YMin({geom})), abs(ST_YMax({geom})))"
    top = f"least({TOP_LAT}, {reach} + ({metres}) / {M_PER_DEG_LAT_MIN} * {MARGIN})"
    shortest = f"least({M_PER_DEG_LAT_MIN}, {M_PER_DEG_LON_EQUATOR} * cos(radians({top})))"
    return f"(({metres}) * {MARGIN} / {shortest})"


def within_metres(col: Any, near: Any, metres: float) -> ColumnElement[bool]:
    """SQL: `col` within `metres` of the shapely geometry `near`, geodesic (WGS 84 spheroid):
    the GiST index answers a box that surely contains the buffer, ST_DWithin decides."""
    box = box_around(near.bounds, metres)
    prefilter = overlaps_bbox(col, box) if box is not None else true()
    geodesic = func.ST_DWithin(func.geography(col), func.geography(literal_geometry(near)), metres)
    return and_(prefilter, geodesic)


def may_be_within_metres(col: Any, geom: Any, metres: float) -> ColumnElement[bool]:
    """SQL, index-assisted: `col` may be within `metres` of the SQL geometry `geom` on the
    ground (planar; beyond outer_degrees it surely is not)."""
    return func.ST_DWithin(col, geom, outer_degrees(geom, metres))


def within_metres_of(col: Any, geom: Any, metres: float) -> ColumnElement[bool]:
    """SQL: `col` within `metres` of the SQL geometry `geom` on the ground (geodesic), the
    geodesic test run only where the planar inner bound cannot decide (most points near a
    line are surely in, and the planar test is much the cheaper)."""
    surely = func.ST_DWithin(col, geom, inner_degrees(metres))
    return surely | func.ST_DWithin(func.geography(col), func.geography(geom), metres)
