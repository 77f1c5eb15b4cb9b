"""Incident statistics: counts, clearance rate and share per group, within the caller's scope.

Definitions (docs/analysis.md):
- `count`: matching incidents in the group (every status, unless the status filter says
  otherwise);
- `solved`: those whose status is `solved` or `closed` (both count as cleared);
- `clearance_rate`: solved ÷ count, null when the group has no incident;
- `share`: count ÷ total, where total is every incident matching the same filters inside the
  caller's scope (the national total for a national key); null when the total is 0.

`group_by=jurisdiction` groups by today's units (the derived `province_code` / `commune_code`)
unless `at` names a day: then by the units of that level in force that day, read from the
incident's jurisdiction path (every unit of every era that holds it), so the same incidents can
be counted by the 63 provinces of before 1 July 2025 or by the 34 since.
"""

from __future__ import annotations

import asyncio
import zoneinfo
from datetime import UTC, date, datetime
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    String,
    any_,
    bindparam,
    cast,
    func,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.analysis import snapshot
from app.analysis.snapshot import Snapshot
from app.errors import InvalidInput
from app.geo.geojson import Expr
from app.incidents.filters import IncidentFilter
from app.incidents.models import STATUSES, Category, Incident
from app.jurisdictions.eras import in_force
from app.jurisdictions.models import Jurisdiction

GroupBy = Literal["jurisdiction", "category", "month", "status", "border_segment"]
Level = Literal["province", "commune", "country"]

CLEARED = ("solved", "closed")
DEFAULT_TZ = "Asia/Ho_Chi_Minh"
FIRST_MONTH = date(1900, 1, 1)  # incidents cannot be older (a table constraint)


def time_zone(name: str) -> str:
    """An IANA time zone name, checked (InvalidInput naming `tz` otherwise)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(
            f"tz '{name[:64]}' is not an IANA time zone (e.g. Asia/Ho_Chi_Minh, UTC)", field="tz"
        ) from exc
    return name


TODAYS_UNIT: dict[str, Any] = {
    "province": Incident.province_code,
    "commune": Incident.commune_code,
    "country": Incident.country_code,
}


def _key(group_by: GroupBy, level: Level, tz: str) -> Expr:
    i = Incident
    if group_by == "jurisdiction":
        unit: Expr = TODAYS_UNIT[level]
        return unit
    if group_by == "month":
        return func.date_trunc("month", func.timezone(tz, i.occurred_at))
    if group_by == "category":
        return i.category
    if group_by == "status":
        return i.status
    return i.border_segment


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _month_index(d: date) -> int:
    return d.year * 12 + d.month - 1


def _month(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def _local_month(moment: datetime, tz: str) -> date:
    local = moment.astimezone(zoneinfo.ZoneInfo(tz))
    return date(local.year, local.month, 1)


def _month_span(
    found: list[date], filt: IncidentFilter, tz: str, now: datetime
) -> tuple[int, int] | None:
    """First and last month of the series: the data's months, widened to the datetime filter's
    bounds (clipped to 1900-01 .. the current month)."""
    lo = [_month_index(d) for d in found]
    hi = list(lo)
    if filt.start is not None:
        lo.append(max(_month_index(_local_month(filt.start, tz)), _month_index(FIRST_MONTH)))
    if filt.end is not None:
        hi.append(
            min(_month_index(_local_month(filt.end, tz)), _month_index(_local_month(now, tz)))
        )
    if not lo or not hi:
        return None
    first, last = min(lo), max(hi)
    return (first, last) if first <= last else None


def _grouped(group_by: GroupBy, level: Level, tz: str, filt: IncidentFilter) -> Select[Any]:
    """Key, count and cleared count of each group of the matching incidents."""
    matching = (
        select(_key(group_by, level, tz).label("key"), Incident.status)
        .where(*filt.conditions())
        .subquery()
    )
    return select(
        matching.c.key, func.count().label("n"), _cleared(matching.c.status).label("solved")
    ).group_by(matching.c.key)


def _cleared(status: Any) -> ColumnElement[int]:
    return func.count().filter(status.in_(CLEARED))


async def _units_in_force(session: AsyncSession, level: Level, at: date) -> list[str]:
    j = Jurisdiction
    found = await session.execute(
        select(j.code).where(j.level == level, in_force(j, at)).distinct().order_by(j.code)
    )
    return list(found.scalars())


def _grouped_at(level: Level, filt: IncidentFilter, codes: list[str]) -> CompoundSelect[Any]:
    """Groups by the units `codes` (those of `level` in force on a day): each incident's path
    (every unit of every era that holds it) unnested and matched against the few codes in
    force that day (63 provinces before 1 July 2025, 34 since), a constant array PostgreSQL
    hashes (one lookup per path element, never a query per row); the incidents whose path
    holds none of them (abroad, far at sea, a commune before the communes existed) form the
    null group. A group counts what `jurisdiction=<its code>` counts with the same filters."""
    i = Incident
    # inlined (literal_execute): a constant array is what PostgreSQL hashes for `= ANY`
    units = cast(
        bindparam("units", codes, type_=ARRAY(String(32)), literal_execute=True), ARRAY(String(32))
    )
    path = func.unnest(i.jurisdiction_path).table_valued("code").render_derived("path")
    placed = (
        select(
            path.c.code.label("key"), func.count().label("n"), _cleared(i.status).label("solved")
        )
        .select_from(i)
        .join(path, true())
        .where(*filt.conditions(), path.c.code == any_(units))
        .group_by(path.c.code)
    )
    nowhere = select(
        null().label("key"), func.count().label("n"), _cleared(i.status).label("solved")
    ).where(*filt.conditions(), ~func.coalesce(i.jurisdiction_path.overlap(units), False))
    return union_all(placed, nowhere)


async def _names(
    session: AsyncSession, group_by: GroupBy, keys: list[str]
) -> dict[str, tuple[str, str | None]]:
    """English and Vietnamese names of the groups' keys."""
    if group_by == "category":
        rows = await session.execute(
            select(Category.code, Category.name_en, Category.name_vi).where(Category.code.in_(keys))
        )
        return {r[0]: (r[1], r[2]) for r in rows}
    if group_by == "jurisdiction":
        j = Jurisdiction
        rows = await session.execute(
            select(j.code, j.name, j.name_local)
            .where(j.code.in_(keys))
            .order_by(j.code, j.valid_from.asc().nulls_first())
        )
        # the newest version of a code comes last, and wins
        return {r[0]: (r[1], r[2]) for r in rows}
    return {}


