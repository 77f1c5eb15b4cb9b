"""Every table, imported once so Alembic and the app see the whole metadata."""

from app.borders.models import BorderSegment, BorderSegmentPiece
from app.db import Base
from app.incidents.models import Incident
from app.jurisdictions.models import Jurisdiction, JurisdictionAdjacency
from app.posts.models import BorderPost

__all__ = [
    "Base",
    "BorderPost",
    "BorderSegment",
    "BorderSegmentPiece",
    "Incident",
    "Jurisdiction",
    "JurisdictionAdjacency",
]
