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

A new incidents version does not cost a rebuild when the change is small: the snapshot of the
previous version of the same scope (and jurisdictions version) is updated from the incident
change log (app/tiles/change_log.py, migration 0022): one statement reads, in one snapshot of
the database, the versions, the ids changed since and the rows of those ids only; the changed
ids leave the columns and their rows now visible go in at their place (`delta`). When the log
does not reach back (pruned), names a change without ids (a statement over the log's limit, a
TRUNCATE) or more than DELTA_MAX ids, or the categories changed, the snapshot is built from all
rows as before. A request that finds the previous snapshot of its lineage kept waits for the
delta (at most DELTA_WAIT_S) instead of asking PostgreSQL: under a stream of writes the panels
are then answered from memory, not by a scan per write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
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
from app.errors import log_failure
from app.incidents.filters import IncidentFilter
from app.incidents.models import STATUSES, Category, Incident
from app.tiles import change_log, versions
from app.tiles.models import LayerVersion

log = logging.getLogger("borderwatch.snapshot")

DEPENDS = ("incidents", "jurisdictions")
MONTH_TZ = "Asia/Ho_Chi_Minh"
KEPT = 4  # values per process (a national snapshot is ~54 MB at 1 M incidents)
DELTA_MAX = 20_000  # changed incidents past which a full rebuild is cheaper than a delta
DELTA_WAIT_S = 1.0  # a request waits this long at most for a value made by a delta
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
    version: int = 0  # the incidents counter it holds the data of (0: unknown)
    lineage: str = ""  # what besides the incidents counter its token names (`lineage`)

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


def lineage(found: versions.Versions, filt: IncidentFilter) -> str:
    """The token without the incidents counter: snapshots of one lineage differ only by
    incident changes, which the change log names."""
    return versions.token(("jurisdictions",), found, f"snapshot|{filt.scope.view}")


def _statement(
    filt: IncidentFilter, categories: Sequence[str], *only: ColumnElement[bool]
) -> Select[Any]:
    """Every visible incident's columns (those meeting `only` too), packed (ROW) into one bytea
    in the order of ids."""
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
    ).where(*IncidentFilter(scope=filt.scope).conditions(), *only)


async def build(
    *, session: AsyncSession, filt: IncidentFilter, previous: Snapshot | None = None
) -> Snapshot | None:
    """The snapshot of `filt`'s scope, or None when a write moved the versions meanwhile;
    from `previous` and the change log when it can (`delta`), else from every row."""
    if previous is not None:
        updated = await delta(session=session, filt=filt, previous=previous)
        if updated is not None:
            return updated
    before = await versions.read(session=session)
    found = await session.execute(select(Category.code).order_by(Category.code))
    categories = tuple(found.scalars())
    data = (await session.execute(_statement(filt, categories))).scalar_one()
    after = await versions.read(session=session)
    if token(before, filt) != token(after, filt):
        return None
    # the columns are made in a thread (numpy lets go of the GIL): requests go on meanwhile
    return await asyncio.to_thread(
        _columns,
        bytes(data),
        token(before, filt),
        categories,
        before["incidents"][0],
        lineage(before, filt),
    )


COLUMNS = ("ids", "x", "y", "category", "status", "occurred", "month", "severity")


def _arrays(data: bytes) -> dict[str, np.ndarray]:
    """The columns of the packed rows (ROW), sorted by id in numpy's own order (for
    searchsorted)."""
    rows = np.frombuffer(data, dtype=ROW)
    rows = rows[np.argsort(rows["id"], kind="stable")]
    if rows.size and (int(rows["category"].min()) < 1 or int(rows["status"].min()) < 1):
        raise RuntimeError("an incident's category or status is not in the lists")
    return {
        "ids": rows["id"].copy(),
        "x": rows["x"].astype(np.float64),
        "y": rows["y"].astype(np.float64),
        "category": (rows["category"] - 1).astype(np.int16),
        "status": (rows["status"] - 1).astype(np.int16),
        "occurred": rows["occurred"].astype(np.int64),
        "month": rows["month"].astype(np.int32),
        "severity": rows["severity"].astype(np.int16),
    }


