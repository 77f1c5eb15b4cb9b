"""Cooperation areas: named groups of jurisdictions, border strips and drawn polygons

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 19:00:00

An area (name, purpose, lead unit, validity, whether it is a demo example) and its members:
jurisdictions of either era, strips along border segments, drawn polygons (app/cooperation/).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

from app.geo.spatial import SRID_WGS84

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "cooperation_area",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, comment="the name its units use (Vietnamese)"),
        sa.Column("name_en", sa.Text),
        sa.Column("purpose", sa.Text),
        sa.Column("lead_unit", sa.Text, comment="the unit that leads it"),
        sa.Column("valid_from", sa.Date),
        sa.Column("valid_to", sa.Date, comment="exclusive; NULL: in force"),
        sa.Column(
            "example",
            sa.Boolean,
            nullable=False,
            server_default=sa.false(),
            comment="demo data: an example, not a real agreement",
        ),
        sa.Column("source", sa.Text, comment="where the area comes from"),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("created_by", sa.Text),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("updated_by", sa.Text),
        sa.CheckConstraint(
            "valid_to IS NULL OR valid_from IS NULL OR valid_to > valid_from",
            name=op.f("ck_cooperation_area_period"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_cooperation_area_version")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cooperation_area")),
    )
    op.create_table(
        "cooperation_member",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("area_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column(
            "code",
            sa.String(32),
            comment="jurisdiction code (either era) or border segment (VNM-LAO)",
        ),
        sa.Column("name", sa.Text, comment="a drawn polygon's name"),
        sa.Column(
            "border_km", sa.Float, comment="border segment: the strip's width from the border, km"
        ),
        sa.Column(
            "approximate",
            sa.Boolean,
            nullable=False,
            server_default=sa.false(),
            comment="the drawn polygon is an approximation",
        ),
        sa.Column(
            "geom", Geometry("MULTIPOLYGON", srid=SRID_WGS84, spatial_index=False), nullable=True
        ),
        sa.CheckConstraint(
            "kind IN ('jurisdiction', 'border_segment', 'polygon')",
            name=op.f("ck_cooperation_member_kind"),
        ),
        sa.CheckConstraint(
            "(kind = 'polygon') = (geom IS NOT NULL)"
            " AND (kind = 'polygon' OR code IS NOT NULL)"
            " AND ((kind = 'border_segment') = (border_km IS NOT NULL))",
            name=op.f("ck_cooperation_member_fields_of_kind"),
        ),
        sa.CheckConstraint(
            "border_km IS NULL OR border_km > 0", name=op.f("ck_cooperation_member_border_km")
        ),
        sa.ForeignKeyConstraint(
            ["area_id"],
            ["cooperation_area.id"],
            ondelete="CASCADE",
            name=op.f("fk_cooperation_member_area_id_cooperation_area"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cooperation_member")),
    )
    op.create_index(op.f("ix_cooperation_member_area_id"), "cooperation_member", ["area_id"])
    op.create_index(
        "ix_cooperation_member_geom", "cooperation_member", ["geom"], postgresql_using="gist"
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("cooperation_member")
    op.drop_table("cooperation_area")
