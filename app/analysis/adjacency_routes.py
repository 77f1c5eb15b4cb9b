"""GET /analysis/cross-boundary: the incidents in every adjacent pair's shared zone."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.analysis import adjacency
from app.analysis.cache import VersionedCache
from app.auth.deps import Viewer
from app.db import SessionDep
from app.incidents.filters import FilterDep
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

    async def make() -> bytes:
        return await adjacency.cross_boundary_body(
            session=session, cache=_cache(request), key=key, level=level, km=km, filt=filt,
            at=day,
        )  # fmt: skip

    return await caching.respond(
        request, tag=caching.etag(*key), current=False, media_type="application/json", make=make
    )
