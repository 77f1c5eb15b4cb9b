"""DBSCAN clusters of incidents in a metric projection (EPSG:32648), aggregates only.

PostgreSQL projects the matching incidents and hands over their coordinates in one value; the
clustering itself is an exact grid DBSCAN in numpy (Gunawan's cell method): cells of side
eps/√2, so that any two incidents of one cell are within eps of each other. A cell holding
`min_points` incidents makes them all core without measuring a distance; only the incidents of
sparser cells have their neighbours counted, and two cells' core incidents are joined by a
cheap test between their extreme incidents before any pair-by-pair measurement. PostGIS's
`ST_ClusterDBSCAN` measures every pair within eps (hundreds of millions at 1 M incidents, past
the statement timeout); see docs/decisions.md, "Clusters: an exact grid DBSCAN". GEOS builds
the hulls; PostGIS widens them and writes the GeoJSON.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import shapely
from sqlalchemy import (
    Float,
    Integer,
    LargeBinary,
    SmallInteger,
    Text,
    bindparam,
    cast,
    column,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput
from app.geo import geojson
from app.geo.spatial import SRID_UTM48N, SRID_WGS84
from app.incidents.filters import IncidentFilter
from app.incidents.models import Category, Incident

MIN_EPS_M, MAX_EPS_M = 10.0, 50_000.0
MIN_POINTS, MAX_POINTS = 2, 1000

Array = np.ndarray[Any, Any]

# the cells around a cell (of side eps/√2) that may hold an incident within eps of one of its
# own: two apart in both directions is already more than eps away
AROUND = sorted(
    ((di, dj) for di in range(-2, 3) for dj in range(-2, 3) if 0 < abs(di) + abs(dj) < 4),
    key=lambda o: (max(abs(o[0]) - 1, 0) ** 2 + max(abs(o[1]) - 1, 0) ** 2, o),
)  # nearest first: the gap between the cells, in cell sides
FORWARD = [o for o in AROUND if o > (0, 0)]  # each unordered pair of cells once
PAIRS_PER_STEP = 4_000_000  # distance measurements per numpy step (~100 MB of temporaries)
# distance measurements one request may make (seconds of one core; docs/performance.md): the
# clustering runs in a thread, which the statement timeout does not stop
MAX_PAIRS = 300_000_000


class Budget:
    """The distance measurements left to one clustering (InvalidInput when spent)."""

    def __init__(self, pairs: int) -> None:
        self.left = pairs

    def spend(self, pairs: int) -> None:
        """Take `pairs` from the budget, or refuse the request."""
        self.left -= pairs
        if self.left < 0:
            raise InvalidInput(
                "these eps_m and min_points need too many distance measurements over the"
                " matching incidents; narrow the filters (datetime, bbox, jurisdiction,"
                " category …) or choose a smaller min_points",
                field="min_points",
            )


def check_dbscan(eps_m: float, min_points: int) -> None:
    """eps_m within [10 m, 50 km] and min_points within [2, 1000] (InvalidInput otherwise)."""
    if not (math.isfinite(eps_m) and MIN_EPS_M <= eps_m <= MAX_EPS_M):
        raise InvalidInput(
            f"eps_m must be between {MIN_EPS_M:g} and {MAX_EPS_M:g} m; got {eps_m:g}",
            field="eps_m",
        )
    if not MIN_POINTS <= min_points <= MAX_POINTS:
        raise InvalidInput(
            f"min_points must be between {MIN_POINTS} and {MAX_POINTS}; got {min_points}",
            field="min_points",
        )


# --- the clustering ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cells:
    """Points sorted by grid cell: per point its coordinates and cell, per cell its key, first
    point and count."""

    x: Array
    y: Array
    ix: Array  # cell column of each point
    iy: Array  # cell row of each point
    cell: Array  # cell number of each point
    key: Array  # per cell, ascending
    start: Array
    count: Array
    width: int  # key = column * width + row
    x0: float  # the grid's origin (the west and south edges of column 2 and row 2)
    y0: float
    side: float

    def reach(self, p: Array, cells: Array) -> tuple[Array, Array]:
        """Squared nearest and farthest distances from the points p to the boxes of `cells`."""
        col, row = np.divmod(self.key[cells], self.width)
        left = self.x0 + (col - 2) * self.side
        bottom = self.y0 + (row - 2) * self.side
        x, y = self.x[p], self.y[p]
        gx = np.maximum(0.0, np.maximum(left - x, x - left - self.side))
        gy = np.maximum(0.0, np.maximum(bottom - y, y - bottom - self.side))
        fx = np.maximum(np.abs(x - left), np.abs(x - left - self.side))
        fy = np.maximum(np.abs(y - bottom), np.abs(y - bottom - self.side))
        return gx * gx + gy * gy, fx * fx + fy * fy

    def around(self, cells: Array, di: int, dj: int) -> Array:
        """The cell number at offset (di, dj) from each of `cells`, -1 where it is empty."""
        want = self.key[cells] + di * self.width + dj
        at = np.searchsorted(self.key, want)
        at[at >= len(self.key)] = 0
        return np.where(self.key[at] == want, at, -1)


def _cells(x: Array, y: Array, side: float) -> tuple[Cells, Array]:
    """The points on a grid of `side` metres (margins of two cells, so that offsets of up to
    two never wrap), and the order that sorts them by cell."""
    x0, y0 = float(x.min()), float(y.min())
    ix = np.floor((x - x0) / side).astype(np.int64) + 2
    iy = np.floor((y - y0) / side).astype(np.int64) + 2
    width = int(iy.max()) + 3
    keys = ix * width + iy
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    start = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    key = keys[start]
    count = np.diff(np.append(start, len(keys)))
    cell = np.repeat(np.arange(len(key)), count)
    cells = Cells(
        x[order], y[order], ix[order], iy[order], cell, key, start, count, width, x0, y0, side
    )
    return cells, order


def _members(
    owner: Array, cells: Array, start: Array, count: Array, budget: Budget
) -> Iterator[tuple[Array, Array]]:
    """(k, q) for every member q of cell cells[k] (members at start[c] .. start[c]+count[c]-1),
    in steps of about PAIRS_PER_STEP pairs."""
    n = count[cells]
    ends = np.cumsum(n)
    i = 0
    while i < len(cells):
        base = int(ends[i - 1]) if i else 0
        j = max(int(np.searchsorted(ends, base + PAIRS_PER_STEP, side="right")), i + 1)
        m = n[i:j]
        total = int(m.sum())
        budget.spend(total)
        k = np.repeat(owner[i:j], m)
        q = np.repeat(start[cells[i:j]] - (np.cumsum(m) - m), m) + np.arange(total)
        yield k, q
        i = j


def _components(n: int, a: Array, b: Array) -> Array:
    """Connected components of n nodes joined by the edges (a, b): each node's smallest member
    (hooking the larger root under the smaller, then pointer jumping, until no edge joins two)."""
    parent = np.arange(n)
    while True:
        pa, pb = parent[a], parent[b]
        apart = pa != pb
        if not apart.any():
            return parent
        np.minimum.at(parent, np.maximum(pa[apart], pb[apart]), np.minimum(pa[apart], pb[apart]))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def _extremes(values: Array, groups: Array, starts: Array, largest: bool) -> Array:
    """Per group (consecutive runs starting at `starts`), the position of its largest (or
    smallest) value."""
    reduce = np.maximum if largest else np.minimum
    best = reduce.reduceat(values, starts)
    hit = np.nonzero(values == best[groups])[0]
    _, first = np.unique(groups[hit], return_index=True)
    out: Array = hit[first]
    return out


# the extreme incident of a cell facing each neighbour: for (di, dj) the one furthest along
# that direction (rounded to an axis or a diagonal)
def _direction(di: int, dj: int) -> tuple[int, int]:
    angle = math.atan2(dj, di)
    step = round(angle / (math.pi / 4))
    return round(math.cos(step * math.pi / 4)), round(math.sin(step * math.pi / 4))


def dbscan(x: Array, y: Array, eps: float, min_points: int) -> Array:
    """DBSCAN labels of the points (x, y in metres): 0, 1, … per cluster, -1 for noise. A point
    is core with at least `min_points` points (itself included) within `eps` (distance <= eps);
    a border point joins the cluster of its nearest core point. Exact: the same clusters as any
    DBSCAN, up to which cluster a border point reachable from two of them joins."""
    n = len(x)
    labels = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return labels
    eps2 = eps * eps
    budget = Budget(MAX_PAIRS)
    side = eps / math.sqrt(2.0)
    g, order = _cells(x, y, side)
    ncells = len(g.key)

    # core: every point of a cell with min_points; the others count their neighbours, nearest
    # cells first, until they have enough: a cell wholly within eps of the point counts whole,
    # one wholly beyond it not at all, only the rest is measured point by point (with a margin
    # of 1e-9 around eps for the rounding of the cell edges)
    core = (g.count >= min_points)[g.cell]
    sparse = np.nonzero(~core)[0]
    near = g.count[g.cell[sparse]].copy()  # the own cell: all within eps
    inner, outer = eps2 * (1 - 1e-9), eps2 * (1 + 1e-9)
    for di, dj in AROUND:
        active = np.nonzero(near < min_points)[0]
        other = g.around(g.cell[sparse[active]], di, dj)
        active, other = active[other >= 0], other[other >= 0]
        nearest, farthest = g.reach(sparse[active], other)
        whole = farthest <= inner
        near[active[whole]] += g.count[other[whole]]
        some = np.nonzero(~whole & (nearest <= outer))[0]
        for k, q in _members(active[some], other[some], g.start, g.count, budget):
            p = sparse[k]
            within = (g.x[p] - g.x[q]) ** 2 + (g.y[p] - g.y[q]) ** 2 <= eps2
            near += np.bincount(k[within], minlength=len(sparse))
    core[sparse[near >= min_points]] = True

    # the core points by cell (still sorted by cell)
    cpos = np.nonzero(core)[0]
    ccell = g.cell[cpos]
    ccount = np.bincount(ccell, minlength=ncells)
    cstart = np.cumsum(ccount) - ccount
    cx, cy = g.x[cpos], g.y[cpos]
    with_core = np.nonzero(ccount)[0]
    firsts = cstart[with_core]
    group = np.repeat(np.arange(len(with_core)), ccount[with_core])
    slot = np.full(ncells, -1)
    slot[with_core] = np.arange(len(with_core))
    extreme: dict[tuple[int, int], Array] = {}  # direction -> per core cell, a core point
    for ux, uy in {_direction(di, dj) for di, dj in AROUND}:
        extreme[(ux, uy)] = _extremes(ux * cx + uy * cy, group, firsts, largest=True)

    # edges between cells whose core points are within eps: first the cells' extreme points
    # facing each other; the pairs that test leaves open are measured pair by pair, unless
    # the edges found already join the two cells
    found_a: list[Array] = []
    found_b: list[Array] = []
    open_a: list[Array] = []
    open_b: list[Array] = []
    for di, dj in FORWARD:
        other = g.around(with_core, di, dj)
        ok = other >= 0
        a, b = with_core[ok], other[ok]
        keep = ccount[b] > 0
        a, b = a[keep], b[keep]
        u, v = _direction(di, dj), _direction(-di, -dj)
        pa, pb = extreme[u][slot[a]], extreme[v][slot[b]]
        close = (cx[pa] - cx[pb]) ** 2 + (cy[pa] - cy[pb]) ** 2 <= eps2
        found_a.append(a[close])
        found_b.append(b[close])
        open_a.append(a[~close])
        open_b.append(b[~close])
    ea, eb = np.concatenate(found_a), np.concatenate(found_b)
    oa, ob = np.concatenate(open_a), np.concatenate(open_b)
    root = _components(ncells, ea, eb)
    # left to measure: pairs not joined yet whose core points' boxes come within eps
    box = [r.reduceat(v, firsts) for r in (np.minimum, np.maximum) for v in (cx, cy)]
    xmin, ymin, xmax, ymax = (np.full(ncells, np.nan) for _ in range(4))
    for whole, part in zip((xmin, ymin, xmax, ymax), box, strict=True):
        whole[with_core] = part
    gap_x = np.maximum(0.0, np.maximum(xmin[ob] - xmax[oa], xmin[oa] - xmax[ob]))
    gap_y = np.maximum(0.0, np.maximum(ymin[ob] - ymax[oa], ymin[oa] - ymax[ob]))
    todo = np.nonzero((root[oa] != root[ob]) & (gap_x**2 + gap_y**2 <= eps2))[0]
    oa, ob = oa[todo], ob[todo]
    joined = np.zeros(len(oa), dtype=bool)
    for k, q in _members(np.arange(len(oa)), ob, cstart, ccount, budget):
        # each core point q of cell ob[k] against every core point p of cell oa[k]
        for j, p in _members(np.arange(len(k)), oa[k], cstart, ccount, budget):
            hit = (cx[p] - cx[q[j]]) ** 2 + (cy[p] - cy[q[j]]) ** 2 <= eps2
            joined[k[j[hit]]] = True
    root = _components(ncells, np.concatenate([ea, oa[joined]]), np.concatenate([eb, ob[joined]]))

    # clusters numbered by their smallest cell
    _, cluster_of_root = np.unique(root[with_core], return_inverse=True)
    cluster = np.full(ncells, -1)
    cluster[with_core] = cluster_of_root
    sorted_labels = np.full(n, -1, dtype=np.int64)
    sorted_labels[cpos] = cluster[ccell]

    # border points: the cluster of the nearest core point within eps (own cell or around)
    loose = np.nonzero(~core)[0]
    best = np.full(len(loose), np.inf)
    pick = np.full(len(loose), -1, dtype=np.int64)
    for di, dj in [(0, 0), *AROUND]:
        other = g.cell[loose] if (di, dj) == (0, 0) else g.around(g.cell[loose], di, dj)
        has = np.nonzero(other >= 0)[0]
        has = has[ccount[other[has]] > 0]
        has = has[g.reach(loose[has], other[has])[0] <= outer]
        for k, q in _members(has, other[has], cstart, ccount, budget):
            p = loose[k]
            d2 = (g.x[p] - cx[q]) ** 2 + (g.y[p] - cy[q]) ** 2
            within = d2 <= eps2  # fewer than min_points per loose point
            k, q, d2 = k[within], q[within], d2[within]
            lab = cluster[ccell[q]]
            # nearest first, then the smaller cluster number: one answer whatever the order
            ordered = np.lexsort((lab, d2, k))
            k, d2, lab = k[ordered], d2[ordered], lab[ordered]
            first = np.ones(len(k), dtype=bool)
            first[1:] = k[1:] != k[:-1]
            k, d2, lab = k[first], d2[first], lab[first]
            better = (d2 <= eps2) & ((d2 < best[k]) | ((d2 == best[k]) & (lab < pick[k])))
            best[k[better]] = d2[better]
            pick[k[better]] = lab[better]
    sorted_labels[loose] = pick
    labels[order] = sorted_labels
    return labels


# --- the service ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Points:
    """The matching incidents in EPSG:32648 (metres) and the index of each one's category in
    `categories`."""

    x: Array
    y: Array
    category: Array
    categories: list[str]


async def projected(*, session: AsyncSession, filt: IncidentFilter) -> Points:
    """The matching incidents' projected coordinates and categories, as three binary strings
    (big-endian float8 and int2): one row, whatever the number of incidents."""
    codes = select(func.array_agg(aggregate_order_by(Category.code, Category.code)))
    codes_value = codes.scalar_subquery()
    rows = (
        select(
            func.ST_Transform(Incident.geom, SRID_UTM48N).label("p"),
            func.array_position(codes_value, Incident.category).label("k"),
        )
        .where(*filt.conditions())
        # a fence: the projection once per incident, not once per coordinate
        .offset(literal_column("'0'"))
        .subquery()
    )
    empty = cast(b"", LargeBinary)
    xy = func.float8send(func.ST_X(rows.c.p)).concat(func.float8send(func.ST_Y(rows.c.p)))
    stmt = select(
        func.string_agg(xy, empty),
        func.string_agg(func.int2send(cast(func.coalesce(rows.c.k, 0), SmallInteger)), empty),
        codes_value,
    )
    got_xy, got_k, categories = (await session.execute(stmt)).one()
    pairs = np.frombuffer(got_xy or b"", dtype=">f8").reshape(-1, 2).astype(np.float64)
    category = np.frombuffer(got_k or b"", dtype=">i2").astype(np.int64) - 1
    return Points(pairs[:, 0].copy(), pairs[:, 1].copy(), category, list(categories or []))


@dataclass(frozen=True)
class Clusters:
    """Per cluster (numbered 0, 1, …): its size, its incidents per category, its convex hull
    (EPSG:32648 WKB) and the hull's area in m²; and the totals."""

    count: list[int]
    by_category: list[str]  # JSON objects
    hull: list[bytes]
    area_m2: list[float]
    incidents: int
    clustered: int


