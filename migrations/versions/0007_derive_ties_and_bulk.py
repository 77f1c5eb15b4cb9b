"""incident_derive: ties broken the same way every time; not called in bulk

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:30:00

Equal candidates were ordered by chance: two border pieces at exactly the same distance (a point
whose nearest border point is the vertex two pieces share), two jurisdictions of one level that
both cover a point on their common boundary (and are valid alike), two provinces equally near
an offshore point. The bulk import, which finds the candidates another way, breaks those ties
by piece id or code, and now the trigger does the same, so both give the same answer in every
case.

The trigger gets a WHEN condition on `borderwatch.bulk`: during a set-based import (which has
derived the fields already) the function is not even called, instead of being called for every
row to return at once.
"""

from collections.abc import Sequence

from alembic import op

from app import sqlfiles

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# frozen copies in migrations/sql/: 0002's function with the ties broken, and 0002's own
INCIDENT_DERIVE_SQL = "incident_derive_v3.sql"
PREVIOUS_DERIVE_SQL = "incident_derive_v2.sql"

TRIGGER = (
    "CREATE TRIGGER incident_derive BEFORE INSERT OR UPDATE OF geom, occurred_at ON incident"
    " FOR EACH ROW {when} EXECUTE FUNCTION incident_derive()"
)
BULK_OFF = "WHEN (current_setting('borderwatch.bulk', true) IS DISTINCT FROM 'on')"


def upgrade() -> None:
    """Apply this revision."""
    for statement in sqlfiles.statements(INCIDENT_DERIVE_SQL):
        op.execute(statement)
    op.execute("DROP TRIGGER incident_derive ON incident")
    op.execute(TRIGGER.format(when=BULK_OFF))


def downgrade() -> None:
    """Revert this revision."""
    op.execute("DROP TRIGGER incident_derive ON incident")
    op.execute(TRIGGER.format(when=""))
    for statement in sqlfiles.statements(PREVIOUS_DERIVE_SQL):
        op.execute(statement)
