"""The border zone: incidents per distance band from the national border, and per border post.

Both count only incidents on the home country's side (derived `country_code`), as the band
polygons are drawn there; distances are the derived `border_distance_km` (spheroid distance to
the nearest border segment) and the nearest segment / post set by the incident trigger, so no
spatial join runs at query time (docs/analysis.md).
"""

from __future__ import annotations

import math
from itertools import pairwise

import orjson
from sqlalchemy import BigInteger, Float, and_, case, cast, func, literal, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from app.borders.models import BorderSegment
from app.errors import InvalidInput
from app.geo import geojson, spatial
from app.incidents.filters import IncidentFilter
from app.incidents.models import Incident
from app.posts.models import BorderPost
from app.posts.service import in_force as posts_in_force
from app.posts.service import todays_province

ALL = "all"
MAX_KM = 200.0
MIN_BANDS, MAX_BANDS = 2, 10  # values (edges), so 1 to 9 bands

# The band polygons on the home side: each segment is buffered piece by piece (the indexed
# pieces of <= 16 vertices, so every geography buffer is made in a local UTM projection and is
# metric), the buffers are unioned per edge distance, consecutive edges are differenced and the
# ring is clipped to the home country polygon.
BANDS_SQL = text(
    """
    WITH home AS (
        SELECT geom FROM jurisdiction WHERE level = 'country' AND code = :home
        ORDER BY valid_from DESC NULLS LAST LIMIT 1
    ), edge AS (
        SELECT km, ord FROM unnest(CAST(:bands AS float8[])) WITH ORDINALITY AS e(km, ord)
    ), buf AS (
        SELECT s.code, e.ord, e.km,
               CASE WHEN e.km > 0 THEN ST_Union(ST_Buffer(
                   p.geom::geography, e.km * 1000, 'quad_segs=16')::geometry) END AS g
          FROM border_segment s
          JOIN border_segment_piece p ON p.segment_id = s.id
          CROSS JOIN edge e
         WHERE s.code = ANY(CAST(:codes AS text[]))
         GROUP BY s.code, e.ord, e.km
    ), band AS (
        SELECT a.code, a.ord, a.km AS from_km, b.km AS to_km,
               ST_Multi(ST_CollectionExtract(ST_Intersection(
                   CASE WHEN a.g IS NULL THEN b.g ELSE ST_Difference(b.g, a.g) END,
                   h.geom), 3)) AS g
          FROM buf a
          JOIN buf b ON b.code = a.code AND b.ord = a.ord + 1
          CROSS JOIN home h
    ), shown AS (
        SELECT code, ord, from_km, to_km,
               CASE WHEN CAST(:tolerance_deg AS float8) > 0
                    THEN ST_Multi(ST_SimplifyPreserveTopology(g, :tolerance_deg)) ELSE g END AS g,
               CAST(:props AS jsonb) -> code -> (ord::text) AS p
          FROM band
    )
    SELECT coalesce(string_agg(json_build_object(
               'type', 'Feature',
               'id', code || ':' || from_km || '-' || to_km,
               'geometry', ST_AsGeoJSON(ST_ForcePolygonCCW(g), 6)::json,
               'properties', json_build_object(
                   'segment', code, 'from_km', from_km, 'to_km', to_km,
                   'count', (p ->> 'count')::bigint, 'share', (p ->> 'share')::float8)
           )::text, ',' ORDER BY code, ord), '')
      FROM shown
    """
)


def parse_bands(text_: str) -> tuple[float, ...]:
    """Band edges in km: 2-10 ascending numbers from 0 up to 200 (InvalidInput otherwise)."""
    parts = [p.strip() for p in text_.split(",")]
    try:
        edges = tuple(float(p) for p in parts)
    except ValueError as exc:
        raise InvalidInput(
            f"bands must be numbers (km), e.g. 0,5,20,50: '{text_}'", field="bands"
        ) from exc
    if not MIN_BANDS <= len(edges) <= MAX_BANDS:
        raise InvalidInput(
            f"bands needs {MIN_BANDS} to {MAX_BANDS} values; got {len(edges)}", field="bands"
        )
    if not all(math.isfinite(e) and 0 <= e <= MAX_KM for e in edges):
        raise InvalidInput(f"band edges must be between 0 and {MAX_KM:g} km", field="bands")
    if edges[0] != 0:
        raise InvalidInput("the first band edge must be 0 (the border itself)", field="bands")
    if any(b <= a for a, b in pairwise(edges)):
        raise InvalidInput("band edges must be strictly ascending", field="bands")
    return edges


async def segment_codes(*, session: AsyncSession) -> list[str]:
    """The loaded border segments' codes, sorted."""
    rows = await session.execute(select(BorderSegment.code).order_by(BorderSegment.code))
    return list(rows.scalars())


