"""Sending the webhook outbox (webhook_delivery): each alert to its rule's webhook, signed, until
the receiver answers 2xx or the delivery dies after `webhook_max_attempts` tries.

A delivery is claimed, sent and recorded in three steps, and no transaction is open while a
request is in flight: the claim (a short transaction: `attempts + 1` and a lease,
`claimed_until`, longer than a request can take) commits before the request, and the outcome is
written in another short transaction. A transaction held across a request would hold a
transaction id for as long as the receiver takes, and the live feed delivers nothing newer than
the oldest running transaction (docs/events.md); the lease keeps every other process (and this
one) from sending the same delivery while it is in flight (docs/decisions.md).

Every API process sends: the event hub runs a `Sender` after each round (NOTIFY or every
`events_poll_s`), which starts a pass over the due deliveries beside the hub, so that a slow
receiver never holds up the live feed. A delivery is sent at least once; it is sent again only
when no 2xx was recorded for it (a crash between the receiver's answer and the record of it),
always with the alert's Idempotency-Key. docs/webhooks.md is the receivers' side.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy import BigInteger, Boolean, DateTime, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings

log = logging.getLogger(__name__)

CONCURRENCY = 8  # requests in flight per process; a claim takes at most this many deliveries
LEASE_MARGIN_S = 30.0  # a claim outlives the longest request by this much (to record it)
ERROR_MAX = 500  # characters of an error kept in last_error
ANSWER_MAX = 200  # bytes of a failed answer's body quoted in last_error
USER_AGENT = "Borderwatch-Webhooks/1"

CLAIM = text(
    """
        UPDATE webhook_delivery d
           SET claimed_until = now() + make_interval(secs => CAST(:lease_s AS double precision)),
               attempts = d.attempts + 1
          FROM alert a JOIN alert_rule r ON r.id = a.rule_id
         WHERE a.id = d.alert_id
           AND d.id IN (SELECT id FROM webhook_delivery
                         WHERE state = 'pending' AND next_attempt_at <= now()
                           AND (claimed_until IS NULL OR claimed_until < now())
                         ORDER BY next_attempt_at
                         LIMIT :n
                           FOR UPDATE SKIP LOCKED)
        RETURNING d.id, d.body, d.attempts, d.claimed_until, a.idempotency_key, r.id AS rule_id,
                  r.webhook_url, r.webhook_secret, r.active
        """
).columns(
    id=BigInteger,
    body=JSONB,
    attempts=Integer,
    claimed_until=DateTime(timezone=True),
    idempotency_key=UUID(as_uuid=True),
    rule_id=Integer,
    webhook_url=Text,
    webhook_secret=Text,
    active=Boolean,
)

# a 2xx ends the delivery whoever holds the claim now: never send it again
DELIVERED = text(
    """
    UPDATE webhook_delivery
       SET state = 'delivered', delivered_at = now(), last_status = :status, last_error = NULL,
           claimed_until = NULL, url = :url
     WHERE id = :id AND state = 'pending'
    """
)

# a failure is recorded by the claim that made it (a lease that ran out is another's now)
FAILED = text(
    """
    UPDATE webhook_delivery
       SET last_status = :status, last_error = :error, url = :url, claimed_until = NULL,
           state = CASE WHEN attempts >= :max_attempts THEN 'dead' ELSE 'pending' END,
           next_attempt_at = CASE WHEN attempts >= :max_attempts THEN next_attempt_at
               ELSE now() + make_interval(secs => CAST(:delay_s AS double precision)) END
     WHERE id = :id AND state = 'pending' AND claimed_until = :claimed_until
    """
)

# not sent (the rule's webhook is gone): dead at once, and the claim was no attempt
UNSENDABLE = text(
    """
    UPDATE webhook_delivery
       SET state = 'dead', attempts = attempts - 1, last_status = NULL, last_error = :error,
           claimed_until = NULL
     WHERE id = :id AND state = 'pending' AND claimed_until = :claimed_until
    """
)


@dataclass(frozen=True)
class Claimed:
    """A delivery this process holds the lease of, with what sending it needs."""

    id: int
    body: dict[str, Any]
    attempts: int
    claimed_until: datetime
    idempotency_key: str
    rule_id: int
    url: str | None
    secret: str | None
    active: bool


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: the answer's status (None: no answer) and, unless 2xx, why."""

    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        """Whether the receiver took it (2xx)."""
        return self.status is not None and 200 <= self.status < 300


def body_bytes(body: dict[str, Any]) -> bytes:
    """The bytes sent for a stored body: compact JSON with sorted keys (the same every time)."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`X-Borderwatch-Signature`: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def backoff_s(attempts: int, *, base_s: float, cap_s: float) -> float:
    """The wait after the `attempts`-th failure: base·2^(attempts−1), capped, times a random
    factor in [0.5, 1] so that the deliveries of one outage do not all return at once."""
    exponent = min(max(attempts - 1, 0), 60)
    return min(cap_s, base_s * 2.0**exponent) * random.uniform(0.5, 1.0)


def _unsendable(d: Claimed) -> str | None:
    """Why `d` cannot be sent any more (None: it can)."""
    if not d.url or not d.secret:
        return f"not sent: alert rule {d.rule_id} no longer has a webhook"
    if not d.active:
        return f"not sent: alert rule {d.rule_id} is inactive"
    if urlsplit(d.url).scheme not in ("http", "https"):
        return f"not sent: the webhook URL of alert rule {d.rule_id} is not http(s)"
    return None


async def _claim(sessions: async_sessionmaker[AsyncSession], lease_s: float) -> list[Claimed]:
    async with sessions() as session, session.begin():
        rows = await session.execute(CLAIM, {"lease_s": lease_s, "n": CONCURRENCY})
        return [
            Claimed(
                id=r.id,
                body=r.body,
                attempts=r.attempts,
                claimed_until=r.claimed_until,
                idempotency_key=str(r.idempotency_key),
                rule_id=r.rule_id,
                url=r.webhook_url,
                secret=r.webhook_secret,
                active=r.active,
            )
            for r in rows
        ]


def _clip(message: str) -> str:
    return message if len(message) <= ERROR_MAX else message[: ERROR_MAX - 1] + "…"


async def _answer(response: httpx.Response) -> str:
    """The start of a failed answer's body, for last_error (never more than ANSWER_MAX)."""
    got = b""
    async for chunk in response.aiter_bytes():
        got += chunk
        if len(got) >= ANSWER_MAX:
            break
    return got[:ANSWER_MAX].decode("utf-8", "replace").strip()


