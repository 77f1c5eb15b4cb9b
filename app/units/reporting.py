"""The reporting unit of a new incident: the one named, or the key's own (app/incidents/service.py
calls this before it stores an incident)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Identity
from app.errors import InvalidInput
from app.incidents.schemas import IncidentIn
from app.jurisdictions import eras
from app.units.models import Unit


async def reporting_unit(
    *, session: AsyncSession, data: IncidentIn, principal: Identity
) -> IncidentIn:
    """`data` with its reporting unit: a key of a unit fills in its own when none is named (an
    officer's key always its own, as with the free-text `unit`); the unit must exist and be in
    force (422 otherwise). The free-text `unit`, when not given, becomes the unit's name, so
    the readers of the old field see who reported."""
    wanted = data.reporting_unit_id
    if principal.unit_id is not None and (wanted is None or principal.role == "officer"):
        wanted = principal.unit_id
    if wanted is None:
        return data
    row = (
        await session.execute(select(Unit.name, Unit.valid_to).where(Unit.id == wanted))
    ).one_or_none()
    if row is None or (row.valid_to is not None and row.valid_to <= eras.today()):
        if wanted == principal.unit_id:
            raise InvalidInput(
                f"the unit of this key (id {wanted}) is closed: ask an admin to bind the key to"
                " the unit that took over (PUT /units/{id}/keys/{principal_id})",
                field="reporting_unit_id",
                id=wanted,
            )
        raise InvalidInput(
            f"no unit in force with id {wanted} (GET /units)", field="reporting_unit_id", id=wanted
        )
    update: dict[str, object] = {"reporting_unit_id": wanted}
    if data.unit is None:
        update["unit"] = row.name
    return data.model_copy(update=update)
