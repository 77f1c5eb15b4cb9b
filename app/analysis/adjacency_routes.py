"""GET /analysis/cross-boundary: the incidents in every adjacent pair's shared zone."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.analysis import adjacency
from app.auth.deps import Viewer
from app.db import SessionDep
from app.incidents.filters import FilterDep

router = APIRouter(tags=["analysis"])

Km = Annotated[float, Query(gt=0, le=50, description="distance from the shared boundary, km")]


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
