"""Incident statistics: counts, clearance rate and share per group, within the caller's scope.

Definitions (docs/analysis.md):
- `count`: matching incidents in the group (every status, unless the status filter says
  otherwise);
- `solved`: those whose status is `solved` or `closed` (both count as cleared);
- `clearance_rate`: solved ÷ count, null when the group has no incident;
- `share`: count ÷ total, where total is every incident matching the same filters inside the
  caller's scope (the national total for a national key); null when the total is 0.

`compare=previous_period|same_period_last_year` (`compare_counts`) adds, for the same groups, the
count in a comparison period, the change, the change in percent and an exact test of whether the
change is beyond chance (docs/analysis.md, "Period comparison").

`group_by=jurisdiction` groups by today's units (the derived `province_code` / `commune_code`)
unless `at` names a day: then by the units of that level in force that day, read from the
incident's jurisdiction path (every unit of every era that holds it), so the same incidents can
be counted by the 63 provinces of before 1 July 2025 or by the 34 since.
"""

from __future__ import annotations

import asyncio
import math
import zoneinfo
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import numpy as np
from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    String,
    and_,
    any_,
    bindparam,
    cast,
    func,
    null,
    or_,
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
from app.units.stats import unit_key, unit_names

GroupBy = Literal["jurisdiction", "category", "month", "status", "border_segment", "unit"]
Level = Literal["province", "commune", "country"]
Compare = Literal["previous_period", "same_period_last_year"]

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
    if group_by == "unit":
        return unit_key()
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


# The periods counted side by side by one statement (compare=): (start, end), both inclusive
Periods = tuple[tuple[datetime, datetime], ...]


def _where(filt: IncidentFilter, periods: Periods | None) -> list[ColumnElement[bool]]:
    """The filter's conditions; with `periods`, its other conditions and a time in any of them
    (each period a range of the occurred_at index)."""
    if periods is None:
        return filt.conditions()
    wide = replace(filt, start=None, end=None)
    return [*wide.conditions(), or_(*(_within(Incident.occurred_at, p) for p in periods))]


def _within(occurred: Any, period: tuple[datetime, datetime]) -> ColumnElement[bool]:
    return and_(occurred >= period[0], occurred <= period[1])


def _counts(status: Any, occurred: Any, periods: Periods | None) -> list[Any]:
    """count (n) and cleared count (solved) of a group; with `periods`, n0, solved0, n1, …
    for each period."""
    if periods is None:
        return [func.count().label("n"), _cleared(status).label("solved")]
    out: list[Any] = []
    for j, p in enumerate(periods):
        inside = _within(occurred, p)
        out += [
            func.count().filter(inside).label(f"n{j}"),
            func.count().filter(and_(inside, status.in_(CLEARED))).label(f"solved{j}"),
        ]
    return out


def _grouped(
    group_by: GroupBy,
    level: Level,
    tz: str,
    filt: IncidentFilter,
    periods: Periods | None = None,
) -> Select[Any]:
    """Key, count and cleared count of each group of the matching incidents (with `periods`:
    of each period, in one pass over the incidents of all of them)."""
    matching = (
        select(_key(group_by, level, tz).label("key"), Incident.status, Incident.occurred_at)
        .where(*_where(filt, periods))
        .subquery()
    )
    return select(
        matching.c.key, *_counts(matching.c.status, matching.c.occurred_at, periods)
    ).group_by(matching.c.key)


def _cleared(status: Any) -> ColumnElement[int]:
    return func.count().filter(status.in_(CLEARED))


async def _units_in_force(session: AsyncSession, level: Level, at: date) -> list[str]:
    j = Jurisdiction
    found = await session.execute(
        select(j.code).where(j.level == level, in_force(j, at)).distinct().order_by(j.code)
    )
    return list(found.scalars())


