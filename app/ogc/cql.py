"""CQL2 filters (OGC API – Features Part 3): parsed by pygeofilter (app/ogc/cql_parse.py),
translated here to SQLAlchemy.

Property names are looked up in the collection's queryables (a dict of SQL expressions), and
every literal becomes a bound parameter, so nothing a client writes ever reaches SQL as text.
Size and nesting are bounded before and after parsing; every failure is an InvalidInput that
the OGC routes answer with 400 problem+json.

Supported: AND/OR/NOT; = <> < <= > >=; BETWEEN; LIKE/ILIKE (`%`, `_`, `\\` escape); IN;
IS NULL; CASEI() and ACCENTI() (PostgreSQL's unaccent); S_INTERSECTS, S_DISJOINT, S_WITHIN,
S_CONTAINS, S_TOUCHES, S_CROSSES,
S_OVERLAPS, S_EQUALS with WKT / GeoJSON / BBOX literals; T_INTERSECTS, T_BEFORE, T_AFTER,
T_DISJOINT, T_EQUALS on instants; and the distance extension
`DWITHIN(geometry, <geometry literal>, <distance>, '<unit>')` (geodesic, on the WGS 84 spheroid).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import shapely
from pygeofilter import ast, values
from shapely.geometry import shape
from sqlalchemy import (
    ColumnElement,
    SQLColumnExpression,
    and_,
    false,
    func,
    literal,
    not_,
    or_,
    true,
)
from sqlalchemy.types import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    SmallInteger,
    String,
    Uuid,
)

from app.errors import InvalidInput
from app.geo import spatial
from app.incidents.filters import folded
from app.ogc.cql_parse import bad, bbox_ring, first_line, number, unquote

MAX_VERTICES = 10_000  # in all geometry literals of one filter
MAX_DISTANCE_M = 1_000_000.0
UNITS_M = {
    "m": 1.0,
    "meter": 1.0,
    "meters": 1.0,
    "metre": 1.0,
    "metres": 1.0,
    "km": 1000.0,
    "kilometer": 1000.0,
    "kilometers": 1000.0,
    "kilometre": 1000.0,
    "kilometres": 1000.0,
}


@dataclass(frozen=True)
class Queryable:
    """A property a filter, a sort or an equality parameter may name."""

    expr: SQLColumnExpression[Any]  # a column or an expression over columns
    type: str  # string | integer | number | boolean | datetime | date | uuid | geometry
    title: str
    enum: tuple[str, ...] | None = None


Queryables = dict[str, Queryable]


class Translator:
    """Turns an AST into one SQL condition over the given queryables."""

    def __init__(self, queryables: Queryables) -> None:
        self.q = queryables
        self.vertices = 0

    def condition(self, node: Any) -> ColumnElement[bool]:
        """SQL for a boolean node."""
        if isinstance(node, ast.And):
            return and_(self.condition(node.lhs), self.condition(node.rhs))
        if isinstance(node, ast.Or):
            return or_(self.condition(node.lhs), self.condition(node.rhs))
        if isinstance(node, ast.Not):
            return not_(self.condition(node.sub_node))
        if isinstance(node, ast.Include):
            return false() if node.not_ else true()
        if isinstance(node, bool):
            return true() if node else false()
        if isinstance(node, ast.Function) and node.name.lower() == "dwithin":
            return self.dwithin(node.arguments)
        if isinstance(node, ast.Comparison):
            return self.comparison(node)
        if isinstance(node, ast.Between):
            q = self.attribute(node.lhs)
            cond = q.expr.between(self.value(q, node.low), self.value(q, node.high))
            return not_(cond) if node.not_ else cond
        if isinstance(node, ast.Like):
            return self.like(node)
        if isinstance(node, ast.In):
            q = self.attribute(node.lhs)
            if not node.sub_nodes:
                raise bad("an IN list is empty")
            cond = q.expr.in_([self.value(q, v) for v in node.sub_nodes])
            return not_(cond) if node.not_ else cond
        if isinstance(node, ast.IsNull):
            q = self.attribute(node.lhs)
            return q.expr.is_not(None) if node.not_ else q.expr.is_(None)
        if isinstance(node, ast.SpatialComparisonPredicate):
            return self.spatial(node)
        if isinstance(node, ast.BBox):
            q = self.geometry_attribute(node.lhs)
            ring = bbox_ring([node.minx, node.miny, node.maxx, node.maxy])
            box = self.geometry_literal({"type": "Polygon", "coordinates": ring})
            return func.ST_Intersects(q.expr, box)
        if isinstance(node, ast.DistanceWithin):
            return self.dwithin([node.lhs, node.rhs, node.distance, node.units])
        if isinstance(node, ast.TemporalPredicate):
            return self.temporal(node)
        raise bad(f"'{_describe(node)}' is not supported in filters here (see /ogc/conformance)")

    # attributes and values

    def attribute(self, node: Any) -> Queryable:
        """The queryable a node names (InvalidInput for anything else)."""
        if isinstance(node, ast.Attribute):
            q = self.q.get(node.name)
            if q is None:
                raise bad(
                    f"unknown property '{node.name[:64]}'; queryables: {', '.join(self.q)}",
                    queryables=list(self.q),
                )
            return q
        folds, inner_node = _folds(node)
        if folds:
            inner = self.attribute(inner_node)
            if inner.type != "string":
                raise bad(f"{_fold_names(folds)} applies to text properties only")
            return Queryable(_fold(inner.expr, folds), "string", inner.title)
        raise bad(f"expected a property name, got '{_describe(node)}'")

    def value(self, q: Queryable, node: Any) -> Any:
        """A literal as a bound parameter of the queryable's type."""
        folds, v = _folds(node)
        if folds:
            if not isinstance(v, str):
                raise bad(f"{_fold_names(folds)} of a literal needs a text literal")
            return _fold(literal(unquote(v), String), folds)
        if isinstance(node, ast.Node | values.Geometry | values.Envelope | values.Interval):
            raise bad(f"expected a literal value, got '{_describe(node)}'")
        return literal(coerce(q, node), _sql_type(q.type))

    def comparison(self, node: ast.Comparison) -> ColumnElement[bool]:
        lhs, rhs = node.lhs, node.rhs
        if isinstance(lhs, ast.Function) and lhs.name.lower() == "dwithin" and rhs is True:
            return self.dwithin(lhs.arguments)
        if _is_property(rhs) and not _is_property(lhs):  # 5 < severity
            lhs, rhs = rhs, lhs
            op = _MIRROR[type(node)]
        else:
            op = _OPS[type(node)]
        q = self.attribute(lhs)
        if q.type == "geometry":
            raise bad("compare geometries with S_EQUALS, not with comparison operators")
        other = self.attribute(rhs).expr if _is_property(rhs) else self.value(q, rhs)
        result: ColumnElement[bool] = op(q.expr, other)
        return result

    def like(self, node: ast.Like) -> ColumnElement[bool]:
        q = self.attribute(node.lhs)
        if q.type != "string":
            raise bad("LIKE applies to text properties only")
        folds, pattern = _folds(node.pattern)
        if not isinstance(pattern, str):
            raise bad("LIKE needs a text pattern")
        text_ = _fold(literal(unquote(pattern), String), folds)
        # CQL2 wildcards are SQL's: % any run, _ one character, backslash escapes
        cond = q.expr.ilike(text_, escape="\\") if node.nocase else q.expr.like(text_, escape="\\")
        return not_(cond) if node.not_ else cond

    # spatial

    def geometry_attribute(self, node: Any) -> Queryable:
        q = self.attribute(node)
        if q.type != "geometry":
            raise bad(f"'{_describe(node)}' is not a geometry property")
        return q

    def geometry_literal(self, value: Any) -> ColumnElement[Any]:
        """A validated geometry literal (lon/lat, WGS 84) as a bound WKB parameter."""
        return spatial.literal_geometry(self.shapely_geometry(value))

    def shapely_geometry(self, value: Any) -> Any:
        if isinstance(value, ast.Function) and value.name.lower() == "bbox":
            value = {"type": "Polygon", "coordinates": bbox_ring(list(value.arguments))}
        elif isinstance(value, values.Geometry | values.Envelope):
            value = value.__geo_interface__
        if not isinstance(value, dict):
            raise bad(f"expected a geometry literal, got '{_describe(value)}'")
        try:
            geom = shape(value)
        except Exception as exc:  # malformed GeoJSON of any kind
            raise bad(f"geometry literal is not valid: {first_line(exc)}") from exc
        coords = shapely.get_coordinates(geom)
        self.vertices += len(coords)
        if self.vertices > MAX_VERTICES:
            raise bad(f"geometry literals have more than {MAX_VERTICES} vertices")
        if geom.is_empty:
            raise bad("geometry literal is empty")
        if not all(math.isfinite(v) for v in coords.ravel()):
            raise bad("geometry literal has a coordinate that is not a finite number")
        xs, ys = coords[:, 0], coords[:, 1]
        if xs.min() < -180 or xs.max() > 180 or ys.min() < -90 or ys.max() > 90:
            raise bad(
                "geometry literal is outside lon [-180, 180] / lat [-90, 90]"
                " (coordinates are lon lat, CRS84)"
            )
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
        return geom

    def spatial(self, node: ast.SpatialComparisonPredicate) -> ColumnElement[bool]:
        lhs, rhs = node.lhs, node.rhs
        fn = _SPATIAL[type(node)]
        return fn(self.spatial_operand(lhs), self.spatial_operand(rhs))

    def spatial_operand(self, node: Any) -> Any:
        if _is_property(node):
            return self.geometry_attribute(node).expr
        return self.geometry_literal(node)

    def dwithin(self, args: list[Any]) -> ColumnElement[bool]:
        """DWITHIN(property, geometry, distance, unit): geodesic distance on the spheroid."""
        if len(args) not in (3, 4):
            raise bad("DWITHIN takes (geometry property, geometry, distance, 'unit')")
        prop, geom_value, distance = args[0], args[1], args[2]
        unit = args[3] if len(args) == 4 else "m"
        if not isinstance(unit, str) or unit.lower() not in UNITS_M:
            raise bad(f"DWITHIN unit must be one of {', '.join(UNITS_M)}")
        metres = number(distance, "DWITHIN distance") * UNITS_M[unit.lower()]
        if not 0 <= metres <= MAX_DISTANCE_M:
            raise bad(f"DWITHIN distance must be between 0 and {MAX_DISTANCE_M / 1000:g} km")
        q = self.geometry_attribute(prop)
        geom = self.shapely_geometry(geom_value)
        return spatial.within_metres(q.expr, geom, metres)

    # temporal

    def temporal(self, node: ast.TemporalPredicate) -> ColumnElement[bool]:
        q = self.attribute(node.lhs)
        if q.type not in ("datetime", "date"):
            raise bad(f"'{_describe(node.lhs)}' is not a temporal property")
        start, end, instant = self.period(q, node.rhs)
        col = q.expr
        # a date literal is the whole day: [start, end) with end the next midnight
        lo = col >= start if start is not None else true()
        hi = (col <= end if instant else col < end) if end is not None else true()
        inside = and_(lo, hi)
        kind = type(node)
        if kind is ast.TimeOverlaps:  # pygeofilter's node for T_INTERSECTS
            return inside
        if kind is ast.TimeDisjoint:
            return not_(inside)
        if kind is ast.TimeBefore:
            return col < start if start is not None else false()
        if kind is ast.TimeAfter:
            if end is None:
                return false()
            return col > end if instant else col >= end
        if kind is ast.TimeEquals:
            if instant and start is not None:
                return col == start
            raise bad("T_EQUALS of an instant property needs an instant (TIMESTAMP)")
        raise bad(f"{kind.__name__} is not supported; use T_INTERSECTS, T_BEFORE, T_AFTER,"
                   " T_DISJOINT or T_EQUALS")  # fmt: skip

    def period(self, q: Queryable, value: Any) -> tuple[date | None, date | None, bool]:
        """(start, end, is_instant) of a temporal literal; ends are None when open."""
        if isinstance(value, values.Interval):
            start = None if value.start is None else self.moment(q, value.start)
            end = None if value.end is None else self.moment(q, value.end, end=True)
            if start is None and end is None:
                raise bad("interval is open at both ends")
            return start, end, True
        if isinstance(value, list) and len(value) == 2:  # cql2-text period
            return self.period(q, values.Interval(value[0], value[1]))
        if isinstance(value, date) and not isinstance(value, datetime):
            day = datetime.combine(value, time(), UTC)
            if q.type == "date":
                return value, value + timedelta(days=1), False
            return day, day + timedelta(days=1), False
        moment = self.moment(q, value)
        return moment, moment, True

    def moment(self, q: Queryable, value: Any, *, end: bool = False) -> date:
        """A date (a datetime for a datetime property) of a temporal property."""
        if isinstance(value, timedelta):
            raise bad("durations are not supported in intervals")
        if isinstance(value, date) and not isinstance(value, datetime) and q.type == "datetime":
            day = datetime.combine(value, time(), UTC)
            return day + timedelta(days=1) if end else day
        moment = coerce(q, value)
        assert isinstance(moment, date)  # coerce gives a date or datetime for these properties
        return moment


