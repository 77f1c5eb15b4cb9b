"""Incident input: validation that names the field and says what is wrong (the field rules
themselves are in rules.py, shared with the bulk import)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from app.incidents import rules
from app.incidents.rules import (
    EARLIEST,
    CategoryCode,
    Description,
    PrecisionM,
    Severity,
    SourceId,
    SourceName,
    Status,
    Unit,
)

__all__ = ["EARLIEST", "Status"]

OCCURRED_AT_DOC = (
    "When it happened: RFC 3339. A time without an offset is a local time of the deployment's"
    " zone (BORDERWATCH_TIME_ZONE, default Asia/Ho_Chi_Minh); stored and answered in UTC."
)

# The lifecycle: forward along the chain, or rejected / duplicate from any open state.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "reported": ("verified", "rejected", "duplicate"),
    "verified": ("under_investigation", "rejected", "duplicate"),
    "under_investigation": ("solved", "rejected", "duplicate"),
    "solved": ("closed",),
    "closed": (),
    "rejected": (),
    "duplicate": (),
}


class PointGeometry(BaseModel):
    """A GeoJSON Point: [lon, lat] in WGS 84 (RFC 7946)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["Point"]
    coordinates: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(
        min_length=2, max_length=3
    )

    @field_validator("coordinates")
    @classmethod
    def _in_range(cls, value: list[float]) -> list[float]:
        lon, lat = value[0], value[1]
        problem = rules.latitude_problem(
            lat, lon, swapped_hint="looks like [lat, lon]: GeoJSON order is [lon, lat]"
        ) or rules.longitude_problem(lon)
        if problem is not None:
            raise ValueError(problem)
        return [lon, lat]

    @property
    def lon(self) -> float:
        """Longitude in degrees."""
        return self.coordinates[0]

    @property
    def lat(self) -> float:
        """Latitude in degrees."""
        return self.coordinates[1]


class IncidentFields(BaseModel):
    """Fields shared by creation and correction."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    location_precision_m: PrecisionM | None = None
    description: Description | None = None
    unit: Unit | None = None

    @staticmethod
    def _check_time(value: datetime | None) -> datetime | None:
        """Before 1900 is refused here; the future is refused by the service (clock skew)."""
        if value is None:
            return None
        value = rules.localized(value)  # no offset: the deployment's time zone
        if (problem := rules.time_problem(value)) is not None:
            raise ValueError(problem)
        return value.astimezone(UTC)


class IncidentIn(IncidentFields):
    """A new incident."""

    id: uuid.UUID | None = None
    category: CategoryCode
    severity: Severity
    status: Status = rules.DEFAULT_STATUS
    occurred_at: datetime = Field(description=OCCURRED_AT_DOC)
    location: PointGeometry
    source: SourceName | None = None
    source_id: SourceId | None = None
    reporting_unit_id: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="the reporting unit (GET /units); a key of a unit fills in its own",
    )

    @field_validator("occurred_at")
    @classmethod
    def _time(cls, value: datetime) -> datetime:
        return cls._check_time(value) or value

    def request_hash(self) -> str:
        """Hash of the content (not the id): an idempotent retry must send the same content.
        No reporting unit: the hash it had before units existed (retries across the upgrade)."""
        exclude = {"id"} if self.reporting_unit_id is not None else {"id", "reporting_unit_id"}
        data = self.model_dump(mode="json", exclude=exclude)
        return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


class IncidentPatch(IncidentFields):
    """A correction: only the fields present change; null clears an optional field."""

    category: CategoryCode | None = None
    severity: Severity | None = None
    status: Status | None = None
    occurred_at: datetime | None = Field(default=None, description=OCCURRED_AT_DOC)
    location: PointGeometry | None = None

    @model_validator(mode="after")
    def _required_not_null(self) -> IncidentPatch:
        for name in ("category", "severity", "status", "occurred_at", "location"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if not self.model_fields_set:
            raise ValueError("the patch changes nothing: send at least one field")
        return self

    @field_validator("occurred_at")
    @classmethod
    def _time(cls, value: datetime | None) -> datetime | None:
        return cls._check_time(value)


def check_not_future(occurred_at: datetime | None, clock_skew_s: int) -> None:
    """Refuse an occurred_at later than now plus the allowed clock skew."""
    if occurred_at is not None and occurred_at > datetime.now(UTC) + timedelta(
        seconds=clock_skew_s
    ):
        raise _error(("occurred_at",), "occurred_at is in the future", occurred_at.isoformat())


def parse_incident(payload: Any) -> IncidentIn:
    """Validate a plain body or a GeoJSON Feature; ValidationError locations name the field."""
    if isinstance(payload, dict) and payload.get("type") == "Feature":
        props = payload.get("properties")
        if props is not None and not isinstance(props, dict):
            raise _error(("properties",), "properties must be an object", props)
        merged: dict[str, Any] = dict(props or {})
        merged["location"] = payload.get("geometry")
        if payload.get("id") is not None:
            merged["id"] = payload["id"]
        extra = set(payload) - {"type", "id", "geometry", "properties", "bbox"}
        if extra:
            raise _error((sorted(extra)[0],), "unexpected member of a GeoJSON Feature", None)
        return IncidentIn.model_validate(merged)
    if not isinstance(payload, dict):
        raise _error((), "the body must be a JSON object or a GeoJSON Feature", payload)
    return IncidentIn.model_validate(payload)


def _error(loc: tuple[str, ...], message: str, value: Any) -> ValidationError:
    return ValidationError.from_exception_data(
        "IncidentIn",
        [{"type": "value_error", "loc": loc, "input": value, "ctx": {"error": message}}],
    )
