"""The OpenAPI 3.0 definition of /ogc (OGC API – Features /req/oas30).

FastAPI's own document is OpenAPI 3.1 and describes the items route generically; OGC clients
(GDAL, QGIS) read an OpenAPI 3.0 document and look for each collection's items path and its
parameters, so this one is written out per collection. GDAL up to 3.7 also looks for
`cql-text` in the `filter-lang` enum before it sends filters to the server: the draft name is
listed and accepted as an alias of cql2-text.
"""

from __future__ import annotations

from typing import Any

from app import i18n
from app import openapi as shared
from app.ogc.collections import Info, Source
from app.ogc.cql import Queryable, integer_range
from app.ogc.params import (
    AREA_PARAM,
    CRS84,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    STANDARD,
    equality_names,
    own_names,
)

OPENAPI_MEDIA = "application/vnd.oai.openapi+json;version=3.0"
PARAM_TYPES = {
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "uuid": {"type": "string", "format": "uuid"},
}


def _param_type(q: Queryable) -> dict[str, Any]:
    """The schema of a `name=value` parameter (integers within their column's type)."""
    if q.type == "integer":
        low, high = integer_range(q)
        return {"type": "integer", "minimum": low, "maximum": high}
    return PARAM_TYPES.get(q.type, {"type": "string"})


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


PARAMETERS: dict[str, dict[str, Any]] = {
    "f": {
        "name": "f",
        "in": "query",
        "required": False,
        "description": "the format of the response (otherwise the Accept header decides)",
        "schema": {"type": "string", "enum": ["json", "html"]},
    },
    "bbox": {
        "name": "bbox",
        "in": "query",
        "required": False,
        "description": "minLon,minLat,maxLon,maxLat (CRS84): features intersecting the box",
        "style": "form",
        "explode": False,
        "schema": {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
    },
    "bbox-crs": {
        "name": "bbox-crs",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": [CRS84]},
    },
    "datetime": {
        "name": "datetime",
        "in": "query",
        "required": False,
        "description": "an RFC 3339 instant, or an interval start/end with `..` for an open end",
        "schema": {"type": "string"},
    },
    "limit": {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": f"page size; values above {MAX_LIMIT} are served as {MAX_LIMIT}",
        "schema": {"type": "integer", "minimum": 1, "default": DEFAULT_LIMIT},
    },
    "offset": {
        "name": "offset",
        "in": "query",
        "required": False,
        "description": "how many matching features to skip (the `next` link sets it)",
        "schema": {"type": "integer", "minimum": 0, "default": 0},
    },
    "properties": {
        "name": "properties",
        "in": "query",
        "required": False,
        "description": "only these properties in each Feature (comma-separated)",
        "style": "form",
        "explode": False,
        "schema": {"type": "array", "items": {"type": "string"}},
    },
    "sortby": {
        "name": "sortby",
        "in": "query",
        "required": False,
        "description": "sort keys, e.g. `-severity,+occurred_at` (queryables only)",
        "style": "form",
        "explode": False,
        "schema": {"type": "array", "items": {"type": "string"}},
    },
    "filter": {
        "name": "filter",
        "in": "query",
        "required": False,
        "description": "a CQL2 expression over the collection's queryables (see docs/ogc.md)",
        "schema": {"type": "string"},
    },
    "filter-lang": {
        "name": "filter-lang",
        "in": "query",
        "required": False,
        "description": "cql2-text (default) or cql2-json; cql-text is accepted as cql2-text",
        "schema": {
            "type": "string",
            "enum": ["cql2-text", "cql2-json", "cql-text"],
            "default": "cql2-text",
        },
    },
    "filter-crs": {
        "name": "filter-crs",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": [CRS84]},
    },
    "near": {
        "name": "near",
        "in": "query",
        "required": False,
        "description": "lon,lat,km: features within km kilometres of the point (geodesic,"
        " WGS 84 spheroid); a Borderwatch extension",
        "style": "form",
        "explode": False,
        "schema": {"type": "array", "minItems": 3, "maxItems": 3, "items": {"type": "number"}},
    },
    "lang": {
        "name": "lang",
        "in": "query",
        "required": False,
        "description": "language of the names beside the codes (`category_name`,"
        " `province_name` …): vi (the default, with diacritics) or en; wins over"
        " Accept-Language",
        "schema": {"type": "string", "enum": list(i18n.LANGS)},
    },
}
ITEM_PARAMS = list(STANDARD)  # every parameter the items endpoint accepts is documented
# the parameters of one collection beyond the standard ones (params.own_names)
OWN_PARAMS: dict[str, dict[str, Any]] = {
    AREA_PARAM: {
        "name": AREA_PARAM,
        "in": "query",
        "required": False,
        "description": "the id of a cooperation area (/cooperation-areas): the incidents in"
        " any of its members; a Borderwatch extension",
        "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    },
}


def _own(name: str) -> dict[str, Any]:
    return OWN_PARAMS[name]


def _json(description: str, media: str = "application/json") -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            media: {"schema": {"type": "object"}},
            "text/html": {"schema": {"type": "string"}},
        },
    }


