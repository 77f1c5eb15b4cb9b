"""POST /incidents/import (registered before /incidents/{id})."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.auth.deps import Admin
from app.bodies import body_of
from app.db import SessionDep
from app.errors import Forbidden, InvalidInput
from app.incidents import imports, rules
from app.openapi import problem_response

router = APIRouter(tags=["incidents"])

IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "description": "the file itself as the body (not multipart/form-data)",
        "content": {
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            "application/geo+json": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/incidents/import",
    summary="Bulk import from CSV (plain or ACLED) or a GeoJSON FeatureCollection",
    openapi_extra=IMPORT_BODY,
    responses={
        200: {"description": "imported: {mode, rows, inserted, updated, unchanged, skipped, …}"},
        403: problem_response(403, "imports need a national admin key"),
        413: problem_response(413, "the upload is over BORDERWATCH_MAX_IMPORT_BYTES"),
        415: problem_response(415, "the format is neither in Content-Type nor in ?format="),
        422: problem_response(422, "invalid rows (all_or_nothing: nothing written) or columns"),
    },
)
async def import_incidents(
    request: Request,
    session: SessionDep,
    principal: Admin,
    fmt: Annotated[
        imports.Format | None,
        Query(alias="format", description="csv or geojson; default: from Content-Type"),
    ] = None,
    mode: Annotated[
        imports.Mode,
        Query(description="all_or_nothing: any invalid row rejects the file"),
    ] = "all_or_nothing",
    source: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=rules.SOURCE_MAX,
            description="source of rows that name none (default 'import'; 'acled' for ACLED)",
        ),
    ] = None,
    first_load: Annotated[
        bool,
        Query(
            description="empty or small table: build its secondary indexes after the load"
            " (every read of incidents waits until the import ends)"
        ),
    ] = False,
) -> JSONResponse:
    """See docs/import.md; re-importing rows with the same (source, source_id) updates them."""
    if not principal.scope.national:
        # rows are not checked against a scope (yet): national admins only
        raise Forbidden(
            "imports need a national admin key (one without a jurisdiction or cooperation area)"
        )
    fmt = fmt or imports.guess_format(content_type=request.headers.get("content-type"))
    if fmt is None:
        raise HTTPException(
            415,
            "send the file as the body with Content-Type text/csv or application/geo+json, "
            "or name the format: ?format=csv|geojson",
        )
    body = body_of(request)  # spooled whole, within the size and time limits (app/bodies.py)
    if body.path is None or body.size == 0:
        raise InvalidInput("the upload is empty", field="body")
    # authentication's work is done: end its transaction, so that no connection sits idle in
    # one while the file's header (or the GeoJSON document) is parsed
    await session.commit()
    settings = request.app.state.settings
    report = await imports.import_file(
        session=session,
        path=body.path,
        fmt=fmt,
        mode=mode,
        source=source,
        actor=principal.actor,
        clock_skew_s=settings.clock_skew_s,
        statement_timeout_ms=settings.import_statement_timeout_ms,
        first_load=first_load,
    )
    request.app.state.metrics.imported(report)  # committed rows, by result (app/observe)
    return JSONResponse(report.as_dict())
