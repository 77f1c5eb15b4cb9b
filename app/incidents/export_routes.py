"""GET /incidents/export (registered before /incidents/{id})."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from app import i18n
from app.auth.deps import Analyst
from app.db import SessionDep
from app.i18n import LangDep
from app.incidents import exports
from app.incidents.filters import FilterDep
from app.openapi import REF_PREFIX, problems

router = APIRouter(tags=["incidents"])


@router.get(
    "/incidents/export",
    response_class=StreamingResponse,
    summary="Every matching incident as a GeoJSON, CSV or GeoPackage download",
    responses={
        200: {
            "description": "the file (Content-Disposition: attachment), streamed",
            "content": {
                exports.MEDIA_TYPES["geojson"]: {
                    "schema": {"$ref": REF_PREFIX + "FeatureCollection"}
                },
                exports.MEDIA_TYPES["csv"]: {"schema": {"type": "string"}},
                exports.MEDIA_TYPES["gpkg"]: {"schema": {"type": "string", "format": "binary"}},
            },
        },
        **problems(403),
    },
)
async def export_incidents(
    session: SessionDep,
    _: Analyst,
    filt: FilterDep,
    lang: LangDep,
    fmt: Annotated[
        exports.Format, Query(alias="format", description="geojson, csv or gpkg (GeoPackage)")
    ] = "geojson",
    bom: Annotated[
        bool, Query(description="csv only: start with a UTF-8 byte-order mark (for Excel)")
    ] = False,
) -> StreamingResponse:
    """The list's filters, no page limit; newest first; see docs/export.md."""
    result = await exports.export(session=session, filt=filt, fmt=fmt, bom=bom, lang=lang)
    headers = {
        "Content-Disposition": f'attachment; filename="{result.filename}"',
        **i18n.headers(lang),
    }
    if result.size is not None:
        headers["Content-Length"] = str(result.size)
    return StreamingResponse(result.chunks, media_type=result.media_type, headers=headers)
