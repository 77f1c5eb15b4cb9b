"""Jurisdiction scope: the single place where "which rows may this principal see" is built.

A principal bound to jurisdiction J sees the rows inside J (any level below it too, via the
row's jurisdiction path) plus those in J's neighbours within the cooperation distance of J —
the "adjacent areas" cooperation. National principals see everything. The rule is written here
over a jurisdiction path and a position; each table that has them names its columns (incidents:
app/incidents/filters.py, `visible`), so auth knows nothing of the tables it guards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from geoalchemy2 import WKBElement
from sqlalchemy import (
    ColumnElement,
    SQLColumnExpression,
    and_,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import String

from app.auth.models import ScopeZone, ScopeZoneBuilt
from app.geo.spatial import overlaps_bbox


@dataclass(frozen=True)
class Scope:
    """What a principal may see: a jurisdiction code (None = national) and the cooperation
    distance in metres."""

    code: str | None
    distance_m: int
    zone_bbox: tuple[float, float, float, float] | None = None  # set once the zone is built

    @property
    def national(self) -> bool:
        """Whether nothing is hidden."""
        return self.code is None

    def condition(
        self, path: SQLColumnExpression[list[str] | None], geom: SQLColumnExpression[WKBElement]
    ) -> ColumnElement[bool]:
        """SQL: a row with the jurisdiction path `path` (an array of codes) and the position
        `geom` is visible in this scope."""
        if self.code is None:
            return true()
        inside = path.contains(literal([self.code], ARRAY(String(32))))
        if self.zone_bbox is None:
            return inside
        zone = exists().where(
            ScopeZone.code == self.code,
            ScopeZone.distance_m == self.distance_m,
            func.ST_Intersects(ScopeZone.geom, geom),
        )
        # the constant box lets the planner use the GiST index instead of testing every row
        near = overlaps_bbox(geom, self.zone_bbox)
        return or_(inside, and_(near, zone))


NATIONAL = Scope(code=None, distance_m=0)

ZONE_SQL = text(
    """
    WITH j AS (
        SELECT id, geom FROM jurisdiction WHERE code = :code
        ORDER BY valid_from DESC NULLS LAST LIMIT 1
    ), zone AS (
        SELECT ST_Union(ST_Intersection(
                   n.geom, ST_Buffer(j.geom::geography, CAST(:distance_m AS float8))::geometry
               )) AS g
          FROM j
          JOIN jurisdiction_adjacency a ON a.a_id = j.id
          JOIN jurisdiction n ON n.id = a.b_id
    )
    INSERT INTO scope_zone (code, distance_m, geom)
    SELECT :code, :distance_m, d.geom
      FROM zone, ST_Subdivide(ST_CollectionExtract(zone.g, 3), 128) AS s(geom), ST_Dump(s.geom) d
     WHERE zone.g IS NOT NULL
    """
)


async def ensure_zone(*, session: AsyncSession, scope: Scope) -> Scope:
    """Build the cooperation zone of a scope once (cached until the boundaries change) and
    return the scope with the zone's bounding box."""
    if scope.code is None:
        return scope
    await _build(session, scope)
    box = (
        await session.execute(
            select(
                func.ST_XMin(func.ST_Extent(ScopeZone.geom)),
                func.ST_YMin(func.ST_Extent(ScopeZone.geom)),
                func.ST_XMax(func.ST_Extent(ScopeZone.geom)),
                func.ST_YMax(func.ST_Extent(ScopeZone.geom)),
            ).where(ScopeZone.code == scope.code, ScopeZone.distance_m == scope.distance_m)
        )
    ).one()
    if box[0] is None:
        return replace(scope, zone_bbox=None)
    pad = 1e-6  # degrees: never let rounding of the box drop a point on the zone's edge
    return replace(
        scope,
        zone_bbox=(
            float(box[0]) - pad,
            float(box[1]) - pad,
            float(box[2]) + pad,
            float(box[3]) + pad,
        ),
    )


async def _build(session: AsyncSession, scope: Scope) -> bool:
    """Build the zone pieces unless already built; True when built now."""
    built = await session.execute(
        select(ScopeZoneBuilt.code).where(
            ScopeZoneBuilt.code == scope.code, ScopeZoneBuilt.distance_m == scope.distance_m
        )
    )
    if built.scalar() is not None:
        return False
    # one builder at a time per zone; a concurrent request waits and then finds it built
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
        {"k": f"scope:{scope.code}:{scope.distance_m}"},
    )
    marker = insert(ScopeZoneBuilt).values(code=scope.code, distance_m=scope.distance_m)
    created = await session.execute(marker.on_conflict_do_nothing().returning(ScopeZoneBuilt.code))
    if created.scalar() is None:
        return False
    await session.execute(ZONE_SQL, {"code": scope.code, "distance_m": scope.distance_m})
    return True


async def clear_zones(*, session: AsyncSession) -> None:
    """Forget every cached zone (the boundaries or the adjacency changed)."""
    await session.execute(delete(ScopeZone))
    await session.execute(delete(ScopeZoneBuilt))
