"""Principals and their keys, authentication, and the audit log."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import keys
from app.auth.models import ROLES, AuditEvent, Principal
from app.auth.scope import Scope
from app.db import DriverStatement, fetch_row
from app.errors import InvalidInput, NotFound


@dataclass(frozen=True)
class Identity:
    """An authenticated principal, as the routes see it."""

    id: int
    name: str
    role: str
    jurisdiction_code: str | None
    unit: str | None
    scope: Scope

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        return f"principal:{self.id}:{self.name}"


def _public(p: Principal) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "role": p.role,
        "jurisdiction": p.jurisdiction_code,
        "unit": p.unit,
        "key_prefix": p.key_prefix,
        "created_at": p.created_at.isoformat() if p.created_at else None,
        "created_by": p.created_by,
        "rotated_at": p.rotated_at.isoformat() if p.rotated_at else None,
        "revoked_at": p.revoked_at.isoformat() if p.revoked_at else None,
        "last_used_at": p.last_used_at.isoformat() if p.last_used_at else None,
    }


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


async def _jurisdiction_exists(session: AsyncSession, code: str) -> bool:
    found = await session.execute(text("SELECT 1 FROM jurisdiction WHERE code = :c"), {"c": code})
    return found.scalar() is not None


async def create_principal(
    *,
    session: AsyncSession,
    name: str,
    role: str,
    jurisdiction_code: str | None,
    unit: str | None,
    actor: str,
) -> tuple[dict[str, Any], str]:
    """Create a principal; returns its public record and the key (shown once, never stored)."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    if not name.strip():
        raise InvalidInput("name must not be empty", field="name")
    if jurisdiction_code and not await _jurisdiction_exists(session, jurisdiction_code):
        raise InvalidInput(f"no jurisdiction with code '{jurisdiction_code}'", field="jurisdiction")
    new = keys.generate()
    p = Principal(
        name=name.strip(),
        role=role,
        jurisdiction_code=jurisdiction_code or None,
        unit=unit,
        key_prefix=new.prefix,
        key_hash=new.hash,
        created_by=actor,
    )
    session.add(p)
    await session.flush()
    await session.refresh(p)
    public = _public(p)
    await record(
        session=session, actor=actor, action="key_create", entity_type="principal",
        entity_id=str(p.id), after=public,
    )  # fmt: skip
    return public, new.key


async def _get(session: AsyncSession, principal_id: int) -> Principal:
    p = await session.get(Principal, principal_id, with_for_update=True)
    if p is None:
        raise NotFound(f"no principal with id {principal_id}", id=principal_id)
    return p


async def rotate(
    *, session: AsyncSession, principal_id: int, actor: str
) -> tuple[dict[str, Any], str]:
    """Replace a principal's key; the old key stops working at once."""
    p = await _get(session, principal_id)
    if p.revoked_at is not None:
        raise InvalidInput(f"principal {principal_id} is revoked; create a new one")
    before = _public(p)
    new = keys.generate()
    p.key_prefix, p.key_hash = new.prefix, new.hash
    p.rotated_at = func.now()
    await session.flush()
    await session.refresh(p)
    after = _public(p)
    await record(
        session=session, actor=actor, action="key_rotate", entity_type="principal",
        entity_id=str(p.id), before=before, after=after,
    )  # fmt: skip
    return after, new.key


async def revoke(*, session: AsyncSession, principal_id: int, actor: str) -> dict[str, Any]:
    """Revoke a principal's key (idempotent)."""
    p = await _get(session, principal_id)
    before = _public(p)
    if p.revoked_at is None:
        p.revoked_at = func.now()
        await session.flush()
        await session.refresh(p)
        await record(
            session=session, actor=actor, action="key_revoke", entity_type="principal",
            entity_id=str(p.id), before=before, after=_public(p),
        )  # fmt: skip
    return _public(p)


async def list_principals(*, session: AsyncSession) -> list[dict[str, Any]]:
    """Every principal (without key material), oldest first."""
    rows = (await session.execute(select(Principal).order_by(Principal.id))).scalars()
    return [_public(p) for p in rows]


