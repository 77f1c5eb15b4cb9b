"""Alert rules (create, read, change; audited), the alerts a principal receives, acknowledgement.

Who receives a rule's alerts (its audience): the principal that owns it, every principal of the
unit that owns it, or, for a scope's default rule, every key of that scope — and each only for
incidents inside its own scope. An acknowledgement is the alert's, so everyone in the audience
sees who acknowledged it and when.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator
from sqlalchemy import ColumnElement, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.models import Alert, AlertRule
from app.alerts.raising import default_for, default_for_area
from app.auth.service import Identity, record
from app.borders.models import BorderSegment
from app.cooperation.models import CooperationArea
from app.errors import Forbidden, InvalidInput, NotFound, PreconditionFailed
from app.events.hub import CHANNEL
from app.events.models import EventLog
from app.incidents import rules as incident_rules
from app.incidents.filters import visible
from app.incidents.models import Category, Incident
from app.jurisdictions.models import Jurisdiction
from app.posts.manage import may_write_at
from app.posts.models import BorderPost
from app.posts.service import in_force

NAME_MAX = 200


class RuleIn(BaseModel):
    """A new rule: what (categories, minimum severity) and where (one kind of place)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_MAX)
    kind: Literal["jurisdiction", "post", "post_area", "area", "border_segment"] = Field(
        description="post: within distance_km of the post's point; post_area: inside the post's"
        " area of responsibility (its current area, while the post is in force)"
    )
    categories: list[str] | None = Field(default=None, min_length=1, max_length=50)
    severity_min: int = Field(default=1, ge=1, le=5)
    jurisdiction: str | None = Field(
        default=None, max_length=32, description="kind jurisdiction: in it or within distance_km"
    )
    post: str | None = Field(
        default=None,
        max_length=64,
        description="kind post or post_area: the border post's code (mong-cai)",
    )
    cooperation_area: int | None = Field(default=None, ge=1, description="kind area")
    border_segment: str | None = Field(default=None, max_length=16, description="e.g. VNM-LAO")
    distance_km: float | None = Field(
        default=None,
        ge=0,
        le=200,
        description="how near: to the jurisdiction, the post or the border (default 10 km); for"
        " an area, also this far around it (default: in it only)",
    )
    owner: Literal["me", "unit"] = Field(
        default="me", description="me: this key's principal; unit: every key of its unit"
    )
    webhook_url: HttpUrl | None = Field(default=None, description="admins only")

    @model_validator(mode="after")
    def _place(self) -> RuleIn:
        needs = {
            "jurisdiction": "jurisdiction", "post": "post", "post_area": "post",
            "area": "cooperation_area", "border_segment": "border_segment",
        }  # fmt: skip
        field = needs[self.kind]
        if self.kind == "post_area" and self.distance_km is not None:
            raise ValueError(
                "a rule of kind post_area has no distance_km: the post's area is its place"
            )
        if getattr(self, field) is None:
            raise ValueError(f"a rule of kind {self.kind} names its {field}")
        for other in set(needs.values()) - {field}:
            if getattr(self, other) is not None:
                raise ValueError(f"a rule of kind {self.kind} has no {other}")
        return self


