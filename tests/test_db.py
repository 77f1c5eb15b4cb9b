"""The connection pool: filled when the app starts, every connection warmed when it is made."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import ARRAY, DateTime, Integer, String, bindparam, func, literal, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import db
from app.config import Settings
from app.db import WARM_SQL
from app.errors import CONNECTION_LOST, STATEMENT_TIMEOUT, Unavailable
from app.main import create_app

PROBLEM = "application/problem+json"


async def test_pool_is_filled_and_warmed_at_start(engine: AsyncEngine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    # no dashboard warmer: its statements would run on these connections after WARM_SQL
    settings = Settings(
        environment="test", database_url=url, db_pool_size=3, dashboard_warm_gap_s=0
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        # the pool holds its three connections from the start (the live feed's hub, started
        # with the app, may be using one of them for its first round)
        pool = app.state.engine.pool
        assert pool.checkedin() + pool.checkedout() == 3

    # every connection runs the warm-up when it is made: an engine of our own, filled as the
    # app fills its pool, with nothing else running on it (the app's hub and its workers may
    # run their first statements on the app's connections at any moment after start)
    own = db.create_engine(url, settings)
    try:
        warmed_before = await _idle_after_warm_up(engine)
        await db.fill_pool(own, 3)
        assert own.pool.checkedin() == 3  # type: ignore[attr-defined]
        # the three new connections ran the warm-up last (the test engine's own idle
        # connections ran other statements)
        assert await _idle_after_warm_up(engine) == warmed_before + 3
    finally:
        await own.dispose()


async def _idle_after_warm_up(engine: AsyncEngine) -> int:
    """The app's idle connections to this database whose last statement was the warm-up."""
    async with engine.connect() as conn:
        last = (
            await conn.execute(
                text(
                    "SELECT query FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND application_name = 'borderwatch' AND state = 'idle'"
                )
            )
        ).scalars()
        return sum(q == WARM_SQL for q in last)


async def _pool_idle(app_engine: AsyncEngine) -> None:
    """Wait (bounded) until no connection of the app's pool is checked out."""
    for _ in range(200):
        if app_engine.pool.checkedout() == 0:  # type: ignore[attr-defined]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the app's pool stayed busy")


async def _backends(app_engine: AsyncEngine, n: int) -> list[int]:
    """The backend PIDs of the app's n pooled connections (all checked out at once)."""
    stack = AsyncExitStack()
    async with stack:
        conns = [await stack.enter_async_context(app_engine.connect()) for _ in range(n)]
        return [int((await c.execute(text("SELECT pg_backend_pid()"))).scalar_one()) for c in conns]


async def _terminate(engine: AsyncEngine, pids: list[int]) -> None:
    async with engine.connect() as conn:
        await conn.execute(
            text("SELECT pg_terminate_backend(p) FROM unnest(CAST(:pids AS int[])) AS p"),
            {"pids": pids},
        )
        # wait (bounded) until PostgreSQL has ended them
        for _ in range(100):
            await conn.execute(text("SELECT pg_stat_clear_snapshot()"))  # read it afresh
            left = await conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(CAST(:pids AS int[]))"),
                {"pids": pids},
            )
            if left.scalar_one() == 0:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"backends {pids} did not end")


