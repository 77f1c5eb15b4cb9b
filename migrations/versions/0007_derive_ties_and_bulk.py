"""incident_derive: ties broken the same way every time; not called in bulk

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:30:00

Equal candidates were ordered by chance: two border pieces at exactly the same distance (a point
whose nearest border point is the vertex two pieces share), two jurisdictions of one level that
both cover a point on their common boundary (and are valid alike), two provinces equally near
an offshore point. The bulk import, which finds the candidates another way, breaks those ties
by piece id or code, and now the trigger does the same, so both give the same answer in every
case.

The trigger gets a WHEN condition on `borderwatch.bulk`: during a set-based import (which has
derived the fields already) the function is not even called, instead of being called for every
row to return at once.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BORDER_ORDER = "ORDER BY ST_Distance(p.geom::geography, pt)\n     LIMIT 1;"
LEVEL_ORDER = "p.valid_from DESC NULLS LAST\n      ) h;"
NEAREST_ORDER = "ORDER BY ST_Distance(c.geom::geography, NEW.geom::geography)\n         LIMIT 1;"
TIES = {
    BORDER_ORDER: "ORDER BY ST_Distance(p.geom::geography, pt), p.id\n     LIMIT 1;",
    LEVEL_ORDER: "p.valid_from DESC NULLS LAST, p.code\n      ) h;",
    NEAREST_ORDER: (
        "ORDER BY ST_Distance(c.geom::geography, NEW.geom::geography), c.code\n         LIMIT 1;"
    ),
}


def _derive_v2() -> str:
    """The 0002 derivation function, read from that revision's file."""
    path = Path(__file__).with_name("0002_incidents_api.py")
    spec = importlib.util.spec_from_file_location("bw_migration_0002", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = str(module.INCIDENT_DERIVE_V2)
    assert all(text.count(old) == 1 for old in TIES)
    return text


TRIGGER = (
    "CREATE TRIGGER incident_derive BEFORE INSERT OR UPDATE OF geom, occurred_at ON incident"
    " FOR EACH ROW {when} EXECUTE FUNCTION incident_derive()"
)
BULK_OFF = "WHEN (current_setting('borderwatch.bulk', true) IS DISTINCT FROM 'on')"


def upgrade() -> None:
    """Apply this revision."""
    text = _derive_v2()
    for old, new in TIES.items():
        text = text.replace(old, new)
    op.execute(text)
    op.execute("DROP TRIGGER incident_derive ON incident")
    op.execute(TRIGGER.format(when=BULK_OFF))


def downgrade() -> None:
    """Revert this revision."""
    op.execute("DROP TRIGGER incident_derive ON incident")
    op.execute(TRIGGER.format(when=""))
    op.execute(_derive_v2())
