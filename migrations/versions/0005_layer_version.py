"""layer_version: a change counter per map layer, kept by triggers, for tile freshness

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-23 10:00:00

Incidents: a deferred row-level constraint trigger bumps the counter once per transaction at
COMMIT, so the counter row is locked only for the instant of the commit (an import running for
minutes never blocks other writers on it) and the new version becomes visible atomically with
the data. Reference tables (rarely written, in bulk): a statement-level trigger.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LAYERS = {
    "incidents": "incident",
    "jurisdictions": "jurisdiction",
    "borders": "border_segment",
    "border_posts": "border_post",
}

# Bumps the layer named by the trigger argument at most once per statement (a deferred
# trigger fires once per changed row, all inside the COMMIT statement): a transaction-local
# setting remembers the statement that already bumped it.
BUMP_FN = """
CREATE FUNCTION layer_version_bump() RETURNS trigger LANGUAGE plpgsql AS $fn$
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


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "layer_version",
        sa.Column("layer", sa.String(32), primary_key=True),
        sa.Column("version", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("epoch", sa.String(16), nullable=False),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("layer", name=op.f("pk_layer_version")),
    )
    # the epoch tells versions of one database from those of another (a rebuilt database
    # starts counting again: its URLs must not match tiles cached from the old one)
    op.execute(
        "INSERT INTO layer_version (layer, epoch)"
        " SELECT l, e FROM unnest(ARRAY['incidents', 'jurisdictions', 'borders', 'border_posts'])"
        " AS l, (SELECT substr(md5(random()::text || clock_timestamp()::text), 1, 6) AS e) AS x"
    )
    op.execute(BUMP_FN)
    op.execute(
        "CREATE CONSTRAINT TRIGGER layer_version_incidents AFTER INSERT OR UPDATE OR DELETE"
        " ON incident DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
        " EXECUTE FUNCTION layer_version_bump('incidents')"
    )
    op.execute(
        "CREATE TRIGGER layer_version_incidents_truncate AFTER TRUNCATE ON incident"
        " FOR EACH STATEMENT EXECUTE FUNCTION layer_version_bump('incidents')"
    )
    for layer, table in LAYERS.items():
        if layer == "incidents":
            continue
        op.execute(
            f"CREATE TRIGGER layer_version_{layer} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE"
            f" ON {table} FOR EACH STATEMENT EXECUTE FUNCTION layer_version_bump('{layer}')"
        )


def downgrade() -> None:
    """Revert this revision."""
    op.execute("DROP TRIGGER IF EXISTS layer_version_incidents_truncate ON incident")
    for layer, table in LAYERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS layer_version_{layer} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS layer_version_bump()")
    op.drop_table("layer_version")
