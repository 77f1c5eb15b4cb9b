"""Border posts managed through the service: kinds, validity, history, areas, re-derivation

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 10:00:00

- `post_kind`: the kinds of post as an extensible list (like `category`), with Vietnamese and
  English names and whether the kind is a border gate (opening status and hours apply). The
  first data's codes stay the codes of their kinds, so API clients, OGC filters, tiles and the
  map keep working: `border_gate` is the international border gate, `police` the police post,
  `customs` the customs branch, `coast_guard` the coast-guard station; new kinds:
  `border_gate_main`, `border_gate_secondary`, `checkpoint`.
- `border_post` gains: country (ISO 3166-1 alpha-3; not VNM: a neighbour's post, e.g. a
  counterpart), counterpart_country and counterpart_post_id (a stored foreign post), opening
  status and hours, valid_from / valid_to (exclusive; closing sets valid_to, nothing is
  deleted), version (If-Match / ETag), created/updated by and at, and the area of
  responsibility (MultiPolygon; drawn, imported or generated, with the depth in km).
- `border_post_history`: append-only, one row per insert or change of a post (trigger: who,
  when, the action, the changed fields as [before, after]); the existing posts get a first row.
- `post_area_zone`: the border zone generated areas are cut from, kept per depth (built on
  first use, emptied by a boundary load).
- `post_rederive_job` / `post_rederive_item`: the re-derivation of incidents' nearest post after
  a post changes, in bounded batches with progress (app/posts/rederive.py).
- migrations/sql/incident_derive_v7.sql: "nearest post" counts only home posts in force on the
  day the incident occurred. No incident is derived again here: every existing post is in force
  from the beginning, so no answer changes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

from app import sqlfiles
from app.geo.spatial import SRID_WGS84

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INCIDENT_DERIVE_SQL = "incident_derive_v7.sql"
PREVIOUS_DERIVE_SQL = "incident_derive_v6.sql"
OLD_KINDS = ("border_gate", "border_guard_station", "police", "customs", "coast_guard")
# code, Vietnamese name, English name, a gate, sort order
KINDS = (
    ("border_gate", "Cửa khẩu quốc tế", "International border gate", True, 10),
    ("border_gate_main", "Cửa khẩu chính", "Main border gate", True, 20),
    ("border_gate_secondary", "Cửa khẩu phụ", "Secondary border gate", True, 30),
    ("border_guard_station", "Đồn biên phòng", "Border-guard station", False, 40),
    ("police", "Trạm công an", "Police post", False, 50),
    ("customs", "Chi cục hải quan", "Customs branch", False, 60),
    ("coast_guard", "Trạm cảnh sát biển", "Coast-guard station", False, 70),
    ("checkpoint", "Trạm kiểm soát", "Checkpoint", False, 80),
)
# what the downgrade makes of the kinds the first data did not have
NEW_TO_OLD = (
    ("border_gate_main", "border_gate"),
    ("border_gate_secondary", "border_gate"),
    ("checkpoint", "police"),
)
OPENING = ("open", "restricted", "suspended", "closed")
AREA_SOURCES = ("drawn", "imported", "generated")
JOB_STATES = ("pending", "running", "done", "failed")

# the picture of a post in its history: every column but the geometries as they are stored
# (the position as GeoJSON, the area as a digest) and the computed search key
PICTURE_FN = """
CREATE FUNCTION border_post_picture(p border_post) RETURNS jsonb
LANGUAGE sql STABLE AS $fn$
SELECT (to_jsonb(p) - 'geom' - 'area' - 'search_key')
       || jsonb_build_object('location', ST_AsGeoJSON(p.geom, 6)::jsonb,
                             'area_md5', md5(ST_AsEWKB(p.area)))
$fn$
"""

HISTORY_FN = """
CREATE FUNCTION border_post_history_append() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    act text := nullif(current_setting('borderwatch.action', true), '');
    who text := nullif(current_setting('borderwatch.actor', true), '');
    after jsonb := border_post_picture(NEW);
    changed jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO border_post_history (post_id, version, action, actor, changes)
        VALUES (NEW.id, NEW.version, coalesce(act, 'create'), who, after);
        RETURN NULL;
    END IF;
    SELECT jsonb_object_agg(a.key, jsonb_build_array(b.value, a.value)) INTO changed
      FROM jsonb_each(after) a
      LEFT JOIN jsonb_each(border_post_picture(OLD)) b ON b.key = a.key
     WHERE a.key NOT IN ('updated_at', 'version') AND b.value IS DISTINCT FROM a.value;
    IF changed IS NOT NULL THEN
        INSERT INTO border_post_history (post_id, version, action, actor, changes)
        VALUES (NEW.id, NEW.version, coalesce(act, 'update'), who, changed);
    END IF;
    RETURN NULL;
