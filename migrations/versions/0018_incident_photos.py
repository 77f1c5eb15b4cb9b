"""Incident photos

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 00:40:00

One row per photo, its id chosen by the client (an offline queue retries with the same id). The
content is in `content` (bytea, the default: one backup holds everything) or, with
BORDERWATCH_PHOTO_DIR, in a file named by its SHA-256 (`content` NULL). The thumbnail is always
here. A photo of a soft-deleted incident stays but is not served; a purged incident takes its
photos with it (ON DELETE CASCADE). See app/photos/ and docs/photos.md.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp")
CAPTION_MAX = 500


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "incident_photo",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("incident_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("media_type", sa.String(16), nullable=False),
        sa.Column("bytes", sa.Integer, nullable=False, comment="of the content"),
        sa.Column("width", sa.Integer, nullable=False, comment="as displayed (EXIF orientation)"),
        sa.Column("height", sa.Integer, nullable=False, comment="as displayed (EXIF orientation)"),
        sa.Column("sha256", sa.String(64), nullable=False, comment="hex of the content"),
        sa.Column("content", postgresql.BYTEA, comment="NULL: a file in BORDERWATCH_PHOTO_DIR"),
        sa.Column("thumbnail", postgresql.BYTEA, nullable=False, comment="JPEG, <= 320 px"),
        sa.Column("exif_lon", sa.Float, comment="GPS position read from the upload's EXIF"),
        sa.Column("exif_lat", sa.Float),
        sa.Column("taken_at", sa.DateTime(timezone=True), comment="EXIF DateTimeOriginal"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("created_by", sa.Text),
        sa.Column("caption", sa.Text),
        sa.CheckConstraint(
            f"media_type IN {MEDIA_TYPES!r}", name=op.f("ck_incident_photo_media_type")
        ),
        sa.CheckConstraint("bytes > 0", name=op.f("ck_incident_photo_bytes")),
        sa.CheckConstraint("width > 0 AND height > 0", name=op.f("ck_incident_photo_size")),
        sa.CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name=op.f("ck_incident_photo_sha256")),
        sa.CheckConstraint(
            "(exif_lon IS NULL) = (exif_lat IS NULL) AND (exif_lon IS NULL OR"
            " (exif_lon BETWEEN -180 AND 180 AND exif_lat BETWEEN -90 AND 90))",
            name=op.f("ck_incident_photo_exif_position"),
        ),
        sa.CheckConstraint(
            f"char_length(caption) <= {CAPTION_MAX}", name=op.f("ck_incident_photo_caption")
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name=op.f("fk_incident_photo_incident_id_incident"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_photo")),
    )
    op.create_index("ix_incident_photo_incident_id", "incident_photo", ["incident_id"])
    # JPEG, PNG and WebP are compressed already: storing them as they are spares the server an
    # attempt to compress each one again (the column stays out of line, in TOAST)
    op.execute("ALTER TABLE incident_photo ALTER COLUMN content SET STORAGE EXTERNAL")
    op.execute("ALTER TABLE incident_photo ALTER COLUMN thumbnail SET STORAGE EXTERNAL")


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("incident_photo")
