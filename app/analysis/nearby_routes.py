"""GET /incidents/nearby and GET /border-posts/nearest (registered before /incidents/{id})."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.analysis import nearby
from app.auth.deps import Reader, ReferenceReader
from app.db import SessionDep
from app.geo.geojson import DOC, GeoJSONResponse
from app.incidents.filters import FilterDep
from app.openapi import problems

router = APIRouter(tags=["analysis"])

Lat = Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False, description="latitude")]
Lon = Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False, description="longitude")]


@router.get(
    "/incidents/nearby",
    response_class=GeoJSONResponse,
    responses=DOC | problems(403),
    summary="Incidents within a geodesic radius, nearest first, with distance_m",
)
async def incidents_nearby(
    session: SessionDep,
    _: Reader,
    filt: FilterDep,
    lat: Lat,
    lon: Lon,
    radius_m: Annotated[float, Query(gt=0, le=100_000, description="metres, up to 100 km")] = 5000,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> GeoJSONResponse:
    """A field unit's question: what happened within N km of me (with the shared filters)."""
    body = await nearby.nearby(
        session=session, filt=filt, lon=lon, lat=lat, radius_m=radius_m, limit=limit
    )
    return GeoJSONResponse(body)


@router.get(
    "/border-posts/nearest",
    response_class=GeoJSONResponse,
    responses=DOC,
    summary="The k nearest border posts with their geodesic distance",
)
async def nearest_posts(
    session: SessionDep,
    _: ReferenceReader,
    lat: Lat,
    lon: Lon,
    k: Annotated[int, Query(ge=1, le=50)] = 5,
) -> GeoJSONResponse:
    """Nearest first, `distance_m` on the WGS 84 spheroid."""
    return GeoJSONResponse(await nearby.nearest_posts(session=session, lon=lon, lat=lat, k=k))
