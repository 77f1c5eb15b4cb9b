"""The per-layer change counter that keys tile URLs and ETags (kept by triggers, 0005)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class LayerVersion(Base):
    """One row per data layer: `version` goes up with every committed change to its table."""

    __tablename__ = "layer_version"

    layer: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, server_default="1")
    epoch: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
