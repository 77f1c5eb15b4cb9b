"""Jurisdiction queries (with the incidents in each neighbour and in the zone two neighbours
share) and the adjacency derivation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app import i18n
from app.analysis.cache import VersionedCache
from app.errors import NotFound
from app.geo import geojson, spatial
from app.incidents.filters import IncidentFilter, in_jurisdiction
from app.incidents.models import Incident
from app.incidents.service import feature_expr
from app.jurisdictions import eras
from app.jurisdictions.models import Jurisdiction, JurisdictionAdjacency, JurisdictionPiece
from app.tiles import versions

# A pair separated by a gap (river channel, estuary) counts as adjacent only when their
# boundaries face each other over at least this length within (gap + FACING_MARGIN_M): this
# keeps river neighbours and drops corner contacts and coastal near-misses.
FACING_MARGIN_M = 500.0
FACING_MIN_KM = 2.0


def properties(j: Any) -> dict[str, Any]:
    """The properties of a jurisdiction Feature (GET /jurisdictions and the OGC collections),
    for the table or an alias of it."""
    return {
        "code": j.code,
        "name": j.name,
        "name_local": j.name_local,
        "level": j.level,
        "parent_code": j.parent_code,
        "country": j.country,
        "valid_from": j.valid_from,
        "valid_to": j.valid_to,
        "official_code": j.official_code,
        "type_local": j.type_local,
        "formed_from": j.formed_from,
        "geometry_approximate": j.geometry_approximate,
        "source": j.source,
    }


def named_properties(j: Any, lang: i18n.Lang) -> dict[str, Any]:
    """`properties` and `display_name`, the name a reader of `lang` reads."""
    return properties(j) | {"display_name": i18n.display_name(j, lang)}


def _current(code: str) -> ColumnElement[bool]:
    """The newest version of the jurisdiction with this code."""
    newer = aliased(Jurisdiction)
    return and_(
        Jurisdiction.code == code,
        ~exists().where(
            newer.code == Jurisdiction.code,
            func.coalesce(newer.valid_from, text("'-infinity'::date"))
            > func.coalesce(Jurisdiction.valid_from, text("'-infinity'::date")),
        ),
    )


# Lists kept per version of the boundaries (the `jurisdictions` counter moves with every load
# or edit) and their parameters: the dashboard reads the country outlines (265 kB simplified,
# 0.35-0.7 s to make at every opening, docs/performance.md) before it makes its map.
LISTS: VersionedCache[bytes] = VersionedCache(size=32)
# Tests, whose transactions write and roll back, may set this: their own writes are then named
# by the counter they read (the jurisdictions' counter moves at each statement).
TRUST_OWN_WRITES = False


async def list_features(
    *,
    session: AsyncSession,
    level: str | None = None,
    parent: str | None = None,
    country: str | None = None,
    at: date | None = None,
    simplify_m: float | None = None,
    lang: i18n.Lang = i18n.DEFAULT,
) -> bytes:
    """The jurisdictions in force on `at` (default: today) as a FeatureCollection, coarse
    levels first, then by code; made once per version of the boundaries and parameters."""
    day = at or eras.today()

    async def make() -> bytes:
        return await _list_features(
            session=session, level=level, parent=parent, country=country, at=day,
            simplify_m=simplify_m, lang=lang,
        )  # fmt: skip

    stamp, writing = await versions.read_layer_stamp(session=session, layer="jurisdictions")
    if writing and not TRUST_OWN_WRITES:  # it may see changes no committed counter names
        return await make()
    return await LISTS.get((stamp, level, parent, country, day, simplify_m, lang), make)


async def _list_features(
    *,
    session: AsyncSession,
    level: str | None,
    parent: str | None,
    country: str | None,
    at: date,
    simplify_m: float | None,
    lang: i18n.Lang,
) -> bytes:
    j = Jurisdiction
    f = geojson.feature(
        id_=j.code,
        geom=geojson.simplified(j.geom, simplify_m),
        properties=named_properties(j, lang),
    )
    rank = func.array_position(
        text("ARRAY['country','province','district','commune']::text[]"), j.level
    )
    stmt = select(f.label("f"), func.row_number().over(order_by=(rank, j.code)).label("ord"))
    stmt = stmt.where(eras.in_force(j, at))
    if level:
        stmt = stmt.where(j.level == level)
    if parent:
        stmt = stmt.where(j.parent_code == parent)
    if country:
        stmt = stmt.where(j.country == country)
    return await geojson.collection(session, stmt)


async def get_feature(
    *,
    session: AsyncSession,
    code: str,
    simplify_m: float | None = None,
    lang: i18n.Lang = i18n.DEFAULT,
) -> bytes:
    """One jurisdiction as a Feature; NotFound when the code is unknown."""
    j = Jurisdiction
    f = geojson.feature(
        id_=j.code,
        geom=geojson.simplified(j.geom, simplify_m),
        properties=named_properties(j, lang),
    )
    body = await geojson.single(session, select(f.label("f")).where(_current(code)))
    if body is None:
        raise NotFound(f"no jurisdiction with code '{code}'", code=code)
    return body


async def get_id(*, session: AsyncSession, code: str) -> int:
    """The id of the current jurisdiction with this code; NotFound when unknown."""
    found = (await session.execute(select(Jurisdiction.id).where(_current(code)))).scalar()
    if found is None:
        raise NotFound(f"no jurisdiction with code '{code}'", code=code)
    return int(found)


async def neighbours_features(
    *,
    session: AsyncSession,
    code: str,
    simplify_m: float | None = None,
    counts: dict[str, int] | None = None,
    lang: i18n.Lang = i18n.DEFAULT,
) -> bytes:
    """The neighbours of a jurisdiction with shared length, contact and gap, longest first
    (and `incident_count` per neighbour when counts are given)."""
    a_id = await get_id(session=session, code=code)
    b = aliased(Jurisdiction)
    adj = JurisdictionAdjacency
    props = named_properties(b, lang) | {
        "shared_km": geojson.rounded(adj.shared_km, 2),
        "touches": adj.touches,
        "gap_m": geojson.rounded(adj.gap_m, 0),
        "adjacency_method": adj.method,
        "adjacency_note": adj.note,
    }
    if counts is not None:
        table = literal(counts, JSONB)
        props["incident_count"] = func.coalesce(table[b.code].as_integer(), 0)
    f = geojson.feature(id_=b.code, geom=geojson.simplified(b.geom, simplify_m), properties=props)
    stmt = (
        select(
            f.label("f"),
            func.row_number().over(order_by=(adj.shared_km.desc(), b.code)).label("ord"),
        )
        .select_from(adj)
        .join(b, b.id == adj.b_id)
        .where(adj.a_id == a_id)
    )
    return await geojson.collection(session, stmt)


async def neighbour_counts(
    *, session: AsyncSession, code: str, filt: IncidentFilter
) -> dict[str, int]:
    """Matching incidents in each neighbour of `code` (within the caller's scope)."""
    a_id = await get_id(session=session, code=code)
    codes = (
        await session.execute(
            text(
                "SELECT b.code FROM jurisdiction_adjacency x JOIN jurisdiction b ON b.id = x.b_id"
                " WHERE x.a_id = :a"
            ),
            {"a": a_id},
        )
    ).scalars()
    out: dict[str, int] = {}
    for neighbour in codes:
        n = await session.execute(
            select(func.count())
            .select_from(Incident)
            .where(*filt.conditions(), in_jurisdiction(neighbour))
        )
        out[neighbour] = int(n.scalar_one())
    return out


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
    lang: i18n.Lang = i18n.DEFAULT,
) -> bytes:
    """Incidents within `km` of the boundary a and b share (either side), nearest the line
    first (at most `limit` of them; `numberMatched` counts all), and the line itself."""
    a_id = await get_id(session=session, code=a)
    b_id = await get_id(session=session, code=b)
    line = (await session.execute(LINE_SQL, {"a": a_id, "b": b_id})).one_or_none()
    if line is None:
        raise NotFound(f"{a} and {b} are not neighbours", a=a, b=b)
    shared = func.ST_GeomFromWKB(literal(bytes(line.wkb)), spatial.SRID_WGS84)
    geog = func.geography(shared)
    here = func.geography(Incident.geom)
    distance = func.ST_Distance(here, geog)
    which = case((in_jurisdiction(a), literal(a)), else_=literal(b))
    radius_m = km * 1000
    inside = (
        *filt.conditions(),
        in_jurisdiction(a) | in_jurisdiction(b),
        spatial.may_be_within_metres(Incident.geom, shared, radius_m),
        spatial.within_metres_of(Incident.geom, shared, radius_m),
    )
    chosen = select(Incident, distance.label("d"), which.label("side")).where(*inside)
    if limit is not None:
        chosen = chosen.order_by(distance, Incident.id).limit(limit)
    near = chosen.subquery("near")
    extra = {"side": near.c.side, "distance_to_shared_m": geojson.rounded(near.c.d, 1)}
    f, from_ = feature_expr(lang, extra, near)
    rows = select(cast(f, Text).label("f"), near.c.d, near.c.id).select_from(from_).subquery()
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


