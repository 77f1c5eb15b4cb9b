"""Emerging hot spots: Gi* over a space-time cube (hexagon x time step), the Mann-Kendall trend
of each cell's z-scores, and Esri's categories (docs/analysis.md, "Emerging hot spots").

The study area, its hexagonal grid and the Gi* arithmetic are the hot spots' own
(app/analysis/hotspots.py, app/analysis/gistar.py): the same area names, the same cells and ids,
the same weights, now with the bins of the previous time step(s) in each bin's neighbourhood.
PostgreSQL projects the matching incidents and gives each its time step (the step edges are
computed here, in the local calendar, and passed as one array); numpy gives each its hexagon
by the same cube-coordinate rounding the hot spots do in SQL, tests the incidents of cells cut
by the area's edge against the clipped cell (GEOS, prepared), and counts the bins.
"""

from __future__ import annotations

import asyncio
import gc
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import orjson
import shapely
from sqlalchemy import (
    ColumnElement,
    DateTime,
    LargeBinary,
    SmallInteger,
    bindparam,
    cast,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.analysis import gistar, hotspots
from app.errors import InvalidInput
from app.geo.spatial import SRID_UTM48N, overlaps_bbox
from app.i18n import Lang
from app.incidents.filters import IncidentFilter
from app.incidents.models import Incident

Step = Literal["month", "week"]
STEPS: tuple[Step, ...] = get_args(Step)
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")  # steps are local calendar months / weeks (Monday)
DEFAULT_STEPS: dict[Step, int] = {"month": 24, "week": 52}  # without datetime: complete steps
MIN_STEPS = 3
# the cube's span lies within these years (a week step over them is 15 600 steps at most)
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
MAX_BINS = 1_000_000  # cells x steps
MAX_TIME_NEIGHBOURS = 12
ALPHA = 0.10  # a bin is significant at 90 % confidence (the lowest Gi* level, FDR by default)
TREND_ALPHA = 0.10  # the Mann-Kendall trend is significant at p <= 0.10 (90 %)
SHARE = 0.9  # "90 percent of the time-step intervals"
DECIMALS = 4  # of the published z-scores, whose trend is tested

Array = npt.NDArray[Any]

# (code, English, Vietnamese), in the order a legend lists them
CATEGORIES: tuple[tuple[str, str, str], ...] = (
    ("new_hot_spot", "New hot spot", "Điểm nóng mới"),
    ("consecutive_hot_spot", "Consecutive hot spot", "Điểm nóng liên tiếp"),
    ("intensifying_hot_spot", "Intensifying hot spot", "Điểm nóng gia tăng"),
    ("persistent_hot_spot", "Persistent hot spot", "Điểm nóng kéo dài"),
    ("diminishing_hot_spot", "Diminishing hot spot", "Điểm nóng suy giảm"),
    ("sporadic_hot_spot", "Sporadic hot spot", "Điểm nóng rải rác"),
    ("oscillating_hot_spot", "Oscillating hot spot", "Điểm nóng dao động"),
    ("historical_hot_spot", "Historical hot spot", "Điểm nóng trong quá khứ"),
    ("new_cold_spot", "New cold spot", "Điểm lạnh mới"),
    ("consecutive_cold_spot", "Consecutive cold spot", "Điểm lạnh liên tiếp"),
    ("intensifying_cold_spot", "Intensifying cold spot", "Điểm lạnh gia tăng"),
    ("persistent_cold_spot", "Persistent cold spot", "Điểm lạnh kéo dài"),
    ("diminishing_cold_spot", "Diminishing cold spot", "Điểm lạnh suy giảm"),
    ("sporadic_cold_spot", "Sporadic cold spot", "Điểm lạnh rải rác"),
    ("oscillating_cold_spot", "Oscillating cold spot", "Điểm lạnh dao động"),
    ("historical_cold_spot", "Historical cold spot", "Điểm lạnh trong quá khứ"),
    ("no_pattern", "No pattern detected", "Không phát hiện mẫu hình"),
)
NAMES: dict[str, dict[Lang, str]] = {c: {"en": en, "vi": vi} for c, en, vi in CATEGORIES}


# --- time steps -----------------------------------------------------------------------------


def _step_start(moment: datetime, step: Step) -> datetime:
    """The local start of the step holding `moment` (an aware datetime), in Asia/Ho_Chi_Minh."""
    local = moment.astimezone(LOCAL)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if step == "month":
        return day.replace(day=1)
    return day - timedelta(days=day.weekday())


def _advance(start: datetime, step: Step, n: int) -> datetime:
    """`n` steps after (before, n < 0) a local step start."""
    if step == "month":
        months = start.year * 12 + start.month - 1 + n
        return start.replace(year=months // 12, month=months % 12 + 1)
    # wall-clock arithmetic (same tzinfo): every edge is a local Monday midnight
    return (start + timedelta(days=7 * n)).replace(tzinfo=LOCAL)


def step_edges(
    step: Step, start: datetime | None, end: datetime | None, now: datetime
) -> list[datetime]:
    """The local starts of the cube's steps and the end of the last one (steps + 1 edges).

    From the step holding `start` to the step holding `end`; an `end` exactly on a step's
    start closes the step before (`…/2026-01-01T00:00:00+07:00` ends with December). Without
    `start`: the DEFAULT_STEPS steps ending with `end`'s; without both: the DEFAULT_STEPS
    complete steps before the current one. Without `end`: up to now (the current step, which
    is still partial)."""
    if end is None and start is None:
        last = _advance(_step_start(now, step), step, -1)
    else:
        until = end if end is not None else now
        last = _step_start(until, step)
        if end is not None and last == until and (start is None or start < until):
            last = _advance(last, step, -1)
    first = _step_start(start, step) if start is not None else None
    if first is None:
        first = _advance(last, step, 1 - DEFAULT_STEPS[step])
    count = (
        (last.year - first.year) * 12 + last.month - first.month + 1
        if step == "month"
        else (last - first).days // 7 + 1
    )
    return [_advance(first, step, k) for k in range(max(count, 0) + 1)]


def step_label(start: datetime, step: Step) -> str:
    """`2025-03` for a month, the Monday's date `2025-03-10` for a week."""
    return start.strftime("%Y-%m") if step == "month" else start.date().isoformat()


# --- statistics -----------------------------------------------------------------------------


def space_time_neighbours(spatial: list[list[int]], steps: int, back: int) -> list[list[int]]:
    """Neighbours of each bin of the cube, bins numbered t * cells + c: the cell's spatial
    neighbours in the same step, and the cell itself with its spatial neighbours in each of
    the `back` previous steps (Esri's "neighborhood time step"; never a later step).

    Each cell's pattern (relative to its own step's first bin) is written once per depth;
    a step's neighbours are then its pattern shifted in one numpy addition, and the lists are
    slices of one Python list (a list per bin built element by element took ~1 s for the
    border zone over 36 months)."""
    n = len(spatial)
    patterns: list[tuple[Array, Array]] = []  # per depth: (flat offsets, lengths per cell)
    for depth in range(min(back, max(steps - 1, 0)) + 1):
        rows = [
            nb + [m - d * n for d in range(1, depth + 1) for m in (c, *nb)]
            for c, nb in enumerate(spatial)
        ]
        flat = np.fromiter((m for r in rows for m in r), dtype=np.int64)
        patterns.append((flat, np.array([len(r) for r in rows], dtype=np.int64)))
    blocks: list[Array] = []
    lengths: list[Array] = []
    for t in range(steps):
        flat, length = patterns[min(back, t)]
        blocks.append(flat + t * n)
        lengths.append(length)
    if not blocks:
        return []
    with _collector_paused():
        everything: list[int] = np.concatenate(blocks).tolist()
        ends = np.cumsum(np.concatenate(lengths)).tolist()
        starts = [0, *ends[:-1]]
        return [everything[a:b] for a, b in zip(starts, ends, strict=True)]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while hundreds of thousands of lists (which
    hold no cycles) are made: each 700 new containers would start a collection, which made
    the lists 5x slower. Process-wide, for a fraction of a second; re-enabled only by whoever
    paused it."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass(frozen=True)
class Trend:
    """Mann-Kendall trend test of each row: S, its variance (ties corrected), the normal
    z-score with the continuity correction, and the two-sided p-value; NaN for a row with a
    NaN or no variance."""

    s: Array
    var: Array
    z: Array
    p: Array


def mann_kendall(series: Array) -> Trend:
    """The Mann-Kendall test on each row of a (rows x steps) array, vectorised over rows:
    S = Σ_{i<j} sign(x_j − x_i); Var(S) = [n(n−1)(2n+5) − Σ_ties t(t−1)(2t+5)] / 18;
    Z = (S − sign S) / √Var(S); p = 2 (1 − Φ(|Z|))."""
    rows, n = series.shape
    s = np.zeros(rows, dtype=np.float64)
    ties = np.zeros(rows, dtype=np.float64)
    for i in range(n):
        later = series[:, i + 1 :]
        s += np.sign(later - series[:, i : i + 1]).sum(axis=1)
        # each value with c equal values in its row (itself included) adds (c−1)(2c+5): a
        # group of t ties adds t·(t−1)(2t+5) in all
        c = (series == series[:, i : i + 1]).sum(axis=1)
        ties += (c - 1) * (2 * c + 5)
    var = (n * (n - 1) * (2 * n + 5) - ties) / 18.0
    bad = np.isnan(series).any(axis=1) | ~(var > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (s - np.sign(s)) / np.sqrt(var)
    z[bad] = np.nan
    s[bad] = np.nan
    p = np.array([math.erfc(abs(v) / math.sqrt(2)) if v == v else math.nan for v in z])
    return Trend(s=s, var=var, z=z, p=p)


def _side(
    mine: list[bool], other: list[bool], trend_z: float, trend_p: float, rising: bool
) -> str | None:
    """The hot (or cold) category of a series of significant bins (`mine`: hot bins for the
    hot side) given the other side's bins, or None. `rising`: the trend that intensifies."""
    n = len(mine)
    total = sum(mine)
    final = mine[-1]
    trend = trend_p <= TREND_ALPHA if trend_p == trend_p else False
    if total >= SHARE * n:
        if not final:
            return "historical"
        if trend and (trend_z > 0) == rising:
            return "intensifying"
        if trend:
            return "diminishing"
        return "persistent"
    if not final:
        return None
    if any(other):
        return "oscillating"
    run = 0
    while run < n and mine[n - 1 - run]:
        run += 1
    if total == run:  # never significant before the final run
        return "new" if run == 1 else "consecutive"
    return "sporadic"


def classify(hot: list[bool], cold: list[bool], trend_z: float, trend_p: float) -> str:
    """Esri's category of one location from its significant hot and cold bins (oldest
    first) and the Mann-Kendall trend of its z-scores (docs/analysis.md)."""
    found = _side(hot, cold, trend_z, trend_p, rising=True)
    if found is not None:
        return f"{found}_hot_spot"
    found = _side(cold, hot, trend_z, trend_p, rising=False)
    if found is not None:
        return f"{found}_cold_spot"
    return "no_pattern"


# --- the cube -------------------------------------------------------------------------------


def hex_index(x: Array, y: Array, edge: float) -> tuple[Array, Array]:
    """The ST_HexagonGrid cell (i, j) holding each point: flat-topped hexagons of edge `edge`
    centred at x = 1.5·edge·i, y = √3·edge·(j + ½·(|i| mod 2)) — the nearest centre, by
    rounding cube coordinates (the arithmetic app/analysis/hotspots.py does in SQL)."""
    q = x * (2.0 / 3.0) / edge
    r = (x * (-1.0 / 3.0) + y * (math.sqrt(3.0) / 3.0)) / edge
    s = -q - r
    rq, rr, rs = np.round(q), np.round(r), np.round(s)
    dq, dr, ds = np.abs(rq - q), np.abs(rr - r), np.abs(rs - s)
    q_fixed = (dq > dr) & (dq > ds)
    r_fixed = ~q_fixed & (dr > ds)
    qi = np.where(q_fixed, -rr - rs, rq)
    ri = np.where(r_fixed, -rq - rs, rr)
    return qi.astype(np.int64), (ri + np.floor(qi / 2.0)).astype(np.int64)


@dataclass(frozen=True)
class Located:
    """The matching incidents in the study area's box: projected x, y and time step."""

    x: Array
    y: Array
    step: Array


async def located(
    *, session: AsyncSession, filt: IncidentFilter, study: hotspots.StudyArea, edges: list[datetime]
) -> Located:
    """One row: the candidates' projected coordinates (float8) and steps (int2) as binary
    strings (the incidents of the area's box within the cube's time span)."""
    edge_values = [e.astimezone(UTC) for e in edges]
    edges_param = bindparam("edges", edge_values, type_=ARRAY(DateTime(timezone=True)))
    i = Incident
    rows = (
        select(
            func.ST_Transform(i.geom, SRID_UTM48N).label("p"),
            (func.width_bucket(i.occurred_at, edges_param) - 1).label("k"),
        )
        .where(
            *filt.conditions(),
            overlaps_bbox(i.geom, hotspots._padded(study.extent)),
            i.occurred_at >= edge_values[0],
            i.occurred_at < edge_values[-1],
            *near_border(study),
        )
        .offset(literal_column("'0'"))  # a fence: the projection once per incident
        .subquery()
    )
    empty = cast(b"", LargeBinary)
    xy = func.float8send(func.ST_X(rows.c.p)).concat(func.float8send(func.ST_Y(rows.c.p)))
    stmt = select(
        func.string_agg(xy, empty),
        func.string_agg(func.int2send(cast(rows.c.k, SmallInteger)), empty),
    )
    got_xy, got_k = (await session.execute(stmt)).one()
    pairs = np.frombuffer(got_xy or b"", dtype=">f8").reshape(-1, 2).astype(np.float64)
    step = np.frombuffer(got_k or b"", dtype=">i2").astype(np.int64)
    return Located(pairs[:, 0].copy(), pairs[:, 1].copy(), step)


def near_border(study: hotspots.StudyArea) -> list[ColumnElement[bool]]:
    """For the border zone, a prefilter on the derived distance to the border (btree): the
    zone's 50 km are measured in EPSG:32648, whose scale factor (0.9996 to 1.0026 over Viet
    Nam) keeps them within 50.02 km on the spheroid, so 1 % more loses no incident of the
    zone, and the box of the zone (nearly all of Viet Nam) no longer projects every incident.
    """
    if study.label != hotspots.BORDER_ZONE:
        return []
    km = Incident.border_distance_km
    return [or_(km.is_(None), km <= hotspots.BORDER_ZONE_KM * 1.01)]


def bin_counts(points: Located, grid: hotspots.Grid, cell_km: float, steps: int) -> Array:
    """(steps x cells) counts: each point in its hexagon of the grid (points in no cell of the
    grid left out; in a cell cut by the area's edge only if the clipped cell holds it, its
    boundary included, as ST_Intersects)."""
    n = len(grid.cells)
    counts = np.zeros((steps, n), dtype=np.int64)
    if n == 0 or len(points.x) == 0:
        return counts
    ci, cj = hex_index(points.x, points.y, cell_km * 1000 / math.sqrt(3.0))
    cells = np.array(grid.cells, dtype=np.int64).reshape(-1, 2)
    i0, j0 = int(cells[:, 0].min()), int(cells[:, 1].min())
    width = int(cells[:, 1].max()) - j0 + 1
    keys = (cells[:, 0] - i0) * width + (cells[:, 1] - j0)  # ascending: the grid is (i, j)-sorted
    mine = (cj >= j0) & (cj < j0 + width)
    key = (ci - i0) * width + (cj - j0)
    pos = np.clip(np.searchsorted(keys, key), 0, n - 1)
    mine &= keys[pos] == key
    cut_at = np.array([w is not None for w in grid.cut], dtype=bool)
    in_cut = mine & cut_at[pos]
    if in_cut.any():
        shapes = np.empty(n, dtype=object)
        where = np.nonzero(cut_at)[0]
        shapes[where] = shapely.from_wkb([grid.cut[k] for k in where])
        shapely.prepare(shapes[where])
        idx = np.nonzero(in_cut)[0]
        inside = shapely.intersects_xy(shapes[pos[idx]], points.x[idx], points.y[idx])
        mine[idx[~inside]] = False
    ok = mine & (points.step >= 0) & (points.step < steps)
    flat = np.bincount(points.step[ok] * n + pos[ok], minlength=steps * n)
    return flat.reshape(steps, n)


@dataclass(frozen=True)
class Cube:
    """Per bin (steps x cells): count, Gi* z, p and confidence bin; per cell: the trend and
    the category."""

    counts: Array
    z: Array
    p: Array
    bins: Array
    trend: Trend
    category: list[str]


def analyse(counts: Array, spatial: list[list[int]], back: int, fdr: bool) -> Cube:
    """Gi* of every bin with its space-time neighbours (mean and deviation over the whole
    cube), the trend of each cell's z-scores and its category (CPU only: off the loop)."""
    steps, n = counts.shape
    flat = counts.reshape(-1)
    z = gistar.gi_star(flat, space_time_neighbours(spatial, steps, back))
    p = gistar.two_sided_p(z)
    bins = gistar.confidence_bins(z, p, fdr=fdr)
    z2, p2, b2 = z.reshape(steps, n), p.reshape(steps, n), bins.reshape(steps, n)
    # the trend of the z-scores as published (4 decimals): equal values are ties
    trend = mann_kendall(np.round(z2.T, DECIMALS))
    hot = (b2 > 0).T.tolist()
    cold = (b2 < 0).T.tolist()
    category = [classify(hot[c], cold[c], float(trend.z[c]), float(trend.p[c])) for c in range(n)]
    return Cube(counts, z2, p2, b2, trend, category)


def _check(step: str, back: int) -> None:
    if step not in STEPS:
        raise InvalidInput(f"step must be month or week; got '{step[:20]}'", field="step")
    if not 0 <= back <= MAX_TIME_NEIGHBOURS:
        raise InvalidInput(
            f"time_neighbours must be between 0 and {MAX_TIME_NEIGHBOURS}; got {back}",
            field="time_neighbours",
        )


def _number(v: float, digits: int = 4) -> float | None:
    return None if math.isnan(v) else round(float(v), digits)


async def emerging_hotspots(
    *,
    session: AsyncSession,
    filt: IncidentFilter,
    area: str,
    cell_km: float,
    step: Step,
    time_neighbours: int,
    fdr: bool,
    home: str,
    lang: Lang,
    now: datetime | None = None,
) -> bytes:
    """The emerging hot spots of the matching incidents: one Feature per cell of the hot
    spots' grid over the study area (docs/analysis.md)."""
    _check(step, time_neighbours)
    hotspots.check_cell_km(cell_km)
    for bound in (filt.start, filt.end):
        if bound is not None and not EARLIEST <= bound < LATEST:
            raise InvalidInput(
                f"datetime must lie between {EARLIEST.year} and {LATEST.year - 1} for the"
                " cube's steps",
                field="datetime",
            )
    edges = step_edges(step, filt.start, filt.end, now or datetime.now(UTC))
    steps = len(edges) - 1
    if steps < MIN_STEPS:
        raise InvalidInput(
            f"datetime spans {steps} {step}(s); the trend needs at least {MIN_STEPS} steps"
            " (ten or more are advised)",
            field="datetime",
            min_steps=MIN_STEPS,
        )
    study = await hotspots.study_area(session=session, area=area, home=home)
    estimate = hotspots.estimated_cells(study.area_m2, study.perimeter_m, cell_km)
    if estimate * steps > MAX_BINS or estimate > hotspots.MAX_CELLS:
        raise _too_many(area, cell_km, step, steps, estimate)
    grid = await hotspots.grid(session=session, study=study, cell_km=cell_km)
    n = len(grid.cells)
    if n * steps > MAX_BINS or n > hotspots.MAX_CELLS:
        raise _too_many(area, cell_km, step, steps, n)
    points = await located(session=session, filt=filt, study=study, edges=edges)
    counts = await asyncio.to_thread(bin_counts, points, grid, cell_km, steps)
    spatial = gistar.hex_neighbours(grid.cells)
    cube = await asyncio.to_thread(analyse, counts, spatial, time_neighbours, fdr)
    return _collection(
        cube=cube, grid=grid, head={
            "type": "FeatureCollection",
            "area": area,
            "cell_km": cell_km,
            "step": step,
            "steps": [step_label(e, step) for e in edges[:-1]],
            "time_zone": str(LOCAL),
            "time_neighbours": time_neighbours,
            "fdr": fdr,
            "alpha": ALPHA,
            "trend_alpha": TREND_ALPHA,
            "cells": n,
            "bins": n * steps,
            "incidents": int(counts.sum()),
            "scope": filt.scope.name,
            "crs_metric": f"EPSG:{SRID_UTM48N}",
            "lang": lang,
            "legend": [{"code": c, "name": NAMES[c][lang]} for c, _, _ in CATEGORIES],
        }, lang=lang,
    )  # fmt: skip


def _too_many(area: str, cell_km: float, step: str, steps: int, cells: int) -> InvalidInput:
    return InvalidInput(
        f"cell_km={cell_km:g} over '{area[:60]}' makes about {cells:,} cells x {steps}"
        f" {step}s = {cells * steps:,} bins; at most {MAX_BINS:,} bins"
        f" (and {hotspots.MAX_CELLS:,} cells) are allowed: use a larger cell_km, a smaller"
        " area, a shorter datetime or step=month",
        field="cell_km",
        max_bins=MAX_BINS,
        estimated_bins=cells * steps,
    )


def _collection(*, cube: Cube, grid: hotspots.Grid, head: dict[str, Any], lang: Lang) -> bytes:
    parts: list[bytes] = []
    counts = cube.counts.T.tolist()
    bins = cube.bins.T.tolist()
    zs = np.round(cube.z.T, DECIMALS)
    for c, ((i, j), shape, (lon, lat)) in enumerate(
        zip(grid.cells, grid.geojson, grid.centres, strict=True)
    ):
        code = cube.category[c]
        props = {
            "category": code,
            "category_name": NAMES[code][lang],
            "trend_s": None if math.isnan(cube.trend.s[c]) else int(cube.trend.s[c]),
            "trend_z": _number(cube.trend.z[c]),
            "trend_p": _number(cube.trend.p[c], 6),
            "hot_steps": sum(b > 0 for b in bins[c]),
            "cold_steps": sum(b < 0 for b in bins[c]),
            "count": sum(counts[c]),
            "counts": counts[c],
            "z": [None if v != v else v for v in zs[c].tolist()],
            "bins": bins[c],
            "centre": [round(lon, 6), round(lat, 6)],
        }
        parts.append(
            b'{"type":"Feature","id":"%d:%d","geometry":%s,"properties":%s}'
            % (i, j, shape.encode(), orjson.dumps(props))
        )
    return orjson.dumps(head)[:-1] + b',"features":[' + b",".join(parts) + b"]}"
