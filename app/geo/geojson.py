"""GeoJSON built inside PostgreSQL: Features as json, collections as one text value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.responses import Response
from sqlalchemy import JSON, ColumnElement, Numeric, Select, Text, cast, func, literal, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

GEOJSON = "application/geo+json"
COORD_DECIMALS = 6  # ~0.1 m, finer than any source we hold
METRES_PER_DEGREE = 111_320.0  # at the equator: converts a map tolerance to degrees, not a distance


# A column or an ORM attribute: anything usable as an SQL expression.
Expr = ColumnElement[Any] | QueryableAttribute[Any]

# OpenAPI: the response is GeoJSON bytes made by PostgreSQL.
DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/geo+json": {}}, "description": "GeoJSON (RFC 7946)"}
}


class GeoJSONResponse(Response):
    """Bytes produced by PostgreSQL, passed through as application/geo+json."""

    media_type = GEOJSON


def geometry_json(geom: Expr) -> ColumnElement[Any]:
    """RFC 7946 geometry: lon/lat, polygons counter-clockwise, 6 decimals."""
    return cast(func.ST_AsGeoJSON(func.ST_ForcePolygonCCW(geom), COORD_DECIMALS), JSON)


def feature(*, id_: Expr, geom: Expr, properties: Mapping[str, Any]) -> ColumnElement[Any]:
    """A json Feature expression."""
    pairs: list[Any] = []
    for key, value in properties.items():
        pairs += [literal(key), value]
    return func.json_build_object(
        literal("type"),
        literal("Feature"),
        literal("id"),
        id_,
        literal("geometry"),
        geometry_json(geom),
        literal("properties"),
        func.json_build_object(*pairs),
    )


def rounded(value: Expr, digits: int) -> ColumnElement[Any]:
    """A float rounded in SQL, so the JSON carries no false precision."""
    return func.round(cast(value, Numeric), digits)


async def collection(
    session: AsyncSession, stmt: Select[Any], *, order_by: ColumnElement[Any] | None = None
) -> bytes:
    """Run `stmt` (columns: `f` a Feature, `ord` the sort key) and return a FeatureCollection."""
    sub = stmt.subquery()
    features = func.string_agg(cast(sub.c.f, Text), aggregate_order_by(literal(","), sub.c.ord))
    body = select(
        literal('{"type":"FeatureCollection","features":[')
        + func.coalesce(features, literal(""))
        + literal("]}")
    )
    value = (await session.execute(body)).scalar_one()
    return str(value).encode()


async def single(session: AsyncSession, stmt: Select[Any]) -> bytes | None:
    """Run `stmt` (one column, a Feature) and return its bytes, or None when there is no row."""
    value = (await session.execute(select(cast(stmt.subquery().c.f, Text)))).scalar()
    return None if value is None else str(value).encode()


def simplified(geom: Expr, tolerance_m: float | None) -> Expr:
    """The geometry simplified for drawing (tolerance given in metres, applied in degrees)."""
    if not tolerance_m:
        return geom
    return func.ST_Multi(func.ST_SimplifyPreserveTopology(geom, tolerance_m / METRES_PER_DEGREE))
