"""Units at the four levels of the hotline network, their contacts, keys and incidents of a unit

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 10:00:00

`unit` (code, name with diacritics, English name, agency, level central | province | commune |
post, parent, area: a jurisdiction code and/or a border post, country, valid_to) and
`unit_contact` (hotline / phone / radio / email; never in public reference data). A key may
belong to a unit (`principal.unit_id`); an incident records its reporting unit as a reference
(`incident.reporting_unit_id`; the free-text `unit` stays), and the incident history's picture of
a row names it (incident_history_v3.sql). See app/units/ and docs/units.md.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app import sqlfiles

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEVELS = ("central", "province", "commune", "post")
AGENCIES = ("police", "border_guard", "coast_guard", "customs", "other")
CHANNELS = ("hotline", "phone", "radio", "email")
# the history's picture of a row names every column (0006): this revision's names the new one
HISTORY_SQL = "incident_history_v3.sql"
PREVIOUS_HISTORY_SQL = "incident_history_v2.sql"


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "unit",
        sa.Column("id", sa.Integer, sa.Identity(), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False, comment="the unit's own name (with diacritics)"),
        sa.Column("name_en", sa.Text),
        sa.Column("agency", sa.String(16), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column(
            "country",
            sa.String(3),
            nullable=False,
            server_default="VNM",
            comment="ISO 3166-1 alpha-3; not VNM: a counterpart",
        ),
        sa.Column("parent_id", sa.Integer),
        sa.Column(
            "jurisdiction_code", sa.String(32), comment="area: a jurisdiction code of either era"
        ),
        sa.Column("post_id", sa.Integer, comment="area: a border post"),
        sa.Column("valid_to", sa.Date, comment="exclusive; NULL: in force"),
        sa.Column("source", sa.Text, comment="where the record comes from; demo"),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("created_by", sa.Text),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("updated_by", sa.Text),
        sa.CheckConstraint(f"level IN {LEVELS!r}", name=op.f("ck_unit_level")),
        sa.CheckConstraint(f"agency IN {AGENCIES!r}", name=op.f("ck_unit_agency")),
        sa.CheckConstraint(
            "code ~ '^[A-Za-z0-9][A-Za-z0-9_.-]*$'", name=op.f("ck_unit_code_format")
        ),
        sa.CheckConstraint("country ~ '^[A-Z]{3}$'", name=op.f("ck_unit_country_format")),
        sa.CheckConstraint(
            "parent_id IS NULL OR parent_id <> id", name=op.f("ck_unit_not_own_parent")
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["unit.id"], name=op.f("fk_unit_parent_id_unit"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["border_post.id"],
            name=op.f("fk_unit_post_id_border_post"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unit")),
        sa.UniqueConstraint("code", name=op.f("uq_unit_code")),
    )
    op.create_index("ix_unit_jurisdiction_code", "unit", ["jurisdiction_code"])
    op.create_index("ix_unit_post_id", "unit", ["post_id"])
    op.create_index("ix_unit_parent_id", "unit", ["parent_id"])
    op.create_table(
        "unit_contact",
        sa.Column("id", sa.Integer, sa.Identity(), nullable=False),
        sa.Column("unit_id", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(f"channel IN {CHANNELS!r}", name=op.f("ck_unit_contact_channel")),
        sa.CheckConstraint(
            "length(value) BETWEEN 1 AND 200", name=op.f("ck_unit_contact_value_length")
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"],
            ["unit.id"],
            name=op.f("fk_unit_contact_unit_id_unit"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unit_contact")),
    )
    op.create_index("ix_unit_contact_unit_id", "unit_contact", ["unit_id", "id"])
    op.add_column(
        "principal", sa.Column("unit_id", sa.Integer, comment="the unit the key belongs to")
    )
    op.create_foreign_key(
        op.f("fk_principal_unit_id_unit"),
        "principal",
        "unit",
        ["unit_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    # a nullable column without a default: no rewrite of the incident table
    op.add_column(
        "incident",
        sa.Column("reporting_unit_id", sa.Integer, comment="the reporting unit (a reference)"),
    )
    op.create_foreign_key(
        op.f("fk_incident_reporting_unit_id_unit"),
        "incident",
        "unit",
        ["reporting_unit_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_index(
        "ix_incident_reporting_unit_id",
        "incident",
        ["reporting_unit_id"],
        postgresql_where=sa.text("reporting_unit_id IS NOT NULL"),
    )
    for statement in sqlfiles.statements(HISTORY_SQL):
        op.execute(statement)


def downgrade() -> None:
    """Revert this revision."""
    for statement in sqlfiles.statements(PREVIOUS_HISTORY_SQL):
        op.execute(statement)
    op.drop_index("ix_incident_reporting_unit_id", table_name="incident")
    op.drop_constraint(op.f("fk_incident_reporting_unit_id_unit"), "incident", type_="foreignkey")
    op.drop_column("incident", "reporting_unit_id")
    op.drop_constraint(op.f("fk_principal_unit_id_unit"), "principal", type_="foreignkey")
    op.drop_column("principal", "unit_id")
    op.drop_index("ix_unit_contact_unit_id", table_name="unit_contact")
    op.drop_table("unit_contact")
    op.drop_index("ix_unit_parent_id", table_name="unit")
    op.drop_index("ix_unit_post_id", table_name="unit")
    op.drop_index("ix_unit_jurisdiction_code", table_name="unit")
    op.drop_table("unit")
