"""Principals and their keys, authentication, and recording audit events (reading the log:
app/audit/)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from app import replicas
from app.auth import keys
from app.auth.labels import describe_areas, describe_scopes, in_force_on
from app.auth.models import ROLES, AuditEvent, Principal
from app.auth.scope import AreaScope, Scope
from app.cooperation.models import CooperationArea
from app.db import DriverStatement, fetch_row
from app.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from app.jurisdictions import eras


@dataclass(frozen=True)
class Identity:
    """An authenticated principal, as the routes see it."""

    id: int
    name: str
    role: str
    jurisdiction_code: str | None
    unit: str | None
    scope: Scope
    expires_at: datetime | None = None
    unit_id: int | None = None  # the unit the key belongs to (app/units/)

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        return f"principal:{self.id}:{self.name}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _public(p: Principal, areas: Mapping[int, str]) -> dict[str, Any]:
    """The principal as the API shows it (no key material); `areas`: names of areas by id."""
    area = p.cooperation_area_id
    return {
        "id": p.id,
        "name": p.name,
        "role": p.role,
        "jurisdiction": p.jurisdiction_code,
        "cooperation_area": None if area is None else {"id": area, "name": areas.get(area)},
        "unit": p.unit,
        "unit_id": p.unit_id,
        "key_prefix": p.key_prefix,
        "created_at": _iso(p.created_at),
        "created_by": p.created_by,
        "rotated_at": _iso(p.rotated_at),
        "revoked_at": _iso(p.revoked_at),
        "expires_at": _iso(p.expires_at),
        "last_used_at": _iso(p.last_used_at),
    }


# the actor recorded for work that no person or key started (tests, benchmarks, scripts)
SYSTEM_ACTOR = "system"


async def record(
    *,
    session: AsyncSession,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Append one audit event (in the caller's transaction)."""
    session.add(
        AuditEvent(
            actor=actor,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            before=before,
            after=after,
        )
    )
    await session.flush()


# The codes inside a jurisdiction: itself, everything below it in the hierarchy, and the units of
# another era whose area lies inside it (a key of a former province inside today's province).
CODES_WITHIN_SQL = text(
    """
    WITH RECURSIVE down(code, depth) AS (
        SELECT CAST(:outer AS varchar), 0
        UNION
        SELECT j.code, d.depth + 1 FROM jurisdiction j JOIN down d ON j.parent_code = d.code
         WHERE d.depth < 8
    ), o AS (
        SELECT geom FROM jurisdiction WHERE code = :outer
         ORDER BY valid_from DESC NULLS LAST LIMIT 1
    )
    SELECT code FROM down
    UNION
    SELECT j.code FROM jurisdiction j, o
     WHERE j.level <> 'country' AND j.geom && o.geom
       AND ST_Covers(o.geom, ST_PointOnSurface(j.geom))
       AND ST_Area(ST_Intersection(j.geom, o.geom)) >= CAST(:share AS float8) * ST_Area(j.geom)
    """
)
# how much of a unit's area must lie inside another for it to count as inside (digitising
# differences between two eras' boundaries, not real overlaps)
INSIDE_SHARE = 0.999


@dataclass(frozen=True)
class Manager:
    """What a principal may manage: every principal (national), those scoped inside `codes`
    (a jurisdiction's admin), or those of the cooperation area `area_id` (an area's admin).

    A scoped admin never sees, creates, rotates or revokes a national key or one of a wider or
    other area: to it those principals do not exist (404). Keys of a cooperation area belong
    to national admins and to the area's own admins, never to a jurisdiction's (an area may
    reach beyond it)."""

    codes: frozenset[str] | None  # None = national: every principal
    rank: int  # the highest role it may grant
    area_id: int | None = None  # an area's admin: the keys of that area (and codes is empty)

    @property
    def national(self) -> bool:
        """Whether it manages every principal."""
        return self.codes is None

    def may_manage(
        self, *, jurisdiction_code: str | None, role: str, cooperation_area_id: int | None = None
    ) -> bool:
        """Whether a principal of this scope and role lies inside what this manager manages."""
        if self.codes is None:
            inside = True
        elif cooperation_area_id is not None:
            inside = cooperation_area_id == self.area_id
        else:
            inside = jurisdiction_code is not None and jurisdiction_code in self.codes
        return inside and ROLES.index(role) <= self.rank