async def check_segment(*, session: AsyncSession, segment: str) -> list[str]:
    """The codes that `segment` (a code or `all`) stands for; InvalidInput listing the known."""
    known = await segment_codes(session=session)
    if segment == ALL:
        return known
    if segment not in known:
        raise InvalidInput(
            f"unknown border segment '{segment[:40]}'; known: {', '.join([*known, ALL])}",
            field="segment",
            allowed=[*known, ALL],
        )
    return [segment]


async def border_zone(
    *,
    session: AsyncSession,
    filt: IncidentFilter,
    segment: str,
    bands: tuple[float, ...],
    home: str,
    simplify_m: float | None = None,
) -> bytes:
    """One Feature per (segment, band) with count and share of the matching incidents."""
    codes = await check_segment(session=session, segment=segment)
    i = Incident
    band = func.width_bucket(i.border_distance_km, cast(literal(list(bands)), ARRAY(Float)))
    matching = (
        select(
            i.border_segment.label("segment"),
            (i.country_code == home).label("home"),
            band.label("band"),
        )
        .where(*filt.conditions())
        .subquery()
    )
    m = matching.c
    rows = await session.execute(
        select(m.segment, m.home, m.band, func.count()).group_by(m.segment, m.home, m.band)
    )
    counts: dict[str, dict[int, int]] = {c: {} for c in codes}
    total = 0
    for seg, at_home, k, n in rows:
        total += int(n)
        # width_bucket: k-th band for edges[k-1] <= d < edges[k]; 0 below, len(edges) above
        if at_home and seg in counts and k is not None and 1 <= k < len(bands):
            counts[seg][int(k)] = int(n)
    props = {
        c: {
            str(k): {"count": counts[c].get(k, 0), "share": _share(counts[c].get(k, 0), total)}
            for k in range(1, len(bands))
        }
        for c in codes
    }
    features = (
        await session.execute(
            BANDS_SQL,
            {
                "home": home,
                "bands": list(bands),
                "codes": codes,
                "tolerance_deg": spatial.tolerance_degrees(simplify_m or 0),
                "props": orjson.dumps(props).decode(),
            },
        )
    ).scalar_one()
    head = {
        "type": "FeatureCollection",
        "segment": segment,
        "bands": list(bands),
        "home_country": home,
        "scope": filt.scope.name,
        "total": total,
    }
    return orjson.dumps(head)[:-1] + b',"features":[' + str(features).encode() + b"]}"


def _share(n: int, total: int) -> float | None:
    return n / total if total else None


async def border_posts(
    *, session: AsyncSession, filt: IncidentFilter, zone_km: float, home: str
) -> bytes:
    """Every border post in force today (and a closed one that has matching incidents) with the
    matching incidents in its area (nearest post, on the home side, within zone_km of the
    border), by category; busiest first. `area_count`: the matching incidents inside the post's
    area of responsibility (app/posts/areas.py; drawn, imported or generated; null for a post
    without an area or no longer in force), whatever their distance to the border."""
    i = Incident
    per_category = (
        select(i.nearest_post_id.label("post_id"), i.category, func.count().label("n"))
        .where(
            *filt.conditions(),
            i.country_code == home,
            i.border_distance_km <= zone_km,
            i.nearest_post_id.is_not(None),
        )
        .group_by(i.nearest_post_id, i.category)
        .subquery()
    )
    c = per_category.c
    per_post = (
        select(
            c.post_id,
            cast(func.sum(c.n), BigInteger).label("n"),
            func.jsonb_object_agg(c.category, c.n, type_=JSONB).label("by_category"),
        )
        .group_by(c.post_id)
        .subquery()
    )
    p = BorderPost
    count = func.coalesce(per_post.c.n, 0)
    live = posts_in_force(p)
    in_area = (
        select(func.count())
        .select_from(i)
        .where(*filt.conditions(), func.ST_Intersects(p.area, i.geom))
        .correlate(p)
        .scalar_subquery()
    )
    f = geojson.feature(
        id_=p.code,
        geom=p.geom,
        properties={
            "code": p.code,
            "name": p.name,
            "name_local": p.name_local,
            "kind": p.kind,
            "border": p.border,
            "province_code": p.province_code,
            "province": todays_province(p),
            "count": count,
            "by_category": func.coalesce(per_post.c.by_category, cast(literal("{}"), JSONB)),
            "area_count": case((and_(live, p.area.is_not(None)), in_area), else_=None),
            "in_force": live,
        },
    )
    stmt = (
        select(f.label("f"), func.row_number().over(order_by=(count.desc(), p.code)).label("ord"))
        .outerjoin(per_post, per_post.c.post_id == p.id)
        .where(or_(live, per_post.c.n.is_not(None)))
    )
    return await geojson.collection(session, stmt)
