"""The reference layers: jurisdictions, national borders and border posts.

Lines and polygons are clipped to the tile plus its buffer, projected and simplified to about
half a display pixel (app/tiles/sql.py); posts are points, each in exactly one tile.
"""

from __future__ import annotations

from sqlalchemy import Float, cast, func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from app.borders.models import BorderSegment
from app.jurisdictions.models import Jurisdiction
from app.posts.models import BorderPost
from app.tiles.sql import inside, mvt, point, reaches, run, shape, tile_params
from app.tiles.tile import Tile


async def jurisdictions_tile(*, session: AsyncSession, tile: Tile, level: str | None) -> bytes:
    """Countries and provinces (the newest version of each code) with a `level` property;
    `level` restricts to one level."""
    j = Jurisdiction
    newest = (
        select(j.id).ext(distinct_on(j.code)).order_by(j.code, j.valid_from.desc().nulls_last())
    ).scalar_subquery()
    rows = select(
        shape(j.geom, tile).label("geom"),
        j.code,
        j.name,
        j.name_local,
        j.level,
        j.country,
        j.parent_code,
    ).where(j.id.in_(newest), reaches(j.geom, tile))
    if level:
        rows = rows.where(j.level == level)
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
    return await run(session, mvt(rows, "borders"), tile_params(tile))


async def border_posts_tile(*, session: AsyncSession, tile: Tile) -> bytes:
    """Border posts as points (each in exactly one tile)."""
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
    ).where(*inside(p.geom, tile.lonlat()))
    return await run(session, mvt(rows, "border_posts"), tile_params(tile))
