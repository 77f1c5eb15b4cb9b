"""Incidents within a geodesic radius of a point, nearest first (index-assisted).

The statement is built once per filter and language (the point, radius, limit and the index
box around them are bound values) and run on the driver connection with `fetchrow`
(app/db.py): no SQLAlchemy execution per request, no BEGIN/ROLLBACK around it, and no parallel
workers. At the densest 5 km circle of the benchmark (~7 400 incidents inside) a plan of two
workers took 84 ms where the leader alone took 42–46 ms on this 2-core host
(docs/performance.md, "The fixed cost of a request, again").
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Float, Integer, Select, Text, bindparam, cast, func, literal, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from app import i18n
from app.db import DriverStatement, fetch_row
from app.geo import geojson, spatial
from app.geo.spatial import SRID_WGS84
from app.i18n import Lang
from app.incidents.filters import IncidentFilter
from app.incidents.models import Incident
from app.incidents.service import feature_expr

LON, LAT, RADIUS = (bindparam(n, type_=Float) for n in ("lon", "lat", "radius_m"))
LIMIT = bindparam("limit", type_=Integer)
# a lon/lat box that surely holds the circle (spatial.box_around): what the GiST index answers
BOX = tuple(bindparam(n, type_=Float) for n in ("bw", "bs", "be", "bn"))
WORLD = (-180.0, -90.0, 180.0, 90.0)  # when no box can hold the circle (near a pole)
STATEMENT_CACHE = 64  # filters and languages whose statements are kept


@lru_cache(maxsize=STATEMENT_CACHE)
def statement(filt: IncidentFilter, lang: Lang = i18n.DEFAULT) -> Select[Any]:
    """The FeatureCollection of the incidents of `filt` within RADIUS metres of (LON, LAT),
    geodesic (WGS 84 spheroid), nearest first, LIMIT at most, with `distance_m`."""
    here = func.geography(spatial.point(LON, LAT))
    distance = func.ST_Distance(func.geography(Incident.geom), here)
    w, s, e, n = BOX
    chosen = (
        select(Incident, distance.label("d"))
        .where(
            *filt.conditions(),
            Incident.geom.op("&&")(func.ST_MakeEnvelope(w, s, e, n, SRID_WGS84)),
            func.ST_DWithin(func.geography(Incident.geom), here, RADIUS),
        )
        .order_by(distance, Incident.id)
        .limit(LIMIT)
        .subquery("chosen")
    )
    f, from_ = feature_expr(lang, {"distance_m": geojson.rounded(chosen.c.d, 1)}, chosen)
    rows = select(cast(f, Text).label("f"), chosen.c.d, chosen.c.id).select_from(from_).subquery()
    agg = func.string_agg(rows.c.f, aggregate_order_by(literal(","), rows.c.d, rows.c.id))
    return select(
        literal('{"type":"FeatureCollection","features":[')
        + func.coalesce(agg, literal(""))
        + literal('],"numberReturned":')
        + cast(func.count(), Text)
        + literal("}")
    ).select_from(rows)


def parameters(*, lon: float, lat: float, radius_m: float, limit: int) -> dict[str, Any]:
    """The values of one call of `statement`."""
    box = spatial.box_around((lon, lat, lon, lat), radius_m) or WORLD
    return {"lon": lon, "lat": lat, "radius_m": radius_m, "limit": limit} | dict(
        zip(("bw", "bs", "be", "bn"), box, strict=True)
    )


@lru_cache(maxsize=STATEMENT_CACHE)
def _driver_statement(filt: IncidentFilter, lang: Lang, dialect: Dialect) -> DriverStatement:
    names = parameters(lon=0.0, lat=0.0, radius_m=1.0, limit=1)
    return DriverStatement(statement(filt, lang), dialect, names)


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
    conn = await session.connection()
    params = parameters(lon=lon, lat=lat, radius_m=radius_m, limit=limit)
    row = await fetch_row(conn, _driver_statement(filt, lang, conn.dialect), params)
    assert row is not None  # an aggregate: one row, always
    return str(row[0]).encode()
