"""Access scope: the single place where "which rows may this principal see" is built.

A principal bound to jurisdiction J sees the rows inside J (any level below it too, via the
row's jurisdiction path) plus those in J's neighbours within the cooperation distance of J —
the "adjacent areas" cooperation. A principal bound to a cooperation area sees the rows the area
holds (its member jurisdictions of either era, border strips, drawn polygons: the rule of
`cooperation=`, app/cooperation/members.py) plus its cooperation zone: each member
jurisdiction's zone as a key of that jurisdiction has it, and whatever lies within the
cooperation distance of a strip or a polygon. National principals see everything. The rule is
written here over a jurisdiction path, a position and the nearest border; each table that has
them names its columns (incidents: app/incidents/filters.py, `visible`), so auth knows nothing
of the tables it guards.
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
    false,
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

from app import replicas
from app.auth.models import ScopeZone, ScopeZoneBuilt
from app.cooperation.members import AreaMembers, holds, members_of
from app.geo.spatial import BBox, overlaps_bbox


@dataclass(frozen=True)
class AreaScope:
    """The cooperation area a key is bound to: its id and name, and once read for a request
    (`ensure_zone`) its members and the box of their jurisdictions' cooperation zones."""

    id: int
    name: str
    members: AreaMembers | None = None  # None: not read yet (the scope then shows nothing)
    zone_bbox: BBox | None = None  # the member jurisdictions' zones, once built


@dataclass(frozen=True)
class Scope:
    """What a principal may see: a jurisdiction code, or a cooperation area (`area`), or
    neither (national); and the cooperation distance in metres."""

    code: str | None
    distance_m: int
    zone_bbox: BBox | None = None  # set once the zone is built
    area: AreaScope | None = None

    @property
    def national(self) -> bool:
        """Whether nothing is hidden (a key with neither a jurisdiction nor an area)."""
        return self.code is None and self.area is None

    @property
    def name(self) -> str | None:
        """The scope in answers that report it: the jurisdiction code, `cooperation:<id>` for
        an area, None for national."""
        return f"cooperation:{self.area.id}" if self.area is not None else self.code

    @property
    def label(self) -> str:
        """The scope in a message for people."""
        if self.area is not None:
            return f"cooperation area {self.area.id} '{self.area.name}'"
        return self.code or "national"

    @property
    def view(self) -> str:
        """What of the scope decides what it shows (cache keys): the code or the area's id and
        version, and the distance."""
        if self.area is not None:
            version = self.area.members.version if self.area.members is not None else 0
            return f"area:{self.area.id}:v{version}|{self.distance_m}"
        return f"{self.code}|{self.distance_m}"

    def condition(
        self,
        path: SQLColumnExpression[list[str] | None],
        geom: SQLColumnExpression[WKBElement],
        *,
        border_segment: SQLColumnExpression[str | None] | None = None,
        border_distance_km: SQLColumnExpression[float | None] | None = None,
    ) -> ColumnElement[bool]:
        """SQL: a row with the jurisdiction path `path` (an array of codes), the position `geom`
        and (area scopes with a border strip need them) its nearest border segment and the
        distance to it is visible in this scope."""
        if self.area is not None:
            return self._area_condition(path, geom, border_segment, border_distance_km)
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

    def _area_condition(
        self,
        path: SQLColumnExpression[list[str] | None],
        geom: SQLColumnExpression[WKBElement],
        border_segment: SQLColumnExpression[str | None] | None,
        border_distance_km: SQLColumnExpression[float | None] | None,
    ) -> ColumnElement[bool]:
        assert self.area is not None
        members = self.area.members
        if members is None:
            return false()
        if members.strips and (border_segment is None or border_distance_km is None):
            raise ValueError("an area with a border strip needs the rows' border columns")
        # the area's members, strips and polygons widened by the distance: one indexed arm each
        parts = [
            holds(
                members,
                path=path,
                geom=geom,
                border_segment=border_segment if border_segment is not None else literal(None),
                border_distance_km=(
                    border_distance_km if border_distance_km is not None else literal(None)
                ),
                reach_m=self.distance_m,
            )
        ]
        if members.codes and self.area.zone_bbox is not None:
            zone = exists().where(
                ScopeZone.code.in_(members.codes),
                ScopeZone.distance_m == self.distance_m,
                func.ST_Intersects(ScopeZone.geom, geom),
            )
            parts.append(and_(overlaps_bbox(geom, self.area.zone_bbox), zone))
        return or_(*parts)


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
    return the scope with the zone's bounding box; an area's scope with its members read (their
    current version) and every member jurisdiction's zone built."""
    if scope.national:
        return scope
    try:
        return await _ensure(session, scope)
    except _NeedsPrimary:
        # a replica has no zone built yet (and cannot build one): build it on the primary and
        # read this request there, so its answers already use the zone (app/replicas.py)
        await replicas.use_primary(session)
        return await _ensure(session, scope)


