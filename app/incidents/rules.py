"""The rules an incident's fields obey, in one place: the API's models (schemas.py) and the bulk
import's row validator (imports/rows.py) are both built from these types and checks.

The field types are pydantic `Annotated` types, so pydantic-core applies the limits (and the
import validates a CSV row with one TypeAdapter call); a limit lives here and nowhere else, and
the messages that quote one read it from the error (`ctx`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Literal, get_args
from zoneinfo import ZoneInfo

from pydantic import Field

from app.incidents.models import STATUSES

Status = Literal[
    "reported", "verified", "under_investigation", "solved", "closed", "rejected", "duplicate"
]
assert set(get_args(Status)) == set(STATUSES)

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LAT_MIN, LAT_MAX = -90.0, 90.0
LON_MIN, LON_MAX = -180.0, 180.0

SEVERITY_MIN, SEVERITY_MAX = 1, 5
DEFAULT_SEVERITY = 3
DEFAULT_STATUS: Status = "reported"
PRECISION_MAX_M = 100_000
DESCRIPTION_MAX, UNIT_MAX, SOURCE_MAX, SOURCE_ID_MAX = 10_000, 200, 64, 128

Latitude = Annotated[float, Field(ge=LAT_MIN, le=LAT_MAX, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=LON_MIN, le=LON_MAX, allow_inf_nan=False)]
CategoryCode = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
Severity = Annotated[int, Field(ge=SEVERITY_MIN, le=SEVERITY_MAX)]
PrecisionM = Annotated[float, Field(ge=0, le=PRECISION_MAX_M, allow_inf_nan=False)]
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX)]
Unit = Annotated[str, Field(max_length=UNIT_MAX)]
SourceName = Annotated[str, Field(max_length=SOURCE_MAX)]
SourceId = Annotated[str, Field(max_length=SOURCE_ID_MAX)]


def latitude_problem(lat: float, lon: float | None, *, swapped_hint: str) -> str | None:
    """Why a latitude is refused, else None; `swapped_hint` is added when the pair (with the
    longitude `lon`, if known) would be valid the other way round."""
    if not math.isfinite(lat):
        return f"latitude {lat} is not a finite number"
    if not LAT_MIN <= lat <= LAT_MAX:
        swapped = lon is not None and LAT_MIN <= lon <= LAT_MAX and LON_MIN <= lat <= LON_MAX
        hint = f" ({swapped_hint})" if swapped else ""
        return f"latitude {lat} is outside [{LAT_MIN:g}, {LAT_MAX:g}]{hint}"
    return None


def longitude_problem(lon: float) -> str | None:
    """Why a longitude is refused, else None."""
    if not math.isfinite(lon):
        return f"longitude {lon} is not a finite number"
    if not LON_MIN <= lon <= LON_MAX:
        return f"longitude {lon} is outside [{LON_MIN:g}, {LON_MAX:g}]"
    return None


# A time without an offset is a local time of the deployment's zone (BORDERWATCH_TIME_ZONE,
# set by the application and the CLI at start: app/main.py, app/cli/common.py), never UTC.
DEFAULT_TIME_ZONE = "Asia/Ho_Chi_Minh"
_local_zone: tzinfo = ZoneInfo(DEFAULT_TIME_ZONE)


def use_time_zone(name: str) -> None:
    """Read times without an offset in the zone `name` (an IANA name) from now on."""
    global _local_zone
    _local_zone = ZoneInfo(name)


def local_zone() -> tzinfo:
    """The zone of times written without an offset."""
    return _local_zone


def localized(value: datetime) -> datetime:
    """An aware time: `value` itself when it has an offset, else `value` in the local zone."""
    return value if value.tzinfo is not None else value.replace(tzinfo=_local_zone)


def time_problem(value: datetime) -> str | None:
    """The reason an (aware) occurred_at is refused by itself, else None; the future is
    checked against the clock where the request is handled (check_not_future)."""
    if value < EARLIEST:
        return "occurred_at is before 1900"
    return None
