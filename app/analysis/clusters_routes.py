"""GET /analysis/clusters (aggregates only: every role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.analysis import clusters
from app.auth.deps import Viewer
from app.db import SessionDep
from app.geo.geojson import DOC, GeoJSONResponse
from app.incidents.filters import FilterDep

router = APIRouter(tags=["analysis"])


@router.get(
    "/analysis/clusters",
    response_class=GeoJSONResponse,
    responses=DOC,
    summary="DBSCAN clusters of incidents: widened convex hulls, counts and categories",
)
async def dbscan_clusters(
    session: SessionDep,
    _: Viewer,
    filt: FilterDep,
    eps_m: Annotated[float, Query(description="neighbourhood radius (m), 10 to 50 000")] = 1000.0,
    min_points: Annotated[int, Query(description="incidents a core point needs, 2 to 1000")] = 5,
) -> GeoJSONResponse:
    """One Feature per cluster (its convex hull widened by eps_m/2): `count`, `by_category`,
    `hull_area_km2` (of the hull itself); busiest first. Exact DBSCAN over every matching
    incident (the defaults included); a border incident joins its nearest core incident's
    cluster. 422 when the parameters would need more than 300 M distance measurements over the
    matching incidents: narrow the filters."""
    body = await clusters.clusters(session=session, filt=filt, eps_m=eps_m, min_points=min_points)
    return GeoJSONResponse(body)
