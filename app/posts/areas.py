"""Areas of responsibility of border posts: drawn, imported, or generated.

A generated area is the post's share of the border zone: the part of Vietnam within `km` of
the national land border (every border segment of the home country, buffered on the spheroid
piece by piece as the border-zone bands are, clipped to the home country polygon) that is
nearer to this post than to any other home post in force today. "Nearer" is the Voronoi
partition of the posts in UTM zone 48N (EPSG:32648: scale error under 0.3 % from 102° to 110° E,
so a boundary between two posts lies within that share of their distance of the geodesic
bisector). A post with no share of the zone (a coast-guard station far from the land border)
gets its cell within `km` of itself, clipped to the home country. Drawn and imported areas are
kept as given; closed posts keep the area they had when they closed (history); every other
post's generated area is made again after any change (`generate`).
"""

from __future__ import annotations

from typing import Any

import shapely
from shapely.geometry import shape
from sqlalchemy import func, select, text, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput
from app.geo import geojson
from app.geo.params import SimplifyM
from app.jurisdictions import eras
from app.posts.models import BorderPost
from app.posts.service import in_force

HOME = "VNM"
DEFAULT_KM = 20.0  # depth of a generated area into the country, km
MAX_KM = 200.0
MAX_VERTICES = 100_000
UTM_48N = 32648

# the border zone of a depth, kept in post_area_zone (emptied when boundaries are loaded)
ZONE_SQL = text(
    """
    INSERT INTO post_area_zone (km, geom)
    SELECT :km, ST_Intersection(
               ST_Union(ST_Buffer(p.geom::geography, :m, 'quad_segs=8')::geometry),
               (SELECT geom FROM jurisdiction WHERE level = 'country' AND code = :home
                 ORDER BY valid_from DESC NULLS LAST LIMIT 1))
      FROM border_segment s
      JOIN border_segment_piece p ON p.segment_id = s.id
     WHERE :home IN (s.country_a, s.country_b)
    ON CONFLICT (km) DO NOTHING
    """
)

GENERATE_SQL = text(
    f"""
    WITH home AS (
        SELECT geom FROM jurisdiction WHERE level = 'country' AND code = :home
        ORDER BY valid_from DESC NULLS LAST LIMIT 1
    ), zone AS (
        SELECT geom AS g FROM post_area_zone WHERE km = :km
    ), live AS (
        SELECT id, geom FROM border_post
         WHERE country = :home
           -- near the home country only: a post far away (a typo) would stretch the
           -- projection, and has no share of the border zone anyway
           AND geom && (SELECT ST_Expand(ST_Envelope(geom), 5) FROM home)
           AND coalesce(valid_from, '-infinity'::date) <= :day
           AND coalesce(valid_to, 'infinity'::date) > :day
    ), cells AS (
        SELECT (ST_Dump(ST_VoronoiPolygons(
                   ST_Collect(ST_Transform(l.geom, {UTM_48N})), 0.0,
                   ST_Transform(ST_Expand(ST_Envelope((SELECT geom FROM home)), 5), {UTM_48N})
               ))).geom AS g
          FROM live l
    ), owned AS (
        SELECT l.id, l.geom AS pt, ST_Transform(c.g, 4326) AS cell
          FROM live l JOIN cells c ON ST_Intersects(c.g, ST_Transform(l.geom, {UTM_48N}))
    ), shaped AS (
        SELECT o.id,
               coalesce(
                   nullif(ST_Multi(ST_CollectionExtract(ST_MakeValid(
                       ST_Intersection(o.cell, z.g)), 3)), 'MULTIPOLYGON EMPTY'::geometry),
                   ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_Intersection(ST_Intersection(
                       o.cell, ST_Buffer(o.pt::geography, :m, 'quad_segs=8')::geometry),
                       (SELECT geom FROM home))), 3))) AS g
          FROM owned o CROSS JOIN zone z
    )
    UPDATE border_post p
       SET area = CASE WHEN ST_IsEmpty(s.g) THEN NULL ELSE ST_SetSRID(s.g, 4326) END,
           area_source = 'generated', area_km = :km
      FROM shaped s
     WHERE p.id = s.id
       AND (p.area_source IS NULL OR p.area_source = 'generated')
       AND (md5(ST_AsEWKB(p.area)) IS DISTINCT FROM
            md5(ST_AsEWKB(CASE WHEN ST_IsEmpty(s.g) THEN NULL ELSE ST_SetSRID(s.g, 4326) END))
            OR p.area_km IS DISTINCT FROM :km OR p.area_source IS NULL)
    """
)


