"""Incidents within a geodesic radius of a point, nearest first (index-assisted)."""

from __future__ import annotations

import shapely
from sqlalchemy import Text, cast, func, literal, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from app import i18n
from app.geo import geojson, spatial
from app.i18n import Lang
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
    lang: Lang = i18n.DEFAULT,
) -> bytes:
    """Incidents within radius_m metres of (lon, lat), geodesic, nearest first, as GeoJSON."""
    here = func.geography(spatial.point(lon, lat))
    distance = func.ST_Distance(func.geography(Incident.geom), here)
    chosen = (
        select(Incident, distance.label("d"))
        .where(
            *filt.conditions(),
            spatial.within_metres(Incident.geom, shapely.Point(lon, lat), radius_m),
        )
        .order_by(distance, Incident.id)
        .limit(limit)
        .subquery("chosen")
    )
    f, from_ = feature_expr(lang, {"distance_m": geojson.rounded(chosen.c.d, 1)}, chosen)
    rows = select(cast(f, Text).label("f"), chosen.c.d, chosen.c.id).select_from(from_).subquery()
    agg = func.string_agg(rows.c.f, aggregate_order_by(literal(","), rows.c.d, rows.c.id))
    stmt = select(
        literal('{"type":"FeatureCollection","features":[')
        + func.coalesce(agg, literal(""))
        + literal('],"numberReturned":')
        + cast(func.count(), Text)
        + literal("}")
    ).select_from(rows)
    return str((await session.execute(stmt)).scalar_one()).encode()
