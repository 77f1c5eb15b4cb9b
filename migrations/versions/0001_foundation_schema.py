"""foundation schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 08:18:10.248366
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

from app import sqlfiles

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Derived incident fields, computed in the database on every insert and whenever the location
# or the time changes (and by `UPDATE incident SET geom = geom` after a boundary reload).
# - jurisdiction: the covering jurisdiction at every level, preferring the one valid at
#   occurred_at; a point in no country at all (offshore, or in a river channel that the
#   generalised boundaries leave out) takes the nearest province within 12 nautical miles.
# - border: nearest national border segment; KNN over the indexed segment pieces picks the
#   candidates, the geodesic distance decides.
# - nearest border post: the same two steps over border_post.
INCIDENT_DERIVE_SQL = "incident_derive_v1.sql"  # migrations/sql/, frozen

INCIDENT_TRIGGER_UP = """
CREATE TRIGGER incident_derive
    BEFORE INSERT OR UPDATE OF geom, occurred_at ON incident
    FOR EACH ROW EXECUTE FUNCTION incident_derive()
"""

# asyncpg runs one statement per execute
INCIDENT_DERIVE_DOWN = (
    "DROP TRIGGER IF EXISTS incident_derive ON incident",
    "DROP FUNCTION IF EXISTS incident_derive()",
)


def upgrade() -> None:
    """Apply this revision."""
    # PostGIS must be available on the server; the embedded cluster has it from the Debian package.
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_geospatial_table(
        "border_post",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_local", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("agency", sa.Text(), nullable=False),
        sa.Column("border", sa.String(length=16), nullable=True, comment="border segment code"),
        sa.Column("province_code", sa.String(length=32), nullable=True),
        sa.Column("counterpart", sa.Text(), nullable=True, comment="the post across the border"),
        sa.Column("position_approximate", sa.Boolean(), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("source", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('border_gate', 'border_guard_station', 'police', 'customs', 'coast_guard')",
            name=op.f("ck_border_post_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_border_post")),
        sa.UniqueConstraint("code", name=op.f("uq_border_post_code")),
    )
    op.create_geospatial_index(
        "ix_border_post_geom",
        "border_post",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_geospatial_table(
        "border_segment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False, comment="e.g. VNM-LAO"),
        sa.Column("country_a", sa.String(length=3), nullable=False),
        sa.Column("country_b", sa.String(length=3), nullable=False),
        sa.Column("length_km", sa.Float(), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTILINESTRING",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("source", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_border_segment")),
        sa.UniqueConstraint("code", name=op.f("uq_border_segment_code")),
    )
    op.create_geospatial_table(
        "jurisdiction",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_local", sa.Text(), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("parent_code", sa.String(length=32), nullable=True),
        sa.Column("country", sa.String(length=3), nullable=False, comment="ISO 3166-1 alpha-3"),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_name", sa.Text(), nullable=True, comment="name as given by the source"),
        sa.Column(
            "loaded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "level IN ('country', 'province', 'district', 'commune')",
            name=op.f("ck_jurisdiction_level"),
        ),
        sa.CheckConstraint("ST_IsValid(geom)", name=op.f("ck_jurisdiction_geom_valid")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jurisdiction")),
        sa.UniqueConstraint(
            "code",
            "valid_from",
            name="uq_jurisdiction_code_valid_from",
            postgresql_nulls_not_distinct=True,
        ),
    )
    op.create_geospatial_index(
        "ix_jurisdiction_geom",
        "jurisdiction",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_jurisdiction_level_country", "jurisdiction", ["level", "country"], unique=False
    )
    op.create_geospatial_table(
        "border_segment_piece",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="LINESTRING",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["border_segment.id"],
            name=op.f("fk_border_segment_piece_segment_id_border_segment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_border_segment_piece")),
    )
    op.create_geospatial_index(
        "ix_border_segment_piece_geom",
        "border_segment_piece",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        op.f("ix_border_segment_piece_segment_id"),
        "border_segment_piece",
        ["segment_id"],
        unique=False,
    )
    op.create_geospatial_table(
        "incident",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(length=32), server_default="reported", nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "reported_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("location_precision_m", sa.Float(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("unit", sa.Text(), nullable=True, comment="reporting unit"),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("source_id", sa.String(length=128), nullable=True),
        sa.Column("country_code", sa.String(length=3), nullable=True),
        sa.Column("province_code", sa.String(length=32), nullable=True),
        sa.Column("jurisdiction_path", postgresql.ARRAY(sa.String(length=32)), nullable=True),
        sa.Column(
            "jurisdiction_method",
            sa.String(length=16),
            nullable=True,
            comment="contains | nearest (offshore or in a river gap)",
        ),
        sa.Column("border_segment", sa.String(length=16), nullable=True),
        sa.Column("border_distance_km", sa.Float(), nullable=True),
        sa.Column("nearest_post_id", sa.Integer(), nullable=True),
        sa.Column("nearest_post_km", sa.Float(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("updated_by", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('reported', 'verified', 'under_investigation', 'solved', 'closed', 'rejected', 'duplicate')",
            name=op.f("ck_incident_status"),
        ),
        sa.CheckConstraint(
            "location_precision_m IS NULL OR location_precision_m >= 0",
            name=op.f("ck_incident_precision"),
        ),
        sa.CheckConstraint("severity BETWEEN 1 AND 5", name=op.f("ck_incident_severity")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_incident_version")),
        sa.ForeignKeyConstraint(
            ["nearest_post_id"],
            ["border_post.id"],
            name=op.f("fk_incident_nearest_post_id_border_post"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident")),
    )
    op.create_index("ix_incident_category", "incident", ["category"], unique=False)
    op.create_geospatial_index(
        "ix_incident_geom",
        "incident",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_incident_jurisdiction_path",
        "incident",
        ["jurisdiction_path"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index("ix_incident_occurred_at", "incident", ["occurred_at"], unique=False)
    op.create_index(
        "ix_incident_province_occurred_at",
        "incident",
        ["province_code", "occurred_at"],
        unique=False,
    )
    op.create_index(
        "uq_incident_source_source_id",
        "incident",
        ["source", "source_id"],
        unique=True,
        postgresql_where=sa.text("source_id IS NOT NULL"),
    )
    op.create_table(
        "jurisdiction_adjacency",
        sa.Column("a_id", sa.Integer(), nullable=False),
        sa.Column("b_id", sa.Integer(), nullable=False),
        sa.Column("shared_km", sa.Float(), nullable=False),
        sa.Column("touches", sa.Boolean(), nullable=False),
        sa.Column("gap_m", sa.Float(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "method IN ('shared_line', 'gap', 'correction')",
            name=op.f("ck_jurisdiction_adjacency_method"),
        ),
        sa.CheckConstraint("a_id <> b_id", name=op.f("ck_jurisdiction_adjacency_distinct_pair")),
        sa.ForeignKeyConstraint(
            ["a_id"],
            ["jurisdiction.id"],
            name=op.f("fk_jurisdiction_adjacency_a_id_jurisdiction"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["b_id"],
            ["jurisdiction.id"],
            name=op.f("fk_jurisdiction_adjacency_b_id_jurisdiction"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("a_id", "b_id", name=op.f("pk_jurisdiction_adjacency")),
    )
    op.create_index(
        "ix_jurisdiction_adjacency_b_id", "jurisdiction_adjacency", ["b_id"], unique=False
    )
    for statement in sqlfiles.statements(INCIDENT_DERIVE_SQL):
        op.execute(statement)
    op.execute(INCIDENT_TRIGGER_UP)


def downgrade() -> None:
    """Revert this revision (the postgis extension stays: other schemas may use it)."""
    for statement in INCIDENT_DERIVE_DOWN:
        op.execute(statement)
    op.drop_index("ix_jurisdiction_adjacency_b_id", table_name="jurisdiction_adjacency")
    op.drop_table("jurisdiction_adjacency")
    op.drop_index(
        "uq_incident_source_source_id",
        table_name="incident",
        postgresql_where=sa.text("source_id IS NOT NULL"),
    )
    op.drop_index("ix_incident_province_occurred_at", table_name="incident")
    op.drop_index("ix_incident_occurred_at", table_name="incident")
    op.drop_index("ix_incident_jurisdiction_path", table_name="incident", postgresql_using="gin")
    op.drop_geospatial_index(
        "ix_incident_geom", table_name="incident", postgresql_using="gist", column_name="geom"
    )
    op.drop_index("ix_incident_category", table_name="incident")
    op.drop_geospatial_table("incident")
    op.drop_index(op.f("ix_border_segment_piece_segment_id"), table_name="border_segment_piece")
    op.drop_geospatial_index(
        "ix_border_segment_piece_geom",
        table_name="border_segment_piece",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("border_segment_piece")
    op.drop_index("ix_jurisdiction_level_country", table_name="jurisdiction")
    op.drop_geospatial_index(
        "ix_jurisdiction_geom",
        table_name="jurisdiction",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("jurisdiction")
    op.drop_geospatial_table("border_segment")
    op.drop_geospatial_index(
        "ix_border_post_geom", table_name="border_post", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("border_post")
