"""The JSON documents of /ogc (landing page, conformance, collections, queryables) and their
links. Plain dicts: small, built per request, serialised with orjson."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from app.i18n import LANGS, Lang
from app.ogc import styles as ogc_styles
from app.ogc.collections import Info, Source
from app.ogc.openapi import OPENAPI_MEDIA
from app.ogc.params import CRS84, ItemsQuery
from app.ogc.service import Extent, Page

JSON, GEOJSON, HTML, SCHEMA = (
    "application/json",
    "application/geo+json",
    "text/html",
    "application/schema+json",
)
REL_CONFORMANCE = "http://www.opengis.net/def/rel/ogc/1.0/conformance"
REL_DATA = "http://www.opengis.net/def/rel/ogc/1.0/data"
REL_QUERYABLES = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
REL_STYLES = "http://www.opengis.net/def/rel/ogc/1.0/styles"
GREGORIAN = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"

FEATURES = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/"
FILTERING = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/"
CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf/"
STYLES = "http://www.opengis.net/spec/ogcapi-styles-1/1.0/conf/"
# Only what is implemented and exercised by tests/test_ogc.py. CQL2's spatial classes are
# listed under their 1.0 names and the draft names QGIS and GDAL look for.
CONFORMANCE = [
    FEATURES + "core",
    FEATURES + "geojson",
    FEATURES + "html",
    FEATURES + "oas30",
    FILTERING + "queryables",
    FILTERING + "queryables-query-parameters",
    FILTERING + "filter",
    FILTERING + "features-filter",
    CQL2 + "cql2-text",
    CQL2 + "cql2-json",
    CQL2 + "basic-cql2",
    CQL2 + "advanced-comparison-operators",
    CQL2 + "case-insensitive-comparison",
    CQL2 + "accent-insensitive-comparison",
    CQL2 + "basic-spatial-functions",
    CQL2 + "basic-spatial-functions-plus",
    CQL2 + "spatial-functions",
    CQL2 + "basic-spatial-operators",
    CQL2 + "spatial-operators",
    # OGC API – Styles (draft 20-009), read only: the styles of a collection and their
    # stylesheets (tests/test_ogc_styles.py). Not "mapbox-styles": its requirements are about
    # accepting stylesheets by POST/PUT, which this API does not do.
    STYLES + "core",
    STYLES + "collection-styles",
]


def link(href: str, rel: str, type_: str, title: str | None = None) -> dict[str, str]:
    """One link object."""
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def with_params(url: str, params: list[tuple[str, str]]) -> str:
    """`url` with these query parameters."""
    return f"{url}?{urlencode(params)}" if params else url


def self_links(url: str, *, media: str = JSON, html: bool = False) -> list[dict[str, str]]:
    """`self` and `alternate` for a resource shown as JSON (or as HTML)."""
    json_link = with_params(url, [("f", "json")])
    html_link = with_params(url, [("f", "html")])
    if html:
        return [link(html_link, "self", HTML), link(json_link, "alternate", media)]
    return [link(json_link, "self", media), link(html_link, "alternate", HTML)]


def landing(base: str, *, html: bool) -> dict[str, Any]:
    """The landing page."""
    return {
        "title": "Borderwatch – OGC API – Features",
        "description": "Incidents, border posts, jurisdictions, national border segments and"
        " hot spots for GIS clients (QGIS, GDAL/ogr2ogr).",
        "links": [
            *self_links(base, html=html),
            link(f"{base}/api", "service-desc", OPENAPI_MEDIA, "the API definition (OpenAPI 3.0)"),
            link(f"{base}/api?f=html", "service-doc", HTML, "the API documentation"),
            link(f"{base}/conformance", "conformance", JSON, "conformance classes"),
            link(f"{base}/conformance", REL_CONFORMANCE, JSON, "conformance classes"),
            link(f"{base}/collections", "data", JSON, "the feature collections"),
            link(f"{base}/collections", REL_DATA, JSON, "the feature collections"),
        ],
    }


def conformance() -> dict[str, Any]:
    """The conformance declaration."""
    return {"conformsTo": CONFORMANCE}


def collection(base: str, info: Info, extent: Extent, *, html: bool = False) -> dict[str, Any]:
    """One collection's description (OGC API – Features /req/core/sfc-md-op)."""
    url = f"{base}/collections/{info.id}"
    doc: dict[str, Any] = {
        "id": info.id,
        "title": info.title,
        "description": info.description,
        "itemType": "feature",
        "crs": [CRS84],
        "storageCrs": CRS84,
        "extent": {},
        "links": [
            *self_links(url, html=html),
            link(f"{url}/items", "items", GEOJSON, f"{info.title} (GeoJSON)"),
            link(f"{url}/items?f=html", "items", HTML, f"{info.title} (HTML)"),
            link(f"{url}/queryables", REL_QUERYABLES, SCHEMA, "queryable properties"),
            # a JSON Schema of the Features, their properties typed: GDAL's OAPIF driver types
            # its fields from it (rel `describedBy`, as GDAL 3.6 spells it; newer ones read
            # the registered `describedby` too), not from a guess over the first page, where a
            # field may be null throughout (GDAL then makes it a String)
            link(f"{url}/schema", "describedBy", SCHEMA, "schema of the features"),
        ],
    }
    if ogc_styles.available(info.id):
        doc["links"].append(
            link(f"{url}/styles", REL_STYLES, JSON, "styles for QGIS (.qml) and MapLibre")
        )
    if extent.bbox is not None:
        doc["extent"]["spatial"] = {"bbox": [list(extent.bbox)], "crs": CRS84}
    if extent.interval is not None:
        doc["extent"]["temporal"] = {"interval": [list(extent.interval)], "trs": GREGORIAN}
    return doc


