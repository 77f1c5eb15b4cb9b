"""Incident photos: the table (migrations/versions/0018_incident_photos.py) and the JSON shape
of a photo in answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import BYTEA, UUID
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import func

from app.db import Base

MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp")
CAPTION_MAX = 500


class IncidentPhoto(Base):
    """A photo of an incident; its content here (`content`) or in BORDERWATCH_PHOTO_DIR."""

    __tablename__ = "incident_photo"
    __table_args__ = (
        CheckConstraint(f"media_type IN {MEDIA_TYPES!r}", name="media_type"),
        CheckConstraint("bytes > 0", name="bytes"),
        CheckConstraint("width > 0 AND height > 0", name="size"),
        CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="sha256"),
        CheckConstraint(
            "(exif_lon IS NULL) = (exif_lat IS NULL) AND (exif_lon IS NULL OR"
            " (exif_lon BETWEEN -180 AND 180 AND exif_lat BETWEEN -90 AND 90))",
            name="exif_position",
        ),
        CheckConstraint(f"char_length(caption) <= {CAPTION_MAX}", name="caption"),
        Index("ix_incident_photo_incident_id", "incident_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    media_type: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column("bytes", Integer, comment="of the content")
    width: Mapped[int] = mapped_column(Integer, comment="as displayed (EXIF orientation)")
    height: Mapped[int] = mapped_column(Integer, comment="as displayed (EXIF orientation)")
    sha256: Mapped[str] = mapped_column(String(64), comment="hex of the content")
    content: Mapped[bytes | None] = mapped_column(
        BYTEA, comment="NULL: a file in BORDERWATCH_PHOTO_DIR"
    )
    thumbnail: Mapped[bytes] = mapped_column(BYTEA, comment="JPEG, <= 320 px")
    exif_lon: Mapped[float | None] = mapped_column(
        Float, comment="GPS position read from the upload's EXIF"
    )
    exif_lat: Mapped[float | None] = mapped_column(Float)
    taken_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="EXIF DateTimeOriginal"
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str | None] = mapped_column(Text)
    caption: Mapped[str | None] = mapped_column(Text)


class PointOut(BaseModel):
    """A GeoJSON Point (lon, lat)."""

    type: Literal["Point"] = "Point"
    coordinates: tuple[float, float]


class PhotoOut(BaseModel):
    """A photo as answers describe it (its bytes are at `url`)."""

    id: uuid.UUID
    incident_id: uuid.UUID
    media_type: Literal["image/jpeg", "image/png", "image/webp"]
    bytes: int = Field(description="size of the content")
    width: int = Field(description="pixels, as displayed (EXIF orientation applied)")
    height: int
    sha256: str = Field(description="hex SHA-256 of the content (also its ETag)")
    caption: str | None
    taken_at: datetime | None = Field(description="EXIF DateTimeOriginal, when the file has it")
    exif_position: PointOut | None = Field(
        description="the GPS position in the file's EXIF, offered as the incident's position"
    )
    created_at: datetime
    created_by: str | None
    url: str = Field(description="the content")
    thumbnail_url: str = Field(description="a JPEG at most 320 px on its long side")


class PhotoList(BaseModel):
    """An incident's photos, oldest first."""

    incident_id: uuid.UUID
    photos: list[PhotoOut]
