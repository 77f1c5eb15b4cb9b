"""GET /tiles/{layer}/{z}/{x}/{y}.mvt and GET /tiles/{layer}.json (TileJSON 3.0.0) for every
layer of app/tiles/layers.py, through one tile handler and one TileJSON handler.

Each layer is registered at its own fixed paths rather than behind a `{layer}` parameter: its
OpenAPI entry keeps its own parameters, access and properties, and the filters are parsed only
for the layers that take them. What a request may ask of a layer (who may read it, which
parameters it takes) is its function in ASKS, whose parameters the layer's two routes declare as
their own. The catch-all paths after them only answer 404 for an unknown layer.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app import i18n
from app.auth.deps import ReferenceReader, Viewer
from app.db import SessionDep
from app.errors import NotFound
from app.incidents.filters import FilterDep
from app.jurisdictions import eras
from app.openapi import problem_response
from app.tiles import caching, emerging, tilejson, versions
from app.tiles.caching import MVT
from app.tiles.layers import LAYERS, Ask, Layer
from app.tiles.tile import Tile, tile_address

router = APIRouter(prefix="/tiles", tags=["tiles"])

Z = Annotated[str, Path(max_length=12, description="zoom, 0 to 22")]
X = Annotated[str, Path(max_length=12, description="column, 0 to 2^z - 1")]
Y = Annotated[str, Path(max_length=12, description="row, 0 to 2^z - 1 (north to south)")]
Version = Annotated[
    str | None,
    Query(
        max_length=80,
        description="the layer version from TileJSON; with the current one the tile is"
        " cacheable as immutable, otherwise it must be revalidated",
    ),
]
Level = Annotated[
    str | None,
    Query(
        pattern="^(country|province|commune)$",
        description="only this level (default: all; communes from zoom 9 only)",
    ),
]
At = Annotated[
    date | None,
    Query(
        description="the units in force on this day (YYYY-MM-DD; default today in Vietnam):"
        " before 2025-07-01 the 63 provinces, since then the 34 provinces and their communes"
    ),
]
# the language of the names in the incidents tiles: a parameter of the URL only (not
# Accept-Language), so a tile URL names its content and a shared cache keeps one copy per URL
TileLang = Annotated[
    i18n.Lang,
    Query(
        description="language of the names beside the codes (`category_name`,"
        " `province_name` …): vi (default, with diacritics) or en"
    ),
]
TILE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {MVT: {"schema": {"type": "string", "format": "binary"}}},
        "description": "Mapbox Vector Tile (empty body: no features)",
    },
    304: {"description": "not modified (If-None-Match)"},
    400: problem_response(400, "z, x or y is not a non-negative integer, or z is over 22"),
    404: problem_response(404, "x or y is outside the tile matrix of zoom z"),
}


async def incidents_ask(principal: Viewer, filt: FilterDep, lang: TileLang = i18n.DEFAULT) -> Ask:
    """Any role, with the incident filters; viewers get aggregates only."""
    aggregate_only = principal.role == "viewer"
    return Ask(
        key=(filt, aggregate_only, lang), filt=filt, aggregate_only=aggregate_only, lang=lang
    )


async def hotspots_ask(request: Request, _: Viewer, filt: FilterDep) -> Ask:
    """Any role, with the incident filters; the grid over the home country's border zone."""
    state = request.app.state
    return Ask(key=(filt,), filt=filt, home=state.settings.home_country, grids=state.hotspot_cache)


async def emerging_ask(
    request: Request, _: Viewer, filt: FilterDep, lang: TileLang = i18n.DEFAULT
) -> Ask:
    """Any role (aggregates only), with the incident filters; the cube over the home country's
    border zone, its span (part of the version) read now."""
    state = request.app.state
    now = datetime.now(UTC)
    return Ask(
        key=(filt, lang),
        filt=filt,
        home=state.settings.home_country,
        lang=lang,
        period=emerging.period_of(filt, now),
        now=now,
        cubes=state.emerging_cache,
    )


async def jurisdictions_ask(_: ReferenceReader, level: Level = None, at: At = None) -> Ask:
    """Reference data: the units in force on `at` (default today), optionally one level."""
    on = at or eras.today()
    return Ask(key=(level, on), level=level, on=on)


async def reference_ask(_: ReferenceReader) -> Ask:
    """Reference data."""
    return Ask()


async def posts_ask(_: ReferenceReader) -> Ask:
    """Reference data: the posts in force today (the day is in the version, so a post closed
    from a day on leaves the map, and its URL, that day)."""
    on = eras.today()
    return Ask(key=(on,), on=on)


AskFunction = Callable[..., Awaitable[Ask]]
ASKS: dict[str, AskFunction] = {
    "incidents": incidents_ask,
    "hotspots": hotspots_ask,
    "emerging-hotspots": emerging_ask,
    "jurisdictions": jurisdictions_ask,
    "borders": reference_ask,
    "border_posts": posts_ask,
}


