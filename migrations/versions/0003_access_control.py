"""access control: principals, audit events, the unified audit log, cooperation zones

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_FN = """
CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only' USING ERRCODE = 'insufficient_privilege';
END
$fn$
"""

# One read model over both append-only sources: incident history and the other writes.
AUDIT_LOG_VIEW = """
CREATE VIEW audit_log AS
SELECT 'incident-' || h.id AS id, h.changed_at AS at, h.actor, h.action,
       'incident'::text AS entity_type, h.incident_id::text AS entity_id,
       CASE WHEN h.action IN ('create', 'import') AND NOT EXISTS (
                SELECT 1 FROM incident_history p
                 WHERE p.incident_id = h.incident_id AND p.id < h.id)
            THEN NULL
            ELSE (SELECT jsonb_object_agg(c.key, c.value -> 0) FROM jsonb_each(h.changes) c) END
           AS before,
       CASE WHEN h.action IN ('create', 'import') AND NOT EXISTS (
                SELECT 1 FROM incident_history p
                 WHERE p.incident_id = h.incident_id AND p.id < h.id)
            THEN h.changes
            ELSE (SELECT jsonb_object_agg(c.key, c.value -> 1) FROM jsonb_each(h.changes) c) END
           AS after
  FROM incident_history h
UNION ALL
SELECT 'event-' || e.id, e.at, e.actor, e.action, e.entity_type, e.entity_id, e.before, e.after
  FROM audit_event e
"""


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "principal",
        sa.Column("id", sa.Integer(), sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column(
            "jurisdiction_code", sa.String(32), nullable=True, comment="scope; NULL = national"
        ),
        sa.Column("unit", sa.Text(), nullable=True, comment="the unit an officer reports for"),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('viewer', 'officer', 'analyst', 'admin')", name=op.f("ck_principal_role")
        ),
        sa.UniqueConstraint("key_prefix", name=op.f("uq_principal_key_prefix")),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.Text(), nullable=True),
        sa.Column("before", postgresql.JSONB(), nullable=True),
        sa.Column("after", postgresql.JSONB(), nullable=True),
    )
    op.create_index("ix_audit_event_at", "audit_event", ["at"])
    op.execute(APPEND_ONLY_FN)
    op.execute(
        "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event"
        " FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event"
        " FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()"
    )
    op.create_index("ix_incident_history_changed_at", "incident_history", ["changed_at"])
    op.execute(AUDIT_LOG_VIEW)
    op.create_table(
        "scope_zone",
        sa.Column("id", sa.Integer(), sa.Identity(), primary_key=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("distance_m", sa.Integer(), nullable=False),
        sa.Column("geom", Geometry("POLYGON", srid=4326, spatial_index=False), nullable=False),
    )
    op.create_index("ix_scope_zone_geom", "scope_zone", ["geom"], postgresql_using="gist")
    op.create_index("ix_scope_zone_code_distance", "scope_zone", ["code", "distance_m"])
    op.create_table(
        "scope_zone_built",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("distance_m", sa.Integer(), primary_key=True),
        sa.Column(
            "built_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("scope_zone_built")
    op.drop_table("scope_zone")
    op.execute("DROP VIEW IF EXISTS audit_log")
    op.drop_index("ix_incident_history_changed_at", table_name="incident_history")
    op.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
    op.execute("DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event")
    op.execute("DROP FUNCTION IF EXISTS audit_event_append_only()")
    op.drop_table("audit_event")
    op.drop_table("principal")
