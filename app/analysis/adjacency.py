"""The cross-boundary table: for every adjacent pair, the incidents near the line it shares
(one pair at a time, with the line itself: `shared_zone` in app/jurisdictions/service.py).

The table is kept per (incidents and jurisdictions versions, scope, filter, level, km, day) in a
small per-process LRU (app/analysis/cache.py): a dashboard opening again, or another user with
the same view, gets it without the ~5 s of work; a write moves the version and so the key.

The dashboard's table is counted in memory from the snapshot and the kept hits (PairHits: which
incident is near which shared line). After a write the hits are not made again from every
incident: the change log (app/tiles/change_log.py) names the changed ids, their old hits leave
and their hits now are measured again, alone (`hits_delta`), as the snapshot is updated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import numpy as np
import orjson
from geoalchemy2 import Geometry
from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    cast,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import String

from app.analysis import snapshot
from app.analysis.cache import VersionedCache
from app.analysis.snapshot import Snapshot
from app.auth.scope import NATIONAL
from app.geo import spatial
from app.incidents.filters import IncidentFilter
from app.incidents.models import Incident
from app.jurisdictions.service import SHARED_LINE
from app.tiles import versions

# the change counters the table is made of (the adjacency itself is written only by the
# boundary load, which writes the jurisdictions too and so moves their counter)
DEPENDS = ("incidents", "jurisdictions")
CACHE_SIZE = 32  # tables kept per process (a province table is ~10 kB, a commune one < 1 MB)

# cross-boundary: shared lines are measured piece by piece (segments <= 2 km, <= 10 vertices)
PIECE_SEGMENT_M = 2000.0
PIECE_VERTICES = 10

PAIRS_SQL = f"""
    SELECT a.code AS a, b.code AS b, {SHARED_LINE} AS line
      FROM jurisdiction_adjacency x
      JOIN jurisdiction a ON a.id = x.a_id
      JOIN jurisdiction b ON b.id = x.b_id
     WHERE a.level = :level AND a.code < b.code
       AND incident_in_force(a.valid_from, a.valid_to, :at)
       AND incident_in_force(b.valid_from, b.valid_to, :at)
"""


def _pairs_and_hits(
    *, level: str, km: float, filt: IncidentFilter, at: date, only: Select[Any] | None = None
) -> tuple[Any, Any]:
    """The adjacent pairs of units of `level` in force on `at` (a CTE: a, b, line) and the
    matching incidents in each pair's shared zone (a subquery: a, b, id, distinct); with
    `only` (a select of a few incident ids), those incidents' hits alone."""
    pairs = (
        text(PAIRS_SQL)
        .bindparams(level=level, at=at)
        .columns(a=String, b=String, line=Geometry)
        .cte("pairs")
        .prefix_with("MATERIALIZED")
    )
    # the shared lines cut into pieces of at most ~20 km: a whole line's box can span a
    # province and hold tens of thousands of incidents, each then measured against the whole
    # line; near a piece = near the line
    piece = func.ST_Subdivide(
        func.geometry(func.ST_Segmentize(func.geography(pairs.c.line), PIECE_SEGMENT_M)),
        PIECE_VERTICES,
    )
    pieces = (
        select(pairs.c.a, pairs.c.b, piece.label("g")).cte("pieces").prefix_with("MATERIALIZED")
    )
    # the incidents that may be near each piece (planar distance in degrees, index-assisted),
    # fenced (OFFSET) so that the test "in a or b" stays a filter on them: pushed down,
    # PostgreSQL ANDs the index scan with two GIN scans of the path index per piece, which
    # read far more rows than the spatial scan keeps (docs/decisions.md, "Near a line")
    radius_m = km * 1000
    if only is not None:  # a few incidents: each measured against the pieces near it
        moved = (
            select(Incident.id, Incident.geom, Incident.jurisdiction_path)
            .where(Incident.id.in_(only), *filt.conditions())
            .cte("moved")
            .prefix_with("MATERIALIZED")
        )
        near_of: Any = moved
        close = spatial.may_be_within_metres(moved.c.geom, pieces.c.g, radius_m)
        joined = pieces.join(moved, close)
    else:
        near_of = (
            select(Incident.id, Incident.geom, Incident.jurisdiction_path)
            .where(
                spatial.may_be_within_metres(Incident.geom, pieces.c.g, radius_m),
                *filt.conditions(),
            )
            .offset(literal_column("'0'"))
            .lateral("near")
        )
        joined = pieces.join(near_of, true())
    hits = (
        select(pieces.c.a, pieces.c.b, near_of.c.id)
        .select_from(joined)
        .where(
            or_(_path_has_col(near_of, pieces.c.a), _path_has_col(near_of, pieces.c.b)),
            spatial.within_metres_of(near_of.c.geom, pieces.c.g, radius_m),
        )
        .distinct()
        .subquery("hits")
    )
    return pairs, hits