# every operation: a bad parameter (a NUL character: 422), a missing or bad key, the rate limit,
# the database
ERRORS = (400, 401, 422, 429, 503)
# and those of one collection: a key that may not read it, or no such collection or feature
COLLECTION_ERRORS = (*ERRORS, 403, 404)


def _get(
    summary: str,
    op_id: str,
    ok: dict[str, Any],
    params: list[Any],
    errors: tuple[int, ...] = ERRORS,
) -> dict[str, Any]:
    problems = {str(s): {"$ref": f"#/components/responses/Problem{s}"} for s in sorted(errors)}
    return {
        "get": {
            "summary": summary,
            "operationId": op_id,
            "tags": ["OGC API – Features"],
            "parameters": params,
            "responses": {"200": ok, **problems},
        }
    }


def document(*, base: str, sources: list[tuple[Info, Source]]) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document for the collections this principal may read."""
    paths: dict[str, Any] = {
        "/": _get("Landing page", "getLandingPage", _json("links to the API"), [_ref("f")]),
        "/conformance": _get(
            "Conformance classes", "getConformance", _json("the classes"), [_ref("f")]
        ),
        "/api": _get(
            "This API definition", "getAPI", _json("OpenAPI 3.0", OPENAPI_MEDIA), [_ref("f")]
        ),
        "/collections": _get(
            "Feature collections", "getCollections", _json("the collections"), [_ref("f")]
        ),
    }
    for info, source in sources:
        cid = info.id
        op = cid.replace("_", " ").title().replace(" ", "")
        equality = [
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": f"features whose {name} equals this value",
                "schema": _param_type(source.queryables[name]),
            }
            for name in equality_names(source)
        ]
        paths[f"/collections/{cid}"] = _get(
            f"The {cid} collection",
            f"describe{op}",
            _json("the collection"),
            [_ref("f")],
            COLLECTION_ERRORS,
        )
        paths[f"/collections/{cid}/queryables"] = _get(
            f"Queryables of {cid}",
            f"queryables{op}",
            _json("a JSON Schema", "application/schema+json"),
            [_ref("f")],
            COLLECTION_ERRORS,
        )
        paths[f"/collections/{cid}/items"] = _get(
            f"Features of {cid}",
            f"items{op}",
            {"$ref": "#/components/responses/Features"},
            [_ref(p) for p in ITEM_PARAMS] + [_own(p) for p in own_names(source)] + equality,
            COLLECTION_ERRORS,
        )
        paths[f"/collections/{cid}/items/{{featureId}}"] = _get(
            f"One feature of {cid}",
            f"item{op}",
            {"$ref": "#/components/responses/Feature"},
            [
                {
                    "name": "featureId",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                },
                _ref("f"),
            ],
            COLLECTION_ERRORS,
        )
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Borderwatch – OGC API – Features",
            "version": "1.0.0",
            "description": "Incidents, border posts, jurisdictions, border segments and hot"
            " spots as OGC API – Features (Part 1 Core, GeoJSON, HTML, OpenAPI 3.0; Part 3"
            " filtering with CQL2 text and JSON). Send the API key as"
            " `Authorization: Bearer <key>` or `X-API-Key`.",
        },
        "servers": [{"url": base}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": shared.SECURITY_SCHEMES,
            "parameters": PARAMETERS,
            # the same definitions as /openapi.json (app/openapi.py), written as OpenAPI 3.0
            "schemas": shared.for_oas30(shared.SCHEMAS),
            "responses": {
                **{
                    f"Problem{s}": shared.for_oas30(
                        shared.problem_response(s, shared.NUL_422 if s == 422 else None)
                    )
                    for s in COLLECTION_ERRORS
                },
                "Features": {
                    "description": "a GeoJSON FeatureCollection with links, numberReturned"
                    " and (when cheap) numberMatched",
                    "content": {
                        "application/geo+json": {
                            "schema": {"$ref": "#/components/schemas/FeatureCollection"}
                        },
                        "text/html": {"schema": {"type": "string"}},
                    },
                },
                "Feature": {
                    "description": "a GeoJSON Feature with links",
                    "content": {
                        "application/geo+json": {
                            "schema": {"$ref": "#/components/schemas/Feature"}
                        },
                        "text/html": {"schema": {"type": "string"}},
                    },
                },
            },
        },
    }