def collections(base: str, docs: list[dict[str, Any]], *, html: bool) -> dict[str, Any]:
    """The collection list."""
    return {"links": self_links(f"{base}/collections", html=html), "collections": docs}


SCHEMA_TYPES = {
    "string": {"type": "string"},
    "uuid": {"type": "string", "format": "uuid"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
}
GEOMETRY_FORMATS = {
    "Point": "geometry-point",
    "Polygon": "geometry-polygon",
    "MultiPolygon": "geometry-multipolygon",
    "MultiLineString": "geometry-multilinestring",
}


def queryables(base: str, info: Info, source: Source) -> dict[str, Any]:
    """The queryables as a JSON Schema (Part 3 /req/queryables)."""
    props: dict[str, Any] = {}
    for name, q in source.queryables.items():
        if q.type == "geometry":
            props[name] = {
                "title": "geometry",
                "format": GEOMETRY_FORMATS.get(info.geometry, "geometry-any"),
                "x-ogc-role": "primary-geometry",
            }
            continue
        entry: dict[str, Any] = {"title": q.title, **SCHEMA_TYPES[q.type]}
        if q.enum:
            entry["enum"] = list(q.enum)
        if name == info.temporal:
            entry["x-ogc-role"] = "primary-instant"
        props[name] = entry
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{base}/collections/{info.id}/queryables",
        "type": "object",
        "title": f"{info.title}: queryables",
        "properties": props,
        "additionalProperties": False,
    }


def feature_schema(base: str, info: Info, source: Source) -> dict[str, Any]:
    """A JSON Schema of the collection's GeoJSON Features, with every property and its type:
    the queryables' types, the others' from the source (the incidents' names: strings; a list
    of codes: an array of strings)."""
    props: dict[str, Any] = {}
    for name in source.properties:
        q = source.queryables.get(name)
        kind = q.type if q is not None else source.property_types.get(name, "string")
        entry: dict[str, Any] = {"title": name}
        if kind == "array":
            entry |= {"type": "array", "items": {"type": "string"}}
        else:
            entry |= SCHEMA_TYPES[kind]
        props[name] = entry
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{base}/collections/{info.id}/schema",
        "title": f"{info.title}: a Feature",
        "type": "object",
        "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]},
            "id": SCHEMA_TYPES[source.id_type],
            "geometry": {
                "title": f"{info.geometry} (GeoJSON, CRS84)",
                "format": GEOMETRY_FORMATS.get(info.geometry, "geometry-any"),
            },
            "properties": {"type": "object", "properties": props},
        },
    }


def items_head(
    *,
    base: str,
    info: Info,
    params: list[tuple[str, str]],
    query: ItemsQuery,
    page: Page,
    timestamp: str,
    html: bool,
) -> dict[str, Any]:
    """Everything of an items response except the features: counts and links. `next` and
    `prev` keep every other parameter of the request and change only the offset."""
    url = f"{base}/collections/{info.id}/items"
    kept = [(k, v) for k, v in params if k not in ("offset", "limit", "f")]

    def at(offset: int, fmt: str) -> str:
        extra = [("offset", str(offset))] if offset else []
        return with_params(url, [*kept, ("limit", str(query.limit)), *extra, ("f", fmt)])

    links = [
        link(at(query.offset, "html" if html else "json"), "self", HTML if html else GEOJSON),
        link(at(query.offset, "json" if html else "html"), "alternate", GEOJSON if html else HTML),
        link(f"{base}/collections/{info.id}", "collection", JSON, info.title),
    ]
    if page.more:
        nxt = query.offset + query.limit
        links += [link(at(nxt, "json"), "next", GEOJSON), link(at(nxt, "html"), "next", HTML)]
    if query.offset > 0:
        prev = max(0, query.offset - query.limit)
        links += [link(at(prev, "json"), "prev", GEOJSON), link(at(prev, "html"), "prev", HTML)]
    head: dict[str, Any] = {"type": "FeatureCollection", "timeStamp": timestamp}
    if page.matched is not None:
        head["numberMatched"] = page.matched
    head["numberReturned"] = page.returned
    head["links"] = links
    return head


def item_links(base: str, info: Info, feature_id: str, *, html: bool) -> list[dict[str, str]]:
    """Links of one feature."""
    url = f"{base}/collections/{info.id}/items/{quote(feature_id, safe='')}"
    return [
        *self_links(url, media=GEOJSON, html=html),
        link(f"{base}/collections/{info.id}", "collection", JSON, info.title),
    ]


def styles(base: str, info: Info, lang: Lang) -> dict[str, Any]:
    """The styles of a collection (OGC API – Styles /req/core/styles-success): each with a
    `stylesheet` link per encoding, first in `lang`, then in the other language (hreflang)."""
    url = f"{base}/collections/{info.id}/styles"
    found = ogc_styles.available(info.id)
    order = [lang, *(other for other in LANGS if other != lang)]
    names = {"mapbox": "MapLibre style (vector tiles)", "qml": "QGIS style (.qml)"}
    out: list[dict[str, Any]] = []
    for style in found:
        links: list[dict[str, str]] = []
        for language in order:
            for fmt, media in ogc_styles.FORMATS.items():
                href = with_params(f"{url}/{style.id}", [("f", fmt), ("lang", language)])
                one = link(href, "stylesheet", media, f"{names[fmt]}, {language}")
                links.append(one | {"hreflang": language})
        out.append({"id": style.id, "title": style.titles[lang], "links": links})
    doc: dict[str, Any] = {
        "styles": out,
        "links": [
            link(with_params(url, [("f", "json"), ("lang", lang)]), "self", JSON),
            link(f"{base}/collections/{info.id}", "collection", JSON, info.title),
        ],
    }
    if found:
        doc["default"] = found[0].id
    return doc