async def serve_tile(
    layer: Layer, request: Request, session: AsyncSession, ask: Ask, tile: Tile, v: str | None
) -> Response:
    """A tile with its ETag and Cache-Control, or 304 when the client holds this version."""
    if layer.snapshot is None or request.headers.get("if-none-match"):  # the version first
        version = layer.version(await versions.read(session=session), ask)
        tag = caching.etag(layer.name, version, *ask.key, tile)
        if caching.matches(request, tag):
            return caching.not_modified(tag, current=v == version)
        if layer.make is not None:
            body = await layer.make(session, ask, tile, version)
            return caching.send(body, tag=tag, current=v == version, media_type=MVT)
    assert layer.snapshot is not None
    # the tile and the versions in one statement: the ETag names the data of this very tile
    body, found = await layer.snapshot(session, ask, tile)
    version = layer.version(found, ask)
    tag = caching.etag(layer.name, version, *ask.key, tile)
    return caching.send(body, tag=tag, current=v == version, media_type=MVT)


def _template(request: Request, layer: Layer, version: str) -> str:
    """The absolute tile URL template with the version and the parameters it carries over."""
    given = [(k, v) for k, v in request.query_params.multi_items() if k in layer.carried]
    query = urlencode([("v", version), *given], safe=",:")
    base = str(request.base_url).rstrip("/")
    return f"{base}/tiles/{layer.name}/{{z}}/{{x}}/{{y}}.mvt?{query}"


async def serve_tilejson(
    layer: Layer, request: Request, session: AsyncSession, ask: Ask
) -> Response:
    """TileJSON 3.0.0; its tile URL carries `v` (the version) and the parameters given."""
    version = layer.version(await versions.read(session=session), ask)
    url = _template(request, layer, version)
    at = await tilejson.where(
        session=session,
        extent=layer.extent,
        home_country=request.app.state.settings.home_country,
    )
    doc = tilejson.document(layer=layer.name, info=layer.info, url=url, version=version, at=at)
    body = orjson.dumps(doc)

    async def make() -> bytes:
        return body

    return await caching.respond(
        request,
        tag=caching.etag("tilejson", url, at.bounds, at.center),
        current=False,
        media_type="application/json",
        make=make,
    )


def _parameters(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    """The parameters of `fn`, annotations evaluated, all keyword-only."""
    return [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(fn, eval_str=True).parameters.values()
    ]


async def _tilejson_parameters(request: Request, session: SessionDep) -> None:
    """The TileJSON route's own parameters (before the layer's)."""


async def _tile_parameters(
    request: Request, session: SessionDep, z: Z, x: X, y: Y, v: Version = None
) -> None:
    """The tile route's own parameters (the layer's come before `v`)."""


def _with_ask(
    endpoint: Callable[..., Awaitable[Response]],
    own: Callable[..., Awaitable[None]],
    ask: AskFunction,
) -> Callable[..., Awaitable[Response]]:
    """`endpoint(**values)` declared to FastAPI with the parameters of `own` and of the layer's
    `ask`, so that both are resolved on the route's own level: `ask` as a dependency of its own
    would cost every tile request one more level of dependency solving (docs/performance.md)."""
    head = _parameters(own)
    tail = [p for p in head if p.name == "v"]
    taken = {p.name for p in head}
    asked = [p for p in _parameters(ask) if p.name not in taken]
    head = [p for p in head if p.name != "v"]
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [*head, *asked, *tail], return_annotation=Response
    )
    return endpoint


def _register(layer: Layer, ask: AskFunction) -> None:
    """The layer's TileJSON and tile routes."""
    names = list(inspect.signature(ask).parameters)

    async def read_tilejson(**values: Any) -> Response:
        asked = await ask(**{n: values[n] for n in names})
        return await serve_tilejson(layer, values["request"], values["session"], asked)

    async def read_tile(**values: Any) -> Response:
        asked = await ask(**{n: values[n] for n in names})
        tile = tile_address(values["z"], values["x"], values["y"])
        return await serve_tile(
            layer, values["request"], values["session"], asked, tile, values["v"]
        )

    router.add_api_route(
        f"/{layer.name}.json",
        _with_ask(read_tilejson, _tilejson_parameters, ask),
        methods=["GET"],
        name=f"{layer.name}_tilejson",
        summary=layer.tilejson_summary,
        description=layer.tilejson_doc,
    )
    router.add_api_route(
        f"/{layer.name}/{{z}}/{{x}}/{{y}}.mvt",
        _with_ask(read_tile, _tile_parameters, ask),
        methods=["GET"],
        name=f"{layer.name}_tile",
        response_class=Response,
        responses=TILE_DOC,
        summary=layer.summary,
        description=layer.doc,
    )


for _layer in LAYERS.values():
    _register(_layer, ASKS[_layer.name])


def _unknown(layer: str) -> NotFound:
    return NotFound(
        f"no tile layer '{layer[:40]}'; layers: {', '.join(LAYERS)}", layers=list(LAYERS)
    )


@router.get("/{layer}.json", include_in_schema=False)
async def unknown_tilejson(layer: str) -> Response:
    """404 for a layer that does not exist."""
    raise _unknown(layer)


@router.get("/{layer}/{z}/{x}/{y}.mvt", include_in_schema=False)
async def unknown_tile(layer: str, z: str, x: str, y: str) -> Response:
    """404 for a layer that does not exist."""
    raise _unknown(layer)
