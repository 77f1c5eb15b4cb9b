"""Principals (admins manage keys), who-am-I, and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app.auth import service
from app.auth.deps import Admin, CurrentPrincipal
from app.db import SessionDep

router = APIRouter(tags=["access"])


class PrincipalIn(BaseModel):
    """A new principal."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    role: Literal["viewer", "officer", "analyst", "admin"]
    jurisdiction: str | None = Field(
        default=None, max_length=32, description="scope; omit for national"
    )
    unit: str | None = Field(default=None, max_length=200, description="an officer's unit")


@router.get("/me", summary="The principal behind the presented key")
async def me(principal: CurrentPrincipal) -> JSONResponse:
    """Name, role, scope and cooperation distance."""
    return JSONResponse(
        {
            "id": principal.id,
            "name": principal.name,
            "role": principal.role,
            "jurisdiction": principal.jurisdiction_code,
            "unit": principal.unit,
            "cooperation_km": principal.scope.distance_m / 1000,
        }
    )


@router.post("/principals", status_code=201, summary="Create a principal (the key is shown once)")
async def create_principal(body: PrincipalIn, session: SessionDep, admin: Admin) -> JSONResponse:
    """Admins only; the response holds the only copy of the key."""
    record, key = await service.create_principal(
        session=session, name=body.name, role=body.role, jurisdiction_code=body.jurisdiction,
        unit=body.unit, actor=admin.actor,
    )  # fmt: skip
    await session.commit()
    return JSONResponse({"principal": record, "key": key}, status_code=201)


@router.get("/principals", summary="Every principal (no key material)")
async def list_principals(session: SessionDep, _: Admin) -> JSONResponse:
    """Admins only."""
    return JSONResponse({"principals": await service.list_principals(session=session)})


@router.post("/principals/{principal_id}/rotate", summary="Replace a principal's key")
async def rotate_key(principal_id: int, session: SessionDep, admin: Admin) -> JSONResponse:
    """The old key stops working at once; the new one is shown once."""
    record, key = await service.rotate(
        session=session, principal_id=principal_id, actor=admin.actor
    )
    await session.commit()
    return JSONResponse({"principal": record, "key": key})


@router.post("/principals/{principal_id}/revoke", summary="Revoke a principal's key")
async def revoke_key(principal_id: int, session: SessionDep, admin: Admin) -> JSONResponse:
    """Idempotent."""
    record = await service.revoke(session=session, principal_id=principal_id, actor=admin.actor)
    await session.commit()
    return JSONResponse({"principal": record})


@router.get("/audit", summary="The audit log, newest first (admins only; read-only)")
async def audit(
    session: SessionDep,
    _: Admin,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: Annotated[str | None, Query(max_length=300)] = None,
    action: Annotated[str | None, Query(max_length=32)] = None,
    entity_type: Annotated[str | None, Query(max_length=32)] = None,
    entity_id: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JSONResponse:
    """Incident changes and every other write (keys, data loads), with before/after."""
    entries, nxt = await service.audit_entries(
        session=session, since=since, until=until, actor=actor, action=action,
        entity_type=entity_type, entity_id=entity_id, limit=limit, cursor=cursor,
    )  # fmt: skip
    return JSONResponse({"entries": entries, "next_cursor": nxt})
