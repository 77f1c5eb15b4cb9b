"""Engine, sessions and the request-scoped session dependency."""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, suppress
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import Dialect, Engine, ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from app.config import Settings, async_url
from app.errors import CONNECTION_LOST, DATABASE_DOWN, Unavailable, database_failure
from app.geo.spatial import SRID_UTM48N, SRID_WEB_MERCATOR, SRID_WGS84

log = logging.getLogger("borderwatch")

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
# the pair of SRIDs, many times the cost of the transforms after it (docs/performance.md);
# done at connect, no request pays it. Web Mercator: tiles; UTM 48N: hot spots, clusters.
WARM_SQL = (
    f"SELECT ST_Transform(p, {SRID_WEB_MERCATOR}), ST_Transform(p, {SRID_UTM48N})"
    f" FROM ST_SetSRID(ST_MakePoint(105, 16), {SRID_WGS84}) AS p"
)


def _warm(dbapi_connection: Any, _record: Any) -> None:
    # a database before its first migration has no PostGIS yet: nothing to warm
    with suppress(asyncpg.UndefinedFunctionError):
        dbapi_connection.run_async(lambda conn: conn.execute(WARM_SQL))


# A connection back from the pool is checked with one round trip only when it has been idle
# this long, or when it was last returned before a database failure was seen (PoolCheck).
# SQLAlchemy's own pre-ping checks every checkout, in a transaction of its own (BEGIN, ping,
# ROLLBACK): more per request than a small tile costs PostgreSQL (docs/performance.md). A
# connection lost while in steady use fails its statement instead: that request answers 503
# (app/errors.py), the connection is dropped, and every other one is checked before its next
# use. See docs/decisions.md.
# Parallel workers made a 1 000-feature page at 1 M incidents twice as slow here (2 cores):
# starting and feeding four workers (the page and the count each Gather) costs more than they
# save, and PostGIS's costly ST_Intersects tips a list page into a parallel plan. The parallel
# plan run by the leader alone is the fastest; see docs/decisions.md. For one transaction.
LEADER_ONLY = text("SET LOCAL max_parallel_workers = 0")
IDLE_PING_S = 10.0
# How long a request waits for a free connection when all are in use before it answers 503
# (SQLAlchemy's default is 30 s).
POOL_TIMEOUT_S = 10.0
# a connection-level failure: the connection in use (or the server) is gone
GONE = frozenset({CONNECTION_LOST, DATABASE_DOWN})


