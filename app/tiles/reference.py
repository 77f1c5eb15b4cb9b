"""The reference layers: jurisdictions, national borders and border posts.

Lines and polygons are clipped to the tile plus its buffer, projected and simplified to about
half a display pixel (app/tiles/sql.py); posts are points, each in exactly one tile. Features
are in code order, so a tile's bytes are the same every time it is made (its ETag names them).
Jurisdictions are the units in force on one day (app/jurisdictions/eras.py), communes only
from COMMUNE_MIN_ZOOM.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Float, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.borders.models import BorderSegment
from app.jurisdictions.eras import in_force
from app.jurisdictions.models import Jurisdiction
from app.posts.models import BorderPost
from app.tiles.sql import inside, mvt, point, reaches, run, shape, tile_params
from app.tiles.tile import Tile

# communes (3 321, a few hundred in a busy z9 tile) are drawn from this zoom on: below it they
# are smaller than a few pixels and would multiply the size of every tile
COMMUNE_MIN_ZOOM = 9


async def jurisdictions_tile(
    *, session: AsyncSession, tile: Tile, level: str | None, on: date
) -> bytes:
    """The countries, provinces and (from COMMUNE_MIN_ZOOM) communes in force on `on`, with
    a `level` property; `level` restricts to one level (communes below COMMUNE_MIN_ZOOM: an
    empty tile, without a query)."""
    small = tile.z < COMMUNE_MIN_ZOOM
    if small and level == "commune":
        return b""
    j = Jurisdiction
    rows = select(
        shape(j.geom, tile).label("geom"),
        j.code,
        j.name,
        j.name_local,
        j.level,
        j.type_local,
        j.official_code,
        j.geometry_approximate,
        j.country,
        j.parent_code,
    ).where(in_force(j, on), reaches(j.geom, tile))
    rows = rows.order_by(j.code)  # one tile, one set of bytes: its ETag names them
    if level:
        rows = rows.where(j.level == level)
    elif small:
        rows = rows.where(j.level != "commune")
    return await run(session, mvt(rows, "jurisdictions"), tile_params(tile))


async def borders_tile(*, session: AsyncSession, tile: Tile) -> bytes:
    """National border segments (one line feature per country pair)."""
    b = BorderSegment
    rows = select(
        shape(b.geom, tile).label("geom"),
        b.code,
        b.country_a,
        b.country_b,
        func.round(cast(b.length_km, Float)).label("length_km"),
    ).where(reaches(b.geom, tile))
    rows = rows.order_by(b.code)
    return await run(session, mvt(rows, "borders"), tile_params(tile))


async def border_posts_tile(*, session: AsyncSession, tile: Tile, on: date) -> bytes:
    """Border posts in force on `on` as points (each in exactly one tile)."""
    p = BorderPost
    rows = select(
        point(p.geom).label("geom"),
        p.code,
        p.name,
        p.name_local,
        p.kind,
        p.agency,
        p.border,
        p.province_code,
        p.position_approximate,
    ).where(*inside(p.geom, tile.lonlat()), in_force(p, on))
    rows = rows.order_by(p.code)
    return await run(session, mvt(rows, "border_posts"), tile_params(tile))