OPERATOR = Manager(codes=None, rank=len(ROLES) - 1)
"""The operator at the command line (`borderwatch keys …`): national, every role."""


async def manager_of(*, session: AsyncSession, identity: Identity) -> Manager:
    """The principals `identity` may manage (admins only reach the routes that ask)."""
    rank = ROLES.index(identity.role)
    if identity.scope.area is not None:
        return Manager(codes=frozenset(), rank=rank, area_id=identity.scope.area.id)
    if identity.jurisdiction_code is None:
        return Manager(codes=None, rank=rank)
    rows = await session.execute(
        CODES_WITHIN_SQL, {"outer": identity.jurisdiction_code, "share": INSIDE_SHARE}
    )
    return Manager(codes=frozenset(r[0] for r in rows), rank=rank)


async def _jurisdiction_exists(session: AsyncSession, code: str) -> bool:
    found = await session.execute(text("SELECT 1 FROM jurisdiction WHERE code = :c"), {"c": code})
    return found.scalar() is not None


async def _area_names(session: AsyncSession, ids: Iterable[int | None]) -> dict[int, str]:
    """The names of the cooperation areas `ids` (None ignored)."""
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    a = CooperationArea
    rows = await session.execute(select(a.id, a.name).where(a.id.in_(wanted)))
    return {int(r.id): str(r.name) for r in rows}


async def _area_for_key(session: AsyncSession, area_id: int) -> CooperationArea:
    """The area a new key is to be bound to: it exists and is in force today (422 otherwise)."""
    area = await session.get(CooperationArea, area_id)
    if area is None:
        raise InvalidInput(
            f"no cooperation area with id {area_id}", field="cooperation_area", id=area_id
        )
    if not in_force_on(area.valid_from, area.valid_to, eras.today()):
        period = f"{area.valid_from or '…'} to {area.valid_to or '…'}"
        raise InvalidInput(
            f"cooperation area {area_id} is not in force today (valid {period}, end exclusive)",
            field="cooperation_area",
            id=area_id,
        )
    return area


def expiry(lifetime: timedelta | None) -> datetime | None:
    """When a key issued now with this lifetime stops working."""
    return None if lifetime is None else datetime.now(UTC) + lifetime


