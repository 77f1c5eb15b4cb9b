"""Statistics by reporting unit: the two pieces `/analysis/stats?group_by=unit` needs (the key of
a group and the names of the keys), kept here so that app/analysis/stats.py only names them
(docs/units.md, "Statistics by unit")."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.incidents.models import Incident
from app.units.models import Unit


def unit_key() -> ColumnElement[Any]:
    """SQL: the group of an incident by reporting unit: the unit's id as text; NULL for
    incidents without one (old records and imports carry only the free-text `unit`)."""
    return cast(Incident.reporting_unit_id, String)


async def unit_names(session: AsyncSession, keys: list[str]) -> dict[str, tuple[str, str | None]]:
    """The English and the own (Vietnamese) name of each unit key, as `stats._names` returns
    them for jurisdictions and categories; the code stands in for a missing English name."""
    ids = sorted({int(k) for k in keys if k.isdigit()})
    if not ids:
        return {}
    rows = await session.execute(
        select(Unit.id, Unit.code, Unit.name_en, Unit.name).where(Unit.id.in_(ids))
    )
    return {str(r.id): (r.name_en or r.code, r.name) for r in rows}
