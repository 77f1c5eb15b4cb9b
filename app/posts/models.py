"""Border posts: gates, border-guard stations, police posts, customs, coast guard, checkpoints.

Managed through the service (app/posts/manage.py, migration 0023): kinds are an extensible list
(`post_kind`, like incident categories); a post has a validity (closing sets `valid_to`, nothing
is deleted), a version for If-Match, an append-only history written by a trigger, and an area
of responsibility.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.geo.spatial import SRID_WGS84

OPENING = ("open", "restricted", "suspended", "closed")
AREA_SOURCES = ("drawn", "imported", "generated")
JOB_STATES = ("pending", "running", "done", "failed")
# the kinds migration 0023 installs (more can be added to `post_kind`); the first data's codes
# stay: `border_gate` is the international border gate, `police` a police post, `customs` a
# customs branch, `coast_guard` a coast-guard station
KINDS = (
    "border_gate",
    "border_gate_main",
    "border_gate_secondary",
    "border_guard_station",
    "police",
    "customs",
    "coast_guard",
    "checkpoint",
)
# local and English name folded by place_fold (migration 0011), each between '|'
SEARCH_KEY_SQL = "'|' || place_fold(coalesce(name_local, '')) || '|' || place_fold(name) || '|'"


class PostKind(Base):
    """A kind of post (extensible, like incident categories) with Vietnamese and English names."""

    __tablename__ = "post_kind"
    __table_args__ = (CheckConstraint("code ~ '^[a-z][a-z0-9_]*$'", name="code_format"),)

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name_vi: Mapped[str] = mapped_column(Text)
    name_en: Mapped[str] = mapped_column(Text)
    gate: Mapped[bool] = mapped_column(
        Boolean,
        server_default="false",
        comment="a border gate: opening status and hours apply",
    )
    sort_order: Mapped[int] = mapped_column(Integer, server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, server_default=true())


class BorderPost(Base):
    """A post with a point position (approximate unless surveyed)."""

    __tablename__ = "border_post"
    __table_args__ = (
        CheckConstraint("country ~ '^[A-Z]{3}$'", name="country_format"),
        CheckConstraint("counterpart_country ~ '^[A-Z]{3}$'", name="counterpart_country_format"),
        CheckConstraint(f"opening_status IN {OPENING!r}", name="opening_status"),
        CheckConstraint(f"area_source IN {AREA_SOURCES!r}", name="area_source"),
        CheckConstraint(
            "valid_to IS NULL OR valid_from IS NULL OR valid_to > valid_from", name="period"
        ),
        CheckConstraint("version >= 1", name="version"),
        CheckConstraint(
            "counterpart_post_id IS NULL OR counterpart_post_id <> id", name="not_own_counterpart"
        ),
        Index("ix_border_post_geom", "geom", postgresql_using="gist"),
        # geography KNN (sphere distance) for the nearest-post lookup
        Index("ix_border_post_geog", text("(geom::geography)"), postgresql_using="gist"),
        Index("ix_border_post_area", "area", postgresql_using="gist"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(Text)
    name_local: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32), ForeignKey("post_kind.code"))
    agency: Mapped[str] = mapped_column(Text)
    border: Mapped[str | None] = mapped_column(String(16), comment="border segment code")
    province_code: Mapped[str | None] = mapped_column(String(32))
    counterpart: Mapped[str | None] = mapped_column(Text, comment="the post across the border")
    position_approximate: Mapped[bool] = mapped_column(Boolean, default=True)
    geom: Mapped[WKBElement] = mapped_column(
        Geometry("POINT", srid=SRID_WGS84, spatial_index=False)
    )
    source: Mapped[str] = mapped_column(Text)
    search_key: Mapped[str | None] = mapped_column(
        Text,
        Computed(SEARCH_KEY_SQL, persisted=True),
        comment="names folded for search (place_fold), each between '|'",
    )
    country: Mapped[str] = mapped_column(
        String(3),
        server_default="VNM",
        comment="ISO 3166-1 alpha-3; not VNM: a neighbour's post (e.g. a stored counterpart)",
    )
    counterpart_country: Mapped[str | None] = mapped_column(String(3))
    counterpart_post_id: Mapped[int | None] = mapped_column(
        ForeignKey("border_post.id", ondelete="RESTRICT"),
        comment="the post across the border when it is stored",
    )
    opening_status: Mapped[str | None] = mapped_column(String(16), comment="gates only")
    opening_hours: Mapped[str | None] = mapped_column(Text, comment="gates only, e.g. 07:00-19:00")
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date, comment="exclusive; NULL: in force")
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_by: Mapped[str | None] = mapped_column(Text)
    area: Mapped[WKBElement | None] = mapped_column(
        Geometry("MULTIPOLYGON", srid=SRID_WGS84, spatial_index=False),
        comment="area of responsibility",
    )
    area_source: Mapped[str | None] = mapped_column(String(16))
    area_km: Mapped[float | None] = mapped_column(Float, comment="depth of a generated area")


class PostAreaZone(Base):
    """The border zone generated areas are cut from, per depth (app/posts/areas.py)."""

    __tablename__ = "post_area_zone"

    km: Mapped[float] = mapped_column(Float, primary_key=True)
    built_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    geom: Mapped[WKBElement | None] = mapped_column(
        Geometry("GEOMETRY", srid=SRID_WGS84, spatial_index=False)
    )


class BorderPostHistory(Base):
    """Append-only: one row per insert or change of a post, written by a trigger."""

    __tablename__ = "border_post_history"
    __table_args__ = (Index("ix_border_post_history_post_id", "post_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("border_post.id"))
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str | None] = mapped_column(Text)
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB)


class RederiveJob(Base):
    """The re-derivation of incidents' nearest post after a post changed (app/posts/rederive.py)."""

    __tablename__ = "post_rederive_job"
    __table_args__ = (CheckConstraint(f"state IN {JOB_STATES!r}", name="state"),)

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    post_id: Mapped[int | None] = mapped_column(ForeignKey("border_post.id"))
    reason: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    total: Mapped[int] = mapped_column(Integer, server_default="0")
    done: Mapped[int] = mapped_column(Integer, server_default="0")
    changed: Mapped[int] = mapped_column(Integer, server_default="0")
    batch_size: Mapped[int] = mapped_column(Integer, server_default="1000")
    actor: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)


class RederiveItem(Base):
    """An incident a job still has to derive again (deleted once done)."""

    __tablename__ = "post_rederive_item"

    job_id: Mapped[int] = mapped_column(
        ForeignKey("post_rederive_job.id", ondelete="CASCADE"), primary_key=True
    )
    incident_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
