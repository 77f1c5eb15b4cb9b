"""Reading the event log: positions in it, what a subscriber's filter lets through, retention.

Order without gaps. Events are read in (xid, id) order, and only those whose transaction id is
below the oldest transaction still running (`pg_snapshot_xmin`): every transaction with a
smaller id has ended, so no event can later appear before one already delivered, whatever the
order in which concurrent writers commit. A sequence alone would not do: a transaction that
took id 10 may commit after one that took id 11 was read. The price: a long writing
transaction (a large import) holds back the events of writes that commit after it began until
it ends (docs/events.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, lru_cache
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    bindparam,
    func,
    literal_column,
    select,
    text,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.alerts.models import Alert, AlertRule
from app.events.models import EventLog, EventLogHorizon
from app.incidents import rules
from app.incidents.filters import IncidentFilter
from app.incidents.models import Incident

# the newest transaction id every earlier one of which has ended
FINAL: ColumnElement[int] = literal_column(
    "CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS text) AS bigint)", BigInteger()
)
BATCH = 1000  # events read at once
STATEMENTS = 256  # filters whose statements are kept (a filter per scope and query string)


@dataclass(frozen=True, order=True)
class Position:
    """A place in the event log: after the event (xid, id). (0, 0) is before the first."""

    xid: int
    id: int

    def token(self) -> str:
        """The SSE event id (what a browser sends back as Last-Event-ID)."""
        return f"{self.xid}-{self.id}"

    @classmethod
    def parse(cls, token: str) -> Position | None:
        """A position from a token made by token(); None for anything else."""
        m = re.fullmatch(r"(\d{1,19})-(\d{1,19})", token.strip())
        return cls(int(m[1]), int(m[2])) if m else None


START = Position(0, 0)


@dataclass(frozen=True)
class Event:
    """One event as a subscriber receives it."""

    position: Position
    kind: str
    data: dict[str, Any]
    rule_id: int | None = None  # alert.* events: who receives them is the rule's audience

    @cached_property
    def frame(self) -> bytes:
        """The event on the wire (text/event-stream), made once however many subscribers
        receive it."""
        return frame(self.kind, self.data, self.position.token())


def frame(kind: str, data: dict[str, Any], ident: str | None = None) -> bytes:
    """An event on the wire: one of the log, or one that is not (resync, end)."""
    head = f"event: {kind}\n" + (f"id: {ident}\n" if ident else "")
    return f"{head}data: {orjson.dumps(data).decode()}\n\n".encode()


# the stretch (after, upto] of the log: bound at execution (range_params), so that a statement
# over a stretch is built once per filter and reused for every stretch
AFTER = tuple_(EventLog.xid, EventLog.id) > tuple_(
    bindparam("after_xid", type_=BigInteger()), bindparam("after_id", type_=BigInteger())
)
UPTO = tuple_(EventLog.xid, EventLog.id) <= tuple_(
    bindparam("upto_xid", type_=BigInteger()), bindparam("upto_id", type_=BigInteger())
)


async def head(session: AsyncSession) -> Position:
    """The newest event that can be delivered (START when there is none)."""
    row = (
        await session.execute(
            select(EventLog.xid, EventLog.id)
            .where(EventLog.xid < FINAL)
            .order_by(EventLog.xid.desc(), EventLog.id.desc())
            .limit(1)
        )
    ).first()
    return Position(row.xid, row.id) if row else START


async def final_after(
    session: AsyncSession, after: Position, limit: int = BATCH
) -> list[tuple[Position, bool]]:
    """The positions of the deliverable events after `after` (at most `limit`), each with
    whether the incident moved (a subscriber that saw it before may have to hear it left)."""
    rows = await session.execute(
        select(EventLog.xid, EventLog.id, EventLog.was_geom.is_not(None))
        .where(AFTER, EventLog.xid < FINAL)
        .order_by(EventLog.xid, EventLog.id)
        .limit(limit),
        {"after_xid": after.xid, "after_id": after.id},
    )
    return [(Position(r[0], r[1]), bool(r[2])) for r in rows]


def range_params(after: Position, upto: Position) -> dict[str, int]:
    """The values of a stretch's bound parameters."""
    return {
        "after_xid": after.xid, "after_id": after.id, "upto_xid": upto.xid, "upto_id": upto.id,
    }  # fmt: skip


