"""Alert rules, the alerts they raise, and the webhook outbox (app/alerts/)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base
from app.posts.models import BorderPost

KINDS = ("jurisdiction", "post", "post_area", "area", "border_segment")
DELIVERY_STATES = ("pending", "delivered", "dead")


class AlertRule(Base):
    """ "Category C, severity ≥ S, in/near jurisdiction J, near post P, in cooperation area A or
    on border segment S", owned by a principal or a unit, or a scope's default rule."""

    __tablename__ = "alert_rule"
    __table_args__ = (
        CheckConstraint(f"kind IN {KINDS!r}", name="kind"),
        CheckConstraint("severity_min BETWEEN 1 AND 5", name="severity_min"),
        CheckConstraint("distance_km IS NULL OR distance_km BETWEEN 0 AND 200", name="distance"),
        CheckConstraint(
            "num_nonnulls(owner_principal_id, owner_unit, default_for) = 1", name="one_owner"
        ),
        CheckConstraint("version >= 1", name="version"),
        CheckConstraint(  # a post's area: names its post, has no distance (0025)
            "kind <> 'post_area' OR (post_id IS NOT NULL AND distance_km IS NULL)",
            name="post_area",
        ),
        Index(
            "uq_alert_rule_default_for",
            "default_for",
            unique=True,
            postgresql_where=text("default_for IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    categories: Mapped[list[str] | None] = mapped_column(
        ARRAY(String(64)), comment="NULL: every category"
    )
    severity_min: Mapped[int] = mapped_column(SmallInteger, server_default="1")
    jurisdiction_code: Mapped[str | None] = mapped_column(String(32))
    post_id: Mapped[int | None] = mapped_column(ForeignKey("border_post.id", ondelete="RESTRICT"))
    post: Mapped[BorderPost | None] = relationship(lazy="selectin")
    area_id: Mapped[int | None] = mapped_column(
        ForeignKey("cooperation_area.id", ondelete="RESTRICT")
    )
    border_segment: Mapped[str | None] = mapped_column(String(16))
    distance_km: Mapped[float | None] = mapped_column(Float)
    owner_principal_id: Mapped[int | None] = mapped_column(
        ForeignKey("principal.id", ondelete="RESTRICT")
    )
    owner_unit: Mapped[str | None] = mapped_column(Text)
    default_for: Mapped[str | None] = mapped_column(
        String(48), comment="the scope whose default rule this is (jurisdiction:<code>)"
    )
    scope_code: Mapped[str | None] = mapped_column(
        String(32), comment="the creator's scope: the rule sees no incident outside it"
    )
    scope_area_id: Mapped[int | None] = mapped_column(Integer)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(
        Text, comment="HMAC-SHA256 key of the webhook's signature (shown once when set)"
    )
    active: Mapped[bool] = mapped_column(Boolean, server_default=true())
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_by: Mapped[str | None] = mapped_column(Text)


class Alert(Base):
    """One incident that met one rule (once: a later change does not raise it again)."""

    __tablename__ = "alert"
    __table_args__ = (
        UniqueConstraint("rule_id", "incident_id", name="uq_alert_rule_incident"),
        Index("ix_alert_rule_raised", "rule_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rule.id", ondelete="RESTRICT"))
    incident_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    event_id: Mapped[int] = mapped_column(BigInteger, comment="the event that raised it")
    idempotency_key: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), server_default=text("gen_random_uuid()"), unique=True
    )
    raised_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[str | None] = mapped_column(Text)


class AlertCursor(Base):
    """How far in the event log alerts have been raised (one row)."""

    __tablename__ = "alert_cursor"

    one: Mapped[int] = mapped_column(SmallInteger, primary_key=True, server_default="1")
    xid: Mapped[int] = mapped_column(BigInteger, server_default="0")
    id: Mapped[int] = mapped_column(BigInteger, server_default="0")


class WebhookDelivery(Base):
    """The outbox: one alert to send to one rule's webhook, until it answers 2xx or dies."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        CheckConstraint(f"state IN {DELIVERY_STATES!r}", name="state"),
        Index(
            "ix_webhook_delivery_due",
            "next_attempt_at",
            postgresql_where=text("state = 'pending'"),
        ),
        Index("ix_webhook_delivery_alert", "alert_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id", ondelete="RESTRICT"))
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[dict[str, Any]] = mapped_column(JSONB, comment="what is sent (signed as is)")
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