class RulePatch(BaseModel):
    """A change: the fields given replace the stored ones."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    categories: list[str] | None = Field(default=None, min_length=1, max_length=50)
    severity_min: int | None = Field(default=None, ge=1, le=5)
    distance_km: float | None = Field(default=None, ge=0, le=200)
    active: bool | None = None
    webhook_url: HttpUrl | None = None


DEFAULT_KM = 10.0  # a post's or a border strip's rule without a distance


def audience(identity: Identity) -> ColumnElement[bool]:
    """SQL: the rules whose alerts `identity` receives."""
    r = AlertRule
    parts: list[ColumnElement[bool]] = [r.owner_principal_id == identity.id]
    if identity.unit:
        parts.append(r.owner_unit == identity.unit)
    if identity.jurisdiction_code:
        parts.append(r.default_for == default_for(identity.jurisdiction_code))
    if identity.scope.area is not None:
        parts.append(r.default_for == default_for_area(identity.scope.area.id))
    return or_(*parts)


async def receives(session: AsyncSession, identity: Identity, rule_id: int) -> bool:
    """Whether `identity` is in the audience of rule `rule_id`."""
    found = await session.execute(
        select(AlertRule.id).where(AlertRule.id == rule_id, audience(identity))
    )
    return found.scalar() is not None


def _iso(value: datetime | None) -> str | None:
    return incident_rules.localized(value).isoformat() if value else None


def _rule_json(r: AlertRule) -> dict[str, Any]:
    owner: dict[str, Any]
    if r.owner_principal_id is not None:
        owner = {"principal": r.owner_principal_id}
    elif r.owner_unit is not None:
        owner = {"unit": r.owner_unit}
    else:
        owner = {"default_for": r.default_for}
    return {
        "id": r.id,
        "name": r.name,
        "kind": r.kind,
        "categories": r.categories,
        "severity_min": r.severity_min,
        "jurisdiction": r.jurisdiction_code,
        "post": r.post.code if r.post is not None else None,
        "cooperation_area": r.area_id,
        "border_segment": r.border_segment,
        "distance_km": r.distance_km,
        "owner": owner,
        "scope": r.scope_code,
        "webhook_url": r.webhook_url,
        "active": r.active,
        "version": r.version,
        "created_at": _iso(r.created_at),
        "created_by": r.created_by,
        "updated_at": _iso(r.updated_at),
        "updated_by": r.updated_by,
    }


async def _exists(session: AsyncSession, column: Any, value: Any) -> bool:
    return (await session.execute(select(column).where(column == value))).first() is not None


async def _check_place(session: AsyncSession, body: RuleIn) -> None:
    """The place a rule names exists (422 naming the field otherwise)."""
    if body.jurisdiction and not await _exists(session, Jurisdiction.code, body.jurisdiction):
        raise InvalidInput(
            f"no jurisdiction has the code '{body.jurisdiction}'", field="jurisdiction"
        )
    if body.post is not None and not await _exists(session, BorderPost.code, body.post):
        raise InvalidInput(f"no border post has the code '{body.post}'", field="post")
    if body.cooperation_area is not None and not await _exists(
        session, CooperationArea.id, body.cooperation_area
    ):
        raise InvalidInput(
            f"no cooperation area has the id {body.cooperation_area}", field="cooperation_area"
        )
    if body.border_segment and not await _exists(session, BorderSegment.code, body.border_segment):
        raise InvalidInput(
            f"no border segment has the code '{body.border_segment}' (e.g. VNM-LAO)",
            field="border_segment",
        )


async def _check_post_area(session: AsyncSession, identity: Identity, code: str) -> None:
    """A post_area rule's post has an area, is in force today, and lies in the caller's scope
    (the rule scoped admins manage posts by: its position in their jurisdiction or area)."""
    p = BorderPost
    post = (
        await session.execute(
            select(p.area.is_not(None), in_force(p), func.ST_X(p.geom), func.ST_Y(p.geom)).where(
                p.code == code
            )
        )
    ).one()
    has_area, open_today, lon, lat = post
    if not has_area:
        raise InvalidInput(
            f"border post '{code}' has no area of responsibility (GET /border-posts/areas)",
            field="post",
        )
    if not open_today:
        raise InvalidInput(f"border post '{code}' is closed (or not yet open)", field="post")
    if not await may_write_at(session, identity.scope, float(lon), float(lat)):
        raise Forbidden(
            f"border post '{code}' lies outside your scope ({identity.scope.label}): a rule may"
            " name only the posts of your jurisdiction or area",
            field="post",
        )


async def _check_categories(session: AsyncSession, categories: list[str] | None) -> None:
    if not categories:
        return
    known = set(
        (await session.execute(select(Category.code).where(Category.code.in_(categories))))
        .scalars()
        .all()
    )
    for code in categories:
        if code not in known:
            raise InvalidInput(f"no category has the code '{code}' (GET /categories)",
                               field="categories")  # fmt: skip


async def _post_id(session: AsyncSession, code: str) -> int:
    return (
        await session.execute(select(BorderPost.id).where(BorderPost.code == code))
    ).scalar_one()


def _check_webhook(identity: Identity, url: HttpUrl | None) -> None:
    if url is not None and identity.role != "admin":
        raise Forbidden("only an admin may send alerts to a webhook", field="webhook_url")


async def create_rule(
    session: AsyncSession, *, identity: Identity, body: RuleIn
) -> tuple[dict[str, Any], str | None]:
    """A new rule owned by the caller or its unit; returns it and, when it has a webhook, the
    webhook's signing secret (shown once)."""
    _check_webhook(identity, body.webhook_url)
    if body.owner == "unit" and not identity.unit:
        raise InvalidInput("this key has no unit: a rule of its unit needs one", field="owner")
    await _check_place(session, body)
    if body.kind == "post_area" and body.post is not None:
        await _check_post_area(session, identity, body.post)
    await _check_categories(session, body.categories)
    secret = secrets.token_urlsafe(32) if body.webhook_url else None
    km = body.distance_km
    if km is None and body.kind in ("post", "border_segment", "jurisdiction"):
        km = DEFAULT_KM
    rule = AlertRule(
        name=body.name.strip(),
        kind=body.kind,
        categories=body.categories,
        severity_min=body.severity_min,
        jurisdiction_code=body.jurisdiction,
        post_id=await _post_id(session, body.post) if body.post else None,
        area_id=body.cooperation_area,
        border_segment=body.border_segment,
        distance_km=km,
        owner_principal_id=identity.id if body.owner == "me" else None,
        owner_unit=identity.unit if body.owner == "unit" else None,
        scope_code=identity.jurisdiction_code,
        scope_area_id=identity.scope.area.id if identity.scope.area is not None else None,
        webhook_url=str(body.webhook_url) if body.webhook_url else None,
        webhook_secret=secret,
        created_by=identity.actor,
        updated_by=identity.actor,
    )
    session.add(rule)
    await session.flush()
    await session.refresh(rule)
    after = _rule_json(rule)
    await record(
        session=session, actor=identity.actor, action="alert_rule_create",
        entity_type="alert_rule", entity_id=str(rule.id), after=after,
    )  # fmt: skip
    return after, secret


