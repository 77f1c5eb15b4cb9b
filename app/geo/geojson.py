"""GeoJSON built inside PostgreSQL: Features as json, collections as one text value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import JSON, ColumnElement, Numeric, Select, Text, cast, func, literal, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from app.geo.spatial import tolerance_degrees

GEOJSON = "application/geo+json"
COORD_DECIMALS = 6  # ~0.1 m, finer than any source we hold


# A column or an ORM attribute: anything usable as an SQL expression.
Expr = ColumnElement[Any] | QueryableAttribute[Any]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nested(depth: int) -> dict[str, Any]:
    """Coordinates: a position (depth 0) or arrays of them `depth` levels deep."""
    schema: dict[str, Any] = _ref("Position")
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


def _geometry(kind: str, depth: int) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "coordinates"],
        "properties": {
            "type": {"type": "string", "enum": [kind]},
            "coordinates": _nested(depth),
            "bbox": _ref("BBox"),
        },
    }


GEOMETRY_KINDS = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}

# RFC 7946 as OpenAPI 3.1 component schemas (app/openapi.py adds them to /openapi.json, and
# app/ogc/openapi.py, converted to 3.0, to /ogc/api): one definition for every GeoJSON answer.
# Members beyond these (links, numberMatched, timeStamp, …) are allowed, as RFC 7946 allows
# foreign members.
SCHEMAS: dict[str, dict[str, Any]] = {
    "Position": {
        "type": "array",
        "description": "longitude, latitude (CRS84, degrees)[, elevation]",
        "minItems": 2,
        "maxItems": 3,
        "items": {"type": "number"},
    },
    "BBox": {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
    **{kind: _geometry(kind, depth) for kind, depth in GEOMETRY_KINDS.items()},
    "GeometryCollection": {
        "type": "object",
        "required": ["type", "geometries"],
        "properties": {
            "type": {"type": "string", "enum": ["GeometryCollection"]},
            "geometries": {"type": "array", "items": _ref("Geometry")},
            "bbox": _ref("BBox"),
        },
    },
    "Geometry": {
        "description": "an RFC 7946 geometry (lon/lat, CRS84)",
        "oneOf": [_ref(kind) for kind in [*GEOMETRY_KINDS, "GeometryCollection"]],
        "discriminator": {
            "propertyName": "type",
            "mapping": {
                kind: f"#/components/schemas/{kind}"
                for kind in [*GEOMETRY_KINDS, "GeometryCollection"]
            },
        },
    },
    "Link": {
        "type": "object",
        "required": ["href"],
        "properties": {
            "href": {"type": "string"},
            "rel": {"type": "string"},
            "type": {"type": "string"},
            "title": {"type": "string"},
        },
    },
    "Feature": {
        "type": "object",
        "description": "an RFC 7946 Feature; what `properties` holds is described per route",
        "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]},
            "id": {"oneOf": [{"type": "string"}, {"type": "number"}]},
            "geometry": {"oneOf": [_ref("Geometry"), {"type": "null"}]},
            "properties": {"type": ["object", "null"]},
            "bbox": _ref("BBox"),
            "links": {"type": "array", "items": _ref("Link")},
        },
    },
    "FeatureCollection": {
        "type": "object",
        "description": "an RFC 7946 FeatureCollection; paged lists add `links` (`next`),"
        " `numberReturned` and, when known, `numberMatched`",
        "required": ["type", "features"],
        "properties": {
            "type": {"type": "string", "enum": ["FeatureCollection"]},
            "features": {"type": "array", "items": _ref("Feature")},
            "bbox": _ref("BBox"),
            "links": {"type": "array", "items": _ref("Link")},
            "numberMatched": {"type": "integer", "minimum": 0},
            "numberReturned": {"type": "integer", "minimum": 0},
            "timeStamp": {"type": "string", "format": "date-time"},
        },
    },
}


def response_doc(schema: str, description: str) -> dict[str, Any]:
    """An OpenAPI response: a GeoJSON body of component schema `schema`."""
    return {"description": description, "content": {GEOJSON: {"schema": _ref(schema)}}}


# `responses=` of the routes that answer GeoJSON
DOC: dict[int | str, dict[str, Any]] = {
    200: response_doc("FeatureCollection", "a GeoJSON FeatureCollection (RFC 7946)")
}
FEATURE_DOC: dict[int | str, dict[str, Any]] = {
    200: response_doc("Feature", "a GeoJSON Feature (RFC 7946)")
}


class GeoJSONResponse(JSONResponse):
    """Bytes produced by PostgreSQL, passed through as application/geo+json.

    A JSONResponse so that OpenAPI shows the schema the route declares (FastAPI declares any
    other response class's body `type: string`); the body is never re-encoded."""

    media_type = GEOJSON

    def render(self, content: Any) -> bytes:
        """The bytes as given."""
        return bytes(content)


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
    return func.ST_Multi(func.ST_SimplifyPreserveTopology(geom, tolerance_degrees(tolerance_m)))
