"""The current request's id, for whatever runs inside the request (problem bodies, log lines)."""

from __future__ import annotations

from contextvars import ContextVar

# set by the middleware (app/observe/middleware.py) before the application runs; the tasks a
# request starts copy it. Left set after a request that raised, so that the 500 built outside
# the middleware (Starlette's ServerErrorMiddleware) still carries it.
request_id: ContextVar[str | None] = ContextVar("borderwatch_request_id", default=None)
