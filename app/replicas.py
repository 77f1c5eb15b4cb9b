"""Read replicas: which database a request's session reads from, in one place.

A request gets a session on a streaming replica (BORDERWATCH_READ_DATABASE_URL) when all of
these hold, and on the primary otherwise:
- its method is GET or HEAD and its path is one of LAG_TOLERANT (tiles, incident lists and
  exports, nearby, analysis, OGC, reference data);
- a replica is healthy: reachable, still a standby, and at most `read_max_lag_s` behind the
  primary (checked every `read_check_s` by each API process, and by /readyz);
- read-your-writes allows it: the request names no WAL position (LSN) the replica has not
  replayed yet. A successful write (POST/PUT/PATCH/DELETE, 2xx) answers with the primary's WAL
  position after its commit, as the `Borderwatch-LSN` header and the `borderwatch_lsn` cookie
  (HttpOnly, SameSite=Strict, 5 minutes), and this process also remembers it for the
  credentials that wrote; a later read that carries it (the cookie, the header echoed back, or
  the same credentials on the same process) reads from a replica only once that replica has
  replayed it, else from the primary.

Route code does not change: `app.db.get_session` asks `ReplicaSet.session_for`. The few writes
that happen on read paths go to the primary through `primary_session` (a key's `last_used_at`)
or move the request there (`use_primary`: a scope's cooperation zone not built yet). A read on a
replica that fails because the replica went away is answered again on the primary (the
middleware `ReplicaMiddleware`), so a replica stopping costs no 5xx. See docs/replicas.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings, async_url
from app.db import GONE, DriverStatement, create_engine, fetch_row
from app.errors import DATABASE_BUSY, InvalidInput, database_failure

log = logging.getLogger("borderwatch")

LSN_HEADER = "Borderwatch-LSN"
LSN_COOKIE = "borderwatch_lsn"
LSN_MAX_AGE_S = 300  # how long a client keeps the cookie (and a process its memory of a write)
READS = frozenset({"GET", "HEAD"})
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The reads that may be a little stale for other clients: tiles, incident lists, exports and
# nearby, analysis and statistics, OGC API Features, reference data, and the reverse proxy's
# key check before a cached tile (/auth/check). Everything else (writes, one incident and its
# history, notes, photos, the live feed, keys, audit, alerts, cooperation areas, /me, health,
# metrics) is read on the primary.
LAG_TOLERANT = re.compile(
    r"^(?:/tiles/.*"
    r"|/analysis/.*"
    r"|/ogc(?:/.*)?"
    r"|/incidents(?:/export|/nearby)?"
    r"|/jurisdictions(?:/.*)?"
    r"|/borders|/border-posts(?:/nearest)?|/places|/categories|/statuses"
    r"|/auth/check)$"
)
# how long a replica's replayed position read for a request is trusted before asking again
REPLAY_FRESH_S = 0.005
CHECK_TIMEOUT_S = 2.0  # one replica check (connect included)
MAX_REMEMBERED = 10_000  # credentials whose last write this process remembers
LSN_TEXT = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
LSN_COOKIE_BYTES = LSN_COOKIE.encode() + b"="
LSN_IN_COOKIES = re.compile(rb"(?:^|;)\s*" + re.escape(LSN_COOKIE_BYTES) + rb"([^;]*)")

# session.info keys
REPLICA = "borderwatch.replica"  # the Replica a session reads from (absent: the primary)
PRIMARY = "borderwatch.primary"  # the primary's sessionmaker, for writes on a read path
# request.state names (request.state is the ASGI scope's "state")
RETRY = "replica_retry"  # the replica failed this read: answer it again on the primary
ON_PRIMARY = "replica_off"  # this request reads from the primary, whatever its path

PRIMARY_LSN = text("SELECT (pg_current_wal_lsn() - '0/0')::int8")
REPLICA_STATE = text(
    "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0')::int8,"
    " CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END"
)
REPLAY_LSN = text("SELECT (pg_last_wal_replay_lsn() - '0/0')::int8")


def format_lsn(lsn: int) -> str:
    """PostgreSQL's text form of a WAL position (`16/B374D848`)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(value: str) -> int | None:
    """A WAL position from its text form; None when it is not one."""
    m = LSN_TEXT.match(value.strip())
    return (int(m[1], 16) << 32) | int(m[2], 16) if m else None