def _columns(
    data: bytes, key: str, categories: tuple[str, ...], version: int = 0, line: str = ""
) -> Snapshot:
    """The snapshot from the packed rows (ROW)."""
    return Snapshot(
        token=key, categories=categories, version=version, lineage=line, **_arrays(data)
    )


@dataclass(frozen=True)
class Changes:
    """The parts of a delta statement that read the change log (change_log.CHANGED_SQL's
    question, in one snapshot): the CTE of the incident ids changed since :since (at most
    :limit of them, a NULL id for a change without ids), and as scalar columns whether the log
    covers (:since, now], how many ids, whether one change has no id, and the ids packed
    (uuid_send, 16 bytes each)."""

    changed: Any  # CTE: incident_id
    covered: ColumnElement[bool]
    n: ColumnElement[int]
    whole: ColumnElement[bool]
    gone: ColumnElement[bytes]

    def head(self) -> list[ColumnElement[Any]]:
        """The columns a delta statement starts with: the versions, then covered, n, whole and
        gone, labelled (delta_usable reads them)."""
        return [
            versions.VERSIONS_JSON,
            self.covered.label("covered"),
            self.n.label("n"),
            self.whole.label("whole"),
            self.gone.label("gone"),
        ]

    def ids(self) -> Select[Any]:
        """The changed ids (without the NULL of a change without ids)."""
        return select(self.changed.c.incident_id).where(self.changed.c.incident_id.is_not(None))


def delta_usable(row: Any) -> bool:
    """Whether a delta row (with the Changes columns labelled covered, n, whole) can be
    applied: the log reaches back, names every change by id, and not too many of them."""
    return bool(row.covered) and not row.whole and int(row.n) <= DELTA_MAX


def changes() -> Changes:
    """The change-log parts of a delta statement (bound values: since, limit)."""
    k, c = change_log.incident_change_commit.c, change_log.incident_change.c
    lv = LayerVersion
    newest = select(lv.version).where(lv.layer == "incidents").scalar_subquery()
    since = bindparam("since", type_=BigInteger)
    in_range = (k.version > since, k.version <= newest)
    changed = (
        select(c.incident_id)
        .distinct()
        .select_from(
            change_log.incident_change_commit.join(change_log.incident_change, c.xid == k.xid)
        )
        .where(*in_range)
        .limit(bindparam("limit", type_=Integer))
        .cte("changed")
    )
    commits = select(func.count()).select_from(change_log.incident_change_commit)
    gone = func.coalesce(
        func.string_agg(func.uuid_send(changed.c.incident_id), literal_column("''::bytea")),
        literal_column("''::bytea"),
    )
    return Changes(
        changed=changed,
        covered=commits.where(*in_range).scalar_subquery() == newest - since,
        n=select(func.count()).select_from(changed).scalar_subquery(),
        whole=select(func.bool_or(changed.c.incident_id.is_(None))).scalar_subquery(),
        gone=select(gone).scalar_subquery(),
    )


def delta_params(since: int) -> dict[str, int]:
    """The bound values of a delta statement reading the changes after version `since`."""
    return {"since": since, "limit": DELTA_MAX + 1}


# the delta's statement: versions, whether the log covers (A, B], the changed ids (at most
# DELTA_MAX + 1), whether one change has no id, the categories, and the changed incidents'
# rows now visible, in one snapshot
def _delta_statement(filt: IncidentFilter, categories: Sequence[str]) -> Select[Any]:
    ch = changes()
    cats = select(
        func.array_agg(aggregate_order_by(Category.code, Category.code))
    ).scalar_subquery()
    rows = _statement(filt, categories, Incident.id.in_(ch.ids())).scalar_subquery()
    return select(*ch.head(), cats.label("categories"), rows.label("rows"))


DELTAS = {"tried": 0, "applied": 0}  # (tests, benchmarks)