def _sort_key(group_by: GroupBy, g: dict[str, Any]) -> tuple[Any, ...]:
    missing = g["key"] is None
    if group_by == "month":
        return (g["key"],)
    if group_by == "status":
        return (missing, STATUSES.index(g["key"]) if not missing else 0)
    return (missing, -g["count"], g["key"] or "")


async def _grouped_rows(
    session: AsyncSession,
    filt: IncidentFilter,
    group_by: GroupBy,
    level: Level,
    tz: str,
    at: date | None,
) -> list[tuple[Any, int, int]]:
    """(key, count, solved) of each group, counted by PostgreSQL."""
    if group_by == "jurisdiction" and at is not None:
        units = await _units_in_force(session, level, at)
        stmt: Select[Any] | CompoundSelect[Any] = _grouped_at(level, filt, units)
    else:
        stmt = _grouped(group_by, level, tz, filt)
    found = await session.execute(stmt)
    return [(r.key, int(r.n), int(r.solved)) for r in found if r.n or r.key is not None]


async def stats(
    *,
    session: AsyncSession,
    filt: IncidentFilter,
    group_by: GroupBy,
    level: Level = "province",
    tz: str = DEFAULT_TZ,
    now: datetime | None = None,
    at: date | None = None,
    snap: Snapshot | None = None,
) -> dict[str, Any]:
    """Count, solved, clearance rate and share of each group of the matching incidents
    (`group_by=jurisdiction`: today's units of `level`, or those in force on `at`). `snap`: the
    incidents in memory (app/analysis/snapshot.py) for this filter's scope and the current
    versions; the groups it can give (category, status, month in Asia/Ho_Chi_Minh) come from it
    instead of a scan."""
    if at is not None and group_by != "jurisdiction":
        raise InvalidInput("at applies to group_by=jurisdiction only", field="at")
    rows: list[tuple[Any, int, int]] | None = None
    if snap is not None and (group_by != "month" or tz == snapshot.MONTH_TZ):
        # counted in a thread (numpy lets go of the GIL): the page's panels ask at once
        rows = await asyncio.to_thread(snapshot.grouped_rows, snap, filt, group_by)
    if rows is None:
        rows = await _grouped_rows(session, filt, group_by, level, tz, at)
    total = sum(n for _, n, _ in rows)
    solved = sum(s for _, _, s in rows)
    if group_by == "month":
        by_month = {_month_index(k.date()): (n, s) for k, n, s in rows}
        span = _month_span([_month(m) for m in by_month], filt, tz, now or datetime.now(tz=UTC))
        keyed: list[tuple[str | None, int, int]] = []
        if span is not None:
            for m in range(span[0], span[1] + 1):
                n, s = by_month.get(m, (0, 0))
                keyed.append((_month(m).strftime("%Y-%m"), n, s))
    else:
        keyed = [(k, n, s) for k, n, s in rows]
    names = await _names(session, group_by, [k for k, _, _ in keyed if k is not None])
    groups: list[dict[str, Any]] = []
    for k, n, s in keyed:
        g: dict[str, Any] = {"key": k}
        if group_by in ("jurisdiction", "category"):
            name, name_local = names.get(k, (None, None)) if k is not None else (None, None)
            g |= {"name": name, "name_local": name_local}
        g |= {
            "count": n,
            "solved": s,
            "clearance_rate": _ratio(s, n),
            "share": _ratio(n, total),
        }
        groups.append(g)
    groups.sort(key=lambda g: _sort_key(group_by, g))
    out: dict[str, Any] = {"group_by": group_by}
    if group_by == "jurisdiction":
        out |= {"level": level, "at": at.isoformat() if at else None}
    if group_by == "month":
        out["tz"] = tz
    out |= {
        "scope": filt.scope.name,
        "total": total,
        "solved": solved,
        "clearance_rate": _ratio(solved, total),
        "groups": groups,
    }
    return out
