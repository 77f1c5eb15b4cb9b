"""Cooperation areas: create, change, end (audited, If-Match on the version), read, summarise.

Who may write: national admins (routes: require_national) and the CLI. Everyone with a
key may read the areas (reference data); what an area's incidents are follows the reader's
scope like every other incident answer (app/incidents/filters.py, `cooperation=`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import orjson
import shapely
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from shapely.geometry import shape
from sqlalchemy import ColumnElement, delete, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Identity, record
from app.borders.models import BorderSegment
from app.cooperation.members import members_of
from app.cooperation.models import MEMBER_KINDS, CooperationArea, CooperationMember
from app.errors import Conflict, Forbidden, InvalidInput, NotFound, PreconditionFailed
from app.geo import spatial
from app.geo.spatial import SRID_WGS84
from app.incidents import rules
from app.incidents.filters import (
    IncidentFilter,
    in_jurisdiction,
    in_polygon,
    on_border_strip,
)
from app.incidents.models import Incident
from app.jurisdictions import eras
from app.jurisdictions.models import Jurisdiction

NAME_MAX = 200
TEXT_MAX = 2000
MEMBERS_MAX = 500
DEFAULT_BORDER_KM = 10.0  # the width of a border strip when none is given
CLEARED = ("solved", "closed")  # statuses that count as cleared in a summary
SUMMARY_AREA_FIELDS = ("id", "name", "name_en", "valid_from", "valid_to", "example")


class MemberIn(BaseModel):
    """One member: a jurisdiction code (either era), a border segment with a strip width, or a
    drawn polygon (GeoJSON Polygon or MultiPolygon, WGS 84)."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="jurisdiction | border_segment | polygon")
    code: str | None = Field(default=None, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str | None = Field(default=None, max_length=NAME_MAX)
    border_km: float | None = Field(default=None, gt=0, le=200)
    approximate: bool = False
    geometry: dict[str, Any] | None = None

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in MEMBER_KINDS:
            raise ValueError(f"kind must be one of {', '.join(MEMBER_KINDS)}")
        return value

    @model_validator(mode="after")
    def _fields_of_kind(self) -> MemberIn:
        if self.kind == "polygon":
            if self.geometry is None:
                raise ValueError("a polygon member needs a geometry (GeoJSON Polygon)")
            if self.code is not None or self.border_km is not None:
                raise ValueError("a polygon member has a geometry, not a code or border_km")
        else:
            if not self.code:
                raise ValueError(f"a {self.kind} member needs a code")
            if self.geometry is not None:
                raise ValueError(f"a {self.kind} member has a code, not a geometry")
            if self.kind == "jurisdiction" and self.border_km is not None:
                raise ValueError("border_km belongs to border_segment members")
        return self

    def wkt(self) -> str:
        """The polygon as WKT (MultiPolygon), checked: valid, in lon/lat range, not empty."""
        assert self.geometry is not None
        if self.geometry.get("type") not in ("Polygon", "MultiPolygon"):
            raise ValueError("geometry must be a GeoJSON Polygon or MultiPolygon")
        try:
            geom = shape(self.geometry)
        except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
            raise ValueError(f"geometry is not valid GeoJSON: {exc}") from exc
        if geom.is_empty or not geom.is_valid:
            raise ValueError(f"geometry is not a valid polygon: {shapely.is_valid_reason(geom)}")
        x1, y1, x2, y2 = geom.bounds
        if not (-180 <= x1 <= x2 <= 180 and -90 <= y1 <= y2 <= 90):
            raise ValueError("geometry is outside lon [-180, 180] / lat [-90, 90]")
        # ST_Multi in the database makes a Polygon a MultiPolygon
        return str(geom.wkt)


class AreaIn(BaseModel):
    """A new cooperation area."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_MAX)
    name_en: str | None = Field(default=None, max_length=NAME_MAX)
    purpose: str | None = Field(default=None, max_length=TEXT_MAX)
    lead_unit: str | None = Field(default=None, max_length=NAME_MAX)
    valid_from: date | None = None
    valid_to: date | None = None
    members: list[MemberIn] = Field(min_length=1, max_length=MEMBERS_MAX)

    @model_validator(mode="after")
    def _period(self) -> AreaIn:
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self


class AreaPatch(BaseModel):
    """A change: the fields given replace the stored ones (`members` replaces all members)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    name_en: str | None = Field(default=None, max_length=NAME_MAX)
    purpose: str | None = Field(default=None, max_length=TEXT_MAX)
    lead_unit: str | None = Field(default=None, max_length=NAME_MAX)
    valid_from: date | None = None
    valid_to: date | None = None
    members: list[MemberIn] | None = Field(default=None, min_length=1, max_length=MEMBERS_MAX)


FIELDS = ("name", "name_en", "purpose", "lead_unit", "valid_from", "valid_to")


def require_national(identity: Identity) -> None:
    """Only a national admin writes areas (one may join units of several provinces); an
    area's own admin is not national either."""
    if not identity.scope.national:
        raise Forbidden("only a national admin may create or change cooperation areas")


async def _check_codes(session: AsyncSession, members: list[MemberIn]) -> None:
    """Every jurisdiction and border segment named exists (422 naming the member otherwise)."""
    codes = {m.code for m in members if m.kind == "jurisdiction"}
    known = set(
        (await session.execute(select(Jurisdiction.code).where(Jurisdiction.code.in_(codes))))
        .scalars()
        .all()
    )
    segments = {m.code for m in members if m.kind == "border_segment"}
    known_segments = set(
        (await session.execute(select(BorderSegment.code).where(BorderSegment.code.in_(segments))))
        .scalars()
        .all()
    )
    for n, m in enumerate(members):
        if m.kind == "jurisdiction" and m.code not in known:
            raise InvalidInput(
                f"members[{n}]: no jurisdiction has the code '{m.code}'", field=f"members.{n}.code"
            )
        if m.kind == "border_segment" and m.code not in known_segments:
            raise InvalidInput(
                f"members[{n}]: no border segment has the code '{m.code}' (e.g. VNM-LAO)",
                field=f"members.{n}.code",
            )


async def _checked(session: AsyncSession, members: list[MemberIn]) -> list[str | None]:
    """Every member checked before anything is written: the codes exist, the polygons are valid
    (their WKT, None for the other kinds)."""
    await _check_codes(session, members)
    shapes: list[str | None] = []
    for n, m in enumerate(members):
        try:
            shapes.append(m.wkt() if m.kind == "polygon" else None)
        except ValueError as exc:
            raise InvalidInput(f"members[{n}]: {exc}", field=f"members.{n}.geometry") from exc
    return shapes


async def _write_members(
    session: AsyncSession, area_id: int, members: list[MemberIn], shapes: list[str | None]
) -> None:
    for m, wkt in zip(members, shapes, strict=True):
        session.add(
            CooperationMember(
                area_id=area_id,
                kind=m.kind,
                code=m.code,
                name=m.name,
                border_km=(m.border_km or DEFAULT_BORDER_KM)
                if m.kind == "border_segment"
                else None,
                approximate=m.approximate,
                geom=func.ST_Multi(func.ST_GeomFromText(wkt, SRID_WGS84)) if wkt else None,
            )
        )
    await session.flush()


async def _found(session: AsyncSession, area_id: int) -> CooperationArea:
    """The area (404 when there is none)."""
    area = await session.get(CooperationArea, area_id)
    if area is None:
        raise NotFound(f"no cooperation area {area_id}")
    return area


async def get(session: AsyncSession, area_id: int) -> dict[str, Any]:
    """The area with its members (jurisdictions named, polygons as GeoJSON) and a box around
    them; 404 if none."""
    area = await _found(session, area_id)
    members = await _members(session, area_id)
    return _area_json(area) | {"bbox": await bbox(session, area_id), "members": members}


async def _members(session: AsyncSession, area_id: int) -> list[dict[str, Any]]:
    """The members as a person reads them, in the order they were given."""
    j = Jurisdiction
    name = (
        select(func.coalesce(j.name_local, j.name))
        .where(j.code == CooperationMember.code)
        .order_by(j.valid_from.desc().nulls_last())
        .limit(1)
        .scalar_subquery()
    )
    rows = (
        await session.execute(
            select(
                CooperationMember.kind,
                CooperationMember.code,
                CooperationMember.name,
                CooperationMember.border_km,
                CooperationMember.approximate,
                func.ST_AsGeoJSON(CooperationMember.geom, 6),
                name,
            )
            .where(CooperationMember.area_id == area_id)
            .order_by(CooperationMember.id)
        )
    ).all()
    members = []
    for kind, code, member_name, km, approximate, geojson, unit_name in rows:
        member: dict[str, Any] = {"kind": kind}
        if kind == "polygon":
            member |= {
                "name": member_name,
                "approximate": approximate,
                "geometry": orjson.loads(geojson),
            }
        else:
            member |= {"code": code, "name": unit_name if kind == "jurisdiction" else member_name}
            if kind == "border_segment":
                member["border_km"] = km
        members.append(member)
    return members


def _extent(geom: Any) -> Any:
    box = func.ST_Extent(geom)
    return (func.ST_XMin(box), func.ST_YMin(box), func.ST_XMax(box), func.ST_YMax(box))


async def bbox(session: AsyncSession, area_id: int) -> list[float] | None:
    """A lon/lat box around every member (for a map to frame the area): the units' outlines
    (every era of a code), the drawn polygons, and each border strip's segment widened by the
    strip's width."""
    m, j = CooperationMember, Jurisdiction
    units = select(m.code).where(m.area_id == area_id, m.kind == "jurisdiction")
    boxes: list[Any] = [
        (await session.execute(select(*_extent(j.geom)).where(j.code.in_(units)))).one(),
        (
            await session.execute(
                select(*_extent(m.geom)).where(m.area_id == area_id, m.kind == "polygon")
            )
        ).one(),
    ]
    strips = (
        await session.execute(
            select(m.border_km, *_extent(BorderSegment.geom))
            .join(BorderSegment, BorderSegment.code == m.code)
            .where(m.area_id == area_id, m.kind == "border_segment")
            .group_by(m.id, m.border_km)
        )
    ).all()
    for km, x1, y1, x2, y2 in strips:
        bounds = (float(x1), float(y1), float(x2), float(y2))
        boxes.append(spatial.box_around(bounds, float(km) * 1000))
    found = [b for b in boxes if b is not None and b[0] is not None]
    if not found:
        return None
    return [
        min(float(b[0]) for b in found),
        min(float(b[1]) for b in found),
        max(float(b[2]) for b in found),
        max(float(b[3]) for b in found),
    ]


def _area_json(area: CooperationArea) -> dict[str, Any]:
    return {
        "id": area.id,
        "name": area.name,
        "name_en": area.name_en,
        "purpose": area.purpose,
        "lead_unit": area.lead_unit,
        "valid_from": area.valid_from.isoformat() if area.valid_from else None,
        "valid_to": area.valid_to.isoformat() if area.valid_to else None,
        "in_force": _in_force(area, eras.today()),
        "example": area.example,
        "source": area.source,
        "version": area.version,
    }


def _in_force(area: CooperationArea, on: date) -> bool:
    return (area.valid_from is None or area.valid_from <= on) and (
        area.valid_to is None or on < area.valid_to
    )


async def list_areas(session: AsyncSession, *, on: date | None = None) -> list[dict[str, Any]]:
    """Every area (or those in force on `on`), with its member count."""
    a = CooperationArea
    count = (
        select(func.count()).where(CooperationMember.area_id == a.id).correlate(a).scalar_subquery()
    )
    where = eras.in_force(a, on) if on is not None else true()
    rows = (await session.execute(select(a, count).where(where).order_by(a.id))).all()
    return [_area_json(area) | {"member_count": int(n)} for area, n in rows]


async def create(
    session: AsyncSession, *, body: AreaIn, actor: str, example: bool = False,
    source: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A new area; audited. Nothing is written when a member is wrong."""
    shapes = await _checked(session, body.members)
    area = CooperationArea(
        **{f: getattr(body, f) for f in FIELDS},
        example=example,
        source=source,
        created_by=actor,
        updated_by=actor,
    )
    session.add(area)
    await session.flush()
    await _write_members(session, area.id, body.members, shapes)
    after = await get(session, area.id)
    await record(
        session=session, actor=actor, action="cooperation_create",
        entity_type="cooperation_area", entity_id=str(area.id), after=after,
    )  # fmt: skip
    return after


async def update(
    session: AsyncSession,
    *,
    area_id: int,
    patch: AreaPatch,
    expected_version: int | None,
    actor: str,
    action: str = "cooperation_update",
) -> dict[str, Any]:
    """Change an area (If-Match on its version); audited with the state before and after."""
    area = await session.get(CooperationArea, area_id, with_for_update=True)
    if area is None:
        raise NotFound(f"no cooperation area {area_id}")
    if expected_version is not None and area.version != expected_version:
        raise PreconditionFailed(
            f"cooperation area {area_id} is at version {area.version}, not {expected_version}"
        )
    shapes = await _checked(session, patch.members) if patch.members is not None else []
    before = await get(session, area_id)
    given = patch.model_fields_set
    if "name" in given and patch.name is None:
        raise InvalidInput("name cannot be removed", field="name")
    valid_from = patch.valid_from if "valid_from" in given else area.valid_from
    valid_to = patch.valid_to if "valid_to" in given else area.valid_to
    if valid_from and valid_to and valid_to <= valid_from:
        raise InvalidInput("valid_to must be after valid_from", field="valid_to")
    for f in FIELDS:
        if f in given:
            setattr(area, f, getattr(patch, f))
    if patch.members is not None:
        await session.execute(delete(CooperationMember).where(CooperationMember.area_id == area_id))
        await _write_members(session, area_id, patch.members, shapes)
    area.version += 1
    area.updated_by = actor
    area.updated_at = func.now()
    await session.flush()
    await session.refresh(area)
    after = await get(session, area_id)
    await record(
        session=session, actor=actor, action=action,
        entity_type="cooperation_area", entity_id=str(area_id), before=before, after=after,
    )  # fmt: skip
    return after


async def end(
    session: AsyncSession,
    *,
    area_id: int,
    on: date | None,
    expected_version: int | None,
    actor: str,
) -> dict[str, Any]:
    """End an area on `on` (default today, Vietnam's calendar): it stays, with its valid_to."""
    day = on or eras.today()
    area = await session.get(CooperationArea, area_id)
    if area is None:
        raise NotFound(f"no cooperation area {area_id}")
    if area.valid_to is not None and area.valid_to <= day:
        raise Conflict(f"cooperation area {area_id} already ended on {area.valid_to}")
    if area.valid_from is not None and day <= area.valid_from:
        raise InvalidInput(
            f"an area that starts on {area.valid_from} cannot end on {day}", field="valid_to"
        )
    return await update(
        session,
        area_id=area_id,
        patch=AreaPatch(valid_to=day),
        expected_version=expected_version,
        actor=actor,
        action="cooperation_end",
    )


def _holds(member: Any) -> ColumnElement[bool]:
    """SQL: the incident lies in this one member (the parts of filters.in_area)."""
    if member.kind == "jurisdiction":
        return in_jurisdiction(str(member.code))
    if member.kind == "border_segment":
        return on_border_strip(str(member.code), float(member.border_km))
    return in_polygon(str(member.wkt))


async def summary(session: AsyncSession, *, area_id: int, filt: IncidentFilter) -> dict[str, Any]:
    """Incidents of the area visible to the reader (with `filt`'s time and other filters):
    count, clearance rate, share of the national total (national readers only: a scoped key
    does not learn the country's count), by member and by month (Vietnam's calendar)."""
    area = _area_json(await _found(session, area_id))
    shown = await _members(session, area_id)
    filt = replace(filt, area=await members_of(session, area_id))
    i = Incident
    where = filt.conditions()
    m = CooperationMember
    members = (
        await session.execute(
            select(m.id, m.kind, m.code, m.border_km, func.ST_AsText(m.geom).label("wkt"))
            .where(m.area_id == area_id)
            .order_by(m.id)
        )
    ).all()
    per_member = [func.count().filter(_holds(member)) for member in members]
    total, cleared, *counts = (
        await session.execute(
            select(func.count(), func.count().filter(i.status.in_(CLEARED)), *per_member).where(
                *where
            )
        )
    ).one()
    national = None
    if filt.scope.national:
        everywhere = IncidentFilter(
            scope=filt.scope, start=filt.start, end=filt.end, categories=filt.categories,
            statuses=filt.statuses, severity_min=filt.severity_min,
        )  # fmt: skip
        national = int(
            (
                await session.execute(select(func.count()).where(*everywhere.conditions()))
            ).scalar_one()
        )
    month = func.to_char(func.timezone(str(rules.local_zone()), i.occurred_at), "YYYY-MM")
    by_month = (
        await session.execute(
            select(month, func.count()).where(*where).group_by(month).order_by(month)
        )
    ).all()
    by_member = [
        {k: v for k, v in member.items() if k in ("kind", "code", "name")} | {"incidents": int(n)}
        for member, n in zip(shown, counts, strict=True)
    ]
    return {
        "area": {k: area[k] for k in SUMMARY_AREA_FIELDS},
        "datetime": {
            "start": filt.start.isoformat() if filt.start else None,
            "end": filt.end.isoformat() if filt.end else None,
        },
        "incidents": int(total),
        "cleared": int(cleared),
        "clearance_rate": round(cleared / total, 4) if total else None,
        "national_total": national,
        "share_of_national": round(total / national, 4) if national else None,
        "by_member": by_member,
        "by_month": [{"month": m, "incidents": int(n)} for m, n in by_month],
        "time_zone": str(rules.local_zone()),
    }
