"""Which units are in force on a day: the 63 provinces until 2025-07-01 (exclusive), the 34
provinces and 3 321 communes since. A unit is in force from `valid_from` (NULL: always) to
`valid_to` (exclusive; NULL: still), by Vietnam's calendar, as the derivation reads it
(incident_in_force and incident_local_day in migrations/sql/incident_derive_v6.sql)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, or_

# the validity dates of Vietnam's units are days in Vietnam, whatever the deployment's zone
VIETNAM_TIME = ZoneInfo("Asia/Ho_Chi_Minh")


def today() -> date:
    """Today in Vietnam."""
    return datetime.now(VIETNAM_TIME).date()


def in_force(j: Any, on: date) -> ColumnElement[bool]:
    """SQL: the jurisdiction `j` (the table or an alias with valid_from / valid_to) is in force
    on `on`."""
    return and_(
        or_(j.valid_from.is_(None), j.valid_from <= on),
        or_(j.valid_to.is_(None), j.valid_to > on),
    )
