"""Border posts: gates, border-guard stations, police, customs, coast guard."""

from __future__ import annotations

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import Boolean, CheckConstraint, Computed, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.geo.spatial import SRID_WGS84

KINDS = ("border_gate", "border_guard_station", "police", "customs", "coast_guard")
# local and English name folded by place_fold (migration 0011), each between '|'
SEARCH_KEY_SQL = "'|' || place_fold(coalesce(name_local, '')) || '|' || place_fold(name) || '|'"


class BorderPost(Base):
    """A post with a point position (approximate unless surveyed)."""

    __tablename__ = "border_post"
    __table_args__ = (
        CheckConstraint(f"kind IN {KINDS!r}", name="kind"),
        Index("ix_border_post_geom", "geom", postgresql_using="gist"),
        # geography KNN (sphere distance) for the nearest-post lookup
        Index("ix_border_post_geog", text("(geom::geography)"), postgresql_using="gist"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(Text)
    name_local: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
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
