"""Engine, sessions and the request-scoped session dependency."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, suppress
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import MetaData, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from app.config import Settings, async_url

SRID_WGS84 = 4326

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING)


# Run once on every new connection: a backend's first ST_Transform loads PROJ's database for
# the pair of SRIDs (~16–20 ms each time here, against 0.2 ms afterwards); done at connect, no
# request pays it. 3857: tiles; 32648: hot spots, clusters (EPSG:32648, WGS 84 / UTM 48N).
WARM_SQL = (
    "SELECT ST_Transform(p, 3857), ST_Transform(p, 32648)"
    " FROM ST_SetSRID(ST_MakePoint(105, 16), 4326) AS p"
)


def _warm(dbapi_connection: Any, _record: Any) -> None:
    # a database before its first migration has no PostGIS yet: nothing to warm
    with suppress(asyncpg.UndefinedFunctionError):
        dbapi_connection.run_async(lambda conn: conn.execute(WARM_SQL))


# A connection back from the pool is checked with one round trip only when it has been idle
# this long. SQLAlchemy's own pre-ping checks every checkout, in a transaction of its own (BEGIN,
# ping, ROLLBACK): ~1.1 ms of CPU and ~1.9 ms per request here, more than a small tile costs
# PostgreSQL. A connection lost while in steady use fails its statement instead: SQLAlchemy then
# drops every connection of the pool made before the failure, and that one request answers 503
# (app/errors.py); the next ones get fresh connections. See docs/decisions.md.
IDLE_PING_S = 10.0


def _returned(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    since = record.info.get("idle_since")
    if since is None or time.monotonic() - since < IDLE_PING_S:
        return  # a new connection, or one in steady use
    try:
        dbapi_connection.run_async(lambda conn: conn.fetchval("SELECT 1"))
    except (
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.InternalClientError,
    ) as exc:
        # the pool discards this connection and checks out another (SQLAlchemy's protocol)
        raise DisconnectionError(f"pooled connection is gone: {exc}") from exc


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    """An asyncpg engine with a statement timeout and a pool whose connections are warmed
    (WARM_SQL) when they are made and checked when they come back after IDLE_PING_S."""
    engine = create_async_engine(
        async_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        # the most recently returned connection first: a few hot backends serve a steady load
        # (a z12 tile took 29–31 ms instead of 39 ms when requests cycled through all 20), and
        # the rest stay idle until a burst needs them
        pool_use_lifo=True,
        connect_args={
            "server_settings": {
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "application_name": "borderwatch",
                "TimeZone": "UTC",
                # asyncpg prepares every statement; a generic plan (after 5 runs) cannot see
                # the bbox or time values and picks plans that are 10x slower for lists
                "plan_cache_mode": "force_custom_plan",
                # JIT compiled the hot-spot count for 2 s of a 6 s query, and our statements
                # are short or dominated by PostGIS calls JIT cannot speed up
                "jit": "off",
            },
            "timeout": 10,
        },
    )
    event.listen(engine.sync_engine, "connect", _warm)
    event.listen(engine.sync_engine, "checkin", _returned)
    event.listen(engine.sync_engine, "checkout", _ping_if_idle)
    return engine


async def fill_pool(engine: AsyncEngine, size: int) -> None:
    """Open `size` connections at once and hand them back to the pool, so that the first burst
    of requests (a map asks for a dozen tiles at once) finds them ready instead of each making
    its own (~25 ms: connect, backend start, WARM_SQL)."""
    stack = AsyncExitStack()
    async with stack:
        for _ in range(size):
            await stack.enter_async_context(engine.connect())


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it is missing; True when it was created."""
    u = make_url(async_url(url))
    conn = await asyncpg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, database="postgres"
    )
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", u.database)
        if exists:
            return False
        # identifiers cannot be bound as parameters; quote it the PostgreSQL way
        quoted = '"' + str(u.database).replace('"', '""') + '"'
        await conn.execute(f"CREATE DATABASE {quoted} ENCODING 'UTF8' TEMPLATE template0")
        return True
    finally:
        await conn.close()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, from the app's session factory."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with factory() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
