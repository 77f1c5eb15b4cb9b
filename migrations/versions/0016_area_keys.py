"""A key may be scoped to a cooperation area

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 22:00:00

`principal.cooperation_area_id`: the key sees the area's members' incidents and their
cooperation zone (app/auth/scope.py). A principal has a jurisdiction, an area, or neither
(national), never both. An area with keys cannot be deleted (areas are ended, not deleted).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


OLD_COMMENT = "scope; NULL = national"
NEW_COMMENT = "scope: a jurisdiction; NULL = national, or the cooperation area's"


def upgrade() -> None:
    """Apply this revision."""
    op.alter_column(
        "principal",
        "jurisdiction_code",
        existing_type=sa.String(32),
        existing_nullable=True,
        comment=NEW_COMMENT,
        existing_comment=OLD_COMMENT,
    )
    op.add_column(
        "principal",
        sa.Column(
            "cooperation_area_id",
            sa.Integer,
            nullable=True,
            comment="scope: a cooperation area (its members and their zone); NULL = none",
        ),
    )
    op.create_foreign_key(
        op.f("fk_principal_cooperation_area_id_cooperation_area"),
        "principal",
        "cooperation_area",
        ["cooperation_area_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_check_constraint(
        op.f("ck_principal_one_scope"),
        "principal",
        "jurisdiction_code IS NULL OR cooperation_area_id IS NULL",
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_constraint(op.f("ck_principal_one_scope"), "principal", type_="check")
    op.drop_constraint(
        op.f("fk_principal_cooperation_area_id_cooperation_area"), "principal", type_="foreignkey"
    )
    op.drop_column("principal", "cooperation_area_id")
    op.alter_column(
        "principal",
        "jurisdiction_code",
        existing_type=sa.String(32),
        existing_nullable=True,
        comment=OLD_COMMENT,
        existing_comment=NEW_COMMENT,
    )
