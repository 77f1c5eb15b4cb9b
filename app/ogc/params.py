"""Parsing of the items query parameters (OGC API – Features Parts 1 and 3, plus `near`).

Every problem is an InvalidInput naming the parameter; the OGC routes answer it with 400.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pygeofilter import ast
from starlette.datastructures import QueryParams

from app.cooperation.members import AreaMembers
from app.errors import InvalidInput
from app.incidents.filters import parse_bbox, parse_datetime
from app.ogc import cql, cql_parse
from app.ogc.collections import INCIDENTS, Source

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
MAX_OFFSET = 10_000_000
MAX_SORT_KEYS = 5
MAX_NEAR_KM = 1000.0
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CRS84_ALIASES = (CRS84, "https://www.opengis.net/def/crs/OGC/1.3/CRS84", "[OGC:CRS84]", "OGC:CRS84")
STANDARD = (
    "f",
    "bbox",
    "bbox-crs",
    "datetime",
    "limit",
    "offset",
    "properties",
    "sortby",
    "filter",
    "filter-lang",
    "filter-crs",
    "near",
    "lang",
)


@dataclass(frozen=True)
class ItemsQuery:
    """The parsed items request."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0
    bbox: tuple[float, float, float, float] | None = None
    start: datetime | None = None
    end: datetime | None = None
    properties: list[str] | None = None
    sortby: list[tuple[str, bool]] = field(default_factory=list)  # (name, descending)
    filter: ast.Node | None = None
    near: tuple[float, float, float] | None = None  # lon, lat, km
    equals: dict[str, Any] = field(default_factory=dict)
    cooperation: int | None = None  # incidents: a cooperation area's id
    area: AreaMembers | None = None  # its members, read by the route (the database's answer)


# incidents only: the id of a cooperation area, as `cooperation=` on GET /incidents
AREA_PARAM = "cooperation"


def own_names(source: Source) -> list[str]:
    """The parameters a collection has beyond the standard ones and its queryables."""
    return [AREA_PARAM] if source.info.id == INCIDENTS else []


def single(params: QueryParams, name: str) -> str | None:
    """The value of a parameter that may appear once (repeated with the same value is
    tolerated: GDAL appends the dataset URL's own parameters to links that carry them)."""
    found = params.getlist(name)
    if len(set(found)) > 1:
        raise InvalidInput(f"parameter '{name}' is given more than once", field=name)
    return found[0] if found else None


def parse_items(params: QueryParams, source: Source) -> ItemsQuery:
    """All parameters of an items request for this collection."""
    known = [*STANDARD, *own_names(source), *equality_names(source)]
    for name in params:
        if name not in known:
            raise InvalidInput(
                f"unknown parameter '{name[:40]}' for collection '{source.info.id}'; known: "
                + ", ".join(known),
                field=name[:40],
            )
    for name in ("bbox-crs", "filter-crs"):
        crs = single(params, name)
        if crs is not None and crs not in CRS84_ALIASES:
            raise InvalidInput(f"{name} must be {CRS84} (lon/lat, WGS 84)", field=name)
    start, end = _datetime(params, source)
    text = single(params, "filter")
    lang = single(params, "filter-lang")
    node = cql_parse.parse(text, lang) if text is not None else None
    if node is None and lang is not None:
        cql_parse.parse("INCLUDE", lang)  # still validate the language name
    return ItemsQuery(
        limit=_limit(single(params, "limit")),
        offset=_int(single(params, "offset"), "offset", 0, 0, MAX_OFFSET),
        bbox=_bbox(single(params, "bbox")),
        start=start,
        end=end,
        properties=_properties(single(params, "properties"), source),
        sortby=_sortby(single(params, "sortby"), source),
        filter=node,
        near=_near(single(params, "near")),
        cooperation=_area(single(params, AREA_PARAM)),
        equals={
            name: equality_value(source.queryables[name], single(params, name) or "", name)
            for name in params
            if name in equality_names(source)
        },
    )


