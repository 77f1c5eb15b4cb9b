"""The OGC items queries: one SQL statement per page, GeoJSON built in PostgreSQL.

The same query serves every collection (collections.Source gives the FROM clause, the columns
and the queryables). Paging is limit/offset over a total order (the sort keys, then the
Feature id), so following `next` links visits every match exactly once while the data stays
still. numberMatched costs a count; it is given on the first page when the count stays under
COUNT_CAP (counted in the page statement itself), and free on the last page.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import shapely
from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    Select,
    Text,
    case,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Identity
from app.cooperation import service as cooperation
from app.db import LEADER_ONLY
from app.errors import NotFound
from app.geo import spatial
from app.incidents.filters import in_area
from app.jurisdictions import eras
from app.jurisdictions.models import Jurisdiction
from app.ogc import cql
from app.ogc.collections import INCIDENTS, Info, Source
from app.ogc.params import ItemsQuery

# above this, numberMatched is left out of a first page: matches scattered over the table cost
# a heap visit each, and counting them costs more than the page (docs/performance.md)
COUNT_CAP = 10_000


@dataclass(frozen=True)
class Page:
    """One page of Features as comma-joined GeoJSON text."""

    features: bytes
    returned: int
    more: bool
    matched: int | None


def conditions(source: Source, query: ItemsQuery) -> list[ColumnElement[bool]]:
    """The SQL conditions of a request: the collection's own (scope), then the parameters."""
    out: list[ColumnElement[bool]] = list(source.where)
    if query.area is not None:
        out.append(in_area(query.area))
    if query.start is None and query.end is None:
        out += source.default_where
    if query.bbox is not None:
        out.append(spatial.intersects_bbox(source.geom, query.bbox))
    if (query.start or query.end) and source.period is not None:
        out += _period(source, query.start, query.end)
    for name, value in query.equals.items():
        out.append(source.queryables[name].expr == value)
    if query.filter is not None:
        out.append(cql.translate(query.filter, source.queryables))
    if query.near is not None:
        lon, lat, km = query.near
        out.append(spatial.within_metres(source.geom, shapely.Point(lon, lat), km * 1000))
    return out


def _period(
    source: Source, start: datetime | None, end: datetime | None
) -> list[ColumnElement[bool]]:
    """Features whose time (instant or [from, to] with open NULL ends) meets [start, end].

    A period of dates (jurisdictions: valid_from, valid_to) is days of Vietnam's calendar with
    an exclusive end: the moments are read as days in Vietnam, and a unit whose valid_to is the
    first day asked for is no longer in force then."""
    assert source.period is not None
    first, last = source.period
    dates = isinstance(first.type, Date)
    lo: Any = _day(start) if dates and start else start
    hi: Any = _day(end) if dates and end else end
    out: list[ColumnElement[bool]] = []
    if hi is not None:
        out.append(first <= hi if first is last else (first.is_(None) | (first <= hi)))
    if lo is not None:
        if first is last:
            out.append(last >= lo)
        elif source.period_end_exclusive:
            out.append(last.is_(None) | (last > lo))
        else:
            out.append(last.is_(None) | (last >= lo))
    return out


def _day(moment: datetime) -> date:
    """The day of Vietnam's calendar of a moment (the validity dates of its units)."""
    return moment.astimezone(eras.VIETNAM_TIME).date()


def _order(source: Source, query: ItemsQuery) -> list[Any]:
    if not query.sortby:
        keys = list(source.order)
    else:
        keys = [
            source.queryables[n].expr.desc() if desc else source.queryables[n].expr.asc()
            for n, desc in query.sortby
        ]
    return [*keys, source.id]  # a total order: pages never overlap or skip


def page_statement(source: Source, query: ItemsQuery) -> Select[Any]:
    """The page in one statement: (comma-joined Features, rows in the page, rows read, the
    capped count or NULL). One row more than the page is read to learn whether a next page
    exists; the count runs only on a first page that has one (PostgreSQL evaluates the
    InitPlan only when the CASE reaches it), so no request costs a second round trip."""
    conds = conditions(source, query)
    order = _order(source, query)
    rn = func.row_number().over(order_by=order)
    feature = cast(source.feature(query.properties), Text).label("f")
    if query.offset == 0 and source.feature_from is None:
        rows = (
            select(feature, rn.label("rn"))
            .select_from(source.from_)
            .where(*conds)
            .order_by(*order)
            .limit(query.limit + 1)
            .subquery()
        )
    else:
        # PostgreSQL would build the Feature of every row OFFSET skips (a GIS client's late
        # pages skip tens of thousands), and join every match to the names a Feature needs:
        # page the ids first, then build only the page
        keys = (
            select(source.id.label("k"), rn.label("rn"))
            .select_from(source.from_)
            .where(*conds)
            .order_by(*order)
            .offset(query.offset)
            .limit(query.limit + 1)
            .subquery("page_keys")
        )
        rows = (
            select(feature, keys.c.rn)
            .select_from(_feature_from(source))
            .join(keys, source.id == keys.c.k)
            # incidents: the id is unique; other collections' ids may repeat (the versions of
            # a jurisdiction): the conditions pick the page's rows again
            .where(*(source.where if source.feature_from is not None else conds))
            .subquery()
        )
    in_page = rows.c.rn <= query.offset + query.limit
    returned, fetched = func.count().filter(in_page), func.count()
    counted: ColumnElement[Any] = literal(None, Integer)
    if query.offset == 0:
        capped = select(literal(1)).select_from(source.from_).where(*conds).limit(COUNT_CAP + 1)
        total = select(func.count()).select_from(capped.subquery()).scalar_subquery()
        counted = case((fetched > returned, total), else_=None)
    return select(
        func.string_agg(rows.c.f, aggregate_order_by(literal(","), rows.c.rn)).filter(in_page),
        returned,
        fetched,
        counted,
    )


