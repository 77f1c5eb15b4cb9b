"""Incident endpoints: thin — parse, call the service, shape the response."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from app import i18n
from app.auth.deps import CurrentPrincipal, Officer, Reader, ReferenceReader
from app.bodies import body_of
from app.db import SessionDep
from app.errors import InvalidInput
from app.geo.geojson import DOC, GEOJSON, GeoJSONResponse, response_doc
from app.i18n import LangDep
from app.incidents import listing, service
from app.incidents.filters import Cursor, FilterDep
from app.incidents.schemas import (
    TRANSITIONS,
    IncidentIn,
    IncidentPatch,
    check_not_future,
    parse_incident,
)
from app.openapi import problems

router = APIRouter(tags=["incidents"])


def current_actor(principal: CurrentPrincipal) -> str:
    """Who is writing, as the history and audit log name them."""
    return principal.actor


ActorDep = Annotated[str, Depends(current_actor)]


async def read_json(request: Request) -> Any:
    """The JSON body (read whole, within the size and time limits, by app.bodies before the
    route ran); 422 when it is not JSON."""
    try:
        return orjson.loads(body_of(request).data or b"")
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}", field="body") from exc


def _validation(exc: ValidationError) -> RequestValidationError:
    errors: list[dict[str, Any]] = []
    for e in exc.errors():
        errors.append({**e, "loc": ("body", *e.get("loc", ()))})
    return RequestValidationError(errors)


def _feature_response(
    body: bytes, version: int, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return GeoJSONResponse(
        body, status_code=status, headers={"ETag": service.etag(version), **(headers or {})}
    )


def _feature_doc(description: str, *, location: bool = False) -> dict[str, Any]:
    doc = response_doc("Feature", description)
    doc["headers"] = {
        "ETag": {
            "description": "the version, for If-Match",
            "required": True,
            "schema": {"type": "string"},
        }
    }
    if location:
        doc["headers"]["Location"] = {
            "description": "the incident's URL",
            "required": True,
            "schema": {"type": "string"},
        }
    return doc


INCIDENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": IncidentIn.model_json_schema()},
            "application/geo+json": {
                "schema": {
                    "type": "object",
                    "description": "a GeoJSON Feature: geometry = location (Point), "
                    "properties = the other fields",
                }
            },
        },
    }
}


@router.post(
    "/incidents",
    status_code=201,
    response_class=GeoJSONResponse,
    summary="Record an incident (idempotent with a client id or Idempotency-Key)",
    openapi_extra=INCIDENT_BODY,
    responses={
        200: _feature_doc("a retry: the incident stored with this content", location=True),
        201: _feature_doc("created", location=True),
        **problems(403, 409, 413),
    },
)
async def create_incident(
    request: Request,
    session: SessionDep,
    principal: Officer,
    lang: LangDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """JSON body or GeoJSON Feature; 201 with Location, 200 for a retry of the same content."""
    payload = await read_json(request)
    try:
        data = parse_incident(payload)
        check_not_future(data.occurred_at, request.app.state.settings.clock_skew_s)
    except ValidationError as exc:
        raise _validation(exc) from exc
    result = await service.create(
        session=session,
        data=data,
        principal=principal,
        idempotency_key=idempotency_key,
        lang=lang,
    )
    # the path of read_incident, written out: url_for scans every route on every create
    location = f"{str(request.base_url).rstrip('/')}/incidents/{result.id}"
    return _feature_response(
        result.body,
        result.version,
        201 if result.created else 200,
        {"Location": location, **i18n.headers(lang)},
    )


@router.get(
    "/incidents",
    response_class=StreamingResponse,
    summary="Incidents as a GeoJSON FeatureCollection, newest first, with a cursor",
    responses=DOC | problems(403),
)
async def list_incidents(
    request: Request,
    session: SessionDep,
    principal: Reader,
    filt: FilterDep,
    lang: LangDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    count: Annotated[bool, Query(description="include numberMatched (costs a count)")] = False,
    recorded_by: Annotated[
        Literal["me"] | None,
        Query(description="`me`: only the incidents this key recorded (a field unit's records)"),
    ] = None,
) -> StreamingResponse:
    """Stream the page; `links` carry `next` while more remain."""
    position = Cursor.decode(cursor) if cursor else None
    creator = principal.actor if recorded_by == "me" else None
    matched = await listing.count(session=session, filt=filt, creator=creator) if count else None
    page = listing.Page()
    parts = listing.stream_page(
        session=session,
        filt=filt,
        limit=limit,
        cursor=position,
        page=page,
        creator=creator,
        lang=lang,
    )
    # the page's one query runs now, before the 200 is sent: a database failure is a 503
    first = await anext(parts, b"")

    async def body() -> AsyncIterator[bytes]:
        yield b'{"type":"FeatureCollection","features":[' + first
        async for part in parts:
            yield part
        tail: dict[str, Any] = {"numberReturned": page.returned}
        number = matched
        if number is None and position is None and page.next_cursor is None:
            number = page.returned  # the whole result fitted in the first page: free
        if number is not None:
            tail["numberMatched"] = number
        tail["links"] = _links(request, page.next_cursor)
        yield b"]," + orjson.dumps(tail)[1:]

    return StreamingResponse(body(), media_type=GEOJSON, headers=i18n.headers(lang))


def _links(request: Request, next_cursor: Cursor | None) -> list[dict[str, str]]:
    links = [{"rel": "self", "type": GEOJSON, "href": str(request.url)}]
    if next_cursor is not None:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        params.append(("cursor", next_cursor.encode()))
        href = str(request.url.replace(query=urlencode(params)))
        links.append({"rel": "next", "type": GEOJSON, "href": href})
    return links


@router.get(
    "/incidents/{incident_id:uuid}",
    response_class=GeoJSONResponse,
    summary="One incident as a GeoJSON Feature, with ETag",
    responses={200: _feature_doc("the incident"), **problems(403, 404)},
)
async def read_incident(
    incident_id: uuid.UUID, session: SessionDep, principal: Reader, lang: LangDep
) -> Response:
    """Derived fields and names (in `lang`) included; 404 for unknown, deleted or out-of-scope
    ids."""
    body, version = await service.get_feature(
        session=session, incident_id=incident_id, scope=principal.scope, lang=lang
    )
    return _feature_response(body, version, headers=i18n.headers(lang))


@router.patch(
    "/incidents/{incident_id:uuid}",
    response_class=GeoJSONResponse,
    summary="Correct an incident (If-Match required; status follows the lifecycle)",
    responses={
        200: _feature_doc("the corrected incident"),
        **problems(403, 404, 409, 412, 413, 428),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": IncidentPatch.model_json_schema()}},
        }
    },
)
async def patch_incident(
    incident_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: Officer,
    lang: LangDep,
    if_match: Annotated[str | None, Header(max_length=100)] = None,
) -> Response:
    """412 when the version is stale, 428 without If-Match, 409 for an illegal status change."""
    expected = service.required_version(if_match, "/incidents/{id}")
    payload = await read_json(request)
    try:
        patch = IncidentPatch.model_validate(payload)
        check_not_future(patch.occurred_at, request.app.state.settings.clock_skew_s)
    except ValidationError as exc:
        raise _validation(exc) from exc
    body, version = await service.update_incident(
        session=session,
        incident_id=incident_id,
        patch=patch,
        expected_version=expected,
        principal=principal,
        lang=lang,
    )
    return _feature_response(body, version, headers=i18n.headers(lang))


@router.delete(
    "/incidents/{incident_id:uuid}",
    status_code=204,
    summary="Soft-delete (kept in the history)",
    responses=problems(403, 404, 412),
)
async def delete_incident(
    incident_id: uuid.UUID,
    session: SessionDep,
    principal: Officer,
    if_match: Annotated[str | None, Header(max_length=100)] = None,
) -> Response:
    """If-Match is checked when given."""
    expected = service.parse_if_match(if_match) if if_match else None
    await service.delete_incident(
        session=session, incident_id=incident_id, expected_version=expected, principal=principal
    )
    return Response(status_code=204)


@router.get(
    "/incidents/{incident_id:uuid}/history",
    summary="Every recorded change, oldest first",
    responses=problems(403, 404),
)
async def incident_history(
    incident_id: uuid.UUID, session: SessionDep, principal: Reader
) -> JSONResponse:
    """The append-only history (also for deleted incidents)."""
    entries = await service.history(session=session, incident_id=incident_id, scope=principal.scope)
    return JSONResponse({"incident_id": str(incident_id), "entries": entries})


@router.get("/categories", summary="The managed incident categories (English and Vietnamese)")
async def list_categories(session: SessionDep, _: ReferenceReader) -> JSONResponse:
    """Stable codes with display names."""
    return JSONResponse({"categories": await service.categories(session=session)})


@router.get("/statuses", summary="The status lifecycle: each status and where it may go next")
async def list_statuses(_: ReferenceReader) -> JSONResponse:
    """In lifecycle order; `next` is what `PATCH /incidents/{id}` accepts from that status
    (anything else is a 409 naming the allowed ones); `final` has no way out."""
    return JSONResponse(
        {
            "statuses": [
                {"code": code, "next": list(nxt), "final": not nxt}
                for code, nxt in TRANSITIONS.items()
            ]
        }
    )
