"""SQL building blocks shared by the tile layers: the tile as bound parameters, the half-open
point test, clipping and simplifying shapes to a tile, and ST_AsMVT over the rows.

Everything that depends on the tile is a bound parameter (TZ, TX, TY, TILE_BOX), so a layer's
statement can be built once and run for any tile (docs/decisions.md, "Tile statements built once
per filter").
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Float,
    Integer,
    Select,
    Text,
    bindparam,
    cast,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.geo import spatial
from app.geo.spatial import SRID_WEB_MERCATOR, SRID_WGS84
from app.tiles.tile import BUFFER, EXTENT, Tile

Box = tuple[BindParameter[Any], BindParameter[Any], BindParameter[Any], BindParameter[Any]]


def box_params(west: str, south: str, east: str, north: str) -> Box:
    """Four float parameters: a box in degrees."""
    return (
        bindparam(west, type_=Float),
        bindparam(south, type_=Float),
        bindparam(east, type_=Float),
        bindparam(north, type_=Float),
    )


TZ, TX, TY = (bindparam(n, type_=Integer) for n in ("tz", "tx", "ty"))
# the tile in degrees; a point is inside when west <= lon < east and south < lat <= north
TILE_BOX = box_params("tw", "ts", "te", "tn")
# simplify lines and polygons with a tolerance of (tile width / 1024): half a display pixel
SIMPLIFY_PER_TILE = 1024


def tile_params(tile: Tile) -> dict[str, Any]:
    """The values of the tile's parameters (TZ, TX, TY and TILE_BOX)."""
    w, s, e, n = tile.lonlat()
    return {"tz": tile.z, "tx": tile.x, "ty": tile.y, "tw": w, "ts": s, "te": e, "tn": n}


def mvt(rows: Select[Any], layer: str) -> Select[Any]:
    """ST_AsMVT over the rows (a `geom` column in tile coordinates plus properties)."""
    sub = rows.subquery("t")
    return select(func.ST_AsMVT(sub.table_valued(), layer, EXTENT, "geom")).where(
        sub.c.geom.is_not(None)
    )


async def run(session: AsyncSession, stmt: Select[Any], params: dict[str, Any]) -> bytes:
    """The tile's bytes (empty: no features)."""
    # on the session's connection (Core): the ORM's execution steps cost more Python than a
    # small tile costs PostgreSQL, and a tile has no ORM entities
    value = (await (await session.connection()).execute(stmt, params)).scalar()
    return bytes(value) if value else b""


def inside(geom: Any, box: tuple[Any, Any, Any, Any]) -> list[ColumnElement[bool]]:
    """Point in [west, east) x (south, north]: the GiST-friendly box test, then the exact
    half-open one, so a point on a shared edge belongs to one tile only."""
    w, s, e, n = box
    lon, lat = func.ST_X(geom), func.ST_Y(geom)
    return [
        geom.op("&&")(func.ST_MakeEnvelope(w, s, e, n, SRID_WGS84)),
        lon >= w,
        lon < e,
        lat > s,
        lat <= n,
    ]


def envelope() -> ColumnElement[Any]:
    """The tile's envelope in EPSG:3857 (ST_TileEnvelope of TZ, TX, TY)."""
    return func.ST_TileEnvelope(TZ, TX, TY)


def reaches(geom: Any, tile: Tile) -> ColumnElement[bool]:
    """The GiST test: the geometry's box reaches into the tile plus its buffer."""
    return spatial.overlaps_bbox(geom, tile.lonlat(tile.buffer_m))


def shape(geom: Any, tile: Tile) -> ColumnElement[Any]:
    """A line or polygon in tile coordinates: clipped in degrees to the buffered tile (so the
    projection never sees the poles), projected, simplified to about half a display pixel."""
    clipped = func.ST_ClipByBox2D(geom, spatial.envelope(tile.lonlat(tile.buffer_m)))
    projected = func.ST_Transform(clipped, SRID_WEB_MERCATOR)
    simple = func.ST_Simplify(projected, tile.width_m / SIMPLIFY_PER_TILE)
    return func.ST_AsMVTGeom(simple, envelope(), EXTENT, BUFFER, True)


def point(geom: Any) -> ColumnElement[Any]:
    """A point in tile coordinates."""
    return func.ST_AsMVTGeom(
        func.ST_Transform(geom, SRID_WEB_MERCATOR), envelope(), EXTENT, BUFFER, True
    )


def iso(ts: Any) -> ColumnElement[Any]:
    """A timestamp as the API writes it in JSON (ISO 8601, e.g. 2025-05-05T05:05:05+00:00):
    PostgreSQL's JSON text of it without the quotes (`#>> '{}'` would parse that JSON again, a
    measurable share of a full tile: docs/performance.md)."""
    return func.btrim(cast(func.to_json(ts), Text), '"')