async def create_principal(
    *,
    session: AsyncSession,
    name: str,
    role: str,
    jurisdiction_code: str | None,
    unit: str | None,
    actor: str,
    manager: Manager = OPERATOR,
    expires_at: datetime | None = None,
    cooperation_area_id: int | None = None,
) -> tuple[dict[str, Any], str]:
    """Create a principal; returns its public record and the key (shown once, never stored).

    Its scope: a jurisdiction, a cooperation area (national admins only; the area in force), or
    neither (national)."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    if not name.strip():
        raise InvalidInput("name must not be empty", field="name")
    areas: dict[int, str] = {}
    if cooperation_area_id is not None:
        if jurisdiction_code:
            raise InvalidInput(
                "a key is bound to a jurisdiction or to a cooperation area, not both",
                field="cooperation_area",
            )
        if not manager.national:
            raise Forbidden(
                "only a national admin creates keys for a cooperation area",
                field="cooperation_area",
            )
        area = await _area_for_key(session, cooperation_area_id)
        areas[area.id] = area.name
    if jurisdiction_code and not await _jurisdiction_exists(session, jurisdiction_code):
        raise InvalidInput(f"no jurisdiction with code '{jurisdiction_code}'", field="jurisdiction")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise InvalidInput("expires_at must be in the future", field="expires_at")
    if not manager.may_manage(jurisdiction_code=jurisdiction_code or None, role=role):
        raise Forbidden(
            "a scoped admin creates keys only inside its own area (name a jurisdiction inside"
            " it); only a national admin creates national keys",
            field="jurisdiction",
        )
    new = keys.generate()
    p = Principal(
        name=name.strip(),
        role=role,
        jurisdiction_code=jurisdiction_code or None,
        cooperation_area_id=cooperation_area_id,
        unit=unit,
        key_prefix=new.prefix,
        key_hash=new.hash,
        created_by=actor,
        expires_at=expires_at,
    )
    session.add(p)
    await session.flush()
    await session.refresh(p)
    public = _public(p, areas)
    await record(
        session=session, actor=actor, action="key_create", entity_type="principal",
        entity_id=str(p.id), after=public,
    )  # fmt: skip
    return public, new.key


async def _get(session: AsyncSession, principal_id: int, manager: Manager) -> Principal:
    p = await session.get(Principal, principal_id, with_for_update=True)
    if p is None or not manager.may_manage(
        jurisdiction_code=p.jurisdiction_code,
        role=p.role,
        cooperation_area_id=p.cooperation_area_id,
    ):
        raise NotFound(f"no principal with id {principal_id}", id=principal_id)
    return p


async def rotate(
    *,
    session: AsyncSession,
    principal_id: int,
    actor: str,
    manager: Manager = OPERATOR,
    expires_at: datetime | None = None,
) -> tuple[dict[str, Any], str]:
    """Replace a principal's key; the old key stops working at once.

    The new key expires at `expires_at`, or lives as long as the old one was given (an old key
    without expiry: a new one without)."""
    p = await _get(session, principal_id, manager)
    if p.revoked_at is not None:
        raise InvalidInput(f"principal {principal_id} is revoked; create a new one")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise InvalidInput("expires_at must be in the future", field="expires_at")
    areas = await _area_names(session, [p.cooperation_area_id])
    before = _public(p, areas)
    now = datetime.now(UTC)
    if expires_at is None and p.expires_at is not None:
        expires_at = now + (p.expires_at - (p.rotated_at or p.created_at))
    new = keys.generate()
    p.key_prefix, p.key_hash = new.prefix, new.hash
    p.rotated_at, p.expires_at = now, expires_at
    await session.flush()
    await session.refresh(p)
    after = _public(p, areas)
    await record(
        session=session, actor=actor, action="key_rotate", entity_type="principal",
        entity_id=str(p.id), before=before, after=after,
    )  # fmt: skip
    return after, new.key


async def revoke(
    *, session: AsyncSession, principal_id: int, actor: str, manager: Manager = OPERATOR
) -> dict[str, Any]:
    """Revoke a principal's key (idempotent)."""
    p = await _get(session, principal_id, manager)
    areas = await _area_names(session, [p.cooperation_area_id])
    before = _public(p, areas)
    if p.revoked_at is None:
        p.revoked_at = func.now()
        await session.flush()
        await session.refresh(p)
        await record(
            session=session, actor=actor, action="key_revoke", entity_type="principal",
            entity_id=str(p.id), before=before, after=_public(p, areas),
        )  # fmt: skip
    return _public(p, areas)


def managed(manager: Manager) -> ColumnElement[bool]:
    """SQL: the principal is one `manager` may manage."""
    granted = Principal.role.in_(ROLES[: manager.rank + 1])
    if manager.codes is None:
        return granted
    if manager.area_id is not None:
        return and_(granted, Principal.cooperation_area_id == manager.area_id)
    return and_(granted, Principal.jurisdiction_code.in_(sorted(manager.codes)))


async def list_principals(
    *, session: AsyncSession, manager: Manager = OPERATOR
) -> list[dict[str, Any]]:
    """The principals `manager` may manage (without key material), oldest first, each with
    `scope`: what its jurisdiction is today (`describe_scopes`), or its cooperation area
    (`describe_areas`); null for national keys."""
    query = select(Principal).where(managed(manager)).order_by(Principal.id)
    principals = list((await session.execute(query)).scalars())
    area_ids = {p.cooperation_area_id for p in principals if p.cooperation_area_id is not None}
    areas = await describe_areas(session=session, ids=area_ids)
    names = {i: str(a["name_local"]) for i, a in areas.items()}
    found = [_public(p, names) for p in principals]
    described = await describe_scopes(
        session=session, codes={str(p["jurisdiction"]) for p in found if p["jurisdiction"]}
    )
    out = []
    for p in found:
        scope = None
        if p["jurisdiction"]:
            scope = described.get(str(p["jurisdiction"]))
        elif p["cooperation_area"]:
            scope = areas.get(int(p["cooperation_area"]["id"]))
        out.append(p | {"scope": scope})
    return out


