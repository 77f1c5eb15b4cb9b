"""Every table, imported once so Alembic and the app see the whole metadata."""

from app.auth.models import AuditEvent, Principal, ScopeZone, ScopeZoneBuilt
from app.borders.models import BorderSegment, BorderSegmentPiece
from app.cooperation.models import CooperationArea, CooperationMember
from app.db import Base
from app.events.models import EventLog, EventLogHorizon
from app.incidents.models import Category, Incident, IncidentHistory
from app.jurisdictions.models import Jurisdiction, JurisdictionAdjacency, JurisdictionPiece
from app.posts.models import BorderPost
from app.tiles.models import LayerVersion

__all__ = [
    "AuditEvent",
    "Base",
    "BorderPost",
    "BorderSegment",
    "BorderSegmentPiece",
    "Category",
    "EventLog",
    "EventLogHorizon",
    "CooperationArea",
    "CooperationMember",
    "Incident",
    "IncidentHistory",
    "Jurisdiction",
    "JurisdictionAdjacency",
    "JurisdictionPiece",
    "LayerVersion",
    "Principal",
    "ScopeZone",
    "ScopeZoneBuilt",
]
