"""Cooperation between neighbouring jurisdictions: shared zones and cross-boundary counts."""

from __future__ import annotations

from typing import Any

import orjson
from geoalchemy2 import Geometry
from sqlalchemy import (
    ColumnElement,
    Text,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by, array
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import String

from app.errors import NotFound
from app.geo import geojson, spatial
from app.incidents.filters import IncidentFilter, in_jurisdiction
from app.incidents.models import Incident
from app.incidents.service import feature_expr
from app.jurisdictions import service as jurisdictions

# The line two neighbours share: their common boundary, or — across a river or estuary gap —
# the parts of both boundaries that face each other (within gap + 500 m, as adjacency does).
SHARED_LINE = """
    CASE WHEN x.method = 'shared_line' THEN
        ST_Multi(ST_LineMerge(ST_CollectionExtract(
            ST_Intersection(ST_Boundary(a.geom), ST_Boundary(b.geom)), 2)))
    ELSE
        ST_Multi(ST_CollectionExtract(ST_Union(
            ST_Intersection(ST_Boundary(a.geom),
                ST_Buffer(b.geom::geography, x.gap_m + 500)::geometry),
            ST_Intersection(ST_Boundary(b.geom),
                ST_Buffer(a.geom::geography, x.gap_m + 500)::geometry)), 2))
    END
"""

# cross-boundary: shared lines are measured piece by piece (segments <= 2 km, <= 10 vertices)
PIECE_SEGMENT_M = 2000.0
PIECE_VERTICES = 10

LINE_SQL = text(
    f"""
    SELECT ST_AsBinary(line) AS wkb, ST_AsGeoJSON(line, 6) AS geojson,
           ST_Length(line::geography) / 1000.0 AS km
      FROM (SELECT {SHARED_LINE} AS line
              FROM jurisdiction_adjacency x
              JOIN jurisdiction a ON a.id = x.a_id
              JOIN jurisdiction b ON b.id = x.b_id
             WHERE x.a_id = :a AND x.b_id = :b) s
    """
)


async def shared_zone(
    *,
    session: AsyncSession,
    a: str,
    b: str,
    km: float,
    filt: IncidentFilter,
    limit: int | None = None,
) -> bytes:
    """Incidents within `km` of the boundary a and b share (either side), nearest the line
    first (at most `limit` of them; `numberMatched` counts all), and the line itself."""
    a_id = await jurisdictions.get_id(session=session, code=a)
    b_id = await jurisdictions.get_id(session=session, code=b)
    line = (await session.execute(LINE_SQL, {"a": a_id, "b": b_id})).one_or_none()
    if line is None:
        raise NotFound(f"{a} and {b} are not neighbours", a=a, b=b)
    shared = func.ST_GeomFromWKB(literal(bytes(line.wkb)), spatial.SRID_WGS84)
    geog = func.geography(shared)
    here = func.geography(Incident.geom)
    distance = func.ST_Distance(here, geog)
    which = case((in_jurisdiction(a), literal(a)), else_=literal(b))
    f, post = feature_expr({"side": which, "distance_to_shared_m": geojson.rounded(distance, 1)})
    radius_m = km * 1000
    inside = (
        *filt.conditions(),
        in_jurisdiction(a) | in_jurisdiction(b),
        spatial.may_be_within_metres(Incident.geom, shared, radius_m),
        spatial.within_metres_of(Incident.geom, shared, radius_m),
    )
    chosen = (
        select(cast(f, Text).label("f"), distance.label("d"), Incident.id)
        .select_from(Incident)
        .outerjoin(post, post.id == Incident.nearest_post_id)
        .where(*inside)
    )
    if limit is not None:
        chosen = chosen.order_by(distance, Incident.id).limit(limit)
    rows = chosen.subquery()
    agg = func.string_agg(rows.c.f, aggregate_order_by(literal(","), rows.c.d, rows.c.id))
    stmt = select(func.coalesce(agg, literal("")), func.count()).select_from(rows)
    features, count = (await session.execute(stmt)).one()
    matched = count
    if limit is not None and count == limit:  # there may be more: count them all
        total = select(func.count()).select_from(Incident).where(*inside)
        matched = (await session.execute(total)).scalar_one()
    head = {
        "type": "FeatureCollection",
        "a": a,
        "b": b,
        "km": km,
        "numberMatched": matched,
        "numberReturned": count,
        "shared_line": {
            "type": "Feature",
            "id": f"{a}|{b}",
            "geometry": orjson.loads(line.geojson),
            "properties": {"a": a, "b": b, "length_km": round(float(line.km), 3)},
        },
    }
    return orjson.dumps(head)[:-1] + b',"features":[' + str(features).encode() + b"]}"


PAIRS_SQL = f"""
    SELECT a.code AS a, b.code AS b, {SHARED_LINE} AS line
      FROM jurisdiction_adjacency x
      JOIN jurisdiction a ON a.id = x.a_id
      JOIN jurisdiction b ON b.id = x.b_id
     WHERE a.level = :level AND a.code < b.code
"""


async def cross_boundary(
    *, session: AsyncSession, level: str, km: float, filt: IncidentFilter
) -> list[dict[str, Any]]:
    """For every adjacent pair at `level`, the matching incidents in its shared zone."""
    pairs = (
        text(PAIRS_SQL)
        .bindparams(level=level)
        .columns(a=String, b=String, line=Geometry)
        .cte("pairs")
        .prefix_with("MATERIALIZED")
    )
    # the shared lines cut into pieces of at most ~20 km: a whole line's box can span a
    # province and hold tens of thousands of incidents, each then measured against the whole
    # line; near a piece = near the line
    piece = func.ST_Subdivide(
        func.geometry(func.ST_Segmentize(func.geography(pairs.c.line), PIECE_SEGMENT_M)),
        PIECE_VERTICES,
    )
    pieces = (
        select(pairs.c.a, pairs.c.b, piece.label("g")).cte("pieces").prefix_with("MATERIALIZED")
    )
    # the incidents that may be near each piece (planar distance in degrees, index-assisted),
    # fenced (OFFSET) so that the test "in a or b" stays a filter on them: pushed down,
    # PostgreSQL ANDs the index scan with two GIN scans of the path index per piece, which
    # read far more rows than the spatial scan keeps (docs/decisions.md, "Near a line")
    radius_m = km * 1000
    near = (
        select(Incident.id, Incident.geom, Incident.jurisdiction_path)
        .where(
            spatial.may_be_within_metres(Incident.geom, pieces.c.g, radius_m),
            *filt.conditions(),
        )
        .offset(literal_column("'0'"))
        .lateral("near")
    )
    hits = (
        select(pieces.c.a, pieces.c.b, near.c.id)
        .select_from(pieces)
        .join(near, true())
        .where(
            or_(_path_has_col(near, pieces.c.a), _path_has_col(near, pieces.c.b)),
            spatial.within_metres_of(near.c.geom, pieces.c.g, radius_m),
        )
        .distinct()
        .subquery("hits")
    )
    counts = (
        select(hits.c.a, hits.c.b, func.count().label("n"))
        .group_by(hits.c.a, hits.c.b)
        .subquery("counts")
    )
    stmt = (
        select(
            pairs.c.a,
            pairs.c.b,
            (func.ST_Length(func.geography(pairs.c.line)) / 1000.0).label("shared_km"),
            func.coalesce(counts.c.n, 0).label("n"),
        )
        .outerjoin(counts, (counts.c.a == pairs.c.a) & (counts.c.b == pairs.c.b))
        .order_by(literal_column("n").desc(), pairs.c.a, pairs.c.b)
    )
    rows = await session.execute(stmt)
    return [
        {"a": r.a, "b": r.b, "shared_km": round(float(r.shared_km), 2), "count": int(r.n)}
        for r in rows
    ]


def _path_has_col(rows: Any, code: Any) -> ColumnElement[bool]:
    return rows.c.jurisdiction_path.op("@>", is_comparison=True)(
        cast(array([code]), ARRAY(String(32)))
    )