def cluster_points(points: Points, eps_m: float, min_points: int) -> Clusters:
    """DBSCAN over the points, summed up per cluster (CPU only: run it off the event loop)."""
    labels = dbscan(points.x, points.y, eps_m, min_points)
    inside = np.nonzero(labels >= 0)[0]
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    lab = labels[inside]
    count = np.bincount(lab, minlength=n_clusters)
    ncat = max(len(points.categories), 1)
    cat = points.category[inside]
    known = cat >= 0
    per = np.bincount(lab[known] * ncat + cat[known], minlength=n_clusters * ncat)
    per = per.reshape(n_clusters, ncat)
    by_category = [
        orjson.dumps({points.categories[c]: int(row[c]) for c in np.nonzero(row)[0]}).decode()
        for row in per
    ]
    # a stable sort of small integers is a radix sort
    order = np.argsort(lab.astype(np.int16 if n_clusters < 2**15 else np.int64), kind="stable")
    hulls = _hulls(points.x[inside][order], points.y[inside][order], lab[order], count)
    return Clusters(
        count=[int(v) for v in count],
        by_category=by_category,
        hull=[bytes(w) for w in shapely.to_wkb(hulls)],
        area_m2=np.asarray(shapely.area(hulls), dtype=np.float64).tolist(),
        incidents=len(labels),
        clustered=len(inside),
    )


