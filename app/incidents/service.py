"""Incident queries and writes. Every write sets the actor and action that the history
trigger records, in the same transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NoReturn

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    Text,
    bindparam,
    cast,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from app import i18n
from app.auth.scope import Scope
from app.auth.service import Identity
from app.db import DriverStatement, fetch_row
from app.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
)
from app.geo import geojson, spatial
from app.i18n import Lang
from app.incidents import schema
from app.incidents.filters import visible
from app.incidents.models import Category, Incident, IncidentHistory
from app.incidents.schemas import TRANSITIONS, IncidentIn, IncidentPatch
from app.units.reporting import reporting_unit

# uuid5 namespace for Idempotency-Key headers: the same key always names the same incident.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c3e0a-3b7e-4c55-9f0e-2d7b8a1c9e42")


def idempotent_id(key: str) -> uuid.UUID:
    """The incident id that an Idempotency-Key stands for."""
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, key)


def etag(version: int) -> str:
    """The strong entity tag of an incident version."""
    return f'"v{version}"'


def required_version(header: str | None, read_at: str) -> int | None:
    """The version a write's If-Match asks for (None for `*`); 428 without one, naming where
    to read the ETag (`read_at`, e.g. "/incidents/{id}")."""
    if header is None:
        raise PreconditionRequired(
            f"send If-Match with the ETag you read (GET {read_at}) to avoid lost updates"
        )
    return parse_if_match(header)


def parse_if_match(header: str) -> int | None:
    """The version an If-Match header asks for; None for `*`."""
    value = header.strip()
    if value == "*":
        return None
    if value.startswith("W/"):
        raise PreconditionFailed('If-Match needs the strong ETag, e.g. "v3"')
    token = value[1:-1] if len(value) > 2 and value[0] == value[-1] == '"' else ""
    if not token.startswith("v") or not token[1:].isdigit():
        raise PreconditionFailed(f"If-Match '{value[:40]}' is not an ETag of this service")
    return int(token[1:])


# Statements on the write and read paths of one incident are built once (per scope where the
# scope is part of them) and run on the session's connection (Core): SQLAlchemy memoizes a
# statement's cache key on the statement object, and building the Feature statement (an aliased
# post, the GeoJSON expression) and its key per request costs more CPU than the rest of a
# create (docs/performance.md).
SET_CONTEXT = select(
    func.set_config("borderwatch.actor", bindparam("actor", type_=Text), True),
    func.set_config("borderwatch.action", bindparam("action", type_=Text), True),
)
INCIDENT_ID = bindparam("incident_id", type_=Incident.id.type)
SCOPE_CACHE = 64  # scopes whose statements are kept (a scope per jurisdiction and distance)


async def _set_context(session: AsyncSession, *, actor: str, action: str | None = None) -> None:
    """Transaction-local actor/action for the history trigger."""
    await (await session.connection()).execute(
        SET_CONTEXT, {"actor": actor, "action": action or ""}
    )


def feature_expr(
    lang: Lang = i18n.DEFAULT,
    extra: dict[str, ColumnElement[Any]] | None = None,
    rows: FromClause | None = None,
    *,
    lookups: bool = False,
) -> tuple[ColumnElement[Any], FromClause]:
    """The Feature json of an incident (the fields of app/incidents/schema.py in `lang`, plus
    `extra` properties) and the FROM clause it reads: the incident table, or `rows` (a
    subquery with the incident's columns: a page chosen first, so only its rows are joined),
    outer-joined to the tables its names come from (`lookups`: one row is read, its names are
    looked up by scalar subqueries; schema.joined). Select from it instead of `incident`."""
    fields = schema.joined(lang, rows, lookups=lookups)
    props = fields.properties() | (extra or {})
    i: Any = Incident if rows is None else rows.c
    return geojson.feature(id_=i.id, geom=i.geom, properties=props), fields.from_


async def get_feature(
    *, session: AsyncSession, incident_id: uuid.UUID, scope: Scope, lang: Lang = i18n.DEFAULT
) -> tuple[bytes, int]:
    """The incident as a Feature and its version; NotFound when missing, deleted or out of
    scope (the same answer, so nobody learns what exists outside their area)."""
    conn = await session.connection()
    row = await fetch_row(
        conn, _feature_driver(scope, lang, conn.dialect), {"incident_id": incident_id}
    )
    if row is None:
        raise NotFound(f"no incident with id {incident_id}", id=str(incident_id))
    return str(row[0]).encode(), int(row[1])


@lru_cache(maxsize=SCOPE_CACHE)
def _feature_driver(scope: Scope, lang: Lang, dialect: Dialect) -> DriverStatement:
    """The read path's Feature statement, compiled once per scope and language and run on the
    driver connection (app/db.py): no SQLAlchemy execution and, outside a write, no BEGIN or
    ROLLBACK around it (two round trips of the four a read by id made; docs/performance.md)."""
    return DriverStatement(_feature_statement(scope, lang), dialect, {"incident_id": None})


async def _feature_row(
    session: AsyncSession, incident_id: uuid.UUID, scope: Scope, lang: Lang
) -> tuple[bytes, int] | None:
    conn = await session.connection()
    params = {"incident_id": incident_id}
    row = (await conn.execute(_feature_statement(scope, lang), params)).one_or_none()
    return None if row is None else (str(row[0]).encode(), int(row[1]))


@lru_cache(maxsize=SCOPE_CACHE)
def _feature_statement(scope: Scope, lang: Lang) -> Select[str, int]:
    f, from_ = feature_expr(lang, lookups=True)
    return (
        select(cast(f, Text).label("f"), Incident.version)
        .select_from(from_)
        .where(Incident.id == INCIDENT_ID, Incident.deleted_at.is_(None), visible(scope))
    )


async def _visible(session: AsyncSession, incident_id: uuid.UUID, scope: Scope) -> bool:
    conn = await session.connection()
    found = await conn.execute(_visible_statement(scope), {"incident_id": incident_id})
    return found.scalar() is not None


@lru_cache(maxsize=SCOPE_CACHE)
def _visible_statement(scope: Scope) -> Select[Any]:
    return select(Incident.id).where(Incident.id == INCIDENT_ID, visible(scope))


async def require_live(session: AsyncSession, incident_id: uuid.UUID, scope: Scope) -> None:
    """The incident exists, is not deleted and lies within `scope`; else the 404 of an unknown
    incident (what is outside a key's scope is not shown to exist). For what hangs on an
    incident: its notes, its photos."""
    conn = await session.connection()
    found = await conn.execute(_live_statement(scope), {"incident_id": incident_id})
    if found.scalar() is None:
        raise NotFound(f"no incident with id {incident_id}", id=str(incident_id))


@lru_cache(maxsize=SCOPE_CACHE)
def _live_statement(scope: Scope) -> Select[Any]:
    return select(Incident.id).where(
        Incident.id == INCIDENT_ID, Incident.deleted_at.is_(None), visible(scope)
    )


def _outside(scope: Scope) -> Forbidden:
    km = f"{scope.distance_m / 1000:g} km"
    if scope.area is not None:
        where = f"{scope.label}: its members and {km} around them"
    else:
        where = f"{scope.code} and {km} into its neighbours"
    return Forbidden(f"the location is outside your area ({where})", field="location")


ACTIVE_CATEGORY = select(Category.code).where(
    Category.code == bindparam("code"), Category.active.is_(True)
)


# a create's history context and its category check in one round trip
SET_CONTEXT_FOR_NEW = SET_CONTEXT.add_columns(ACTIVE_CATEGORY.exists())


async def _check_category(session: AsyncSession, code: str) -> None:
    found = await (await session.connection()).execute(ACTIVE_CATEGORY, {"code": code})
    if found.scalar() is None:
        await _unknown_category(session, code)


async def _unknown_category(session: AsyncSession, code: str) -> NoReturn:
    known = (
        await session.execute(
            select(Category.code).where(Category.active.is_(True)).order_by(Category.sort_order)
        )
    ).scalars()
    raise InvalidInput(f"unknown category '{code}'", field="category", allowed=list(known))


# the values come per call (executemany-style keys): one statement object for every create
INSERT_NEW = (
    insert(Incident).on_conflict_do_nothing(index_elements=[Incident.id]).returning(Incident.id)
)


@dataclass(frozen=True)
class Created:
    """The outcome of a create: the Feature, its version, and whether it is new."""

    id: uuid.UUID
    body: bytes
    version: int
    created: bool


async def create(
    *,
    session: AsyncSession,
    data: IncidentIn,
    principal: Identity,
    idempotency_key: str | None = None,
    lang: Lang = i18n.DEFAULT,
) -> Created:
    """Insert an incident; a retry with the same id (or key) and content returns the stored one.

    An officer records for their own unit and only inside their area."""
    actor = principal.actor
    if principal.role == "officer" and principal.unit:
        data = data.model_copy(update={"unit": principal.unit})
    data = await reporting_unit(session=session, data=data, principal=principal)
    if idempotency_key is not None:
        # the key is the principal's: two principals never collide on the same key
        idempotency_key = f"{principal.id}:{idempotency_key}"
    if data.id is None:
        data = data.model_copy(
            update={"id": idempotent_id(idempotency_key) if idempotency_key else uuid.uuid4()}
        )
    assert data.id is not None
    conn = await session.connection()
    params = {"actor": actor, "action": "", "code": data.category}
    if not (await conn.execute(SET_CONTEXT_FOR_NEW, params)).one()[2]:
        await _unknown_category(session, data.category)
    digest = data.request_hash()
    values = {
        "id": data.id,
        "category": data.category,
        "severity": data.severity,
        "status": data.status,
        "occurred_at": data.occurred_at,
        "geom": f"SRID={spatial.SRID_WGS84};POINT({data.location.lon!r} {data.location.lat!r})",
        "location_precision_m": data.location_precision_m,
        "description": data.description,
        "unit": data.unit,
        "reporting_unit_id": data.reporting_unit_id,
        "source": data.source,
        "source_id": data.source_id,
        "created_by": actor,
        "updated_by": actor,
        "request_hash": digest,
    }
    inserted = (await conn.execute(INSERT_NEW, values)).scalar()
    if inserted is None:
        stored = (
            await session.execute(
                select(Incident.request_hash, Incident.deleted_at).where(Incident.id == data.id)
            )
        ).one_or_none()
        if stored is None:  # lost a race with a delete; extremely unlikely
            await session.rollback()
            raise Conflict(f"incident {data.id} could not be stored; retry")
        if not await _visible(session, data.id, principal.scope):
            # an incident outside the writer's area: answer as for an id nobody has, so that
            # nobody learns what exists elsewhere (outside its area: 403; inside: the id is
            # taken, as any retry with other content is told)
            inside = await _would_be_visible(session, values, principal.scope)
            await session.rollback()
            if not inside:
                raise _outside(principal.scope)
            raise _taken(data.id)
        await session.rollback()
        if stored.request_hash != digest or stored.deleted_at is not None:
            raise _taken(data.id)
        body, version = await get_feature(
            session=session, incident_id=data.id, scope=principal.scope, lang=lang
        )
        return Created(data.id, body, version, created=False)
    feature = await _feature_row(session, data.id, principal.scope, lang)
    if feature is None:  # outside the writer's area: nothing of it is kept
        await session.rollback()
        raise _outside(principal.scope)
    await session.commit()
    return Created(data.id, *feature, created=True)


def _taken(incident_id: uuid.UUID) -> Conflict:
    return Conflict(
        f"incident {incident_id} already exists with different content", id=str(incident_id)
    )


async def _would_be_visible(session: AsyncSession, values: dict[str, Any], scope: Scope) -> bool:
    """Whether an incident with these values would lie in `scope`: stored under a new id in a
    savepoint (the trigger derives its jurisdictions), looked at, and rolled back."""
    savepoint = await session.begin_nested()
    try:
        probe = uuid.uuid4()
        await (await session.connection()).execute(INSERT_NEW, {**values, "id": probe})
        return await _visible(session, probe, scope)
    finally:
        await savepoint.rollback()


async def _lock(
    session: AsyncSession, incident_id: uuid.UUID, principal: Identity
) -> tuple[str, int]:
    """Lock a visible incident for a write; officers may write only their unit's incidents."""
    row = (
        await session.execute(
            select(Incident.status, Incident.version, Incident.unit)
            .where(
                Incident.id == incident_id,
                Incident.deleted_at.is_(None),
                visible(principal.scope),
            )
            .with_for_update(of=Incident)
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"no incident with id {incident_id}", id=str(incident_id))
    if principal.role == "officer" and (not principal.unit or row[2] != principal.unit):
        await session.rollback()
        raise Forbidden("officers may change only the incidents their own unit reported")
    return str(row[0]), int(row[1])


def _check_version(current: int, expected: int | None) -> None:
    if expected is not None and expected != current:
        raise PreconditionFailed(
            f"incident changed since you read it: you sent version {expected}, it is at "
            f"version {current}; fetch it again and re-apply your change",
            current_version=current,
        )


async def update_incident(
    *,
    session: AsyncSession,
    incident_id: uuid.UUID,
    patch: IncidentPatch,
    expected_version: int | None,
    principal: Identity,
    lang: Lang = i18n.DEFAULT,
) -> tuple[bytes, int]:
    """Apply a correction under optimistic concurrency and the status lifecycle."""
    actor = principal.actor
    status, version = await _lock(session, incident_id, principal)
    _check_version(version, expected_version)
    changes: dict[str, Any] = {}
    fields = patch.model_fields_set
    if "status" in fields and patch.status != status:
        allowed = TRANSITIONS[status]
        if patch.status not in allowed:
            await session.rollback()
            raise Conflict(
                f"status cannot go from {status} to {patch.status}; allowed: "
                + (", ".join(allowed) or "none (final state)"),
                field="status",
                current=status,
                allowed=list(allowed),
            )
        changes["status"] = patch.status
    if "category" in fields and patch.category is not None:
        await _check_category(session, patch.category)
        changes["category"] = patch.category
    for name in ("severity", "occurred_at", "location_precision_m", "description", "unit"):
        if name in fields:
            changes[name] = getattr(patch, name)
    if "location" in fields and patch.location is not None:
        changes["geom"] = spatial.point(patch.location.lon, patch.location.lat)
    await _set_context(session, actor=actor)
    if changes:
        await session.execute(
            update(Incident)
            .where(Incident.id == incident_id)
            .values(
                **changes, version=Incident.version + 1, updated_at=func.now(), updated_by=actor
            )
        )
    feature = await _feature_row(session, incident_id, principal.scope, lang)
    if feature is None:  # moved outside the writer's area: the change is not kept
        await session.rollback()
        raise _outside(principal.scope)
    await session.commit()
    return feature


async def delete_incident(
    *,
    session: AsyncSession,
    incident_id: uuid.UUID,
    expected_version: int | None,
    principal: Identity,
) -> None:
    """Soft delete: hidden from reads and lists, kept (with its history) in the database."""
    actor = principal.actor
    _, version = await _lock(session, incident_id, principal)
    _check_version(version, expected_version)
    await _set_context(session, actor=actor)
    await session.execute(
        update(Incident)
        .where(Incident.id == incident_id)
        .values(
            deleted_at=func.now(),
            version=Incident.version + 1,
            updated_by=actor,
            updated_at=func.now(),
        )
    )
    await session.commit()


async def history(
    *, session: AsyncSession, incident_id: uuid.UUID, scope: Scope
) -> list[dict[str, Any]]:
    """Every recorded change of an incident in scope, oldest first (deleted ones included)."""
    if not await _visible(session, incident_id, scope):
        raise NotFound(f"no incident with id {incident_id}", id=str(incident_id))
    h = IncidentHistory
    rows = (
        await session.execute(
            select(h.version, h.action, h.changed_at, h.actor, h.changes)
            .where(h.incident_id == incident_id)
            .order_by(h.id)
        )
    ).all()
    if not rows:
        raise NotFound(f"no incident with id {incident_id}", id=str(incident_id))
    return [
        {
            "version": r.version,
            "action": r.action,
            "changed_at": r.changed_at.isoformat(),
            "actor": r.actor,
            "changes": r.changes,
        }
        for r in rows
    ]


async def categories(*, session: AsyncSession) -> list[dict[str, Any]]:
    """The managed category list."""
    c = Category
    rows = (
        await session.execute(
            select(c.code, c.name_en, c.name_vi, c.active).order_by(c.sort_order, c.code)
        )
    ).all()
    return [{"code": r[0], "name": r[1], "name_vi": r[2], "active": r[3]} for r in rows]
