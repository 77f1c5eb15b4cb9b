"""Authentication, role checks and the per-principal rate limit, as FastAPI dependencies."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import ratelimit, service
from app.auth.ratelimit import Check, parse_limit
from app.auth.scope import ensure_zone
from app.auth.service import Identity, Manager
from app.db import SessionDep
from app.errors import Forbidden, Unauthorized


def presented_key(request: Request) -> str | None:
    """The API key from `Authorization: Bearer …`, `Authorization: Basic …` (the key as the
    password, any user name: what QGIS 3.22, GDAL and ArcGIS can send without a plug-in) or
    `X-API-Key`. Never from the URL."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and value:
            return value
        if scheme == "basic" and value:
            return _basic_password(value)
        raise Unauthorized(
            "use 'Authorization: Bearer <key>', Basic authentication with the key as the"
            " password, or the X-API-Key header"
        )
    key = request.headers.get("x-api-key")
    return key.strip() if key else None


def _basic_password(token: str) -> str:
    """The password of Basic credentials (RFC 7617: base64 of `user:password`, UTF-8); the user
    name alone when the password is empty (some tools put the key there)."""
    try:
        user, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthorized("Basic credentials are not base64 of 'user:key'") from exc
    key = (password or user).strip() if sep else ""
    if not key:
        raise Unauthorized("Basic credentials carry no key: put the API key in the password")
    return key


# The names of the limits in PostgreSQL (with their spec: a changed limit starts counting
# afresh). A request's checks are sent in ascending name order: the failed-authentication limit
# first (app/auth/ratelimit.py sorts a batch by name, and stops a request at its first refusal).
FAILED_AUTH, REQUESTS, TILES = "failed_auth", "requests", "tiles"


class RateLimiter:
    """A sliding-window limit per key, counted in PostgreSQL for every API process at once
    (app/auth/ratelimit.py): this window's count plus the previous one's, weighted by how much
    of it still overlaps the last period (docs/decisions.md)."""

    def __init__(self, spec: str) -> None:
        self.item = parse_limit(spec)
        self.refusals = 0  # read by /metrics (app/observe/metrics.py): this process's 429s
        self.unchecked = 0  # requests let through uncounted: PostgreSQL unreachable (/metrics)

    def check_of(self, scope: str, key: str | int, *, take: bool = True) -> Check | None:
        """The check of `key` under this limit (None when the limit is off)."""
        if self.item is None:
            return None
        return Check(f"{scope} {self.item}", str(key), self.item, take)


class FailedAuthLimiter:
    """Failed authentications per client address, counted for every process in PostgreSQL:
    past the limit, every request from that address that presents a key is refused (429)
    whether its key is good or not, so nobody can try keys faster than the limit. The limit is
    looked at in the same round trip as the principal's own limit (a request that authenticates
    costs no extra call); a failure is counted when it happens."""

    def __init__(self, spec: str) -> None:
        self.limit = RateLimiter(spec)

    def looked_at(self, address: str) -> Check | None:
        """The check that refuses an address over its limit, without counting anything."""
        return self.limit.check_of(FAILED_AUTH, address, take=False)

    async def failed(self, engine: AsyncEngine, address: str) -> None:
        """Count one failed authentication from `address`; TooManyRequests when it is over
        the limit (that request is answered 429 instead of 401)."""
        check = self.limit.check_of(FAILED_AUTH, address)
        if check is not None:
            await admit(engine, [(check, self.limit)])


FAILED_AUTH_TEXT = "too many failed authentications: the limit"


async def admit(engine: AsyncEngine, checks: list[tuple[Check, RateLimiter]]) -> None:
    """Count one request's `checks` in PostgreSQL; TooManyRequests (with Retry-After) from the
    first one refused. PostgreSQL unreachable for counting: the request passes (fail open),
    counted as unchecked by each limiter."""
    if not checks:
        return
    try:
        refusal = await ratelimit.take(engine, [c for c, _ in checks])
    except ratelimit.CountingUnavailable:
        for _, limiter in checks:
            limiter.unchecked += 1
        return
    if refusal is None:
        return
    limiter = next(lim for c, lim in checks if c is refusal.check)
    limiter.refusals += 1
    failed_auth = refusal.check.name.startswith(FAILED_AUTH + " ")
    raise ratelimit.refusal_error(refusal, FAILED_AUTH_TEXT if failed_auth else "rate limit")


def client_address(request: Request) -> str:
    """The client's address (behind a proxy: as the server's proxy-header settings give it)."""
    return request.client.host if request.client else "unknown"


async def current_principal(request: Request, session: SessionDep) -> Identity:
    """The authenticated principal (401 problem+json otherwise), rate-limited."""
    key = presented_key(request)
    if key is None:
        raise Unauthorized("an API key is required (Authorization: Bearer <key>)")
    state = request.app.state
    address = client_address(request)
    engine = state.engine  # the primary: counts are never taken on a replica
    try:
        identity = await service.authenticate(
            session=session, key=key, cooperation_m=state.settings.cooperation_m
        )
    except Unauthorized:
        await state.auth_failure_limiter.failed(engine, address)  # 429 past the limit
        raise
    # map tiles come dozens at a time (mostly cheap 304s): they have a budget of their own
    tiles = request.url.path.startswith("/tiles/")
    limiter: RateLimiter = state.tile_rate_limiter if tiles else state.rate_limiter
    failures: FailedAuthLimiter = state.auth_failure_limiter
    checks = [
        (check, lim)
        for check, lim in (
            (failures.looked_at(address), failures.limit),
            (limiter.check_of(TILES if tiles else REQUESTS, identity.id), limiter),
        )
        if check is not None
    ]
    await admit(engine, checks)
    if not identity.scope.national:
        scope = await ensure_zone(session=session, scope=identity.scope)
        await session.commit()
        identity = replace(identity, scope=scope)
    request.state.principal = identity
    return identity


CurrentPrincipal = Annotated[Identity, Depends(current_principal)]


def require(*roles: str) -> Callable[..., Coroutine[Any, Any, Identity]]:
    """A dependency that admits only these roles (403 problem+json for the others)."""

    async def check(principal: CurrentPrincipal) -> Identity:
        if principal.role not in roles:
            raise Forbidden(
                f"role '{principal.role}' may not do this; allowed: {', '.join(roles)}",
                allowed_roles=list(roles),
            )
        return principal

    return check


Viewer = Annotated[Identity, Depends(require("viewer", "officer", "analyst", "admin"))]
Reader = Annotated[Identity, Depends(require("officer", "analyst", "admin"))]
Officer = Annotated[Identity, Depends(require("officer", "admin"))]
Analyst = Annotated[Identity, Depends(require("analyst", "admin"))]
Admin = Annotated[Identity, Depends(require("admin"))]


async def reference_reader(request: Request, session: SessionDep) -> Identity | None:
    """Reference data (boundaries, posts, categories): any principal, or public by setting."""
    if request.app.state.settings.public_reference_data and presented_key(request) is None:
        return None
    return await current_principal(request, session)


ReferenceReader = Annotated[Identity | None, Depends(reference_reader)]


async def admin_manager(admin: Admin, session: SessionDep) -> Manager:
    """The principals the calling admin may manage (a scoped admin: those inside its area)."""
    return await service.manager_of(session=session, identity=admin)


ManagerDep = Annotated[Manager, Depends(admin_manager)]