def credential_digest(authorization: str | None, api_key: str | None) -> bytes | None:
    """What identifies a client's credentials in this process's memory of writes: a digest of
    the header that carries the key (never the key itself)."""
    value = authorization or api_key
    if not value:
        return None
    return hashlib.blake2b(value.strip().encode(), digest_size=16).digest()


def describe(url: str) -> str:
    """A replica's name in reports and metrics: host:port/database, no credentials."""
    u = make_url(async_url(url))
    return f"{u.host or 'localhost'}:{u.port or 5432}/{u.database or ''}"


class RoutedSession(Session):
    """A Session that reads from the replica named in its info (REPLICA), else from its bind:
    SQLAlchemy's documented place to choose an engine per session (`get_bind`)."""

    def get_bind(
        self,
        mapper: Any = None,
        *,
        clause: Any = None,
        bind: Any = None,
        _sa_skip_events: bool | None = None,
        _sa_skip_for_implicit_returning: bool = False,
        **kw: Any,
    ) -> Engine | Connection:
        """The replica's engine for a session routed to one; the primary otherwise."""
        replica: Replica | None = self.info.get(REPLICA)
        if replica is not None and bind is None:
            return replica.engine.sync_engine
        return super().get_bind(
            mapper,
            clause=clause,
            bind=bind,
            _sa_skip_events=_sa_skip_events,
            _sa_skip_for_implicit_returning=_sa_skip_for_implicit_returning,
            **kw,
        )


def on_replica(session: AsyncSession) -> bool:
    """Whether this session reads from a replica (where nothing can be written)."""
    return REPLICA in session.info