END
$fn$
"""

APPEND_ONLY_FN = """
CREATE FUNCTION border_post_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'border_post_history is append-only' USING ERRCODE = 'insufficient_privilege';
END
$fn$
"""


def upgrade() -> None:
    """Apply this revision."""
    kind = op.create_table(
        "post_kind",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("name_vi", sa.Text, nullable=False),
        sa.Column("name_en", sa.Text, nullable=False),
        sa.Column(
            "gate",
            sa.Boolean,
            nullable=False,
            server_default=sa.false(),
            comment="a border gate: opening status and hours apply",
        ),
        sa.Column("sort_order", sa.Integer, nullable=False, server_default="0"),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.CheckConstraint("code ~ '^[a-z][a-z0-9_]*$'", name=op.f("ck_post_kind_code_format")),
    )
    op.bulk_insert(
        kind,
        [
            {"code": c, "name_vi": vi, "name_en": en, "gate": g, "sort_order": n}
            for c, vi, en, g, n in KINDS
        ],
    )
    op.drop_constraint(op.f("ck_border_post_kind"), "border_post", type_="check")
    op.create_foreign_key(
        op.f("fk_border_post_kind_post_kind"), "border_post", "post_kind", ["kind"], ["code"]
    )
    add = op.add_column
    add("border_post", sa.Column(
        "country", sa.String(3), nullable=False, server_default="VNM",
        comment="ISO 3166-1 alpha-3; not VNM: a neighbour's post (e.g. a stored counterpart)",
    ))  # fmt: skip
    add("border_post", sa.Column("counterpart_country", sa.String(3)))
    add("border_post", sa.Column(
        "counterpart_post_id", sa.Integer,
        sa.ForeignKey("border_post.id", name=op.f("fk_border_post_counterpart_post_id_border_post"),
                      ondelete="RESTRICT"),
        comment="the post across the border when it is stored",
    ))  # fmt: skip
    add("border_post", sa.Column("opening_status", sa.String(16), comment="gates only"))
    add("border_post", sa.Column("opening_hours", sa.Text, comment="gates only, e.g. 07:00-19:00"))
    add("border_post", sa.Column("valid_from", sa.Date))
    add("border_post", sa.Column("valid_to", sa.Date, comment="exclusive; NULL: in force"))
    add("border_post", sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    now = sa.func.now()
    add("border_post", sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                                 server_default=now))  # fmt: skip
    add("border_post", sa.Column("created_by", sa.Text))
    add("border_post", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                                 server_default=now))  # fmt: skip
    add("border_post", sa.Column("updated_by", sa.Text))
    add("border_post", sa.Column(
        "area", Geometry("MULTIPOLYGON", srid=SRID_WGS84, spatial_index=False),
        comment="area of responsibility",
    ))  # fmt: skip
    add("border_post", sa.Column("area_source", sa.String(16)))
    add("border_post", sa.Column("area_km", sa.Float, comment="depth of a generated area"))
    checks = {
        "country_format": "country ~ '^[A-Z]{3}$'",
        "counterpart_country_format": "counterpart_country ~ '^[A-Z]{3}$'",
        "opening_status": f"opening_status IN {OPENING!r}",
        "area_source": f"area_source IN {AREA_SOURCES!r}",
        "period": "valid_to IS NULL OR valid_from IS NULL OR valid_to > valid_from",
        "version": "version >= 1",
        "not_own_counterpart": "counterpart_post_id IS NULL OR counterpart_post_id <> id",
    }
    for name, condition in checks.items():
        op.create_check_constraint(op.f(f"ck_border_post_{name}"), "border_post", condition)
    op.create_index("ix_border_post_area", "border_post", ["area"], postgresql_using="gist")

    op.create_table(
        "border_post_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "post_id",
            sa.Integer,
            sa.ForeignKey(
                "border_post.id", name=op.f("fk_border_post_history_post_id_border_post")
            ),
            nullable=False,
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("actor", sa.Text),
        sa.Column("changes", postgresql.JSONB, nullable=False),
    )
    op.create_index("ix_border_post_history_post_id", "border_post_history", ["post_id", "id"])
    op.execute(PICTURE_FN)
    op.execute(HISTORY_FN)
    op.execute(APPEND_ONLY_FN)
    op.execute(
        "INSERT INTO border_post_history (post_id, version, action, actor, changes)"
        " SELECT p.id, p.version, 'migrate', 'migration 0023', border_post_picture(p)"
        " FROM border_post p"
    )
    op.execute(
        "CREATE TRIGGER border_post_history_append AFTER INSERT OR UPDATE ON border_post"
        " FOR EACH ROW EXECUTE FUNCTION border_post_history_append()"
    )
    op.execute(
        "CREATE TRIGGER border_post_history_append_only BEFORE UPDATE OR DELETE"
        " ON border_post_history FOR EACH ROW EXECUTE FUNCTION border_post_history_append_only()"
    )
    op.execute(
        "CREATE TRIGGER border_post_history_no_truncate BEFORE TRUNCATE ON border_post_history"
        " FOR EACH STATEMENT EXECUTE FUNCTION border_post_history_append_only()"
    )

    op.create_table(
        "post_area_zone",
        sa.Column("km", sa.Float, primary_key=True),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("geom", Geometry("GEOMETRY", srid=SRID_WGS84, spatial_index=False)),
    )
    op.create_table(
        "post_rederive_job",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column(
            "post_id",
            sa.Integer,
            sa.ForeignKey("border_post.id", name=op.f("fk_post_rederive_job_post_id_border_post")),
        ),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("changed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("batch_size", sa.Integer, nullable=False, server_default="1000"),
        sa.Column("actor", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text),
        sa.CheckConstraint(f"state IN {JOB_STATES!r}", name=op.f("ck_post_rederive_job_state")),
    )
    op.create_table(
        "post_rederive_item",
        sa.Column(
            "job_id",
            sa.Integer,
            sa.ForeignKey(
                "post_rederive_job.id",
                name=op.f("fk_post_rederive_item_job_id_post_rederive_job"),
                ondelete="CASCADE",
            ),
            primary_key=True,
        ),
        sa.Column("incident_id", postgresql.UUID, primary_key=True),
    )
    for statement in sqlfiles.statements(INCIDENT_DERIVE_SQL):
        op.execute(statement)


def downgrade() -> None:
    """Revert this revision."""
    for statement in sqlfiles.statements(PREVIOUS_DERIVE_SQL):
        op.execute(statement)
    for name in (
        "incident_post_candidates_on(geography, float8, date)",
        "incident_posts_all_eligible(integer[], date)",
        "incident_post_eligible(text, date, date, date)",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS {name}")
    op.drop_table("post_area_zone")
    op.drop_table("post_rederive_item")
    op.drop_table("post_rederive_job")
    op.execute("DROP TRIGGER IF EXISTS border_post_history_append ON border_post")
    op.drop_table("border_post_history")
    for fn in ("border_post_history_append_only()", "border_post_history_append()",
               "border_post_picture(border_post)"):  # fmt: skip
        op.execute(f"DROP FUNCTION IF EXISTS {fn}")
    op.drop_index("ix_border_post_area", table_name="border_post")
    for column in (
        "area_km", "area_source", "area", "updated_by", "updated_at", "created_by", "created_at",
        "version", "valid_to", "valid_from", "opening_hours", "opening_status",
        "counterpart_post_id", "counterpart_country", "country",
    ):  # fmt: skip
        op.drop_column("border_post", column)
    op.drop_constraint(op.f("fk_border_post_kind_post_kind"), "border_post", type_="foreignkey")
    for new, old in NEW_TO_OLD:
        op.execute(
            sa.text("UPDATE border_post SET kind = :old WHERE kind = :new").bindparams(
                old=old, new=new
            )
        )
    op.create_check_constraint(op.f("ck_border_post_kind"), "border_post", f"kind IN {OLD_KINDS!r}")
    op.drop_table("post_kind")
