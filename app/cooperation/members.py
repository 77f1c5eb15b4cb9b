"""What a cooperation area is made of, read once per request: the filter `cooperation=<id>`
(app/incidents/filters.py) turns it into conditions on incidents."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cooperation.models import CooperationArea, CooperationMember
from app.errors import InvalidInput


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
