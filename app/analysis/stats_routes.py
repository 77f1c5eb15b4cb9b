"""GET /analysis/stats: counts, clearance rate and share per group (aggregates only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.analysis import stats
from app.auth.deps import Viewer
from app.db import SessionDep
from app.incidents.filters import FilterDep

router = APIRouter(tags=["analysis"])


@router.get(
    "/analysis/stats",
    summary="Incident counts, clearance rate and share of the total, per group",
)
async def incident_stats(
    session: SessionDep,
    _: Viewer,
    filt: FilterDep,
    group_by: Annotated[
        stats.GroupBy,
        Query(
            description="jurisdiction (province or country), category, month, status, "
            "border_segment"
        ),
    ],
    level: Annotated[
        stats.Level, Query(description="for group_by=jurisdiction: province or country")
    ] = "province",
    tz: Annotated[
        str, Query(max_length=64, description="IANA time zone of the months (group_by=month)")
    ] = stats.DEFAULT_TZ,
) -> JSONResponse:
    """`solved` counts solved + closed; `share` is of all matching incidents in your scope."""
    body = await stats.stats(
        session=session, filt=filt, group_by=group_by, level=level, tz=stats.time_zone(tz)
    )
    return JSONResponse(body)
