"""GET /tiles/{layer}/{z}/{x}/{y}.mvt and GET /tiles/{layer}.json (TileJSON 3.0.0).

Layers: incidents, hotspots (any role; incident filters as in GET /incidents; viewers get
aggregates only), jurisdictions, borders, border_posts (reference data). The fixed layer paths
come before the catch-all ones, which only answer 404 for an unknown layer.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.deps import ReferenceReader, Viewer
from app.db import SessionDep
from app.errors import NotFound
from app.incidents.filters import FilterDep, IncidentFilter
from app.openapi import problem_response
from app.tiles import caching, service
from app.tiles.caching import MVT

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
    Query(pattern="^(country|province)$", description="only this level (default: both)"),
]
FILTERS = (
    "datetime",
    "category",
    "status",
    "severity_min",
    "jurisdiction",
    "border_km_max",
    "bbox",
)
TILE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {MVT: {"schema": {"type": "string", "format": "binary"}}},
        "description": "Mapbox Vector Tile (empty body: no features)",
    },
    304: {"description": "not modified (If-None-Match)"},
    400: problem_response(400, "z, x or y is not a non-negative integer, or z is over 22"),
    404: problem_response(404, "x or y is outside the tile matrix of zoom z"),
}


def _template(request: Request, layer: str, version: str, names: tuple[str, ...]) -> str:
    """The absolute tile URL template with the version and the given parameters."""
    given = [(k, v) for k, v in request.query_params.multi_items() if k in names]
    query = urlencode([("v", version), *given], safe=",:")
    base = str(request.base_url).rstrip("/")
    return f"{base}/tiles/{layer}/{{z}}/{{x}}/{{y}}.mvt?{query}"


async def _tilejson(
    request: Request,
    session: AsyncSession,
    *,
    layer: str,
    version: str,
    names: tuple[str, ...],
) -> Response:
    url = _template(request, layer, version, names)
    bounds = await service.bounds(session=session, layer=layer)
    doc = service.tilejson(layer=layer, url=url, version=version, bounds=bounds)
    body = orjson.dumps(doc)
    return await caching.respond(
        request,
        tag=caching.etag("tilejson", url, bounds),
        current=False,
        media_type="application/json",
        make=lambda: _bytes(body),
    )


async def _bytes(body: bytes) -> bytes:
    return body


async def _incident_version(
    session: AsyncSession, layer: str, filt: IncidentFilter, aggregate_only: bool, home: str
) -> str:
    versions = await service.layer_versions(session=session)
    view = service.incident_view(filt, aggregate_only=aggregate_only, home=home)
    return service.data_version(layer, versions, view)


@router.get("/incidents.json", summary="TileJSON of the incidents layer (filters carried over)")
async def incidents_tilejson(
    request: Request, session: SessionDep, principal: Viewer, filt: FilterDep
) -> Response:
    """TileJSON 3.0.0; its tile URL carries `v` (the version) and the filters given here."""
    version = await _incident_version(session, "incidents", filt, principal.role == "viewer", "")
    return await _tilejson(request, session, layer="incidents", version=version, names=FILTERS)


@router.get(
    "/incidents/{z}/{x}/{y}.mvt",
    response_class=Response,
    responses=TILE_DOC,
    summary="Incidents vector tile: points from zoom 10, aggregates below (viewers: always)",
)
async def incidents_tile(
    request: Request,
    session: SessionDep,
    principal: Viewer,
    filt: FilterDep,
    z: Z,
    x: X,
    y: Y,
    v: Version = None,
) -> Response:
    """Layer `incidents`: `id`, `category`, `severity`, `status`, `occurred_at`, `cluster`
    (false) per incident; aggregates carry `count`, `severity_max`, `category`, `cluster`
    (true)."""
    tile = service.tile_address(z, x, y)
    aggregate_only = principal.role == "viewer"
    view = service.incident_view(filt, aggregate_only=aggregate_only)

    def tag_of(version: str) -> str:
        return caching.etag("incidents", version, filt, aggregate_only, tile)

    if request.headers.get("if-none-match"):  # the client holds a copy: maybe a 304
        version = await _incident_version(session, "incidents", filt, aggregate_only, "")
        if caching.matches(request, tag_of(version)):
            return caching.not_modified(tag_of(version), current=v == version)
    # the tile and the versions in one statement: the ETag names the data of this very tile
    body, versions = await service.incidents_tile(
        session=session, filt=filt, tile=tile, aggregate_only=aggregate_only
    )
    version = service.data_version("incidents", versions, view)
    return caching.send(body, tag=tag_of(version), current=v == version, media_type=MVT)


@router.get("/hotspots.json", summary="TileJSON of the hot-spot layer (filters carried over)")
async def hotspots_tilejson(
    request: Request, session: SessionDep, principal: Viewer, filt: FilterDep
) -> Response:
    """TileJSON 3.0.0 of the Gi* grid for the default parameters of /analysis/hotspots."""
    home = request.app.state.settings.home_country
    version = await _incident_version(session, "hotspots", filt, False, home)
    return await _tilejson(request, session, layer="hotspots", version=version, names=FILTERS)


@router.get(
    "/hotspots/{z}/{x}/{y}.mvt",
    response_class=Response,
    responses=TILE_DOC,
    summary="Hot-spot vector tile: Gi* hexagons (5 km, border zone) with count, gi_z, bin",
)
async def hotspots_tile(
    request: Request,
    session: SessionDep,
    principal: Viewer,
    filt: FilterDep,
    z: Z,
    x: X,
    y: Y,
    v: Version = None,
) -> Response:
    """Layer `hotspots`: the cells of GET /analysis/hotspots (default parameters) reaching
    into the tile; the grid is computed once per filter and version in each process."""
    tile = service.tile_address(z, x, y)
    home = request.app.state.settings.home_country
    version = await _incident_version(session, "hotspots", filt, False, home)
    cache: service.HotspotCache | None = getattr(request.app.state, "hotspot_cache", None)
    if cache is None:
        cache = request.app.state.hotspot_cache = service.HotspotCache()

    async def make() -> bytes:
        grid = await cache.get((filt, version), session, filt, home)
        return await service.hotspots_tile(session=session, grid=grid, tile=tile)

    return await caching.respond(
        request,
        tag=caching.etag("hotspots", version, filt, tile),
        current=v == version,
        media_type=MVT,
        make=make,
    )


async def _reference_version(session: AsyncSession, layer: str) -> str:
    return service.data_version(layer, await service.layer_versions(session=session))


@router.get("/jurisdictions.json", summary="TileJSON of the jurisdictions layer")
async def jurisdictions_tilejson(
    request: Request, session: SessionDep, _: ReferenceReader, level: Level = None
) -> Response:
    """TileJSON 3.0.0 (countries and provinces; `level` carried over)."""
    version = await _reference_version(session, "jurisdictions")
    return await _tilejson(
        request, session, layer="jurisdictions", version=version, names=("level",)
    )


@router.get(
    "/jurisdictions/{z}/{x}/{y}.mvt",
    response_class=Response,
    responses=TILE_DOC,
    summary="Jurisdictions vector tile: countries and provinces with a `level` property",
)
async def jurisdictions_tile(
    request: Request,
    session: SessionDep,
    _: ReferenceReader,
    z: Z,
    x: X,
    y: Y,
    level: Level = None,
    v: Version = None,
) -> Response:
    """Layer `jurisdictions`: polygons simplified to the zoom; `code`, `name`, `name_local`,
    `level`, `country`, `parent_code`."""
    tile = service.tile_address(z, x, y)
    version = await _reference_version(session, "jurisdictions")
    return await caching.respond(
        request,
        tag=caching.etag("jurisdictions", version, level, tile),
        current=v == version,
        media_type=MVT,
        make=lambda: service.jurisdictions_tile(session=session, tile=tile, level=level),
    )


@router.get("/borders.json", summary="TileJSON of the national borders layer")
async def borders_tilejson(request: Request, session: SessionDep, _: ReferenceReader) -> Response:
    """TileJSON 3.0.0."""
    version = await _reference_version(session, "borders")
    return await _tilejson(request, session, layer="borders", version=version, names=())


@router.get(
    "/borders/{z}/{x}/{y}.mvt",
    response_class=Response,
    responses=TILE_DOC,
    summary="National border segments vector tile",
)
async def borders_tile(
    request: Request, session: SessionDep, _: ReferenceReader, z: Z, x: X, y: Y, v: Version = None
) -> Response:
    """Layer `borders`: lines simplified to the zoom; `code`, `country_a`, `country_b`,
    `length_km`."""
    tile = service.tile_address(z, x, y)
    version = await _reference_version(session, "borders")
    return await caching.respond(
        request,
        tag=caching.etag("borders", version, tile),
        current=v == version,
        media_type=MVT,
        make=lambda: service.borders_tile(session=session, tile=tile),
    )


@router.get("/border_posts.json", summary="TileJSON of the border posts layer")
async def border_posts_tilejson(
    request: Request, session: SessionDep, _: ReferenceReader
) -> Response:
    """TileJSON 3.0.0."""
    version = await _reference_version(session, "border_posts")
    return await _tilejson(request, session, layer="border_posts", version=version, names=())


@router.get(
    "/border_posts/{z}/{x}/{y}.mvt",
    response_class=Response,
    responses=TILE_DOC,
    summary="Border posts vector tile",
)
async def border_posts_tile(
    request: Request, session: SessionDep, _: ReferenceReader, z: Z, x: X, y: Y, v: Version = None
) -> Response:
    """Layer `border_posts`: points; `code`, `name`, `name_local`, `kind`, `agency`, `border`,
    `province_code`, `position_approximate`."""
    tile = service.tile_address(z, x, y)
    version = await _reference_version(session, "border_posts")
    return await caching.respond(
        request,
        tag=caching.etag("border_posts", version, tile),
        current=v == version,
        media_type=MVT,
        make=lambda: service.border_posts_tile(session=session, tile=tile),
    )


def _unknown(layer: str) -> NotFound:
    return NotFound(
        f"no tile layer '{layer[:40]}'; layers: {', '.join(service.LAYERS)}",
        layers=list(service.LAYERS),
    )


@router.get("/{layer}.json", include_in_schema=False)
async def unknown_tilejson(layer: str) -> Response:
    """404 for a layer that does not exist."""
    raise _unknown(layer)


@router.get("/{layer}/{z}/{x}/{y}.mvt", include_in_schema=False)
async def unknown_tile(layer: str, z: str, x: str, y: str) -> Response:
    """404 for a layer that does not exist."""
    raise _unknown(layer)
