"""Border posts: listing and loading."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, any_, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.geo import geojson, spatial
from app.jurisdictions import eras
from app.jurisdictions.models import Jurisdiction, JurisdictionPiece
from app.posts.models import BorderPost


@dataclass(frozen=True)
class PostRecord:
    """A border post as read from a file."""

    code: str
    name: str
    name_local: str | None
    kind: str
    agency: str
    border: str | None
    province_code: str | None
    counterpart: str | None
    lon: float
    lat: float
    position_approximate: bool
    source: str


def todays_province(post: Any, today: Any = None) -> ColumnElement[Any]:
    """SQL: today's province of a post (`today`: a date or a bound date; default today in
    Vietnam): the one its point lies in, else the one formed from its recorded (former)
    province, else that province's code. The one rule for the list, the border-post analysis
    and place search."""
    day = eras.today() if today is None else today
    piece = JurisdictionPiece
    covering = (
        select(piece.code)
        .where(
            piece.level == "province",
            eras.in_force(piece, day),
            func.ST_Intersects(piece.geom, post.geom),
        )
        .order_by(piece.code)
        .limit(1)
        .correlate(post)
        .scalar_subquery()
    )
    j = aliased(Jurisdiction)
    successor = (
        select(j.code)
        .where(
            j.level == "province",
            post.province_code == any_(j.formed_from),
            eras.in_force(j, day),
        )
        .order_by(j.code)
        .limit(1)
        .correlate(post)
        .scalar_subquery()
    )
    return func.coalesce(covering, successor, post.province_code)


def properties() -> dict[str, Any]:
    """The properties of a border post Feature (GET /border-posts and the OGC collection)."""
    p = BorderPost
    return {
        "code": p.code,
        "name": p.name,
        "name_local": p.name_local,
        "kind": p.kind,
        "agency": p.agency,
        "border": p.border,
        "province_code": p.province_code,
        "province": todays_province(p),
        "counterpart": p.counterpart,
        "position_approximate": p.position_approximate,
        "source": p.source,
    }


async def list_features(
    *,
    session: AsyncSession,
    kind: str | None = None,
    border: str | None = None,
    province: str | None = None,
) -> bytes:
    """Border posts as a FeatureCollection, by border then name."""
    p = BorderPost
    f = geojson.feature(id_=p.code, geom=p.geom, properties=properties())
    stmt = select(f.label("f"), func.row_number().over(order_by=(p.border, p.name)).label("ord"))
    if kind:
        stmt = stmt.where(p.kind == kind)
    if border:
        stmt = stmt.where(p.border == border)
    if province:  # a province of either map: the recorded one, or today's that holds it
        stmt = stmt.where((p.province_code == province) | (todays_province(p) == province))
    return await geojson.collection(session, stmt)


async def nearest(*, session: AsyncSession, lon: float, lat: float, k: int) -> bytes:
    """The k nearest border posts (the Features of list_features) with their geodesic distance
    `distance_m`, nearest first, as a FeatureCollection."""
    p = BorderPost
    here = func.geography(spatial.point(lon, lat))
    distance = func.ST_Distance(func.geography(p.geom), here)
    # the sphere KNN (GiST on geom::geography) picks candidates; the spheroid distance orders
    # them (a few extra rows absorb the sphere/spheroid difference)
    candidates = (
        select(p.id, p.code, distance.label("d"))
        .order_by(func.geography(p.geom).op("<->")(here))
        .limit(k * 2 + 4)
        .subquery()
    )
    top = select(candidates).order_by(candidates.c.d, candidates.c.code).limit(k).subquery()
    f = geojson.feature(
        id_=p.code,
        geom=p.geom,
        properties=properties() | {"distance_m": geojson.rounded(top.c.d, 1)},
    )
    order = func.row_number().over(order_by=(top.c.d, top.c.code))
    stmt = select(f.label("f"), order.label("ord")).select_from(top).join(p, p.id == top.c.id)
    return await geojson.collection(session, stmt)


async def upsert(*, session: AsyncSession, records: list[PostRecord]) -> int:
    """Insert or update posts by code; returns how many were written."""
    for r in records:
        values = {
            "code": r.code,
            "name": r.name,
            "name_local": r.name_local,
            "kind": r.kind,
            "agency": r.agency,
            "border": r.border,
            "province_code": r.province_code,
            "counterpart": r.counterpart,
            "position_approximate": r.position_approximate,
            "geom": spatial.point(r.lon, r.lat),
            "source": r.source,
        }
        stmt = insert(BorderPost).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[BorderPost.code],
            set_={k: stmt.excluded[k] for k in values if k != "code"},
        )
        await session.execute(stmt)
    return len(records)


async def distances_to_border_km(*, session: AsyncSession) -> dict[str, float]:
    """Geodesic distance (km) from each post to the nearest national border segment."""
    rows = await session.execute(
        text(
            """
            SELECT p.code, min(ST_Distance(p.geom::geography, s.geom::geography)) / 1000.0
              FROM border_post p CROSS JOIN border_segment s GROUP BY p.code
            """
        )
    )
    return {code: float(km) for code, km in rows.all()}
