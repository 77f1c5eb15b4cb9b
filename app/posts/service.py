"""Border posts: listing and loading (changes through the service: app/posts/manage.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, any_, func, literal, select, text, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.geo import geojson, spatial
from app.jurisdictions import eras
from app.jurisdictions.models import Jurisdiction, JurisdictionPiece
from app.posts.models import BorderPost, PostKind


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


def in_force(post: Any, on: Any = None) -> ColumnElement[bool]:
    """SQL: the post is in force on `on` (a date or a bound date; default today in Vietnam):
    valid_from <= day < valid_to (NULL: unbounded)."""
    return eras.in_force(post, eras.today() if on is None else on)


async def gate_positions(*, session: AsyncSession, country: str) -> list[tuple[float, float]]:
    """(lon, lat) of the border gates of `country` in force today, by code."""
    p = BorderPost
    rows = await session.execute(
        select(func.ST_X(p.geom), func.ST_Y(p.geom))
        .join(PostKind, PostKind.code == p.kind)
        .where(PostKind.gate, p.country == country, in_force(p))
        .order_by(p.code)
    )
    return [(float(lon), float(lat)) for lon, lat in rows.all()]


def managed_properties() -> dict[str, Any]:
    """The properties managed through the service since migration 0023 (GET /border-posts
    and /border-posts/{code}, not the OGC collection, whose queryables stay as they were)."""
    p = BorderPost
    counterpart = aliased(BorderPost)
    kind = aliased(PostKind)
    return {
        "kind_name": select(kind.name_vi).where(kind.code == p.kind).scalar_subquery(),
        "kind_name_en": select(kind.name_en).where(kind.code == p.kind).scalar_subquery(),
        "country": p.country,
        "counterpart_country": p.counterpart_country,
        "counterpart_post": select(counterpart.code)
        .where(counterpart.id == p.counterpart_post_id)
        .scalar_subquery(),
        "opening_status": p.opening_status,
        "opening_hours": p.opening_hours,
        "valid_from": p.valid_from,
        "valid_to": p.valid_to,
        "in_force": in_force(p),
        "area_source": p.area_source,
        "area_km": p.area_km,
        "version": p.version,
        "updated_at": p.updated_at,
        "updated_by": p.updated_by,
    }


async def list_features(
    *,
    session: AsyncSession,
    kind: str | None = None,
    border: str | None = None,
    province: str | None = None,
    on: Any = None,
    closed: bool = False,
) -> bytes:
    """Border posts as a FeatureCollection, by border then name: those in force on `on`
    (default today), or every post ever recorded with `closed`."""
    p = BorderPost
    f = geojson.feature(id_=p.code, geom=p.geom, properties=properties() | managed_properties())
    stmt = select(f.label("f"), func.row_number().over(order_by=(p.border, p.name)).label("ord"))
    stmt = stmt.where(true() if closed else in_force(p, on))
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
        .where(in_force(p))
        .order_by(func.geography(p.geom).op("<->")(here))
        .limit(k * 2 + 4)
        .subquery()
    )
    top = select(candidates).order_by(candidates.c.d, candidates.c.code).limit(k).subquery()
    f = geojson.feature(
        id_=p.code,
        geom=p.geom,
        properties=properties()
        | managed_properties()
        | {"distance_m": geojson.rounded(top.c.d, 1)},
    )
    order = func.row_number().over(order_by=(top.c.d, top.c.code))
    stmt = select(f.label("f"), order.label("ord")).select_from(top).join(p, p.id == top.c.id)
    return await geojson.collection(session, stmt)


async def upsert(*, session: AsyncSession, records: list[PostRecord], actor: str = "load") -> int:
    """Insert or update posts by code (a load of the bundled list or an operator's file);
    returns how many were written. A post whose values do not change is not touched; one that
    does gets a new version (and, by the trigger, a history row). A post last written by
    someone else than `actor` (changed or closed through the API or `borderwatch posts`) is
    never overwritten: what a unit recorded outlives a reload of the bundled list (its own
    import, `borderwatch posts import`, is the way to change it in bulk). Generated areas are
    made again afterwards (app/posts/areas.py)."""
    from app.posts.areas import forget_zones, generate  # areas reads this module's helpers

    await session.execute(
        select(
            func.set_config("borderwatch.actor", literal(actor), True),
            func.set_config("borderwatch.action", literal("load"), True),
        )
    )
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
        stmt = insert(BorderPost).values(**values, created_by=actor, updated_by=actor)
        new = stmt.excluded
        changed = [k for k in values if k not in ("code", "geom")]
        stmt = stmt.on_conflict_do_update(
            index_elements=[BorderPost.code],
            set_={k: new[k] for k in values if k != "code"}
            | {
                "version": BorderPost.version + 1,
                "updated_by": new.updated_by,
                "updated_at": func.now(),
            },
            where=(BorderPost.updated_by == actor)
            & (
                func.row(*(getattr(BorderPost, k) for k in changed)).is_distinct_from(
                    func.row(*(new[k] for k in changed))
                )
                | ~func.ST_Equals(BorderPost.geom, new.geom)
            ),
        )
        await session.execute(stmt)
    await forget_zones(session=session)  # a load may come with new boundaries
    await generate(session=session)
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
