"""An index on the incident's nearest border segment and distance

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 19:30:00

A cooperation area's border strip (`border_segment = … AND border_distance_km <= …`) joins its
other members in one OR; with this index each arm has one, and PostgreSQL combines them in a
bitmap OR instead of reading every incident (docs/performance.md, fourth session).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_incident_border_segment_distance"


def upgrade() -> None:
    """Apply this revision."""
    op.create_index(INDEX, "incident", ["border_segment", "border_distance_km"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(INDEX, "incident")
