"""Units and their contact channels.

A unit is a body that reports incidents and answers a hotline: a provincial police department,
a border-guard station, a commune police station, a customs branch. Its level is one of the four
levels of the hotline network (seed 002): central, province, commune, post. Its area is a
jurisdiction (of either era) and/or a border post (the crossing it works at); a unit of another
country (`country` ≠ VNM) whose post is one of ours is that post's counterpart across the border.
Closing a unit sets `valid_to` (exclusive); units are never deleted (incidents and keys refer to
them). Contact channels are never part of public reference data (docs/units.md)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base

LEVELS = ("central", "province", "commune", "post")
AGENCIES = ("police", "border_guard", "coast_guard", "customs", "other")
CHANNELS = ("hotline", "phone", "radio", "email")


class Unit(Base):
    """A unit of one of the four levels, with its parent and its area."""

    __tablename__ = "unit"
    __table_args__ = (
        CheckConstraint(f"level IN {LEVELS!r}", name="level"),
        CheckConstraint(f"agency IN {AGENCIES!r}", name="agency"),
        CheckConstraint("code ~ '^[A-Za-z0-9][A-Za-z0-9_.-]*$'", name="code_format"),
        CheckConstraint("country ~ '^[A-Z]{3}$'", name="country_format"),
        CheckConstraint("parent_id IS NULL OR parent_id <> id", name="not_own_parent"),
        Index("ix_unit_jurisdiction_code", "jurisdiction_code"),
        Index("ix_unit_post_id", "post_id"),
        Index("ix_unit_parent_id", "parent_id"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(Text, comment="the unit's own name (with diacritics)")
    name_en: Mapped[str | None] = mapped_column(Text)
    agency: Mapped[str] = mapped_column(String(16))
    level: Mapped[str] = mapped_column(String(16))
    country: Mapped[str] = mapped_column(
        String(3), server_default="VNM", comment="ISO 3166-1 alpha-3; not VNM: a counterpart"
    )
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id", ondelete="RESTRICT"))
    jurisdiction_code: Mapped[str | None] = mapped_column(
        String(32), comment="area: a jurisdiction code of either era"
    )
    post_id: Mapped[int | None] = mapped_column(
        ForeignKey("border_post.id", ondelete="RESTRICT"), comment="area: a border post"
    )
    valid_to: Mapped[date | None] = mapped_column(Date, comment="exclusive; NULL: in force")
    source: Mapped[str | None] = mapped_column(Text, comment="where the record comes from; demo")
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_by: Mapped[str | None] = mapped_column(Text)


class UnitContact(Base):
    """One contact channel of a unit (a hotline number, a radio channel …)."""

    __tablename__ = "unit_contact"
    __table_args__ = (
        CheckConstraint(f"channel IN {CHANNELS!r}", name="channel"),
        CheckConstraint("length(value) BETWEEN 1 AND 200", name="value_length"),
        Index("ix_unit_contact_unit_id", "unit_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