async def cross_boundary(
    *, session: AsyncSession, level: str, km: float, filt: IncidentFilter, at: date
) -> list[dict[str, Any]]:
    """For every adjacent pair of units of `level` in force on `at` (adjacency is per era:
    today's 34 provinces border only each other, the 63 of before 1 July 2025 each other), the
    matching incidents in its shared zone (those whose jurisdiction path holds either unit)."""
    pairs, hits = _pairs_and_hits(level=level, km=km, filt=filt, at=at)
    counts = (
        select(hits.c.a, hits.c.b, func.count().label("n"))
        .group_by(hits.c.a, hits.c.b)
        .subquery("counts")
    )
    stmt = (
        select(
            pairs.c.a,
            pairs.c.b,
            (func.ST_Length(func.geography(pairs.c.line)) / 1000.0).label("shared_km"),
            func.coalesce(counts.c.n, 0).label("n"),
        )
        .outerjoin(counts, (counts.c.a == pairs.c.a) & (counts.c.b == pairs.c.b))
        .order_by(literal_column("n").desc(), pairs.c.a, pairs.c.b)
    )
    rows = await session.execute(stmt)
    return [
        {"a": r.a, "b": r.b, "shared_km": round(float(r.shared_km), 2), "count": int(r.n)}
        for r in rows
    ]


def _path_has_col(rows: FromClause, code: ColumnElement[str]) -> ColumnElement[bool]:
    return rows.c.jurisdiction_path.bool_op("@>")(cast(array([code]), ARRAY(String(32))))


def table_key(
    *, found: versions.Versions, level: str, km: float, filt: IncidentFilter, at: date
) -> tuple[Hashable, ...]:
    """Everything the table's body depends on: the versions of its data (with the scope's
    view tag), the filter, the level, the distance and the day."""
    view = versions.incident_view(filt, aggregate_only=False)
    return ("cross-boundary", versions.token(DEPENDS, found, view), level, km, at, filt)


def new_cache() -> VersionedCache[bytes]:
    """An empty per-process cache of cross-boundary bodies."""
    return VersionedCache(CACHE_SIZE)


async def cross_boundary_body(
    *,
    session: AsyncSession,
    cache: VersionedCache[bytes],
    key: tuple[Hashable, ...],
    level: str,
    km: float,
    filt: IncidentFilter,
    at: date,
) -> bytes:
    """The JSON body of GET /analysis/cross-boundary, from `cache` when it holds `key`
    (table_key), computed and kept otherwise."""

    async def make() -> bytes:
        pairs = await cross_boundary(session=session, level=level, km=km, filt=filt, at=at)
        return orjson.dumps({"level": level, "km": km, "at": at.isoformat(), "pairs": pairs})

    return await cache.get(key, make)


# ---- the table from memory ----------------------------------------------------------------
# Which incidents are near which shared line does not depend on the filter: it is kept per
# version (every visible incident, national scope), and a request's table is the count, per
# pair, of those that pass its filter in the scope's snapshot (app/analysis/snapshot.py).
# Only for the dashboard's table: today's provinces, 5 km.
MEMORY_LEVEL = "province"
MEMORY_KM = 5.0


@dataclass(frozen=True)
class PairHits:
    """Every adjacent pair (in the order of a, b as PostgreSQL sorts them) and, per incident
    near a shared line, the pair's index and the incident's id (uuid bytes); made at incidents
    `version`, in `lineage` (hits_lineage: the same pairs, level, distance and day)."""

    token: str
    pairs: list[tuple[str, str, float]]  # a, b, shared_km
    pair: np.ndarray  # int32, one per hit
    ids: np.ndarray  # S16, one per hit
    version: int = 0
    lineage: str = ""


def hits_token(found: versions.Versions, level: str, km: float, at: date) -> str:
    """The key of a PairHits: the versions of its data, the level, distance and day."""
    return f"hits|{versions.token(DEPENDS, found)}|{level}|{km}|{at.isoformat()}"


def hits_lineage(found: versions.Versions, level: str, km: float, at: date) -> str:
    """hits_token without the incidents counter: hits of one lineage differ only by incident
    changes, which the change log names."""
    return f"hits|{versions.token(('jurisdictions',), found)}|{level}|{km}|{at.isoformat()}"


