"""Authentication, role checks and the per-principal rate limit, as FastAPI dependencies."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Annotated, Any, NoReturn

from fastapi import Depends, Request
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from app.auth import service
from app.auth.scope import ensure_zone
from app.auth.service import Identity, Manager
from app.db import SessionDep
from app.errors import Forbidden, TooManyRequests, Unauthorized


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


class RateLimiter:
    """A sliding-window limit per key (in-process; one per API process).

    The sliding window counter (this window's count plus the previous one's, weighted by how
    much of it still overlaps) instead of the exact moving window: limits' in-memory moving
    window keeps every request's timestamp and expires them in a worker thread, several times
    the CPU per request at the tile limit (docs/decisions.md)."""

    def __init__(self, spec: str) -> None:
        self.item = parse(spec) if spec else None
        self.limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self.refusals = 0  # read by /metrics (app/observe/metrics.py)

    async def refuse(self, key: str, what: str) -> NoReturn:
        """Raise TooManyRequests for `key`, with the wait until its window frees a request."""
        assert self.item is not None
        self.refusals += 1
        stats = await self.limiter.get_window_stats(self.item, key)
        wait = max(1, int(stats.reset_time - time.time()) + 1)
        raise TooManyRequests(
            f"{what} of {self.item} exceeded; retry in {wait} s", _retry_after=wait
        )

    async def check(self, key: str | int) -> None:
        """Count one request; TooManyRequests with Retry-After when over the limit."""
        if self.item is not None and not await self.limiter.hit(self.item, str(key)):
            await self.refuse(str(key), "rate limit")


MAX_FAILING_ADDRESSES = 10_000


class FailedAuthLimiter:
    """Failed authentications per client address: past the limit, every request from that
    address that presents a key is refused (429) until the window has slid, without looking
    the key up, so nobody can try keys faster than the limit. Addresses with no recent failure
    cost one dict lookup."""

    def __init__(self, spec: str) -> None:
        self.limit = RateLimiter(spec)
        self.failing: dict[str, float] = {}  # address -> when it last failed (monotonic)

    async def check(self, address: str) -> None:
        """TooManyRequests when `address` is over its failure limit."""
        item = self.limit.item
        if item is None or address not in self.failing:
            return
        if time.monotonic() - self.failing[address] > item.get_expiry() * 2:
            del self.failing[address]  # both windows of the counter have passed
            return
        if not await self.limit.limiter.test(item, address):
            await self.limit.refuse(address, "too many failed authentications: the limit")

    async def failed(self, address: str) -> None:
        """Count one failed authentication from `address`."""
        if self.limit.item is None:
            return
        now = time.monotonic()
        if len(self.failing) >= MAX_FAILING_ADDRESSES:  # forget the quiet ones
            horizon = now - self.limit.item.get_expiry() * 2
            self.failing = {a: t for a, t in self.failing.items() if t > horizon}
        self.failing[address] = now
        await self.limit.limiter.hit(self.limit.item, address)


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
    await state.auth_failure_limiter.check(address)
    try:
        identity = await service.authenticate(
            session=session, key=key, cooperation_m=state.settings.cooperation_m
        )
    except Unauthorized:
        await state.auth_failure_limiter.failed(address)
        raise
    # map tiles come dozens at a time (mostly cheap 304s): they have a budget of their own
    tiles = request.url.path.startswith("/tiles/")
    limiter = state.tile_rate_limiter if tiles else state.rate_limiter
    await limiter.check(identity.id)
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
