"""Reading the audit log: the view `audit_log` (incident history and every other write's audit
event), filtered to what the calling admin may read, newest first, with a keyset cursor.

Its own package because what an admin may read follows both the incident scope (app/incidents/)
and the keys it manages (app/auth/), and both of those stay free of each other's imports.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    and_,
    case,
    cast,
    column,
    exists,
    func,
    literal,
    or_,
    select,
    table,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Principal
from app.auth.scope import Scope
from app.auth.service import Manager, managed
from app.errors import InvalidInput
from app.incidents.filters import visible
from app.incidents.models import Incident


def _cursor(token: str) -> tuple[datetime, str]:
    try:
        at, ident = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return datetime.fromisoformat(at), str(ident)
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise InvalidInput("cursor is not one this service issued", field="cursor") from exc


AUDIT_LOG = table(
    "audit_log",
    *(column(n) for n in ("id", "actor", "action", "entity_type", "entity_id")),
    column("at", DateTime(timezone=True)),
    column("before", JSONB),
    column("after", JSONB),
)
_A = AUDIT_LOG.c
# the view's entity_id is text; cast only what has the form, so no row can fail the cast
_INCIDENT_ID = case((_A.entity_id.regexp_match(r"^[0-9a-f-]{36}$"), cast(_A.entity_id, UUID)))
_PRINCIPAL_ID = case((_A.entity_id.regexp_match(r"^[0-9]{1,9}$"), cast(_A.entity_id, Integer)))


# Entries of one transaction share their time; their ids ('incident-99', 'incident-100') then
# order them, as numbers: by length first, so that 100 comes after 99 as it does in the source.
NEWEST_FIRST = (_A.at.desc(), func.length(_A.id).desc(), _A.id.desc())


def _visible(scope: Scope, manager: Manager) -> ColumnElement[bool]:
    """SQL: the entry is one this admin may read. Entries about incidents follow the incident
    scope (the cooperation zone included); key events only for principals it may manage; the
    rest (boundary loads, bulk work) only nationally."""
    if scope.national and manager.codes is None:
        return true()
    incident = exists().where(Incident.id == _INCIDENT_ID, visible(scope))
    principal = exists().where(Principal.id == _PRINCIPAL_ID, managed(manager))
    return or_(
        and_(_A.entity_type == "incident", incident),
        and_(_A.entity_type == "principal", principal),
    )


async def list_entries(
    *,
    session: AsyncSession,
    scope: Scope,
    manager: Manager,
    since: datetime | None,
    until: datetime | None,
    actor: str | None,
    action: str | None,
    entity_type: str | None,
    entity_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Audit entries this admin may read, newest first, and the next page's cursor (None at
    the end)."""
    filters = [
        _visible(scope, manager),
        *(
            col == value
            for col, value in (
                (_A.actor, actor),
                (_A.action, action),
                (_A.entity_type, entity_type),
                (_A.entity_id, entity_id),
            )
            if value is not None
        ),
    ]
    if since is not None:
        filters.append(_A.at >= since)
    if until is not None:
        filters.append(_A.at <= until)
    if cursor:
        c_at, c_id = _cursor(cursor)
        position = (literal(c_at), literal(len(c_id)), literal(c_id))
        filters.append(tuple_(_A.at, func.length(_A.id), _A.id) < tuple_(*position))
    query = select(AUDIT_LOG).where(*filters).order_by(*NEWEST_FIRST).limit(limit + 1)
    rows = (await session.execute(query)).all()
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