def stretch(*, was: bool = False, kinds: tuple[str, ...] = ()) -> Any:
    """The events of a stretch (of `kinds`, if given; range_params bind it) as incident-like
    rows (the filters' column names): where they are now, or (was=True) where the moved ones
    were before."""
    e = EventLog
    geom = e.was_geom if was else e.geom
    path = e.was_path if was else e.jurisdiction_path
    stmt = select(
        e.id.label("event_id"),
        e.xid.label("event_xid"),
        e.kind.label("kind"),
        e.at.label("at"),
        e.alert_id.label("alert_id"),
        e.rule_id.label("rule_id"),
        e.incident_id.label("id"),
        e.version.label("version"),
        e.category.label("category"),
        e.severity.label("severity"),
        e.status.label("status"),
        e.occurred_at.label("occurred_at"),
        geom.label("geom"),
        path.label("jurisdiction_path"),
        e.border_segment.label("border_segment"),
        e.border_distance_km.label("border_distance_km"),
    ).where(AFTER, UPTO)
    if was:
        stmt = stmt.where(e.was_geom.is_not(None))
    if kinds:
        stmt = stmt.where(e.kind.in_(kinds))
    return stmt.subquery("ev")


def _incident_row(now: Any) -> list[Any]:
    return [
        now.c.id,
        now.c.version,
        now.c.category,
        now.c.severity,
        now.c.status,
        now.c.occurred_at,
        func.ST_X(now.c.geom).label("lon"),
        func.ST_Y(now.c.geom).label("lat"),
        now.c.jurisdiction_path,
        now.c.border_segment,
        now.c.border_distance_km,
    ]


def _alert_row() -> list[Any]:
    return [
        Alert.idempotency_key,
        Alert.raised_at,
        Alert.acknowledged_at,
        Alert.acknowledged_by,
        AlertRule.name.label("rule_name"),
    ]


@lru_cache(maxsize=STATEMENTS)
def _matching(filt: IncidentFilter) -> Select[Any]:
    now = stretch()
    i = aliased(Incident, now, adapt_on_names=True)
    return (
        select(
            now.c.event_xid,
            now.c.event_id,
            now.c.kind,
            now.c.at,
            now.c.alert_id,
            now.c.rule_id,
            *_incident_row(now),
            *_alert_row(),
        )
        .outerjoin(Alert, Alert.id == now.c.alert_id)
        .outerjoin(AlertRule, AlertRule.id == now.c.rule_id)
        .where(and_(*filt.conditions(i)))
        .order_by(now.c.event_xid, now.c.event_id)
    )


@lru_cache(maxsize=STATEMENTS)
def _left(filt: IncidentFilter) -> Select[Any]:
    """The moved incidents that matched where they were: those not matching now left."""
    was = stretch(was=True)
    i = aliased(Incident, was, adapt_on_names=True)
    return select(was.c.event_xid, was.c.event_id, was.c.id, was.c.at).where(
        and_(*filt.conditions(i))
    )


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(rules.local_zone()).isoformat() if value else None


def _incident(r: Any) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "version": r.version,
        "category": r.category,
        "severity": r.severity,
        "status": r.status,
        "occurred_at": _iso(r.occurred_at),
        "jurisdictions": r.jurisdiction_path,
        "border_segment": r.border_segment,
        "border_distance_km": (
            round(r.border_distance_km, 3) if r.border_distance_km is not None else None
        ),
        "location": {"type": "Point", "coordinates": [round(r.lon, 6), round(r.lat, 6)]},
    }


