"""incidents API: categories, history, idempotency, subdivided jurisdiction pieces

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

from app import sqlfiles

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CATEGORIES = [
    ("drug_trafficking", "Drug trafficking", "Mua bán, vận chuyển trái phép chất ma túy", 10),
    ("human_trafficking", "Human trafficking", "Mua bán người", 20),
    ("smuggling", "Smuggling", "Buôn lậu", 30),
    ("counterfeit_goods", "Counterfeit goods", "Hàng giả", 40),
    ("illegal_border_crossing", "Illegal border crossing", "Xuất nhập cảnh trái phép", 50),
    ("robbery_theft", "Robbery and theft", "Cướp, trộm cắp tài sản", 60),
    ("fraud", "Fraud (incl. online)", "Lừa đảo (kể cả trên mạng)", 70),
    ("gambling", "Gambling", "Đánh bạc, tổ chức đánh bạc", 80),
    (
        "environmental_crime",
        "Environmental crime (incl. illegal sand mining)",
        "Tội phạm môi trường (kể cả khai thác cát trái phép)",
        90,
    ),
    ("weapons", "Weapons", "Vũ khí, vật liệu nổ", 100),
    ("other", "Other", "Khác", 999),
]

# Derivation, now over subdivided jurisdiction pieces (point-in-polygon on a few hundred
# vertices instead of thousands) and skippable for set-based bulk imports
# (borderwatch.bulk = 'on'). Both files are frozen copies in migrations/sql/.
INCIDENT_DERIVE_SQL = "incident_derive_v2.sql"
PREVIOUS_DERIVE_SQL = "incident_derive_v1.sql"  # 0001's, restored by the downgrade

# Every insert and update of an incident appends one history row, whoever writes it; the actor
# and the action come from transaction-local settings set by the service layer.
HISTORY_FN = """
CREATE FUNCTION incident_history_append() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    before jsonb;
    after jsonb;
    changes jsonb := '{}'::jsonb;
    k text;
    act text := nullif(current_setting('borderwatch.action', true), '');
BEGIN
    after := to_jsonb(NEW) - 'geom' - 'request_hash' || jsonb_build_object('location', ST_AsGeoJSON(NEW.geom, 6)::jsonb);
    IF TG_OP = 'INSERT' THEN
        act := coalesce(act, 'create');
        changes := after;
    ELSE
        before := to_jsonb(OLD) - 'geom' - 'request_hash' || jsonb_build_object('location', ST_AsGeoJSON(OLD.geom, 6)::jsonb);
        FOR k IN SELECT jsonb_object_keys(after) LOOP
            IF k NOT IN ('updated_at', 'version') AND before -> k IS DISTINCT FROM after -> k THEN
                changes := changes || jsonb_build_object(k, jsonb_build_array(before -> k, after -> k));
            END IF;
        END LOOP;
        IF changes = '{}'::jsonb THEN
            RETURN NEW;  -- nothing an operator would call a change (e.g. re-derivation no-op)
        END IF;
        IF act IS NULL THEN
            act := CASE
                WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN 'delete'
                WHEN OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL THEN 'restore'
                WHEN OLD.status IS DISTINCT FROM NEW.status THEN 'status'
                ELSE 'update' END;
        END IF;
    END IF;
    INSERT INTO incident_history (incident_id, version, action, actor, changes)
    VALUES (NEW.id, NEW.version, act,
            nullif(current_setting('borderwatch.actor', true), ''), changes);
    RETURN NEW;
