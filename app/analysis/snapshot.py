"""The incidents a scope sees, held in memory as columns (numpy) per layer version, so that the
dashboard's panels answer any view without a scan of the table: statistics by category, status
and month, and the cross-boundary table, for a bounding box and the filters the page sends.

A snapshot holds, for each visible incident, its id, position (float8, as ST_X/ST_Y give it),
category, status, occurrence time (microseconds), its month in Asia/Ho_Chi_Minh and severity.
A filter is answered from it only when each of its conditions can be evaluated exactly on those
columns (`answerable`): bbox (a point in the closed box, as ST_Intersects with the envelope),
datetime bounds, categories, statuses and severity_min. Anything else (jurisdiction,
cooperation, border distance, text) goes to PostgreSQL as before.

Snapshots are keyed by the versions' token (incidents and jurisdictions counters with the
scope's view, app/tiles/versions.py): a write moves the token, so a kept snapshot never answers
for data it does not hold. They are built in the background (`SnapshotCache.schedule`): a
request that finds none for the current token is answered by PostgreSQL and starts the build;
the dashboard warmer (app/analysis/warm.py) builds the national one after start and after each
change. The build reads the versions before and after its statement and keeps the snapshot only
when they did not move (otherwise a write landed in between and the data may be newer than the
token).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    SmallInteger,
    String,
    bindparam,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.analysis.cache import VersionedCache
from app.incidents.filters import IncidentFilter
from app.incidents.models import STATUSES, Category, Incident
from app.tiles import versions

log = logging.getLogger("borderwatch.snapshot")

DEPENDS = ("incidents", "jurisdictions")
MONTH_TZ = "Asia/Ho_Chi_Minh"
KEPT = 4  # values per process (a national snapshot is ~54 MB at 1 M incidents)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# the columns of every row packed by PostgreSQL into one bytea (int8send & co.: big-endian,
# fixed width), read with one numpy view instead of a million Python rows
ROW = np.dtype(
    [
        ("id", "S16"),
        ("x", ">f8"),
        ("y", ">f8"),
        ("category", ">i2"),
        ("status", ">i2"),
        ("occurred", ">i8"),
        ("month", ">i4"),
        ("severity", ">i2"),
    ]
)


@dataclass(frozen=True)
class Snapshot:
    """The visible incidents of one scope at one version, sorted by id."""

    token: str
    ids: np.ndarray  # the uuids' 16 bytes (S16)
    x: np.ndarray
    y: np.ndarray
    category: np.ndarray  # index into `categories`
    status: np.ndarray  # index into STATUSES
    occurred: np.ndarray  # microseconds since 1970-01-01 UTC
    month: np.ndarray  # year * 12 + month - 1, in Asia/Ho_Chi_Minh
    severity: np.ndarray
    categories: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def mask(self, filt: IncidentFilter, *, with_time: bool = True) -> np.ndarray:
        """Which rows match `filt` (answerable(filt) must hold)."""
        m = np.ones(len(self), dtype=bool)
        if filt.bbox is not None:
            x0, y0, x1, y1 = filt.bbox
            m &= (self.x >= x0) & (self.x <= x1) & (self.y >= y0) & (self.y <= y1)
        if with_time and filt.start is not None:
            m &= self.occurred >= _micros(filt.start)
        if with_time and filt.end is not None:
            m &= self.occurred <= _micros(filt.end)
        if filt.categories:
            wanted = [self.categories.index(c) for c in filt.categories if c in self.categories]
            m &= np.isin(self.category, np.array(wanted, dtype=np.int16))
        if filt.statuses:
            codes = [STATUSES.index(s) for s in filt.statuses if s in STATUSES]
            m &= np.isin(self.status, np.array(codes, dtype=np.int16))
        if filt.severity_min is not None:
            m &= self.severity >= filt.severity_min
        return m


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (integer arithmetic on the timedelta)."""
    d = moment - EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def answerable(filt: IncidentFilter) -> bool:
    """Whether every condition of `filt` is one the snapshot evaluates exactly."""
    return (
        filt.jurisdiction is None
        and filt.area is None
        and filt.border_km_max is None
        and not filt.text
    )


def token(found: versions.Versions, filt: IncidentFilter) -> str:
    """The snapshot's key: the incidents and jurisdictions counters and the scope's view."""
    return versions.token(DEPENDS, found, f"snapshot|{filt.scope.view}")


def _statement(filt: IncidentFilter, categories: Sequence[str]) -> Select[Any]:
    """Every visible incident's columns, packed (ROW) into one bytea in the order of ids."""
    i = Incident
    cats = cast(bindparam("cats", list(categories), type_=ARRAY(String)), ARRAY(String))
    statuses = cast(bindparam("statuses", list(STATUSES), type_=ARRAY(String)), ARRAY(String))
    local = func.timezone(MONTH_TZ, i.occurred_at)
    month = func.extract("year", local) * 12 + func.extract("month", local) - 1
    category = func.coalesce(func.array_position(cats, i.category), 0)
    status = func.coalesce(func.array_position(statuses, i.status), 0)
    packed = (
        func.uuid_send(i.id)
        .op("||")(func.float8send(func.ST_X(i.geom)))
        .op("||")(func.float8send(func.ST_Y(i.geom)))
        .op("||")(func.int2send(cast(category, SmallInteger)))
        .op("||")(func.int2send(cast(status, SmallInteger)))
        .op("||")(func.int8send(cast(func.extract("epoch", i.occurred_at) * 1_000_000, BigInteger)))
        .op("||")(func.int4send(cast(month, Integer)))
        .op("||")(func.int2send(cast(i.severity, SmallInteger)))
    )
    return select(
        func.coalesce(
            func.string_agg(packed, aggregate_order_by(literal_column("''::bytea"), i.id)),
            literal_column("''::bytea"),
        )
    ).where(*IncidentFilter(scope=filt.scope).conditions())


