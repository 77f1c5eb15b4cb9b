"""Every table, imported once so Alembic and the app see the whole metadata."""

from app.alerts.models import Alert, AlertCursor, AlertRule, WebhookDelivery
from app.auth.models import AuditEvent, Principal, ScopeZone, ScopeZoneBuilt
from app.auth.ratelimit import RateLimitCounter
from app.borders.models import BorderSegment, BorderSegmentPiece
from app.cooperation.models import CooperationArea, CooperationMember
from app.db import Base
from app.events.models import EventLog, EventLogHorizon
from app.incidents.models import Category, Incident, IncidentHistory, IncidentNote
from app.jurisdictions.models import Jurisdiction, JurisdictionAdjacency, JurisdictionPiece
from app.photos.models import IncidentPhoto
from app.posts.models import BorderPost
from app.tiles import change_log as _change_log  # noqa: F401  (its tables, 0022)
from app.tiles.models import LayerVersion
from app.units.models import Unit, UnitContact

__all__ = [
    "Alert",
    "AlertCursor",
    "AlertRule",
    "AuditEvent",
    "Base",
    "BorderPost",
    "BorderSegment",
    "BorderSegmentPiece",
    "Category",
    "CooperationArea",
    "CooperationMember",
    "EventLog",
    "EventLogHorizon",
    "Incident",
    "IncidentHistory",
    "IncidentNote",
    "IncidentPhoto",
    "Jurisdiction",
    "JurisdictionAdjacency",
    "JurisdictionPiece",
    "LayerVersion",
    "Principal",
    "RateLimitCounter",
    "ScopeZone",
    "ScopeZoneBuilt",
    "Unit",
    "UnitContact",
    "WebhookDelivery",
]
