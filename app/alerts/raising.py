"""Raising alerts: the event log read in log order, each rule matched against each stretch.

One process at a time raises (a transaction-level advisory lock; any API process may be the
one), and the cursor, the alerts, their `alert.raised` events and their webhook deliveries are
written in one transaction: an event is matched exactly once whichever process crashes when,
and an alert never exists without its deliveries. The incident write itself put the event in
the log in its own transaction, so nothing a rule would match is ever lost (docs/events.md).

A rule is matched with the same conditions as the list filters (app/incidents/filters.py) over
the event's picture of the incident: its category and severity, its place (in or near a
jurisdiction: the scope rule; near a post: a geodesic radius; in a post's area of
responsibility: ST_Intersects with its current area; in a cooperation area: the
`cooperation=` rule; on a border strip), and never outside the scope of whoever made it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from geoalchemy2.shape import to_shape
from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from app.alerts.models import Alert, AlertCursor, AlertRule, WebhookDelivery
from app.auth.models import Principal
from app.auth.scope import AreaScope, Scope, ensure_zone
from app.cooperation.members import members_of
from app.cooperation.models import CooperationArea
from app.events import service as events
from app.events.hub import CHANNEL
from app.events.service import Position
from app.geo import spatial
from app.incidents.filters import IncidentFilter, in_area, on_border_strip, visible
from app.incidents.models import Incident
from app.jurisdictions.models import Jurisdiction
from app.posts.models import BorderPost

RAISING = ("incident.created", "incident.changed", "incident.status", "incident.restored")
DEFAULT_SEVERITY = 4  # a scope's default rule: severe incidents
DEFAULT_NAME = "Sự việc nghiêm trọng tại và gần"  # "severe incidents in and near"


def default_for(code: str) -> str:
    """The `default_for` of the default rule of keys scoped to jurisdiction `code`."""
    return f"jurisdiction:{code}"


def default_for_area(area_id: int) -> str:
    """The `default_for` of the default rule of keys scoped to cooperation area `area_id`."""
    return f"area:{area_id}"


async def ensure_default_rules(session: AsyncSession, cooperation_km: float) -> None:
    """Every jurisdiction or cooperation area some key is scoped to has its default rule: a
    severe incident (≥ 4) in it or within the cooperation distance of it, named in Vietnamese
    after the unit or the area ("Sự việc nghiêm trọng tại và gần An Giang (VN-44)")."""
    p = Principal
    scoped = select(p.jurisdiction_code, p.cooperation_area_id).where(
        or_(p.jurisdiction_code.is_not(None), p.cooperation_area_id.is_not(None)),
        p.revoked_at.is_(None),
    )
    found = (await session.execute(scoped.distinct())).all()
    wanted = {default_for(c): c for c, _ in found if c} | {
        default_for_area(a): a for _, a in found if a
    }
    have = await session.execute(
        select(AlertRule.default_for).where(AlertRule.default_for.in_(list(wanted)))
    )
    missing = set(wanted) - set(have.scalars())
    if not missing:
        return
    codes = sorted(str(wanted[k]) for k in missing if k.startswith("jurisdiction:"))
    areas = sorted(int(wanted[k]) for k in missing if k.startswith("area:"))
    j, a = Jurisdiction, CooperationArea
    unit_names = {  # the newest version of a code comes last, and wins
        code: name_local or name
        for code, name_local, name in await session.execute(
            select(j.code, j.name_local, j.name)
            .where(j.code.in_(codes))
            .order_by(j.code, j.valid_from.asc().nulls_first())
        )
    }
    area_names = dict((await session.execute(select(a.id, a.name).where(a.id.in_(areas)))).all())
    common = {
        "severity_min": DEFAULT_SEVERITY, "distance_km": cooperation_km, "created_by": "system",
        "jurisdiction_code": None, "scope_code": None, "area_id": None, "scope_area_id": None,
    }  # fmt: skip
    rows = [
        common
        | {
            "name": f"{DEFAULT_NAME} {unit_names.get(code, code)} ({code})",
            "kind": "jurisdiction",
            "jurisdiction_code": code,
            "scope_code": code,
            "default_for": default_for(code),
        }
        for code in codes
    ] + [
        common
        | {
            "name": f"{DEFAULT_NAME} khu vực hợp tác {area_names.get(area, area)}",
            "kind": "area",
            "area_id": area,
            "scope_area_id": area,
            "default_for": default_for_area(area),
        }
        for area in areas
    ]
    stmt = pg_insert(AlertRule).values(rows)
    await session.execute(
        stmt.on_conflict_do_nothing(
            index_elements=[AlertRule.default_for],
            index_where=AlertRule.default_for.is_not(None),
        )
    )


def in_post_area(post_id: int, i: type[Incident]) -> ColumnElement[bool]:
    """SQL: incident-like row `i` lies in the current area of post `post_id` (read when the
    statement runs, so a new or regenerated area counts at once) and the post was in force on
    the day the incident occurred (Vietnam's day: a closed post matches nothing from its
    valid_to on)."""
    p = BorderPost
    day = func.incident_local_day(i.occurred_at)
    return exists().where(
        p.id == post_id,
        p.area.is_not(None),
        or_(p.valid_from.is_(None), p.valid_from <= day),
        or_(p.valid_to.is_(None), p.valid_to > day),
        func.ST_Intersects(p.area, i.geom),
    )


async def _conditions(
    session: AsyncSession, rule: AlertRule, i: type[Incident], cooperation_m: int
) -> list[ColumnElement[bool]]:
    """The rule as conditions on incident-like rows `i`."""
    area = AreaScope(id=rule.scope_area_id, name="") if rule.scope_area_id else None
    scope = await ensure_zone(
        session=session, scope=Scope(code=rule.scope_code, distance_m=cooperation_m, area=area)
    )
    base = IncidentFilter(
        scope=scope, categories=tuple(rule.categories or ()), severity_min=rule.severity_min
    ).conditions(i)
    if rule.kind == "post_area" and rule.post_id is not None:
        return [*base, in_post_area(rule.post_id, i)]
    km = rule.distance_km or 0.0
    if rule.kind == "jurisdiction" and rule.jurisdiction_code:
        near = await ensure_zone(
            session=session, scope=Scope(code=rule.jurisdiction_code, distance_m=round(km * 1000))
        )
        return [*base, visible(near, i)]
    if rule.kind == "post" and rule.post_id is not None:
        post = await session.get(BorderPost, rule.post_id)
        if post is None:
            return [literal(False)]
        return [*base, spatial.within_metres(i.geom, to_shape(post.geom), km * 1000)]
    if rule.kind == "area" and rule.area_id is not None and km > 0:  # and around it
        around = AreaScope(id=rule.area_id, name="")
        near = await ensure_zone(
            session=session, scope=Scope(code=None, distance_m=round(km * 1000), area=around)
        )
        return [*base, visible(near, i)]
    if rule.kind == "area" and rule.area_id is not None:
        return [*base, in_area(await members_of(session, rule.area_id), i)]
    if rule.kind == "border_segment" and rule.border_segment:
        return [*base, on_border_strip(rule.border_segment, km, i)]
    return [literal(False)]


# a rule's statement is built once per version of the rule and kept this long (the zones it
# reads change only with a boundary load)
STATEMENT_TTL_S = 300.0
_statements: dict[tuple[int, int], tuple[float, Any]] = {}

# an alert's event carries the picture of the incident the raising event had
ALERT_EVENTS = text(
    """
    INSERT INTO event_log (kind, alert_id, rule_id, incident_id, version, category, severity,
                           status, occurred_at, geom, jurisdiction_path, border_segment,
                           border_distance_km)
    SELECT 'alert.raised', a.id, a.rule_id, e.incident_id, e.version, e.category, e.severity,
           e.status, e.occurred_at, e.geom, e.jurisdiction_path, e.border_segment,
           e.border_distance_km
      FROM alert a JOIN event_log e ON e.id = a.event_id
     WHERE a.id = ANY(CAST(:ids AS bigint[]))
     ORDER BY a.id
    """
)


async def _statement(session: AsyncSession, rule: AlertRule, cooperation_m: int) -> Any:
    """INSERT the alerts `rule` raises in a stretch (range_params bind it), RETURNING their
    ids."""
    now = time.monotonic()
    key = (rule.id, rule.version)
    kept = _statements.get(key)
    if kept is not None and now - kept[0] < STATEMENT_TTL_S:
        return kept[1]
    sub = events.stretch(kinds=RAISING)
    i = aliased(Incident, sub, adapt_on_names=True)
    conditions = await _conditions(session, rule, i, cooperation_m)
    table = cast(Table, Alert.__table__)
    stmt = (
        pg_insert(table)
        .from_select(
            ["rule_id", "incident_id", "event_id"],
            select(literal(rule.id), sub.c.id, sub.c.event_id)
            .where(and_(*conditions))
            .order_by(sub.c.event_xid, sub.c.event_id),
        )
        .on_conflict_do_nothing(constraint="uq_alert_rule_incident")
        .returning(table.c.id)
    )
    for old in [k for k, (at, _) in _statements.items() if now - at >= STATEMENT_TTL_S]:
        del _statements[old]
    _statements[key] = (now, stmt)
    return stmt


async def raise_alerts(session: AsyncSession, *, cooperation_km: float) -> int:
    """One round: match the events after the cursor (up to one batch) against every active
    rule; returns how many events were matched (BATCH: there may be more). The caller
    commits."""
    seen = (await session.execute(select(AlertCursor.xid, AlertCursor.id))).one()
    if not await events.final_after(session, Position(seen.xid, seen.id), limit=1):
        return 0  # nothing new: no lock taken, nothing written
    locked = await session.execute(text("SELECT pg_try_advisory_xact_lock(hashtext('alerts'))"))
    if not locked.scalar():
        return 0
    cursor = (await session.execute(select(AlertCursor).with_for_update())).scalar_one()
    found = await events.final_after(session, Position(cursor.xid, cursor.id))
    if not found:
        return 0
    start, end = Position(cursor.xid, cursor.id), found[-1][0]
    await ensure_default_rules(session, cooperation_km)
    rules = (await session.execute(select(AlertRule).where(AlertRule.active))).scalars().all()
    raised = 0
    for rule in rules:
        new = await _statement(session, rule, round(cooperation_km * 1000))
        made = [a for (a,) in await session.execute(new, events.range_params(start, end))]
        if not made:
            continue
        raised += len(made)
        await session.execute(ALERT_EVENTS, {"ids": made})
        if rule.webhook_url:
            await queue_webhooks(session, rule, made)
    await session.execute(update(AlertCursor).values(xid=end.xid, id=end.id))
    if raised:
        await session.execute(select(func.pg_notify(CHANNEL, "")))
    return len(found)


async def queue_webhooks(session: AsyncSession, rule: AlertRule, alert_ids: list[int]) -> None:
    """One pending delivery per alert to the rule's webhook (the outbox; app/alerts/webhooks.py
    sends them), with the body it will send, signed as is."""
    rows = await events.alert_payloads(session, alert_ids)
    await session.execute(
        insert(WebhookDelivery),
        [{"alert_id": alert_id, "url": rule.webhook_url, "body": body} for alert_id, body in rows],
    )


def worker(
    sessions: async_sessionmaker[AsyncSession], *, cooperation_km: float
) -> Callable[[], Awaitable[None]]:
    """The work one hub round does for alerts (app/events/hub.py `after_round`): raise until
    the cursor reaches the log's deliverable end."""

    async def work() -> None:
        while True:
            async with sessions() as session, session.begin():
                matched = await raise_alerts(session, cooperation_km=cooperation_km)
            if matched < events.BATCH:
                return

    return work
