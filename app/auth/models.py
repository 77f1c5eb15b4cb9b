"""API principals, the audit log of non-incident writes, and cached cooperation zones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.cooperation.models import CooperationArea
from app.db import Base
from app.geo.spatial import SRID_WGS84

ROLES = ("viewer", "officer", "analyst", "admin")


class Principal(Base):
    """A person or service account with one API key (only its hash is stored)."""

    __tablename__ = "principal"
    __table_args__ = (
        CheckConstraint(f"role IN {ROLES!r}", name="role"),
        CheckConstraint(
            "jurisdiction_code IS NULL OR cooperation_area_id IS NULL", name="one_scope"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    jurisdiction_code: Mapped[str | None] = mapped_column(
        String(32), comment="scope: a jurisdiction; NULL = national, or the cooperation area's"
    )
    cooperation_area_id: Mapped[int | None] = mapped_column(
        ForeignKey(CooperationArea.id, ondelete="RESTRICT"),
        comment="scope: a cooperation area (its members and their zone); NULL = none",
    )
    unit: Mapped[str | None] = mapped_column(Text, comment="the unit an officer reports for")
    unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("unit.id", ondelete="RESTRICT"), comment="the unit the key belongs to"
    )
    key_prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str | None] = mapped_column(Text)
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="the key stops working at this time; NULL = no expiry"
    )


class AuditEvent(Base):
    """An append-only record of a write that is not an incident change (keys, data loads)."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_at", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(32))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str | None] = mapped_column(Text)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class ScopeZone(Base):
    """Neighbouring territory within the cooperation distance of a jurisdiction, in pieces."""

    __tablename__ = "scope_zone"
    __table_args__ = (
        Index("ix_scope_zone_geom", "geom", postgresql_using="gist"),
        Index("ix_scope_zone_code_distance", "code", "distance_m"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    distance_m: Mapped[int] = mapped_column(Integer)
    geom: Mapped[WKBElement] = mapped_column(
        Geometry("POLYGON", srid=SRID_WGS84, spatial_index=False)
    )


class ScopeZoneBuilt(Base):
    """Marks a (code, distance) whose zone is in scope_zone (possibly with no pieces)."""

    __tablename__ = "scope_zone_built"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    distance_m: Mapped[int] = mapped_column(Integer, primary_key=True)
    built_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
