"""OGC API – Features under /ogc: thin routes (parse, authorise, call the service, shape).

Invalid parameters and filters are 400 problem+json here (the OGC standards say 400, where
the rest of the API says 422): the route class below maps them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute

from app import i18n
from app.auth.deps import ReferenceReader
from app.auth.service import Identity
from app.cooperation.members import members_of
from app.db import SessionDep
from app.errors import InvalidInput, problem
from app.geo.geojson import GEOJSON
from app.i18n import LangDep
from app.ogc import collections, documents, html, openapi, params, service
from app.openapi import INVALID_INPUT, REF_PREFIX, problems

PREFIX = "/ogc"


class OgcRoute(APIRoute):
    """Answers InvalidInput and request validation errors with 400 problem+json."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        extra = {**(kwargs.pop("openapi_extra", None) or {}), INVALID_INPUT: 400}
        super().__init__(path, endpoint, openapi_extra=extra, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except InvalidInput as exc:
                extra = {k: v for k, v in exc.extra.items() if not k.startswith("_")}
                return problem(400, "Bad request", exc.detail, request, **extra)
            except RequestValidationError as exc:
                detail = "; ".join(str(e.get("msg", "")) for e in exc.errors()) or "bad request"
                return problem(400, "Bad request", detail, request)

        return guarded


router = APIRouter(prefix=PREFIX, tags=["ogc"], route_class=OgcRoute, responses=problems(400))


def _ok(description: str, media: str, schema: dict[str, Any]) -> dict[int | str, Any]:
    """`responses=`: JSON of `media` and `schema`, or HTML (`f=html` or a browser's Accept)."""
    return {
        200: {
            "description": description,
            "content": {media: {"schema": schema}, "text/html": {"schema": {"type": "string"}}},
        }
    }


OBJECT = {"type": "object"}


def base_url(request: Request) -> str:
    """The absolute URL of /ogc as the client reached it."""
    return str(request.base_url).rstrip("/") + PREFIX


def wants_html(request: Request) -> bool:
    """`f=html|json`, else the Accept header (HTML only when a browser prefers it)."""
    f = params.single(request.query_params, "f")
    if f is not None:
        if f not in ("json", "html"):
            raise InvalidInput(f"f must be json or html; got '{f[:20]}'", field="f")
        return f == "html"
    accept = request.headers.get("accept", "")
    at_html = accept.find("text/html")
    at_json = min((p for p in (accept.find("json"),) if p >= 0), default=-1)
    return at_html >= 0 and (at_json < 0 or at_html < at_json)


def _json(doc: dict[str, Any], media: str = documents.JSON) -> Response:
    return Response(orjson.dumps(doc), media_type=media)


def _respond(
    request: Request,
    build: Callable[[bool], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
    media: str = documents.JSON,
) -> Response:
    as_html = wants_html(request)
    doc = build(as_html)
    return HTMLResponse(render(doc)) if as_html else _json(doc, media)


def _home(request: Request) -> str:
    return str(request.app.state.settings.home_country)


@router.get(
    "",
    summary="OGC API – Features landing page",
    response_class=Response,
    responses=_ok("links to the API", documents.JSON, OBJECT),
)
async def landing(request: Request, _: ReferenceReader) -> Response:
    """Links to the API definition, the conformance classes and the collections."""
    base = base_url(request)
    return _respond(request, lambda h: documents.landing(base, html=h), html.landing)


@router.get(
    "/conformance",
    summary="Conformance classes implemented",
    response_class=Response,
    responses=_ok("the conformance classes", documents.JSON, OBJECT),
)
async def conformance(request: Request, _: ReferenceReader) -> Response:
    """The OGC conformance classes this API implements (and tests)."""
    return _respond(request, lambda _h: documents.conformance(), html.conformance)


async def _readable(
    request: Request, session: SessionDep, principal: Identity | None
) -> list[collections.Info]:
    present = await collections.levels_present(session)
    return [i for i in collections.infos(present) if collections.may_read(i, principal)]


@router.get(
    "/api",
    summary="The OpenAPI 3.0 definition of /ogc",
    response_class=Response,
    responses=_ok("OpenAPI 3.0", openapi.OPENAPI_MEDIA, OBJECT),
)
async def api(request: Request, session: SessionDep, principal: ReferenceReader) -> Response:
    """OpenAPI 3.0 (application/vnd.oai.openapi+json;version=3.0), one path per collection."""
    sources = [
        (
            i,
            await collections.source(
                session=session,
                info=i,
                principal=principal,
                home=_home(request),
                metadata_only=True,
            ),
        )
        for i in await _readable(request, session, principal)
    ]
    doc = openapi.document(base=base_url(request), sources=sources)
    if wants_html(request):
        return HTMLResponse(
            '<!doctype html><html><head><meta charset="utf-8"><title>API</title></head><body>'
            '<h1>Borderwatch OGC API – Features</h1><p><a href="?f=json">OpenAPI 3.0 (JSON)'
            '</a> · <a href="/docs">interactive documentation of the whole API</a></p>'
            "</body></html>"
        )
    return _json(doc, openapi.OPENAPI_MEDIA)


async def _collection_doc(
    request: Request,
    session: SessionDep,
    principal: Identity | None,
    info: collections.Info,
    as_html: bool,
) -> dict[str, Any]:
    source = await collections.source(
        session=session, info=info, principal=principal, home=_home(request), metadata_only=True
    )
    extent = await service.extent(
        session=session, info=info, source=source, principal=principal, home=_home(request)
    )
    return documents.collection(base_url(request), info, extent, html=as_html)


@router.get(
    "/collections",
    summary="The feature collections",
    response_class=Response,
    responses=_ok("the collections this key may read", documents.JSON, OBJECT),
)
async def list_collections(
    request: Request, session: SessionDep, principal: ReferenceReader
) -> Response:
    """Every collection this key may read, with extents and links."""
    as_html = wants_html(request)
    docs = [
        await _collection_doc(request, session, principal, i, False)
        for i in await _readable(request, session, principal)
    ]
    doc = documents.collections(base_url(request), docs, html=as_html)
    return HTMLResponse(html.collections(doc)) if as_html else _json(doc)


@router.get(
    "/collections/{collection_id}",
    summary="One feature collection",
    response_class=Response,
    responses=_ok("the collection", documents.JSON, OBJECT) | problems(403, 404),
)
async def read_collection(
    request: Request, session: SessionDep, principal: ReferenceReader, collection_id: str
) -> Response:
    """The collection's extent (spatial and temporal), item type, CRS and links."""
    info = await collections.info(session, collection_id)
    collections.check_access(info, principal)
    as_html = wants_html(request)
    doc = await _collection_doc(request, session, principal, info, as_html)
    return HTMLResponse(html.collection(doc)) if as_html else _json(doc)


async def _described(
    request: Request, session: SessionDep, principal: Identity | None, collection_id: str
) -> tuple[collections.Info, collections.Source]:
    """The collection (access checked) and its description, without its data (no hot-spot
    grid is computed)."""
    info = await collections.info(session, collection_id)
    collections.check_access(info, principal)
    source = await collections.source(
        session=session, info=info, principal=principal, home=_home(request), metadata_only=True
    )
    return info, source


@router.get(
    "/collections/{collection_id}/schema",
    summary="The schema of the features (their properties and types)",
    response_class=Response,
    responses=_ok("a JSON Schema", documents.SCHEMA, OBJECT) | problems(403, 404),
)
async def read_schema(
    request: Request, session: SessionDep, principal: ReferenceReader, collection_id: str
) -> Response:
    """Every property a Feature of the collection has, with its type (incidents: the fields of
    docs/fields.md); what GIS clients type their fields from (`describedBy`)."""
    info, source = await _described(request, session, principal, collection_id)
    doc = documents.feature_schema(base_url(request), info, source)
    return _respond(request, lambda _h: doc, html.feature_schema, documents.SCHEMA)


@router.get(
    "/collections/{collection_id}/queryables",
    summary="Queryable properties",
    response_class=Response,
    responses=_ok("a JSON Schema", documents.SCHEMA, OBJECT) | problems(403, 404),
)
async def read_queryables(
    request: Request, session: SessionDep, principal: ReferenceReader, collection_id: str
) -> Response:
    """A JSON Schema of the properties `filter`, `sortby` and `name=value` may use."""
    info, source = await _described(request, session, principal, collection_id)
    doc = documents.queryables(base_url(request), info, source)
    return _respond(request, lambda _h: doc, html.queryables, documents.SCHEMA)


@router.get(
    "/collections/{collection_id}/items",
    summary="Features of a collection (bbox, datetime, filter, sortby, paging)",
    response_class=Response,
    responses=_ok(
        "a GeoJSON FeatureCollection", GEOJSON, {"$ref": REF_PREFIX + "FeatureCollection"}
    )
    | problems(403, 404),
)
async def read_items(
    request: Request,
    session: SessionDep,
    principal: ReferenceReader,
    collection_id: str,
    lang: LangDep,
) -> Response:
    """A page of Features built in PostgreSQL, with `next`/`prev` links that keep the other
    parameters; see /ogc/api for the parameters of each collection."""
    info = await collections.info(session, collection_id)
    collections.check_access(info, principal)
    as_html = wants_html(request)
    # the parameters are checked against the collection's description first: a request that
    # is refused costs no hot-spot grid (a Gi* run over every incident in scope)
    described = await collections.source(
        session=session, info=info, principal=principal, home=_home(request), metadata_only=True
    )
    query = params.parse_items(request.query_params, described)
    if query.cooperation is not None:
        query = replace(query, area=await members_of(session, query.cooperation))
    source = await collections.source(
        session=session, info=info, principal=principal, home=_home(request), lang=lang
    )
    page = await service.items(session=session, source=source, query=query)
    base = base_url(request)
    head = documents.items_head(
        base=base,
        info=info,
        params=list(request.query_params.multi_items()),
        query=query,
        page=page,
        timestamp=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        html=as_html,
    )
    body = orjson.dumps(head)[:-1] + b',"features":[' + page.features + b"]}"
    if as_html:
        fc = orjson.loads(body)
        fc["_items_url"] = f"{base}/collections/{info.id}/items"
        return HTMLResponse(html.items(info.title, fc), headers=i18n.headers(lang))
    return Response(body, media_type=GEOJSON, headers=i18n.headers(lang))


@router.get(
    "/collections/{collection_id}/items/{feature_id}",
    summary="One feature",
    response_class=Response,
    responses=_ok("a GeoJSON Feature", GEOJSON, {"$ref": REF_PREFIX + "Feature"})
    | problems(403, 404),
)
async def read_item(
    request: Request,
    session: SessionDep,
    principal: ReferenceReader,
    collection_id: str,
    feature_id: str,
    lang: LangDep,
) -> Response:
    """The Feature with its links; 404 when missing or outside your scope (the same answer)."""
    info = await collections.info(session, collection_id)
    collections.check_access(info, principal)
    as_html = wants_html(request)
    source = await collections.source(
        session=session, info=info, principal=principal, home=_home(request), lang=lang
    )
    feature = await service.item(session=session, source=source, feature_id=feature_id)
    links = documents.item_links(base_url(request), info, feature_id, html=as_html)
    body = feature[:-1] + b',"links":' + orjson.dumps(links) + b"}"
    if as_html:
        return HTMLResponse(html.item(info.title, orjson.loads(body)), headers=i18n.headers(lang))
    return Response(body, media_type=GEOJSON, headers=i18n.headers(lang))
