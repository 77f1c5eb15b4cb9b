"""A cooperation area and its members.

A member is a jurisdiction of either era (its area: `jurisdiction_path` holds its code), a strip
along a border segment (incidents whose nearest border is that segment, within `border_km`), or
a drawn polygon (an industrial park, a river stretch). The area is the union of its members."""

from __future__ import annotations

from datetime import date, datetime

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    false,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.geo.spatial import SRID_WGS84

MEMBER_KINDS = ("jurisdiction", "border_segment", "polygon")


class CooperationArea(Base):
    """Units working together over an area: who leads, why, from when to when."""

    __tablename__ = "cooperation_area"
    __table_args__ = (
        CheckConstraint(
            "valid_to IS NULL OR valid_from IS NULL OR valid_to > valid_from", name="period"
        ),
        CheckConstraint("version >= 1", name="version"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, comment="the name its units use (Vietnamese)")
    name_en: Mapped[str | None] = mapped_column(Text)
    purpose: Mapped[str | None] = mapped_column(Text)
    lead_unit: Mapped[str | None] = mapped_column(Text, comment="the unit that leads it")
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date, comment="exclusive; NULL: in force")
    example: Mapped[bool] = mapped_column(
        Boolean, server_default=false(), comment="demo data: an example, not a real agreement"
    )
    source: Mapped[str | None] = mapped_column(Text, comment="where the area comes from")
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_by: Mapped[str | None] = mapped_column(Text)


class CooperationMember(Base):
    """One member of a cooperation area."""

    __tablename__ = "cooperation_member"
    __table_args__ = (
        CheckConstraint("kind IN ('jurisdiction', 'border_segment', 'polygon')", name="kind"),
        CheckConstraint(
            "(kind = 'polygon') = (geom IS NOT NULL)"
            " AND (kind = 'polygon' OR code IS NOT NULL)"
            " AND ((kind = 'border_segment') = (border_km IS NOT NULL))",
            name="fields_of_kind",
        ),
        CheckConstraint("border_km IS NULL OR border_km > 0", name="border_km"),
        Index("ix_cooperation_member_geom", "geom", postgresql_using="gist"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    area_id: Mapped[int] = mapped_column(
        ForeignKey("cooperation_area.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(
        String(32), comment="jurisdiction code (either era) or border segment (VNM-LAO)"
    )
    name: Mapped[str | None] = mapped_column(Text, comment="a drawn polygon's name")
    border_km: Mapped[float | None] = mapped_column(
        Float, comment="border segment: the strip's width from the border, km"
    )
    approximate: Mapped[bool] = mapped_column(
        Boolean, server_default=false(), comment="the drawn polygon is an approximation"
    )
    geom: Mapped[WKBElement | None] = mapped_column(
        Geometry("MULTIPOLYGON", srid=SRID_WGS84, spatial_index=False)
    )
