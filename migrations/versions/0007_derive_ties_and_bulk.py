"""incident_derive: ties between border pieces go to the lowest piece id; not called in bulk

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:30:00

Two border pieces at exactly the same distance (a point whose nearest border point is the vertex
two pieces share) were ordered by chance; the bulk import orders them by piece id, and now the
trigger does too, so both give the same answer in every case.

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


def _derive_v2() -> str:
    """The 0002 derivation function, read from that revision's file."""
    path = Path(__file__).with_name("0002_incidents_api.py")
    spec = importlib.util.spec_from_file_location("bw_migration_0002", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = str(module.INCIDENT_DERIVE_V2)
    assert text.count(BORDER_ORDER) == 1
    return text


TRIGGER = (
    "CREATE TRIGGER incident_derive BEFORE INSERT OR UPDATE OF geom, occurred_at ON incident"
    " FOR EACH ROW {when} EXECUTE FUNCTION incident_derive()"
)
BULK_OFF = "WHEN (current_setting('borderwatch.bulk', true) IS DISTINCT FROM 'on')"


def upgrade() -> None:
    """Apply this revision."""
    op.execute(
        _derive_v2().replace(
            BORDER_ORDER, "ORDER BY ST_Distance(p.geom::geography, pt), p.id\n     LIMIT 1;"
        )
    )
    op.execute("DROP TRIGGER incident_derive ON incident")
    op.execute(TRIGGER.format(when=BULK_OFF))


def downgrade() -> None:
    """Revert this revision."""
    op.execute("DROP TRIGGER incident_derive ON incident")
    op.execute(TRIGGER.format(when=""))
    op.execute(_derive_v2())
