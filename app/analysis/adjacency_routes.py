"""GET /analysis/cross-boundary: the incidents in every adjacent pair's shared zone."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.analysis import adjacency, snapshot
from app.analysis.cache import VersionedCache
from app.analysis.stats_routes import snapshots
from app.auth.deps import Viewer
from app.db import SessionDep
from app.incidents.filters import FilterDep, IncidentFilter
from app.jurisdictions import eras
from app.tiles import caching, versions

router = APIRouter(tags=["analysis"])

Km = Annotated[float, Query(gt=0, le=50, description="distance from the shared boundary, km")]


def _cache(request: Request) -> VersionedCache[bytes]:
    """The application's cache of tables, made on first use."""
    state = request.app.state
    cache: VersionedCache[bytes] | None = getattr(state, "cross_boundary_cache", None)
    if cache is None:
        cache = state.cross_boundary_cache = adjacency.new_cache()
    return cache


async def _from_memory(
    request: Request,
    session: AsyncSession,
    *,
    level: str,
    km: float,
    filt: IncidentFilter,
    at: date,
) -> bytes | None:
    """The body counted from the scope's snapshot and the kept hits (the dashboard's table:
    today's provinces, 5 km), or None when they are not built yet (then their builds start)."""
    if (level, km, at) != (adjacency.MEMORY_LEVEL, adjacency.MEMORY_KM, eras.today()):
        return None
    cache = snapshots(request)
    snap = await snapshot.usable(cache, session, filt)
    if snap is None:
        return None
    found = await versions.read(session=session)
    key = adjacency.hits_token(found, level, km, at)
    hits: adjacency.PairHits | None = cache.ready(key)
    if hits is None:
        task = adjacency.build_hits(cache, found, level, km, at)
        if cache.latest_of(adjacency.hits_lineage(found, level, km, at)) is None:
            return None
        hits = await snapshot.wait_for_delta(cache, key, task)  # most likely a delta
        if hits is None:
            return None
    pairs = await asyncio.to_thread(adjacency.table_from_memory, snap, hits, filt)
    return orjson.dumps({"level": level, "km": km, "at": at.isoformat(), "pairs": pairs})


@router.get(
    "/analysis/cross-boundary",
    summary="For every adjacent pair, the incidents in its shared zone",
    responses={304: {"description": "not modified (If-None-Match)"}},
)
async def cross_boundary(
    request: Request,
    session: SessionDep,
    _: Viewer,
    filt: FilterDep,
    level: Annotated[Literal["province", "district", "commune", "country"], Query()] = "province",
    km: Km = 5.0,
    at: Annotated[
        date | None,
        Query(
            description="the pairs of the units in force on this day (YYYY-MM-DD; e.g. "
            "2024-06-01: the 63 provinces); omitted: today's"
        ),
    ] = None,
) -> Response:
    """The table a regional cooperation conference opens with, busiest pairs first. Adjacency
    is per era: the pairs are those of one day's units (today's by default), never a unit of
    one era beside one of another. Kept per version of the incidents and boundaries: the ETag
    names them, and If-None-Match answers 304 while nothing changed."""
    day = at or eras.today()
    found = await versions.read(session=session)
    key = adjacency.table_key(found=found, level=level, km=km, filt=filt, at=day)
    memory = await _from_memory(request, session, level=level, km=km, filt=filt, at=day)

    async def make() -> bytes:
        if memory is not None:
            return memory
        return await adjacency.cross_boundary_body(
            session=session, cache=_cache(request), key=key, level=level, km=km, filt=filt,
            at=day,
        )  # fmt: skip

    return await caching.respond(
        request, tag=caching.etag(*key), current=False, media_type="application/json", make=make
    )