def _grouped_at(
    level: Level, filt: IncidentFilter, codes: list[str], periods: Periods | None = None
) -> CompoundSelect[Any]:
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
    counts = _counts(i.status, i.occurred_at, periods)
    placed = (
        select(path.c.code.label("key"), *counts)
        .select_from(i)
        .join(path, true())
        .where(*_where(filt, periods), path.c.code == any_(units))
        .group_by(path.c.code)
    )
    nowhere = select(null().label("key"), *counts).where(
        *_where(filt, periods), ~func.coalesce(i.jurisdiction_path.overlap(units), False)
    )
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
    if group_by == "unit":
        return await unit_names(session, keys)
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
    (rows,) = await _grouped_rows_in(session, filt, group_by, level, tz, at, None)
    return rows


async def _grouped_rows_in(
    session: AsyncSession,
    filt: IncidentFilter,
    group_by: GroupBy,
    level: Level,
    tz: str,
    at: date | None,
    periods: Periods | None,
) -> list[list[tuple[Any, int, int]]]:
    """(key, count, solved) of each group, counted by PostgreSQL: for the filter (one list), or
    for each of `periods` (one list each, all counted by one statement)."""
    if group_by == "jurisdiction" and at is not None:
        units = await _units_in_force(session, level, at)
        stmt: Select[Any] | CompoundSelect[Any] = _grouped_at(level, filt, units, periods)
    else:
        stmt = _grouped(group_by, level, tz, filt, periods)
    found = (await session.execute(stmt)).all()
    if periods is None:
        return [[(r.key, int(r.n), int(r.solved)) for r in found if r.n or r.key is not None]]
    out: list[list[tuple[Any, int, int]]] = []
    for j in range(len(periods)):
        n, s = f"n{j}", f"solved{j}"
        out.append(
            [(r.key, int(r._mapping[n]), int(r._mapping[s])) for r in found if r._mapping[n]]
        )
    return out


def _group(group_by: GroupBy, key: Any, names: dict[Any, tuple[Any, Any]]) -> dict[str, Any]:
    """A group's key, with its names for the groupings that have them."""
    g: dict[str, Any] = {"key": key}
    if group_by in ("jurisdiction", "category", "unit"):
        name, name_local = names.get(key, (None, None)) if key is not None else (None, None)
        g |= {"name": name, "name_local": name_local}
    return g


def _head(group_by: GroupBy, level: Level, at: date | None, tz: str) -> dict[str, Any]:
    """What an answer says about its grouping: the level and day of jurisdictions, the zone of
    months."""
    out: dict[str, Any] = {"group_by": group_by}
    if group_by == "jurisdiction":
        out |= {"level": level, "at": at.isoformat() if at else None}
    if group_by == "month":
        out["tz"] = tz
    return out


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
        g = _group(group_by, k, names)
        g |= {
            "count": n,
            "solved": s,
            "clearance_rate": _ratio(s, n),
            "share": _ratio(n, total),
        }
        groups.append(g)
    groups.sort(key=lambda g: _sort_key(group_by, g))
    out = _head(group_by, level, at, tz)
    out |= {
        "scope": filt.scope.name,
        "total": total,
        "solved": solved,
        "clearance_rate": _ratio(solved, total),
        "groups": groups,
    }
    return out


# ---- period comparison (compare=) ------------------------------------------------------------

VIETNAM = zoneinfo.ZoneInfo(DEFAULT_TZ)
TICK = timedelta(microseconds=1)  # PostgreSQL's resolution: an inclusive end is stop - TICK
MEAN_MONTH = timedelta(days=365.2425 / 12)  # the Gregorian calendar's mean month
ALPHA = 0.05  # the level at which a change is called significant
RERR = 1 + 1e-7  # scipy.stats.binomtest's tolerance for "as likely as the observed count"
UNDERFLOW = math.log(5e-324)  # the log of the smallest positive double