@dataclass(frozen=True)
class AdjacencyCorrection:
    """An explicit, evidenced correction to the computed adjacency."""

    a: str
    b: str
    action: str  # "add" | "remove"
    evidence: str


def _facing(a: str, b: str, reach_m: str, reach_deg: str) -> str:
    """SQL: km of boundary that faces the other side within reach_m (mean of both sides).

    Each boundary segment near the other polygon is clipped to a geodesic buffer of the
    nearby part of the other boundary, so a corner contact measures only its true length."""
    one_way = """
        (SELECT coalesce(sum(ST_Length(ST_Intersection(d.geom, ST_Buffer(
                    ST_ClipByBox2D(ST_Boundary({o}), ST_Expand(d.geom, {deg}))::geography,
                    {m})::geometry)::geography)), 0)
           FROM ST_DumpSegments(ST_Boundary({s})) d
          WHERE d.geom && ST_Expand({o}, {deg})
            AND ST_DWithin(d.geom::geography, {o}::geography, {m}))
    """
    forth = one_way.format(s=a, o=b, m=reach_m, deg=reach_deg)
    back = one_way.format(s=b, o=a, m=reach_m, deg=reach_deg)
    return f"(({forth}) + ({back})) / 2000.0"


def _pair_degrees(a: str, b: str, metres: str) -> str:
    """SQL: a planar reach in degrees that surely covers `metres` on the ground around either
    of two neighbours."""
    return (
        f"greatest({spatial.outer_degrees_sql(a, metres)}, {spatial.outer_degrees_sql(b, metres)})"
    )