def translate(node: ast.Node, queryables: Queryables) -> ColumnElement[bool]:
    """One SQL condition for a parsed filter over these queryables."""
    return Translator(queryables).condition(node)


# --- literals --------------------------------------------------------------------------------


# what coerce gives: a Python value of a queryable's type (a datetime is a date)
Scalar = str | int | float | bool | date | uuid.UUID


# CQL2's CASEI() (pygeofilter names it `lower`) and ACCENTI(), in any order and nesting
FOLDS = {"lower": "CASEI()", "accenti": "ACCENTI()"}


def _folds(node: Any) -> tuple[frozenset[str], Any]:
    """The folds wrapped around a node (CASEI, ACCENTI) and what they wrap."""
    found: set[str] = set()
    while isinstance(node, ast.Function) and node.name in FOLDS and len(node.arguments) == 1:
        found.add(node.name)
        node = node.arguments[0]
    return frozenset(found), node


def _fold_names(folds: frozenset[str]) -> str:
    return " and ".join(FOLDS[f] for f in sorted(folds))


def _fold(expr: Any, folds: frozenset[str]) -> Any:
    """SQL of the folds, always in one order, lower(text_accenti(x)): the expression the
    trigram index of incident descriptions holds (migration 0020)."""
    if folds == {"accenti", "lower"}:
        return folded(expr)
    if "accenti" in folds:
        return func.text_accenti(expr)
    if "lower" in folds:
        return func.lower(expr)
    return expr


