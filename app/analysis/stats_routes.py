"""GET /analysis/stats: counts, clearance rate and share per group (aggregates only)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from app.analysis import snapshot, stats
from app.auth.deps import Viewer
from app.db import SessionDep
from app.incidents.filters import FilterDep

router = APIRouter(tags=["analysis"])


def snapshots(request: Request) -> snapshot.SnapshotCache:
    """The application's incident snapshots (app/analysis/snapshot.py), made on first use."""
    return snapshots_in(request.app.state)


def snapshots_in(state: Any) -> snapshot.SnapshotCache:
    """The SnapshotCache kept in an application's state, made on first use."""
    cache: snapshot.SnapshotCache | None = getattr(state, "incident_snapshots", None)
    if cache is None:
        cache = state.incident_snapshots = snapshot.SnapshotCache(lambda: state.sessionmaker)
    return cache


@router.get(
    "/analysis/stats",
    summary="Incident counts, clearance rate and share of the total, per group",
)
async def incident_stats(
    request: Request,
    session: SessionDep,
    _: Viewer,
    filt: FilterDep,
    group_by: Annotated[
        stats.GroupBy,
        Query(
            description="jurisdiction (province or country), category, month, status, "
            "border_segment, unit (the reporting unit: docs/units.md; null: none recorded)"
        ),
    ],
    level: Annotated[
        stats.Level,
        Query(description="for group_by=jurisdiction: province, commune or country"),
    ] = "province",
    at: Annotated[
        date | None,
        Query(
            description="for group_by=jurisdiction: group by the units in force on this day "
            "(YYYY-MM-DD; e.g. 2024-06-01: the 63 provinces); omitted: today's units"
        ),
    ] = None,
    tz: Annotated[
        str, Query(max_length=64, description="IANA time zone of the months (group_by=month)")
    ] = stats.DEFAULT_TZ,
    compare: Annotated[
        stats.Compare | None,
        Query(
            description="compare each group with another period: previous_period (the same "
            "length just before) or same_period_last_year (one calendar year back, 29 Feb → "
            "28 Feb); needs datetime=start/end with both ends. Adds previous_count, change, "
            "change_pct and the p-value of an exact Poisson test (docs/analysis.md)"
        ),
    ] = None,
) -> JSONResponse:
    """`solved` counts solved + closed; `share` is of all matching incidents in your scope.
    Groups by jurisdiction are today's units (the 34 provinces, the communes) unless `at`
    names another day's."""
    zone = stats.time_zone(tz)
    snap = None
    if compare is not None:
        stats.bounded_period(filt)  # an open interval is a problem before anything is read
    if at is None and group_by != "jurisdiction":
        snap = await snapshot.usable(snapshots(request), session, filt)
    if compare is not None:
        body = await stats.compare_counts(
            session=session,
            filt=filt,
            group_by=group_by,
            compare=compare,
            level=level,
            tz=zone,
            at=at,
            snap=snap,
        )
    else:
        body = await stats.stats(
            session=session, filt=filt, group_by=group_by, level=level, tz=zone, at=at, snap=snap
        )
    return JSONResponse(body)
