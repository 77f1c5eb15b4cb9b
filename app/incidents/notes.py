"""Notes on an incident: what a unit learned, asked or did, in its own words, oldest first.

A note does not change the incident (no new version, no If-Match): any officer who may read the
incident may add one, whichever unit reported it; that is how a neighbouring unit adds what it
knows. Notes are append-only. The id may come from the client, so that a field unit's offline
queue can retry: the same id with the same text is the same note (200), with another text a
409. Every note is in the audit log."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.scope import Scope
from app.auth.service import Identity, record
from app.errors import Conflict
from app.incidents.models import NOTE_MAX, IncidentNote
from app.incidents.service import require_live


class NoteIn(BaseModel):
    """A note's text (1 to 4 000 characters, not only blanks)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=NOTE_MAX, description="the note, as written")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a note needs some text")
        return value


N = IncidentNote
COLUMNS = (N.id, N.incident_id, N.body, N.created_at, N.created_by, N.unit)


def _note(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "incident_id": str(row.incident_id),
        "text": row.body,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
        "unit": row.unit,
    }


async def add(
    *,
    session: AsyncSession,
    incident_id: uuid.UUID,
    note_id: uuid.UUID | None,
    text: str,
    principal: Identity,
) -> tuple[dict[str, Any], bool]:
    """Store a note (True) or find the same one stored before (False)."""
    await require_live(session, incident_id, principal.scope)
    new_id = note_id or uuid.uuid4()
    stored = (
        await session.execute(
            insert(N)
            .values(
                id=new_id,
                incident_id=incident_id,
                body=text,
                created_by=principal.actor,
                unit=principal.unit,
            )
            .on_conflict_do_nothing(index_elements=[N.id])
            .returning(*COLUMNS)
        )
    ).one_or_none()
    if stored is None:
        before = (await session.execute(select(*COLUMNS).where(N.id == new_id))).one()
        await session.rollback()
        if before.incident_id != incident_id or before.body != text:
            raise Conflict(
                f"note {new_id} exists with other content: a new note needs a new id",
                field="id",
            )
        return _note(before), False
    note = _note(stored)
    await record(
        session=session,
        actor=principal.actor,
        action="note_add",
        entity_type="incident",
        entity_id=str(incident_id),
        after={"note_id": note["id"], "text": text},
    )
    await session.commit()
    return note, True


async def list_notes(
    *, session: AsyncSession, incident_id: uuid.UUID, scope: Scope
) -> list[dict[str, Any]]:
    """The notes of an incident in scope (not deleted), oldest first."""
    await require_live(session, incident_id, scope)
    rows = await session.execute(
        select(*COLUMNS).where(N.incident_id == incident_id).order_by(N.created_at, N.id)
    )
    return [_note(r) for r in rows]
