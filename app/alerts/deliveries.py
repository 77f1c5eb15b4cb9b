"""The webhook outbox as admins see it: the deliveries of the rules in their scope, and replaying
one that died (or was delivered: to send it again on purpose). app/alerts/webhooks.py sends."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.models import Alert, AlertRule, WebhookDelivery
from app.auth.service import Identity, record
from app.errors import Conflict, NotFound
from app.events.hub import CHANNEL
from app.incidents import rules as incident_rules

State = Literal["pending", "delivered", "dead"]


def _iso(value: datetime | None) -> str | None:
    return incident_rules.localized(value).isoformat() if value else None


def in_scope(identity: Identity) -> ColumnElement[bool]:
    """SQL: the rules whose deliveries admin `identity` sees: every rule for a national admin;
    else the rules made in its scope (a jurisdiction, a cooperation area) and its own."""
    if identity.scope.national:
        return true()
    r = AlertRule
    parts: list[ColumnElement[bool]] = [r.owner_principal_id == identity.id]
    if identity.jurisdiction_code:
        parts.append(r.scope_code == identity.jurisdiction_code)
    if identity.scope.area is not None:
        parts.append(r.scope_area_id == identity.scope.area.id)
    return or_(*parts)


def _select(identity: Identity) -> Any:
    d = WebhookDelivery
    return (
        select(
            d.id,
            d.alert_id,
            Alert.idempotency_key,
            Alert.rule_id,
            AlertRule.name.label("rule_name"),
            d.url,
            d.state,
            d.attempts,
            d.next_attempt_at,
            d.last_status,
            d.last_error,
            d.created_at,
            d.delivered_at,
        )
        .join(Alert, Alert.id == d.alert_id)
        .join(AlertRule, AlertRule.id == Alert.rule_id)
        .where(in_scope(identity))
    )


def _json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "alert": {"id": row.alert_id, "idempotency_key": str(row.idempotency_key)},
        "rule": {"id": row.rule_id, "name": row.rule_name},
        "url": row.url,
        "state": row.state,
        "attempts": row.attempts,
        # only a pending delivery has a next attempt
        "next_attempt_at": _iso(row.next_attempt_at) if row.state == "pending" else None,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "created_at": _iso(row.created_at),
        "delivered_at": _iso(row.delivered_at),
    }


async def list_deliveries(
    session: AsyncSession,
    identity: Identity,
    *,
    state: State | None,
    before: int | None,
    limit: int,
) -> dict[str, Any]:
    """The deliveries the admin sees, newest first (keyset on the id: `before`)."""
    stmt = _select(identity)
    if state is not None:
        stmt = stmt.where(WebhookDelivery.state == state)
    if before is not None:
        stmt = stmt.where(WebhookDelivery.id < before)
    stmt = stmt.order_by(WebhookDelivery.id.desc()).limit(limit + 1)
    rows = (await session.execute(stmt)).all()
    page = rows[:limit]
    return {
        "deliveries": [_json(r) for r in page],
        "next_before": page[-1].id if len(rows) > limit else None,
    }


async def replay(session: AsyncSession, identity: Identity, delivery_id: int) -> dict[str, Any]:
    """Make a dead or delivered delivery pending again now, with no attempts, to the rule's
    current webhook; audited (webhook_replay). 404 outside the admin's scope, 409 when it is
    pending or its rule can no longer send."""
    row = (
        await session.execute(
            _select(identity)
            .add_columns(AlertRule.webhook_url.label("rule_url"), AlertRule.active)
            .where(WebhookDelivery.id == delivery_id)
            .with_for_update(of=WebhookDelivery)
        )
    ).first()
    if row is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    if row.state == "pending":
        raise Conflict(
            f"webhook delivery {delivery_id} is pending (attempt {row.attempts} made): it is"
            " sent without a replay; replay it once it is dead or delivered"
        )
    if not row.rule_url or not row.active:
        why = "is inactive" if row.rule_url else "no longer has a webhook"
        raise Conflict(
            f"alert rule {row.rule_id} {why}: a replay could not be sent (give the rule a"
            f" webhook and turn it on first: PATCH /alert-rules/{row.rule_id})"
        )
    before = _json(row)
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(
            state="pending",
            attempts=0,
            next_attempt_at=func.now(),
            claimed_until=None,
            last_status=None,
            last_error=None,
            delivered_at=None,
            url=row.rule_url,
        )
    )
    now = _select(identity).where(WebhookDelivery.id == delivery_id)
    after = _json((await session.execute(now)).one())
    await record(
        session=session, actor=identity.actor, action="webhook_replay",
        entity_type="webhook_delivery", entity_id=str(delivery_id), before=before, after=after,
    )  # fmt: skip
    # wake the hubs: the delivery is sent in their next round, not at their next poll
    await session.execute(select(func.pg_notify(CHANNEL, "")))
    return after
