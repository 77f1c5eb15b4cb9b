"""Alert rules, alerts, the webhook outbox, and alert events on the live feed

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 21:10:00

Rules (owned by a principal, a unit, or a scope as its default rule) are matched against the
event log in log order by one process at a time (alert_cursor remembers how far); an alert is
raised once per rule and incident, with its `alert.raised` event and its webhook deliveries in
the same transaction (app/alerts/).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("jurisdiction", "post", "area", "border_segment")
DELIVERY_STATES = ("pending", "delivered", "dead")


def _stamps() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("created_by", sa.Text),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("updated_by", sa.Text),
    ]


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "alert_rule",
        sa.Column("id", sa.Integer, sa.Identity(), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("categories", postgresql.ARRAY(sa.String(64)), comment="NULL: every category"),
        sa.Column("severity_min", sa.SmallInteger, nullable=False, server_default="1"),
        sa.Column("jurisdiction_code", sa.String(32)),
        sa.Column("post_id", sa.Integer),
        sa.Column("area_id", sa.Integer),
        sa.Column("border_segment", sa.String(16)),
        sa.Column("distance_km", sa.Float),
        sa.Column("owner_principal_id", sa.Integer),
        sa.Column("owner_unit", sa.Text),
        sa.Column(
            "default_for",
            sa.String(48),
            comment="the scope whose default rule this is (jurisdiction:<code>)",
        ),
        sa.Column(
            "scope_code",
            sa.String(32),
            comment="the creator's scope: the rule sees no incident outside it",
        ),
        sa.Column("scope_area_id", sa.Integer),
        sa.Column("webhook_url", sa.Text),
        sa.Column(
            "webhook_secret",
            sa.Text,
            comment="HMAC-SHA256 key of the webhook's signature (shown once when set)",
        ),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        *_stamps(),
        sa.CheckConstraint(f"kind IN {KINDS!r}", name=op.f("ck_alert_rule_kind")),
        sa.CheckConstraint("severity_min BETWEEN 1 AND 5", name=op.f("ck_alert_rule_severity_min")),
        sa.CheckConstraint(
            "distance_km IS NULL OR distance_km BETWEEN 0 AND 200",
            name=op.f("ck_alert_rule_distance"),
        ),
        sa.CheckConstraint(
            "num_nonnulls(owner_principal_id, owner_unit, default_for) = 1",
            name=op.f("ck_alert_rule_one_owner"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_alert_rule_version")),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["border_post.id"],
            name=op.f("fk_alert_rule_post_id_border_post"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["area_id"],
            ["cooperation_area.id"],
            name=op.f("fk_alert_rule_area_id_cooperation_area"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["owner_principal_id"],
            ["principal.id"],
            name=op.f("fk_alert_rule_owner_principal_id_principal"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rule")),
    )
    op.create_index(
        "uq_alert_rule_default_for",
        "alert_rule",
        ["default_for"],
        unique=True,
        postgresql_where=sa.text("default_for IS NOT NULL"),
    )
    op.create_table(
        "alert",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("rule_id", sa.Integer, nullable=False),
        sa.Column("incident_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False, comment="the event that raised it"),
        sa.Column(
            "idempotency_key",
            postgresql.UUID(as_uuid=True),
            nullable=False,
            server_default=sa.text("gen_random_uuid()"),
        ),
        sa.Column(
            "raised_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.clock_timestamp(),
        ),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True)),
        sa.Column("acknowledged_by", sa.Text),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["alert_rule.id"],
            name=op.f("fk_alert_rule_id_alert_rule"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
        sa.UniqueConstraint("rule_id", "incident_id", name="uq_alert_rule_incident"),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_alert_idempotency_key")),
    )
    op.create_index("ix_alert_rule_raised", "alert", ["rule_id", "id"])
    op.create_table(
        "alert_cursor",
        sa.Column("one", sa.SmallInteger, nullable=False, server_default="1"),
        sa.Column("xid", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("id", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("one", name=op.f("pk_alert_cursor")),
    )
    # alerts start from the events written after this revision
    op.execute(
        "INSERT INTO alert_cursor (one, xid, id) SELECT 1, coalesce(max(xid), 0),"
        " coalesce(max(id), 0) FROM event_log"
    )
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("alert_id", sa.BigInteger, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column(
            "body",
            postgresql.JSONB,
            nullable=False,
            comment="what is sent (signed as is)",
        ),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column("claimed_until", sa.DateTime(timezone=True)),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(f"state IN {DELIVERY_STATES!r}", name=op.f("ck_webhook_delivery_state")),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alert.id"],
            name=op.f("fk_webhook_delivery_alert_id_alert"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery")),
    )
    op.create_index(
        "ix_webhook_delivery_due",
        "webhook_delivery",
        ["next_attempt_at"],
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index("ix_webhook_delivery_alert", "webhook_delivery", ["alert_id"])
    op.add_column(
        "event_log", sa.Column("alert_id", sa.BigInteger, comment="alert.* events: the alert")
    )
    op.add_column(
        "event_log",
        sa.Column(
            "rule_id", sa.Integer, comment="alert.* events: its rule (who receives it: app/alerts/)"
        ),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_column("event_log", "rule_id")
    op.drop_column("event_log", "alert_id")
    op.drop_table("webhook_delivery")
    op.drop_table("alert_cursor")
    op.drop_table("alert")
    op.drop_table("alert_rule")
