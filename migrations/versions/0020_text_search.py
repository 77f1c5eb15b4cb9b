"""Accent- and case-insensitive text search

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 01:15:00

`text_accenti(text)`: the text without its diacritics (PostgreSQL's `unaccent`, with đ/Đ
folded to d/D explicitly, as `place_fold` does), declared IMMUTABLE so that an index can hold it
(unaccent itself is STABLE: its rules file could change; a change of the rules file needs a
REINDEX). It is CQL2's ACCENTI(); CASEI() is lower(). Trigram indexes on
lower(text_accenti(description)) and of `unit` answer `q=` and `CASEI(ACCENTI(description))
LIKE …` filters without reading every incident. See app/incidents/filters.py and app/ogc/cql.py.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TEXT_ACCENTI = """
CREATE FUNCTION text_accenti(text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT public.unaccent('public.unaccent'::regdictionary, translate($1, 'đĐ', 'dD'))
$$
"""


def upgrade() -> None:
    """Apply this revision."""
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
    op.execute(TEXT_ACCENTI)
    for column in ("description", "unit"):
        op.execute(
            f"CREATE INDEX ix_incident_{column}_folded ON incident"
            f" USING gin (lower(text_accenti({column})) public.gin_trgm_ops)"
        )


def downgrade() -> None:
    """Revert this revision."""
    op.execute("DROP INDEX ix_incident_unit_folded")
    op.execute("DROP INDEX ix_incident_description_folded")
    op.execute("DROP FUNCTION text_accenti(text)")
    op.execute("DROP EXTENSION IF EXISTS pg_trgm")
