"""the derivation as SQL functions that the trigger and the bulk import both call

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 14:00:00

The functions of migrations/sql/incident_derive_v4.sql hold every rule and constant of the
derived incident fields (jurisdiction, nearest border, nearest post): incident_derive() (the
trigger) calls incident_derived for its incident; the bulk import calls incident_derived_near
for each distinct place, with the nearest-border and nearest-post candidates of a grid cell it
shares among the cell's points. The answers are those of 0007's function (same rules, same
ties); the offshore search now skips, from bounding boxes alone, the candidate provinces that
cannot be within 12 nautical miles before measuring the others.
"""

from collections.abc import Sequence

from alembic import op

from app import sqlfiles

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# frozen copies in migrations/sql/: this revision's functions, and 0007's trigger function
INCIDENT_DERIVE_SQL = "incident_derive_v4.sql"
PREVIOUS_DERIVE_SQL = "incident_derive_v3.sql"
# what this revision adds to 0007's, dropped by the downgrade (callers before callees)
NEW_FUNCTIONS = (
    "incident_derived(geometry, date)",
    "incident_derived_near(geometry, date, integer[], geography, integer[], float8[], integer[],"
    " float8[])",
    "incident_post_pick(geography, float8, integer[], float8[])",
    "incident_post_candidates(geography, float8)",
    "incident_border_pick(geography, float8, integer[], float8[])",
    "incident_border_candidates(geography, float8)",
    "incident_cell_circle(float8, integer, integer)",
    "incident_lower_bound_m(float8, float8)",
    "incident_on_sphere_m(float8)",
    "incident_reach_m(float8, float8)",
    "incident_jurisdiction(geometry, date, integer[])",
    "incident_offshore(geometry)",
    "incident_surely_beyond(geometry, geometry, float8)",
    "incident_levels(integer[], date)",
    "incident_covering(geometry)",
)


def upgrade() -> None:
    """Apply this revision."""
    for statement in sqlfiles.statements(INCIDENT_DERIVE_SQL):
        op.execute(statement)


def downgrade() -> None:
    """Revert this revision."""
    for statement in sqlfiles.statements(PREVIOUS_DERIVE_SQL):
        op.execute(statement)
    for signature in NEW_FUNCTIONS:
        op.execute(f"DROP FUNCTION {signature}")