COMPARE_LABELS: dict[str, dict[str, str]] = {
    "previous_period": {"vi": "Kỳ trước", "en": "Previous period"},
    "same_period_last_year": {"vi": "Cùng kỳ năm trước", "en": "Same period last year"},
}
TEST = {
    "name": "poisson_exact_conditional",
    "vi": "Kiểm định chính xác có điều kiện cho hai số đếm Poisson (hai phía)",
    "en": "Exact conditional test of two Poisson counts (two-sided)",
    "alpha": ALPHA,
    "definition": "given n = count + previous_count, count ~ Binomial(n, t / (t + t_previous)) "
    "under equal rates, t being each period's elapsed length; two-sided p-value: the "
    "probability of every outcome no more likely than the observed one",
}


@dataclass(frozen=True)
class Period:
    """A time range with both ends inclusive (to the microsecond), as `datetime=start/end`."""

    start: datetime
    end: datetime

    @property
    def stop(self) -> datetime:
        """The end of the half-open range [start, stop)."""
        return self.end + TICK

    def exposure(self, now: datetime) -> float:
        """Seconds of the period that have elapsed by `now` (the Poisson test's time)."""
        return max(0.0, (min(self.stop, now) - self.start).total_seconds())

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {
            "start": self.start.astimezone(VIETNAM).isoformat(),
            "end": self.end.astimezone(VIETNAM).isoformat(),
            "days": (self.stop - self.start) / timedelta(days=1),
            "elapsed_days": self.exposure(now) / 86_400,
        }


def bounded_period(filt: IncidentFilter) -> Period:
    """The filter's period; InvalidInput (naming `datetime`) unless both ends are given."""
    if filt.start is None or filt.end is None:
        raise InvalidInput(
            "compare needs a period with both ends: datetime=start/end, e.g. "
            "datetime=2026-01-01T00:00:00+07:00/2026-03-31T23:59:59.999999+07:00",
            field="datetime",
        )
    return Period(filt.start, filt.end)


def _year_before(moment: datetime) -> datetime:
    """The same Vietnamese calendar date and time one year earlier; 29 February → 28 February
    (as PostgreSQL's `- interval '1 year'`)."""
    local = moment.astimezone(VIETNAM)
    day = 28 if (local.month, local.day) == (2, 29) else local.day
    return local.replace(year=local.year - 1, day=day)


def comparison_period(period: Period, compare: Compare) -> Period:
    """The period `period` is compared with.

    - previous_period: the same length immediately before: [start - L, start) with
      L = stop - start (so a quarter of 91 days compares with the 91 days before it);
    - same_period_last_year: the half-open range [start, stop) with each bound moved one
      calendar year back in Vietnamese time, 29 February to 28 February. A whole month or year
      stays whole: February 2025 (stop 1 March 2025) compares with all of February 2024
      (29 days), February 2024 with February 2023 (28 days), 29 February 2024 alone with
      28 February 2023. The test weighs the periods by their lengths."""
    try:
        if compare == "previous_period":
            length = period.stop - period.start
            return Period(period.start - length, period.start - TICK)
        return Period(_year_before(period.start), _year_before(period.stop) - TICK)
    except (OverflowError, ValueError) as exc:
        raise InvalidInput(
            "the comparison period would start before year 1; choose a later datetime",
            field="datetime",
        ) from exc


