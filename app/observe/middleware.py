"""One pure ASGI middleware per request: its id (X-Request-ID in and out), its metrics, and one
log line when its response has ended.

A plain ASGI class, not Starlette's BaseHTTPMiddleware (which runs the application in a task
of its own and wraps every body chunk): per request it costs a header scan, two clock reads,
a context variable, a wrapped `send` and, at the end, a dictionary lookup, three metric updates
and the log line (docs/observability.md has the measured figure).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from asyncio import CancelledError
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observe.context import request_id
from app.observe.metrics import METHODS, OTHER, UNMATCHED, Metrics

HEADER = b"x-request-id"
# an incoming id is kept when it is this short and made of these characters (it goes into log
# lines, response headers and problem bodies as it is); anything else is replaced by a new id
MAX_ID = 64
SAFE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,%d}" % MAX_ID)
CLIENT_CLOSED = 499  # the client went away before the response began (nginx's convention)

access_log = logging.getLogger("borderwatch.requests")


def given_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The request's own X-Request-ID when it is safe to repeat, else None."""
    for name, value in headers:
        if name == HEADER:
            return value.decode("ascii") if SAFE_ID.fullmatch(value) else None
    return None


def route_template(scope: Scope) -> str:
    """The template of the route that answered (`/incidents/{incident_id}`), the mount's
    (`/static/{path}`), or UNMATCHED: never the path itself, which carries ids."""
    route = scope.get("route")
    template: str | None = getattr(route, "path_format", None)
    if template is not None:
        return template
    if scope.get("endpoint") is not None and "app_root_path" in scope:  # a mounted app
        return str(scope["root_path"])[len(scope["app_root_path"]) :] + "/{path}"
    return UNMATCHED


class RequestObserver:
    """The middleware (see the module's text)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # made ids: this app's random prefix and a counter (a tenth of uuid4's cost); each
        # worker process builds its own app, so two processes never share a prefix
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with its id set; count and log it when its response has ended."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = given_id(scope["headers"]) or f"{self._prefix}{next(self._count):08x}"
        rid_header = (HEADER, rid.encode("ascii"))
        token = request_id.set(rid)
        state: dict[str, Any] = scope.setdefault("state", {})  # request.state (the principal)
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                # a 500 made by app/errors.py outside this middleware may carry it already
                if status < 500 or all(name != HEADER for name, _ in headers):
                    headers.append(rid_header)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException as exc:
            # the id stays set: the 500 that Starlette builds outside this middleware shows it
            if not status:
                status = CLIENT_CLOSED if isinstance(exc, CancelledError) else 500
            self._done(scope, state, rid, status, start)
            raise
        request_id.reset(token)
        self._done(scope, state, rid, status, start)

    def _done(
        self, scope: Scope, state: dict[str, Any], rid: str, status: int, start: float
    ) -> None:
        seconds = time.perf_counter() - start
        route = route_template(scope)
        method = scope["method"]
        self.metrics.observe(route, method, status, seconds)
        if access_log.isEnabledFor(logging.INFO):
            principal = state.get("principal")
            principal_id = getattr(principal, "id", None)
            ms = round(seconds * 1000, 2)
            method = method if method in METHODS else OTHER
            access_log.info(
                "%s %s %d %.2f ms",
                method,
                route,
                status,
                ms,
                extra={
                    "request_id": rid,
                    "principal_id": principal_id,
                    "route": route,
                    "method": method,
                    "status": status,
                    "duration_ms": ms,
                },
            )
