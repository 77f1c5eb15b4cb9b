"""GET /analysis/cross-boundary: the incidents in every adjacent pair's shared zone."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.analysis import adjacency
from app.auth.deps import Viewer
from app.db import SessionDep
from app.incidents.filters import FilterDep
from app.jurisdictions import eras

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
    at: Annotated[
        date | None,
        Query(
            description="the pairs of the units in force on this day (YYYY-MM-DD; e.g. "
            "2024-06-01: the 63 provinces); omitted: today's"
        ),
    ] = None,
) -> JSONResponse:
    """The table a regional cooperation conference opens with, busiest pairs first. Adjacency
    is per era: the pairs are those of one day's units (today's by default), never a unit of
    one era beside one of another."""
    day = at or eras.today()
    pairs = await adjacency.cross_boundary(session=session, level=level, km=km, filt=filt, at=day)
    return JSONResponse({"level": level, "km": km, "at": day.isoformat(), "pairs": pairs})
