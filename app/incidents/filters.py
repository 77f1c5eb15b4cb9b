"""The incident filters shared by lists, exports and (later) analysis, and the list cursor."""

from __future__ import annotations

import base64
import binascii
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import Depends, Query
from sqlalchemy import ColumnElement, func, literal, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import String

from app.auth.deps import CurrentPrincipal
from app.auth.scope import Scope
from app.cooperation import members
from app.cooperation.members import AreaMembers, members_of
from app.db import SessionDep
from app.errors import InvalidInput
from app.geo import spatial
from app.incidents.models import STATUSES, Category, Incident

MAX_LIST = 50  # values in one comma-separated filter


# The columns filters read: the incident table, or another with the same column names (the
# live feed's event log, app/events/, aliased as Incident)
Rows = type[Incident]


def visible(scope: Scope, i: Rows = Incident) -> ColumnElement[bool]:
    """SQL: the incident is visible in `scope` (app/auth/scope.py: inside its jurisdiction or
    cooperation area, or within the cooperation distance of it)."""
    return scope.condition(
        i.jurisdiction_path,
        i.geom,
        border_segment=i.border_segment,
        border_distance_km=i.border_distance_km,
    )


def in_jurisdiction(code: str, i: Rows = Incident) -> ColumnElement[bool]:
    """SQL: the incident lies in the jurisdiction `code` (or a unit below it: its jurisdiction
    path holds the code)."""
    return i.jurisdiction_path.contains(literal([code], ARRAY(String(32))))


def in_area(area: AreaMembers, i: Rows = Incident) -> ColumnElement[bool]:
    """SQL: the incident lies in the cooperation area: in one of its jurisdictions (either era;
    GIN on the path), on one of its border strips (nearest border that segment, within the
    strip's width; btree on both), or in one of its drawn polygons (GiST on the positions)."""
    return members.holds(
        area,
        path=i.jurisdiction_path,
        geom=i.geom,
        border_segment=i.border_segment,
        border_distance_km=i.border_distance_km,
    )


def on_border_strip(segment: str, km: float, i: Rows = Incident) -> ColumnElement[bool]:
    """SQL: the incident's nearest national border is `segment`, at most `km` from it."""
    return members.on_border_strip(segment, km, i.border_segment, i.border_distance_km)


def in_polygon(wkt: str, i: Rows = Incident) -> ColumnElement[bool]:
    """SQL: the incident lies in the polygon (WKT, WGS 84; ST_Intersects uses the GiST index
    of the positions, so an OR of these and the other members is a bitmap OR)."""
    return members.in_polygon(wkt, i.geom)


MAX_TEXT = 200  # characters of q=


def folded(expr: Any) -> ColumnElement[str]:
    """SQL: text without diacritics or case, as the trigram indexes of descriptions and units
    hold it (migration 0020; CQL2's CASEI(ACCENTI(…)) is this too, app/ogc/cql.py)."""
    result: ColumnElement[str] = func.lower(func.text_accenti(expr))
    return result