def _same_scope(identity: Identity, rule: AlertRule) -> bool:
    """Whether the rule was made in the caller's scope (a jurisdiction's or an area's)."""
    area = identity.scope.area
    if area is not None:
        return rule.scope_area_id == area.id
    return identity.jurisdiction_code is not None and rule.scope_code == identity.jurisdiction_code


def _may_change(identity: Identity, rule: AlertRule) -> bool:
    if identity.role == "admin" and (identity.scope.national or _same_scope(identity, rule)):
        return True
    if rule.default_for is not None:
        return False
    return rule.owner_principal_id == identity.id or (
        rule.owner_unit is not None and rule.owner_unit == identity.unit
    )


async def _rule(session: AsyncSession, identity: Identity, rule_id: int) -> AlertRule:
    """A rule the caller receives or may change (404 otherwise: others' rules do not exist)."""
    rule = await session.get(AlertRule, rule_id)
    if rule is None or not (
        _may_change(identity, rule) or await receives(session, identity, rule_id)
    ):
        raise NotFound(f"no alert rule {rule_id}")
    return rule


async def list_rules(session: AsyncSession, identity: Identity) -> list[dict[str, Any]]:
    """The rules whose alerts the caller receives (a national admin: every rule)."""
    stmt = select(AlertRule).order_by(AlertRule.id)
    if not (identity.role == "admin" and identity.scope.national):
        stmt = stmt.where(audience(identity))
    return [_rule_json(r) for r in (await session.execute(stmt)).scalars()]


async def get_rule(session: AsyncSession, identity: Identity, rule_id: int) -> dict[str, Any]:
    """One rule the caller receives or may change."""
    return _rule_json(await _rule(session, identity, rule_id))


async def update_rule(
    session: AsyncSession,
    *,
    identity: Identity,
    rule_id: int,
    patch: RulePatch,
    expected_version: int | None,
) -> tuple[dict[str, Any], str | None]:
    """Change a rule (If-Match on its version); audited. A new webhook URL gets a new secret
    (returned once)."""
    rule = await _rule(session, identity, rule_id)
    if not _may_change(identity, rule):
        raise Forbidden("only the rule's owner (or its unit, or an admin) may change it")
    await session.refresh(rule, with_for_update=True)
    if expected_version is not None and rule.version != expected_version:  # None: If-Match *
        raise PreconditionFailed(
            f"alert rule {rule_id} is at version {rule.version}, not {expected_version}"
        )
    given = patch.model_fields_set
    if "webhook_url" in given:
        _check_webhook(identity, patch.webhook_url)
    for name in ("name", "severity_min", "active"):
        if name in given and getattr(patch, name) is None:
            raise InvalidInput(f"{name} cannot be removed", field=name)
    await _check_categories(session, patch.categories)
    if "distance_km" in given:
        if rule.kind == "post_area" and patch.distance_km is not None:
            raise InvalidInput(
                "a rule of kind post_area has no distance_km: the post's area is its place",
                field="distance_km",
            )
        if rule.kind == "post" and patch.distance_km is None:
            raise InvalidInput(
                "a rule of kind post keeps a distance_km (for the post's area: kind post_area)",
                field="distance_km",
            )
    before = _rule_json(rule)
    secret = None
    for name in ("name", "categories", "severity_min", "distance_km", "active"):
        if name in given:
            setattr(rule, name, getattr(patch, name))
    if "webhook_url" in given:
        rule.webhook_url = str(patch.webhook_url) if patch.webhook_url else None
        secret = secrets.token_urlsafe(32) if patch.webhook_url else None
        rule.webhook_secret = secret
    rule.version += 1
    rule.updated_by = identity.actor
    rule.updated_at = func.now()
    await session.flush()
    await session.refresh(rule)
    after = _rule_json(rule)
    await record(
        session=session, actor=identity.actor, action="alert_rule_update",
        entity_type="alert_rule", entity_id=str(rule_id), before=before, after=after,
    )  # fmt: skip
    return after, secret


