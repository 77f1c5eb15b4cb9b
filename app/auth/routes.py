"""Principals (admins manage keys), who-am-I, and the reverse proxy's key check."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from app.auth import keys, service
from app.auth.deps import Admin, CurrentPrincipal, ManagerDep, current_principal, presented_key
from app.auth.service import Identity
from app.db import SessionDep
from app.errors import Conflict
from app.openapi import problem_response, problems

router = APIRouter(tags=["access"])


class Lifetime(BaseModel):
    """An optional expiry: `expires_in` (90d, 12h, 2w) or `expires_at`, not both."""

    expires_in: str | None = Field(
        default=None, max_length=16, description="the key's lifetime, e.g. 90d, 12h or 2w"
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="when the key stops working (with a UTC offset)"
    )

    @model_validator(mode="after")
    def _one_of(self) -> Lifetime:
        if self.expires_in is not None and self.expires_at is not None:
            raise ValueError("give expires_in or expires_at, not both")
        if self.expires_in is not None:
            keys.parse_lifetime(self.expires_in)  # a ValueError names what is wrong
        return self

    def expiry(self) -> datetime | None:
        """When the key is to stop working (None: no expiry asked for)."""
        if self.expires_in is not None:
            return service.expiry(keys.parse_lifetime(self.expires_in))
        return self.expires_at


class PrincipalIn(Lifetime):
    """A new principal."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    role: Literal["viewer", "officer", "analyst", "admin"]
    jurisdiction: str | None = Field(
        default=None,
        max_length=32,
        description="scope; omit (with cooperation_area) for national (national admins only)",
    )
    cooperation_area: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="scope instead of a jurisdiction: the id of a cooperation area in force"
        " (its members' incidents and their cooperation zone; national admins only)",
    )
    unit: str | None = Field(default=None, max_length=200, description="an officer's unit")


class RotateIn(Lifetime):
    """Options of a rotation: without a lifetime the new key lives as long as the old one was
    given."""

    model_config = ConfigDict(extra="forbid")


@router.get("/me", summary="The principal behind the presented key")
async def me(principal: CurrentPrincipal) -> JSONResponse:
    """Name, role, scope (a jurisdiction or a cooperation area; neither: national),
    cooperation distance and when the key expires."""
    area = principal.scope.area
    return JSONResponse(
        {
            "id": principal.id,
            "name": principal.name,
            "role": principal.role,
            "jurisdiction": principal.jurisdiction_code,
            "cooperation_area": None if area is None else {"id": area.id, "name": area.name},
            "unit": principal.unit,
            "cooperation_km": principal.scope.distance_m / 1000,
            "key_expires_at": (principal.expires_at.isoformat() if principal.expires_at else None),
        }
    )


VIEW_HEADER = "X-Borderwatch-View"
# the view of a request without a key where reference data are public (their tiles only: every
# other layer answers such a request 401, which the proxy never stores)
PUBLIC_VIEW = "public"


def view_tag(principal: Identity) -> str:
    """What of `principal` decides the content of a tile (SHA-256, hex): the same string that
    app.tiles.versions.incident_view makes for an incident tile without `cooperation=` (the
    scope's view and whether the key is a viewer's), whose first 6 hex digits end the layer
    version `v` of that tile's URL. Two principals with the same tag get the same bytes for the
    same URL, so a shared cache may key tiles by (tag, URL). Written here rather than imported:
    auth does not import incidents (tests/test_proxy_cache.py checks that the two agree)."""
    view = f"{principal.scope.view}|{int(principal.role == 'viewer')}|"
    return hashlib.sha256(view.encode()).hexdigest()


@router.get(
    "/auth/check",
    status_code=204,
    summary="Check the presented key for a reverse proxy (its view tag, no body)",
    response_class=Response,
    responses={
        204: {
            "description": "the key is valid; X-Borderwatch-View names what it may see",
            "headers": {
                VIEW_HEADER: {
                    "description": "a tag of the key's view (scope, viewer or not): keys"
                    " with the same tag get the same tiles; `public` without a key where"
                    " reference data are public",
                    "schema": {"type": "string"},
                }
            },
        },
    },
)
async def check(request: Request, session: SessionDep) -> Response:
    """For nginx's `auth_request` in front of the tile cache (docs/tiles.md, "Behind a reverse
    proxy"): 204 with X-Borderwatch-View when the key is valid, the same 401 and 429 as any
    request otherwise (failed attempts count against the client's address as usual). The
    proxy puts the tag into its cache key, so a cached tile is only ever served to keys that
    would get the same bytes from the app, and never without a valid key."""
    if request.app.state.settings.public_reference_data and presented_key(request) is None:
        tag = PUBLIC_VIEW
    else:
        tag = view_tag(await current_principal(request, session))
    return Response(status_code=204, headers={VIEW_HEADER: tag, "Cache-Control": "no-store"})


@router.post(
    "/principals",
    status_code=201,
    summary="Create a principal (the key is shown once)",
    responses={400: problem_response(400, "the body is not JSON"), **problems(403)},
)
async def create_principal(
    body: PrincipalIn, session: SessionDep, admin: Admin, manager: ManagerDep
) -> JSONResponse:
    """Admins only; a scoped admin creates keys only inside its own area, and only a national
    admin creates keys of a cooperation area. The response holds the only copy of the key."""
    record, key = await service.create_principal(
        session=session, name=body.name, role=body.role, jurisdiction_code=body.jurisdiction,
        unit=body.unit, actor=admin.actor, manager=manager,
        expires_at=body.expiry(), cooperation_area_id=body.cooperation_area,
    )  # fmt: skip
    await session.commit()
    return JSONResponse({"principal": record, "key": key}, status_code=201)


@router.get(
    "/principals",
    summary="The principals this admin manages (no key material)",
    responses=problems(403),
)
async def list_principals(session: SessionDep, manager: ManagerDep) -> JSONResponse:
    """Admins only; a scoped admin sees only the principals inside its own area."""
    return JSONResponse(
        {"principals": await service.list_principals(session=session, manager=manager)}
    )


@router.post(
    "/principals/{principal_id}/rotate",
    summary="Replace a principal's key",
    responses={400: problem_response(400, "the body is not JSON"), **problems(403, 404)},
)
async def rotate_key(
    principal_id: Annotated[int, Path(ge=1, le=2_147_483_647)],
    session: SessionDep,
    admin: Admin,
    manager: ManagerDep,
    body: RotateIn | None = None,
) -> JSONResponse:
    """The old key stops working at once; the new one is shown once."""
    record, key = await service.rotate(
        session=session, principal_id=principal_id, actor=admin.actor, manager=manager,
        expires_at=body.expiry() if body else None,
    )  # fmt: skip
    await session.commit()
    return JSONResponse({"principal": record, "key": key})


@router.post(
    "/principals/{principal_id}/revoke",
    summary="Revoke a principal's key",
    responses={
        **problems(403, 404),
        409: problem_response(409, "the key is the one this request presents"),
    },
)
async def revoke_key(
    principal_id: Annotated[int, Path(ge=1, le=2_147_483_647)],
    session: SessionDep,
    admin: Admin,
    manager: ManagerDep,
) -> JSONResponse:
    """Idempotent. An admin cannot revoke the key it is using (ask another admin, or use the
    CLI): nobody locks the last admin out by accident."""
    if principal_id == admin.id:
        raise Conflict("you cannot revoke the key you are using; another admin or the CLI can")
    record = await service.revoke(
        session=session, principal_id=principal_id, actor=admin.actor, manager=manager
    )
    await session.commit()
    return JSONResponse({"principal": record})
