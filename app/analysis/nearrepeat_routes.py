"""GET /analysis/near-repeat (aggregates only: every role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from app.analysis import nearrepeat
from app.auth.deps import Viewer
from app.db import SessionDep
from app.i18n import LangDep, headers
from app.incidents.filters import FilterDep

router = APIRouter(tags=["analysis"])


@router.get(
    "/analysis/near-repeat",
    summary="Near-repeat (Knox) table: pairs per distance x time band against shuffled times",
)
async def near_repeat(
    request: Request,
    session: SessionDep,
    _: Viewer,
    filt: FilterDep,
    lang: LangDep,
    area: Annotated[
        str | None,
        Query(
            max_length=200,
            description="only incidents inside `border-zone`, `jurisdiction:{code}` or"
            " `bbox:minLon,minLat,maxLon,maxLat` (as /analysis/hotspots); omitted: every"
            " matching incident",
        ),
    ] = None,
    distance_bands: Annotated[
        str | None,
        Query(
            max_length=400,
            description="ascending upper edges in metres, e.g. 200,400,600,800,1000 (the"
            f" default); at most {nearrepeat.MAX_BANDS}, the largest at most"
            f" {nearrepeat.MAX_DISTANCE_M:g}",
        ),
    ] = None,
    time_bands: Annotated[
        str | None,
        Query(
            max_length=400,
            description="ascending upper edges in days, e.g. 7,14,21,28 (the default)",
        ),
    ] = None,
    permutations: Annotated[
        int,
        Query(description=f"Monte-Carlo permutations, 9 to {nearrepeat.MAX_PERMUTATIONS}"),
    ] = nearrepeat.DEFAULT_PERMUTATIONS,
    seed: Annotated[
        int, Query(ge=0, le=2**31 - 1, description="seed of the permutations (reproducible)")
    ] = 1,
) -> JSONResponse:
    """One cell per distance band x time band (plus "beyond" row and column): `observed`
    pairs, `expected` (mean over the permutations), `knox_ratio`, `p_value`; `explanation`
    says how to read them, in the reader's language. Filter by type with `category=`."""
    body = await nearrepeat.near_repeat(
        session=session,
        filt=filt,
        area=area,
        distance_bands=distance_bands,
        time_bands=time_bands,
        permutations=permutations,
        seed=seed,
        home=request.app.state.settings.home_country,
        lang=lang,
    )
    return JSONResponse(body, headers=headers(lang))
