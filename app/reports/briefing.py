"""The briefing: what a command centre prints for an area and a period (docs/reports.md).

One function, `gather`, reads everything the report shows, each part from the service the API
already has for it:
- the figures: app/analysis/stats.py (count, solved, clearance rate; by category and by month),
  for the period, the previous period of the same length and (national keys only) the whole
  country;
- the map's hot spots: the Gi* grid of app/analysis/hotspots.py over the area;
- the emerging hot spots: app/analysis/emerging.py's cube over the 12 months ending with the
  period;
- the cross-boundary pairs: app/analysis/adjacency.py's table, around the area;
- the map's layers (countries, provinces, national borders, the area) as SVG paths made by
  PostGIS (ST_AsSVG in EPSG:32648), and the severe incidents, here.
`app/reports/render.py` turns the result into HTML and PDF.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

import numpy as np
from geoalchemy2 import Geometry
from sqlalchemy import Float, String, cast, func, literal_column, or_, select, text, true
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app import i18n
from app.analysis import adjacency, emerging, gistar, hotspots, stats
from app.auth.scope import Scope
from app.cooperation.members import AreaMembers, members_of
from app.cooperation.models import CooperationArea
from app.errors import Forbidden, InvalidInput
from app.geo import spatial
from app.geo.spatial import SRID_UTM48N, SRID_WGS84
from app.i18n import COUNTRY_NAMES_VI, Lang
from app.incidents.filters import IncidentFilter, parse_datetime
from app.incidents.models import Category, Incident
from app.jurisdictions import eras
from app.jurisdictions.models import Jurisdiction

Format = Literal["pdf", "html"]
FORMATS: tuple[Format, ...] = get_args(Format)
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
MAX_CODES = 50  # jurisdictions in one `jurisdiction:` area (a commune group)
STRIP_KM = hotspots.BORDER_ZONE_KM  # a border segment's strip, unless the area names another
MAX_STRIP_KM = 100.0
MAX_DAYS = 3 * 366 + 1  # the longest period a briefing covers
SEVERE = 4  # severity from which an incident is listed
SEVERE_ROWS = 50
MAP_POINTS = 3000  # incidents drawn on the map at most (the most severe, then the latest)
TREND_MONTHS = 12  # the monthly chart and the emerging hot spots' cube end with the period
PAIRS = 8
PAIR_KM = 5.0  # the cross-boundary table's distance from the shared line (the dashboard's)
EMERGING_ROWS = 10
# Vietnam's archipelagos, at the special zones' official centroids, labelled as the dashboard
# labels them (app/web/static/js/mapview.js) whenever they are in the map's view
ARCHIPELAGOS = (
    ((112.135, 16.568), "Quần đảo Hoàng Sa (Việt Nam)"),
    ((114.45, 9.71), "Quần đảo Trường Sa (Việt Nam)"),
)


@dataclass(frozen=True)
class Area:
    """What a briefing is about: its name for people, its members (the rule of `cooperation=`,
    app/cooperation/members.py: jurisdictions, border strips, drawn polygons) and its polygon."""

    key: str
    name: str
    kind: str  # jurisdiction | cooperation | border_segment
    members: AreaMembers
    study: hotspots.StudyArea  # the polygon in EPSG:32648, with its lon/lat extent
    box_m: tuple[float, float, float, float]  # the polygon's extent in EPSG:32648


@dataclass(frozen=True)
class Period:
    """A closed interval of instants, and its previous period of the same length."""

    start: datetime
    end: datetime

    @property
    def previous(self) -> Period:
        """The period compared with: the same length immediately before (the rule of
        `/analysis/stats?compare=previous_period`, app/analysis/stats.py)."""
        other = stats.comparison_period(stats.Period(self.start, self.end), "previous_period")
        return Period(other.start, other.end)


@dataclass
class Briefing:
    """Everything the report shows (render.py lays it out)."""

    area: Area
    period: Period
    lang: Lang
    scope: str | None
    generated_at: datetime
    incidents: int
    cleared: int
    clearance_rate: float | None
    previous: int
    p_value: float | None  # the exact Poisson test of the change (app/analysis/stats.py)
    national: int | None  # None: a scoped key (it does not learn the country's count)
    by_category: list[dict[str, Any]]
    by_month: list[dict[str, Any]]  # the TREND_MONTHS months ending with the period's
    period_months: set[str]
    pairs: list[dict[str, Any]]
    emerging: dict[str, Any]
    severe: list[dict[str, Any]] | None  # None: a viewer (aggregates only)
    severe_total: int
    map: dict[str, Any] = field(default_factory=dict)

    @property
    def change(self) -> int:
        """Incidents now minus incidents in the previous period."""
        return self.incidents - self.previous

    @property
    def change_pct(self) -> float | None:
        """The change as a fraction of the previous period's count (None when that was 0)."""
        return self.change / self.previous if self.previous else None

    @property
    def share(self) -> float | None:
        """The area's share of the national count (national keys only)."""
        return self.incidents / self.national if self.national else None


