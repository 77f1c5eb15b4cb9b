"""incident change log: a statement's incidents are logged one by one up to 20 000 (was 1 000)

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07 14:20:00

0022 logged a statement changing more than 1 000 incidents (an import batch) as one box of all
their positions, without ids: every answer kept across writes (aggregate and point tiles, the
dashboard snapshot, the cross-boundary hits, the hot-spot grid) was then made again from every
incident, and an import's box spans the country as soon as its rows do. Up to LOG_ROWS_MAX rows
are now logged by id and position (~4 µs a row: 80 ms for 20 000), so the deltas and the
tiles' region proofs keep working through an import. The limit is read from the setting
`borderwatch.change_log_rows_max` when a transaction sets it (tests: a small limit without
20 000 rows), else LOG_ROWS_MAX. Downgrade: 0022's function (1 000, no setting).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOG_ROWS_MAX = 20_000
SETTING = "borderwatch.change_log_rows_max"
LIMIT_NOW = f"coalesce(nullif(current_setting('{SETTING}', true), '')::bigint, {LOG_ROWS_MAX})"
LIMIT_BEFORE = "1000"


def log_fn(limit: str) -> str:
    """0022's function with the limit in a variable, given as SQL."""
    return f"""
CREATE OR REPLACE FUNCTION incident_change_log() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    x bigint := txid_current();
    n bigint;
    written bigint;
    lim bigint := {limit};
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO incident_change (xid) VALUES (x);
        written := 1;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO n FROM new_rows;
        IF n = 0 THEN
            RETURN NULL;
        ELSIF n <= lim THEN
            INSERT INTO incident_change (xid, incident_id, west, south, east, north)
            SELECT x, r.id, ST_X(r.geom), ST_Y(r.geom), ST_X(r.geom), ST_Y(r.geom)
              FROM new_rows r;
            written := n;
        ELSE
            INSERT INTO incident_change (xid, west, south, east, north)
            SELECT x, min(ST_X(r.geom)), min(ST_Y(r.geom)), max(ST_X(r.geom)), max(ST_Y(r.geom))
              FROM new_rows r;
            written := 1;
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT count(*) INTO n FROM old_rows;
        IF n = 0 THEN
            RETURN NULL;
        ELSIF n <= lim THEN
            INSERT INTO incident_change (xid, incident_id, west, south, east, north)
            SELECT x, r.id, ST_X(r.geom), ST_Y(r.geom), ST_X(r.geom), ST_Y(r.geom)
              FROM old_rows r;
            written := n;
        ELSE
            INSERT INTO incident_change (xid, west, south, east, north)
            SELECT x, min(ST_X(r.geom)), min(ST_Y(r.geom)), max(ST_X(r.geom)), max(ST_Y(r.geom))
              FROM old_rows r;
            written := 1;
        END IF;
    ELSE  -- UPDATE: the position before and after (any column may decide a filter)
        SELECT count(*) INTO n FROM new_rows;
        IF n = 0 THEN
            RETURN NULL;
        ELSIF n <= lim THEN
            INSERT INTO incident_change (xid, incident_id, west, south, east, north)
            SELECT x, r.id, ST_X(r.geom), ST_Y(r.geom), ST_X(r.geom), ST_Y(r.geom)
              FROM (SELECT id, geom FROM old_rows UNION ALL SELECT id, geom FROM new_rows) r;
            written := 2 * n;
        ELSE
            INSERT INTO incident_change (xid, west, south, east, north)
            SELECT x, min(ST_X(r.geom)), min(ST_Y(r.geom)), max(ST_X(r.geom)), max(ST_Y(r.geom))
              FROM (SELECT geom FROM old_rows UNION ALL SELECT geom FROM new_rows) r;
            written := 1;
        END IF;
    END IF;
    PERFORM set_config(
        'borderwatch.change_rows',
        (coalesce(nullif(current_setting('borderwatch.change_rows', true), ''), '0')::bigint
         + written)::text,
        true);
    RETURN NULL;
END
$fn$
"""


def upgrade() -> None:
    """Apply this revision."""
    op.execute(log_fn(LIMIT_NOW))


def downgrade() -> None:
    """Revert this revision."""
    op.execute(log_fn(LIMIT_BEFORE))
