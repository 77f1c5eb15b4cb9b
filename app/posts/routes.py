"""GET /border-posts and GET /border-posts/nearest."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from app.auth.deps import ReferenceReader
from app.db import SessionDep
from app.geo.geojson import DOC, GeoJSONResponse
from app.geo.params import Lat, Lon
from app.posts import service

router = APIRouter(tags=["border posts"])

Kind = Literal["border_gate", "border_guard_station", "police", "customs", "coast_guard"]


@router.get(
    "/border-posts",
    response_class=GeoJSONResponse,
    responses=DOC,
    summary="Border posts as a FeatureCollection",
)
async def list_border_posts(
    session: SessionDep,
    _: ReferenceReader,
    kind: Annotated[Kind | None, Query()] = None,
    border: Annotated[
        str | None, Query(pattern="^[A-Z]{3}-[A-Z]{3}$", description="e.g. VNM-LAO")
    ] = None,
    province: Annotated[
        str | None,
        Query(max_length=32, description="either map: VN-44 (former) or VN-P91 (since 2025)"),
    ] = None,
) -> GeoJSONResponse:
    """Filter by kind, border segment and province."""
    body = await service.list_features(session=session, kind=kind, border=border, province=province)
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
    """Nearest first, `distance_m` on the WGS 84 spheroid; the properties of /border-posts."""
    return GeoJSONResponse(await service.nearest(session=session, lon=lon, lat=lat, k=k))