# --- input ------------------------------------------------------------------------------------

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-[Qq]([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")


def _local_midnight(d: date) -> datetime:
    return datetime.combine(d, time(0), LOCAL)


def _month_start(year: int, month: int) -> date:
    return date(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def _named_period(token: str) -> tuple[date, date] | None:
    """`2025`, `2025-Q1`, `2025-03`: the first day and the day after the last (local days)."""
    if m := _YEAR.match(token):
        y = int(m[1])
        return date(y, 1, 1), date(y + 1, 1, 1)
    if m := _QUARTER.match(token):
        y, q = int(m[1]), int(m[2])
        return _month_start(y, 3 * q - 2), _month_start(y, 3 * q + 1)
    if m := _MONTH.match(token):
        y, mo = int(m[1]), int(m[2])
        if not 1 <= mo <= 12:
            raise InvalidInput(f"datetime '{token}': no month {mo}", field="datetime")
        return date(y, mo, 1), _month_start(y, mo + 1)
    return None


def _bound(token: str, *, end: bool) -> datetime:
    """One end of the interval: a day (local; an end day is included whole), a local time
    without an offset, or an RFC 3339 instant."""
    if _DAY.match(token):
        try:
            d = date.fromisoformat(token)
        except ValueError as exc:
            raise InvalidInput(f"datetime '{token}' is not a day", field="datetime") from exc
        if end:
            return _local_midnight(d + timedelta(days=1)) - timedelta(microseconds=1)
        return _local_midnight(d)
    try:
        value = datetime.fromisoformat(token.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"datetime '{token[:40]}' is not a day (YYYY-MM-DD) or an RFC 3339 time",
            field="datetime",
        ) from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=LOCAL)


def parse_period(value: str) -> Period:
    """`start/end` (days, local times or instants; both ends needed), or a named period:
    `2025` (a year), `2025-Q1` (a quarter), `2025-03` (a month), in Vietnam's calendar."""
    token = value.strip()
    if not token:
        raise InvalidInput("datetime is empty", field="datetime")
    try:
        named = _named_period(token) if "/" not in token else None
    except ValueError as exc:  # a year outside 1-9999
        raise InvalidInput(
            f"datetime '{token[:40]}' is not a usable period", field="datetime"
        ) from exc
    if named is not None:
        first, after = named
        period = Period(_local_midnight(first), _local_midnight(after) - timedelta(microseconds=1))
    else:
        if "/" not in token:
            raise InvalidInput(
                "datetime needs a period: start/end (e.g. 2025-01-01/2025-03-31), 2025-Q1,"
                " 2025-03 or 2025",
                field="datetime",
            )
        a, _, b = token.partition("/")
        if a in ("", "..") or b in ("", ".."):
            raise InvalidInput("a briefing's period needs both ends", field="datetime")
        if "/" in b:
            raise InvalidInput("datetime interval has more than one '/'", field="datetime")
        period = Period(_bound(a, end=False), _bound(b, end=True))
        parse_datetime(f"{period.start.isoformat()}/{period.end.isoformat()}")  # order, range
    if period.end <= period.start:
        raise InvalidInput("datetime interval starts after it ends", field="datetime")
    if period.end - period.start > timedelta(days=MAX_DAYS):
        raise InvalidInput(
            f"a briefing covers at most {MAX_DAYS} days; ask for a shorter period",
            field="datetime",
        )
    for bound in (period.previous.start, period.end):
        if not emerging.EARLIEST <= bound < emerging.LATEST:
            raise InvalidInput("datetime lies outside the years 1900-2199", field="datetime")
    return period


def check_format(value: str) -> Format:
    """pdf or html (InvalidInput naming `format` otherwise)."""
    for f in FORMATS:
        if value == f:
            return f
    raise InvalidInput(f"format must be pdf or html; got '{value[:20]}'", field="format")


# --- the area ---------------------------------------------------------------------------------

AREA_SQL = f"""
    WITH home AS (
        SELECT geom FROM jurisdiction WHERE level = 'country' AND code = :home
        ORDER BY valid_from DESC NULLS LAST LIMIT 1
    ), parts AS (
        SELECT j.geom AS g FROM (
            SELECT DISTINCT ON (code) geom FROM jurisdiction
             WHERE code = ANY(CAST(:codes AS text[])) ORDER BY code, valid_from DESC NULLS LAST
        ) j
        UNION ALL
        SELECT ST_Intersection(ST_Transform(ST_Buffer(ST_Transform(s.geom, {SRID_UTM48N}),
                   k.km * 1000, 'quad_segs=16'), 4326), home.geom)
          FROM unnest(CAST(:strip_codes AS text[]), CAST(:strip_km AS float8[])) AS k(code, km)
          JOIN border_segment s ON s.code = k.code, home
        UNION ALL
        SELECT ST_GeomFromText(w, 4326) FROM unnest(CAST(:wkts AS text[])) AS w
    ), u AS (
        SELECT ST_Transform(ST_CollectionExtract(ST_MakeValid(ST_Union(g)), 3), {SRID_UTM48N}) AS g
          FROM parts
    )
    SELECT ST_AsBinary(g), ST_Area(g), ST_Perimeter(g),
           ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e),
           ST_XMin(g), ST_YMin(g), ST_XMax(g), ST_YMax(g)
      FROM u, ST_Transform(ST_Envelope(g), 4326) AS e
     WHERE g IS NOT NULL AND NOT ST_IsEmpty(g) AND ST_Area(g) > 0
"""


async def _jurisdiction_area(
    session: AsyncSession, codes: list[str], lang: Lang, home: str
) -> tuple[AreaMembers, str]:
    if not codes or len(codes) > MAX_CODES:
        raise InvalidInput(
            f"area jurisdiction: names 1 to {MAX_CODES} codes, comma-separated", field="area"
        )
    rows = (
        await session.execute(
            text(
                "SELECT DISTINCT ON (code) code, country, name, name_local, type_local, level"
                "  FROM jurisdiction WHERE code = ANY(CAST(:codes AS text[]))"
                " ORDER BY code, valid_from DESC NULLS LAST"
            ),
            {"codes": codes},
        )
    ).all()
    found = {r.code: r for r in rows}
    for code in codes:
        if code not in found:
            raise InvalidInput(f"unknown jurisdiction code '{code[:40]}'", field="area")
        if found[code].country != home or found[code].level == "country":
            raise InvalidInput(
                f"jurisdiction '{code}' is not a unit of {home}; briefings cover {home}'s units",
                field="area",
            )
    names = [_unit_name(found[c], lang) for c in codes]
    return AreaMembers(area_id=0, codes=tuple(codes)), ", ".join(names)


def _unit_name(r: Any, lang: Lang) -> str:
    if lang == "en" or not r.name_local:
        return str(r.name)
    local = str(r.name_local)
    if r.type_local and not local.startswith(f"{r.type_local} "):
        return f"{r.type_local} {local}"
    return local


def _country_name(code: str, lang: Lang, english: dict[str, str]) -> str:
    if lang == "vi":
        return COUNTRY_NAMES_VI.get(code, english.get(code, code))
    return english.get(code, code)


async def _segment_area(
    session: AsyncSession, spec: str, lang: Lang, home: str
) -> tuple[AreaMembers, str]:
    code, _, km_text = spec.partition(":")
    km = STRIP_KM
    if km_text:
        try:
            km = float(km_text)
        except ValueError as exc:
            raise InvalidInput(
                f"border strip width '{km_text[:20]}' is not a number", field="area"
            ) from exc
        if not (math.isfinite(km) and 0 < km <= MAX_STRIP_KM):
            raise InvalidInput(
                f"a border strip is more than 0 and at most {MAX_STRIP_KM:g} km wide", field="area"
            )
    row = (
        await session.execute(
            text("SELECT country_a, country_b FROM border_segment WHERE code = :code"),
            {"code": code},
        )
    ).one_or_none()
    if row is None:
        raise InvalidInput(f"unknown border segment '{code[:40]}' (see /borders)", field="area")
    if home not in (row.country_a, row.country_b):
        raise InvalidInput(f"border segment '{code}' is not one of {home}'s", field="area")
    countries = await session.execute(
        text(
            "SELECT DISTINCT ON (code) code, name FROM jurisdiction WHERE level = 'country'"
            " ORDER BY code, valid_from DESC NULLS LAST"
        )
    )
    english = {str(c): str(n) for c, n in countries.all()}
    other = row.country_b if row.country_a == home else row.country_a
    a, b = _country_name(home, lang, english), _country_name(other, lang, english)
    name = (
        f"Biên giới {a} – {b} (dải {km:g} km)"
        if lang == "vi"
        else f"{a}–{b} border ({km:g} km strip)"
    )
    return AreaMembers(area_id=0, strips=((code, km),)), name


async def resolve_area(*, session: AsyncSession, area: str, lang: Lang, home: str) -> Area:
    """`jurisdiction:CODE[,CODE…]` (a province, a commune, a group of communes, either era),
    `cooperation:ID` (a cooperation area) or `border-segment:CODE[:KM]` (the home side of a
    national border within KM km, 50 by default)."""
    kind, _, spec = area.partition(":")
    if kind == "jurisdiction":
        codes = [c.strip() for c in spec.split(",") if c.strip()]
        members, name = await _jurisdiction_area(session, codes, lang, home)
    elif kind == "cooperation":
        if not spec.isdigit() or not 1 <= int(spec) < 2**31:
            raise InvalidInput(f"cooperation area id '{spec[:20]}' is not a number", field="area")
        try:
            members = await members_of(session, int(spec))
        except InvalidInput as exc:
            raise InvalidInput(exc.detail, field="area") from exc
        found = await session.get(CooperationArea, int(spec))
        name = found.name if found is not None else spec
    elif kind == "border-segment":
        members, name = await _segment_area(session, spec, lang, home)
    else:
        raise InvalidInput(
            f"area '{area[:60]}' is not one of jurisdiction:CODE[,CODE…], cooperation:ID,"
            " border-segment:CODE[:KM]",
            field="area",
        )
    row = (
        await session.execute(
            text(AREA_SQL),
            {
                "home": home,
                "codes": list(members.codes),
                "strip_codes": [c for c, _ in members.strips],
                "strip_km": [k for _, k in members.strips],
                "wkts": list(members.polygons),
            },
        )
    ).one_or_none()
    if row is None:
        raise InvalidInput(f"area '{area[:60]}' has no polygon to report on", field="area")
    wkb, area_m2, perimeter_m, *boxes = row
    extent = tuple(float(v) for v in boxes[:4])
    box_m = tuple(float(v) for v in boxes[4:])
    study = hotspots.StudyArea(
        area,
        bytes(wkb),
        float(area_m2),
        float(perimeter_m),
        extent,  # type: ignore[arg-type]
    )
    return Area(area, name, kind, members, study, box_m)  # type: ignore[arg-type]


SCOPE_SQL = f"""
    WITH a AS (SELECT ST_GeomFromWKB(:area, {SRID_UTM48N}) AS g),
    s AS (
        SELECT ST_Transform(geom, {SRID_UTM48N}) AS g FROM jurisdiction WHERE code = :code
        ORDER BY valid_from DESC NULLS LAST LIMIT 1
    )
    SELECT ST_Relate(a.g, s.g, 'T********') FROM a, s
"""


async def check_scope(*, session: AsyncSession, scope: Scope, area: Area, home: str) -> None:
    """A scoped key reports only on areas that overlap its own (Forbidden otherwise); within
    it, every count is bounded by what the key sees, as on every analysis endpoint."""
    if scope.national:
        return
    if scope.area is not None:
        if scope.area.members is None:
            raise Forbidden(f"area '{area.key[:60]}' is outside your scope ({scope.label})")
        own = await resolve_area(
            session=session, area=f"cooperation:{scope.area.id}", lang="en", home=home
        )
        wkb: bytes = own.study.wkb
        sql = (
            f"SELECT ST_Relate(ST_GeomFromWKB(:area, {SRID_UTM48N}),"
            f" ST_GeomFromWKB(:own, {SRID_UTM48N}), 'T********')"
        )
        inside = (await session.execute(text(sql), {"area": area.study.wkb, "own": wkb})).scalar()
    else:
        inside = (
            await session.execute(text(SCOPE_SQL), {"area": area.study.wkb, "code": scope.code})
        ).scalar()
    if not inside:
        raise Forbidden(
            f"area '{area.key[:60]}' is outside your scope ({scope.label}): a key reports only"
            " on areas that overlap its own",
            field="area",
        )


# --- figures ----------------------------------------------------------------------------------


def _filter(scope: Scope, period: Period, members: AreaMembers | None) -> IncidentFilter:
    return IncidentFilter(scope=scope, start=period.start, end=period.end, area=members)


async def _total(session: AsyncSession, filt: IncidentFilter) -> tuple[int, int]:
    body = await stats.stats(session=session, filt=filt, group_by="status")
    return int(body["total"]), int(body["solved"])


def _month_label(d: date) -> str:
    return d.strftime("%Y-%m")


async def _months(
    session: AsyncSession, scope: Scope, area: Area, period: Period
) -> tuple[list[dict[str, Any]], set[str]]:
    end_local = period.end.astimezone(LOCAL).date()
    start_local = period.start.astimezone(LOCAL).date()
    last = date(end_local.year, end_local.month, 1)
    first = _month_start(last.year, last.month - (TREND_MONTHS - 1))
    if start_local < first:
        first = date(start_local.year, start_local.month, 1)
    after = _month_start(last.year, last.month + 1)
    window = Period(_local_midnight(first), _local_midnight(after) - timedelta(microseconds=1))
    body = await stats.stats(
        session=session, filt=_filter(scope, window, area.members), group_by="month"
    )
    counted = {g["key"]: int(g["count"]) for g in body["groups"]}
    months: list[dict[str, Any]] = []
    d = first
    while d < after:
        key = _month_label(d)
        months.append({"month": key, "count": counted.get(key, 0)})
        d = _month_start(d.year, d.month + 1)
    inside = set()
    d = date(start_local.year, start_local.month, 1)
    while d <= last:
        inside.add(_month_label(d))
        d = _month_start(d.year, d.month + 1)
    return months, inside


# --- hot spots and emerging hot spots ---------------------------------------------------------


def cell_km_for(area_m2: float) -> float:
    """The grid's spacing: 5 km (the dashboard's) for a province, finer for a small area,
    coarser for a long border strip: about 400 whole cells, between 1 and 20 km."""
    return float(min(20.0, max(1.0, round(math.sqrt(area_m2 / 1e6 / 400), 1))))


async def _hot_cells(
    session: AsyncSession, filt: IncidentFilter, area: Area, cell_km: float
) -> tuple[hotspots.Grid, Any, Any]:
    grid = await hotspots.grid(session=session, study=area.study, cell_km=cell_km)
    counts = await hotspots.cell_counts(
        session=session, filt=filt, study=area.study, grid=grid, cell_km=cell_km
    )
    z = gistar.gi_star(counts, gistar.hex_neighbours(grid.cells))
    bins = gistar.confidence_bins(z, gistar.two_sided_p(z), fdr=False)
    return grid, counts, bins


async def _places_at(
    session: AsyncSession, points: list[tuple[float, float]], lang: Lang
) -> list[str]:
    """Where each point (lon, lat) lies in today's map, as a commander reads it: 'Xã A, Tỉnh B'
    (the commune in force today and its province, in `lang`), or '' outside every commune."""
    if not points:
        return []
    today = eras.today()
    u = (
        func.unnest(
            cast(array([x for x, _ in points]), ARRAY(Float)),
            cast(array([y for _, y in points]), ARRAY(Float)),
        )
        .table_valued("lon", "lat", with_ordinality="n")
        .render_derived("u")
    )
    c, p = aliased(Jurisdiction), aliased(Jurisdiction)
    point = func.ST_SetSRID(func.ST_MakePoint(u.c.lon, u.c.lat), SRID_WGS84)
    commune = (
        select(
            i18n.display_name(c, lang).label("commune"),
            i18n.display_name(p, lang).label("province"),
        )
        .select_from(c)
        .outerjoin(
            p,
            (p.code == c.parent_code) & func.incident_in_force(p.valid_from, p.valid_to, today),
        )
        .where(
            c.level == "commune",
            func.incident_in_force(c.valid_from, c.valid_to, today),
            func.ST_Covers(c.geom, point),
        )
        .limit(1)
        .lateral("c")
    )
    stmt = (
        select(u.c.n, commune.c.commune, commune.c.province)
        .select_from(u.outerjoin(commune, true()))
        .order_by(u.c.n)
    )
    out = []
    for _, name, province in (await session.execute(stmt)).all():
        out.append(", ".join(x for x in (name, province) if x))
    return out


async def _emerging(
    session: AsyncSession, scope: Scope, area: Area, period: Period, grid: hotspots.Grid,
    cell_km: float, lang: Lang,
) -> dict[str, Any]:  # fmt: skip
    """The emerging hot spots over the TREND_MONTHS months ending with the period's last."""
    last = period.end.astimezone(LOCAL)
    first = _month_start(last.year, last.month - (TREND_MONTHS - 1))
    edges = emerging.step_edges("month", _local_midnight(first), period.end, datetime.now(UTC))
    steps = len(edges) - 1
    filt = IncidentFilter(scope=scope)
    points = await emerging.located(session=session, filt=filt, study=area.study, edges=edges)
    counts = await asyncio.to_thread(emerging.bin_counts, points, grid, cell_km, steps)
    spatial = gistar.hex_neighbours(grid.cells)
    cube = await asyncio.to_thread(emerging.analyse, counts, spatial, 1, True)
    totals: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    for c, code in enumerate(cube.category):
        if code == "no_pattern":
            continue
        totals[code] = totals.get(code, 0) + 1
        lon, lat = grid.centres[c]
        rows.append(
            {
                "category": code,
                "name": emerging.NAMES[code][lang],
                "lon": lon,
                "lat": lat,
                "cell": grid.cells[c],
                "count": int(counts[:, c].sum()),
                "last": int(counts[-1, c]),
                "trend_z": float(cube.trend.z[c]),
            }
        )
    order = {code: n for n, (code, _, _) in enumerate(emerging.CATEGORIES)}
    rows.sort(key=lambda r: (order[r["category"]], -r["count"]))
    listed = rows[:EMERGING_ROWS]
    places = await _places_at(session, [(r["lon"], r["lat"]) for r in listed], lang)
    for r, place in zip(listed, places, strict=True):
        r["place"] = place
    return {
        "steps": [emerging.step_label(e, "month") for e in edges[:-1]],
        "cells": len(grid.cells),
        "incidents": int(counts.sum()),
        "totals": [
            {"category": c, "name": emerging.NAMES[c][lang], "cells": totals[c]}
            for c, _, _ in emerging.CATEGORIES
            if c in totals
        ],
        "rows": listed,
        "hot": [r for r in rows if r["category"].endswith("hot_spot")],
    }


# --- cross-boundary pairs ---------------------------------------------------------------------

AROUND_SQL = f"""
    SELECT p.code FROM jurisdiction p
     WHERE p.level = 'province' AND p.country = :home
       AND incident_in_force(p.valid_from, p.valid_to, :today)
       AND ST_Intersects(p.geom, ST_Transform(ST_GeomFromWKB(:area, {SRID_UTM48N}), 4326))
       AND ST_Relate(ST_Transform(p.geom, {SRID_UTM48N}), ST_GeomFromWKB(:area, {SRID_UTM48N}),
                     'T********')
"""


def _pairs_sql(around: list[str], at: date, filt: IncidentFilter) -> Any:
    """The cross-boundary table of app/analysis/adjacency.py (`cross_boundary`: the same
    pairs, shared lines, pieces and tests), for the pairs with a side in `around` only: making
    every pair's shared line costs ~1 s, the few around one area a tenth of it."""
    pairs = (
        text(
            adjacency.PAIRS_SQL
            + " AND (a.code = ANY(CAST(:around AS text[]))"
            + "      OR b.code = ANY(CAST(:around AS text[])))"
        )
        .bindparams(level="province", at=at, around=around)
        .columns(a=String, b=String, line=Geometry)
        .cte("pairs")
        .prefix_with("MATERIALIZED")
    )
    piece = func.ST_Subdivide(
        func.geometry(func.ST_Segmentize(func.geography(pairs.c.line), adjacency.PIECE_SEGMENT_M)),
        adjacency.PIECE_VERTICES,
    )
    pieces = (
        select(pairs.c.a, pairs.c.b, piece.label("g")).cte("pieces").prefix_with("MATERIALIZED")
    )
    radius_m = PAIR_KM * 1000
    near = (
        select(Incident.id, Incident.geom, Incident.jurisdiction_path)
        .where(
            spatial.may_be_within_metres(Incident.geom, pieces.c.g, radius_m),
            *filt.conditions(),
        )
        .offset(literal_column("'0'"))
        .lateral("near")
    )

    def holds(code: Any) -> Any:
        return near.c.jurisdiction_path.bool_op("@>")(cast(array([code]), ARRAY(String(32))))

    hits = (
        select(pieces.c.a, pieces.c.b, near.c.id)
        .select_from(pieces)
        .join(near, true())
        .where(
            or_(holds(pieces.c.a), holds(pieces.c.b)),
            spatial.within_metres_of(near.c.geom, pieces.c.g, radius_m),
        )
        .distinct()
        .subquery("hits")
    )
    counts = (
        select(hits.c.a, hits.c.b, func.count().label("n"))
        .group_by(hits.c.a, hits.c.b)
        .subquery("counts")
    )
    return (
        select(
            pairs.c.a,
            pairs.c.b,
            (func.ST_Length(func.geography(pairs.c.line)) / 1000.0).label("shared_km"),
            func.coalesce(counts.c.n, 0).label("n"),
        )
        .outerjoin(counts, (counts.c.a == pairs.c.a) & (counts.c.b == pairs.c.b))
        .order_by(literal_column("n").desc(), pairs.c.a, pairs.c.b)
        .limit(PAIRS)
    )


async def _pairs(
    session: AsyncSession, scope: Scope, area: Area, period: Period, lang: Lang, home: str
) -> list[dict[str, Any]]:
    """Today's adjacent provinces with one side in the area, busiest first: the incidents
    within PAIR_KM of their shared line, on either side (the table of /analysis/cross-boundary
    for those pairs)."""
    today = eras.today()
    around = sorted(
        (
            await session.execute(
                text(AROUND_SQL), {"home": home, "today": today, "area": area.study.wkb}
            )
        ).scalars()
    )
    if not around:
        return []
    filt = IncidentFilter(scope=scope, start=period.start, end=period.end)
    rows = (await session.execute(_pairs_sql(around, today, filt))).all()
    chosen = [
        {"a": r.a, "b": r.b, "shared_km": round(float(r.shared_km), 2), "count": int(r.n)}
        for r in rows
    ]
    names = await _names(session, {c for p in chosen for c in (p["a"], p["b"])}, lang)
    return [
        p | {"a_name": names.get(p["a"], p["a"]), "b_name": names.get(p["b"], p["b"])}
        for p in chosen
    ]


async def _names(session: AsyncSession, codes: set[str], lang: Lang) -> dict[str, str]:
    if not codes:
        return {}
    rows = (
        await session.execute(
            text(
                "SELECT DISTINCT ON (code) code, name, name_local, type_local"
                "  FROM jurisdiction WHERE code = ANY(CAST(:codes AS text[]))"
                " ORDER BY code, valid_from DESC NULLS LAST"
            ),
            {"codes": sorted(codes)},
        )
    ).all()
    return {r.code: _unit_name(r, lang) for r in rows}


# --- severe incidents and the map's points ----------------------------------------------------


async def _severe(
    session: AsyncSession, filt: IncidentFilter, lang: Lang
) -> tuple[list[dict[str, Any]], int]:
    i = Incident
    where = [*filt.conditions(), i.severity >= SEVERE]
    total = int((await session.execute(select(func.count()).where(*where))).scalar_one())
    cat_name = Category.name_vi if lang == "vi" else Category.name_en
    rows = (
        await session.execute(
            select(
                i.id, i.occurred_at, i.category, cat_name, i.severity, i.status, i.unit,
                i.description, i.province_code, i.commune_code,
            )
            .join(Category, Category.code == i.category)
            .where(*where)
            .order_by(i.severity.desc(), i.occurred_at.desc(), i.id)
            .limit(SEVERE_ROWS)
        )
    ).all()  # fmt: skip
    names = await _names(
        session, {c for r in rows for c in (r.province_code, r.commune_code) if c}, lang
    )
    out = []
    for r in rows:
        place = ", ".join(names.get(c, c) for c in (r.commune_code, r.province_code) if c)
        out.append(
            {
                "id": str(r.id),
                "occurred_at": r.occurred_at.astimezone(LOCAL),
                "category": r.category,
                "category_name": r[3],
                "severity": int(r.severity),
                "status": r.status,
                "unit": r.unit or "",
                "place": place,
                "description": r.description or "",
            }
        )
    return out, total


async def _points(
    session: AsyncSession, filt: IncidentFilter
) -> list[tuple[float, float, str, int]]:
    i = Incident
    p = func.ST_Transform(i.geom, SRID_UTM48N)
    rows = await session.execute(
        select(func.ST_X(p), func.ST_Y(p), i.category, i.severity)
        .where(*filt.conditions())
        .order_by(i.severity.desc(), i.occurred_at.desc())
        .limit(MAP_POINTS)
    )
    return [(float(x), float(y), str(c), int(s)) for x, y, c, s in rows]


# --- the map's layers -------------------------------------------------------------------------

MAP_W, MAP_H = 1000.0, 600.0  # the map's drawing box (its aspect: the view box is fitted to it)

LAYERS_SQL = f"""
    WITH v AS (SELECT ST_MakeEnvelope(:x1, :y1, :x2, :y2, {SRID_UTM48N}) AS m),
    v4 AS (SELECT m, ST_Transform(ST_Segmentize(m, (:x2 - :x1) / 50), 4326) AS g FROM v),
    units AS (
        SELECT j.level, j.code, j.country, j.name, j.name_local, j.type_local,
               ST_Intersection(ST_Transform(ST_Intersection(j.geom, ST_Expand(v4.g, 0.2)),
                                            {SRID_UTM48N}), v4.m) AS g
          FROM jurisdiction j, v4
         WHERE j.level IN ('country', 'province') AND j.geom && v4.g
           AND (j.level = 'country' OR j.country = :home)
           AND incident_in_force(j.valid_from, j.valid_to, :today)
    ), borders AS (
        SELECT 'border' AS level, s.code, NULL AS country, NULL AS name, NULL AS name_local,
               NULL AS type_local,
               ST_Intersection(ST_Transform(ST_Intersection(s.geom, ST_Expand(v4.g, 0.2)),
                                            {SRID_UTM48N}), v4.m) AS g
          FROM border_segment s, v4 WHERE s.geom && v4.g
    ), area AS (
        SELECT 'area' AS level, NULL AS code, NULL AS country, NULL AS name, NULL AS name_local,
               NULL AS type_local, ST_GeomFromWKB(:area, {SRID_UTM48N}) AS g
    ), everything AS (
        SELECT * FROM units UNION ALL SELECT * FROM borders UNION ALL SELECT * FROM area
    )
    SELECT level, code, country, name, name_local, type_local,
           ST_AsSVG(ST_SimplifyPreserveTopology(g, :tol), 0, 0) AS d,
           ST_Area(g) AS a,
           ST_X(ST_PointOnSurface(g)) AS lx, ST_Y(ST_PointOnSurface(g)) AS ly
      FROM everything
     WHERE g IS NOT NULL AND NOT ST_IsEmpty(g)
"""


def view_box(box_m: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The area's projected extent with a margin, widened to the map's aspect."""
    x1, y1, x2, y2 = box_m
    w, h = max(x2 - x1, 2000.0), max(y2 - y1, 2000.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = w * 1.15, h * 1.15
    if w / h < MAP_W / MAP_H:
        w = h * MAP_W / MAP_H
    else:
        h = w * MAP_H / MAP_W
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


async def _layers(
    session: AsyncSession, area: Area, box: tuple[float, float, float, float], lang: Lang,
    home: str,
) -> list[dict[str, Any]]:  # fmt: skip
    x1, y1, x2, y2 = box
    rows = (
        await session.execute(
            text(LAYERS_SQL),
            {
                "x1": x1, "y1": y1, "x2": x2, "y2": y2, "home": home, "today": eras.today(),
                "area": area.study.wkb, "tol": (x2 - x1) / MAP_W / 2,
            },
        )
    ).all()  # fmt: skip
    out = []
    for r in rows:
        if r.level == "country":
            name = COUNTRY_NAMES_VI.get(r.code, r.name) if lang == "vi" else r.name
        elif r.level == "province":
            name = _unit_name(r, lang)
        else:
            name = None
        out.append(
            {
                "level": r.level, "code": r.code, "home": r.country == home or r.code == home,
                "name": name, "d": r.d, "area": float(r.a or 0), "label": (r.lx, r.ly),
            }
        )  # fmt: skip
    return out


async def _archipelagos(
    session: AsyncSession, box: tuple[float, float, float, float]
) -> list[dict[str, Any]]:
    out = []
    for (lon, lat), label in ARCHIPELAGOS:
        x, y = (
            await session.execute(
                text(
                    f"SELECT ST_X(p), ST_Y(p) FROM ST_Transform(ST_SetSRID(ST_MakePoint(:lon,"
                    f" :lat), 4326), {SRID_UTM48N}) AS p"
                ),
                {"lon": lon, "lat": lat},
            )
        ).one()
        if box[0] <= x <= box[2] and box[1] <= y <= box[3]:
            out.append({"x": float(x), "y": float(y), "label": label})
    return out


def hexagon(i: int, j: int, cell_km: float) -> list[tuple[float, float]]:
    """The corners of ST_HexagonGrid's cell (i, j) in EPSG:32648 (flat-topped, edge
    cell_km / √3; app/analysis/hotspots.py)."""
    edge = cell_km * 1000 / math.sqrt(3.0)
    cx = 1.5 * edge * i
    cy = cell_km * 1000 * (j + 0.5 * (abs(i) % 2))
    return [
        (cx + edge * math.cos(math.radians(a)), cy + edge * math.sin(math.radians(a)))
        for a in range(0, 360, 60)
    ]


# --- all of it --------------------------------------------------------------------------------


async def gather(
    *,
    session: AsyncSession,
    scope: Scope,
    role: str,
    area: str,
    period: Period,
    lang: Lang,
    home: str,
) -> Briefing:
    """Read everything the briefing shows (the statements run one after another on the
    request's session)."""
    found = await resolve_area(session=session, area=area, lang=lang, home=home)
    await check_scope(session=session, scope=scope, area=found, home=home)
    filt = _filter(scope, period, found.members)
    # the period and the previous one in one statement, with the change's Poisson test
    cat = await stats.compare_counts(
        session=session, filt=filt, group_by="category", compare="previous_period"
    )
    incidents, cleared = int(cat["total"]), int(cat["solved"])
    previous = int(cat["previous_total"])
    national = None
    if scope.national:
        national, _ = await _total(session, _filter(scope, period, None))
    by_category = [
        {
            "code": g["key"],
            "name": (g["name_local"] if lang == "vi" else g["name"]) or g["key"],
            "count": int(g["count"]),
            "solved": int(g["solved"]),
        }
        for g in cat["groups"]
        if g["count"]  # a category seen in the previous period only
    ]
    by_category.sort(key=lambda g: (-g["count"], g["code"]))
    months, inside = await _months(session, scope, found, period)
    cell_km = cell_km_for(found.study.area_m2)
    estimate = hotspots.estimated_cells(found.study.area_m2, found.study.perimeter_m, cell_km)
    while estimate > 4000 and cell_km < 100:
        cell_km = min(100.0, cell_km * 1.5)
        estimate = hotspots.estimated_cells(found.study.area_m2, found.study.perimeter_m, cell_km)
    # the map's hot spots: the period's incidents, whatever unit they were filed under
    grid, counts, bins = await _hot_cells(session, IncidentFilter(
        scope=scope, start=period.start, end=period.end), found, cell_km)  # fmt: skip
    emerging_part = await _emerging(session, scope, found, period, grid, cell_km, lang)
    pairs = await _pairs(session, scope, found, period, lang, home)
    viewer = role == "viewer"
    severe: list[dict[str, Any]] | None = None
    severe_total = 0
    if not viewer:
        severe, severe_total = await _severe(session, filt, lang)
    else:
        severe_total = int(
            (
                await session.execute(
                    select(func.count()).where(*filt.conditions(), Incident.severity >= SEVERE)
                )
            ).scalar_one()
        )
    box = view_box(found.box_m)
    layers = await _layers(session, found, box, lang, home)
    points = [] if viewer else await _points(session, filt)
    hot = [
        {"cell": grid.cells[k], "bin": int(bins[k]), "count": int(counts[k])}
        for k in np.nonzero(bins)[0].tolist()
    ]
    colours = {g["code"]: n for n, g in enumerate(sorted(by_category, key=lambda g: g["code"]))}
    return Briefing(
        area=found,
        period=period,
        lang=lang,
        scope=scope.name,
        generated_at=datetime.now(LOCAL),
        incidents=incidents,
        cleared=cleared,
        clearance_rate=cleared / incidents if incidents else None,
        previous=previous,
        p_value=cat["p_value"],
        national=national,
        by_category=by_category,
        by_month=months,
        period_months=inside,
        pairs=pairs,
        emerging=emerging_part,
        severe=severe,
        severe_total=severe_total,
        map={
            "box": box,
            "layers": layers,
            "archipelagos": await _archipelagos(session, box),
            "points": points,
            "points_total": incidents,
            "hot": hot,
            "cell_km": cell_km,
            "colours": colours,
            "viewer": viewer,
        },
    )
