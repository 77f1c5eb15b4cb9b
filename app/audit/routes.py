"""GET /audit: the audit log (admins; read-only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.audit import service
from app.auth.deps import Admin, ManagerDep
from app.db import SessionDep
from app.openapi import problems

router = APIRouter(tags=["access"])


@router.get(
    "/audit",
    summary="The audit log, newest first (admins only; read-only)",
    responses=problems(403),
)
async def audit(
    session: SessionDep,
    admin: Admin,
    manager: ManagerDep,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: Annotated[str | None, Query(max_length=300)] = None,
    action: Annotated[str | None, Query(max_length=32)] = None,
    entity_type: Annotated[str | None, Query(max_length=32)] = None,
    entity_id: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JSONResponse:
    """Incident changes and every other write (keys, data loads), with before/after. A scoped
    admin reads the entries of incidents in its scope and of the keys it manages."""
    entries, nxt = await service.list_entries(
        session=session, scope=admin.scope, manager=manager, since=since, until=until,
        actor=actor, action=action, entity_type=entity_type, entity_id=entity_id, limit=limit,
        cursor=cursor,
    )  # fmt: skip
    return JSONResponse({"entries": entries, "next_cursor": nxt})
