"""The live feed's durable log: one row per incident change, written by triggers
(migrations/sql/incident_events_v1.sql), read by every API process (app/events/hub.py)."""

from __future__ import annotations

import uuid
from datetime import datetime

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.geo.spatial import SRID_WGS84

# the transaction that wrote a row (pg_current_xact_id() as a bigint): rows are read in (xid, id)
# order and only once every transaction with a smaller xid has ended (app/events/service.py)
CURRENT_XID = text("CAST(CAST(pg_current_xact_id() AS text) AS bigint)")


class EventLog(Base):
    """An event on the feed, with the incident's picture that filters and scopes read (the
    column names are the incident's, so the incident filters apply to it unchanged)."""

    __tablename__ = "event_log"
    __table_args__ = (
        Index("ix_event_log_xid_id", "xid", "id"),
        Index("ix_event_log_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    xid: Mapped[int] = mapped_column(BigInteger, server_default=CURRENT_XID)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )
    kind: Mapped[str] = mapped_column(String(32))
    incident_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    version: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(64))
    severity: Mapped[int | None] = mapped_column(SmallInteger)
    status: Mapped[str | None] = mapped_column(String(32))
    occurred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    geom: Mapped[WKBElement | None] = mapped_column(
        Geometry("POINT", srid=SRID_WGS84, spatial_index=False)
    )
    jurisdiction_path: Mapped[list[str] | None] = mapped_column(ARRAY(String(32)))
    border_segment: Mapped[str | None] = mapped_column(String(16))
    border_distance_km: Mapped[float | None] = mapped_column(Float)
    was_geom: Mapped[WKBElement | None] = mapped_column(
        Geometry("POINT", srid=SRID_WGS84, spatial_index=False),
        comment="where it was before it moved (a subscriber that saw it there hears it left)",
    )
    was_path: Mapped[list[str] | None] = mapped_column(ARRAY(String(32)))
    alert_id: Mapped[int | None] = mapped_column(BigInteger, comment="alert.* events: the alert")
    rule_id: Mapped[int | None] = mapped_column(
        Integer, comment="alert.* events: its rule (who receives it: app/alerts/)"
    )


class EventLogHorizon(Base):
    """The newest event the retention removed: a client resuming from before it resyncs."""

    __tablename__ = "event_log_horizon"

    one: Mapped[int] = mapped_column(SmallInteger, primary_key=True, server_default="1")
    xid: Mapped[int] = mapped_column(BigInteger, server_default="0")
    id: Mapped[int] = mapped_column(BigInteger, server_default="0")