def _visible_alerts(identity: Identity) -> list[ColumnElement[bool]]:
    return [
        Alert.rule_id.in_(select(AlertRule.id).where(audience(identity))),
        Incident.deleted_at.is_(None),
        visible(identity.scope),
    ]


def _alert_json(a: Any) -> dict[str, Any]:
    return {
        "id": a.id,
        "rule": {"id": a.rule_id, "name": a.rule_name},
        "incident": {
            "id": str(a.incident_id),
            "category": a.category,
            "severity": a.severity,
            "status": a.status,
            "occurred_at": _iso(a.occurred_at),
            "location": {"type": "Point", "coordinates": [round(a.lon, 6), round(a.lat, 6)]},
        },
        "idempotency_key": str(a.idempotency_key),
        "raised_at": _iso(a.raised_at),
        "acknowledged_at": _iso(a.acknowledged_at),
        "acknowledged_by": a.acknowledged_by,
    }


def _alert_select() -> Any:
    return select(
        Alert.id, Alert.rule_id, AlertRule.name.label("rule_name"), Alert.incident_id,
        Incident.category, Incident.severity, Incident.status, Incident.occurred_at,
        func.ST_X(Incident.geom).label("lon"), func.ST_Y(Incident.geom).label("lat"),
        Alert.idempotency_key, Alert.raised_at, Alert.acknowledged_at, Alert.acknowledged_by,
    ).select_from(Alert).join(AlertRule, AlertRule.id == Alert.rule_id).join(
        Incident, Incident.id == Alert.incident_id
    )  # fmt: skip


async def list_alerts(
    session: AsyncSession,
    identity: Identity,
    *,
    acknowledged: bool | None,
    before: int | None,
    limit: int,
) -> dict[str, Any]:
    """The caller's alerts, newest first (keyset on the id: `before`), with the number not yet
    acknowledged."""
    where = _visible_alerts(identity)
    stmt = _alert_select().where(*where)
    if acknowledged is not None:
        stmt = stmt.where(Alert.acknowledged_at.is_not(None) if acknowledged else
                          Alert.acknowledged_at.is_(None))  # fmt: skip
    if before is not None:
        stmt = stmt.where(Alert.id < before)
    rows = (await session.execute(stmt.order_by(Alert.id.desc()).limit(limit + 1))).all()
    unread = (
        await session.execute(
            select(func.count())
            .select_from(Alert)
            .join(Incident, Incident.id == Alert.incident_id)
            .where(*where, Alert.acknowledged_at.is_(None))
        )
    ).scalar_one()
    page = rows[:limit]
    return {
        "alerts": [_alert_json(r) for r in page],
        "unacknowledged": unread,
        "next_before": page[-1].id if len(rows) > limit else None,
    }


async def acknowledge(session: AsyncSession, identity: Identity, alert_id: int) -> dict[str, Any]:
    """Acknowledge an alert the caller receives (once: acknowledging again answers the first
    acknowledgement); everyone in its audience hears it on the live feed."""
    row = (
        await session.execute(
            _alert_select().where(Alert.id == alert_id, *_visible_alerts(identity))
        )
    ).first()
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    done = await session.execute(
        update(Alert)
        .where(Alert.id == alert_id, Alert.acknowledged_at.is_(None))
        .values(acknowledged_at=func.clock_timestamp(), acknowledged_by=identity.actor)
        .returning(Alert.id)
    )
    if done.scalar() is not None:
        raised = EventLog
        source = (
            await session.execute(
                select(raised).where(raised.alert_id == alert_id, raised.kind == "alert.raised")
            )
        ).scalar()
        picture = {
            "incident_id": row.incident_id, "category": row.category, "severity": row.severity,
            "status": row.status, "occurred_at": row.occurred_at,
        }  # fmt: skip
        if source is not None:
            picture |= {
                "geom": source.geom, "jurisdiction_path": source.jurisdiction_path,
                "border_segment": source.border_segment, "version": source.version,
                "border_distance_km": source.border_distance_km,
            }  # fmt: skip
        else:  # the raising event is past the retention: the incident as it is
            incident = await session.get(Incident, row.incident_id)
            assert incident is not None
            picture |= {
                "geom": incident.geom, "jurisdiction_path": incident.jurisdiction_path,
                "border_segment": incident.border_segment, "version": incident.version,
                "border_distance_km": incident.border_distance_km,
            }  # fmt: skip
        await session.execute(
            insert(EventLog).values(
                kind="alert.acknowledged", alert_id=alert_id, rule_id=row.rule_id, **picture
            )
        )
        await session.execute(select(func.pg_notify(CHANNEL, "")))
        await record(
            session=session, actor=identity.actor, action="alert_acknowledge",
            entity_type="alert", entity_id=str(alert_id),
        )  # fmt: skip
    fresh = (await session.execute(_alert_select().where(Alert.id == alert_id))).one()
    return _alert_json(fresh)
