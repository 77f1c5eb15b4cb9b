"""The service's OpenAPI document made true: problem+json errors and GeoJSON bodies.

Routes and routers declare what they answer with `problems(...)` and the GeoJSON docs of
app/geo/geojson.py; `install` finishes FastAPI's document once, in one place: it adds the shared
component schemas, replaces FastAPI's automatic 422 (`HTTPValidationError`, which this service
never sends: its 422 is problem+json with `errors`), moves the `$defs` of request-body schemas
into the components and declares the API-key schemes on the operations that need a key.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI

from app.errors import PROBLEM_JSON
from app.geo import geojson

REF_PREFIX = "#/components/schemas/"
# an operation's marker (removed from the document): its status for invalid input, if not 422
INVALID_INPUT = "x-invalid-input-status"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem. Members beyond these may be present: `field` (the"
    " parameter at fault), `errors` (each invalid input with its location), `allowed_roles`, …",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "`about:blank` (the status says it all)"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "what went wrong and what to do about it"},
        "instance": {"type": "string", "description": "the request's path"},
        "errors": {
            "type": "array",
            "description": "each invalid input: a parameter or body member (`location`,"
            " `message`) or, for an import, a row of the file (`row`, `column`, `reason`)",
            "items": {
                "anyOf": [
                    {
                        "type": "object",
                        "required": ["location", "message"],
                        "properties": {
                            "location": {"type": "string", "description": "e.g. `query.limit`"},
                            "message": {"type": "string"},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["row", "reason"],
                        "properties": {
                            "row": {"type": "integer", "description": "1 = the header row"},
                            "column": {"type": ["string", "null"]},
                            "reason": {"type": "string"},
                        },
                    },
                ]
            },
        },
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {"Problem": PROBLEM_SCHEMA, **geojson.SCHEMAS}

DESCRIPTIONS = {
    400: "invalid parameters or filter (the OGC API answers 400 where the rest answers 422)",
    401: "no API key, or one that is malformed, unknown, expired or revoked",
    403: "the key's role (or jurisdiction) does not allow this",
    404: "no such resource, or one outside the key's jurisdiction (the same answer)",
    408: "the request body did not arrive within the time limit",
    409: "the request conflicts with stored data",
    412: "If-Match does not match the current version (ETag)",
    413: "the request body is over the size limit",
    415: "the body's media type is not one this operation reads",
    422: "invalid input: each problem is in `errors` with its location",
    428: "If-Match is required (send the ETag you read)",
    429: "over the rate limit; Retry-After says when to try again",
    503: "the database is unreachable or the query ran past the statement timeout; retry later",
}
HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": 'Bearer realm="borderwatch"'},
    429: {"Retry-After": "seconds until the limit admits another request"},
    503: {"Retry-After": "seconds to wait before retrying"},
}

# Every route behind an API key can answer these (main.py adds them to those routers).
KEYED = (401, 429, 503)
# app/bodies.py reads the body of every request with one of these methods before the route runs
WITH_BODY = ("post", "put", "patch", "delete")
# the 422 of an operation whose other invalid input is 400 (OGC)
NUL_422 = "a NUL character in the path or the query string; other invalid input is 400"
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <key>`"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI response for one problem+json status (`description`: what it means here)."""
    response: dict[str, Any] = {
        "description": description or DESCRIPTIONS[status],
        "content": {PROBLEM_JSON: {"schema": {"$ref": REF_PREFIX + "Problem"}}},
    }
    if status in HEADERS:
        response["headers"] = {
            name: {"description": text, "required": True, "schema": {"type": "string"}}
            for name, text in HEADERS[status].items()
        }
    return response


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route or router: these statuses as problem+json."""
    return {status: problem_response(status) for status in statuses}


def install(app: FastAPI) -> None:
    """Finish the app's OpenAPI document (once, when it is first asked for)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            finish(generate())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def finish(doc: dict[str, Any]) -> None:
    """Shared schemas, problem+json for invalid input, hoisted `$defs` and security, in place.

    A route may answer invalid input with another status than 422 (the OGC API's 400): it says
    so with `openapi_extra={INVALID_INPUT: 400}`."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    _add(schemas, SCHEMAS)
    for _path, method, operation in _operations(doc):
        responses = operation.setdefault("responses", {})
        status = operation.pop(INVALID_INPUT, 422)
        validation = responses.get("422")
        if validation is not None and _is_fastapi_422(validation):
            del responses["422"]
            responses.setdefault(str(status), problem_response(status))
        # what the body middleware answers before any route runs: a NUL anywhere in the URL
        # (422), a body over the size limit (413) or slower than the deadline (408)
        responses.setdefault("422", problem_response(422, None if status == 422 else NUL_422))
        if method in WITH_BODY:
            responses.setdefault("408", problem_response(408))
            responses.setdefault("413", problem_response(413))
        body = operation.get("requestBody", {})
        for media in body.get("content", {}).values():
            if "schema" in media:
                media["schema"] = _hoist(media["schema"], schemas)
        if "401" in responses:
            operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
    if not any(_refers(doc, name) for name in ("HTTPValidationError", "ValidationError")):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    doc["components"].setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch", "head", "options"):
                yield path, method, operation


def _is_fastapi_422(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref") == REF_PREFIX + "HTTPValidationError")


def _add(schemas: dict[str, Any], new: dict[str, dict[str, Any]]) -> None:
    for name, schema in new.items():
        if name in schemas and schemas[name] != schema:
            raise ValueError(f"two different OpenAPI schemas named {name!r}")
        schemas[name] = copy.deepcopy(schema)


def _hoist(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """A pydantic model's schema written inline (openapi_extra), with its `$defs` moved to the
    components and its references rewritten: OpenAPI tools do not resolve `#/$defs/…`."""
    defs = schema.get("$defs")
    if not defs:
        return schema
    rest = {k: v for k, v in schema.items() if k != "$defs"}
    moved = _rewrite({**defs, "": rest})
    _add(schemas, {k: v for k, v in moved.items() if k})
    return dict(moved[""])


def _rewrite(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _rewrite(v) for k, v in value.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = REF_PREFIX + ref.removeprefix("#/$defs/")
        return out
    if isinstance(value, list):
        return [_rewrite(v) for v in value]
    return value


def _refers(value: Any, name: str) -> bool:
    if isinstance(value, dict):
        if value.get("$ref") == REF_PREFIX + name:
            return True
        return any(_refers(v, name) for k, v in value.items() if k != "components")
    if isinstance(value, list):
        return any(_refers(v, name) for v in value)
    return False


def for_oas30(schema: Any) -> Any:
    """A schema of this module or of app/geo/geojson.py written as OpenAPI 3.0 (/ogc/api): a
    type list with null becomes `nullable`, a oneOf with `{type: null}` a nullable allOf."""
    if isinstance(schema, list):
        return [for_oas30(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: for_oas30(v) for k, v in schema.items()}
    kinds = out.get("type")
    if isinstance(kinds, list):
        rest = [k for k in kinds if k != "null"]
        if len(rest) != 1:
            raise ValueError(f"no OpenAPI 3.0 form for type {kinds}")
        out["type"] = rest[0]
        if "null" in kinds:
            out["nullable"] = True
    one_of = out.get("oneOf")
    if isinstance(one_of, list) and {"type": "null"} in one_of:
        rest = [s for s in one_of if s != {"type": "null"}]
        del out["oneOf"]
        out["nullable"] = True
        if len(rest) == 1:
            out["allOf"] = rest
        else:
            out["oneOf"] = rest
    return out