def equality_names(source: Source) -> list[str]:
    """Queryables usable as `name=value` parameters (Part 1, /rec/core/fc-filters)."""
    return [
        n
        for n, q in source.queryables.items()
        if q.type != "geometry" and n not in STANDARD and n != "id"
    ]


def equality_value(q: cql.Queryable, text: str, name: str) -> Any:
    """The typed value of a `name=value` parameter."""
    try:
        if q.type == "integer":
            return cql.in_range(int(text), q, field=name)
        if q.type == "number":
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
            return value
        if q.type == "boolean":
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if q.type == "datetime":
            return cql.parse_instant(text, field=name)
        if q.type == "date":
            return date.fromisoformat(text)
        if q.type == "uuid":
            return uuid.UUID(text)
    except ValueError as exc:
        raise InvalidInput(f"{name}: '{text[:60]}' is not a valid {q.type}", field=name) from exc
    return text


def _int(text: str | None, name: str, default: int, low: int, high: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise InvalidInput(f"{name} must be an integer; got '{text[:40]}'", field=name) from exc
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}", field=name)
    return value


def _area(text: str | None) -> int | None:
    return None if text is None else _int(text, AREA_PARAM, 0, 1, 2**31 - 1)


def _limit(text: str | None) -> int:
    """1 or more; values above the maximum are served as the maximum (Part 1 allows it)."""
    if text is None:
        return DEFAULT_LIMIT
    value = _int(text, "limit", DEFAULT_LIMIT, 1, 2**31)
    return min(value, MAX_LIMIT)


def _bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) == 6:  # minLon,minLat,minZ,maxLon,maxLat,maxZ: heights do not apply here
        text = ",".join([parts[0], parts[1], parts[3], parts[4]])
    return parse_bbox(text)


def _datetime(params: QueryParams, source: Source) -> tuple[datetime | None, datetime | None]:
    text = single(params, "datetime")
    if text is None:
        return None, None
    if source.period is None:
        raise InvalidInput(
            f"collection '{source.info.id}' has no temporal property; datetime does not apply",
            field="datetime",
        )
    return parse_datetime(text)


def _properties(text: str | None, source: Source) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in source.properties:
            raise InvalidInput(
                f"properties: unknown property '{n[:64]}'; known: {', '.join(source.properties)}",
                field="properties",
            )
    return list(dict.fromkeys(names))


def _sortby(text: str | None, source: Source) -> list[tuple[str, bool]]:
    if text is None:
        return []
    keys: list[tuple[str, bool]] = []
    for raw in text.split(","):
        item = raw.strip()
        descending = item.startswith("-")
        name = item.lstrip("+-").strip()
        if " " in name:  # `name DESC` / `name ASC` (the cql2 sortby form)
            name, _, direction = name.partition(" ")
            descending = direction.strip().upper() == "DESC"
        q = source.queryables.get(name)
        if q is None or q.type == "geometry":
            sortable = [n for n, v in source.queryables.items() if v.type != "geometry"]
            raise InvalidInput(
                f"sortby: '{name[:64]}' is not a sortable property; sortable: "
                + ", ".join(sortable),
                field="sortby",
            )
        keys.append((name, descending))
    if len(keys) > MAX_SORT_KEYS:
        raise InvalidInput(f"sortby takes at most {MAX_SORT_KEYS} keys", field="sortby")
    return keys


def _near(text: str | None) -> tuple[float, float, float] | None:
    """`lon,lat,km`: within km kilometres (geodesic) of the point."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        lon, lat, km = (float(p) for p in parts)
    except ValueError as exc:
        raise InvalidInput("near must be lon,lat,km (three numbers)", field="near") from exc
    if not all(math.isfinite(v) for v in (lon, lat, km)):
        raise InvalidInput("near values must be finite", field="near")
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InvalidInput("near: lon/lat out of range (order is lon,lat,km)", field="near")
    if not 0 < km <= MAX_NEAR_KM:
        raise InvalidInput(f"near: km must be above 0 and at most {MAX_NEAR_KM:g}", field="near")
    return lon, lat, km