END
$fn$
"""

APPEND_ONLY_FN = """
CREATE FUNCTION incident_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'incident_history is append-only' USING ERRCODE = 'insufficient_privilege';
END
$fn$
"""


def upgrade() -> None:
    """Apply this revision."""
    category = op.create_table(
        "category",
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("name_en", sa.Text(), nullable=False),
        sa.Column("name_vi", sa.Text(), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.CheckConstraint("code ~ '^[a-z][a-z0-9_]*$'", name=op.f("ck_category_code_format")),
    )
    op.bulk_insert(
        category,
        [{"code": c, "name_en": en, "name_vi": vi, "sort_order": n} for c, en, vi, n in CATEGORIES],
    )
    op.execute(
        "UPDATE incident SET category = 'other' WHERE category NOT IN (SELECT code FROM category)"
    )
    op.create_foreign_key(
        op.f("fk_incident_category_category"), "incident", "category", ["category"], ["code"]
    )
    op.add_column(
        "incident",
        sa.Column(
            "request_hash",
            sa.String(64),
            nullable=True,
            comment="hash of the creating request: an idempotent retry must match it",
        ),
    )
    op.create_check_constraint(
        op.f("ck_incident_occurred_after_1900"), "incident", "occurred_at >= '1900-01-01'"
    )
    op.create_index(
        "ix_incident_occurred_at_id", "incident", [sa.text("occurred_at DESC"), sa.text("id DESC")]
    )

    op.create_table(
        "incident_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("incident_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("changes", postgresql.JSONB(), nullable=False),
    )
    op.create_index("ix_incident_history_incident_id", "incident_history", ["incident_id", "id"])
    op.execute(HISTORY_FN)
    op.execute(
        "CREATE TRIGGER incident_history_append AFTER INSERT OR UPDATE ON incident"
        " FOR EACH ROW EXECUTE FUNCTION incident_history_append()"
    )
    op.execute(APPEND_ONLY_FN)
    op.execute(
        "CREATE TRIGGER incident_history_append_only BEFORE UPDATE OR DELETE ON incident_history"
        " FOR EACH ROW EXECUTE FUNCTION incident_history_append_only()"
    )
    op.execute(
        "CREATE TRIGGER incident_history_no_truncate BEFORE TRUNCATE ON incident_history"
        " FOR EACH STATEMENT EXECUTE FUNCTION incident_history_append_only()"
    )

    op.create_table(
        "jurisdiction_piece",
        sa.Column("id", sa.Integer(), sa.Identity(), primary_key=True),
        sa.Column(
            "jurisdiction_id",
            sa.Integer(),
            sa.ForeignKey(
                "jurisdiction.id",
                ondelete="CASCADE",
                name=op.f("fk_jurisdiction_piece_jurisdiction_id_jurisdiction"),
            ),
            nullable=False,
        ),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("country", sa.String(3), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("geom", Geometry("POLYGON", srid=4326, spatial_index=False), nullable=False),
    )
    op.create_index(
        "ix_jurisdiction_piece_geom", "jurisdiction_piece", ["geom"], postgresql_using="gist"
    )
    op.create_index(
        "ix_jurisdiction_piece_jurisdiction_id", "jurisdiction_piece", ["jurisdiction_id"]
    )
    op.execute(
        """
        INSERT INTO jurisdiction_piece (jurisdiction_id, code, level, country, valid_from, valid_to, geom)
        SELECT j.id, j.code, j.level, j.country, j.valid_from, j.valid_to, d.geom
          FROM jurisdiction j, ST_Subdivide(j.geom, 128) AS s(geom), ST_Dump(s.geom) d
        """
    )
    # shorter border pieces and geography indexes for the nearest-border / nearest-post lookups
    op.execute("DELETE FROM border_segment_piece")
    op.execute(
        "INSERT INTO border_segment_piece (segment_id, geom)"
        " SELECT s.id, d.geom FROM border_segment s, ST_Subdivide(s.geom, 16) AS x(geom),"
        " ST_Dump(x.geom) d"
    )
    op.execute(
        "CREATE INDEX ix_border_segment_piece_geog ON border_segment_piece"
        " USING gist ((geom::geography))"
    )
    op.execute("CREATE INDEX ix_border_post_geog ON border_post USING gist ((geom::geography))")
    for statement in sqlfiles.statements(INCIDENT_DERIVE_SQL):
        op.execute(statement)


def downgrade() -> None:
    """Revert this revision (restores the 0001 derivation function)."""
    for statement in sqlfiles.statements(PREVIOUS_DERIVE_SQL):
        op.execute(statement)
    op.execute("DROP INDEX IF EXISTS ix_border_post_geog")
    op.execute("DROP INDEX IF EXISTS ix_border_segment_piece_geog")
    op.drop_table("jurisdiction_piece")
    op.execute("DROP TRIGGER IF EXISTS incident_history_no_truncate ON incident_history")
    op.execute("DROP TRIGGER IF EXISTS incident_history_append_only ON incident_history")
    op.execute("DROP TRIGGER IF EXISTS incident_history_append ON incident")
    op.execute("DROP FUNCTION IF EXISTS incident_history_append_only()")
    op.execute("DROP FUNCTION IF EXISTS incident_history_append()")
    op.drop_table("incident_history")
    op.drop_index("ix_incident_occurred_at_id", table_name="incident")
    op.drop_constraint(op.f("ck_incident_occurred_after_1900"), "incident", type_="check")
    op.drop_column("incident", "request_hash")
    op.drop_constraint(op.f("fk_incident_category_category"), "incident", type_="foreignkey")
    op.drop_table("category")
