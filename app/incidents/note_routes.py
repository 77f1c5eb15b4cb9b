"""GET/POST /incidents/{id}/notes, PUT /incidents/{id}/notes/{note_id}: thin."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.auth.deps import Officer, Reader
from app.db import SessionDep
from app.incidents import notes
from app.incidents.notes import NoteIn
from app.openapi import problems

router = APIRouter(tags=["incidents"])


def _stored(request: Request, note: dict[str, object], created: bool) -> JSONResponse:
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        note,
        status_code=201 if created else 200,
        headers={"Location": f"{base}/incidents/{note['incident_id']}/notes/{note['id']}"},
    )


@router.get(
    "/incidents/{incident_id:uuid}/notes",
    summary="The notes of an incident, oldest first",
    responses=problems(404),
)
async def list_notes(
    incident_id: uuid.UUID, session: SessionDep, principal: Reader
) -> JSONResponse:
    """Notes of an incident the key may read (404 for one it may not, or deleted)."""
    found = await notes.list_notes(session=session, incident_id=incident_id, scope=principal.scope)
    return JSONResponse({"incident_id": str(incident_id), "notes": found})


@router.post(
    "/incidents/{incident_id:uuid}/notes",
    status_code=201,
    summary="Add a note to an incident (officers and above, any unit)",
    responses=problems(403, 404),
)
async def add_note(
    request: Request, incident_id: uuid.UUID, body: NoteIn, session: SessionDep, principal: Officer
) -> JSONResponse:
    """201 with the note; its id is the server's."""
    note, created = await notes.add(
        session=session, incident_id=incident_id, note_id=None, text=body.text, principal=principal
    )
    return _stored(request, note, created)


@router.put(
    "/incidents/{incident_id:uuid}/notes/{note_id:uuid}",
    status_code=201,
    summary="Add a note with the client's id (a retry of the same note answers 200)",
    responses={200: {"description": "the same note, stored before"}, **problems(403, 404, 409)},
)
async def put_note(
    request: Request,
    incident_id: uuid.UUID,
    note_id: uuid.UUID,
    body: NoteIn,
    session: SessionDep,
    principal: Officer,
) -> JSONResponse:
    """201 the first time; 200 for the same id and text again; 409 for the id with other text."""
    note, created = await notes.add(
        session=session,
        incident_id=incident_id,
        note_id=note_id,
        text=body.text,
        principal=principal,
    )
    return _stored(request, note, created)
