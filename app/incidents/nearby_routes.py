"""GET /incidents/nearby: what happened within N metres of a point."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app import i18n
from app.auth.deps import Reader
from app.db import SessionDep
from app.geo.geojson import DOC, GeoJSONResponse
from app.geo.params import Lat, Lon
from app.i18n import LangDep
from app.incidents import nearby
from app.incidents.filters import FilterDep
from app.openapi import problems

router = APIRouter(tags=["incidents"])


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
    lang: LangDep,
    lat: Lat,
    lon: Lon,
    radius_m: Annotated[float, Query(gt=0, le=100_000, description="metres, up to 100 km")] = 5000,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> GeoJSONResponse:
    """A field unit's question: what happened within N km of me (with the shared filters)."""
    body = await nearby.nearby(
        session=session, filt=filt, lon=lon, lat=lat, radius_m=radius_m, limit=limit, lang=lang
    )
    return GeoJSONResponse(body, headers=i18n.headers(lang))
