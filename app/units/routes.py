"""/units: the units of the four-level hotline network, their contacts, their keys, and the
chain of units to call for a point (docs/units.md)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from app.auth.deps import Admin, CurrentPrincipal, ManagerDep, ReferenceReader
from app.db import SessionDep
from app.geo.params import Lat, Lon
from app.incidents.service import etag, required_version
from app.openapi import problem_response, problems
from app.units import service

router = APIRouter(tags=["units"])

UnitId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the unit's id")]
PrincipalId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the key's principal id")]
ContactId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the contact's id")]
NO_STORE = {"Cache-Control": "no-store"}  # contacts are never kept by a shared cache
NOT_JSON: dict[int | str, dict[str, Any]] = {400: problem_response(400, "the body is not JSON")}


def _with_etag(body: dict[str, Any], status: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(
        body, status_code=status, headers={"ETag": etag(body["version"]), **headers}
    )


class CloseIn(BaseModel):
    """When the unit closes (exclusive; default today, Vietnam's calendar)."""

    model_config = ConfigDict(extra="forbid")

    on: date | None = None


@router.get("/units", summary="Units of the hotline network (reference data, no contacts)")
async def list_units(
    session: SessionDep,
    _: ReferenceReader,
    level: Annotated[service.Level | None, Query()] = None,
    agency: Annotated[service.Agency | None, Query()] = None,
    jurisdiction: Annotated[str | None, Query(max_length=32)] = None,
    post: Annotated[str | None, Query(max_length=64, description="a border post's code")] = None,
    country: Annotated[str | None, Query(pattern="^[A-Z]{3}$")] = None,
    include_closed: bool = False,
) -> JSONResponse:
    """Central units first, then provinces, communes, posts; in force today unless
    `include_closed`. Never their contact channels (GET /units/{id}/contacts)."""
    units = await service.list_units(
        session, level=level, agency=agency, jurisdiction=jurisdiction, post=post,
        country=country, include_closed=include_closed,
    )  # fmt: skip
    return JSONResponse({"units": units})


@router.get("/units/{unit_id:int}", summary="One unit (no contacts)", responses=problems(404))
async def get_unit(unit_id: UnitId, session: SessionDep, _: ReferenceReader) -> JSONResponse:
    """The ETag is the version, for If-Match."""
    return _with_etag(await service.get(session, unit_id))


@router.post(
    "/units",
    status_code=201,
    summary="Create a unit (admins; a scoped admin inside its area)",
    responses=NOT_JSON | problems(403, 409),
)
async def create_unit(
    body: service.UnitIn, session: SessionDep, admin: Admin, manager: ManagerDep
) -> JSONResponse:
    """422 for an unknown jurisdiction, post or parent; 409 for a code in use; 403 outside the
    admin's area (nothing written). Audited."""
    created = await service.create(session, body=body, admin=admin, manager=manager)
    await session.commit()
    return _with_etag(created, 201, Location=f"/units/{created['id']}")


@router.patch(
    "/units/{unit_id:int}",
    summary="Change a unit (If-Match required)",
    responses=NOT_JSON | problems(403, 404, 412, 428),
)
async def patch_unit(
    unit_id: UnitId,
    body: service.UnitPatch,
    session: SessionDep,
    admin: Admin,
    manager: ManagerDep,
    if_match: Annotated[str | None, Header(max_length=100)] = None,
) -> JSONResponse:
    """412 when the version is stale, 428 without If-Match. Audited with before and after."""
    expected = required_version(if_match, "/units/{id}")
    changed = await service.update(
        session, unit_id=unit_id, patch=body, expected_version=expected, admin=admin,
        manager=manager,
    )  # fmt: skip
    await session.commit()
    return _with_etag(changed)


@router.post(
    "/units/{unit_id:int}/close",
    summary="Close a unit (it is kept, with its valid_to)",
    responses=NOT_JSON | problems(403, 404, 409),
)
async def close_unit(
    unit_id: UnitId,
    session: SessionDep,
    admin: Admin,
    manager: ManagerDep,
    body: CloseIn | None = None,
) -> JSONResponse:
    """409 when it is closed by then already. Audited."""
    closed = await service.close(
        session, unit_id=unit_id, on=body.on if body else None, admin=admin, manager=manager
    )
    await session.commit()
    return _with_etag(closed)


@router.get(
    "/units/{unit_id:int}/contacts",
    summary="A unit's contact channels (keys of a unit, and admins)",
    responses=problems(403, 404),
)
async def unit_contacts(
    unit_id: UnitId, session: SessionDep, principal: CurrentPrincipal
) -> JSONResponse:
    """Hotline, phone, radio, email; never part of public reference data."""
    service.may_read_contacts(principal)
    return JSONResponse(await service.list_contacts(session, unit_id), headers=NO_STORE)


@router.post(
    "/units/{unit_id:int}/contacts",
    status_code=201,
    summary="Add a contact channel to a unit (its admins)",
    responses=NOT_JSON | problems(403, 404),
)
async def add_contact(
    unit_id: UnitId,
    body: service.ContactIn,
    session: SessionDep,
    admin: Admin,
    manager: ManagerDep,
) -> JSONResponse:
    """Audited."""
    contact = await service.add_contact(
        session, unit_id=unit_id, body=body, admin=admin, manager=manager
    )
    await session.commit()
    return JSONResponse(contact, status_code=201, headers=NO_STORE)


@router.delete(
    "/units/{unit_id:int}/contacts/{contact_id:int}",
    status_code=204,
    summary="Remove a contact channel (its admins)",
    response_class=Response,
    responses=problems(403, 404),
)
async def remove_contact(
    unit_id: UnitId,
    contact_id: ContactId,
    session: SessionDep,
    admin: Admin,
    manager: ManagerDep,
) -> Response:
    """Audited."""
    await service.remove_contact(
        session, unit_id=unit_id, contact_id=contact_id, admin=admin, manager=manager
    )
    await session.commit()
    return Response(status_code=204)


@router.put(
    "/units/{unit_id:int}/keys/{principal_id:int}",
    summary="Make a key belong to this unit (admins of both)",
    responses=problems(403, 404),
)
async def bind_key(
    unit_id: UnitId,
    principal_id: PrincipalId,
    session: SessionDep,
    admin: Admin,
    manager: ManagerDep,
) -> JSONResponse:
    """Its incidents then record this unit as their reporting unit. Audited."""
    out = await service.bind_key(
        session, unit_id=unit_id, principal_id=principal_id, admin=admin, manager=manager
    )
    await session.commit()
    return JSONResponse(out)


@router.get(
    "/units/{unit_id:int}/contacts-for",
    summary="The units to call for a point, at each level of the hotline network",
    responses=problems(403, 404),
)
async def contacts_for(
    unit_id: UnitId,
    session: SessionDep,
    principal: CurrentPrincipal,
    lat: Lat,
    lon: Lon,
    agency: Annotated[service.Agency | None, Query()] = None,
) -> JSONResponse:
    """`unit_id` is the asking unit (a key's own; admins any): the chain starts at its level and
    leaves it out. For the point: the commune police, the nearest post's units, the provincial
    units, the central units, and the counterpart across the border, each with its contacts."""
    body = await service.contacts_for(
        session, asker_id=unit_id, identity=principal, lon=lon, lat=lat, agency=agency
    )
    return JSONResponse(body, headers=NO_STORE)
