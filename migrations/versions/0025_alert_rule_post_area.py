"""Alert rules of a post's area get their own kind, `post_area`

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 13:30:00

A rule `{"kind": "post_area", "post": <code>}` was stored as `kind='post'` with `distance_km`
NULL (no migration was at hand: docs/decisions.md, "Alert rules in a post's area"). The kind
CHECK now allows `post_area`, such rows become `post_area`, and a `post_area` rule names its
post and has no distance (ck_alert_rule_post_area). Downgrade: the rows go back to the old form.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = ("jurisdiction", "post", "area", "border_segment")
KINDS = ("jurisdiction", "post", "post_area", "area", "border_segment")
POST_AREA = "kind <> 'post_area' OR (post_id IS NOT NULL AND distance_km IS NULL)"


def upgrade() -> None:
    """Apply this revision."""
    op.drop_constraint(op.f("ck_alert_rule_kind"), "alert_rule", type_="check")
    op.create_check_constraint(op.f("ck_alert_rule_kind"), "alert_rule", f"kind IN {KINDS!r}")
    # the old form exactly as the service read it (a post rule without a post matched nothing,
    # and still does as a post rule)
    op.execute(
        "UPDATE alert_rule SET kind = 'post_area'"
        " WHERE kind = 'post' AND distance_km IS NULL AND post_id IS NOT NULL"
    )
    op.create_check_constraint(op.f("ck_alert_rule_post_area"), "alert_rule", POST_AREA)


def downgrade() -> None:
    """Revert this revision."""
    op.drop_constraint(op.f("ck_alert_rule_post_area"), "alert_rule", type_="check")
    op.execute("UPDATE alert_rule SET kind = 'post' WHERE kind = 'post_area'")
    op.drop_constraint(op.f("ck_alert_rule_kind"), "alert_rule", type_="check")
    op.create_check_constraint(op.f("ck_alert_rule_kind"), "alert_rule", f"kind IN {OLD_KINDS!r}")