# the directions of the octagon whose corners are each cluster's extreme incidents, in
# counter-clockwise order
OCTAGON = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))


def _hulls(x: Array, y: Array, label: Array, count: Array) -> Array:
    """The convex hull of each cluster's points (sorted by label, `count` per label). The
    points strictly inside the octagon of the cluster's extreme points (Akl–Toussaint) cannot
    be corners of its hull and are left out before GEOS builds one geometry per cluster: at
    1 M incidents, making the points is what costs, not the hulls."""
    starts = np.cumsum(count) - count
    corners = np.stack(
        [_extremes(ux * x + uy * y, label, starts, largest=True) for ux, uy in OCTAGON], axis=1
    )  # (clusters, 8): positions of the octagon's corners
    vx, vy = x[corners], y[corners]
    distinct = np.ones(len(count), dtype=np.int64)
    for e in range(1, len(OCTAGON)):
        distinct += (vx[:, e] != vx[:, e - 1]) | (vy[:, e] != vy[:, e - 1])
    inside = (distinct >= 3)[label]  # fewer corners: no inside, every point is kept
    for e in range(len(OCTAGON)):
        ax, ay = vx[label, e], vy[label, e]
        bx, by = vx[label, (e + 1) % 8], vy[label, (e + 1) % 8]
        cross = (bx - ax) * (y - ay) - (by - ay) * (x - ax)
        inside &= (cross > 0) | ((ax == bx) & (ay == by))
    keep = ~inside
    kept = np.bincount(label[keep], minlength=len(count))
    offsets = np.concatenate([[0], np.cumsum(kept)])
    coords = np.column_stack((x[keep], y[keep]))
    multipoints = shapely.from_ragged_array(shapely.GeometryType.MULTIPOINT, coords, (offsets,))
    hulls: Array = shapely.convex_hull(multipoints)
    return hulls