_P = Principal.__table__.c
_A = CooperationArea.__table__.c
_BY_PREFIX = (
    select(
        _P.id, _P.name, _P.role, _P.jurisdiction_code, _P.unit, _P.key_hash, _P.revoked_at,
        _P.last_used_at, _P.expires_at, _P.cooperation_area_id, _P.unit_id,
        _A.name.label("area_name"), _A.valid_from.label("area_from"),
        _A.valid_to.label("area_to"),
    )
    .select_from(Principal.__table__.outerjoin(CooperationArea.__table__))
    .where(_P.key_prefix == bindparam("prefix"))
)  # fmt: skip


@lru_cache(maxsize=4)
def _by_prefix(dialect: Dialect) -> DriverStatement:
    # this runs before every request: compiled once, run on the driver connection, and before
    # any transaction has begun (a read-only request that stays on the driver needs no BEGIN)
    return DriverStatement(_BY_PREFIX, dialect, {"prefix": ""})


BAD_KEY = "the API key is malformed, unknown or revoked"
EXPIRED_KEY = "the API key has expired; ask an admin to rotate it"
AREA_ENDED = "the cooperation area of this key has ended"


async def _key_row(session: AsyncSession, prefix: str) -> asyncpg.Record | None:
    conn = await session.connection()
    return await fetch_row(conn, _by_prefix(conn.dialect), {"prefix": prefix})


def _valid(p: asyncpg.Record | None, key: str) -> bool:
    """Whether the key row `p` exists, is not revoked and matches the presented key."""
    return p is not None and p["revoked_at"] is None and keys.matches(key, p["key_hash"])


async def _used(session: AsyncSession, principal_id: int) -> None:
    """Write a principal's `last_used_at` (and commit): on the primary even when the request
    reads from a replica, where nothing can be written (app/replicas.py)."""
    mark = update(Principal).where(Principal.id == principal_id).values(last_used_at=func.now())
    if replicas.on_replica(session):
        async with replicas.primary_session(session) as primary:
            await primary.execute(mark)
            await primary.commit()
        return
    await session.execute(mark)
    await session.commit()


async def authenticate(*, session: AsyncSession, key: str, cooperation_m: int) -> Identity:
    """The principal a presented key belongs to; Unauthorized when the key is malformed,
    unknown, revoked or expired."""
    prefix = keys.prefix_of(key)
    if prefix is None:
        raise Unauthorized(BAD_KEY)
    p = await _key_row(session, prefix)
    valid = _valid(p, key)
    if not valid and replicas.on_replica(session):
        # a key made (or rotated) moments ago may not have reached the replica yet: the
        # primary has the last word on a key the replica refuses
        async with replicas.primary_session(session) as primary:
            p = await _key_row(primary, prefix)
        valid = _valid(p, key)
    if p is None or not valid:
        raise Unauthorized(BAD_KEY)
    now = datetime.now(UTC)
    if p["expires_at"] is not None and p["expires_at"] <= now:
        raise Unauthorized(EXPIRED_KEY)
    area = None
    if p["cooperation_area_id"] is not None:
        # an ended area's key stops working rather than keep (or lose) what it saw
        today = eras.today()
        if p["area_to"] is not None and p["area_to"] <= today:
            raise Unauthorized(AREA_ENDED)
        if not in_force_on(p["area_from"], p["area_to"], today):
            raise Unauthorized(
                f"the cooperation area of this key is in force from {p['area_from'].isoformat()}"
            )
        area = AreaScope(id=p["cooperation_area_id"], name=p["area_name"])
    # "last used" is written at most once a minute per principal: most requests cost one query
    if p["last_used_at"] is None or now - p["last_used_at"] > timedelta(minutes=1):
        await _used(session, p["id"])
    return Identity(
        id=p["id"],
        name=p["name"],
        role=p["role"],
        jurisdiction_code=p["jurisdiction_code"],
        unit=p["unit"],
        scope=Scope(code=p["jurisdiction_code"], distance_m=cooperation_m, area=area),
        expires_at=p["expires_at"],
        unit_id=p["unit_id"],
    )