async def post(client: httpx.AsyncClient, d: Claimed, *, timeout_s: float) -> Outcome:
    """POST delivery `d` to its rule's webhook, signed with the rule's secret (not following
    redirects); the whole attempt, connecting included, ends after `timeout_s`."""
    assert d.url is not None and d.secret is not None
    body = body_bytes(d.body)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Idempotency-Key": d.idempotency_key,
        "X-Borderwatch-Delivery": str(d.id),
        "X-Borderwatch-Timestamp": timestamp,
        "X-Borderwatch-Signature": signature(d.secret, timestamp, body),
    }
    try:
        async with (
            asyncio.timeout(timeout_s),
            client.stream("POST", d.url, content=body, headers=headers) as response,
        ):
            status = response.status_code
            if 200 <= status < 300:
                return Outcome(status, None)
            if 300 <= status < 400:
                where = response.headers.get("location", "?")
                said = f"a redirect to {where} is not followed (give the rule the final URL)"
                return Outcome(status, _clip(f"HTTP {status}: {said}"))
            said = await _answer(response)
            return Outcome(status, _clip(f"HTTP {status}" + (f": {said}" if said else "")))
    except TimeoutError:
        return Outcome(None, f"no answer within {timeout_s:g} s")
    except Exception as exc:  # refused, reset, TLS, a malformed URL: an attempt that failed
        said = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return Outcome(None, _clip(said))


async def _record(
    sessions: async_sessionmaker[AsyncSession], d: Claimed, outcome: Outcome, settings: Settings
) -> None:
    async with sessions() as session, session.begin():
        if outcome.delivered:
            await session.execute(DELIVERED, {"id": d.id, "status": outcome.status, "url": d.url})
            return
        delay = backoff_s(
            d.attempts, base_s=settings.webhook_backoff_base_s,
            cap_s=settings.webhook_backoff_cap_s,
        )  # fmt: skip
        await session.execute(FAILED, {
            "id": d.id, "claimed_until": d.claimed_until, "status": outcome.status,
            "error": outcome.error, "url": d.url, "delay_s": delay,
            "max_attempts": settings.webhook_max_attempts,
        })  # fmt: skip


async def _give_up(sessions: async_sessionmaker[AsyncSession], d: Claimed, why: str) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            UNSENDABLE, {"id": d.id, "claimed_until": d.claimed_until, "error": why}
        )


async def _deliver(
    sessions: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    d: Claimed,
    settings: Settings,
) -> None:
    why = _unsendable(d)
    if why is not None:
        await _give_up(sessions, d, why)
        return
    outcome = await post(client, d, timeout_s=settings.webhook_timeout_s)
    await _record(sessions, d, outcome, settings)


def client(settings: Settings) -> httpx.AsyncClient:
    """An HTTP client for webhooks: no redirects, bounded time and connections."""
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(settings.webhook_timeout_s),
        limits=httpx.Limits(max_connections=CONCURRENCY),
    )


async def send_due(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    http: httpx.AsyncClient | None = None,
) -> int:
    """Claim, send and record the due deliveries, CONCURRENCY at a time, until none is due;
    returns how many were claimed. Without `http`, a client is made once there is work."""
    lease_s = settings.webhook_timeout_s + LEASE_MARGIN_S
    made = 0
    async with contextlib.AsyncExitStack() as stack:
        while True:
            claimed = await _claim(sessions, lease_s)
            if not claimed:
                return made
            made += len(claimed)
            if http is None:
                http = await stack.enter_async_context(client(settings))
            # each records its own outcome; one that cannot (the database went away) leaves
            # its claim to run out and the delivery to be sent again
            done = await asyncio.gather(
                *(_deliver(sessions, http, d, settings) for d in claimed), return_exceptions=True
            )
            for failed in done:
                if isinstance(failed, BaseException):
                    raise failed


class Sender:
    """The webhook work of an event hub round (app/events/hub.py `after_round`): a call starts
    a pass over the due deliveries beside the hub, or, when one is running, asks it for one
    more pass once it is done (a delivery queued while it finishes waits for no poll)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._task: asyncio.Task[None] | None = None
        self._again = False

    async def __call__(self) -> None:
        """Start a pass (returns at once)."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._passes(), name="webhooks")

    async def close(self) -> None:
        """At shutdown: let a pass in flight finish (its deliveries recorded, none sent twice
        after its lease), at most one request timeout, then stop it."""
        task = self._task
        if task is None or task.done():
            return
        self._again = False
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), self._settings.webhook_timeout_s + 1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _passes(self) -> None:
        while True:
            self._again = False
            try:
                await send_due(self._sessions, self._settings)
            except Exception as exc:  # the database is away: the next round tries again
                log.warning("webhooks: sending the due deliveries failed (%s)", exc)
                return
            if not self._again:
                return