def coerce(q: Queryable, value: Any) -> Scalar:
    """A Python value of the queryable's type (InvalidInput naming the property otherwise)."""
    t = q.type
    if t == "string":
        if isinstance(value, str):
            return unquote(value)
    elif t == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return in_range(value, q)
        if isinstance(value, float) and value.is_integer():
            return in_range(int(value), q)
    elif t == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise bad("numbers must be finite")
            return float(value)
    elif t == "boolean":
        if isinstance(value, bool):
            return value
    elif t == "datetime":
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, date):
            return datetime.combine(value, time(), UTC)
        if isinstance(value, str):
            return parse_instant(value, field="filter")
    elif t == "date":
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value[:10])
            except ValueError:
                pass
    elif t == "uuid" and isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise bad(
        f"'{q.title}' expects {_ARTICLE.get(t, 'a value of type ' + t)}; got {str(value)[:60]!r}"
    )


def integer_range(q: Queryable) -> tuple[int, int]:
    """The values the queryable's column type holds (smallint, integer or bigint)."""
    column_type = getattr(q.expr, "type", None)
    bits = 32
    if isinstance(column_type, SmallInteger):
        bits = 16
    elif isinstance(column_type, BigInteger):
        bits = 64
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def in_range(value: int, q: Queryable, *, field: str = "filter") -> int:
    """`value`, or InvalidInput when the queryable's column type cannot hold it (the driver
    would refuse to bind it: a 500 before this check)."""
    low, high = integer_range(q)
    if not low <= value <= high:
        raise InvalidInput(
            f"'{q.title}' is an integer from {low} to {high}; got {str(value)[:30]}",
            field=field,
        )
    return value


