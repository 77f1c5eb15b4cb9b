"""Incident statistics: counts, clearance rate and share per group, within the caller's scope.

Definitions (docs/analysis.md):
- `count`: matching incidents in the group (every status, unless the status filter says
  otherwise);
- `solved`: those whose status is `solved` or `closed` (both count as cleared);
- `clearance_rate`: solved ÷ count, null when the group has no incident;
- `share`: count ÷ total, where total is every incident matching the same filters inside the
  caller's scope (the national total for a national key); null when the total is 0.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput
from app.geo.geojson import Expr
from app.incidents.filters import IncidentFilter
from app.incidents.models import STATUSES, Category, Incident
from app.jurisdictions.models import Jurisdiction

GroupBy = Literal["jurisdiction", "category", "month", "status", "border_segment"]
Level = Literal["province", "country"]

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


def _key(group_by: GroupBy, level: Level, tz: str) -> Expr:
    i = Incident
    if group_by == "jurisdiction":
        return i.province_code if level == "province" else i.country_code
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


async def _names(session: AsyncSession, group_by: GroupBy, keys: list[str]) -> dict[str, str]:
    if group_by == "category":
        rows = await session.execute(
            select(Category.code, Category.name_en).where(Category.code.in_(keys))
        )
        return {r[0]: r[1] for r in rows}
    if group_by == "jurisdiction":
        j = Jurisdiction
        rows = await session.execute(
            select(j.code, j.name)
            .where(j.code.in_(keys))
            .order_by(j.code, j.valid_from.asc().nulls_first())
        )
        return {r[0]: r[1] for r in rows}  # the newest version of a code comes last, and wins
    return {}


def _sort_key(group_by: GroupBy, g: dict[str, Any]) -> tuple[Any, ...]:
    missing = g["key"] is None
    if group_by == "month":
        return (g["key"],)
    if group_by == "status":
        return (missing, STATUSES.index(g["key"]) if not missing else 0)
    return (missing, -g["count"], g["key"] or "")


async def stats(
    *,
    session: AsyncSession,
    filt: IncidentFilter,
    group_by: GroupBy,
    level: Level = "province",
    tz: str = DEFAULT_TZ,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Count, solved, clearance rate and share of each group of the matching incidents."""
    matching = (
        select(_key(group_by, level, tz).label("key"), Incident.status)
        .where(*filt.conditions())
        .subquery()
    )
    cleared = func.count().filter(matching.c.status.in_(CLEARED))
    stmt = select(matching.c.key, func.count().label("n"), cleared.label("solved")).group_by(
        matching.c.key
    )
    rows = [(r.key, int(r.n), int(r.solved)) for r in await session.execute(stmt)]
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
            g["name"] = names.get(k) if k is not None else None
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
        out["level"] = level
    if group_by == "month":
        out["tz"] = tz
    out |= {
        "scope": filt.scope.code,
        "total": total,
        "solved": solved,
        "clearance_rate": _ratio(solved, total),
        "groups": groups,
    }
    return out