DERIVE_SQL = text(
    """
    WITH cand AS (
        -- geometry prefilters (degrees, generous) before any geodesic measurement
        SELECT a.id AS a_id, b.id AS b_id, a.geom AS ag, b.geom AS bg,
               ST_Intersects(a.geom, b.geom) AS touches
          FROM jurisdiction a
          JOIN jurisdiction b
            ON a.id < b.id AND a.level = b.level
           -- neighbours of the same era: their periods of validity overlap
           AND coalesce(a.valid_from, '-infinity'::date) < coalesce(b.valid_to, 'infinity'::date)
           AND coalesce(b.valid_from, '-infinity'::date) < coalesce(a.valid_to, 'infinity'::date)
           AND (CAST(:only AS text[]) IS NULL OR a.code = ANY(CAST(:only AS text[]))
                OR b.code = ANY(CAST(:only AS text[])))
           AND a.geom && ST_Expand(b.geom, {gap_deg})
           AND ST_DWithin(a.geom, b.geom, {gap_deg})
    ), near AS (
        SELECT c.*, CASE WHEN touches THEN 0
                    ELSE ST_Distance(ag::geography, bg::geography) END AS gap_m
          FROM cand c
    ), measured AS (
        SELECT a_id, b_id, ag, bg, touches, gap_m,
               gap_m + CAST(:margin_m AS float8) AS reach_m,
               {measured_deg} AS reach_deg,
               ST_Length(ST_CollectionExtract(
                   ST_Intersection(ST_Boundary(ag), ST_Boundary(bg)), 2)::geography) / 1000.0
                   AS line_km
          FROM near
         WHERE gap_m <= CAST(:gap_m AS float8)
    ), facing AS (
        SELECT m.*,
               CASE WHEN line_km > 0 THEN line_km
                    ELSE {facing} END AS shared_km
          FROM measured m
    ), kept AS (
        SELECT a_id, b_id, shared_km, touches, gap_m,
               CASE WHEN line_km > 0 THEN 'shared_line' ELSE 'gap' END AS method
          FROM facing
         WHERE line_km > 0 OR shared_km >= CAST(:facing_min_km AS float8)
    )
    INSERT INTO jurisdiction_adjacency (a_id, b_id, shared_km, touches, gap_m, method)
    SELECT a_id, b_id, shared_km, touches, gap_m, method FROM kept
    UNION ALL
    SELECT b_id, a_id, shared_km, touches, gap_m, method FROM kept
    """.format(
        gap_deg=spatial.outer_degrees_sql("b.geom", "CAST(:gap_m AS float8)"),
        measured_deg=_pair_degrees("ag", "bg", "gap_m + CAST(:margin_m AS float8)"),
        facing=_facing("m.ag", "m.bg", "m.reach_m", "m.reach_deg"),
    )
)

