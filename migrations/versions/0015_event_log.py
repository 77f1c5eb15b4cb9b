"""The live feed's durable event log, written by triggers on incident

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 21:00:00

Every created, changed, deleted or restored incident becomes a row of event_log in the writing
transaction, whichever process wrote it (API, import, CLI), and one NOTIFY per statement wakes
the API processes at commit (app/events/). event_log_horizon remembers what retention removed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

from app import sqlfiles
from app.geo.spatial import SRID_WGS84

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENTS_SQL = "incident_events_v1.sql"
XID = "CAST(CAST(pg_current_xact_id() AS text) AS bigint)"


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "event_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("xid", sa.BigInteger, nullable=False, server_default=sa.text(XID)),
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.clock_timestamp(),
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("incident_id", postgresql.UUID(as_uuid=True)),
        sa.Column("version", sa.Integer),
        sa.Column("actor", sa.Text),
        sa.Column("category", sa.String(64)),
        sa.Column("severity", sa.SmallInteger),
        sa.Column("status", sa.String(32)),
        sa.Column("occurred_at", sa.DateTime(timezone=True)),
        sa.Column("geom", Geometry("POINT", srid=SRID_WGS84, spatial_index=False)),
        sa.Column("jurisdiction_path", postgresql.ARRAY(sa.String(32))),
        sa.Column("border_segment", sa.String(16)),
        sa.Column("border_distance_km", sa.Float),
        sa.Column(
            "was_geom",
            Geometry("POINT", srid=SRID_WGS84, spatial_index=False),
            comment="where it was before it moved (a subscriber that saw it there hears it left)",
        ),
        sa.Column("was_path", postgresql.ARRAY(sa.String(32))),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_log")),
    )
    op.create_index("ix_event_log_xid_id", "event_log", ["xid", "id"])
    op.create_index("ix_event_log_at", "event_log", ["at"])
    op.create_table(
        "event_log_horizon",
        sa.Column("one", sa.SmallInteger, nullable=False, server_default="1"),
        sa.Column("xid", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("id", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("one", name=op.f("pk_event_log_horizon")),
    )
    op.execute("INSERT INTO event_log_horizon (one) VALUES (1)")
    for statement in sqlfiles.statements(EVENTS_SQL):
        op.execute(statement)
    op.execute(
        "CREATE TRIGGER incident_events_inserted AFTER INSERT ON incident"
        " REFERENCING NEW TABLE AS inserted_rows"
        " FOR EACH STATEMENT EXECUTE FUNCTION incident_events_inserted()"
    )
    op.execute(
        "CREATE TRIGGER incident_events_updated AFTER UPDATE ON incident"
        " REFERENCING OLD TABLE AS updated_old NEW TABLE AS updated_new"
        " FOR EACH STATEMENT EXECUTE FUNCTION incident_events_updated()"
    )


def downgrade() -> None:
    """Revert this revision."""
    op.execute("DROP TRIGGER IF EXISTS incident_events_updated ON incident")
    op.execute("DROP TRIGGER IF EXISTS incident_events_inserted ON incident")
    op.execute("DROP FUNCTION IF EXISTS incident_events_updated()")
    op.execute("DROP FUNCTION IF EXISTS incident_events_inserted()")
    op.drop_table("event_log_horizon")
    op.drop_table("event_log")
