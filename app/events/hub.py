"""One per API process: listens for the database's NOTIFY, reads each new stretch of the event
log once, and hands every subscriber the events its filter lets through.

A stretch is matched once per distinct filter (scope included) among the subscribers, not once
per subscriber: a hundred dashboards of one province cost one query. A subscriber that is behind
(resuming, or slower than the stretches kept) reads the log itself with the same query
(service.matching), so resumed and live delivery cannot differ.

NOTIFY only wakes the hub; the log is the truth. The hub also looks every `poll_s` seconds (a
NOTIFY is lost while its connection is down, and events held back by a long transaction become
deliverable when it ends, which sends nothing), and reconnects its listener when it drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.errors import log_failure
from app.events import service
from app.events.service import Event, Position
from app.incidents.filters import IncidentFilter

log = logging.getLogger(__name__)

CHANNEL = "borderwatch_events"
KEPT = 256  # stretches kept for subscribers that are a little behind
PRUNE_EVERY_S = 600.0
# a round waits this long after its wake-up: the commits of a burst are read, matched and
# written to each subscriber once, not once per commit (docs/performance.md)
COALESCE_S = 0.1


@dataclass
class Stretch:
    """Events (start, end] and, per subscribed filter, those it lets through."""

    start: Position
    end: Position
    moves: bool
    matches: dict[IncidentFilter, list[Event]] = field(default_factory=dict)


class EventHub:
    """The process's reader of the event log (started by its first subscriber)."""

    def __init__(self, *, poll_s: float, retention_s: float) -> None:
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self.poll_s = poll_s
        self.retention_s = retention_s
        self.head = service.START
        self._filters: Counter[IncidentFilter] = Counter()
        self._stretches: deque[Stretch] = deque()
        self._by_start: dict[Position, Stretch] = {}  # the kept stretches by where they start
        self._changed = asyncio.Condition()
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self._ready = asyncio.Event()  # the head is known
        self._pruned_at = 0.0
        # run after every round (woken or polled): work driven by the log, e.g. raising alerts
        self.after_round: list[Callable[[], Awaitable[None]]] = []

    def bind(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        """The database it reads (the app's engine and sessions)."""
        self._engine, self._sessions = engine, sessions

    def _session(self) -> AsyncSession:
        if self._sessions is None:
            raise RuntimeError("the event hub is not bound to a database")
        return self._sessions()

    @property
    def subscribers(self) -> int:
        """How many subscribers this process serves."""
        return sum(self._filters.values())

    async def start(self) -> None:
        """Begin listening and reading (once); the head is found by the first round that
        reaches the database."""
        async with self._start_lock:
            if self._task is None:
                self._task = asyncio.create_task(self._run(), name="event-hub")

    async def ready(self) -> None:
        """Start, and wait until the head is known."""
        await self.start()
        await self._ready.wait()

    async def close(self) -> None:
        """Stop reading and listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._unlisten()

    async def _listen(self) -> None:
        if self._engine is None:
            raise RuntimeError("the event hub is not bound to a database")
        url = self._engine.url.set(drivername="postgresql")
        try:
            conn = await asyncpg.connect(url.render_as_string(hide_password=False))
            await conn.add_listener(CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("event feed: cannot listen (%s); reading every %.1f s", exc, self.poll_s)
            return
        self._listener = conn

    async def _unlisten(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=2)
            self._listener = None

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        first = True
        while True:
            if not first:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
                    await asyncio.sleep(COALESCE_S)  # the commits of a burst: one round
            first = False
            self._wake.clear()
            try:
                if self._listener is None or self._listener.is_closed():
                    await self._unlisten()
                    await self._listen()
                if not self._ready.is_set():
                    async with self._session() as session:
                        self.head = await service.head(session)
                    self._ready.set()
                await self._read()
                for work in self.after_round:
                    await work()
                if loop.time() - self._pruned_at > PRUNE_EVERY_S:
                    self._pruned_at = loop.time()
                    async with self._session() as session, session.begin():
                        await service.prune(session, self.retention_s)
            except Exception as exc:  # the database away: the next round tries again
                log_failure(log, "event feed: reading the log", exc)
                await asyncio.sleep(self.poll_s)

    async def _read(self) -> None:
        """Read every deliverable event after the head, in stretches of at most BATCH."""
        while True:
            async with self._session() as session:
                found = await service.final_after(session, self.head)
                if not found:
                    return
                stretch = Stretch(self.head, found[-1][0], any(moved for _, moved in found))
                for filt in list(self._filters):
                    stretch.matches[filt] = await service.matching(
                        session, filt, stretch.start, stretch.end, moves=stretch.moves
                    )
            async with self._changed:
                self._stretches.append(stretch)
                self._by_start[stretch.start] = stretch
                if len(self._stretches) > KEPT:
                    del self._by_start[self._stretches.popleft().start]
                self.head = stretch.end
                self._changed.notify_all()
            if len(found) < service.BATCH:
                return

    async def subscribe(
        self, filt: IncidentFilter, after: Position | None, heartbeat_s: float
    ) -> AsyncIterator[list[Event]]:
        """The events `filt` lets through after `after` (None: from now on), as they come, a
        stretch at a time (one write to the client, however many events); an empty list every
        `heartbeat_s` seconds without any (the caller sends a heartbeat)."""
        await self.ready()
        self._filters[filt] += 1  # before reading the head: no stretch can miss this filter
        try:
            at = self.head if after is None else after
            while True:
                if at == self.head:
                    quiet = False
                    async with self._changed:
                        try:
                            moved = partial(self._moved_from, at)
                            await asyncio.wait_for(self._changed.wait_for(moved), heartbeat_s)
                        except TimeoutError:
                            quiet = True
                    # the heartbeat is yielded with the lock released: a subscriber whose write
                    # stalls (a phone on a weak link) must not hold up the reader and the others
                    if quiet:
                        yield []
                        continue
                events, at = await self._since(filt, at)
                if events:
                    yield events
        finally:
            self._filters[filt] -= 1
            if self._filters[filt] <= 0:
                del self._filters[filt]

    def _moved_from(self, at: Position) -> bool:
        return self.head != at

    async def _since(self, filt: IncidentFilter, at: Position) -> tuple[list[Event], Position]:
        """The events after `at` up to the head: from the kept stretches when they continue
        from `at`, else from the log."""
        events: list[Event] = []
        start = at
        while (s := self._by_start.get(at)) is not None and filt in s.matches:
            events += s.matches[filt]
            at = s.end
        if at != start:
            return events, at
        async with self._session() as session:  # behind the kept stretches: read the log
            upto = self.head
            found = await service.final_after(session, at)
            if found and found[-1][0] < upto:
                upto = found[-1][0]  # at most one BATCH at a time
            return await service.matching(session, filt, at, upto), upto