async def items(*, session: AsyncSession, source: Source, query: ItemsQuery) -> Page:
    """One page of matching Features (and numberMatched when cheap)."""
    stmt = page_statement(source, query)
    conn = await session.connection()  # Core: no ORM entities, less Python per page
    await conn.execute(LEADER_ONLY)  # this request's transaction only
    text, returned, fetched, counted = (await conn.execute(stmt)).one()
    more = int(fetched) > int(returned)
    matched: int | None = None
    if not more and (returned or query.offset == 0):
        matched = query.offset + int(returned)  # the last page: free
    elif counted is not None and int(counted) <= COUNT_CAP:
        matched = int(counted)  # a first page with more to come, under the cap
    return Page((text or "").encode(), int(returned), more, matched)


async def item(*, session: AsyncSession, source: Source, feature_id: str) -> bytes:
    """One Feature by id (NotFound when missing or out of scope: the same answer)."""
    key: Any = feature_id
    if source.id_type == "uuid":
        try:
            key = uuid.UUID(feature_id)
        except ValueError:
            key = None
    stmt = (
        select(cast(source.feature(), Text))
        .select_from(_feature_from(source))
        .where(*source.where, source.id == key)
        .order_by(*source.item_order)
        .limit(1)
    )
    value = None if key is None else (await session.execute(stmt)).scalar()
    if value is None:
        raise NotFound(
            f"no feature '{feature_id[:64]}' in collection '{source.info.id}'",
            id=feature_id[:64],
        )
    return str(value).encode()


def _feature_from(source: Source) -> Any:
    return source.from_ if source.feature_from is None else source.feature_from


@dataclass(frozen=True)
class Extent:
    """Spatial (lon/lat box) and temporal (ISO 8601 ends, None = open) extent."""

    bbox: tuple[float, float, float, float] | None
    interval: tuple[str | None, str | None] | None


async def extent(
    *, session: AsyncSession, info: Info, source: Source, principal: Identity | None, home: str
) -> Extent:
    """The extent of what this principal may read in the collection.

    Incidents: the area covered (the home country, or the scope's jurisdiction or cooperation
    area and its cooperation zone) and the exact time span via the occurred_at index; a full
    ST_Extent over a million points would cost more than a page. Hot spots: the home country's
    box. Reference collections: exact."""
    if info.id == INCIDENTS:
        assert principal is not None
        box = await _covered_area(session, principal, home)
    elif info.access == "aggregate":
        box = await _box(session, select(func.ST_Extent(Jurisdiction.geom)).where(
            Jurisdiction.code == home
        ))  # fmt: skip
    else:
        box = await _box(
            session, select(func.ST_Extent(source.geom)).select_from(source.from_).where(
                *source.where, *source.default_where
            )
        )  # fmt: skip
    interval = None
    if source.period is not None:
        # every period the collection holds (a jurisdictions collection: both eras, which
        # `datetime` reaches); an open (NULL) end anywhere leaves that end open
        first, last = source.period
        ends: tuple[Any, Any] = (func.min(first), func.max(last))  # the occurred_at index
        if first is not last:
            ends = (
                case((func.bool_or(first.is_(None)), None), else_=ends[0]),
                case((func.bool_or(last.is_(None)), None), else_=ends[1]),
            )
        lo, hi = (
            await session.execute(select(*ends).select_from(source.from_).where(*source.where))
        ).one()
        interval = (_iso(lo), _iso(hi))
    return Extent(box, interval)


async def _covered_area(
    session: AsyncSession, principal: Identity, home: str
) -> tuple[float, float, float, float] | None:
    scope = principal.scope
    j = Jurisdiction
    if scope.national:
        return await _box(session, select(func.ST_Extent(j.geom)).where(j.code == home))
    if scope.area is not None:
        # every member (units of either era, polygons, strips) and the cooperation distance
        members = await cooperation.bbox(session, scope.area.id)
        if members is None:
            return None
        x1, y1, x2, y2 = members
        wide = spatial.box_around((x1, y1, x2, y2), scope.distance_m) or (x1, y1, x2, y2)
        return (round(wide[0], 6), round(wide[1], 6), round(wide[2], 6), round(wide[3], 6))
    box = await _box(session, select(func.ST_Extent(j.geom)).where(j.code == scope.code))
    if box is None or scope.zone_bbox is None:
        return box
    z = scope.zone_bbox
    return min(box[0], z[0]), min(box[1], z[1]), max(box[2], z[2]), max(box[3], z[3])


async def _box(session: AsyncSession, stmt: Any) -> tuple[float, float, float, float] | None:
    ext = stmt.subquery().c[0]
    row = (
        await session.execute(
            select(func.ST_XMin(ext), func.ST_YMin(ext), func.ST_XMax(ext), func.ST_YMax(ext))
        )
    ).one()
    if row[0] is None:
        return None
    return (round(row[0], 6), round(row[1], 6), round(row[2], 6), round(row[3], 6))


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00Z"
    return None
