"""GET /analysis/border-zone and GET /analysis/border-posts (aggregates only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.analysis import borderzone
from app.auth.deps import Viewer
from app.db import SessionDep
from app.geo.geojson import DOC, GeoJSONResponse
from app.geo.params import SimplifyM
from app.incidents.filters import FilterDep

router = APIRouter(tags=["analysis"])


@router.get(
    "/analysis/border-zone",
    response_class=GeoJSONResponse,
    responses=DOC,
    summary="Incidents per distance band from the national border, with the band polygons",
)
async def border_zone(
    request: Request,
    session: SessionDep,
    _: Viewer,
    filt: FilterDep,
    segment: Annotated[
        str,
        Query(
            max_length=32,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="border segment code (VNM-LAO, VNM-CHN, VNM-KHM) or `all`",
        ),
    ] = borderzone.ALL,
    bands: Annotated[
        str,
        Query(
            max_length=200,
            description="band edges in km: 2-10 ascending values from 0, at most 200",
        ),
    ] = "0,5,20,50",
    simplify: SimplifyM = None,
) -> GeoJSONResponse:
    """One Feature per (segment, band): `from_km` <= distance < `to_km`, `count`, `share`."""
    body = await borderzone.border_zone(
        session=session,
        filt=filt,
        segment=segment,
        bands=borderzone.parse_bands(bands),
        home=request.app.state.settings.home_country,
        simplify_m=simplify,
    )
    return GeoJSONResponse(body)


@router.get(
    "/analysis/border-posts",
    response_class=GeoJSONResponse,
    responses=DOC,
    summary="Border posts with the incidents in their area of responsibility, by category",
)
async def border_posts(
    request: Request,
    session: SessionDep,
    _: Viewer,
    filt: FilterDep,
    zone_km: Annotated[
        float,
        Query(ge=0, le=borderzone.MAX_KM, description="depth of the border zone, km"),
    ] = 50,
) -> GeoJSONResponse:
    """A post's area: incidents whose nearest post it is, on the home side within zone_km."""
    body = await borderzone.border_posts(
        session=session, filt=filt, zone_km=zone_km, home=request.app.state.settings.home_country
    )
    return GeoJSONResponse(body)
