"""Security headers on every response: a strict Content-Security-Policy, nosniff, no framing,
no referrer.

The dashboard, the API docs and the OGC HTML pages load only their own files (no inline script
or style, no other origin except the optional raster base map); every other response (JSON,
GeoJSON, tiles, files) is data that no browser should run or frame. So a slip that let
incident text into the page as markup could not run a script or send the key anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings

COMMON: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
DATA_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


T = TypeVar("T")
MAX_PREFERENCE_HEADER = 1000  # characters of an Accept or Accept-Language header read


def _weight(params: list[str]) -> float:
    """The q of one item's parameters (1 when absent; 0 when unreadable or out of range)."""
    for p in params:
        key, _, value = p.strip().partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def preferred(header: str | None, choose: Callable[[str], T | None]) -> T | None:
    """What an Accept-style header prefers most (RFC 9110 §12.4.2): each item's token is read
    by `choose` (None: not something we serve), the highest q wins, the first listed on a tie;
    q=0 means "not this one". Never an error: a header we cannot read is as good as none."""
    best: tuple[float, int, T] | None = None
    for index, item in enumerate((header or "")[:MAX_PREFERENCE_HEADER].split(",")):
        token, *params = item.split(";")
        value = choose(token.strip().lower())
        if value is None:
            continue
        q = _weight(params)
        if q > 0 and (best is None or (-q, index) < (-best[0], best[1])):
            best = (q, index, value)
    return best[2] if best else None


def none_match(header: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names this ETag (weak comparison, as RFC 9110 asks for
    GET): the answer is then a 304. For tiles, TileJSON and photos alike."""
    if not header:
        return False
    for candidate in header.split(","):
        value = candidate.strip()
        if value == "*" or value.removeprefix("W/") == etag:
            return True
    return False


def page_csp(basemap_url: str | None) -> bytes:
    """The policy of our HTML pages: our own files only (MapLibre's workers come from blob:
    URLs), plus the base map's origin for its images when one is configured."""
    extra = ""
    if basemap_url:
        parts = urlsplit(basemap_url)
        host = parts.netloc
        if "{" in host:  # a template in the host name ({s}.tile…): any subdomain of the rest
            host = "*." + host.split(".", 1)[1] if "." in host else "*"
        extra = f" {parts.scheme}://{host}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; font-src 'self';"
        f" img-src 'self' data: blob:{extra}; connect-src 'self'{extra};"
        " worker-src 'self' blob:; child-src blob:; manifest-src 'self';"
        " frame-ancestors 'none'; base-uri 'none'; form-action 'none'; object-src 'none'"
    ).encode()


class SecurityHeaders:
    """Adds the headers to every HTTP response (a route's own Content-Security-Policy wins)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.page = (*COMMON, (b"content-security-policy", page_csp(settings.basemap_url)))
        self.data = (*COMMON, (b"content-security-policy", DATA_CSP))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                html, own = False, False
                for name, value in headers:
                    if name == b"content-type":
                        html = value.startswith(b"text/html")
                    elif name == b"content-security-policy":
                        own = True
                extra = self.page if html else self.data
                headers.extend(extra[:-1] if own else extra)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
