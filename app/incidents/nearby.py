"""Incidents within a geodesic radius of a point, nearest first (index-assisted)."""

from __future__ import annotations

import shapely
from sqlalchemy import Text, cast, func, literal, select
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
