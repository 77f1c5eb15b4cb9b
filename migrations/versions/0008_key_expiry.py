"""principal keys may expire

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 12:00:00

An optional expiry per key (`borderwatch keys create --expires-in 90d`, `expires_in` in the
admin API); an expired key authenticates nobody, like a revoked one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.add_column(
        "principal",
        sa.Column(
            "expires_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="the key stops working at this time; NULL = no expiry",
        ),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_column("principal", "expires_at")