_P = Principal.__table__.c
_BY_PREFIX = select(
    _P.id, _P.name, _P.role, _P.jurisdiction_code, _P.unit, _P.key_hash, _P.revoked_at,
    _P.last_used_at,
).where(_P.key_prefix == bindparam("prefix"))  # fmt: skip


@lru_cache(maxsize=4)
def _by_prefix(dialect: Dialect) -> DriverStatement:
    # this runs before every request: compiled once, run on the driver connection, and before
    # any transaction has begun (a read-only request that stays on the driver needs no BEGIN)
    return DriverStatement(_BY_PREFIX, dialect, {"prefix": ""})


async def authenticate(*, session: AsyncSession, key: str, cooperation_m: int) -> Identity | None:
    """The principal a presented key belongs to, or None (unknown, malformed or revoked)."""
    prefix = keys.prefix_of(key)
    if prefix is None:
        return None
    conn = await session.connection()
    p = await fetch_row(conn, _by_prefix(conn.dialect), {"prefix": prefix})
    if p is None or p["revoked_at"] is not None or not keys.matches(key, p["key_hash"]):
        return None
    # "last used" is written at most once a minute per principal: most requests cost one query
    now = datetime.now(UTC)
    if p["last_used_at"] is None or now - p["last_used_at"] > timedelta(minutes=1):
        await session.execute(
            update(Principal).where(Principal.id == p["id"]).values(last_used_at=func.now())
        )
        await session.commit()
    return Identity(
        id=p["id"],
        name=p["name"],
        role=p["role"],
        jurisdiction_code=p["jurisdiction_code"],
        unit=p["unit"],
        scope=Scope(code=p["jurisdiction_code"], distance_m=cooperation_m),
    )


def _cursor(token: str) -> tuple[datetime, str]:
    try:
        at, ident = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return datetime.fromisoformat(at), str(ident)
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise InvalidInput("cursor is not one this service issued", field="cursor") from exc


AUDIT_SQL = """
SELECT id, at, actor, action, entity_type, entity_id, before, after
  FROM audit_log
 WHERE (CAST(:since AS timestamptz) IS NULL OR at >= :since)
   AND (CAST(:until AS timestamptz) IS NULL OR at <= :until)
   AND (CAST(:actor AS text) IS NULL OR actor = :actor)
   AND (CAST(:action AS text) IS NULL OR action = :action)
   AND (CAST(:entity_type AS text) IS NULL OR entity_type = :entity_type)
   AND (CAST(:entity_id AS text) IS NULL OR entity_id = :entity_id)
   AND (CAST(:c_at AS timestamptz) IS NULL OR (at, id) < (:c_at, :c_id))
 ORDER BY at DESC, id DESC
 LIMIT :limit
"""


async def audit_entries(
    *,
    session: AsyncSession,
    since: datetime | None,
    until: datetime | None,
    actor: str | None,
    action: str | None,
    entity_type: str | None,
    entity_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Audit entries, newest first, and the cursor of the next page (None at the end)."""
    c_at, c_id = _cursor(cursor) if cursor else (None, None)
    rows = (
        await session.execute(
            text(AUDIT_SQL),
            {
                "since": since,
                "until": until,
                "actor": actor,
                "action": action,
                "entity_type": entity_type,
                "entity_id": entity_id,
                "c_at": c_at,
                "c_id": c_id,
                "limit": limit + 1,
            },
        )
    ).all()
    entries = [
        {
            "id": r.id,
            "at": r.at.isoformat(),
            "actor": r.actor,
            "action": r.action,
            "entity_type": r.entity_type,
            "entity_id": r.entity_id,
            "before": r.before,
            "after": r.after,
        }
        for r in rows[:limit]
    ]
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        nxt = base64.urlsafe_b64encode(orjson.dumps([last.at.isoformat(), last.id])).decode()
        nxt = nxt.rstrip("=")
    return entries, nxt
