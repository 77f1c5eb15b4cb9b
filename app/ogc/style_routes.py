"""OGC API – Styles under /ogc (draft 20-009, collection styles): the styles of a collection and
their stylesheets, QGIS (.qml) or MapLibre (style JSON). Thin routes: the collection is found
and authorised as by the other /ogc routes (app/ogc/routes.py), the documents are built in
app/ogc/styles.py and app/ogc/documents.py. See docs/styles.md."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Query, Request, Response

from app import i18n
from app.auth.deps import ReferenceReader
from app.db import SessionDep
from app.headers import preferred
from app.i18n import LangDep
from app.ogc import collections, documents, styles
from app.ogc.routes import PREFIX, OgcRoute, base_url
from app.openapi import problems

router = APIRouter(prefix=PREFIX, tags=["ogc"], route_class=OgcRoute, responses=problems(400))

# the media types (and their aliases) a client may ask for in Accept, and the format they mean
ACCEPTED = {
    styles.QML: "qml",
    "application/xml": "qml",
    "text/xml": "qml",
    styles.MAPBOX: "mapbox",
    "application/json": "mapbox",
}


def negotiate(accept: str | None) -> str:
    """The stylesheet format the Accept header prefers (highest q, the first listed on a tie),
    else the default (MapLibre): a header naming nothing we serve gets the default, not 406."""
    return preferred(accept, ACCEPTED.get) or styles.DEFAULT_FORMAT


def _vary(lang: i18n.Lang, *also: str) -> dict[str, str]:
    headers = i18n.headers(lang)
    headers["Vary"] = ", ".join((*also, headers["Vary"]))
    return headers


async def _collection(
    session: SessionDep, principal: ReferenceReader, collection_id: str
) -> collections.Info:
    info = await collections.info(session, collection_id)
    collections.check_access(info, principal)
    return info


STYLES: dict[int | str, Any] = {
    200: {
        "description": "the styles, each with a `stylesheet` link per encoding (empty for a"
        " collection without styles)",
        "content": {documents.JSON: {"schema": {"type": "object"}}},
    }
}


@router.get(
    "/collections/{collection_id}/styles",
    summary="The styles of a collection (OGC API – Styles)",
    response_class=Response,
    responses=STYLES | problems(403, 404),
)
async def list_styles(
    request: Request,
    session: SessionDep,
    principal: ReferenceReader,
    collection_id: str,
    lang: LangDep,
    f: Annotated[Literal["json"] | None, Query(description="json (the only encoding)")] = None,
) -> Response:
    """`by-category` for incidents, `gi-bins` for hot spots: QGIS (.qml) and MapLibre styles in
    the dashboard's colours, titled and labelled in `lang`."""
    info = await _collection(session, principal, collection_id)
    doc = documents.styles(base_url(request), info, lang)
    return Response(orjson.dumps(doc), media_type=documents.JSON, headers=i18n.headers(lang))


STYLESHEET: dict[int | str, Any] = {
    200: {
        "description": "the stylesheet: MapLibre style JSON (spec v8, over this server's vector"
        " tiles) or a QGIS style (.qml, XML, sent as a download)",
        "content": {
            styles.MAPBOX: {"schema": {"type": "object"}},
            styles.QML: {"schema": {"type": "string"}},
        },
    }
}


@router.get(
    "/collections/{collection_id}/styles/{style_id}",
    summary="One style's stylesheet: QGIS (.qml) or MapLibre (OGC API – Styles)",
    response_class=Response,
    responses=STYLESHEET | problems(403, 404),
)
async def read_style(
    request: Request,
    session: SessionDep,
    principal: ReferenceReader,
    collection_id: str,
    style_id: str,
    lang: LangDep,
    f: Annotated[
        Literal["qml", "mapbox"] | None,
        Query(description="qml (QGIS) or mapbox (MapLibre); without it, the Accept header"),
    ] = None,
    accept: Annotated[
        str | None,
        Header(description=f"{styles.QML} or {styles.MAPBOX} (the default)"),
    ] = None,
) -> Response:
    """Labels (category names, hot-spot classes) in `lang`; the MapLibre style's source is the
    layer's TileJSON on this server (send the same key with the tile requests)."""
    info = await _collection(session, principal, collection_id)
    style = styles.find(info.id, style_id)
    fmt = f or negotiate(accept)
    body = await styles.stylesheet(
        session=session,
        style=style,
        fmt=fmt,
        lang=lang,
        tilejson_url=lambda layer: str(request.url_for(f"{layer}_tilejson")),
    )
    headers = _vary(lang, "Accept")
    if fmt == "qml":
        name = styles.file_name(style, fmt, lang)
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(body, media_type=styles.FORMATS[fmt], headers=headers)
