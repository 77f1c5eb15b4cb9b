"""incident change log: what each committed incidents version changed, so a cached answer can be
proven still valid at a later version

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 10:00:00

`incident_change`: one row per changed incident and position (a create its new position, a
delete its old one, an update both), written set-based by statement-level AFTER triggers with
transition tables and stamped with the writing transaction's id (txid_current()). A statement
changing more than LOG_ROWS_MAX incidents (an import batch) writes one row instead, without an
id, holding the box of every position before and after; TRUNCATE writes one row without id or
box: "everything changed".

`incident_change_commit`: the deferred bump of layer_version (0005), which runs at COMMIT under
the counter row's lock, also records (version, xid): the change rows of version v are those of
the transaction v names. Both become visible with the counter, atomically; a transaction that
commits later gets a later version even when it began earlier, and a snapshot that sees version
B sees every commit with a version <= B (the counter row's lock is released only after the
holder's commit is visible). See app/tiles/change_log.py and docs/decisions.md, "A change log
beside the layer version".

Bounded: every PRUNE_EVERY versions the bump drops the oldest commits (with their rows) beyond
KEEP_VERSIONS versions, KEEP_ROWS change rows or MAX_AGE; a cached answer older than the log
simply misses.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOG_ROWS_MAX = 1000
KEEP_VERSIONS = 10_000
KEEP_ROWS = 200_000
MAX_AGE = "1 day"
PRUNE_EVERY = 64

TABLES = (
    """
CREATE TABLE incident_change_commit (
    version bigint NOT NULL,
    xid bigint NOT NULL,
    row_count integer NOT NULL DEFAULT 0,
    committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT pk_incident_change_commit PRIMARY KEY (version)
)""",
    """
CREATE TABLE incident_change (
    xid bigint NOT NULL,
    incident_id uuid,
    west double precision,
    south double precision,
    east double precision,
    north double precision
)""",
    "CREATE INDEX ix_incident_change_xid ON incident_change (xid)",
)

# one function for the three row events: each branch names only the transition tables its
# trigger defines. The rows written are counted in a transaction-local setting, which the bump
# moves into the commit row (the prune's row budget).
LOG_FN = f"""
CREATE FUNCTION incident_change_log() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    x bigint := txid_current();
    n bigint;
    written bigint;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO incident_change (xid) VALUES (x);
        written := 1;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO n FROM new_rows;
        IF n = 0 THEN
            RETURN NULL;
        ELSIF n <= {LOG_ROWS_MAX} THEN
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
        ELSIF n <= {LOG_ROWS_MAX} THEN
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
        ELSIF n <= {LOG_ROWS_MAX} THEN
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

# the oldest commits beyond the budgets, and the change rows of transactions none of whose
# commits is kept (a transaction that ran SET CONSTRAINTS ... IMMEDIATE has several versions)
PRUNE_FN = f"""
CREATE FUNCTION incident_change_prune(newest bigint) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    cutoff bigint;
BEGIN
    SELECT max(version) INTO cutoff FROM (
        SELECT version, committed_at,
               sum(row_count) OVER (ORDER BY version DESC) AS kept_rows
          FROM incident_change_commit) c
     WHERE version <= newest - {KEEP_VERSIONS}
        OR committed_at < now() - interval '{MAX_AGE}'
        OR kept_rows > {KEEP_ROWS};
    IF cutoff IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM incident_change c
     WHERE c.xid IN (SELECT k.xid FROM incident_change_commit k WHERE k.version <= cutoff)
       AND NOT EXISTS (SELECT FROM incident_change_commit k
                        WHERE k.xid = c.xid AND k.version > cutoff);
    DELETE FROM incident_change_commit WHERE version <= cutoff;
END
$fn$
"""

# 0005's bump, which for the incidents counter also records (version, xid) of the commit
BUMP_FN = f"""
CREATE OR REPLACE FUNCTION layer_version_bump() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    flag text := 'borderwatch.layer_bumped_' || TG_ARGV[0];
    stamp text := statement_timestamp()::text;
    v bigint;
    moved_at timestamptz;
BEGIN
    IF current_setting(flag, true) IS DISTINCT FROM stamp THEN
        UPDATE layer_version SET version = version + 1, changed_at = clock_timestamp()
         WHERE layer = TG_ARGV[0]
        RETURNING version, changed_at INTO v, moved_at;
        PERFORM set_config(flag, stamp, true);
        IF TG_ARGV[0] = 'incidents' AND v IS NOT NULL THEN
            INSERT INTO incident_change_commit (version, xid, row_count, committed_at)
            VALUES (v, txid_current(),
                    coalesce(nullif(current_setting('borderwatch.change_rows', true), ''),
                             '0')::integer,
                    moved_at)
            ON CONFLICT (version) DO UPDATE
               SET xid = EXCLUDED.xid, row_count = EXCLUDED.row_count,
                   committed_at = EXCLUDED.committed_at;
            PERFORM set_config('borderwatch.change_rows', '0', true);
            IF v % {PRUNE_EVERY} = 0 THEN
                PERFORM incident_change_prune(v);
            END IF;
        END IF;
    END IF;
    RETURN NULL;
END
$fn$
"""

OLD_BUMP_FN = """
CREATE OR REPLACE FUNCTION layer_version_bump() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    flag text := 'borderwatch.layer_bumped_' || TG_ARGV[0];
    stamp text := statement_timestamp()::text;
BEGIN
    IF current_setting(flag, true) IS DISTINCT FROM stamp THEN
        UPDATE layer_version SET version = version + 1, changed_at = clock_timestamp()
         WHERE layer = TG_ARGV[0];
        PERFORM set_config(flag, stamp, true);
    END IF;
    RETURN NULL;
END
$fn$
"""

TRIGGERS = {
    "incident_change_insert": "AFTER INSERT ON incident REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT",
    "incident_change_update": "AFTER UPDATE ON incident"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT",
    "incident_change_delete": "AFTER DELETE ON incident REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT",
    "incident_change_truncate": "AFTER TRUNCATE ON incident FOR EACH STATEMENT",
}


def upgrade() -> None:
    """Apply this revision."""
    for sql in TABLES:
        op.execute(sql)
    op.execute(LOG_FN)
    op.execute(PRUNE_FN)
    op.execute(BUMP_FN)
    for name, when in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION incident_change_log()")


def downgrade() -> None:
    """Revert this revision."""
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON incident")
    op.execute(OLD_BUMP_FN)
    op.execute("DROP FUNCTION IF EXISTS incident_change_prune(bigint)")
    op.execute("DROP FUNCTION IF EXISTS incident_change_log()")
    op.execute("DROP TABLE IF EXISTS incident_change")
    op.execute("DROP TABLE IF EXISTS incident_change_commit")
