"""Jurisdiction endpoints: list, one, neighbours, the shared zone of two neighbours."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from app.auth.deps import Reader, ReferenceReader, Viewer
from app.db import SessionDep
from app.geo.geojson import DOC, FEATURE_DOC, GeoJSONResponse
from app.geo.params import CountryCode, SimplifyM
from app.i18n import LangDep, headers
from app.incidents.filters import FilterDep
from app.jurisdictions import service
from app.openapi import problems

router = APIRouter(prefix="/jurisdictions", tags=["jurisdictions"])

Code = Annotated[
    str, Path(max_length=32, description="any era: e.g. VN-P91 (An Giang since 2025), VN-47, VNM")
]
Km = Annotated[float, Query(gt=0, le=50, description="distance from the shared boundary, km")]


@router.get(
    "",
    response_class=GeoJSONResponse,
    responses=DOC,
    summary="Jurisdictions as a FeatureCollection",
)
async def list_jurisdictions(
    session: SessionDep,
    _: ReferenceReader,
    lang: LangDep,
    level: Annotated[Literal["country", "province", "district", "commune"] | None, Query()] = None,
    parent: Annotated[str | None, Query(max_length=32, description="parent code")] = None,
    country: CountryCode = None,
    at: Annotated[
        date | None,
        Query(
            description="the units in force on this day (YYYY-MM-DD; default today): before"
            " 2025-07-01 the 63 provinces, since then the 34 provinces and their communes"
        ),
    ] = None,
    simplify: SimplifyM = None,
) -> GeoJSONResponse:
    """Filter by level, parent, country and date; `simplify` thins geometries for the map;
    `display_name` in the reader's language (`lang`, else Accept-Language; default vi)."""
    body = await service.list_features(
        session=session,
        level=level,
        parent=parent,
        country=country,
        at=at,
        simplify_m=simplify,
        lang=lang,
    )
    return GeoJSONResponse(body, headers=headers(lang))


@router.get(
    "/{code}",
    response_class=GeoJSONResponse,
    responses=FEATURE_DOC | problems(404),
    summary="One jurisdiction",
)
async def read_jurisdiction(
    session: SessionDep,
    _: ReferenceReader,
    lang: LangDep,
    code: Code,
    simplify: SimplifyM = None,
) -> GeoJSONResponse:
    """A jurisdiction as a Feature (`display_name` in the reader's language); 404
    problem+json for an unknown code."""
    body = await service.get_feature(session=session, code=code, simplify_m=simplify, lang=lang)
    return GeoJSONResponse(body, headers=headers(lang))


@router.get(
    "/{code}/neighbours",
    response_class=GeoJSONResponse,
    responses=DOC | problems(404),
    summary="Neighbouring jurisdictions with the shared boundary length",
)
async def read_neighbours(
    session: SessionDep,
    _: Viewer,
    filt: FilterDep,
    lang: LangDep,
    code: Code,
    simplify: SimplifyM = None,
) -> GeoJSONResponse:
    """Neighbours with `shared_km`, `touches`, `gap_m` (river/estuary gaps count), the
    `incident_count` in each neighbour for the incident filters (within the caller's scope)
    and `display_name` in the reader's language (neighbour countries too: Trung Quốc, Lào …)."""
    counts = await service.neighbour_counts(session=session, code=code, filt=filt)
    body = await service.neighbours_features(
        session=session, code=code, simplify_m=simplify, counts=counts, lang=lang
    )
    return GeoJSONResponse(body, headers=headers(lang))


@router.get(
    "/{a}/shared-zone/{b}",
    response_class=GeoJSONResponse,
    responses=DOC | problems(403, 404),
    summary="Incidents near the boundary two neighbours share, and the shared line",
)
async def shared_zone(
    session: SessionDep,
    _: Reader,
    filt: FilterDep,
    a: Code,
    b: Code,
    lang: LangDep,
    km: Km = 5,
    limit: Annotated[
        int | None,
        Query(
            ge=0,
            le=10_000,
            description="at most this many incidents, nearest the line first (0: only the"
            " line and `numberMatched`); default: all",
        ),
    ] = None,
) -> GeoJSONResponse:
    """Each incident carries `side` (a or b) and `distance_to_shared_m`; 404 for non-neighbours."""
    body = await service.shared_zone(
        session=session, a=a, b=b, km=km, filt=filt, limit=limit, lang=lang
    )
    return GeoJSONResponse(body, headers=headers(lang))