def binom_two_sided(k: int, n: int, p: float) -> float:
    """Two-sided p-value of k successes in n Binomial(n, p) trials: the total probability of
    the outcomes no more likely than k (the "minlike" rule of R's binom.test and
    scipy.stats.binomtest, with scipy's relative tolerance), computed here from log-probabilities
    (numpy; scipy is not a runtime dependency)."""
    if not 0 <= k <= n:
        raise ValueError("k must lie in 0..n")
    if p <= 0.0 or p >= 1.0:
        return 1.0 if k == (0 if p <= 0.0 else n) else 0.0
    if k == p * n:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    lgn = math.lgamma(n + 1)

    def lpmf(j: int) -> float:
        return lgn - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * log_p + (n - j) * log_q

    # only the outcomes at least e^-45 as likely as k count (the others add less than
    # n · e^-45 ≈ 3e-14 of the p-value, itself at least pmf(k)): a window around the mode,
    # its ends found by bisection on the exact log pmf (unimodal), then walked by the ratio
    # pmf(j+1)/pmf(j) = (n-j)/(j+1) · p/(1-p) from the mode
    if lpmf(k) + math.log(n + 1) < UNDERFLOW:
        return 0.0  # n + 1 outcomes at most as likely as k: below the smallest double
    mode = min(n, math.floor((n + 1) * p))
    floor_ = lpmf(k) - 45.0
    lo_a, lo_b = 0, mode  # first j in [0, mode] with lpmf(j) >= floor_
    while lo_a < lo_b:
        mid = (lo_a + lo_b) // 2
        lo_a, lo_b = (lo_a, mid) if lpmf(mid) >= floor_ else (mid + 1, lo_b)
    hi_a, hi_b = mode, n  # last j in [mode, n] with lpmf(j) >= floor_
    while hi_a < hi_b:
        mid = (hi_a + hi_b + 1) // 2
        hi_a, hi_b = (mid, hi_b) if lpmf(mid) >= floor_ else (hi_a, mid - 1)
    lo, hi = lo_a, hi_a
    j = np.arange(lo, hi, dtype=np.float64)
    step = np.log(n - j) - np.log(j + 1) + (log_p - log_q)  # log pmf(j+1) - log pmf(j)
    at = mode - lo
    lp = np.empty(hi - lo + 1)
    lp[at] = lpmf(mode)
    lp[at + 1 :] = lp[at] + np.cumsum(step[at:])
    lp[:at] = lp[at] - np.cumsum(step[:at][::-1])[::-1]
    bound = lpmf(k) + math.log(RERR)
    outcomes = np.arange(lo, hi + 1)
    if k < p * n:  # k's own tail, and the far outcomes no more likely than k
        tail = (outcomes <= k) | ((outcomes > p * n) & (lp <= bound))
    else:
        tail = (outcomes >= k) | ((outcomes < p * n) & (lp <= bound))
    return min(1.0, float(np.exp(lp[tail]).sum()))


def poisson_p_value(count: int, previous: int, t: float, t_previous: float) -> float | None:
    """Two-sided p-value of the exact conditional test that two Poisson counts observed over
    times t and t_previous have the same rate; None when a period has not begun."""
    if t <= 0 or t_previous <= 0:
        return None
    n = count + previous
    if n == 0:
        return 1.0
    return binom_two_sided(count, n, t / (t + t_previous))


def _change(n: int, s: int, n_prev: int, s_prev: int, t: float, t_prev: float) -> dict[str, Any]:
    p = poisson_p_value(n, n_prev, t, t_prev)
    return {
        "previous_count": n_prev,
        "previous_solved": s_prev,
        "previous_clearance_rate": _ratio(s_prev, n_prev),
        "change": n - n_prev,
        "change_pct": 100 * (n - n_prev) / n_prev if n_prev else None,
        "p_value": p,
        "significant": p is not None and p < ALPHA,
    }


def _month_shift(compare: Compare, period: Period) -> int:
    """How many months before its own month each month group is compared with: 12 a year
    back, else the period's length in mean months, rounded (3 for a quarter)."""
    if compare == "same_period_last_year":
        return 12
    return round((period.stop - period.start) / MEAN_MONTH)


