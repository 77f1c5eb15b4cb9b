"""Place search: names folded for accent- and case-insensitive matching

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 10:00:00

`place_fold(text)`: lower case ASCII letters, digits and single spaces, Vietnamese diacritics
removed (PostgreSQL's `unaccent`, with đ/Đ folded to d explicitly so the rules file of no version
can miss it), anything else a separator: 'Phường Hà Tiên' → 'phuong ha tien', 'Bà Rịa – Vũng Tàu'
→ 'ba ria vung tau'. Declared IMMUTABLE (unaccent itself is STABLE: its rules file could change)
so that it can compute a stored column. `search_key` on jurisdiction and border_post holds every
name a person may type, folded, each between '|': the local name, the local name without its
type ('Hà Tiên' for 'Phường Hà Tiên'), the English name. GET /places matches it with LIKE
(app/places/service.py); 3 500 rows need no index (docs/decisions.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLACE_FOLD = """
CREATE FUNCTION place_fold(text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT btrim(regexp_replace(
        lower(public.unaccent('public.unaccent'::regdictionary, translate($1, 'đĐ', 'dD'))),
        '[^a-z0-9]+', ' ', 'g'))
$$
"""

JURISDICTION_KEY = (
    "'|' || place_fold(coalesce(name_local, '')) || '|' || place_fold(CASE WHEN type_local IS NOT"
    " NULL AND starts_with(name_local, type_local || ' ') THEN substr(name_local,"
    " length(type_local) + 2) ELSE coalesce(name_local, '') END) || '|' || place_fold(name)"
    " || '|'"
)
POST_KEY = "'|' || place_fold(coalesce(name_local, '')) || '|' || place_fold(name) || '|'"
COMMENT = "names folded for search (place_fold), each between '|'"


def upgrade() -> None:
    """Apply this revision."""
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public")
    op.execute(PLACE_FOLD)
    for table, key in (("jurisdiction", JURISDICTION_KEY), ("border_post", POST_KEY)):
        op.add_column(
            table,
            sa.Column("search_key", sa.Text, sa.Computed(key, persisted=True), comment=COMMENT),
        )


def downgrade() -> None:
    """Revert this revision."""
    for table in ("border_post", "jurisdiction"):
        op.drop_column(table, "search_key")
    op.execute("DROP FUNCTION place_fold(text)")
    op.execute("DROP EXTENSION IF EXISTS unaccent")