class _NeedsPrimary(Exception):
    """A zone must be built, and the session reads from a replica."""


async def _ensure(session: AsyncSession, scope: Scope) -> Scope:
    if scope.area is not None:
        return await _ensure_area(session, scope, scope.area)
    assert scope.code is not None
    await _build(session, scope.code, scope.distance_m)
    return replace(scope, zone_bbox=await _zone_box(session, (scope.code,), scope.distance_m))


async def _ensure_area(session: AsyncSession, scope: Scope, area: AreaScope) -> Scope:
    members = await members_of(session, area.id)
    box = None
    if members.codes:
        built = set(
            (
                await session.execute(
                    select(ScopeZoneBuilt.code).where(
                        ScopeZoneBuilt.code.in_(members.codes),
                        ScopeZoneBuilt.distance_m == scope.distance_m,
                    )
                )
            ).scalars()
        )
        for code in members.codes:
            if code not in built:
                await _build(session, code, scope.distance_m)
        box = await _zone_box(session, members.codes, scope.distance_m)
    return replace(scope, area=replace(area, members=members, zone_bbox=box))


async def _zone_box(session: AsyncSession, codes: tuple[str, ...], distance_m: int) -> BBox | None:
    """The box of the zone pieces of `codes` (None when they have none)."""
    extent = func.ST_Extent(ScopeZone.geom)
    box = (
        await session.execute(
            select(
                func.ST_XMin(extent), func.ST_YMin(extent),
                func.ST_XMax(extent), func.ST_YMax(extent),
            ).where(
                ScopeZone.code == codes[0] if len(codes) == 1 else ScopeZone.code.in_(codes),
                ScopeZone.distance_m == distance_m,
            )
        )
    ).one()  # fmt: skip
    if box[0] is None:
        return None
    pad = 1e-6  # degrees: never let rounding of the box drop a point on the zone's edge
    return (
        float(box[0]) - pad,
        float(box[1]) - pad,
        float(box[2]) + pad,
        float(box[3]) + pad,
    )


async def _build(session: AsyncSession, code: str, distance_m: int) -> bool:
    """Build the zone pieces of a jurisdiction unless already built; True when built now."""
    built = await session.execute(
        select(ScopeZoneBuilt.code).where(
            ScopeZoneBuilt.code == code, ScopeZoneBuilt.distance_m == distance_m
        )
    )
    if built.scalar() is not None:
        return False
    if replicas.on_replica(session):
        raise _NeedsPrimary
    # one builder at a time per zone; a concurrent request waits and then finds it built
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"scope:{code}:{distance_m}"}
    )
    marker = insert(ScopeZoneBuilt).values(code=code, distance_m=distance_m)
    created = await session.execute(marker.on_conflict_do_nothing().returning(ScopeZoneBuilt.code))
    if created.scalar() is None:
        return False
    await session.execute(ZONE_SQL, {"code": code, "distance_m": distance_m})
    return True


async def clear_zones(*, session: AsyncSession) -> None:
    """Forget every cached zone (the boundaries or the adjacency changed)."""
    await session.execute(delete(ScopeZone))
    await session.execute(delete(ScopeZoneBuilt))