@asynccontextmanager
async def primary_session(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """A short session on the primary for a write a replica request must make (the caller
    commits); only for a session that `on_replica` says reads from a replica."""
    factory: async_sessionmaker[AsyncSession] = session.info[PRIMARY]
    async with factory() as primary:
        yield primary


async def use_primary(session: AsyncSession) -> None:
    """Move a request's session from its replica to the primary: its transaction on the
    replica ends (nothing was written there), and what it runs next runs on the primary. For a
    request that needs something the replica does not have yet."""
    if on_replica(session):
        await session.rollback()
        del session.info[REPLICA]


def _sample_window(max_lag_s: float, check_s: float) -> float:
    return max_lag_s + 3 * check_s


@dataclass
class Replica:
    """One read replica: its engine and what the last check found."""

    name: str
    engine: AsyncEngine
    status: str = "unknown"  # ok, lagging, paused (still ok), down, not_standby, unknown
    detail: str = ""
    replay_lsn: int | None = None
    replay_at: float = -math.inf  # time.monotonic() of replay_lsn's reading
    lag_s: float | None = None
    paused: bool = False
    reads: int = 0  # requests routed to it
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def healthy(self) -> bool:
        """Whether reads may go to it."""
        return self.status == "ok"

    def down(self, detail: str) -> None:
        """It could not be reached: skipped until a check finds it again."""
        self.status, self.detail, self.lag_s = "down", detail, None


class ReplicaSet:
    """The replicas of one app: their engines, health and replayed positions, and the choice of
    database for each request."""

    def __init__(self, urls: Iterable[str], settings: Settings) -> None:
        self.replicas = [Replica(describe(url), create_engine(url, settings)) for url in urls]
        self.max_lag_s = settings.read_max_lag_s
        self.check_s = settings.read_check_s
        self.primary: AsyncEngine | None = None
        self.primary_sessions: async_sessionmaker[AsyncSession] | None = None
        self.sessions: async_sessionmaker[AsyncSession] | None = None
        # (time.monotonic(), the primary's WAL position) each time a check saw it move
        self.samples: list[tuple[float, int]] = []
        self.remembered: OrderedDict[bytes, tuple[int, float]] = OrderedDict()
        self._turn = 0
        self.retries = 0  # reads answered again on the primary after their replica failed
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def bind(self, primary: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Use `primary` (the app's engine) and its sessionmaker for everything else."""
        self.primary = primary
        self.primary_sessions = sessions
        self.sessions = async_sessionmaker(
            primary, sync_session_class=RoutedSession, expire_on_commit=False
        )

    # -- health -----------------------------------------------------------------------------

    def start(self) -> None:
        """Check the replicas every `check_s` in the background (once per process)."""
        if self._task is None and not self._stopped:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # never let the watcher die: a check failing is a status
                log.exception("replica check failed")
            await asyncio.sleep(self.check_s)

    async def close(self) -> None:
        """Stop checking and close the replicas' connections."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for r in self.replicas:
            await r.engine.dispose()

    async def primary_lsn(self) -> int | None:
        """The primary's current WAL position (None when it cannot be read)."""
        if self.primary is None:
            return None
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S), self.primary.connect() as conn:
                row = await fetch_row(conn, _statement(conn, PRIMARY_LSN), {})
        except Exception as exc:
            log.warning("could not read the primary's WAL position: %s", exc)
            return None
        return int(row[0]) if row is not None and row[0] is not None else None

    async def check(self) -> None:
        """Read the primary's WAL position, then each replica's state, and judge them."""
        lsn = await self.primary_lsn()
        now = time.monotonic()
        if lsn is not None and (not self.samples or lsn != self.samples[-1][1]):
            self.samples.append((now, lsn))
        horizon = now - _sample_window(self.max_lag_s, self.check_s)
        keep = [s for s in self.samples[:-1] if s[0] >= horizon][-10_000:]
        self.samples = keep + self.samples[-1:]
        await asyncio.gather(*(self._check(r) for r in self.replicas))

    async def _check(self, r: Replica) -> None:
        if _busy(r):
            return  # requests wait for its connections: it serves, and is judged next time
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S), r.engine.connect() as conn:
                row = await fetch_row(conn, _statement(conn, REPLICA_STATE), {})
        except Exception as exc:
            r.down(database_failure(exc) or f"{type(exc).__name__}: {exc}")
            return
        assert row is not None
        in_recovery, replay, paused = bool(row[0]), row[1], bool(row[2])
        if not in_recovery:
            r.status, r.lag_s, r.replay_lsn = "not_standby", None, None
            r.detail = "not in recovery (promoted, or not a replica): not used for reads"
            return
        r.replay_lsn, r.replay_at, r.paused = int(replay), time.monotonic(), paused
        r.lag_s = self.lag(r.replay_lsn, r.replay_at)
        if r.lag_s > self.max_lag_s:
            r.status = "lagging"
            r.detail = f"{r.lag_s:.1f} s behind the primary (more than {self.max_lag_s:g} s)"
        else:
            r.status, r.detail = "ok", "replay paused" if paused else ""

    def lag(self, replay: int, now: float) -> float:
        """How long ago the primary first showed WAL that a replica having replayed up to
        `replay` still lacks (0 when it has everything the checks saw)."""
        for at, lsn in self.samples:
            if lsn > replay:
                return max(0.0, now - at)
        return 0.0

    async def _replayed(self, r: Replica) -> None:
        """Read a replica's replayed position now (for a request that needs a newer one)."""
        async with r.lock:
            if time.monotonic() - r.replay_at <= REPLAY_FRESH_S or _busy(r):
                return  # another request has just read it, or no connection is free
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_S), r.engine.connect() as conn:
                    row = await fetch_row(conn, _statement(conn, REPLAY_LSN), {})
            except Exception as exc:
                r.down(database_failure(exc) or f"{type(exc).__name__}: {exc}")
                return
            if row is not None and row[0] is not None:
                r.replay_lsn, r.replay_at = int(row[0]), time.monotonic()

    def report(self) -> list[dict[str, Any]]:
        """Each replica as /readyz shows it."""
        return [
            {
                "name": r.name,
                "status": r.status,
                "used_for_reads": r.healthy,
                "lag_s": None if r.lag_s is None else round(r.lag_s, 3),
                "replay_paused": r.paused,
                "detail": r.detail or None,
            }
            for r in self.replicas
        ]

    # -- routing ----------------------------------------------------------------------------

    def remember(self, digest: bytes | None, lsn: int) -> None:
        """Note a write by these credentials (their next reads on this process wait for it)."""
        if digest is None:
            return
        self.remembered[digest] = (lsn, time.monotonic() + LSN_MAX_AGE_S)
        self.remembered.move_to_end(digest)
        while len(self.remembered) > MAX_REMEMBERED:
            self.remembered.popitem(last=False)

    def wanted(self, scope: Scope) -> int | None:
        """The newest WAL position this request must see: its header, its cookie, or the
        last write of its credentials on this process; None when it names none. (Read off the
        raw headers: Starlette's Headers, cookies and URL objects cost more than the choice.)"""
        header = cookies = authorization = api_key = None
        for name, value in scope["headers"]:
            if name == b"borderwatch-lsn":
                header = value
            elif name == b"cookie":
                cookies = value if cookies is None else cookies + b"; " + value
            elif name == b"authorization":
                authorization = value
            elif name == b"x-api-key":
                api_key = value
        best: int | None = None
        if header is not None:
            best = parse_lsn(header.decode("latin-1"))
            if best is None:
                raise InvalidInput(
                    f"the {LSN_HEADER} header must be a WAL position as a write's answer gave"
                    " it (e.g. 0/16B3748)",
                    field=LSN_HEADER,
                )
        if cookies is not None and LSN_COOKIE_BYTES in cookies:
            m = LSN_IN_COOKIES.search(cookies)
            from_cookie = parse_lsn(m[1].decode("latin-1")) if m else None  # odd: ignored
            if from_cookie is not None and (best is None or from_cookie > best):
                best = from_cookie
        if self.remembered and (authorization or api_key):
            digest = credential_digest(
                authorization.decode("latin-1") if authorization else None,
                api_key.decode("latin-1") if api_key else None,
            )
            found = self.remembered.get(digest) if digest is not None else None
            if found is not None and digest is not None:
                if found[1] < time.monotonic():
                    del self.remembered[digest]
                elif best is None or found[0] > best:
                    best = found[0]
        return best

    async def choose(self, request: Request) -> Replica | None:
        """The replica this request reads from; None for the primary."""
        scope = request.scope
        if scope["method"] not in READS or not LAG_TOLERANT.match(scope["path"]):
            return None
        if self._task is None:
            self.start()  # an app used without its lifespan (tests' ASGI transport)
        if scope.get("state", {}).get(ON_PRIMARY):
            return None
        healthy = [r for r in self.replicas if r.status == "ok"]
        if not healthy:
            return None
        need = self.wanted(scope)
        self._turn = (self._turn + 1) % len(healthy)
        first = healthy[self._turn]
        if need is None:
            return first
        order = healthy[self._turn :] + healthy[: self._turn]
        for r in order:
            if r.replay_lsn is not None and r.replay_lsn >= need:
                return r
        for r in order:  # what the last check saw is too old for this client: look again
            await self._replayed(r)
            if r.healthy and r.replay_lsn is not None and r.replay_lsn >= need:
                return r
        return None

    async def session_for(self, request: Request) -> AsyncSession:
        """The request's session: on the replica `choose` picks, else on the primary."""
        assert self.sessions is not None and self.primary_sessions is not None, "not bound"
        replica = await self.choose(request)
        session = self.sessions()
        session.info[PRIMARY] = self.primary_sessions
        if replica is not None:
            session.info[REPLICA] = replica
            replica.reads += 1
        return session

    def failed(self, session: AsyncSession, request: Request, exc: BaseException) -> None:
        """A request's session failed with `exc`: when it was reading from a replica that went
        away, is overloaded or cancelled the read (a recovery conflict), mark the request to be
        answered again on the primary (ReplicaMiddleware), and a lost replica as down."""
        replica: Replica | None = session.info.get(REPLICA)
        if replica is None:
            return
        detail = database_failure(exc)
        if detail in GONE:
            replica.down(detail or "")
        if detail in GONE or detail == DATABASE_BUSY or _recovery_conflict(exc):
            setattr(request.state, RETRY, True)
            self.retries += 1

    def engines(self) -> list[AsyncEngine]:
        """The replicas' engines (app.state.read_engines)."""
        return [r.engine for r in self.replicas]


