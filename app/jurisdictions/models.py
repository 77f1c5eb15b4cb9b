"""Jurisdictions (countries, provinces, …) and their adjacency."""

from __future__ import annotations

from datetime import date, datetime

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
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
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.geo.spatial import SRID_WGS84

LEVELS = ("country", "province", "district", "commune")
# the names a person may type, folded by place_fold (migration 0011), each between '|': local
# name, local name without its type ('Hà Tiên' for 'Phường Hà Tiên'), English name
SEARCH_KEY_SQL = (
    "'|' || place_fold(coalesce(name_local, '')) || '|' || place_fold(CASE WHEN type_local IS NOT"
    " NULL AND starts_with(name_local, type_local || ' ') THEN substr(name_local,"
    " length(type_local) + 2) ELSE coalesce(name_local, '') END) || '|' || place_fold(name)"
    " || '|'"
)


class Jurisdiction(Base):
    """An administrative area at one level of the hierarchy, valid for a period."""

    __tablename__ = "jurisdiction"
    __table_args__ = (
        UniqueConstraint(
            "code",
            "valid_from",
            name="uq_jurisdiction_code_valid_from",
            postgresql_nulls_not_distinct=True,
        ),
        CheckConstraint(f"level IN {LEVELS!r}", name="level"),
        CheckConstraint("ST_IsValid(geom)", name="geom_valid"),
        Index("ix_jurisdiction_geom", "geom", postgresql_using="gist"),
        Index("ix_jurisdiction_level_country", "level", "country"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(Text)
    name_local: Mapped[str | None] = mapped_column(Text)
    level: Mapped[str] = mapped_column(String(16))
    parent_code: Mapped[str | None] = mapped_column(String(32))
    country: Mapped[str] = mapped_column(String(3), comment="ISO 3166-1 alpha-3")
    geom: Mapped[WKBElement] = mapped_column(
        Geometry("MULTIPOLYGON", srid=SRID_WGS84, spatial_index=False)
    )
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(Text)
    source_name: Mapped[str | None] = mapped_column(Text, comment="name as given by the source")
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    official_code: Mapped[str | None] = mapped_column(
        String(16), comment="code of the official registry"
    )
    type_local: Mapped[str | None] = mapped_column(
        Text, comment="type in Vietnamese: Tỉnh, Thành phố, Xã, Phường …"
    )
    geometry_approximate: Mapped[bool] = mapped_column(
        Boolean,
        server_default=false(),
        comment="the polygon is an approximation built from the official centroid and area",
    )
    formed_from: Mapped[list[str] | None] = mapped_column(
        ARRAY(String(32)), comment="codes of the former units"
    )
    official_area_km2: Mapped[float | None] = mapped_column(Float)
    official_centroid: Mapped[WKBElement | None] = mapped_column(
        Geometry("POINT", srid=SRID_WGS84, spatial_index=False)
    )
    search_key: Mapped[str | None] = mapped_column(
        Text,
        Computed(SEARCH_KEY_SQL, persisted=True),
        comment="names folded for search (place_fold), each between '|'",
    )


class JurisdictionAdjacency(Base):
    """A pair of neighbouring jurisdictions, stored in both directions."""

    __tablename__ = "jurisdiction_adjacency"
    __table_args__ = (
        CheckConstraint("a_id <> b_id", name="distinct_pair"),
        CheckConstraint("method IN ('shared_line', 'gap', 'correction')", name="method"),
        Index("ix_jurisdiction_adjacency_b_id", "b_id"),
    )

    a_id: Mapped[int] = mapped_column(
        ForeignKey("jurisdiction.id", ondelete="CASCADE"), primary_key=True
    )
    b_id: Mapped[int] = mapped_column(
        ForeignKey("jurisdiction.id", ondelete="CASCADE"), primary_key=True
    )
    shared_km: Mapped[float] = mapped_column(Float)
    touches: Mapped[bool] = mapped_column(Boolean)
    gap_m: Mapped[float] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)


class JurisdictionPiece(Base):
    """A jurisdiction cut into pieces of at most 128 vertices: fast point-in-polygon lookups."""

    __tablename__ = "jurisdiction_piece"
    __table_args__ = (
        Index("ix_jurisdiction_piece_geom", "geom", postgresql_using="gist"),
        Index("ix_jurisdiction_piece_jurisdiction_id", "jurisdiction_id"),
        # the nearest-piece searches at sea look in one level at a time (incident_sea)
        *(
            Index(
                f"ix_jurisdiction_piece_geom_{level}",
                "geom",
                postgresql_using="gist",
                postgresql_where=text(f"level = '{level}'"),
            )
            for level in ("country", "province", "commune")
        ),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(16))
    country: Mapped[str] = mapped_column(String(3))
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    geom: Mapped[WKBElement] = mapped_column(
        Geometry("POLYGON", srid=SRID_WGS84, spatial_index=False)
    )