async def test_lost_connections_cost_one_503_then_recover(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database drops every pooled connection (as a restart does): with connections in
    steady use (no ping), one request answers 503 problem+json and the next ones are served;
    with connections idle past IDLE_PING_S, the ping finds them gone and no request fails."""
    url = engine.url.render_as_string(hide_password=False)
    # the live feed's reader polls the log (events_poll_s) with a pooled connection, and may hold
    # a third one (an overflow) while the test takes the pool's two: it polls rarely here, and
    # the test waits until its first round has given its connection back
    settings = Settings(
        environment="test", database_url=url, db_pool_size=2, public_reference_data=True,
        events_poll_s=60,
    )  # fmt: skip
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        await app.state.event_hub.ready()
        await _pool_idle(app.state.engine)
        assert (await client.get("/border-posts")).status_code == 200
        monkeypatch.setattr(db, "IDLE_PING_S", 3600.0)
        await _terminate(engine, await _backends(app.state.engine, 2))
        lost = await client.get("/border-posts")
        assert lost.status_code == 503 and lost.headers["content-type"] == PROBLEM
        assert "retry-after" in lost.headers, lost.json()
        for _ in range(3):
            assert (await client.get("/border-posts")).status_code == 200

        monkeypatch.setattr(db, "IDLE_PING_S", 0.0)  # every connection counts as idle
        await _pool_idle(app.state.engine)
        await _terminate(engine, await _backends(app.state.engine, 2))
        for _ in range(3):
            assert (await client.get("/border-posts")).status_code == 200


async def test_driver_statement_binds_like_sqlalchemy(engine: AsyncEngine) -> None:
    """A statement run on the driver connection gives what SQLAlchemy gives for the same values:
    an IN list expanded from the statement's own values, a per-call value used twice, a
    timestamp, an array."""
    t = (
        func.unnest(literal(["a", "b", "c", "d"], ARRAY(String)))
        .table_valued("v")
        .render_derived(name="t")
    )
    since = datetime(2025, 5, 5, 5, 5, 5, tzinfo=UTC)
    stmt = select(
        func.string_agg(t.c.v, literal(","), type_=String),
        bindparam("n", type_=Integer) * 2 + bindparam("n", type_=Integer),
        literal(since, DateTime(timezone=True)),
    ).where(t.c.v.in_(["b", "d"]), t.c.v != bindparam("skip", type_=String))
    async with engine.connect() as conn:
        statement = db.DriverStatement(stmt, conn.dialect, {"n": 0, "skip": ""})
        for n, skip in ((1, ""), (7, "d")):
            want = (await conn.execute(stmt, {"n": n, "skip": skip})).one()
            got = await db.fetch_row(conn, statement, {"n": n, "skip": skip})
            assert got is not None and tuple(got) == tuple(want)
        assert tuple(want) == ("b", 21, since)
        with pytest.raises(KeyError):
            statement.args({"n": 1})  # every per-call value is required


async def test_driver_statement_timeout_and_lost_connection_are_503(engine: AsyncEngine) -> None:
    """On the driver connection as through SQLAlchemy: a statement timeout and a connection the
    database dropped are Unavailable (503 problem+json); the dropped one is invalidated, so the
    pool never hands it out again."""
    async with engine.connect() as conn:
        statement = db.DriverStatement(
            select(func.pg_sleep(bindparam("s"))), conn.dialect, {"s": 0}
        )
        await conn.execute(text("SET LOCAL statement_timeout = 50"))
        with pytest.raises(Unavailable) as timed_out:
            await db.fetch_row(conn, statement, {"s": 2.0})
        assert timed_out.value.detail == STATEMENT_TIMEOUT
    async with engine.connect() as conn:
        pid = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        await conn.commit()
        await _terminate(engine, [pid])
        with pytest.raises(Unavailable) as lost:
            await db.fetch_row(conn, statement, {"s": 0.0})
        assert lost.value.detail == CONNECTION_LOST
        assert conn.invalidated
    async with engine.connect() as conn:  # the pool serves a working connection again
        assert await db.fetch_row(conn, statement, {"s": 0.0}) is not None


async def test_a_lost_connection_makes_the_pool_check_the_others(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database drops every pooled connection while they are in steady use (no idle ping):
    the first statement on the driver connection meets it (503), and from then on the pool
    pings each connection returned before that failure at its next checkout, so the dead ones
    are replaced before any other request uses them."""
    monkeypatch.setattr(db, "IDLE_PING_S", 3600.0)
    url = engine.url.render_as_string(hide_password=False)
    app_engine = db.create_engine(url, Settings(environment="test", db_pool_size=3))
    try:
        before = await _backends(app_engine, 3)
        await _terminate(engine, before)
        async with app_engine.connect() as conn:
            statement = db.DriverStatement(select(func.pg_backend_pid()), conn.dialect, {})
            with pytest.raises(Unavailable) as lost:
                await db.fetch_row(conn, statement, {})
            assert lost.value.detail == CONNECTION_LOST
        async with AsyncExitStack() as stack:  # all three at once: each stale one is checked
            conns = [await stack.enter_async_context(app_engine.connect()) for _ in range(3)]
            rows = [await db.fetch_row(c, statement, {}) for c in conns]
        after = {int(r[0]) for r in rows if r is not None}
        assert len(after) == 3 and not after & set(before)
    finally:
        await app_engine.dispose()
