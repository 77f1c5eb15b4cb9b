"""HTTP caching of tiles and TileJSON: ETag, If-None-Match → 304, Cache-Control, Vary.

A tile URL that carries the layer's current version (`v=`) can be cached as immutable: when the
data change, the version and so the URL change. Without `v`, or with an old one, the response
must be revalidated (`no-cache`) and the ETag — which contains the version — answers 304 while
nothing changed. Responses depend on the key's scope and role, hence `private` and
`Vary: Authorization, X-API-Key`. See docs/tiles.md.

SnapshotCache keeps aggregate tiles in the process, keyed by the layer versions they were made
from (docs/tiles.md, "Aggregate tiles kept per version").
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager

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


class SnapshotCache:
    """Tile bodies of one data snapshot, in this process: a body is served only to a request
    that read the same `stamp` (the layer versions it was made from), so it is never stale.
    A fill under another stamp starts a new generation (the old one can no longer be asked
    for once the versions moved on); bodies are evicted least recently used past `max_bytes`.
    One fill per (stamp, key) at a time: requests for a tile being made wait for it."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._stamp: Hashable = None
        self._bodies: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0
        self._filling: dict[tuple[Hashable, Hashable], asyncio.Event] = {}

    def clear(self) -> None:
        """Forget every body (and the counters)."""
        self._stamp, self._size, self.hits, self.misses = None, 0, 0, 0
        self._bodies.clear()

    def get(self, stamp: Hashable, key: Hashable) -> bytes | None:
        """The body kept for `key` under `stamp`, or None."""
        body = self._bodies.get(key) if stamp == self._stamp else None
        if body is None:
            self.misses += 1
            return None
        self.hits += 1
        self._bodies.move_to_end(key)
        return body

    def put(self, stamp: Hashable, key: Hashable, body: bytes) -> None:
        """Keep `body` for `key` under `stamp` (a new stamp drops the old generation)."""
        if stamp != self._stamp:
            self._bodies.clear()
            self._stamp, self._size = stamp, 0
        old = self._bodies.pop(key, None)
        self._size += len(body) - (len(old) if old is not None else 0)
        self._bodies[key] = body
        while self._size > self.max_bytes and self._bodies:
            _, dropped = self._bodies.popitem(last=False)
            self._size -= len(dropped)

    @asynccontextmanager
    async def filling(self, stamp: Hashable, key: Hashable) -> AsyncIterator[bool]:
        """Enter as the one request making (stamp, key) (yields True), or after the request
        that was making it finished (yields False: read the cache again)."""
        flight = (stamp, key)
        waiting = self._filling.get(flight)
        if waiting is not None:
            await waiting.wait()
            yield False
            return
        done = self._filling[flight] = asyncio.Event()
        try:
            yield True
        finally:
            del self._filling[flight]
            done.set()
