"""GET /places: find a province, commune or border post by name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.auth.deps import ReferenceReader
from app.db import SessionDep
from app.geo.geojson import DOC, GeoJSONResponse
from app.i18n import LangDep, headers
from app.incidents.filters import parse_bbox
from app.openapi import problems
from app.places import service

router = APIRouter(tags=["places"])


@router.get(
    "/places",
    response_class=GeoJSONResponse,
    responses=DOC | problems(422),
    summary="Find provinces, communes (both eras) and border posts by name",
)
async def search_places(
    session: SessionDep,
    _: ReferenceReader,
    lang: LangDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=service.MAX_Q,
            description="a name or its start, with or without accents, any case:"
            " 'ha tien' finds Phường Hà Tiên, 'kien giang' the former province",
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = 10,
    bbox: Annotated[
        str | None,
        Query(
            max_length=200,
            description="minLon,minLat,maxLon,maxLat (WGS 84): only places that meet the box",
        ),
    ] = None,
    level: Annotated[service.Level | None, Query()] = None,
) -> GeoJSONResponse:
    """Ranked: exact name, then start of the name, start of a word, anywhere; today's units
    before former ones; then provinces, communes, border posts; then by name. Each Feature's
    geometry is the place's point, its `bbox` the extent of the whole place; a former unit
    says in `became` which of today's provinces hold it."""
    body = await service.search(
        session=session,
        q=q,
        limit=limit,
        bbox=parse_bbox(bbox) if bbox else None,
        level=level,
        lang=lang,
    )
    return GeoJSONResponse(body, headers=headers(lang))
