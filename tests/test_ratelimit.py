"""The rate limits counted in PostgreSQL (app/auth/ratelimit.py, migration 0021), against the
real database: the sliding window counter's arithmetic, the window sliding, limits apart for
tiles, failed authentications per address, counting from two "processes" at once, the batches,
the cleanup, and failing open when PostgreSQL is away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from limits import parse
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.auth import ratelimit
from app.auth.deps import FAILED_AUTH, REQUESTS, TILES, FailedAuthLimiter, RateLimiter, admit
from app.auth.ratelimit import Check, CountingUnavailable, SharedCounter
from app.config import Settings
from app.db import create_engine, get_session
from app.errors import TooManyRequests
from app.main import create_app
from conftest import _free_port, make_key


def _name(what: str = "t") -> str:
    return f"{what}-{uuid.uuid4().hex[:8]}"


async def _now(engine: AsyncEngine) -> float:
    async with engine.connect() as conn:
        return float((await conn.execute(text("SELECT extract(epoch FROM now())"))).scalar_one())


async def _hit(engine: AsyncEngine, check: Check) -> ratelimit.Refusal | None:
    return await ratelimit.take(engine, [check])


async def test_the_previous_window_weighs_by_its_overlap(engine: AsyncEngine) -> None:
    """limit 10 per hour, 6 requests in the previous hour: this hour allows
    floor(10 - 6 × (what of the previous hour still overlaps the last 60 min)) requests."""
    name, key, item = _name(), "p1", parse("10/hour")
    now = await _now(engine)
    start = math.floor(now / 3600) * 3600
    weight = 6 * (3600 - (now - start)) / 3600
    if now - start < 5 or weight % 1 > 0.99 or weight % 1 < 0.01:
        pytest.skip("too close to an hour's edge to count exactly")  # a few seconds an hour
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO rate_limit_counter VALUES (:n, :k, CAST(:w AS bigint), 6,"
                " to_timestamp(CAST(:w AS bigint) + 7200))"
            ),
            {"n": name, "k": key, "w": start - 3600},
        )
    allowed = 0
    while (refused := await _hit(engine, Check(name, key, item))) is None:
        allowed += 1
        assert allowed <= 10
    assert allowed == math.floor(10 - weight)
    # the wait: until the previous hour weighs at most 10 - allowed - 1
    room = 10 - allowed - 1
    expected = 3600 * (1 - room / 6) - (now - start)
    assert refused.wait_s == pytest.approx(expected, abs=2)
    # refused requests are not counted
    async with engine.connect() as conn:
        counted = await conn.execute(
            text("SELECT count FROM rate_limit_counter WHERE name = :n AND window_start = :w"),
            {"n": name, "w": start},
        )
        assert counted.scalar_one() == allowed


async def test_a_full_window_waits_for_the_next_and_its_overlap(engine: AsyncEngine) -> None:
    """2 per hour, both taken in this hour: the third waits for the next hour, then until this
    hour (then the previous one) weighs at most 1: half of the next hour."""
    name, item = _name(), parse("2/hour")
    now = await _now(engine)
    elapsed = now - math.floor(now / 3600) * 3600
    assert await _hit(engine, Check(name, "k", item)) is None
    assert await _hit(engine, Check(name, "k", item)) is None
    refused = await _hit(engine, Check(name, "k", item))
    assert refused is not None
    assert refused.wait_s == pytest.approx((3600 - elapsed) + 1800, abs=2)
    error = ratelimit.refusal_error(refused, "rate limit")
    assert error.extra["_retry_after"] == math.ceil(refused.wait_s)
    assert "rate limit of 2 per 1 hour exceeded" in error.detail


async def test_the_window_slides(engine: AsyncEngine) -> None:
    """2 per second: the third request of a second is refused, and once its wait has passed a
    request is allowed again."""
    name, item = _name(), parse("2/second")
    refused = None
    for _ in range(3):
        refused = await _hit(engine, Check(name, "k", item))
    if refused is None:  # the three straddled a second's edge: once more, within one
        refused = await _hit(engine, Check(name, "k", item))
    assert refused is not None and 0 < refused.wait_s <= 2
    await asyncio.sleep(refused.wait_s + 0.05)
    assert await _hit(engine, Check(name, "k", item)) is None


async def test_tiles_and_requests_count_apart(engine: AsyncEngine) -> None:
    """The same principal under the same spec: the API's and the tiles' budgets are two."""
    spec = "2/minute"
    requests, tiles = RateLimiter(spec), RateLimiter(spec)
    key = uuid.uuid4().int % 10**9  # a principal id no other test uses
    for limiter, scope in ((requests, REQUESTS), (tiles, TILES)):
        for _ in range(2):
            check = limiter.check_of(scope, key)
            assert check is not None
            await admit(engine, [(check, limiter)])
    with pytest.raises(TooManyRequests) as refused:
        check = tiles.check_of(TILES, key)
        assert check is not None
        await admit(engine, [(check, tiles)])
    assert refused.value.extra["_retry_after"] >= 1
    assert (requests.refusals, tiles.refusals) == (0, 1)
    assert RateLimiter("").check_of(REQUESTS, key) is None  # an empty spec: no limit


async def test_failed_authentications_per_address(engine: AsyncEngine) -> None:
    """3 failures per minute and address: the 4th is refused (429), looking does not count,
    a request from that address is refused with it whatever its key, another address passes."""
    failures = FailedAuthLimiter("3/minute")
    guesser, neighbour = f"192.0.2.{uuid.uuid4().int % 250}", "198.51.100.7"
    guesser = f"{guesser}-{uuid.uuid4().hex[:6]}"  # an address no other test uses
    looked = failures.looked_at(guesser)
    assert looked is not None and looked.take is False
    for _ in range(5):  # looking is free
        await admit(engine, [(looked, failures.limit)])
    for _ in range(3):
        await failures.failed(engine, guesser)
    with pytest.raises(TooManyRequests) as refused:
        await failures.failed(engine, guesser)
    assert "too many failed authentications" in refused.value.detail
    # an authenticated request from that address: refused before its own limit is counted
    principal = RateLimiter("100/minute")
    own = principal.check_of(REQUESTS, "p-" + guesser)
    assert own is not None
    with pytest.raises(TooManyRequests):
        await admit(engine, [(looked, failures.limit), (own, principal)])
    async with engine.connect() as conn:
        counted = await conn.execute(
            text("SELECT count(*) FROM rate_limit_counter WHERE key = :k"), {"k": own.key}
        )
        assert counted.scalar_one() == 0
    other = failures.looked_at(neighbour + uuid.uuid4().hex[:6])
    assert other is not None
    await admit(engine, [(other, failures.limit), (own, principal)])
    assert failures.limit.refusals == 2 and principal.refusals == 0
    assert FAILED_AUTH < REQUESTS < TILES  # a request's checks go in this order (deps.py)


async def test_two_processes_never_take_more_than_the_limit(engine: AsyncEngine) -> None:
    """Two counters, each on a connection of its own (as two API processes), 60 requests of
    one key at once against a limit of 25: exactly 25 pass; and the requests waiting while a
    call runs go together in the next call."""
    name, item = _name(), parse("25/hour")
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    counters = [SharedCounter(dsn), SharedCounter(dsn)]
    try:
        answers = await asyncio.gather(
            *(counters[n % 2].check([Check(name, "k", item)]) for n in range(60))
        )
    finally:
        for c in counters:
            c.close()
    assert sum(a is None for a in answers) == 25
    assert sum(c.calls for c in counters) < 60  # batched
    async with engine.connect() as conn:
        counted = await conn.execute(
            text("SELECT sum(count) FROM rate_limit_counter WHERE name = :n"), {"n": name}
        )
        assert counted.scalar_one() == 25


async def test_counting_is_outside_the_request_transaction(engine: AsyncEngine) -> None:
    """A request's transaction that only read stays read-only (app/tiles/versions.py WRITING):
    the count is committed on the counter's own connection."""
    name = _name()
    async with engine.connect() as conn, conn.begin():
        await conn.execute(text("SELECT 1"))
        assert await _hit(engine, Check(name, "k", parse("5/minute"))) is None
        writing = await conn.execute(text("SELECT txid_current_if_assigned() IS NOT NULL"))
        assert writing.scalar_one() is False
        seen = await conn.execute(
            text("SELECT count FROM rate_limit_counter WHERE name = :n"), {"n": name}
        )
        assert seen.scalar_one() == 1  # already committed


