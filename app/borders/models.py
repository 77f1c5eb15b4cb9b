"""National border segments, one per country pair, and their indexed pieces."""

from __future__ import annotations

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.geo.spatial import SRID_WGS84


class BorderSegment(Base):
    """The land border between two countries, derived from the country polygons."""

    __tablename__ = "border_segment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True, comment="e.g. VNM-LAO")
    country_a: Mapped[str] = mapped_column(String(3))
    country_b: Mapped[str] = mapped_column(String(3))
    length_km: Mapped[float] = mapped_column(Float)
    geom: Mapped[WKBElement] = mapped_column(
        Geometry("MULTILINESTRING", srid=SRID_WGS84, spatial_index=False)
    )
    source: Mapped[str] = mapped_column(Text)


class BorderSegmentPiece(Base):
    """A short piece of a border segment (ST_Subdivide) so nearest-border lookups use the index."""

    __tablename__ = "border_segment_piece"
    __table_args__ = (
        Index("ix_border_segment_piece_geom", "geom", postgresql_using="gist"),
        # geography KNN (sphere distance) for the nearest-border lookup
        Index("ix_border_segment_piece_geog", text("(geom::geography)"), postgresql_using="gist"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    segment_id: Mapped[int] = mapped_column(
        ForeignKey("border_segment.id", ondelete="CASCADE"), index=True
    )
    geom: Mapped[WKBElement] = mapped_column(
        Geometry("LINESTRING", srid=SRID_WGS84, spatial_index=False)
    )
