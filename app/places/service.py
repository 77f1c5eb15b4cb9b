"""Place search: the provinces and communes of both eras and the border posts, found by name
whatever the accents and the case, ranked, each a Feature with its extent.

Matching reads `search_key` (migration 0011): every name a person may type, folded by the
database function `place_fold` ('Phường Hà Tiên' → '|phuong ha tien|ha tien|ha tien ward|').
The query is folded by the same function, so both sides agree by construction. ~3 500 keys
scanned with LIKE take ~1 ms: no index (docs/decisions.md).
"""

from __future__ import annotations

import functools
import typing
import unicodedata
from datetime import date
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Date,
    Float,
    Integer,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app import i18n
from app.errors import InvalidInput
from app.geo import geojson, spatial
from app.geo.spatial import BBox
from app.jurisdictions import eras
from app.jurisdictions.models import Jurisdiction
from app.posts.models import BorderPost
from app.posts.service import todays_province

Level = Literal["province", "commune", "border_post"]
LEVELS: tuple[Level, ...] = ("province", "commune", "border_post")  # also the order of ranking
# how a name matched, best first: the whole name, its start, the start of one of its words,
# anywhere in it
MATCHES = ("exact", "prefix", "word_prefix", "substring")
MAX_Q = 100
MAX_LIMIT = 50


async def fold(session: AsyncSession, q: str) -> str:
    """The query as `search_key` holds names (place_fold); InvalidInput when nothing of it is
    left (no Latin letter or digit: '   ', '-', '中国')."""
    folded = (
        await session.execute(select(func.place_fold(unicodedata.normalize("NFC", q))))
    ).scalar_one()
    if not folded:
        raise InvalidInput(
            "q needs a letter or a digit: a name with or without Vietnamese accents,"
            " e.g. 'Hà Tiên' or 'ha tien'",
            field="q",
        )
    return str(folded)


# the statement's parameters (one statement per language, level and with or without a box,
# built once: building it costs far more than running it)
# eras.in_force compares with a date: a bound parameter compares the same way in SQL
TODAY = typing.cast(date, bindparam("today", type_=Date))
K_EXACT, K_PREFIX, K_WORD, K_ANY = (
    bindparam(name, type_=Text) for name in ("k_exact", "k_prefix", "k_word", "k_any")
)
LIMIT = bindparam("limit", type_=Integer)
BOX = tuple(bindparam(name, type_=Float) for name in ("west", "south", "east", "north"))


def _rank(key: Any) -> ColumnElement[int]:
    """SQL: how `key` matches the folded query (an index into MATCHES)."""
    return case(
        (key.like(K_EXACT), 0),
        (key.like(K_PREFIX), 1),
        (key.like(K_WORD), 2),
        else_=3,
    )


def _patterns(k: str) -> dict[str, str]:
    """The LIKE patterns of the folded query `k` (a-z, 0-9 and single spaces only: no
    wildcard, no '|'): the whole of one name, its start, a word's start, anywhere."""
    return {"k_exact": f"%|{k}|%", "k_prefix": f"%|{k}%", "k_word": f"% {k}%", "k_any": f"%{k}%"}


def _extent(geom: Any) -> ColumnElement[Any]:
    return func.json_build_array(
        func.ST_XMin(geom), func.ST_YMin(geom), func.ST_XMax(geom), func.ST_YMax(geom)
    )


def _feature(*, id_: Any, geom: Any, point: Any, properties: dict[str, Any]) -> ColumnElement[Any]:
    """A Feature whose geometry is the place's point (label point) and whose `bbox` is the
    extent of its whole geometry (as Nominatim's GeoJSON: enough to fly to it)."""
    pairs: list[Any] = []
    for key, value in properties.items():
        pairs += [literal(key), value]
    return func.json_build_object(
        literal("type"),
        literal("Feature"),
        literal("id"),
        id_,
        literal("bbox"),
        _extent(geom),
        literal("geometry"),
        geojson.geometry_json(point),
        literal("properties"),
        func.json_build_object(*pairs),
    )


def _successors(j: Any, lang: i18n.Lang) -> ColumnElement[Any]:
    """SQL: today's provinces formed from `j` (a former unit), as a json array."""
    n = aliased(Jurisdiction)
    item = func.json_build_object(
        literal("code"),
        n.code,
        literal("name"),
        n.name,
        literal("name_local"),
        n.name_local,
        literal("display_name"),
        i18n.display_name(n, lang),
    )
    return (
        select(func.json_agg(aggregate_order_by(item, n.code)))
        .where(j.code == any_(n.formed_from), eras.in_force(n, TODAY))
        .scalar_subquery()
    )


def _parent_name(code: Any, lang: i18n.Lang) -> ColumnElement[Any]:
    """SQL: the display name of the newest unit with this code."""
    pj = aliased(Jurisdiction)
    return (
        select(i18n.display_name(pj, lang))
        .where(pj.code == code)
        .order_by(pj.valid_from.desc().nulls_last())
        .limit(1)
        .scalar_subquery()
    )