class PoolCheck:
    """The pool's connection check (pool events) and its memory of the last database failure,
    one per engine.

    After a failure (a lost connection, a refused connect, a failed ping), every connection
    returned to the pool before it is pinged at its next checkout, however briefly idle: after
    a database restart the pool then drops its dead connections before a request can use one,
    and keeps the live ones (SQLAlchemy's own answer, invalidating the whole pool, happens only
    for failures that pass through it, not for statements run on the driver connection)."""

    def __init__(self) -> None:
        self.failed_at = -math.inf  # time.monotonic() of the last failure seen

    def failed(self) -> None:
        """Note a connection-level failure: check every pooled connection before its next use."""
        self.failed_at = time.monotonic()

    def returned(self, _dbapi_connection: Any, record: Any) -> None:
        """`checkin`: remember when the connection came back."""
        record.info["idle_since"] = time.monotonic()

    def checkout(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        """`checkout`: ping a connection idle past IDLE_PING_S or returned before a failure."""
        since = record.info.get("idle_since")
        if since is None:
            return  # a new connection
        if time.monotonic() - since < IDLE_PING_S and since > self.failed_at:
            return  # one in steady use
        try:
            dbapi_connection.run_async(lambda conn: conn.fetchval("SELECT 1"))
        except Exception as exc:
            if database_failure(exc) in GONE:
                self.failed()  # the others made before now are checked too
            # the pool discards this connection and checks out another (SQLAlchemy's protocol)
            raise DisconnectionError(f"pooled connection is gone: {exc}") from exc

    def handle_error(self, context: ExceptionContext) -> None:
        """`handle_error`: classify as app/errors.py does; a lost connection is a disconnect
        (dropped with every connection made before it) even when the asyncpg dialect does not
        see it as one yet, e.g. 57P01 while the socket is still open."""
        detail = database_failure(context.original_exception)
        if detail in GONE:
            self.failed()
        if detail == CONNECTION_LOST and context.connection is not None:
            context.is_disconnect = True


_CHECKS: weakref.WeakKeyDictionary[Engine, PoolCheck] = weakref.WeakKeyDictionary()


class CountingPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio queue pool, counting the checkouts that wait because every
    connection it may open is in use (`waiting`, read by /metrics: app/observe/metrics.py).

    SQLAlchemy has no event for the start of a checkout, so the count is kept here; whether a
    checkout will wait is QueuePool's own test (overflow at its maximum)."""

    waiting = 0

    def _do_get(self) -> ConnectionPoolEntry:
        if self._max_overflow < 0 or self.overflow() < self._max_overflow:
            return super()._do_get()
        self.waiting += 1
        try:
            return super()._do_get()
        finally:
            self.waiting -= 1


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    """An asyncpg engine with a statement timeout and a pool whose connections are warmed
    (WARM_SQL) when they are made and checked when they come back after IDLE_PING_S or after a
    database failure (PoolCheck)."""
    engine = create_async_engine(
        async_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        # the most recently returned connection first: a few hot backends (warm caches) serve
        # a steady load faster than all of them in turn (docs/performance.md), and the rest
        # stay idle until a burst needs them
        pool_use_lifo=True,
        pool_timeout=POOL_TIMEOUT_S,
        poolclass=CountingPool,
        connect_args={
            "server_settings": {
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "application_name": "borderwatch",
                "TimeZone": "UTC",
                # asyncpg prepares every statement; a generic plan (after 5 runs) cannot see
                # the bbox or time values and picks far slower plans for lists
                "plan_cache_mode": "force_custom_plan",
                # JIT compiling costs the hot-spot count a third of its time, and our
                # statements are short or dominated by PostGIS calls JIT cannot speed up
                "jit": "off",
            },
            "timeout": 10,
        },
    )
    check = _CHECKS[engine.sync_engine] = PoolCheck()
    event.listen(engine.sync_engine, "connect", _warm)
    event.listen(engine.sync_engine, "checkin", check.returned)
    event.listen(engine.sync_engine, "checkout", check.checkout)
    event.listen(engine.sync_engine, "handle_error", check.handle_error)
    return engine


async def fill_pool(engine: AsyncEngine, size: int) -> None:
    """Open `size` connections at once and hand them back to the pool, so that the first burst
    of requests (a map asks for a dozen tiles at once) finds them ready instead of each making
    its own (connect, backend start, WARM_SQL)."""
    stack = AsyncExitStack()
    async with stack:
        for _ in range(size):
            await stack.enter_async_context(engine.connect())


class DriverStatement:
    """A Core statement compiled once, for a dialect and with the values it binds itself, to
    run on the asyncpg connection directly with the values that change per call.

    For a small statement run very often (a map tile): each execution through SQLAlchemy costs
    CPU (cache key, execution context, cursor) comparable to the tile itself, and asyncpg's
    `fetchrow` asks
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
    if one has begun). A database failure is Unavailable (503) as through SQLAlchemy
    (app.errors.database_failure); a lost connection is also invalidated, so the pool never
    hands it out, and the pool checks its other connections before their next use."""
    raw: asyncpg.Connection | None = (await conn.get_raw_connection()).driver_connection
    if raw is None:  # the pooled connection was invalidated and holds no driver connection
        raise Unavailable(CONNECTION_LOST)
    driver = raw
    try:
        return await driver.fetchrow(statement.sql, *statement.args(params))
    except Exception as exc:
        detail = database_failure(exc)
        if detail in GONE or driver.is_closed():
            check = _CHECKS.get(conn.sync_engine)
            if check is not None:
                check.failed()
            await conn.invalidate(exc)
        if detail is None:
            raise
        raise Unavailable(detail) from exc


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
    """One session per request: on the primary (the app's session factory), or on a read
    replica when the app has some and the request may read there (app/replicas.py decides)."""
    replicas = getattr(request.app.state, "replicas", None)
    if replicas is None:
        factory: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
        session = factory()
    else:
        session = await replicas.session_for(request)
    try:
        yield session
    except Exception as exc:
        if replicas is not None:  # a replica that failed: the read is answered on the primary
            replicas.failed(session, request, exc)
        raise
    finally:
        try:
            await session.close()
        except Exception as exc:
            # the database went away after the answer was made (its rollback on a dead
            # connection fails): the pool drops that connection; nothing is left to report
            if database_failure(exc) is None:
                raise
            log.warning("database connection lost while closing a session: %s", exc)


SessionDep = Annotated[AsyncSession, Depends(get_session)]
