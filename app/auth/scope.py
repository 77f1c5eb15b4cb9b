"""Jurisdiction scope: the single place where "which incidents may this principal see" is built.

A principal bound to jurisdiction J sees the incidents inside J (any level below it too, via the
incident's jurisdiction path) plus those in J's neighbours within the cooperation distance of
J — the "adjacent areas" cooperation. National principals see everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, exists, func, literal, or_, select, text, true
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import String

from app.auth.models import ScopeZone, ScopeZoneBuilt
from app.incidents.models import Incident


@dataclass(frozen=True)
class Scope:
    """What a principal may see: a jurisdiction code (None = national) and the cooperation
    distance in metres."""

    code: str | None
    distance_m: int

    @property
    def national(self) -> bool:
        """Whether nothing is hidden."""
        return self.code is None

    def incident_condition(self) -> ColumnElement[bool]:
        """SQL: the incident is visible in this scope."""
        if self.code is None:
            return true()
        inside = Incident.jurisdiction_path.contains(literal([self.code], ARRAY(String(32))))
        zone = exists().where(
            ScopeZone.code == self.code,
            ScopeZone.distance_m == self.distance_m,
            func.ST_Intersects(ScopeZone.geom, Incident.geom),
        )
        return or_(inside, zone)


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


async def ensure_zone(*, session: AsyncSession, scope: Scope) -> None:
    """Build the cooperation zone of a scope once (cached until the boundaries change)."""
    if scope.code is None:
        return
    built = await session.execute(
        select(ScopeZoneBuilt.code).where(
            ScopeZoneBuilt.code == scope.code, ScopeZoneBuilt.distance_m == scope.distance_m
        )
    )
    if built.scalar() is not None:
        return
    # one builder at a time per zone; a concurrent request waits and then finds it built
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
        {"k": f"scope:{scope.code}:{scope.distance_m}"},
    )
    marker = insert(ScopeZoneBuilt).values(code=scope.code, distance_m=scope.distance_m)
    created = await session.execute(marker.on_conflict_do_nothing().returning(ScopeZoneBuilt.code))
    if created.scalar() is None:
        return
    await session.execute(ZONE_SQL, {"code": scope.code, "distance_m": scope.distance_m})


async def clear_zones(*, session: AsyncSession) -> None:
    """Forget every cached zone (the boundaries or the adjacency changed)."""
    await session.execute(delete(ScopeZone))
    await session.execute(delete(ScopeZoneBuilt))
