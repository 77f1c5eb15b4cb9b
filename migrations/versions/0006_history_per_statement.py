"""incident history written per statement (transition tables) instead of per row

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:00:00

The history rows are the same as the row trigger of 0002 wrote (same actor, action, version and
`changes`, including "no history row when nothing an operator would call a change happened"),
but one INSERT ... SELECT per statement writes them for every row the statement inserted or
updated: a 100 000-row import no longer runs 100 000 trigger calls. INSERT ... ON CONFLICT DO
UPDATE fires both triggers; PostgreSQL shows the inserted rows to the INSERT trigger and the
updated rows to the UPDATE trigger.
"""

from collections.abc import Sequence

from alembic import op

from app import sqlfiles

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The functions (migrations/sql/incident_history_v1.sql, frozen) write the stored picture of a
# row, as the 0002 trigger wrote it: to_jsonb(row) without geom and request_hash, plus the point
# as GeoJSON `location`. The columns are named instead of taking to_jsonb(row) and removing geom:
# converting the geometry to jsonb (PostGIS's cast) only to throw it away cost ~140 µs a row,
# more than the rest of the history write together. An update records {column: [before,
# after]} for every column that differs (updated_at and version alone are not a change); a row
# where nothing else differs gets no history row. tests/test_incidents.py checks that the
# picture names every column of incident but those two (0010 names its new columns: v2).
HISTORY_SQL = "incident_history_v1.sql"


def upgrade() -> None:
    """Apply this revision."""
    op.execute("DROP TRIGGER IF EXISTS incident_history_append ON incident")
    for statement in sqlfiles.statements(HISTORY_SQL):
        op.execute(statement)
    op.execute(
        "CREATE TRIGGER incident_history_inserted AFTER INSERT ON incident"
        " REFERENCING NEW TABLE AS inserted_rows"
        " FOR EACH STATEMENT EXECUTE FUNCTION incident_history_inserted()"
    )
    op.execute(
        "CREATE TRIGGER incident_history_updated AFTER UPDATE ON incident"
        " REFERENCING OLD TABLE AS updated_old NEW TABLE AS updated_new"
        " FOR EACH STATEMENT EXECUTE FUNCTION incident_history_updated()"
    )


def downgrade() -> None:
    """Revert this revision (back to the row trigger of 0002, whose function is still there)."""
    op.execute("DROP TRIGGER IF EXISTS incident_history_updated ON incident")
    op.execute("DROP TRIGGER IF EXISTS incident_history_inserted ON incident")
    op.execute("DROP FUNCTION IF EXISTS incident_history_updated()")
    op.execute("DROP FUNCTION IF EXISTS incident_history_inserted()")
    op.execute(
        "CREATE TRIGGER incident_history_append AFTER INSERT OR UPDATE ON incident"
        " FOR EACH ROW EXECUTE FUNCTION incident_history_append()"
    )