async def build(*, session: AsyncSession, filt: IncidentFilter) -> Snapshot | None:
    """The snapshot of `filt`'s scope, or None when a write moved the versions meanwhile."""
    before = await versions.read(session=session)
    found = await session.execute(select(Category.code).order_by(Category.code))
    categories = tuple(found.scalars())
    data = (await session.execute(_statement(filt, categories))).scalar_one()
    after = await versions.read(session=session)
    if token(before, filt) != token(after, filt):
        return None
    # the columns are made in a thread (numpy lets go of the GIL): requests go on meanwhile
    return await asyncio.to_thread(_columns, bytes(data), token(before, filt), categories)


def _columns(data: bytes, key: str, categories: tuple[str, ...]) -> Snapshot:
    """The snapshot from the packed rows (ROW)."""
    rows = np.frombuffer(data, dtype=ROW)
    rows = rows[np.argsort(rows["id"], kind="stable")]  # numpy's own order, for searchsorted
    if rows.size and (int(rows["category"].min()) < 1 or int(rows["status"].min()) < 1):
        raise RuntimeError("an incident's category or status is not in the lists")
    return Snapshot(
        token=key,
        ids=rows["id"].copy(),
        x=rows["x"].astype(np.float64),
        y=rows["y"].astype(np.float64),
        category=(rows["category"] - 1).astype(np.int16),
        status=(rows["status"] - 1).astype(np.int16),
        occurred=rows["occurred"].astype(np.int64),
        month=rows["month"].astype(np.int32),
        severity=rows["severity"].astype(np.int16),
        categories=categories,
    )


class SnapshotCache:
    """Values computed in the background and kept per token for one process (snapshots, and
    the cross-boundary hits of app/analysis/adjacency.py): one build per key at a time."""

    def __init__(
        self, sessions: Callable[[], async_sessionmaker[AsyncSession]], size: int = KEPT
    ) -> None:
        self.sessions = sessions
        self.kept: VersionedCache[Any] = VersionedCache(size)
        self.building: dict[str, asyncio.Task[Any]] = {}
        self.builds = 0  # values built and kept (tests)

    def ready(self, key: str) -> Any:
        """The value kept for `key`, or None."""
        return self.kept.peek(key)

    def schedule(
        self, key: str, make: Callable[[AsyncSession], Awaitable[Any]]
    ) -> asyncio.Task[Any]:
        """Build the value for `key` in the background (once: a build under way is shared);
        `make` returns None when it must not be kept (the versions moved meanwhile)."""
        task = self.building.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._build(key, make))
            self.building[key] = task
            task.add_done_callback(lambda _: self.building.pop(key, None))
        return task

    async def _build(self, key: str, make: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        try:
            async with self.sessions()() as session, session.begin():
                value = await make(session)
        except Exception:  # a failed build leaves the answers to PostgreSQL
            log.exception("building %s failed", key.split("|")[0])
            return None
        if value is not None and getattr(value, "token", None) == key:
            self.builds += 1
            await self.kept.get(key, _value(value))
        return value


def _value(value: Any) -> Callable[[], Awaitable[Any]]:
    async def make() -> Any:
        return value

    return make


async def usable(
    cache: SnapshotCache | None, session: AsyncSession, filt: IncidentFilter
) -> Snapshot | None:
    """The snapshot that answers `filt` now, or None (then answer from PostgreSQL; a build is
    started for next time)."""
    if cache is None or not answerable(filt) or await _writing(session):
        return None
    key = token(await versions.read(session=session), filt)
    snap: Snapshot | None = cache.ready(key)
    if snap is None:
        scope_only = IncidentFilter(scope=filt.scope)

        async def make(s: AsyncSession) -> Snapshot | None:
            return await build(session=s, filt=scope_only)

        cache.schedule(key, make)
    return snap


async def _writing(session: AsyncSession) -> bool:
    """Whether this transaction has written (then it sees changes the counters do not name)."""
    writing: ColumnElement[bool] = literal_column("txid_current_if_assigned() IS NOT NULL")
    return bool((await session.execute(select(writing))).scalar())


# ---- answers -------------------------------------------------------------------------------


def grouped_rows(
    snap: Snapshot, filt: IncidentFilter, group_by: str
) -> list[tuple[Any, int, int]] | None:
    """(key, count, solved) per group as stats._grouped gives them, for group_by category,
    status or month (Asia/Ho_Chi_Minh); None for another grouping."""
    m = snap.mask(filt)
    cleared = np.isin(snap.status, np.array([STATUSES.index("solved"), STATUSES.index("closed")]))
    if group_by == "category":
        keys, labels = snap.category, snap.categories
    elif group_by == "status":
        keys, labels = snap.status, tuple(STATUSES)
    elif group_by == "month":
        keys, labels = snap.month, ()
    else:
        return None
    k = keys[m]
    c = cleared[m]
    if group_by == "month":
        if not k.size:
            return []
        lo = int(k.min())
        n = np.bincount(k - lo)
        s = np.bincount(k - lo, weights=c)
        return [
            (datetime(int(j + lo) // 12, int(j + lo) % 12 + 1, 1), int(n[j]), int(s[j]))
            for j in np.nonzero(n)[0]
        ]
    n = np.bincount(k, minlength=len(labels))
    s = np.bincount(k, weights=c, minlength=len(labels))
    return [(labels[j], int(n[j]), int(s[j])) for j in np.nonzero(n)[0]]
