"""Nearby incidents (true geodesic radius) and nearest border posts, index-assisted."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import ColumnElement, Text, cast, func, literal, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from app.geo import geojson
from app.incidents.filters import IncidentFilter
from app.incidents.models import Incident
from app.incidents.service import feature_expr

# Shortest ground distance of one degree: of latitude (at the equator), and of longitude scaled
# by the cosine of the highest latitude the circle reaches.
M_PER_DEG_LAT_MIN = 110_574.0
M_PER_DEG_LON_EQUATOR = 111_320.0
# Longest: a degree of latitude at the poles (111 694 m); one of longitude is never longer than
# at the equator.
M_PER_DEG_MAX = 111_700.0


def inner_degrees(radius_m: float) -> float:
    """A distance in degrees (planar, lon/lat) within which every point is surely within
    `radius_m` on the ground: no degree in any direction is longer than M_PER_DEG_MAX."""
    return radius_m / (M_PER_DEG_MAX * 1.01)


def outer_degrees(geom: Any, radius_m: float) -> ColumnElement[Any]:
    """SQL: a distance in degrees (planar) from `geom` beyond which no point is within
    `radius_m` on the ground: the shortest degree in the band of latitudes involved, as in
    enclosing_box."""
    dlat = radius_m / M_PER_DEG_LAT_MIN * 1.01
    reach = func.greatest(func.abs(func.ST_YMin(geom)), func.abs(func.ST_YMax(geom))) + dlat
    top = func.least(89.9, reach)
    shortest = func.least(M_PER_DEG_LAT_MIN, M_PER_DEG_LON_EQUATOR * func.cos(func.radians(top)))
    return radius_m * 1.01 / shortest


def may_be_within(point: Any, geom: Any, radius_m: float) -> ColumnElement[bool]:
    """SQL, index-assisted: `point` may be within `radius_m` of `geom` on the ground (planar,
    beyond outer_degrees it surely is not)."""
    return func.ST_DWithin(point, geom, outer_degrees(geom, radius_m))


def within(point: Any, geom: Any, radius_m: float) -> ColumnElement[bool]:
    """SQL: `point` is within `radius_m` of `geom` on the ground (geodesic), the geodesic test
    run only where the planar inner bound cannot decide (most points near a line are surely
    in; a geodesic ST_DWithin costs ~10x the planar one)."""
    surely = func.ST_DWithin(point, geom, inner_degrees(radius_m))
    return surely | func.ST_DWithin(func.geography(point), func.geography(geom), radius_m)


def enclosing_box(lon: float, lat: float, radius_m: float) -> tuple[float, float, float, float]:
    """A lon/lat box that surely contains the geodesic circle (for the GiST prefilter)."""
    dlat = radius_m / M_PER_DEG_LAT_MIN * 1.01
    top = min(89.9, abs(lat) + dlat)
    dlon = min(180.0, radius_m / (M_PER_DEG_LON_EQUATOR * math.cos(math.radians(top))) * 1.01)
    return lon - dlon, max(-90.0, lat - dlat), lon + dlon, min(90.0, lat + dlat)


async def nearby(
    *,
    session: AsyncSession,
    filt: IncidentFilter,
    lon: float,
    lat: float,
    radius_m: float,
    limit: int,
) -> bytes:
    """Incidents within radius_m metres of (lon, lat), geodesic, nearest first, as GeoJSON."""
    point = func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326)
    here = func.geography(point)
    distance = func.ST_Distance(func.geography(Incident.geom), here)
    f, post = feature_expr({"distance_m": geojson.rounded(distance, 1)})
    rows = (
        select(cast(f, Text).label("f"), distance.label("d"), Incident.id)
        .select_from(Incident)
        .outerjoin(post, post.id == Incident.nearest_post_id)
        .where(
            *filt.conditions(),
            Incident.geom.op("&&")(func.ST_MakeEnvelope(*enclosing_box(lon, lat, radius_m), 4326)),
            func.ST_DWithin(func.geography(Incident.geom), here, radius_m),
        )
        .order_by(distance, Incident.id)
        .limit(limit)
        .subquery()
    )
    agg = func.string_agg(rows.c.f, aggregate_order_by(literal(","), rows.c.d, rows.c.id))
    stmt = select(
        literal('{"type":"FeatureCollection","features":[')
        + func.coalesce(agg, literal(""))
        + literal('],"numberReturned":')
        + cast(func.count(), Text)
        + literal("}")
    ).select_from(rows)
    return str((await session.execute(stmt)).scalar_one()).encode()


async def nearest_posts(*, session: AsyncSession, lon: float, lat: float, k: int) -> bytes:
    """The k nearest border posts with their geodesic distance, as GeoJSON."""
    sql = text(
        """
        WITH here AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography AS g),
        near AS (
            SELECT p.*, ST_Distance(p.geom::geography, here.g) AS d
              FROM border_post p, here
             ORDER BY p.geom::geography <-> here.g
             LIMIT :k * 2 + 4
        )
        SELECT '{"type":"FeatureCollection","features":[' || coalesce(string_agg(
                 json_build_object(
                   'type', 'Feature', 'id', code,
                   'geometry', ST_AsGeoJSON(geom, 6)::json,
                   'properties', json_build_object(
                     'code', code, 'name', name, 'name_local', name_local, 'kind', kind,
                     'agency', agency, 'border', border, 'province_code', province_code,
                     'position_approximate', position_approximate,
                     'distance_m', round(d::numeric, 1))
                 )::text, ',' ORDER BY d, code), '') || ']}'
          FROM (SELECT * FROM near ORDER BY d, code LIMIT :k) top
        """
    )
    # the sphere KNN picks candidates; the spheroid distance orders them (a few extra rows
    # absorb the sphere/spheroid difference)
    value: Any = (await session.execute(sql, {"lon": lon, "lat": lat, "k": k})).scalar_one()
    return str(value).encode()