def _ranked(level: Level | None, with_bbox: bool) -> Select[Any]:
    """The matching places, best first, at most LIMIT: (src, id, rank, ord). Names and codes
    sort byte-wise (COLLATE "C"): the same order whatever the database's collation."""
    j, p = Jurisdiction, BorderPost
    envelope = func.ST_MakeEnvelope(*BOX, spatial.SRID_WGS84)
    arms = []
    unit_levels = [lv for lv in ("province", "commune") if level in (None, lv)]
    if unit_levels:
        units = select(
            literal("unit").label("src"),
            j.id.label("id"),
            _rank(j.search_key).label("rank"),
            case((eras.in_force(j, TODAY), 0), else_=1).label("era"),
            case((j.level == "province", 0), else_=1).label("lvl"),
            func.split_part(j.search_key, "|", 3).collate("C").label("sort"),
            j.code.collate("C").label("code"),
        ).where(j.level.in_(unit_levels), j.search_key.like(K_ANY))
        if with_bbox:
            units = units.where(j.geom.op("&&")(envelope), func.ST_Intersects(j.geom, envelope))
        arms.append(units)
    if level in (None, "border_post"):
        posts = select(
            literal("post").label("src"),
            p.id.label("id"),
            _rank(p.search_key).label("rank"),
            # a closed post after the posts in force, as a former unit after today's
            case((eras.in_force(p, TODAY), 0), else_=1).label("era"),
            literal(2).label("lvl"),
            func.split_part(p.search_key, "|", 3).collate("C").label("sort"),
            p.code.collate("C").label("code"),
        ).where(p.search_key.like(K_ANY))
        if with_bbox:
            posts = posts.where(p.geom.op("&&")(envelope))
        arms.append(posts)
    found = union_all(*arms).subquery()
    order = (found.c.rank, found.c.era, found.c.lvl, found.c.sort, found.c.code)
    return (
        select(
            found.c.src,
            found.c.id,
            found.c.rank,
            func.row_number().over(order_by=order).label("ord"),
        )
        .order_by(*order)
        .limit(LIMIT)
    )


@functools.lru_cache(maxsize=32)
def _statement(lang: i18n.Lang, level: Level | None, with_bbox: bool) -> Select[Any]:
    """The whole search as one statement answering the FeatureCollection's text."""
    top = _ranked(level, with_bbox).cte("top")  # read by both arms below: computed once
    match = case({i: literal(m) for i, m in enumerate(MATCHES)}, value=top.c.rank)
    j, p = Jurisdiction, BorderPost
    current = eras.in_force(j, TODAY)
    unit_feature = _feature(
        id_=j.code,
        geom=j.geom,
        point=func.coalesce(j.official_centroid, func.ST_PointOnSurface(j.geom)),
        properties={
            "code": j.code,
            "name": j.name,
            "name_local": j.name_local,
            "display_name": i18n.display_name(j, lang),
            "level": j.level,
            "type_local": j.type_local,
            "official_code": j.official_code,
            "country": j.country,
            "valid_from": j.valid_from,
            "valid_to": j.valid_to,
            "current": current,
            "parent_code": j.parent_code,
            "parent": _parent_name(j.parent_code, lang),
            "became": case((current, null()), else_=_successors(j, lang)),
            "geometry_approximate": j.geometry_approximate,
            "match": match,
        },
    )
    province = todays_province(p, TODAY)
    post_feature = _feature(
        id_=p.code,
        geom=p.geom,
        point=p.geom,
        properties={
            "code": p.code,
            "name": p.name,
            "name_local": p.name_local,
            "display_name": i18n.post_display_name(p, lang),
            "level": literal("border_post"),
            "type_local": null(),
            "kind": p.kind,
            "agency": p.agency,
            "country": literal("VNM"),
            "valid_from": null(),
            "valid_to": null(),
            "current": true(),
            "parent_code": province,
            "parent": _parent_name(province, lang),
            "became": null(),
            "geometry_approximate": null(),
            "position_approximate": p.position_approximate,
            "match": match,
        },
    )
    rows = union_all(
        select(unit_feature.label("f"), top.c.ord)
        .select_from(top)
        .join(j, and_(top.c.src == "unit", j.id == top.c.id)),
        select(post_feature.label("f"), top.c.ord)
        .select_from(top)
        .join(p, and_(top.c.src == "post", p.id == top.c.id)),
    ).subquery()
    # as geojson.collection, with the parameters bound at execution
    features = func.string_agg(cast(rows.c.f, Text), aggregate_order_by(literal(","), rows.c.ord))
    return select(
        literal('{"type":"FeatureCollection","features":[')
        + func.coalesce(features, literal(""))
        + literal("]}")
    )


async def search(
    *,
    session: AsyncSession,
    q: str,
    limit: int = 10,
    bbox: BBox | None = None,
    level: Level | None = None,
    lang: i18n.Lang = i18n.DEFAULT,
) -> bytes:
    """The places whose name matches `q`, at most `limit`, as a FeatureCollection: best match
    first (MATCHES), then today's units before former ones, then provinces, communes, posts,
    then by name. `bbox` keeps those whose geometry meets the box; `level` one kind. A former
    unit's `became` lists today's provinces formed from it."""
    k = await fold(session, q)
    params: dict[str, Any] = {"today": eras.today(), "limit": limit, **_patterns(k)}
    if bbox is not None:
        params |= dict(zip(("west", "south", "east", "north"), bbox, strict=True))
    stmt = _statement(lang, level, bbox is not None)
    value = (await session.execute(stmt, params)).scalar_one()
    return str(value).encode()
