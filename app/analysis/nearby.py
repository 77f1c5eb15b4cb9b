"""Nearby incidents (true geodesic radius) and nearest border posts, index-assisted."""

from __future__ import annotations

from typing import Any

import shapely
from sqlalchemy import Text, cast, func, literal, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from app.geo import geojson, spatial
from app.incidents.filters import IncidentFilter
from app.incidents.models import Incident
from app.incidents.service import feature_expr


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
    here = func.geography(spatial.point(lon, lat))
    distance = func.ST_Distance(func.geography(Incident.geom), here)
    f, post = feature_expr({"distance_m": geojson.rounded(distance, 1)})
    rows = (
        select(cast(f, Text).label("f"), distance.label("d"), Incident.id)
        .select_from(Incident)
        .outerjoin(post, post.id == Incident.nearest_post_id)
        .where(
            *filt.conditions(),
            spatial.within_metres(Incident.geom, shapely.Point(lon, lat), radius_m),
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
