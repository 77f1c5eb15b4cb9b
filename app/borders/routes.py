"""National border segments."""

from __future__ import annotations

from fastapi import APIRouter

from app.auth.deps import ReferenceReader
from app.borders import service
from app.db import SessionDep
from app.geo.geojson import DOC, GeoJSONResponse
from app.geo.params import CountryCode, SimplifyM

router = APIRouter(tags=["borders"])


@router.get(
    "/borders",
    response_class=GeoJSONResponse,
    responses=DOC,
    summary="National border segments (one per country pair) with geodesic length",
)
async def list_borders(
    session: SessionDep,
    _: ReferenceReader,
    country: CountryCode = None,
    simplify: SimplifyM = None,
) -> GeoJSONResponse:
    """Segments derived from the country polygons; lines are generalised (about 1–4 km)."""
    body = await service.list_features(session=session, country=country, simplify_m=simplify)
    return GeoJSONResponse(body)
