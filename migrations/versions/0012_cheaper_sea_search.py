"""The sea's search made cheaper, with the same answers (incident_derive_v6.sql)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 18:30:00

migrations/sql/incident_derive_v6.sql replaces v5's functions with the same signatures and the
same answers: only incident_sea searches less (see the file). No incident is derived again:
nothing it would get differs.
"""

from collections.abc import Sequence

from alembic import op

from app import sqlfiles

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INCIDENT_DERIVE_SQL = "incident_derive_v6.sql"
PREVIOUS_DERIVE_SQL = "incident_derive_v5.sql"


def upgrade() -> None:
    """Apply this revision."""
    for statement in sqlfiles.statements(INCIDENT_DERIVE_SQL):
        op.execute(statement)


def downgrade() -> None:
    """Revert this revision."""
    for statement in sqlfiles.statements(PREVIOUS_DERIVE_SQL):
        op.execute(statement)
