"""create_app(): middleware, error handlers, the routers of app/api.py, engine lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from app import api, errors, observe, openapi
from app.alerts import raising, webhooks
from app.analysis import warm
from app.auth.deps import FailedAuthLimiter, RateLimiter
from app.bodies import body_middleware
from app.config import Settings, get_settings
from app.db import create_engine, fill_pool, sessionmaker
from app.events.hub import EventHub
from app.headers import SecurityHeaders
from app.incidents import rules
from app.replicas import LSN_HEADER, ReplicaMiddleware, ReplicaSet
from app.runtime import database_url
from app.spool import SpoolDir, sweep
from app.tiles.emerging import EmergingCache
from app.tiles.hotspots import HotspotCache

log = logging.getLogger("borderwatch")

DESCRIPTION = """
Geospatial incident mapping for border areas: incidents, border posts and boundaries in
PostGIS, served as GeoJSON (RFC 7946, lon/lat) to the dashboard and to GIS tools.

Errors are `application/problem+json` (RFC 9457). Default boundaries are Natural Earth 1:10m:
national borders are generalised (lines sit about 1–4 km from the true border), so distances
near the border are approximate; operators can load better boundaries
(`borderwatch geodata load --from FILE`).
"""


def create_app(settings: Settings | None = None, engine: AsyncEngine | None = None) -> FastAPI:
    """The ASGI application; pass an engine to share one (tests), or let it create its own."""
    settings = settings or get_settings()
    rules.use_time_zone(settings.time_zone)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = engine is None
        # spool files of API processes that were killed (their directories' locks are free)
        await asyncio.to_thread(sweep)
        app.state.engine = engine or create_engine(database_url(settings), settings)
        app.state.sessionmaker = sessionmaker(app.state.engine)
        app.state.event_hub.bind(app.state.engine, app.state.sessionmaker)
        if replicas is not None:  # reads that tolerate a lag (app/replicas.py)
            replicas.bind(app.state.engine, app.state.sessionmaker)
            await replicas.check()
            replicas.start()
        app.state.event_hub.after_round.append(
            raising.worker(app.state.sessionmaker, cooperation_km=settings.cooperation_km)
        )
        sender = webhooks.Sender(app.state.sessionmaker, settings)
        app.state.event_hub.after_round.append(sender)
        if own:
            try:
                await fill_pool(app.state.engine, settings.db_pool_size)
            except (OSError, SQLAlchemyError) as exc:  # the database may come up later
                log.warning("could not open the connection pool at start: %s", exc)
        if own:  # alerts are raised and webhooks sent whether anyone listens or not
            await app.state.event_hub.start()
        try:
            yield
        finally:
            await app.state.event_hub.close()
            await sender.close()
            await asyncio.to_thread(app.state.spool.close)
            if replicas is not None:
                await replicas.close()
            if own:
                await app.state.engine.dispose()

    app = FastAPI(
        title="Borderwatch",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # /docs is our own page (Swagger UI from npm, no inline script: app/web/routes.py)
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    replicas = (
        ReplicaSet(settings.read_database_url, settings) if settings.read_database_url else None
    )
    app.state.replicas = replicas  # app.state.engine stays the primary
    app.state.read_engines = replicas.engines() if replicas is not None else []
    app.state.rate_limiter = RateLimiter(settings.rate_limit)
    app.state.tile_rate_limiter = RateLimiter(settings.tile_rate_limit)
    app.state.hotspot_cache = HotspotCache()  # the Gi* grids of the hot-spot tiles
    app.state.emerging_cache = EmergingCache()  # the space-time cubes of the emerging layer
    app.state.spool = SpoolDir()
    app.state.event_hub = EventHub(  # the live feed's reader (app/events/hub.py)
        poll_s=settings.events_poll_s, retention_s=settings.events_retention_hours * 3600
    )
    # bodies are read whole (bounded in size and time) before any route takes a connection;
    # added first, so that the middleware added after it (CORS) wraps its 408/413/422 answers
    app.add_middleware(body_middleware, settings=settings, spool=app.state.spool)
    app.state.auth_failure_limiter = FailedAuthLimiter(settings.auth_failure_limit)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "If-Match",
                "Idempotency-Key",
                "Last-Event-ID",
                "X-Request-ID",
                LSN_HEADER,
            ],
            expose_headers=["ETag", "Location", "Retry-After", "X-Request-ID", LSN_HEADER],
        )
    if engine is not None:  # usable without the lifespan (e.g. an ASGI test transport)
        app.state.engine = engine
        app.state.sessionmaker = sessionmaker(engine)
        app.state.event_hub.bind(engine, app.state.sessionmaker)
        if replicas is not None:
            replicas.bind(engine, app.state.sessionmaker)
    if engine is None and settings.dashboard_warm_gap_s > 0:
        # the dashboard's caches filled in the background (not for apps sharing a test's
        # engine: their caches are the test's business)
        warm.install(app)
    errors.install(app)
    openapi.install(app)
    api.include(app)
    if replicas is not None:  # read-your-writes and the fallback to the primary
        app.add_middleware(ReplicaMiddleware, replicas=replicas)
    observe.install(app, settings)  # logging, metrics, /metrics (app/observe/)
    # request ids, metrics and the request log line: around every other middleware's answers
    observe.add_middleware(app)
    # outermost: every response gets the headers, the middleware's own answers included
    app.add_middleware(SecurityHeaders, settings=settings)
    return app