def parse_instant(text: str, *, field: str) -> datetime:
    """An RFC 3339 instant (a date alone means its midnight UTC)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"'{text[:60]}' is not an RFC 3339 date-time (e.g. 2025-01-31T00:00:00Z)", field=field
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _is_property(node: Any) -> bool:
    return isinstance(node, ast.Attribute) or (
        isinstance(node, ast.Function)
        and node.name == "lower"
        and len(node.arguments) == 1
        and isinstance(node.arguments[0], ast.Attribute)
    )


def _describe(node: Any) -> str:
    if isinstance(node, ast.Attribute):
        name: str = node.name
        return name[:64]
    if isinstance(node, ast.Function):
        return f"{node.name[:40]}()"
    return type(node).__name__


def _sql_type(kind: str) -> Any:
    return {
        "string": String(),
        "integer": Integer(),
        "number": Float(),
        "boolean": Boolean(),
        "datetime": DateTime(timezone=True),
        "date": Date(),
        "uuid": Uuid(),
    }.get(kind, String())


_ARTICLE = {
    "string": "a text value",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "datetime": "a timestamp (TIMESTAMP('2025-01-31T00:00:00Z'))",
    "date": "a date (DATE('2025-01-31'))",
    "uuid": "a UUID text",
}

_Op = Callable[[Any, Any], ColumnElement[bool]]
_OPS: dict[type, _Op] = {
    ast.Equal: lambda a, b: a == b,
    ast.NotEqual: lambda a, b: a != b,
    ast.LessThan: lambda a, b: a < b,
    ast.LessEqual: lambda a, b: a <= b,
    ast.GreaterThan: lambda a, b: a > b,
    ast.GreaterEqual: lambda a, b: a >= b,
}
_MIRROR: dict[type, _Op] = {
    ast.Equal: _OPS[ast.Equal],
    ast.NotEqual: _OPS[ast.NotEqual],
    ast.LessThan: _OPS[ast.GreaterThan],
    ast.LessEqual: _OPS[ast.GreaterEqual],
    ast.GreaterThan: _OPS[ast.LessThan],
    ast.GreaterEqual: _OPS[ast.LessEqual],
}
_SPATIAL: dict[type, Callable[[Any, Any], ColumnElement[bool]]] = {
    ast.GeometryIntersects: func.ST_Intersects,
    ast.GeometryDisjoint: func.ST_Disjoint,
    ast.GeometryContains: func.ST_Contains,
    ast.GeometryWithin: func.ST_Within,
    ast.GeometryTouches: func.ST_Touches,
    ast.GeometryCrosses: func.ST_Crosses,
    ast.GeometryOverlaps: func.ST_Overlaps,
    ast.GeometryEquals: func.ST_Equals,
}
