"""Observability: the request id, one log line per request, and /metrics (docs/observability.md).

`install(app, settings)` wires it into create_app(): the logging set-up, the metrics of this
app (`app.state.metrics`), the /metrics route and the middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from app.config import Settings


def install(app: FastAPI, settings: Settings) -> None:
    """Logging as the settings say, this app's metrics and /metrics; the middleware is added
    by `add_middleware(app)` last of all (outermost but for the security headers)."""
    from app.observe import logs, metrics, routes

    logs.configure(settings)
    app.state.metrics = metrics.Metrics(app)
    app.include_router(routes.router)
    mirror = app.state.metrics.mirror
    if mirror is not None:  # several processes: copy this one's pool, feed, limiter figures
        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
            async with inner(app) as state, mirror.running():
                yield state

        app.router.lifespan_context = lifespan


def add_middleware(app: FastAPI) -> None:
    """Add the request middleware (after every other middleware but the security headers, so
    that it times and counts their own answers too)."""
    from app.observe.middleware import RequestObserver

    app.add_middleware(RequestObserver, metrics=app.state.metrics)