async def test_old_windows_are_deleted(engine: AsyncEngine) -> None:
    name = _name()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO rate_limit_counter VALUES"
                " (:n, 'old', 1, 3, now() - interval '1 second'),"
                " (:n, 'new', 2, 3, now() + interval '1 hour')"
            ),
            {"n": name},
        )
    ratelimit.counter(engine).next_cleanup = 0  # due now
    assert await _hit(engine, Check(_name(), "k", parse("5/minute"))) is None
    async with engine.connect() as conn:
        left = await conn.execute(
            text("SELECT key FROM rate_limit_counter WHERE name = :n"), {"n": name}
        )
        assert list(left.scalars()) == ["new"]


async def test_fail_open_when_postgresql_is_away(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Nobody listens where the engine points: the requests pass uncounted, with a warning in
    the log and the count of unchecked requests (borderwatch_rate_limit_unchecked_total)."""
    away = create_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{_free_port()}/none", settings)
    limiter = RateLimiter("1/minute")
    try:
        with caplog.at_level(logging.WARNING, logger="borderwatch"):
            for _ in range(3):
                check = limiter.check_of(REQUESTS, "k")
                assert check is not None
                await admit(away, [(check, limiter)])  # no 429 although over 1/minute
        with pytest.raises(CountingUnavailable):
            await ratelimit.take(away, [Check(_name(), "k", parse("1/minute"))])
    finally:
        await away.dispose()
    assert limiter.unchecked == 3 and limiter.refusals == 0
    warnings = [r for r in caplog.records if "rate limits not counted" in r.getMessage()]
    assert 1 <= len(warnings) <= 2  # one per attempt to reach PostgreSQL, not per request


async def test_a_lost_counting_connection_is_replaced(engine: AsyncEngine) -> None:
    """PostgreSQL ends the counting connection (a restart, an administrator): the batch that
    meets it passes uncounted, and counting resumes on a new connection a moment later."""
    assert await _hit(engine, Check(_name(), "k", parse("5/minute"))) is None  # connected
    mine = f"{ratelimit.APPLICATION_NAME} {os.getpid()}"
    async with engine.begin() as conn:
        ended = await conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = :a AND datname = current_database()"
            ),
            {"a": mine},
        )
        assert ended.scalar_one() == 1
    name = _name()
    # the dead connection is found by this batch (CountingUnavailable) or by asyncpg before it
    with contextlib.suppress(CountingUnavailable):
        await _hit(engine, Check(_name(), "k", parse("5/minute")))
    await asyncio.sleep(ratelimit.RETRY_S + 0.2)
    assert await _hit(engine, Check(name, "k", parse("5/minute"))) is None
    async with engine.connect() as conn:
        counted = await conn.execute(
            text("SELECT count FROM rate_limit_counter WHERE name = :n"), {"n": name}
        )
        assert counted.scalar_one() == 1


async def test_requests_pass_and_are_reported_when_counting_is_away(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    """Through the app: the key is checked on the request's own session (the database is up)
    while the counting connection cannot be made (the app's primary points where nobody
    listens): over a limit of 1/minute every request passes, and /metrics counts them in
    borderwatch_rate_limit_unchecked_total."""
    key = await make_key(session, "analyst")
    away = create_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{_free_port()}/none", settings)
    app = create_app(Settings(environment="test", rate_limit="1/minute"), engine=away)

    async def _session() -> AsyncIterator[AsyncSession]:
        yield session

    app.dependency_overrides[get_session] = _session
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as c:
            assert [(await c.get("/me")).status_code for _ in range(3)] == [200] * 3
            exposition = (await c.get("/metrics")).text
    finally:
        await away.dispose()
    samples = {
        (s.name, s.labels.get("limit")): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }
    assert samples[("borderwatch_rate_limit_unchecked_total", "requests")] == 3
    assert samples[("borderwatch_rate_limit_refusals_total", "requests")] == 0
