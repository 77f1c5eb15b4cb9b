"""National border segments: derived from the country polygons, served as GeoJSON."""

from __future__ import annotations

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.borders.models import BorderSegment
from app.geo import geojson

# Vertices per indexed piece: short pieces keep the nearest-border lookup index-assisted.
PIECE_VERTICES = 16

DERIVE_SQL = text(
    """
    WITH home AS (
        SELECT geom FROM jurisdiction WHERE level = 'country' AND code = :home
        ORDER BY valid_from DESC NULLS LAST LIMIT 1
    ), shared AS (
        SELECT o.code AS other,
               ST_Multi(ST_LineMerge(ST_CollectionExtract(
                   ST_Intersection(ST_Boundary(h.geom), ST_Boundary(o.geom)), 2))) AS geom
          FROM home h
          JOIN jurisdiction o
            ON o.level = 'country' AND o.code <> :home AND ST_Intersects(h.geom, o.geom)
    )
    INSERT INTO border_segment (code, country_a, country_b, length_km, geom, source)
    SELECT :home || '-' || other, :home, other, ST_Length(geom::geography) / 1000.0, geom,
           'derived in PostGIS from the country polygons (shared boundary)'
      FROM shared
     WHERE NOT ST_IsEmpty(geom) AND ST_Length(geom::geography) > 0
    """
)

PIECES_SQL = text(
    """
    INSERT INTO border_segment_piece (segment_id, geom)
    SELECT s.id, (ST_Dump(ST_Subdivide(s.geom, :vertices))).geom
      FROM border_segment s
    """
)


async def derive_segments(*, session: AsyncSession, home: str) -> int:
    """Rebuild the border segments of country `home` with each neighbour; returns their count."""
    await session.execute(delete(BorderSegment))
    await session.execute(DERIVE_SQL, {"home": home})
    await session.execute(PIECES_SQL, {"vertices": PIECE_VERTICES})
    total = await session.execute(select(func.count()).select_from(BorderSegment))
    return int(total.scalar_one())


async def list_features(
    *, session: AsyncSession, country: str | None = None, simplify_m: float | None = None
) -> bytes:
    """Border segments as a FeatureCollection, by code."""
    s = BorderSegment
    f = geojson.feature(
        id_=s.code,
        geom=geojson.simplified(s.geom, simplify_m) if simplify_m else s.geom,
        properties={
            "code": s.code,
            "country_a": s.country_a,
            "country_b": s.country_b,
            "length_km": geojson.rounded(s.length_km, 2),
            "source": s.source,
        },
    )
    stmt = select(f.label("f"), func.row_number().over(order_by=s.code).label("ord"))
    if country:
        stmt = stmt.where((s.country_a == country) | (s.country_b == country))
    return await geojson.collection(session, stmt)