CORRECTION_SQL = text(
    """
    WITH pair AS (
        SELECT a.id AS a_id, b.id AS b_id, a.geom AS ag, b.geom AS bg,
               ST_Intersects(a.geom, b.geom) AS touches,
               ST_Distance(a.geom::geography, b.geom::geography) AS gap_m
          FROM jurisdiction a, jurisdiction b
         WHERE a.id = :a_id AND b.id = :b_id
    ), reach AS (
        SELECT p.*, gap_m + CAST(:reach_m AS float8) AS reach_m,
               {reach_deg} AS reach_deg
          FROM pair p
    ), measured AS (
        SELECT r.*, {facing} AS shared_km FROM reach r
    )
    INSERT INTO jurisdiction_adjacency (a_id, b_id, shared_km, touches, gap_m, method, note)
    SELECT a_id, b_id, shared_km, touches, gap_m, 'correction', :note FROM measured
    UNION ALL
    SELECT b_id, a_id, shared_km, touches, gap_m, 'correction', :note FROM measured
    ON CONFLICT (a_id, b_id) DO UPDATE SET method = 'correction', note = EXCLUDED.note
    """.format(
        reach_deg=_pair_degrees("ag", "bg", "gap_m + CAST(:reach_m AS float8)"),
        facing=_facing("r.ag", "r.bg", "r.reach_m", "r.reach_deg"),
    )
)


async def derive_adjacency(
    *,
    session: AsyncSession,
    gap_m: float,
    corrections: list[AdjacencyCorrection],
    only: list[str] | None = None,
) -> tuple[int, list[str]]:
    """Recompute adjacency from geometry, then corrections; returns (pairs, skipped). With
    `only` (codes), just the pairs that involve one of them (the rest is kept)."""
    stale = delete(JurisdictionAdjacency)
    if only is not None:
        ids = select(Jurisdiction.id).where(Jurisdiction.code.in_(only))
        stale = stale.where(
            JurisdictionAdjacency.a_id.in_(ids) | JurisdictionAdjacency.b_id.in_(ids)
        )
    await session.execute(stale)
    await session.execute(
        DERIVE_SQL,
        {
            "gap_m": gap_m,
            "margin_m": FACING_MARGIN_M,
            "facing_min_km": FACING_MIN_KM,
            "only": only,
        },
    )
    skipped: list[str] = []
    for c in corrections:
        try:
            a_id = await get_id(session=session, code=c.a)
            b_id = await get_id(session=session, code=c.b)
        except NotFound:
            skipped.append(f"{c.action} {c.a}/{c.b}: code not loaded")
            continue
        if c.action == "remove":
            await session.execute(
                delete(JurisdictionAdjacency).where(
                    ((JurisdictionAdjacency.a_id == a_id) & (JurisdictionAdjacency.b_id == b_id))
                    | ((JurisdictionAdjacency.a_id == b_id) & (JurisdictionAdjacency.b_id == a_id))
                )
            )
        else:
            await session.execute(
                CORRECTION_SQL,
                {
                    "a_id": a_id,
                    "b_id": b_id,
                    "reach_m": FACING_MARGIN_M,
                    "note": c.evidence,
                },
            )
    total = await session.execute(select(func.count()).select_from(JurisdictionAdjacency))
    return int(total.scalar_one()) // 2, skipped


PIECES_SQL = text(
    """
    INSERT INTO jurisdiction_piece (jurisdiction_id, code, level, country, valid_from, valid_to,
                                    geom)
    SELECT j.id, j.code, j.level, j.country, j.valid_from, j.valid_to, d.geom
      FROM jurisdiction j, ST_Subdivide(j.geom, 128) AS s(geom), ST_Dump(s.geom) d
    """
)


async def refresh_pieces(*, session: AsyncSession) -> None:
    """Rebuild the subdivided pieces that incident derivation looks points up in."""
    await session.execute(delete(JurisdictionPiece))
    await session.execute(PIECES_SQL)
