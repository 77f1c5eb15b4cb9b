"""Incidents: the table, its indexes and the columns the database derives on every write."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.geo.spatial import SRID_WGS84

STATUSES = (
    "reported",
    "verified",
    "under_investigation",
    "solved",
    "closed",
    "rejected",
    "duplicate",
)


class Category(Base):
    """A managed incident category with English and Vietnamese names."""

    __tablename__ = "category"
    __table_args__ = (CheckConstraint("code ~ '^[a-z][a-z0-9_]*$'", name="code_format"),)

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_en: Mapped[str] = mapped_column(Text)
    name_vi: Mapped[str] = mapped_column(Text)
    sort_order: Mapped[int] = mapped_column(Integer, server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, server_default=true())


class Incident(Base):
    """A security incident at a point; jurisdiction and border fields are set by a trigger."""

    __tablename__ = "incident"
    __table_args__ = (
        CheckConstraint("severity BETWEEN 1 AND 5", name="severity"),
        CheckConstraint(f"status IN {STATUSES!r}", name="status"),
        CheckConstraint(
            "location_precision_m IS NULL OR location_precision_m >= 0", name="precision"
        ),
        CheckConstraint("version >= 1", name="version"),
        CheckConstraint("occurred_at >= '1900-01-01'", name="occurred_after_1900"),
        CheckConstraint(
            "maritime_zone IN ('territorial_sea', 'contiguous_zone')", name="maritime_zone"
        ),
        Index("ix_incident_occurred_at_id", text("occurred_at DESC"), text("id DESC")),
        Index("ix_incident_geom", "geom", postgresql_using="gist"),
        Index("ix_incident_occurred_at", "occurred_at"),
        Index("ix_incident_province_occurred_at", "province_code", "occurred_at"),
        Index("ix_incident_jurisdiction_path", "jurisdiction_path", postgresql_using="gin"),
        Index("ix_incident_category", "category"),
        Index("ix_incident_commune_code", "commune_code"),
        Index(
            "ix_incident_reporting_unit_id",
            "reporting_unit_id",
            postgresql_where=text("reporting_unit_id IS NOT NULL"),
        ),
        # a cooperation area's border strips (app/incidents/filters.py on_border_strip)
        Index("ix_incident_border_segment_distance", "border_segment", "border_distance_km"),
        # what one key recorded, newest first (GET /incidents?recorded_by=me: the field page)
        Index(
            "ix_incident_created_by_occurred_at",
            "created_by",
            text("occurred_at DESC"),
            text("id DESC"),
        ),
        Index(
            "uq_incident_source_source_id",
            "source",
            "source_id",
            unique=True,
            postgresql_where=text("source_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    category: Mapped[str] = mapped_column(ForeignKey("category.code"))
    severity: Mapped[int] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(32), server_default="reported")
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reported_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    geom: Mapped[WKBElement] = mapped_column(
        Geometry("POINT", srid=SRID_WGS84, spatial_index=False)
    )
    location_precision_m: Mapped[float | None] = mapped_column(Float)
    description: Mapped[str | None] = mapped_column(Text)
    unit: Mapped[str | None] = mapped_column(Text, comment="reporting unit")
    reporting_unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("unit.id", ondelete="RESTRICT"), comment="the reporting unit (a reference)"
    )
    source: Mapped[str | None] = mapped_column(String(64))
    source_id: Mapped[str | None] = mapped_column(String(128))
    # Derived by the incident_derive() trigger on every insert and on location/time change
    # (migrations/sql/incident_derive_v6.sql): today's units, the units in force on the day it
    # occurred, every unit of every era that holds it, its place at sea.
    country_code: Mapped[str | None] = mapped_column(String(3))
    province_code: Mapped[str | None] = mapped_column(String(32))
    commune_code: Mapped[str | None] = mapped_column(String(32), comment="today's commune")
    province_at_occurrence: Mapped[str | None] = mapped_column(
        String(32), comment="province in force that day"
    )
    commune_at_occurrence: Mapped[str | None] = mapped_column(
        String(32), comment="commune in force that day"
    )
    jurisdiction_path: Mapped[list[str] | None] = mapped_column(ARRAY(String(32)))
    jurisdiction_method: Mapped[str | None] = mapped_column(
        String(16), comment="contains | nearest (offshore or in a river gap)"
    )
    offshore_km: Mapped[float | None] = mapped_column(
        Float, comment="at sea: distance to the coastline"
    )
    maritime_zone: Mapped[str | None] = mapped_column(
        String(16), comment="territorial_sea (0-12 nm) | contiguous_zone (12-24 nm)"
    )
    border_segment: Mapped[str | None] = mapped_column(String(16))
    border_distance_km: Mapped[float | None] = mapped_column(Float)
    nearest_post_id: Mapped[int | None] = mapped_column(
        ForeignKey("border_post.id", ondelete="SET NULL")
    )
    nearest_post_km: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str | None] = mapped_column(Text)
    updated_by: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    request_hash: Mapped[str | None] = mapped_column(
        String(64), comment="hash of the creating request: an idempotent retry must match it"
    )


class IncidentHistory(Base):
    """Append-only history (a trigger writes it; another refuses updates and deletes)."""

    __tablename__ = "incident_history"
    __table_args__ = (
        Index("ix_incident_history_incident_id", "incident_id", "id"),
        Index("ix_incident_history_changed_at", "changed_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str | None] = mapped_column(Text)
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB)


# text search without accents or case (migration 0020): q= and CQL2's CASEI(ACCENTI(description))
for _column in (Incident.description, Incident.unit):
    Index(
        f"ix_incident_{_column.key}_folded",
        func.lower(func.text_accenti(_column)).label(f"{_column.key}_folded"),
        postgresql_using="gin",
        postgresql_ops={f"{_column.key}_folded": "public.gin_trgm_ops"},
    )

NOTE_MAX = 4000  # characters of a note


class IncidentNote(Base):
    """A note on an incident (what a unit learned, asked or did): append-only, the id chosen by
    the client so that a retry from an offline queue stores it once."""

    __tablename__ = "incident_note"
    __table_args__ = (
        CheckConstraint(f"char_length(body) BETWEEN 1 AND {NOTE_MAX}", name="body_length"),
        Index("ix_incident_note_incident_id", "incident_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("incident.id", ondelete="CASCADE")
    )
    body: Mapped[str] = mapped_column(Text)
    # the clock, not the transaction's start: notes written in one transaction keep their order
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    created_by: Mapped[str] = mapped_column(Text)
    unit: Mapped[str | None] = mapped_column(Text)
