"""GET /analysis/hotspots (aggregates only: every role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.analysis import hotspots
from app.analysis.params import CellKm, StudyAreaParam
from app.auth.deps import Viewer
from app.db import SessionDep
from app.geo.geojson import DOC, GeoJSONResponse
from app.incidents.filters import FilterDep

router = APIRouter(tags=["analysis"])


@router.get(
    "/analysis/hotspots",
    response_class=GeoJSONResponse,
    responses=DOC,
    summary="Getis-Ord Gi* hot and cold spots on a hexagonal grid over a study area",
)
async def hotspot_grid(
    request: Request,
    session: SessionDep,
    _: Viewer,
    filt: FilterDep,
    cell_km: CellKm = 5.0,
    area: StudyAreaParam = hotspots.BORDER_ZONE,
    fdr: Annotated[
        bool, Query(description="Benjamini-Hochberg false-discovery-rate correction")
    ] = False,
) -> GeoJSONResponse:
    """One Feature per cell: `count`, `gi_z`, `gi_p` (two-sided), `bin` (±3 = 99 %, ±2 = 95 %,
    ±1 = 90 %, 0 = not significant), `centre`."""
    body = await hotspots.hotspots(
        session=session,
        filt=filt,
        area=area,
        cell_km=cell_km,
        fdr=fdr,
        home=request.app.state.settings.home_country,
    )
    return GeoJSONResponse(body)