def _alert(alert_id: int, rule_id: int, r: Any) -> dict[str, Any]:
    return {
        "id": alert_id,
        "rule": {"id": rule_id, "name": r.rule_name},
        "idempotency_key": str(r.idempotency_key),
        "raised_at": _iso(r.raised_at),
        "acknowledged_at": _iso(r.acknowledged_at),
        "acknowledged_by": r.acknowledged_by,
    }


def _payload(r: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"type": r.kind, "at": _iso(r.at)}
    if r.alert_id is not None:
        data["alert"] = _alert(r.alert_id, r.rule_id, r)
    data["incident"] = _incident(r)
    return data


async def alert_payloads(
    session: AsyncSession, alert_ids: list[int]
) -> list[tuple[int, dict[str, Any]]]:
    """What a webhook receives for each alert: as its `alert.raised` event on the feed."""
    e = EventLog
    now = select(e).where(e.kind == "alert.raised", e.alert_id.in_(alert_ids)).subquery("ev")
    rows = await session.execute(
        select(
            now.c.kind,
            now.c.at,
            now.c.alert_id,
            now.c.rule_id,
            now.c.incident_id.label("id"),
            *_incident_row(now)[1:],  # its `id` is the event's
            *_alert_row(),
        )
        .join(Alert, Alert.id == now.c.alert_id)
        .join(AlertRule, AlertRule.id == now.c.rule_id)
        .order_by(now.c.alert_id)
    )
    return [(r.alert_id, _payload(r)) for r in rows]


async def matching(
    session: AsyncSession,
    filt: IncidentFilter,
    after: Position,
    upto: Position,
    *,
    moves: bool = True,
) -> list[Event]:
    """The events in (after, upto] that `filt` (scope included) lets through, in log order:
    the incident as the event left it, or, for one that moved out of what `filt` lets
    through, an `incident.left` event with its id only (never where it went). `moves`: the
    range holds moved incidents (else their query is skipped)."""
    params = range_params(after, upto)
    out: dict[Position, Event] = {}
    for r in await session.execute(_matching(filt), params):
        pos = Position(r.event_xid, r.event_id)
        out[pos] = Event(pos, r.kind, _payload(r), r.rule_id)
    if moves:
        for r in await session.execute(_left(filt), params):
            pos = Position(r.event_xid, r.event_id)
            if pos not in out:
                data = {"type": "incident.left", "at": _iso(r.at), "incident": {"id": str(r.id)}}
                out[pos] = Event(pos, "incident.left", data)
    return [out[p] for p in sorted(out)]


async def horizon(session: AsyncSession) -> Position:
    """The newest event retention removed: resuming from before it would miss events."""
    row = (await session.execute(select(EventLogHorizon.xid, EventLogHorizon.id))).first()
    return Position(row.xid, row.id) if row else START


PRUNE_SQL = text(
    """
    WITH edge AS (
        SELECT xid, id FROM event_log
         WHERE at < clock_timestamp() - make_interval(secs => CAST(:keep_s AS float8))
         ORDER BY xid DESC, id DESC LIMIT 1
    ), gone AS (
        DELETE FROM event_log e USING edge WHERE (e.xid, e.id) <= (edge.xid, edge.id)
        RETURNING e.id
    )
    UPDATE event_log_horizon h SET xid = edge.xid, id = edge.id
      FROM edge WHERE (edge.xid, edge.id) > (h.xid, h.id)
    RETURNING (SELECT count(*) FROM gone)
    """
)


async def prune(session: AsyncSession, keep_s: float) -> int:
    """Remove the events older than `keep_s` seconds (and every event before them in log
    order); returns how many. One process at a time (an advisory lock); the caller commits."""
    locked = await session.execute(text("SELECT pg_try_advisory_xact_lock(hashtext('events'))"))
    if not locked.scalar():
        return 0
    removed = (await session.execute(PRUNE_SQL, {"keep_s": keep_s})).scalar()
    return int(removed or 0)