def text_pattern(q: str) -> ColumnElement[str]:
    """SQL: the LIKE pattern of `q` (its % and _ plain characters), folded."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return folded(literal(f"%{escaped}%"))


async def categories_named(session: AsyncSession, q: str) -> tuple[str, ...]:
    """The codes of the categories whose Vietnamese or English name contains `q`, accents
    and case ignored (a few dozen rows: read once per request)."""
    pattern = text_pattern(q)
    rows = await session.execute(
        select(Category.code).where(
            or_(
                folded(Category.name_vi).like(pattern, escape="\\"),
                folded(Category.name_en).like(pattern, escape="\\"),
            )
        )
    )
    return tuple(sorted(rows.scalars()))


def matches_text(q: str, categories: tuple[str, ...]) -> ColumnElement[bool]:
    """SQL: the incident's description or unit contains `q`, accents and case ignored
    ('buon lau' finds 'Buôn lậu'), or it is of one of `categories` (those named so): each arm
    through an index (trigram, trigram, btree), so that a rare word is not a scan of every
    incident."""
    pattern = text_pattern(q)
    arms = [
        folded(Incident.description).like(pattern, escape="\\"),
        folded(Incident.unit).like(pattern, escape="\\"),
    ]
    if categories:
        arms.append(Incident.category.in_(categories))
    return or_(*arms)


@dataclass(frozen=True, kw_only=True)
class IncidentFilter:
    """Which incidents a request is about: always within the principal's scope, never deleted."""

    scope: Scope
    bbox: tuple[float, float, float, float] | None = None
    start: datetime | None = None
    end: datetime | None = None
    categories: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    severity_min: int | None = None
    jurisdiction: str | None = None
    area: AreaMembers | None = None  # cooperation=<id>
    border_km_max: float | None = None
    text: str | None = None  # q=: words in the description, the unit or the category's names
    text_categories: tuple[str, ...] = ()  # the categories whose names hold `text`

    def conditions(self, i: Rows = Incident) -> list[ColumnElement[bool]]:
        """SQL conditions, all index-friendly (GiST bbox, btree time, GIN jurisdiction path).
        `i`: the rows they read (Incident, or the event log aliased as Incident: it has no
        deleted incidents to leave out)."""
        out: list[ColumnElement[bool]] = [visible(self.scope, i)]
        if i is Incident:
            out.insert(0, i.deleted_at.is_(None))
        if self.bbox:
            out.append(spatial.intersects_bbox(i.geom, self.bbox))
        if self.start is not None:
            out.append(i.occurred_at >= self.start)
        if self.end is not None:
            out.append(i.occurred_at <= self.end)
        if self.categories:
            out.append(i.category.in_(self.categories))
        if self.statuses:
            out.append(i.status.in_(self.statuses))
        if self.severity_min is not None:
            out.append(i.severity >= self.severity_min)
        if self.jurisdiction:
            out.append(in_jurisdiction(self.jurisdiction, i))
        if self.area is not None:
            out.append(in_area(self.area, i))
        if self.border_km_max is not None:
            out.append(i.border_distance_km <= self.border_km_max)
        if self.text:
            if i is not Incident:  # the event log has no descriptions (its route refuses q=)
                raise InvalidInput("q= is not available on the live feed", field="q")
            out.append(matches_text(self.text, self.text_categories))
        return out


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """`minLon,minLat,maxLon,maxLat` in degrees (WGS 84)."""
    parts = text.split(",")
    if len(parts) != 4:
        raise InvalidInput(
            f"bbox needs 4 numbers minLon,minLat,maxLon,maxLat; got {len(parts)}", field="bbox"
        )
    try:
        x1, y1, x2, y2 = (float(p) for p in parts)
    except ValueError as exc:
        raise InvalidInput(f"bbox values must be numbers: '{text}'", field="bbox") from exc
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise InvalidInput("bbox values must be finite", field="bbox")
    if not (-180 <= x1 <= 180 and -180 <= x2 <= 180 and -90 <= y1 <= 90 and -90 <= y2 <= 90):
        raise InvalidInput("bbox is outside lon [-180, 180] / lat [-90, 90]", field="bbox")
    if x1 > x2 or y1 > y2:
        raise InvalidInput(
            "bbox minimum exceeds maximum (order is minLon,minLat,maxLon,maxLat)", field="bbox"
        )
    return x1, y1, x2, y2


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"datetime '{text}' is not RFC 3339 (e.g. 2024-05-01T00:00:00Z)", field="datetime"
        ) from exc
    if value.tzinfo is None:
        raise InvalidInput(f"datetime '{text}' needs a time zone (Z or +07:00)", field="datetime")
    return value


# the start QGIS 3.22's OAPIF provider sends for `occurred_at < t` (datetime=0000-01-01…/t):
# RFC 3339 allows year 0000, Python's datetime does not; before anything, it is an open start
YEAR_ZERO = "0000-"


