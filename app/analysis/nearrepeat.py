"""Near-repeat analysis: the Near Repeat Calculator's table (Ratcliffe), a Knox test per
distance band x time band with Monte-Carlo p-values (docs/analysis.md, "Near-repeat").

PostgreSQL hands over the matching incidents' projected coordinates (EPSG:32648, metres) and
times (seconds) as binary strings, at most MAX_INCIDENTS of them. The pairs closer than the
largest distance band come from a grid of cells as wide as that band (only the incidents of
adjacent cells are measured, all in numpy); their distance bands are fixed,
and only their time differences change when the times are shuffled among the incidents, so
every permutation is a gather, a subtraction and a histogram over those pairs (numpy, several
permutations per step). The pairs beyond the largest distance band are never listed: their
row is all pairs' time differences (sorted times, a binary search each; the same under every
shuffle) minus the near pairs'.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Float, LargeBinary, bindparam, cast, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.analysis import emerging, hotspots
from app.errors import InvalidInput
from app.geo.spatial import SRID_UTM48N, overlaps_bbox
from app.i18n import Lang
from app.incidents.filters import IncidentFilter
from app.incidents.models import Incident

Array = npt.NDArray[Any]

MAX_INCIDENTS = 50_000
MAX_PERMUTATIONS = 999
DEFAULT_PERMUTATIONS = 99
MAX_BANDS = 20
MAX_DISTANCE_M = 20_000.0
MAX_DAYS = 3_650.0
# pair visits one request may make: near pairs x (permutations + 1), ~10 s of one core
MAX_WORK = 1_000_000_000
STEP_ELEMENTS = 8_000_000  # pairs x permutations per numpy step (~80 MB of temporaries)
DEFAULT_DISTANCES = (200.0, 400.0, 600.0, 800.0, 1000.0)
DEFAULT_DAYS = (7.0, 14.0, 21.0, 28.0)
ALPHA = 0.05
DAY_S = 86_400.0


def parse_bands(
    text: str | None, field: str, default: tuple[float, ...], top: float
) -> list[float]:
    """Ascending upper edges, comma-separated, each > 0 and <= `top` (InvalidInput else)."""
    if text is None or not text.strip():
        return list(default)
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise InvalidInput(f"{field} must be numbers separated by commas", field=field) from exc
    if not 1 <= len(values) <= MAX_BANDS:
        raise InvalidInput(f"{field} takes 1 to {MAX_BANDS} values", field=field)
    if not all(math.isfinite(v) and 0 < v <= top for v in values):
        raise InvalidInput(f"{field} values must be above 0 and at most {top:g}", field=field)
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise InvalidInput(f"{field} must be strictly ascending", field=field)
    return values


def check_permutations(permutations: int) -> None:
    """9 to MAX_PERMUTATIONS permutations."""
    if not 9 <= permutations <= MAX_PERMUTATIONS:
        raise InvalidInput(
            f"permutations must be between 9 and {MAX_PERMUTATIONS}; got {permutations}",
            field="permutations",
            max_permutations=MAX_PERMUTATIONS,
        )


@dataclass(frozen=True)
class Table:
    """(distance bands + 1) x (time bands + 1): the last row and column are "beyond"."""

    observed: Array
    expected: Array
    p: Array
    near_pairs: int
    pairs: int


def _time_histogram(times: Array, edges: Array) -> Array:
    """Pairs of all the incidents per time band (the last: beyond the last edge)."""
    t = np.sort(times)
    n = len(t)
    within = [
        int((np.searchsorted(t, t + e, side="right") - np.arange(1, n + 1)).sum()) for e in edges
    ]
    total = n * (n - 1) // 2
    cum = np.array([*within, total], dtype=np.int64)
    return np.diff(cum, prepend=0)


def _ranges(starts: Array, lengths: Array) -> Array:
    """The concatenation of arange(s, s + l) for each (s, l)."""
    total = int(lengths.sum())
    first = np.cumsum(lengths) - lengths
    return np.repeat(starts - first, lengths) + np.arange(total)


# the neighbouring cells each cell is paired with (itself included): each unordered pair once
FORWARD = ((0, 0), (0, 1), (1, -1), (1, 0), (1, 1))


def near_pairs(x: Array, y: Array, r: float, permutations: int) -> tuple[Array, Array]:
    """Every pair (a < b) of points at most `r` apart: points are put in square cells of side
    r, and only the points of the same and the adjacent cells are measured. Refuses
    (InvalidInput) when the candidate pairs alone exceed the work one request may do."""
    n = len(x)
    if n < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ix = np.floor((x - x.min()) / r).astype(np.int64)
    iy = np.floor((y - y.min()) / r).astype(np.int64) + 1
    width = int(iy.max()) + 2
    key = ix * width + iy
    order = np.argsort(key, kind="stable")
    cells, starts, counts = np.unique(key[order], return_index=True, return_counts=True)
    found_a: list[Array] = []
    found_b: list[Array] = []
    plan = []
    candidates = 0
    for dx, dy in FORWARD:
        target = cells + dx * width + dy
        pos = np.clip(np.searchsorted(cells, target), 0, len(cells) - 1)
        has = np.nonzero(cells[pos] == target)[0]
        plan.append((has, pos[has]))
        candidates += int((counts[has] * counts[pos[has]]).sum())
    if candidates * (permutations + 1) > 4 * MAX_WORK:
        raise _too_much(candidates, r, permutations)
    for (dx, dy), (ca, cb) in zip(FORWARD, plan, strict=True):
        # every point of each cell A, repeated once per point of its cell B
        pa = _ranges(starts[ca], counts[ca])
        times = np.repeat(counts[cb], counts[ca])
        pb = _ranges(np.repeat(starts[cb], counts[ca]), times)
        pa = np.repeat(pa, times)
        if (dx, dy) == (0, 0):
            keep = pa < pb
            pa, pb = pa[keep], pb[keep]
        i, j = order[pa], order[pb]
        close = (x[i] - x[j]) ** 2 + (y[i] - y[j]) ** 2 <= r * r
        found_a.append(np.minimum(i[close], j[close]))
        found_b.append(np.maximum(i[close], j[close]))
    return np.concatenate(found_a), np.concatenate(found_b)


def _too_much(pairs: int, r: float, permutations: int) -> InvalidInput:
    return InvalidInput(
        f"{pairs:,} pairs of incidents lie within {r:g} m: with {permutations} permutations"
        f" that is more than {MAX_WORK:,} pair tests; narrow the filters (datetime, area,"
        " category …), use a smaller largest distance band or fewer permutations",
        field="distance_bands",
        max_work=MAX_WORK,
    )


def knox(
    x: Array,
    y: Array,
    days: Array,
    distances: list[float],
    times: list[float],
    permutations: int,
    seed: int,
) -> Table:
    """The Knox table and its Monte-Carlo test (CPU only: run it off the event loop)."""
    nd, nt = len(distances), len(times)
    t_edges = np.array(times, dtype=np.float64)
    n = len(x)
    all_pairs = _time_histogram(days, t_edges)
    a, b = near_pairs(x, y, distances[-1], permutations)
    near = len(a)
    if near * (permutations + 1) > MAX_WORK:
        raise _too_much(near, distances[-1], permutations)
    dist = np.hypot(x[a] - x[b], y[a] - y[b])
    dband = np.searchsorted(np.array(distances), dist, side="left")  # (e[k-1], e[k]]
    # Incidents renumbered west to east in strips of the largest band, and the pairs sorted by
    # distance band then by their first incident: the times each permutation gathers for a run
    # of pairs then sit close together in memory. Each distance band is one slice of pairs.
    strip = np.floor((x - x.min()) / distances[-1]) if n else x
    loc = np.lexsort((y, strip))
    rank = np.empty(n, dtype=np.int64)
    rank[loc] = np.arange(n)
    pa, pb = rank[a], rank[b]
    by = np.lexsort((pa, dband))
    pa, pb, dband = pa[by], pb[by], dband[by]
    cuts = np.searchsorted(dband, np.arange(nd + 1))  # band k: pairs cuts[k]:cuts[k+1]
    local = days[loc]

    def table(perms: Array | None) -> Array:
        """Near pairs per (distance band, time band) with the incidents' times shuffled by
        each row of `perms` (None: as observed)."""
        t = local[None, :] if perms is None else local[perms]
        dt = np.abs(t[:, pa] - t[:, pb])
        # pairs at most each time edge apart, per distance band (cumulative over time bands)
        upto = np.zeros((len(t), nd, nt + 1), dtype=np.int64)
        for j, edge in enumerate(t_edges):
            close = dt <= edge
            for k in range(nd):
                upto[:, k, j] = np.count_nonzero(close[:, cuts[k] : cuts[k + 1]], axis=1)
        upto[:, :, nt] = np.diff(cuts)[None, :]
        return np.diff(upto, axis=2, prepend=0)

    def full(near_rows: Array) -> Array:
        """Add the "beyond" row: all pairs' time bands minus the near pairs'."""
        beyond = all_pairs[None, :] - near_rows.sum(axis=1)
        return np.concatenate([near_rows, beyond[:, None, :]], axis=1)

    observed = full(table(None))[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, STEP_ELEMENTS // max(near, 1))
    at_least = np.zeros_like(observed)
    total = np.zeros(observed.shape, dtype=np.float64)
    done = 0
    while done < permutations:
        k = min(chunk, permutations - done)
        sims = full(table(np.stack([rng.permutation(n) for _ in range(k)])))
        at_least += (sims >= observed[None]).sum(axis=0)
        total += sims.sum(axis=0)
        done += k
    expected = total / permutations
    p = (1.0 + at_least) / (permutations + 1.0)
    return Table(observed, expected, p, near, n * (n - 1) // 2)


@dataclass(frozen=True)
class Events:
    """Projected coordinates (m) and times (days since 1970) of the matching incidents."""

    x: Array
    y: Array
    days: Array


async def events(
    *, session: AsyncSession, filt: IncidentFilter, study: hotspots.StudyArea | None
) -> Events:
    """The matching incidents (inside the study area when one is named), at most
    MAX_INCIDENTS (InvalidInput beyond): one row of binary strings."""
    i = Incident
    conditions = list(filt.conditions())
    xy_col = func.ST_Transform(i.geom, SRID_UTM48N)
    if study is not None:
        conditions.append(overlaps_bbox(i.geom, hotspots._padded(study.extent)))
        conditions.extend(emerging.near_border(study))
        shape = func.ST_GeomFromWKB(bindparam("study", study.wkb, type_=LargeBinary), SRID_UTM48N)
        conditions.append(func.ST_Intersects(shape, xy_col))
    rows = (
        select(
            xy_col.label("p"),
            cast(func.extract("epoch", i.occurred_at), Float).label("t"),
        )
        .where(*conditions)
        .limit(MAX_INCIDENTS + 1)
        .offset(literal_column("'0'"))
        .subquery()
    )
    empty = cast(b"", LargeBinary)
    xyt = (
        func.float8send(func.ST_X(rows.c.p))
        .concat(func.float8send(func.ST_Y(rows.c.p)))
        .concat(func.float8send(rows.c.t))
    )
    got = (await session.execute(select(func.string_agg(xyt, empty)))).scalar()
    values = np.frombuffer(got or b"", dtype=">f8").reshape(-1, 3).astype(np.float64)
    if len(values) > MAX_INCIDENTS:
        raise InvalidInput(
            f"more than {MAX_INCIDENTS:,} incidents match; the near-repeat test takes at most"
            f" {MAX_INCIDENTS:,}: narrow the filters (datetime, area, category …)",
            field="datetime",
            max_incidents=MAX_INCIDENTS,
        )
    return Events(values[:, 0].copy(), values[:, 1].copy(), values[:, 2] / DAY_S)


EXPLANATION: dict[Lang, str] = {
    "en": (
        "Near-repeat (Knox) test of {n} incidents, as the Near Repeat Calculator: every pair"
        " of incidents is counted in the distance band (metres, in EPSG:32648) and the time"
        " band (days between them) it falls in. 'expected' is the mean count of the same cell"
        " over {perm} permutations in which the incidents' times are shuffled among them"
        " (places kept), i.e. what the cell would hold if when an incident happens had"
        " nothing to do with where. 'knox_ratio' = observed / expected: above 1, more pairs"
        " are this close in space and time than chance gives (e.g. 1.5: 50 % more). 'p_value'"
        " = (1 + permutations with at least the observed count) / ({perm} + 1), one-sided;"
        " p <= 0.05 is marked significant. With many cells a few are significant by chance"
        " (about one in twenty at 0.05). Bands include their upper edge; the last row and"
        " column hold the pairs beyond the largest band."
    ),
    "vi": (
        "Kiểm định lặp lại gần (Knox) trên {n} vụ việc, như Near Repeat Calculator: mỗi cặp"
        " vụ việc được đếm vào ô của khoảng cách (mét, hệ EPSG:32648) và khoảng thời gian"
        " (số ngày giữa hai vụ) mà nó thuộc về. 'expected' là số cặp trung bình của cùng ô"
        " qua {perm} lần hoán vị, trong đó thời gian của các vụ được xáo trộn giữa chúng (giữ"
        " nguyên vị trí), tức là số cặp nếu thời điểm xảy ra không liên quan đến nơi xảy ra."
        " 'knox_ratio' = quan sát / kỳ vọng: lớn hơn 1 nghĩa là có nhiều cặp gần nhau cả về"
        " không gian lẫn thời gian hơn mức ngẫu nhiên (ví dụ 1,5: nhiều hơn 50 %). 'p_value'"
        " = (1 + số hoán vị có số cặp không nhỏ hơn quan sát) / ({perm} + 1), một phía;"
        " p ≤ 0,05 được đánh dấu là có ý nghĩa thống kê. Khi có nhiều ô, một vài ô có ý nghĩa"
        " chỉ do ngẫu nhiên (khoảng một trên hai mươi ở mức 0,05). Mỗi khoảng gồm cả cận"
        " trên; hàng và cột cuối chứa các cặp vượt quá khoảng lớn nhất."
    ),
}


def _ratio(o: float, e: float) -> float | None:
    return round(o / e, 4) if e > 0 else None


async def near_repeat(
    *,
    session: AsyncSession,
    filt: IncidentFilter,
    area: str | None,
    distance_bands: str | None,
    time_bands: str | None,
    permutations: int,
    seed: int,
    home: str,
    lang: Lang,
) -> dict[str, Any]:
    """The near-repeat table of the matching incidents (inside `area` when given)."""
    distances = parse_bands(distance_bands, "distance_bands", DEFAULT_DISTANCES, MAX_DISTANCE_M)
    times = parse_bands(time_bands, "time_bands", DEFAULT_DAYS, MAX_DAYS)
    check_permutations(permutations)
    study = await hotspots.study_area(session=session, area=area, home=home) if area else None
    found = await events(session=session, filt=filt, study=study)
    result = await asyncio.to_thread(
        knox, found.x, found.y, found.days, distances, times, permutations, seed
    )
    d_edges: list[float | None] = [0.0, *distances, None]
    t_edges: list[float | None] = [0.0, *times, None]
    cells: list[dict[str, Any]] = []
    for r in range(len(distances) + 1):
        for c in range(len(times) + 1):
            o = int(result.observed[r, c])
            e = float(result.expected[r, c])
            p = float(result.p[r, c])
            cells.append(
                {
                    "distance_from_m": d_edges[r],
                    "distance_to_m": d_edges[r + 1],
                    "time_from_days": t_edges[c],
                    "time_to_days": t_edges[c + 1],
                    "observed": o,
                    "expected": round(e, 4),
                    "knox_ratio": _ratio(o, e),
                    "p_value": round(p, 6),
                    "significant": p <= ALPHA and o > e,
                }
            )
    return {
        "area": area,
        "scope": filt.scope.name,
        "incidents": len(found.x),
        "pairs": result.pairs,
        "near_pairs": result.near_pairs,
        "distance_bands_m": distances,
        "time_bands_days": times,
        "permutations": permutations,
        "seed": seed,
        "alpha": ALPHA,
        "crs_metric": f"EPSG:{SRID_UTM48N}",
        "lang": lang,
        "explanation": EXPLANATION[lang].format(n=len(found.x), perm=permutations),
        "cells": cells,
    }
