"""A database outage answers 503 problem+json, not 500."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.db import create_engine
from app.errors import (
    CONNECTION_LOST,
    DATABASE_BUSY,
    DATABASE_DOWN,
    STATEMENT_TIMEOUT,
    database_failure,
    log_failure,
)
from app.incidents import listing
from app.main import create_app
from conftest import app_client, make_key


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_database_down_is_503(settings: Settings) -> None:
    url = f"postgresql+asyncpg://nobody:secret@127.0.0.1:{_closed_port()}/nothing"
    engine = create_engine(url, settings)
    app = create_app(settings, engine=engine)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    # a well-formed key: checking it needs the database, which is down
    headers = {"Authorization": "Bearer bw_0123456789_" + "x" * 43}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            for path in ("/jurisdictions", "/borders", "/border-posts", "/readyz"):
                r = await client.get(path)
                assert r.status_code == 503, path
                assert r.headers["content-type"] == "application/problem+json"
                assert r.headers["retry-after"] == "5"
                assert r.json()["status"] == 503
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await engine.dispose()


async def test_statement_timeout_is_503_with_advice(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    key = await make_key(session, "admin")
    # the request's statements share the test's transaction: a 1 ms timeout cancels the query
    async with app_client(engine, session, settings, key) as c:
        await session.execute(text("SET LOCAL statement_timeout = 1"))
        r = await c.get("/analysis/hotspots", params={"area": "border-zone", "cell_km": 2})
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert "statement timeout" in r.json()["detail"]


def _through_sqlalchemy(error: Exception) -> sa_exc.DBAPIError:
    """`error` as SQLAlchemy's asyncpg dialect raises it: the adapter's Error made from it (a
    plain one, as for every PostgresError the adapter has no class for), in a DBAPIError."""
    # SQLAlchemy's asyncpg adapter classes are untyped
    dbapi = AsyncAdapt_asyncpg_dbapi(asyncpg)  # type: ignore[no-untyped-call]
    try:
        try:
            raise error
        except Exception as exc:
            raise dbapi.Error(exc.args[0], exc) from exc  # type: ignore[no-untyped-call]
    except dbapi.Error as adapted:
        wrapped = sa_exc.DBAPIError.instance("SELECT 1", None, adapted, dbapi.Error)
    assert type(wrapped) is sa_exc.DBAPIError  # no subclass Starlette could tell apart
    return wrapped


pg = asyncpg.exceptions


@pytest.mark.parametrize(
    ("error", "detail"),
    [
        # PostgreSQL refuses or ends connections: retry later
        (
            _through_sqlalchemy(pg.CannotConnectNowError("the database system is starting up")),
            DATABASE_DOWN,
        ),
        (pg.CannotConnectNowError("the database system is shutting down"), DATABASE_DOWN),
        (
            _through_sqlalchemy(
                pg.AdminShutdownError("terminating connection due to administrator command")
            ),
            CONNECTION_LOST,
        ),
        (
            _through_sqlalchemy(
                pg.CrashShutdownError(
                    "terminating connection because of crash of another server process"
                )
            ),
            CONNECTION_LOST,
        ),
        (
            _through_sqlalchemy(pg.TooManyConnectionsError("sorry, too many clients already")),
            DATABASE_BUSY,
        ),
        (
            _through_sqlalchemy(
                pg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
            ),
            CONNECTION_LOST,
        ),
        (pg.ConnectionFailureError("connection failure"), CONNECTION_LOST),
        (
            _through_sqlalchemy(
                pg.QueryCanceledError("canceling statement due to statement timeout")
            ),
            STATEMENT_TIMEOUT,
        ),
        (
            pg.InterfaceError("cannot call Connection.fetchrow(): connection is closed"),
            CONNECTION_LOST,
        ),
        (pg.InternalClientError("protocol is in an unexpected state"), CONNECTION_LOST),
        # the server cannot be reached, or the pool has no connection to give
        (
            ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 5432)"),
            DATABASE_DOWN,
        ),
        (OSError(errno.EHOSTUNREACH, "No route to host"), DATABASE_DOWN),
        (
            OSError(
                "Multiple exceptions: [Errno 111] Connect call failed ('::1', 5432, 0, 0),"
                " [Errno 111] Connect call failed ('127.0.0.1', 5432)"
            ),
            DATABASE_DOWN,
        ),
        (socket.gaierror(-2, "Name or service not known"), DATABASE_DOWN),
        (TimeoutError(), DATABASE_DOWN),
        (
            sa_exc.TimeoutError(
                "QueuePool limit of size 1 overflow 1 reached, connection timed out, timeout 0.20"
            ),
            DATABASE_BUSY,
        ),
        # anything else is a bug or bad data: 500
        (_through_sqlalchemy(pg.DivisionByZeroError("division by zero")), None),
        (_through_sqlalchemy(pg.UndefinedColumnError('column "x" does not exist')), None),
        (pg.InterfaceError("the server expects 1 argument for this query, 0 were passed"), None),
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), None),
        (ValueError("bad value"), None),
    ],
)
def test_database_failures_are_classified(error: BaseException, detail: str | None) -> None:
    assert database_failure(error) == detail


def test_background_failures_log_a_line_or_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """Background work (the warmer, the event feed, a snapshot build) that fails because the
    database is away logs one warning line with the 503 detail; a bug logs its traceback."""
    logger = logging.getLogger("borderwatch.test")
    with caplog.at_level(logging.INFO, logger="borderwatch.test"):
        try:
            raise _through_sqlalchemy(pg.ConnectionDoesNotExistError("closed mid-operation"))
        except Exception as exc:
            log_failure(logger, "warming tiles", exc)
        try:
            raise ValueError("bad value")
        except Exception as exc:
            log_failure(logger, "warming hot spots", exc)
    away, bug = caplog.records
    assert (away.levelno, away.getMessage()) == (
        logging.WARNING, f"warming tiles failed ({CONNECTION_LOST})"
    )  # fmt: skip
    assert away.exc_info is None
    assert (bug.levelno, bug.getMessage()) == (logging.ERROR, "warming hot spots failed")
    assert bug.exc_info is not None and bug.exc_info[0] is ValueError
    assert "Traceback" in caplog.text and "ValueError: bad value" in caplog.text


async def test_failure_while_starting_a_streamed_list_is_503(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list streams its body: its query runs before the 200 is sent, so a database that
    refuses it answers 503 problem+json instead of a 200 cut short."""

    async def refused(**_: object) -> AsyncIterator[bytes]:
        raise _through_sqlalchemy(pg.CannotConnectNowError("the database system is starting up"))
        yield b""  # type: ignore[unreachable]  # pragma: no cover - makes this an async generator

    monkeypatch.setattr(listing, "stream_page", refused)
    r = await client.get("/incidents")
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "5"
    assert r.json()["detail"] == DATABASE_DOWN


async def test_failure_in_a_middleware_is_503(engine: AsyncEngine, settings: Settings) -> None:
    """A middleware's database failure reaches the outermost handler: still a 503, and a
    non-database error there is still a 500 problem."""
    app = create_app(settings, engine=engine)
    raised: list[Exception] = []

    class Failing:
        def __init__(self, inner: ASGIApp) -> None:
            self.inner = inner

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                raise raised[0]
            await self.inner(scope, receive, send)

    app.add_middleware(Failing)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        raised.append(_through_sqlalchemy(pg.AdminShutdownError("terminating connection")))
        r = await c.get("/healthz")
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["detail"] == CONNECTION_LOST
        raised[0] = RuntimeError("a bug")
        r = await c.get("/healthz")
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/problem+json"