async def compare_counts(
    *,
    session: AsyncSession,
    filt: IncidentFilter,
    group_by: GroupBy,
    compare: Compare,
    level: Level = "province",
    tz: str = DEFAULT_TZ,
    at: date | None = None,
    snap: Snapshot | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The statistics of `filt`'s period (its datetime bounds, both required) with, for each
    group and for the totals, the count in the comparison period (`comparison_period`), the
    change, the change in percent (null when the comparison count is 0) and the two-sided
    p-value of the exact Poisson test (`poisson_p_value`) with `significant` (p < 0.05).

    Groups are those of `stats` (any grouping, level, `at`), every key seen in either period;
    `group_by=month`: the months of the period, each compared with the month `_month_shift`
    months earlier (its count inside the comparison period). `snap` (app/analysis/snapshot.py)
    answers both periods where it applies; otherwise one SQL statement counts both."""
    period = bounded_period(filt)
    if at is not None and group_by != "jurisdiction":
        raise InvalidInput("at applies to group_by=jurisdiction only", field="at")
    now = now or datetime.now(tz=UTC)
    other = comparison_period(period, compare)
    earlier = replace(filt, start=other.start, end=other.end)
    found: list[list[tuple[Any, int, int]]] | None = None
    if snap is not None and (group_by != "month" or tz == snapshot.MONTH_TZ):
        pair = await asyncio.to_thread(
            lambda: [snapshot.grouped_rows(snap, f, group_by) for f in (filt, earlier)]
        )
        if pair[0] is not None and pair[1] is not None:
            found = [pair[0], pair[1]]
    if found is None:
        found = await _grouped_rows_in(
            session,
            filt,
            group_by,
            level,
            tz,
            at,
            ((period.start, period.end), (other.start, other.end)),
        )
    rows, rows_prev = found
    t, t_prev = period.exposure(now), other.exposure(now)
    total, solved = sum(n for _, n, _ in rows), sum(s for _, _, s in rows)
    total_prev, solved_prev = sum(n for _, n, _ in rows_prev), sum(s for _, _, s in rows_prev)

    keyed: list[tuple[Any, int, int, int, int]] = []  # key, n, solved, previous n, solved
    previous_key: dict[Any, str] = {}
    if group_by == "month":
        shift = _month_shift(compare, period)
        by_month = {_month_index(k.date()): (n, s) for k, n, s in rows}
        before = {_month_index(k.date()) + shift: (n, s) for k, n, s in rows_prev}
        span = _month_span([_month(m) for m in by_month], filt, tz, now)
        if span is not None:
            for m in range(span[0], span[1] + 1):
                key = _month(m).strftime("%Y-%m")
                previous_key[key] = _month(m - shift).strftime("%Y-%m")
                keyed.append((key, *by_month.get(m, (0, 0)), *before.get(m, (0, 0))))
    else:
        now_by_key = {k: (n, s) for k, n, s in rows}
        before_by_key = {k: (n, s) for k, n, s in rows_prev}
        for k in list(now_by_key) + [k for k in before_by_key if k not in now_by_key]:
            keyed.append((k, *now_by_key.get(k, (0, 0)), *before_by_key.get(k, (0, 0))))
    names = await _names(session, group_by, [k[0] for k in keyed if k[0] is not None])
    groups: list[dict[str, Any]] = []
    for k, n, s, n_prev, s_prev in keyed:
        g = _group(group_by, k, names)
        if group_by == "month":
            g["previous_key"] = previous_key[k]
        g |= {"count": n, "solved": s, "clearance_rate": _ratio(s, n), "share": _ratio(n, total)}
        g |= _change(n, s, n_prev, s_prev, t, t_prev)
        groups.append(g)
    groups.sort(key=lambda g: _sort_key(group_by, g))
    out = _head(group_by, level, at, tz)
    out |= {
        "scope": filt.scope.name,
        "compare": compare,
        "compare_label": COMPARE_LABELS[compare],
        "period": period.as_json(now),
        "comparison_period": other.as_json(now),
        "test": TEST,
        "total": total,
        "solved": solved,
        "clearance_rate": _ratio(solved, total),
    }
    change = _change(total, solved, total_prev, solved_prev, t, t_prev)
    out["previous_total"] = change.pop("previous_count")
    out |= change
    out["groups"] = groups
    return out
