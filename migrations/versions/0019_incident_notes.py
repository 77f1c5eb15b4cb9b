"""Notes on incidents, and what one key recorded

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 01:00:00

`incident_note`: append-only notes on an incident, the id chosen by the client (an offline
queue retries with the same id); a purged incident takes its notes with it. An index on
(created_by, occurred_at DESC, id DESC) answers `GET /incidents?recorded_by=me` (the field
page's "my records") at any table size. See app/incidents/notes.py.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTE_MAX = 4000


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "incident_note",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("incident_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("unit", sa.Text),
        sa.CheckConstraint(
            f"char_length(body) BETWEEN 1 AND {NOTE_MAX}",
            name=op.f("ck_incident_note_body_length"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name=op.f("fk_incident_note_incident_id_incident"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_note")),
    )
    op.create_index("ix_incident_note_incident_id", "incident_note", ["incident_id", "created_at"])
    op.create_index(
        "ix_incident_created_by_occurred_at",
        "incident",
        ["created_by", sa.text("occurred_at DESC"), sa.text("id DESC")],
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_incident_created_by_occurred_at", table_name="incident")
    op.drop_table("incident_note")
