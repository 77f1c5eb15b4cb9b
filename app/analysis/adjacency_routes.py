"""Shared zones between neighbours and the cross-boundary table."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from app.analysis import adjacency
from app.auth.deps import Reader, Viewer
from app.db import SessionDep
from app.geo.geojson import DOC, GeoJSONResponse
from app.incidents.filters import FilterDep
from app.openapi import problems

router = APIRouter(tags=["analysis"])

Code = Annotated[str, Path(max_length=32, description="e.g. VN-44")]
Km = Annotated[float, Query(gt=0, le=50, description="distance from the shared boundary, km")]


@router.get(
    "/jurisdictions/{a}/shared-zone/{b}",
    response_class=GeoJSONResponse,
    responses=DOC | problems(403, 404),
    summary="Incidents near the boundary two neighbours share, and the shared line",
)
async def shared_zone(
    session: SessionDep,
    _: Reader,
    filt: FilterDep,
    a: Code,
    b: Code,
    km: Km = 5,
    limit: Annotated[
        int | None,
        Query(
            ge=0,
            le=10_000,
            description="at most this many incidents, nearest the line first (0: only the"
            " line and `numberMatched`); default: all",
        ),
    ] = None,
) -> GeoJSONResponse:
    """Each incident carries `side` (a or b) and `distance_to_shared_m`; 404 for non-neighbours."""
    body = await adjacency.shared_zone(session=session, a=a, b=b, km=km, filt=filt, limit=limit)
    return GeoJSONResponse(body)


@router.get(
    "/analysis/cross-boundary",
    summary="For every adjacent pair, the incidents in its shared zone",
)
async def cross_boundary(
    session: SessionDep,
    _: Viewer,
    filt: FilterDep,
    level: Annotated[Literal["province", "district", "commune", "country"], Query()] = "province",
    km: Km = 5,
) -> JSONResponse:
    """The table a regional cooperation conference opens with, busiest pairs first."""
    pairs = await adjacency.cross_boundary(session=session, level=level, km=km, filt=filt)
    return JSONResponse({"level": level, "km": km, "pairs": pairs})
