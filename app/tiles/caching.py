"""HTTP caching of tiles and TileJSON: ETag, If-None-Match → 304, Cache-Control, Vary.

A tile URL that carries the layer's current version (`v=`) can be cached as immutable: when the
data change, the version and so the URL change. Without `v`, or with an old one, the response
must be revalidated (`no-cache`) and the ETag — which contains the version — answers 304 while
nothing changed. Responses depend on the key's scope and role, hence `private` and
`Vary: Authorization, X-API-Key`. See docs/tiles.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import Response

from app.headers import none_match

MVT = "application/vnd.mapbox-vector-tile"
IMMUTABLE = "private, max-age=86400, immutable"
REVALIDATE = "private, no-cache"
VARY = "Authorization, X-API-Key"


def etag(*parts: object) -> str:
    """A strong ETag from everything that decides the response body."""
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
    return f'"{digest}"'


def matches(request: Request, tag: str) -> bool:
    """Whether the request's If-None-Match names this ETag."""
    return none_match(request.headers.get("if-none-match"), tag)


def headers(tag: str, *, current: bool) -> dict[str, str]:
    """ETag, Cache-Control (immutable only for a URL with the current version) and Vary."""
    return {"ETag": tag, "Cache-Control": IMMUTABLE if current else REVALIDATE, "Vary": VARY}


def not_modified(tag: str, *, current: bool) -> Response:
    """304 with the caching headers."""
    return Response(status_code=304, headers=headers(tag, current=current))


def send(body: bytes, *, tag: str, current: bool, media_type: str) -> Response:
    """200 with the body (an empty body is an empty tile) and the caching headers."""
    return Response(body, media_type=media_type, headers=headers(tag, current=current))


async def respond(
    request: Request,
    *,
    tag: str,
    current: bool,
    media_type: str,
    make: Callable[[], Awaitable[bytes]],
) -> Response:
    """304 when the client holds this version, else the body `make()` builds."""
    if matches(request, tag):
        return not_modified(tag, current=current)
    return send(await make(), tag=tag, current=current, media_type=media_type)