def parse_datetime(text: str) -> tuple[datetime | None, datetime | None]:
    """An RFC 3339 instant, or an interval `start/end` with `..` (or empty) for an open end;
    a start in year 0000 is an open start (what QGIS 3.22 sends for "before t")."""
    if "/" not in text:
        moment = _instant(text)
        return moment, moment
    a, _, b = text.partition("/")
    if "/" in b:
        raise InvalidInput("datetime interval has more than one '/'", field="datetime")
    start = None if a in ("", "..") or a.startswith(YEAR_ZERO) else _instant(a)
    end = None if b in ("", "..") else _instant(b)
    if start is None and end is None:
        raise InvalidInput("datetime interval '../..' is open at both ends", field="datetime")
    if start and end and start > end:
        raise InvalidInput("datetime interval starts after it ends", field="datetime")
    return start, end


def _codes(text: str | None, field: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if not text:
        return ()
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if len(values) > MAX_LIST:
        raise InvalidInput(f"{field} lists more than {MAX_LIST} values", field=field)
    for v in values:
        if not v.replace("_", "").isalnum() or not v.isascii() or len(v) > 64:
            raise InvalidInput(f"{field} value '{v[:80]}' is not a code", field=field)
        if allowed is not None and v not in allowed:
            raise InvalidInput(
                f"{field} '{v}' is not one of {', '.join(allowed)}", field=field, allowed=allowed
            )
    return values


async def incident_filter(
    principal: CurrentPrincipal,
    session: SessionDep,
    bbox: Annotated[
        str | None, Query(description="minLon,minLat,maxLon,maxLat (WGS 84)", max_length=200)
    ] = None,
    dt: Annotated[
        str | None,
        Query(
            alias="datetime",
            max_length=100,
            description="RFC 3339 instant or interval start/end; `..` for an open end",
        ),
    ] = None,
    category: Annotated[
        str | None, Query(max_length=2000, description="category codes, comma-separated")
    ] = None,
    status: Annotated[
        str | None, Query(max_length=500, description="statuses, comma-separated")
    ] = None,
    severity_min: Annotated[int | None, Query(ge=1, le=5)] = None,
    jurisdiction: Annotated[
        str | None,
        Query(max_length=32, pattern=r"^[A-Za-z0-9_.-]+$", description="code at any level"),
    ] = None,
    cooperation: Annotated[
        int | None,
        Query(ge=1, le=2**31 - 1, description="id of a cooperation area (/cooperation-areas)"),
    ] = None,
    border_km_max: Annotated[
        float | None, Query(ge=0, le=20_000, description="distance to the national border, km")
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=MAX_TEXT,
            description="text in the description, the unit or the category's name, accents and"
            " case ignored ('buon lau' finds 'Buôn lậu')",
        ),
    ] = None,
) -> IncidentFilter:
    """Parse the shared filter parameters (422 problem+json naming the parameter on error)."""
    start, end = parse_datetime(dt) if dt else (None, None)
    text = (q.strip() or None) if q else None
    return IncidentFilter(
        scope=principal.scope,
        bbox=parse_bbox(bbox) if bbox else None,
        start=start,
        end=end,
        categories=_codes(category, "category"),
        statuses=_codes(status, "status", STATUSES),
        severity_min=severity_min,
        jurisdiction=jurisdiction,
        area=await members_of(session, cooperation) if cooperation is not None else None,
        border_km_max=border_km_max,
        text=text,
        text_categories=await categories_named(session, text) if text else (),
    )


FilterDep = Annotated[IncidentFilter, Depends(incident_filter)]


@dataclass(frozen=True)
class Cursor:
    """Keyset position in the list order (occurred_at DESC, id DESC)."""

    occurred_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        """An opaque URL-safe token."""
        raw = orjson.dumps([self.occurred_at.isoformat(), str(self.id)])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Parse a token made by encode(); anything else is a clear 422."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            at, ident = orjson.loads(raw)
            return cls(datetime.fromisoformat(at), uuid.UUID(ident))
        except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError) as exc:
            raise InvalidInput("cursor is not one this service issued", field="cursor") from exc