def _busy(r: Replica) -> bool:
    """Whether requests are waiting for one of the replica's pooled connections (a check would
    wait too, and a full pool is no sign of a replica down)."""
    return getattr(r.engine.pool, "waiting", 0) > 0


def _recovery_conflict(exc: BaseException) -> bool:
    """Whether a replica cancelled the statement because replay needed what it read."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "sqlstate", None) == "40001" and "recovery" in str(current):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


_STATEMENTS: dict[tuple[int, str], DriverStatement] = {}


def _statement(conn: Any, stmt: Any) -> DriverStatement:
    key = (id(conn.dialect), str(stmt))
    found = _STATEMENTS.get(key)
    if found is None:
        found = _STATEMENTS[key] = DriverStatement(stmt, conn.dialect, {})
    return found


def lsn_cookie(lsn: str) -> str:
    """The Set-Cookie value that carries a write's WAL position to the client's next reads."""
    return f"{LSN_COOKIE}={lsn}; Max-Age={LSN_MAX_AGE_S}; Path=/; SameSite=Strict; HttpOnly"


def _headers(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class ReplicaMiddleware:
    """Read-your-writes and fallback, around the routes (pure ASGI):
    - a successful write's answer gets the primary's WAL position after it (header and
      cookie), and this process remembers it for the credentials that wrote;
    - a lag-tolerant read whose replica failed (gone, busy, a recovery conflict) is answered
      again on the primary instead of with its 5xx."""

    def __init__(self, app: ASGIApp, replicas: ReplicaSet) -> None:
        self.app = app
        self.replicas = replicas

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["method"] in WRITES:
            await self._stamped(scope, receive, send)
        elif scope["method"] in READS and LAG_TOLERANT.match(scope["path"]):
            await self._fallback(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _stamped(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def stamp(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                lsn = await self.replicas.primary_lsn()
                if lsn is not None:
                    shown = format_lsn(lsn)
                    headers = MutableHeaders(scope=message)
                    headers.append(LSN_HEADER, shown)
                    headers.append("set-cookie", lsn_cookie(shown))
                    digest = credential_digest(
                        _headers(scope, b"authorization"), _headers(scope, b"x-api-key")
                    )
                    self.replicas.remember(digest, lsn)
            await send(message)

        await self.app(scope, receive, stamp)

    async def _fallback(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.setdefault("state", {})
        retry = False

        async def first(message: Message) -> None:
            nonlocal retry
            if (
                message["type"] == "http.response.start"
                and message["status"] >= 500
                and state.get(RETRY)
            ):
                retry = True
            if not retry:
                await send(message)

        await self.app(scope, receive, first)
        if not retry:
            return
        state.pop(RETRY, None)
        state[ON_PRIMARY] = True
        replayed = False

        async def again() -> Message:  # a GET's (empty) body, then the client's own events
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return await receive()

        await self.app(scope, again, send)


def metrics(state: Any) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    """The replicas' metrics for /metrics (app/observe/metrics.py): lag and whether each is
    used for reads, and the reads answered again on the primary."""
    replicas: ReplicaSet | None = getattr(state, "replicas", None)
    lag = GaugeMetricFamily(
        "borderwatch_db_replica_lag_seconds",
        "How far each read replica is behind the primary, as its last check saw it (NaN when"
        " it could not be checked)",
        labels=["replica"],
    )
    used = GaugeMetricFamily(
        "borderwatch_db_replica_up",
        "1 when reads go to this replica, 0 when it is skipped (down, too far behind, not a"
        " standby)",
        labels=["replica"],
    )
    reads = CounterMetricFamily(
        "borderwatch_db_replica_reads",
        "Requests whose session read from this replica",
        labels=["replica"],
    )
    for r in replicas.replicas if replicas is not None else []:
        lag.add_metric([r.name], math.nan if r.lag_s is None else r.lag_s)
        used.add_metric([r.name], 1.0 if r.healthy else 0.0)
        reads.add_metric([r.name], r.reads)
    yield lag
    yield used
    yield reads
    yield CounterMetricFamily(
        "borderwatch_db_replica_retries",
        "Reads answered again on the primary because their replica failed (went away, had no"
        " free connection, or cancelled the read for WAL replay)",
        value=replicas.retries if replicas is not None else 0,
    )
