"""Vietnam's two maps (the 63 provinces until 1 July 2025, the 34 and 3 321 communes since),
and the sea

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 16:00:00

Jurisdictions gain the fields of the official registry (official code, type in Vietnamese,
whether the polygon is an approximation, the former units a province was formed from, the
official area and centroid). Incidents gain today's commune, the province and commune in force
when they occurred, and their place at sea (distance to land, maritime band). The derivation
functions of migrations/sql/incident_derive_v5.sql replace v4's (see that file); existing
incidents keep their fields until the next boundary load derives them all again: loading
today's units (`borderwatch geodata load`, or the start of `borderwatch serve`, which loads the
bundled units_2025.geojson when they are missing) does, once, what a re-derivation here would
do a second time (docs/geodata.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

from app import sqlfiles
from app.geo.spatial import SRID_WGS84

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INCIDENT_DERIVE_SQL = "incident_derive_v5.sql"
# the history's picture of a row names every column (0006): this revision's names the new ones
HISTORY_SQL = "incident_history_v2.sql"
PREVIOUS_HISTORY_SQL = "incident_history_v1.sql"
# the nearest-piece searches of the sea look in one level at a time: a spatial index each
PIECE_INDEX_LEVELS = ("country", "province", "commune")
PREVIOUS_DERIVE_SQL = "incident_derive_v4.sql"
# v4's functions whose result type v5 changes, or that v5 no longer has (callers first)
REPLACED = (
    "incident_derived(geometry, date)",
    "incident_derived_near(geometry, date, integer[], geography, integer[], float8[], integer[],"
    " float8[])",
    "incident_jurisdiction(geometry, date, integer[])",
    "incident_offshore(geometry)",
    "incident_levels(integer[], date)",
)
# v5's functions that v4 does not have (callers first)
ADDED = (
    "incident_sea(geometry)",
    "incident_units(integer[], date)",
    "incident_in_force(date, date, date)",
    "incident_local_day(timestamptz)",
)


def _incident_columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("commune_code", sa.String(32), comment="today's commune"),
        sa.Column("province_at_occurrence", sa.String(32), comment="province in force that day"),
        sa.Column("commune_at_occurrence", sa.String(32), comment="commune in force that day"),
        sa.Column("offshore_km", sa.Float, comment="at sea: distance to the coastline"),
        sa.Column(
            "maritime_zone",
            sa.String(16),
            comment="territorial_sea (0-12 nm) | contiguous_zone (12-24 nm)",
        ),
    )


def _jurisdiction_columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("official_code", sa.String(16), comment="code of the official registry"),
        sa.Column(
            "type_local", sa.Text, comment="type in Vietnamese: Tỉnh, Thành phố, Xã, Phường …"
        ),
        sa.Column(
            "geometry_approximate",
            sa.Boolean,
            nullable=False,
            server_default=sa.false(),
            comment="the polygon is an approximation built from the official centroid and area",
        ),
        sa.Column("formed_from", sa.ARRAY(sa.String(32)), comment="codes of the former units"),
        sa.Column("official_area_km2", sa.Float),
        sa.Column("official_centroid", Geometry("POINT", srid=SRID_WGS84, spatial_index=False)),
    )


def upgrade() -> None:
    """Apply this revision."""
    for column in _jurisdiction_columns():
        op.add_column("jurisdiction", column)
    for column in _incident_columns():
        op.add_column("incident", column)
    op.create_check_constraint(
        op.f("ck_incident_maritime_zone"),
        "incident",
        "maritime_zone IN ('territorial_sea', 'contiguous_zone')",
    )
    op.create_index("ix_incident_commune_code", "incident", ["commune_code"])
    for level in PIECE_INDEX_LEVELS:
        op.create_index(
            f"ix_jurisdiction_piece_geom_{level}",
            "jurisdiction_piece",
            ["geom"],
            postgresql_using="gist",
            postgresql_where=sa.text(f"level = '{level}'"),
        )
    for signature in REPLACED:
        op.execute(f"DROP FUNCTION {signature}")
    for statement in sqlfiles.statements(INCIDENT_DERIVE_SQL):
        op.execute(statement)
    for statement in sqlfiles.statements(HISTORY_SQL):
        op.execute(statement)


def downgrade() -> None:
    """Revert this revision."""
    for signature in (*REPLACED[:3], *ADDED):
        op.execute(f"DROP FUNCTION {signature}")
    for statement in sqlfiles.statements(PREVIOUS_DERIVE_SQL):
        op.execute(statement)
    for statement in sqlfiles.statements(PREVIOUS_HISTORY_SQL):
        op.execute(statement)
    for level in PIECE_INDEX_LEVELS:
        op.drop_index(f"ix_jurisdiction_piece_geom_{level}", "jurisdiction_piece")
    op.drop_index("ix_incident_commune_code", "incident")
    op.drop_constraint(op.f("ck_incident_maritime_zone"), "incident")
    for column in reversed(_incident_columns()):
        op.drop_column("incident", column.name)
    for column in reversed(_jurisdiction_columns()):
        op.drop_column("jurisdiction", column.name)
