"""Engine, sessions and the request-scoped session dependency."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, suppress
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from app.config import Settings, async_url
from app.errors import CONNECTION_LOST, STATEMENT_TIMEOUT, Unavailable

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
INTERNAL_CLIENT_ERROR = asyncpg.exceptions.InternalClientError


def _returned(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    since = record.info.get("idle_since")
    if since is None or time.monotonic() - since < IDLE_PING_S:
        return  # a new connection, or one in steady use
    try:
        dbapi_connection.run_async(lambda conn: conn.fetchval("SELECT 1"))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, INTERNAL_CLIENT_ERROR) as exc:
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


class DriverStatement:
    """A Core statement compiled once, for a dialect and with the values it binds itself, to
    run on the asyncpg connection directly with the values that change per call.

    For a small statement run very often (a map tile): each execution through SQLAlchemy costs
    ~0.4 ms of CPU (cache key, execution context, cursor), and asyncpg's `fetchrow` asks
    PostgreSQL for one row, which runs the plan without parallel workers (a portal that may be
    suspended never starts them), so no `SET LOCAL` round trip is needed to keep them away
    (docs/decisions.md). Lists in IN (…) are expanded once, from the statement's own values.
    """

    def __init__(self, stmt: ClauseElement, dialect: Dialect, params: Mapping[str, Any]) -> None:
        """Compile `stmt`; `params` is one call's values: their names are the ones that every
        call must give (the values themselves only serve to expand the statement)."""
        compiled = stmt.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)  # a statement, not DDL
        state = compiled.construct_expanded_state(dict(params))
        procs: Mapping[str, Any] = state.processors
        self.sql = state.statement
        self.names = tuple(state.positiontup or ())
        self.per_call = frozenset(params)
        self._procs = {n: procs[n] for n in self.per_call if procs.get(n) is not None}
        self._fixed = {
            n: (procs[n](v) if procs.get(n) is not None else v)
            for n, v in state.parameters.items()
            if n not in self.per_call
        }

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional values for one call (KeyError when one of `per_call` is missing)."""
        out = []
        for name in self.names:
            if name in self.per_call:
                value, proc = params[name], self._procs.get(name)
                out.append(proc(value) if proc else value)
            else:
                out.append(self._fixed[name])
        return out


async def fetch_row(
    conn: AsyncConnection, statement: DriverStatement, params: Mapping[str, Any]
) -> asyncpg.Record | None:
    """One row of `statement` on the connection's asyncpg connection (inside its transaction,
    if one has begun). A statement timeout or a lost connection is 503 as through SQLAlchemy
    (app/errors.py); a lost connection is also invalidated, so the pool never hands it out."""
    driver: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection
    try:
        return await driver.fetchrow(statement.sql, *statement.args(params))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, INTERNAL_CLIENT_ERROR) as exc:
        # a closed connection, or one whose protocol state broke (the server ended it while it
        # was idle, and asyncpg saw the notice only now)
        if driver.is_closed() or isinstance(exc, INTERNAL_CLIENT_ERROR):
            await conn.invalidate(exc)
            raise Unavailable(CONNECTION_LOST) from exc
        if isinstance(exc, asyncpg.QueryCanceledError):
            raise Unavailable(STATEMENT_TIMEOUT) from exc
        raise


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
