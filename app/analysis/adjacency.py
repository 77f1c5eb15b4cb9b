"""The cross-boundary table: for every adjacent pair, the incidents near the line it shares
(one pair at a time, with the line itself: `shared_zone` in app/jurisdictions/service.py).

The table is kept per (incidents and jurisdictions versions, scope, filter, level, km, day) in a
small per-process LRU (app/analysis/cache.py): a dashboard opening again, or another user with
the same view, gets it without the ~5 s of work; a write moves the version and so the key.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import date
from typing import Any

import orjson
from geoalchemy2 import Geometry
from sqlalchemy import (
    ColumnElement,
    FromClause,
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

from app.analysis.cache import VersionedCache
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


async def cross_boundary(
    *, session: AsyncSession, level: str, km: float, filt: IncidentFilter, at: date
) -> list[dict[str, Any]]:
    """For every adjacent pair of units of `level` in force on `at` (adjacency is per era:
    today's 34 provinces border only each other, the 63 of before 1 July 2025 each other), the
    matching incidents in its shared zone (those whose jurisdiction path holds either unit)."""
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
    near = (
        select(Incident.id, Incident.geom, Incident.jurisdiction_path)
        .where(
            spatial.may_be_within_metres(Incident.geom, pieces.c.g, radius_m),
            *filt.conditions(),
        )
        .offset(literal_column("'0'"))
        .lateral("near")
    )
    hits = (
        select(pieces.c.a, pieces.c.b, near.c.id)
        .select_from(pieces)
        .join(near, true())
        .where(
            or_(_path_has_col(near, pieces.c.a), _path_has_col(near, pieces.c.b)),
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
