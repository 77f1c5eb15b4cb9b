"""GET /analysis/emerging-hotspots (aggregates only: every role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.analysis import emerging, hotspots
from app.analysis.params import CellKm, StudyAreaParam
from app.auth.deps import Viewer
from app.db import SessionDep
from app.geo.geojson import DOC, GeoJSONResponse
from app.i18n import LangDep, headers
from app.incidents.filters import FilterDep

router = APIRouter(tags=["analysis"])


@router.get(
    "/analysis/emerging-hotspots",
    response_class=GeoJSONResponse,
    responses=DOC,
    summary="Emerging hot spots: Gi* over a space-time cube, Mann-Kendall trend, Esri's categories",
)
async def emerging_hotspots(
    request: Request,
    session: SessionDep,
    _: Viewer,
    filt: FilterDep,
    lang: LangDep,
    cell_km: CellKm = 5.0,
    area: StudyAreaParam = hotspots.BORDER_ZONE,
    step: Annotated[
        emerging.Step,
        Query(description="time step of the cube: local (Asia/Ho_Chi_Minh) months or weeks"),
    ] = "month",
    time_neighbours: Annotated[
        int,
        Query(
            ge=0,
            le=emerging.MAX_TIME_NEIGHBOURS,
            description="previous steps in each bin's neighbourhood (Esri's neighborhood"
            " time step)",
        ),
    ] = 1,
    fdr: Annotated[
        bool,
        Query(description="Benjamini-Hochberg correction of the bins' significance (as Esri)"),
    ] = True,
) -> GeoJSONResponse:
    """One Feature per cell of the hot spots' grid: `category` (and `category_name` in the
    reader's language), the Mann-Kendall trend of its z-scores (`trend_s`, `trend_z`,
    `trend_p`), and per step its `counts`, `z` and `bins`. `datetime` sets the cube's span:
    without it, the last 24 complete months (52 weeks)."""
    body = await emerging.emerging_hotspots(
        session=session,
        filt=filt,
        area=area,
        cell_km=cell_km,
        step=step,
        time_neighbours=time_neighbours,
        fdr=fdr,
        home=request.app.state.settings.home_country,
        lang=lang,
    )
    return GeoJSONResponse(body, headers=headers(lang))