async def delta(
    *, session: AsyncSession, filt: IncidentFilter, previous: Snapshot
) -> Snapshot | None:
    """`previous` (a snapshot of `filt`'s scope) brought to the versions of now from the
    change log, or None when it cannot be (then build from every row)."""
    if not previous.version or not previous.lineage:
        return None
    DELTAS["tried"] += 1
    stmt = _delta_statement(filt, previous.categories)
    found = await session.execute(stmt, delta_params(previous.version))
    row = found.one()
    now = versions.parse(row[0])
    if (
        not delta_usable(row)
        or tuple(row.categories or ()) != previous.categories
        or lineage(now, filt) != previous.lineage
        or now["incidents"][0] < previous.version
    ):
        return None
    DELTAS["applied"] += 1
    return await asyncio.to_thread(
        _apply,
        previous,
        bytes(row.gone),
        bytes(row.rows),
        token(now, filt),
        now["incidents"][0],
    )


def _apply(previous: Snapshot, gone: bytes, data: bytes, key: str, version: int) -> Snapshot:
    """`previous` without the changed ids (`gone`, uuids' 16 bytes each) and with their rows
    now visible (`data`, packed ROW), in the order of ids."""
    ids = previous.ids
    out = np.frombuffer(gone, dtype="S16")
    at = np.searchsorted(ids, out)
    hit = at < len(ids)
    hit[hit] = ids[at[hit]] == out[hit]
    drop = at[hit]
    added = _arrays(data)
    cols = {name: np.delete(getattr(previous, name), drop) for name in COLUMNS}
    where = np.searchsorted(cols["ids"], added["ids"])
    cols = {name: np.insert(cols[name], where, added[name]) for name in COLUMNS}
    return Snapshot(
        token=key,
        categories=previous.categories,
        version=version,
        lineage=previous.lineage,
        **cols,
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
        # the newest value kept per lineage (snapshots, cross-boundary hits): the base of the
        # next one's delta
        self.latest: OrderedDict[str, Any] = OrderedDict()

    def previous(self, found: versions.Versions, filt: IncidentFilter) -> Snapshot | None:
        """The newest snapshot kept of `filt`'s scope at these jurisdictions versions, or
        None."""
        snap: Snapshot | None = self.latest.get(lineage(found, filt))
        return snap

    def latest_of(self, line: str) -> Any:
        """The newest value kept of lineage `line` (a value with `lineage` and `version`
        attributes), or None."""
        return self.latest.get(line)

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
        except Exception as exc:  # a failed build leaves the answers to PostgreSQL
            log_failure(log, f"building {key.split('|')[0]}", exc)
            return None
        # a value of a lineage (a snapshot, hits) is exact for its own token, even when a write
        # moved the versions since the build was asked for
        own = getattr(value, "lineage", "")
        if value is not None and (getattr(value, "token", None) == key or own):
            self.builds += 1
            await self.kept.get(value.token, _value(value))
            if own:
                known = self.latest.get(value.lineage)
                if known is None or known.version <= value.version:
                    self.latest[value.lineage] = value
                    self.latest.move_to_end(value.lineage)
                    while len(self.latest) > self.kept.size:
                        self.latest.popitem(last=False)
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
    found = await versions.read(session=session)
    key = token(found, filt)
    snap: Snapshot | None = cache.ready(key)
    if snap is None:
        scope_only = IncidentFilter(scope=filt.scope)
        previous = cache.previous(found, filt)

        async def make(s: AsyncSession) -> Snapshot | None:
            return await build(session=s, filt=scope_only, previous=previous)

        task = cache.schedule(key, make)
        if previous is not None:  # most likely a delta: worth a short wait
            snap = await wait_for_delta(cache, key, task)
    return snap


async def wait_for_delta(cache: SnapshotCache, key: str, task: asyncio.Task[Any]) -> Any:
    """The value for `key` once `task` (a build from the previous value and the change log:
    ~0.1-0.3 s at 1 M) has made it, waiting at most DELTA_WAIT_S; None after that (the caller
    asks PostgreSQL, which under load takes far longer, and the build goes on)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), DELTA_WAIT_S)
    return cache.ready(key)


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
