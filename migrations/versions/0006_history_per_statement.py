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

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The stored picture of a row, as the 0002 trigger wrote it: to_jsonb(row) without geom and
# request_hash, plus the point as GeoJSON `location`. The columns are named instead of taking
# to_jsonb(row) and removing geom: converting the geometry to jsonb (PostGIS's cast) only to
# throw it away cost ~140 µs a row, more than the rest of the history write together.
# tests/test_incidents.py checks that the picture names every column of incident but those two.
PICTURE_COLUMNS = (
    "id", "category", "severity", "status", "occurred_at", "reported_at",
    "location_precision_m", "description", "unit", "source", "source_id", "country_code",
    "province_code", "jurisdiction_path", "jurisdiction_method", "border_segment",
    "border_distance_km", "nearest_post_id", "nearest_post_km", "created_at", "updated_at",
    "created_by", "updated_by", "version", "deleted_at",
)  # fmt: skip


def picture(alias: str) -> str:
    """The jsonb picture of the incident row `alias`."""
    pairs = ", ".join(f"'{c}', {alias}.{c}" for c in PICTURE_COLUMNS)
    return f"jsonb_build_object({pairs}, 'location', ST_AsGeoJSON({alias}.geom, 6)::jsonb)"


INSERTED_FN = f"""
CREATE FUNCTION incident_history_inserted() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    act text := coalesce(nullif(current_setting('borderwatch.action', true), ''), 'create');
    who text := nullif(current_setting('borderwatch.actor', true), '');
BEGIN
    INSERT INTO incident_history (incident_id, version, action, actor, changes)
    SELECT n.id, n.version, act, who, {picture("n")}
      FROM inserted_rows n;
    RETURN NULL;
END
$fn$
"""

# An update records {{column: [before, after]}} for every column that differs (updated_at and
# version alone are not a change); a row where nothing else differs gets no history row.
UPDATED_FN = f"""
CREATE FUNCTION incident_history_updated() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    act text := nullif(current_setting('borderwatch.action', true), '');
    who text := nullif(current_setting('borderwatch.actor', true), '');
BEGIN
    INSERT INTO incident_history (incident_id, version, action, actor, changes)
    SELECT d.id, d.version,
           coalesce(act, CASE
               WHEN d.old_deleted IS NULL AND d.new_deleted IS NOT NULL THEN 'delete'
               WHEN d.old_deleted IS NOT NULL AND d.new_deleted IS NULL THEN 'restore'
               WHEN d.old_status IS DISTINCT FROM d.new_status THEN 'status'
               ELSE 'update' END),
           who, d.changes
      FROM (SELECT n.id, n.version, o.deleted_at AS old_deleted, n.deleted_at AS new_deleted,
                   o.status AS old_status, n.status AS new_status,
                   (SELECT jsonb_object_agg(a.key, jsonb_build_array(b.value, a.value))
                      FROM jsonb_each(j.after) a LEFT JOIN jsonb_each(j.before) b ON b.key = a.key
                     WHERE a.key NOT IN ('updated_at', 'version')
                       AND b.value IS DISTINCT FROM a.value) AS changes
              FROM updated_old o
              JOIN updated_new n ON n.id = o.id
             CROSS JOIN LATERAL (SELECT {picture("o")} AS before, {picture("n")} AS after) j) d
     WHERE d.changes IS NOT NULL;
    RETURN NULL;
END
$fn$
"""


def upgrade() -> None:
    """Apply this revision."""
    op.execute("DROP TRIGGER IF EXISTS incident_history_append ON incident")
    op.execute(INSERTED_FN)
    op.execute(UPDATED_FN)
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
