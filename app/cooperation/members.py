"""What a cooperation area is made of, read once per request, and the rule that says which rows
it holds: the filter `cooperation=<id>` (app/incidents/filters.py) and a key scoped to the area
(app/auth/scope.py) both build their conditions here, over the columns the caller names."""

from __future__ import annotations

from dataclasses import dataclass

import shapely
from geoalchemy2 import WKBElement
from sqlalchemy import ColumnElement, SQLColumnExpression, and_, false, func, literal, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import String

from app.cooperation.models import CooperationArea, CooperationMember
from app.errors import InvalidInput
from app.geo import spatial


@dataclass(frozen=True)
class AreaMembers:
    """The members of one area: jurisdiction codes (either era), border strips (segment code,
    width in km) and drawn polygons (WKT, WGS 84)."""

    area_id: int
    version: int = 1  # any change to the area changes it (tile caches key on it)
    codes: tuple[str, ...] = ()
    strips: tuple[tuple[str, float], ...] = ()
    polygons: tuple[str, ...] = ()


async def members_of(session: AsyncSession, area_id: int) -> AreaMembers:
    """The members of area `area_id`; a clear 422 naming `cooperation` when there is none."""
    found = await session.get(CooperationArea, area_id)
    if found is None:
        raise InvalidInput(f"cooperation area {area_id} does not exist", field="cooperation")
    rows = (
        await session.execute(
            select(
                CooperationMember.kind,
                CooperationMember.code,
                CooperationMember.border_km,
                func.ST_AsText(CooperationMember.geom),
            )
            .where(CooperationMember.area_id == area_id)
            .order_by(CooperationMember.id)
        )
    ).all()
    return AreaMembers(
        area_id=area_id,
        version=found.version,
        codes=tuple(r.code for r in rows if r.kind == "jurisdiction" and r.code),
        strips=tuple(
            (r.code, float(r.border_km))
            for r in rows
            if r.kind == "border_segment" and r.code and r.border_km
        ),
        polygons=tuple(r[3] for r in rows if r.kind == "polygon" and r[3]),
    )


def in_units(
    codes: tuple[str, ...], path: SQLColumnExpression[list[str] | None]
) -> ColumnElement[bool]:
    """SQL: the row's jurisdiction path holds one of the codes (either era; GIN on the path)."""
    result: ColumnElement[bool] = path.op("&&", is_comparison=True)(
        literal(list(codes), ARRAY(String(32)))
    )
    return result


def on_border_strip(
    segment: str,
    km: float,
    border_segment: SQLColumnExpression[str | None],
    border_distance_km: SQLColumnExpression[float | None],
) -> ColumnElement[bool]:
    """SQL: the row's nearest national border is `segment`, at most `km` from it (btree on
    both)."""
    return and_(border_segment == segment, border_distance_km <= km)


def in_polygon(wkt: str, geom: SQLColumnExpression[WKBElement]) -> ColumnElement[bool]:
    """SQL: the row lies in the polygon (WKT, WGS 84; ST_Intersects uses the GiST index of the
    positions, so an OR of these and the other members is a bitmap OR)."""
    result: ColumnElement[bool] = func.ST_Intersects(
        geom, func.ST_GeomFromText(wkt, spatial.SRID_WGS84)
    )
    return result


def holds(
    area: AreaMembers,
    *,
    path: SQLColumnExpression[list[str] | None],
    geom: SQLColumnExpression[WKBElement],
    border_segment: SQLColumnExpression[str | None],
    border_distance_km: SQLColumnExpression[float | None],
    reach_m: int = 0,
) -> ColumnElement[bool]:
    """SQL: the row lies in the area — in one of its jurisdictions, on one of its border strips
    or in one of its drawn polygons — each member an arm with an index of its own, joined by OR
    (a bitmap OR in the plan).

    With `reach_m`, also the rows within that distance of a strip (the strip as wide again by
    `reach_m`) or of a polygon (geodesic, after a box prefilter); how far a key sees beyond the
    member jurisdictions is the scope's affair (app/auth/scope.py: their cached zones)."""
    parts: list[ColumnElement[bool]] = []
    if area.codes:
        parts.append(in_units(area.codes, path))
    reach_km = reach_m / 1000
    parts += [
        on_border_strip(code, km + reach_km, border_segment, border_distance_km)
        for code, km in area.strips
    ]
    if reach_m > 0:
        parts += [
            spatial.within_metres(geom, shapely.from_wkt(wkt), reach_m) for wkt in area.polygons
        ]
    else:
        parts += [in_polygon(wkt, geom) for wkt in area.polygons]
    return or_(*parts) if parts else false()
