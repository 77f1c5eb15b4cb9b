"""/cooperation-areas: list, read, create, change, end, and the summary of an area's incidents."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from app.auth.deps import Admin, ReferenceReader, Viewer
from app.cooperation import service
from app.db import SessionDep
from app.incidents.filters import FilterDep
from app.incidents.service import etag, parse_if_match, required_version
from app.openapi import problems

router = APIRouter(tags=["cooperation areas"])

AreaId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the area's id")]


def _with_etag(body: dict[str, Any], status: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(
        body, status_code=status, headers={"ETag": etag(body["version"]), **headers}
    )


class EndIn(BaseModel):
    """When the area ends (exclusive; default today, Vietnam's calendar)."""

    model_config = ConfigDict(extra="forbid")

    on: date | None = None


@router.get("/cooperation-areas", summary="Cooperation areas (all, or those in force on a day)")
async def list_areas(
    session: SessionDep,
    _: ReferenceReader,
    on: Annotated[date | None, Query(description="only the areas in force on this day")] = None,
) -> JSONResponse:
    """Each area with its lead unit, purpose, validity, member count, and whether it is a demo
    example; use an id with `cooperation=` on any incident list, export, tile or analysis."""
    return JSONResponse({"areas": await service.list_areas(session, on=on)})


@router.get(
    "/cooperation-areas/{area_id:int}",
    summary="One cooperation area with its members",
    responses=problems(404),
)
async def get_area(area_id: AreaId, session: SessionDep, _: ReferenceReader) -> JSONResponse:
    """Members: jurisdictions of either era (named), border strips, drawn polygons (GeoJSON,
    `approximate` when drawn roughly). The ETag is the version, for If-Match."""
    return _with_etag(await service.get(session, area_id))


@router.post(
    "/cooperation-areas",
    status_code=201,
    summary="Create a cooperation area (national admins)",
    responses=problems(403),
)
async def create_area(body: service.AreaIn, session: SessionDep, admin: Admin) -> JSONResponse:
    """Every jurisdiction and border segment named must exist; polygons must be valid.
    Audited."""
    service.require_national(admin)
    created = await service.create(session, body=body, actor=admin.actor)
    await session.commit()
    return _with_etag(created, 201, Location=f"/cooperation-areas/{created['id']}")


@router.patch(
    "/cooperation-areas/{area_id:int}",
    summary="Change a cooperation area (If-Match required; members replace all members)",
    responses=problems(403, 404, 412, 428),
)
async def patch_area(
    area_id: AreaId,
    body: service.AreaPatch,
    session: SessionDep,
    admin: Admin,
    if_match: Annotated[str | None, Header(max_length=100)] = None,
) -> JSONResponse:
    """412 when the version is stale, 428 without If-Match. Audited with before and after."""
    service.require_national(admin)
    expected = required_version(if_match, "/cooperation-areas/{id}")
    changed = await service.update(
        session, area_id=area_id, patch=body, expected_version=expected,
        actor=admin.actor,
    )  # fmt: skip
    await session.commit()
    return _with_etag(changed)


@router.post(
    "/cooperation-areas/{area_id:int}/end",
    summary="End a cooperation area (it is kept, with its valid_to)",
    responses=problems(403, 404, 409, 412),
)
async def end_area(
    area_id: AreaId,
    session: SessionDep,
    admin: Admin,
    body: EndIn | None = None,
    if_match: Annotated[str | None, Header(max_length=100)] = None,
) -> JSONResponse:
    """409 when it has already ended by then. Audited."""
    service.require_national(admin)
    ended = await service.end(
        session, area_id=area_id, on=body.on if body else None,
        expected_version=parse_if_match(if_match) if if_match else None, actor=admin.actor,
    )  # fmt: skip
    await session.commit()
    return _with_etag(ended)


@router.get(
    "/cooperation-areas/{area_id:int}/summary",
    summary="The area's incidents: count, clearance rate, share of national, by member, by month",
    responses=problems(404),
)
async def area_summary(
    area_id: AreaId,
    session: SessionDep,
    _: Viewer,
    filt: FilterDep,
) -> JSONResponse:
    """Within the reader's scope and the usual filters (`datetime`, `category`, …); months are
    Vietnam's (the deployment's time zone). The national total and the share of it only for
    national keys. (A `cooperation=` given as well is replaced by this area.)"""
    return JSONResponse(await service.summary(session, area_id=area_id, filt=filt))