async def generate(*, session: AsyncSession, km: float = DEFAULT_KM, actor: str = "areas") -> int:
    """Make the generated areas again (posts in force today whose area is not drawn or
    imported); returns how many changed. Not a new version of the posts (derived data, like an
    incident's nearest post); the history records each change (action `area_generated`)."""
    if not 0 < km <= MAX_KM:
        raise InvalidInput(f"the depth of an area must be more than 0 and at most {MAX_KM:g} km")
    await session.execute(
        text(
            "SELECT set_config('borderwatch.actor', :actor, true),"
            " set_config('borderwatch.action', 'area_generated', true)"
        ),
        {"actor": actor},
    )
    params = {"home": HOME, "m": km * 1000.0, "km": km}
    await session.execute(ZONE_SQL, params)
    result: Any = await session.execute(
        GENERATE_SQL, {"home": HOME, "m": km * 1000.0, "km": km, "day": eras.today()}
    )
    return int(result.rowcount or 0)


async def forget_zones(*, session: AsyncSession) -> None:
    """Empty the kept border zones (after a load of boundaries)."""
    await session.execute(text("DELETE FROM post_area_zone"))


def checked_area(geometry: Any, field: str = "area") -> str:
    """A drawn or imported area (GeoJSON Polygon or MultiPolygon, WGS 84) as WKT, or
    InvalidInput saying what is wrong with it."""
    if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        raise InvalidInput("an area must be a GeoJSON Polygon or MultiPolygon", field=field)
    try:
        shp = shape(geometry)
    except (
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        IndexError,
        shapely.errors.GEOSException,
    ) as exc:
        raise InvalidInput(f"the area is not a readable polygon: {exc}", field=field) from exc
    if shp.is_empty:
        raise InvalidInput("the area is empty", field=field)
    if shapely.get_num_coordinates(shp) > MAX_VERTICES:
        raise InvalidInput(f"the area has more than {MAX_VERTICES} vertices", field=field)
    x1, y1, x2, y2 = shp.bounds
    if not (-180 <= x1 <= x2 <= 180 and -90 <= y1 <= y2 <= 90):
        raise InvalidInput(
            "the area's coordinates are outside [-180, 180] x [-90, 90]", field=field
        )
    if not shp.is_valid:
        reason = shapely.is_valid_reason(shp)
        raise InvalidInput(f"the area is not a valid polygon ({reason})", field=field)
    return str(shp.wkt)


async def features(
    *, session: AsyncSession, simplify_m: SimplifyM = None, closed: bool = False
) -> bytes:
    """Areas of responsibility as a FeatureCollection (the map overlay): one Feature per post
    with an area, id the post's code."""

    p = BorderPost
    f = geojson.feature(
        id_=p.code,
        geom=geojson.simplified(p.area, simplify_m),
        properties={
            "code": p.code,
            "name": p.name,
            "name_local": p.name_local,
            "kind": p.kind,
            "border": p.border,
            "area_source": p.area_source,
            "area_km": p.area_km,
            "area_km2": geojson.rounded(func.ST_Area(func.geography(p.area)) / 1e6, 1),
            "in_force": in_force(p),
        },
    )
    stmt = (
        select(f.label("f"), func.row_number().over(order_by=p.code).label("ord"))
        .where(p.area.is_not(None))
        .where(true() if closed else in_force(p))
    )
    return await geojson.collection(session, stmt)
