"""Rate limits counted in PostgreSQL, so that every API process (and every host) shares them.

The counters live in the UNLOGGED table `rate_limit_counter` and are taken by the function
`rate_limit_take` (migration 0021): a sliding window counter per (limit, key), under the row's
lock, so two processes never both take the last request of a window.

Cost: a request's checks are one call, never inside the request's own session (a write there
would make app/tiles/versions.py's WRITING true and bypass the aggregate tile cache) and never
on a connection of the pool (a request already holds one while it is checked: waiting for a
second could stall a full pool). Each process keeps ONE connection of its own for counting, and
the checks of every request that arrive while a call is running go together in the next call
(like a group commit): one round trip per batch, however many requests wait. Measured in
bench/bench_ratelimit.py; the choice in docs/decisions.md, "One rate limit for every process".

When PostgreSQL cannot be reached for counting, requests pass uncounted (fail open) with a
warning in the log (at most one per attempt to reconnect, one a second) and the count in
/metrics' `borderwatch_rate_limit_unchecked_total`: a request that needs the database answers
503 by itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from limits import RateLimitItem, parse
from sqlalchemy import BigInteger, DateTime, Integer, Text, event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.errors import TooManyRequests

log = logging.getLogger("borderwatch")

CONNECT_TIMEOUT_S = 2.0  # a counting call or a connection slower than this: the batch passes
CALL_TIMEOUT_S = 2.0
RETRY_S = 1.0  # after a failure, requests pass uncounted this long before the next attempt
WAIT_S = 2 * CALL_TIMEOUT_S + CONNECT_TIMEOUT_S + 1  # the longest a request waits to be counted
CLEANUP_S = 60.0  # windows past both of their periods are deleted this often (per process)
APPLICATION_NAME = "borderwatch-ratelimit"  # + the process id (pg_stat_activity)

TAKE = "SELECT allowed, wait FROM rate_limit_take($1, $2, $3, $4, $5, $6)"
CLEANUP = "DELETE FROM rate_limit_counter WHERE expires_at < now()"


class RateLimitCounter(Base):
    """One window of one limit for one key (UNLOGGED; rows live two periods)."""

    __tablename__ = "rate_limit_counter"

    name: Mapped[str] = mapped_column(Text, primary_key=True)  # the limit and its spec
    key: Mapped[str] = mapped_column(Text, primary_key=True)  # a principal id, an address
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch seconds
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Check:
    """One limit to check for one key: `take` counts the request when allowed (False: only
    look, as the failed-authentication limit does for a request that authenticated)."""

    name: str
    key: str
    item: RateLimitItem
    take: bool = True


@dataclass(frozen=True)
class Refusal:
    """The check that refused a request, and the seconds until one more would be allowed."""

    check: Check
    wait_s: float


class CountingUnavailable(Exception):
    """PostgreSQL could not count this batch (the requests pass uncounted)."""


class SharedCounter:
    """This process's counting connection and its batches (one per engine and event loop)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.loop = asyncio.get_running_loop()
        self.conn: asyncpg.Connection | None = None
        self.pending: list[tuple[list[Check], asyncio.Future[Refusal | None]]] = []
        self.worker: asyncio.Task[None] | None = None
        self.down_until = 0.0  # monotonic: no new attempt before
        self.next_cleanup = 0.0
        self.calls = 0  # round trips made (bench/bench_ratelimit.py reads them)

    async def check(self, checks: list[Check]) -> Refusal | None:
        """The first refusal among `checks` (counted in this order, those after a refusal are
        not counted), None when all pass; CountingUnavailable when nothing could be counted."""
        future: asyncio.Future[Refusal | None] = self.loop.create_future()
        self.pending.append((checks, future))
        if self.worker is None:
            self.worker = self.loop.create_task(self._drain())
        try:
            # never longer than a connection and a call (and a call already running before)
            return await asyncio.wait_for(asyncio.shield(future), WAIT_S)
        except TimeoutError as exc:
            raise CountingUnavailable("counting took too long") from exc
        finally:
            future.cancel()  # no-op when answered; else the batch's answer goes nowhere

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    answers = await self._call(batch)
                except Exception as exc:  # whatever it is, no request may wait for ever
                    if not isinstance(exc, CountingUnavailable):
                        # e.g. asyncpg's InternalClientError on a connection that PostgreSQL's
                        # shutdown left mid-operation: a warning line, a new connection
                        self._failed(exc)
                        exc = CountingUnavailable(f"{type(exc).__name__}: {exc}")
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), answer in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        finally:
            self.worker = None

    async def _call(
        self, batch: list[tuple[list[Check], asyncio.Future[Refusal | None]]]
    ) -> list[Refusal | None]:
        # rows are locked in (name, key) order, the same in every process: no deadlock between
        # two batches; a request's own checks keep their order (its names ascend: see
        # LIMIT_NAMES), and a group stops at its first refusal
        rows = sorted(
            ((c.name, c.key, n, g, c) for g, (checks, _) in enumerate(batch)
             for n, c in enumerate(checks)),
            key=lambda r: (r[0], r[1], r[3], r[2]),
        )  # fmt: skip
        args = (
            [r[3] for r in rows],
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[4].item.amount for r in rows],
            [int(r[4].item.get_expiry()) for r in rows],
            [r[4].take for r in rows],
        )
        conn = await self._connection()
        try:
            answers = await conn.fetch(TAKE, *args, timeout=CALL_TIMEOUT_S)
            self.calls += 1
            if time.monotonic() >= self.next_cleanup:
                self.next_cleanup = time.monotonic() + CLEANUP_S
                await conn.execute(CLEANUP, timeout=CALL_TIMEOUT_S)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self._failed(exc)
            raise CountingUnavailable(str(exc)) from exc
        out: list[Refusal | None] = [None] * len(batch)
        for (_, _, _, g, c), (allowed, wait) in zip(rows, answers, strict=True):
            if allowed is False and out[g] is None:
                out[g] = Refusal(c, float(wait))
        return out

    async def _connection(self) -> asyncpg.Connection:
        if self.conn is not None and not self.conn.is_closed():
            return self.conn
        if time.monotonic() < self.down_until:
            raise CountingUnavailable("PostgreSQL was unreachable a moment ago")
        try:
            self.conn = await asyncpg.connect(
                self.dsn,
                timeout=CONNECT_TIMEOUT_S,
                server_settings={
                    "application_name": f"{APPLICATION_NAME} {os.getpid()}",
                    "statement_timeout": str(int(CALL_TIMEOUT_S * 1000)),
                    # counts are UNLOGGED: a call never waits for a WAL flush
                    "synchronous_commit": "off",
                },
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self._failed(exc)
            raise CountingUnavailable(str(exc)) from exc
        return self.conn

    def _failed(self, exc: BaseException) -> None:
        log.warning(
            "rate limits not counted for %.0f s: PostgreSQL unreachable for counting (%s: %s)",
            RETRY_S, type(exc).__name__, exc,
        )  # fmt: skip
        self.down_until = time.monotonic() + RETRY_S
        self.close()

    def close(self) -> None:
        """Drop the counting connection (the next batch opens another)."""
        if self.conn is not None:
            self.conn.terminate()
            self.conn = None


_COUNTERS: weakref.WeakKeyDictionary[Engine, SharedCounter] = weakref.WeakKeyDictionary()


def counter(engine: AsyncEngine) -> SharedCounter:
    """The shared counter of `engine` (the primary) for the running event loop."""
    sync = engine.sync_engine
    found = _COUNTERS.get(sync)
    if found is not None and found.loop is asyncio.get_running_loop():
        return found
    first = found is None
    if found is not None:  # another event loop's (tests): its connection cannot be used here
        found.conn = None
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    made = _COUNTERS[sync] = SharedCounter(dsn)
    if first:
        event.listen(sync, "engine_disposed", _disposed)
    return made


def _disposed(conn: Any) -> None:
    """The engine is disposed: close its counting connection too."""
    engine = getattr(conn, "engine", conn)
    found = _COUNTERS.get(engine)
    if found is not None:
        found.close()


def parse_limit(spec: str) -> RateLimitItem | None:
    """A limit in the `limits` syntax (e.g. 600/minute); None when empty (no limit)."""
    return parse(spec) if spec else None


def retry_after(wait_s: float) -> int:
    """Retry-After in whole seconds: at least 1, rounded up."""
    return max(1, int(wait_s) + (0 if wait_s == int(wait_s) else 1))


def refusal_error(refusal: Refusal, what: str) -> TooManyRequests:
    """The 429 answer of a refusal, with its Retry-After."""
    wait = retry_after(refusal.wait_s)
    return TooManyRequests(
        f"{what} of {refusal.check.item} exceeded; retry in {wait} s", _retry_after=wait
    )


async def take(engine: AsyncEngine, checks: Sequence[Check]) -> Refusal | None:
    """Count `checks` for one request in PostgreSQL; the first refusal, None when all pass;
    CountingUnavailable when PostgreSQL could not count."""
    return await counter(engine).check(list(checks))