async def pair_hits(
    *,
    session: AsyncSession,
    level: str,
    km: float,
    at: date,
    previous: PairHits | None = None,
) -> PairHits | None:
    """The pairs and every (pair, incident) hit without a filter, or None when a write moved
    the versions meanwhile; from `previous` (an older PairHits of the same lineage) and the
    change log when it can (hits_delta), else from every incident near a shared line."""
    if previous is not None:
        updated = await hits_delta(session=session, previous=previous, level=level, km=km, at=at)
        if updated is not None:
            return updated
    before = await versions.read(session=session)
    pairs, hits = _pairs_and_hits(level=level, km=km, filt=IncidentFilter(scope=NATIONAL), at=at)
    listed = await session.execute(
        select(
            pairs.c.a, pairs.c.b, (func.ST_Length(func.geography(pairs.c.line)) / 1000.0)
        ).order_by(pairs.c.a, pairs.c.b)
    )
    pair_list = [(str(r[0]), str(r[1]), round(float(r[2]), 2)) for r in listed]
    index = {(a, b): k for k, (a, b, _) in enumerate(pair_list)}
    found = await session.execute(select(hits.c.a, hits.c.b, func.uuid_send(hits.c.id)))
    rows = found.all()
    after = await versions.read(session=session)
    key = hits_token(before, level, km, at)
    if key != hits_token(after, level, km, at):
        return None
    return PairHits(
        token=key,
        pairs=pair_list,
        pair=np.array([index[(r[0], r[1])] for r in rows], dtype=np.int32),
        ids=np.array([bytes(r[2]) for r in rows], dtype="S16"),
        version=before["incidents"][0],
        lineage=hits_lineage(before, level, km, at),
    )


def build_hits(
    cache: snapshot.SnapshotCache, found: versions.Versions, level: str, km: float, at: date
) -> asyncio.Task[Any]:
    """Start making the hits for these versions in the background (a delta from the newest
    kept of their lineage when there is one)."""
    previous: PairHits | None = cache.latest_of(hits_lineage(found, level, km, at))

    async def make(s: AsyncSession) -> PairHits | None:
        return await pair_hits(session=s, level=level, km=km, at=at, previous=previous)

    return cache.schedule(hits_token(found, level, km, at), make)


async def hits_delta(
    *, session: AsyncSession, previous: PairHits, level: str, km: float, at: date
) -> PairHits | None:
    """`previous` brought to the versions of now from the change log (the hits of the changed
    incidents measured again, alone), or None when it cannot be (the log does not reach back,
    names a change without ids or too many; another lineage)."""
    if not previous.version or not previous.lineage:
        return None
    ch = snapshot.changes()
    _, hits = _pairs_and_hits(
        level=level, km=km, filt=IncidentFilter(scope=NATIONAL), at=at, only=ch.ids()
    )
    # each hit as 'id|a|b' (codes hold no '|')
    sep: ColumnElement[str] = literal_column("'|'")
    found = select(
        func.array_agg(cast(hits.c.id, String) + sep + hits.c.a + sep + hits.c.b)
    ).scalar_subquery()
    stmt = select(*ch.head(), found.label("hits"))
    row = (await session.execute(stmt, snapshot.delta_params(previous.version))).one()
    now = versions.parse(row[0])
    if (
        not snapshot.delta_usable(row)
        or hits_lineage(now, level, km, at) != previous.lineage
        or now["incidents"][0] < previous.version
    ):
        return None
    index = {(a, b): k for k, (a, b, _) in enumerate(previous.pairs)}
    gone = np.frombuffer(bytes(row.gone), dtype="S16")
    keep = ~np.isin(previous.ids, gone)
    added = [h.split("|") for h in row.hits or ()]
    return PairHits(
        token=hits_token(now, level, km, at),
        pairs=previous.pairs,
        pair=np.concatenate(
            [previous.pair[keep], np.array([index[(a, b)] for _, a, b in added], np.int32)]
        ),
        ids=np.concatenate(
            [previous.ids[keep], np.array([UUID(i).bytes for i, _, _ in added], dtype="S16")]
        ),
        version=now["incidents"][0],
        lineage=previous.lineage,
    )


def table_from_memory(snap: Snapshot, hits: PairHits, filt: IncidentFilter) -> list[dict[str, Any]]:
    """The cross_boundary() table for `filt` (answerable by the snapshot of its scope)."""
    counts = np.zeros(len(hits.pairs), dtype=np.int64)
    if len(snap) and hits.ids.size:
        pair, pos = _placed(snap, hits)
        counts = np.bincount(pair[snap.mask(filt)[pos]], minlength=len(hits.pairs))
    order = sorted(range(len(hits.pairs)), key=lambda k: (-int(counts[k]), k))
    return [
        {"a": hits.pairs[k][0], "b": hits.pairs[k][1], "shared_km": hits.pairs[k][2],
         "count": int(counts[k])}
        for k in order
    ]  # fmt: skip


_PLACED: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
PLACED_KEPT = 4


def _placed(snap: Snapshot, hits: PairHits) -> tuple[np.ndarray, np.ndarray]:
    """The hits whose incident the snapshot holds (visible in its scope): their pair indexes
    and the incidents' rows in the snapshot; kept per (snapshot, hits)."""
    key = (snap.token, hits.token)
    found = _PLACED.get(key)
    if found is None:
        pos = np.minimum(np.searchsorted(snap.ids, hits.ids), len(snap) - 1)
        held = snap.ids[pos] == hits.ids
        found = (hits.pair[held], pos[held])
        while len(_PLACED) >= PLACED_KEPT:
            _PLACED.pop(next(iter(_PLACED)))
        _PLACED[key] = found
    return found