async def clusters(
    *, session: AsyncSession, filt: IncidentFilter, eps_m: float, min_points: int
) -> bytes:
    """DBSCAN clusters of the matching incidents (in EPSG:32648, so eps is in metres): one
    Feature per cluster — its convex hull widened by eps/2 — with count, categories and the
    hull's own area, busiest first. No incident ids or positions: aggregates only."""
    check_dbscan(eps_m, min_points)
    points = await projected(session=session, filt=filt)
    found = await asyncio.to_thread(cluster_points, points, eps_m, min_points)
    body = await _features(session=session, found=found, eps_m=eps_m)
    head = {
        "type": "FeatureCollection",
        "eps_m": eps_m,
        "min_points": min_points,
        "clusters": len(found.count),
        "incidents": found.incidents,
        "clustered": found.clustered,
        "noise": found.incidents - found.clustered,
        "scope": filt.scope.name,
        "crs_metric": f"EPSG:{SRID_UTM48N}",
    }
    rest = body.removeprefix(b'{"type":"FeatureCollection",')
    return orjson.dumps(head)[:-1] + b"," + rest


async def _features(*, session: AsyncSession, found: Clusters, eps_m: float) -> bytes:
    """The clusters as Features, drawn by PostGIS: ranked by size, then west to east and south
    to north (the hull's lower-left corner in lon/lat)."""
    u = (
        func.unnest(
            bindparam("n", found.count, type_=ARRAY(Integer)),
            bindparam("cats", found.by_category, type_=ARRAY(Text)),
            bindparam("hull", found.hull, type_=ARRAY(LargeBinary)),
            bindparam("area", found.area_m2, type_=ARRAY(Float)),
        )
        .table_valued(
            column("n", Integer),
            column("cats", Text),
            column("hull", LargeBinary),
            column("area", Float),
            with_ordinality="cid",
        )
        .render_derived(name="u")
    )
    hull = func.ST_GeomFromWKB(u.c.hull, SRID_UTM48N)
    lonlat = func.ST_Transform(hull, SRID_WGS84)
    rank = func.row_number().over(
        order_by=(u.c.n.desc(), func.ST_XMin(lonlat), func.ST_YMin(lonlat), u.c.cid)
    )
    # the hull widened by eps/2: its corners would otherwise be exact incident positions, and
    # viewers (aggregates only) may call this; it also reads better on a map than a sliver
    shown = func.ST_Transform(func.ST_Buffer(hull, eps_m / 2, "quad_segs=8"), SRID_WGS84)
    feature = geojson.feature(
        id_=rank,
        geom=shown,
        properties={
            "count": u.c.n,
            "by_category": cast(u.c.cats, JSON),
            "hull_area_km2": geojson.rounded(u.c.area / 1e6, 4),
        },
    )
    return await geojson.collection(session, select(feature.label("f"), rank.label("ord")))
