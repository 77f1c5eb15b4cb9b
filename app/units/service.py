"""Units: list, read, create, change, close (audited, If-Match on the version), their contacts,
the keys that belong to them, and the hotline chain for a point (`contacts_for`).

Who may write: a national admin any unit; an admin bound to a jurisdiction the units whose area
lies inside its own (the jurisdiction is one of the codes it manages: itself, what lies below it,
the other era's units inside it; a post's point lies inside its jurisdiction); central units and
units without an area only a national admin. Contacts are read only by keys that belong to a
unit and by admins, never by public reference reads (docs/units.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Principal
from app.auth.service import Identity, Manager, record
from app.errors import Conflict, Forbidden, InvalidInput, NotFound, PreconditionFailed
from app.jurisdictions import eras
from app.posts.models import BorderPost
from app.units.models import AGENCIES, CHANNELS, LEVELS, Unit, UnitContact

Level = Literal["central", "province", "commune", "post"]
Agency = Literal["police", "border_guard", "coast_guard", "customs", "other"]
Channel = Literal["hotline", "phone", "radio", "email"]
assert set(LEVELS) == {"central", "province", "commune", "post"}
assert set(AGENCIES) == {"police", "border_guard", "coast_guard", "customs", "other"}
assert set(CHANNELS) == {"hotline", "phone", "radio", "email"}

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
HOME = "VNM"


class UnitFields(BaseModel):
    """Fields shared by creation and change."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name_en: str | None = Field(default=None, max_length=200)
    parent_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    jurisdiction: str | None = Field(
        default=None, max_length=32, description="area: a jurisdiction code of either era"
    )
    post: str | None = Field(
        default=None, max_length=64, description="area: a border post's code (GET /border-posts)"
    )
    valid_to: date | None = Field(default=None, description="exclusive; null: in force")


class UnitIn(UnitFields):
    """A new unit."""

    code: str = Field(min_length=1, max_length=64, pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=200, description="its own name, with diacritics")
    agency: Agency
    level: Level
    country: str = Field(default=HOME, pattern="^[A-Z]{3}$")


class UnitPatch(UnitFields):
    """A change: only the fields present change; null clears an optional one."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    agency: Agency | None = None
    level: Level | None = None

    @model_validator(mode="after")
    def _something(self) -> UnitPatch:
        for name in ("name", "agency", "level"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if not self.model_fields_set:
            raise ValueError("the patch changes nothing: send at least one field")
        return self


class ContactIn(BaseModel):
    """A contact channel of a unit."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    channel: Channel
    value: str = Field(min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=500)


# --- reading -------------------------------------------------------------------------------


def _in_force(valid_to: date | None, on: date) -> bool:
    return valid_to is None or valid_to > on


def _json(u: Unit, post_code: str | None) -> dict[str, Any]:
    """A unit as the API shows it (never its contacts)."""
    return {
        "id": u.id,
        "code": u.code,
        "name": u.name,
        "name_en": u.name_en,
        "agency": u.agency,
        "level": u.level,
        "country": u.country,
        "parent_id": u.parent_id,
        "jurisdiction": u.jurisdiction_code,
        "post": post_code,
        "valid_to": u.valid_to.isoformat() if u.valid_to else None,
        "in_force": _in_force(u.valid_to, eras.today()),
        "source": u.source,
        "version": u.version,
        "updated_at": u.updated_at.isoformat() if u.updated_at else None,
        "updated_by": u.updated_by,
    }


async def _post_codes(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await session.execute(
        select(BorderPost.id, BorderPost.code).where(BorderPost.id.in_(sorted(ids)))
    )
    return {int(r.id): str(r.code) for r in rows}


async def list_units(
    session: AsyncSession,
    *,
    level: str | None = None,
    agency: str | None = None,
    jurisdiction: str | None = None,
    post: str | None = None,
    country: str | None = None,
    include_closed: bool = False,
) -> list[dict[str, Any]]:
    """Units by level (central first) then code; in force today unless `include_closed`."""
    u = Unit
    stmt = select(u)
    if level:
        stmt = stmt.where(u.level == level)
    if agency:
        stmt = stmt.where(u.agency == agency)
    if jurisdiction:
        stmt = stmt.where(u.jurisdiction_code == jurisdiction)
    if post:
        stmt = stmt.where(u.post_id.in_(select(BorderPost.id).where(BorderPost.code == post)))
    if country:
        stmt = stmt.where(u.country == country)
    if not include_closed:
        stmt = stmt.where(u.valid_to.is_(None) | (u.valid_to > eras.today()))
    order = {name: i for i, name in enumerate(LEVELS)}
    units = sorted((await session.execute(stmt)).scalars(), key=lambda x: (order[x.level], x.code))
    posts = await _post_codes(session, {x.post_id for x in units if x.post_id is not None})
    return [_json(x, posts.get(x.post_id) if x.post_id else None) for x in units]


async def _found(session: AsyncSession, unit_id: int, *, lock: bool = False) -> Unit:
    unit = await session.get(Unit, unit_id, with_for_update=lock, populate_existing=lock)
    if unit is None:
        raise NotFound(f"no unit with id {unit_id}", id=unit_id)
    return unit


async def get(session: AsyncSession, unit_id: int) -> dict[str, Any]:
    """One unit (without contacts)."""
    unit = await _found(session, unit_id)
    posts = await _post_codes(session, {unit.post_id} if unit.post_id else set())
    return _json(unit, posts.get(unit.post_id) if unit.post_id else None)


# --- who may write -------------------------------------------------------------------------


@dataclass(frozen=True)
class Area:
    """A unit's area as the rules see it."""

    level: str
    country: str
    jurisdiction: str | None
    post_id: int | None


POST_INSIDE_SQL = text(
    """
    SELECT ST_Covers(j.geom, p.geom)
      FROM jurisdiction j, border_post p
     WHERE j.code = :code AND p.id = :post
     ORDER BY j.valid_from DESC NULLS LAST
     LIMIT 1
    """
)


async def _may_write(session: AsyncSession, admin: Identity, manager: Manager, area: Area) -> None:
    """403 unless `admin` (with `manager`) may create or change a unit of `area`."""
    if manager.national:
        return
    outside = Forbidden(
        "a scoped admin manages only the units whose area lies inside its own (name a"
        " jurisdiction or a post inside it); central units and units without an area belong"
        " to national admins",
        field="jurisdiction",
    )
    if admin.jurisdiction_code is None or area.level == "central":
        raise outside  # an area's admin, or a central unit
    if area.jurisdiction is None and area.post_id is None:
        raise outside
    if area.jurisdiction is not None and area.jurisdiction not in (manager.codes or ()):
        raise outside
    if area.post_id is not None:
        inside = (
            await session.execute(
                POST_INSIDE_SQL, {"code": admin.jurisdiction_code, "post": area.post_id}
            )
        ).scalar()
        if not inside:
            raise outside


async def _check_jurisdiction(session: AsyncSession, code: str, level: str, country: str) -> None:
    row = (
        await session.execute(
            text("SELECT level, country FROM jurisdiction WHERE code = :c LIMIT 1"), {"c": code}
        )
    ).one_or_none()
    if row is None:
        raise InvalidInput(f"no jurisdiction with code '{code}'", field="jurisdiction")
    if country == HOME and level in ("province", "commune") and row.level != level:
        raise InvalidInput(
            f"a {level} unit's area is a {level}; '{code}' is a {row.level}",
            field="jurisdiction",
        )


async def _post_id(session: AsyncSession, code: str | None) -> int | None:
    if code is None:
        return None
    found = (await session.execute(select(BorderPost.id).where(BorderPost.code == code))).scalar()
    if found is None:
        raise InvalidInput(f"no border post with code '{code}' (GET /border-posts)", field="post")
    return int(found)


async def _check_parent(session: AsyncSession, parent_id: int | None, own_id: int | None) -> None:
    """The parent exists, and the unit is not its own ancestor."""
    seen: set[int] = set()
    current = parent_id
    while current is not None:
        if current == own_id or current in seen:
            raise InvalidInput("a unit cannot be its own ancestor", field="parent_id")
        seen.add(current)
        row = (await session.execute(select(Unit.parent_id).where(Unit.id == current))).first()
        if row is None:
            raise InvalidInput(f"no unit with id {current} (parent_id)", field="parent_id")
        current = row[0]


async def _check_area(session: AsyncSession, area: Area) -> None:
    if area.jurisdiction is not None:
        await _check_jurisdiction(session, area.jurisdiction, area.level, area.country)
    if area.country == HOME:
        if area.level in ("province", "commune") and area.jurisdiction is None:
            raise InvalidInput(
                f"a {area.level} unit needs its area: jurisdiction", field="jurisdiction"
            )
        if area.level == "post" and area.post_id is None:
            raise InvalidInput("a post unit needs its post (a border post's code)", field="post")


# --- writing -------------------------------------------------------------------------------


def _actor(admin: Identity | None, actor: str | None) -> str:
    """Who the audit log names: the admin's key, or the operator at the command line."""
    return admin.actor if admin is not None else (actor or "cli")


async def create(
    session: AsyncSession,
    *,
    body: UnitIn,
    admin: Identity | None,
    manager: Manager,
    actor: str | None = None,
) -> dict[str, Any]:
    """Create a unit (422 for an unknown jurisdiction, post or parent; 409 for a taken code;
    403 outside the admin's area, nothing written). Audited. `admin` None: the operator."""
    actor = _actor(admin, actor)
    post_id = await _post_id(session, body.post)
    area = Area(body.level, body.country, body.jurisdiction or None, post_id)
    if admin is not None:
        await _may_write(session, admin, manager, area)
    await _check_area(session, area)
    await _check_parent(session, body.parent_id, None)
    taken = (await session.execute(select(Unit.id).where(Unit.code == body.code))).scalar()
    if taken is not None:
        raise Conflict(f"a unit with code '{body.code}' exists (id {taken})", id=int(taken))
    unit = Unit(
        code=body.code,
        name=body.name,
        name_en=body.name_en,
        agency=body.agency,
        level=body.level,
        country=body.country,
        parent_id=body.parent_id,
        jurisdiction_code=area.jurisdiction,
        post_id=post_id,
        valid_to=body.valid_to,
        created_by=actor,
        updated_by=actor,
    )
    session.add(unit)
    await session.flush()
    await session.refresh(unit)
    out = _json(unit, body.post)
    await record(
        session=session, actor=actor, action="unit_create", entity_type="unit",
        entity_id=str(unit.id), after=out,
    )  # fmt: skip
    return out


async def update(
    session: AsyncSession,
    *,
    unit_id: int,
    patch: UnitPatch,
    expected_version: int | None,
    admin: Identity | None,
    manager: Manager,
    actor: str | None = None,
) -> dict[str, Any]:
    """Change a unit (If-Match on its version: 412 when stale); the admin must manage the unit
    both before and after the change. Audited with before and after."""
    actor = _actor(admin, actor)
    unit = await _found(session, unit_id, lock=True)
    posts = await _post_codes(session, {unit.post_id} if unit.post_id else set())
    before = _json(unit, posts.get(unit.post_id) if unit.post_id else None)
    if admin is not None:
        await _may_write(
            session, admin, manager,
            Area(unit.level, unit.country, unit.jurisdiction_code, unit.post_id),
        )  # fmt: skip
    if expected_version is not None and expected_version != unit.version:
        raise PreconditionFailed(
            f"unit {unit_id} is at version {unit.version}, not {expected_version}: read it again"
        )
    given = patch.model_fields_set
    post_code = patch.post if "post" in given else before["post"]
    post_id = await _post_id(session, post_code) if "post" in given else unit.post_id
    area = Area(
        patch.level if patch.level is not None else unit.level,
        unit.country,
        (patch.jurisdiction or None) if "jurisdiction" in given else unit.jurisdiction_code,
        post_id,
    )
    if admin is not None:
        await _may_write(session, admin, manager, area)
    await _check_area(session, area)
    if "parent_id" in given:
        await _check_parent(session, patch.parent_id, unit.id)
        unit.parent_id = patch.parent_id
    for name in ("name", "agency", "name_en", "valid_to"):
        if name in given:
            setattr(unit, name, getattr(patch, name))
    unit.level, unit.jurisdiction_code, unit.post_id = area.level, area.jurisdiction, post_id
    unit.version = unit.version + 1
    unit.updated_by = actor
    await session.flush()
    await session.execute(text("UPDATE unit SET updated_at = now() WHERE id = :i"), {"i": unit.id})
    await session.refresh(unit)
    after = _json(unit, post_code)
    await record(
        session=session, actor=actor, action="unit_update", entity_type="unit",
        entity_id=str(unit.id), before=before, after=after,
    )  # fmt: skip
    return after


async def close(
    session: AsyncSession,
    *,
    unit_id: int,
    on: date | None,
    admin: Identity | None,
    manager: Manager,
    actor: str | None = None,
) -> dict[str, Any]:
    """Close a unit from `on` (default today; exclusive): it is kept, with its contacts, keys
    and incidents; 409 when it is closed by then already."""
    day = on or eras.today()
    unit = await _found(session, unit_id)
    if unit.valid_to is not None and unit.valid_to <= day:
        raise Conflict(f"unit {unit_id} is closed from {unit.valid_to.isoformat()} already")
    patch = UnitPatch(valid_to=day)
    return await update(
        session, unit_id=unit_id, patch=patch, expected_version=None, admin=admin,
        manager=manager, actor=actor,
    )  # fmt: skip


# --- contacts ------------------------------------------------------------------------------


def may_read_contacts(identity: Identity) -> None:
    """403 unless the key belongs to a unit or is an admin's: contacts are for units."""
    if identity.unit_id is None and identity.role != "admin":
        raise Forbidden(
            "contact channels are shown to keys that belong to a unit (and to admins); ask an"
            " admin to bind your key to your unit (PUT /units/{id}/keys/{principal_id})"
        )


def _contact_json(c: UnitContact) -> dict[str, Any]:
    return {"id": c.id, "channel": c.channel, "value": c.value, "note": c.note}


async def contacts_of(session: AsyncSession, unit_ids: list[int]) -> dict[int, list[Any]]:
    """The contacts of each unit, hotline first."""
    if not unit_ids:
        return {}
    order = {name: i for i, name in enumerate(CHANNELS)}
    rows = (
        await session.execute(select(UnitContact).where(UnitContact.unit_id.in_(unit_ids)))
    ).scalars()
    out: dict[int, list[Any]] = {i: [] for i in unit_ids}
    for c in sorted(rows, key=lambda c: (order[c.channel], c.id)):
        out[c.unit_id].append(_contact_json(c))
    return out


async def list_contacts(session: AsyncSession, unit_id: int) -> dict[str, Any]:
    """A unit with its contact channels."""
    unit = await get(session, unit_id)
    return unit | {"contacts": (await contacts_of(session, [unit_id]))[unit_id]}


async def _writable(
    session: AsyncSession, unit_id: int, admin: Identity | None, manager: Manager
) -> Unit:
    unit = await _found(session, unit_id)
    if admin is not None:
        await _may_write(
            session, admin, manager,
            Area(unit.level, unit.country, unit.jurisdiction_code, unit.post_id),
        )  # fmt: skip
    return unit


async def add_contact(
    session: AsyncSession,
    *,
    unit_id: int,
    body: ContactIn,
    admin: Identity | None,
    manager: Manager,
    actor: str | None = None,
) -> dict[str, Any]:
    """Add a contact channel (the unit's admins). Audited."""
    await _writable(session, unit_id, admin, manager)
    contact = UnitContact(unit_id=unit_id, channel=body.channel, value=body.value, note=body.note)
    session.add(contact)
    await session.flush()
    out = _contact_json(contact)
    await record(
        session=session, actor=_actor(admin, actor), action="unit_contact_add",
        entity_type="unit", entity_id=str(unit_id), after=out,
    )  # fmt: skip
    return out


async def remove_contact(
    session: AsyncSession,
    *,
    unit_id: int,
    contact_id: int,
    admin: Identity | None,
    manager: Manager,
    actor: str | None = None,
) -> None:
    """Remove a contact channel (404 when the unit has no such contact). Audited."""
    await _writable(session, unit_id, admin, manager)
    contact = await session.get(UnitContact, contact_id)
    if contact is None or contact.unit_id != unit_id:
        raise NotFound(f"unit {unit_id} has no contact {contact_id}", id=contact_id)
    before = _contact_json(contact)
    await session.delete(contact)
    await session.flush()
    await record(
        session=session, actor=_actor(admin, actor), action="unit_contact_remove",
        entity_type="unit", entity_id=str(unit_id), before=before,
    )  # fmt: skip


# --- keys of a unit ------------------------------------------------------------------------


async def bind_key(
    session: AsyncSession,
    *,
    unit_id: int | None,
    principal_id: int,
    admin: Identity | None,
    manager: Manager,
    actor: str | None = None,
) -> dict[str, Any]:
    """Make a key belong to a unit (None: to none). The admin must manage both the key (else
    404, as for keys) and the unit. A key without a free-text `unit` gets the unit's name (an
    officer's incidents are its unit's: app/incidents/service.py). Audited."""
    p = await session.get(Principal, principal_id, with_for_update=True)
    if p is None or not manager.may_manage(
        jurisdiction_code=p.jurisdiction_code, role=p.role,
        cooperation_area_id=p.cooperation_area_id,
    ):  # fmt: skip
        raise NotFound(f"no principal with id {principal_id}", id=principal_id)
    before = {"unit_id": p.unit_id, "unit": p.unit}
    if unit_id is not None:
        unit = await _writable(session, unit_id, admin, manager)
        if not _in_force(unit.valid_to, eras.today()):
            raise InvalidInput(f"unit {unit_id} is closed", field="unit")
        p.unit_id = unit.id
        if not p.unit:
            p.unit = unit.name
    else:
        p.unit_id = None
    await session.flush()
    after = {"unit_id": p.unit_id, "unit": p.unit}
    await record(
        session=session, actor=_actor(admin, actor), action="key_unit",
        entity_type="principal", entity_id=str(p.id), before=before, after=after,
    )  # fmt: skip
    return {"principal": p.id, **after}


# --- the hotline chain ---------------------------------------------------------------------

# the four levels, from the ground up; a chain is ordered by distance from the asker's level
LADDER = ("commune", "post", "province", "central")

PLACE_SQL = text(
    """
    WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS g)
    SELECT
      (SELECT jp.code FROM jurisdiction_piece jp, pt
        WHERE jp.level = 'commune' AND jp.country = 'VNM'
          AND (jp.valid_from IS NULL OR jp.valid_from <= :today)
          AND (jp.valid_to IS NULL OR jp.valid_to > :today)
          AND ST_Intersects(jp.geom, pt.g)
        ORDER BY jp.code LIMIT 1) AS commune,
      (SELECT jp.code FROM jurisdiction_piece jp, pt
        WHERE jp.level = 'province' AND jp.country = 'VNM'
          AND (jp.valid_from IS NULL OR jp.valid_from <= :today)
          AND (jp.valid_to IS NULL OR jp.valid_to > :today)
          AND ST_Intersects(jp.geom, pt.g)
        ORDER BY jp.code LIMIT 1) AS province,
      (SELECT coalesce(array_agg(DISTINCT jp.code ORDER BY jp.code), '{}')
         FROM jurisdiction_piece jp, pt
        WHERE jp.level = 'province' AND jp.country = 'VNM' AND ST_Intersects(jp.geom, pt.g)
      ) AS provinces
    """
)

# the nearest Vietnamese post in force (migration 0023: posts have a country and a validity;
# a closed post is nobody's nearest), with its counterpart across the border: a stored post
# (`counterpart_post_id`) or only a name (`counterpart`). The sphere KNN (GiST on
# geom::geography) picks candidates; the spheroid distance orders them.
NEAREST_POST_SQL = text(
    """
    WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography AS g),
    candidates AS (
        SELECT p.id, ST_Distance(p.geom::geography, pt.g) AS d
          FROM border_post p, pt
         WHERE p.country = 'VNM'
           AND (p.valid_from IS NULL OR p.valid_from <= :today)
           AND (p.valid_to IS NULL OR p.valid_to > :today)
         ORDER BY p.geom::geography <-> pt.g
         LIMIT 8
    )
    SELECT p.id, p.code, p.name, p.name_local, p.kind, p.counterpart, p.counterpart_country,
           c.d, o.id AS other_id, o.code AS other_code, o.name AS other_name,
           o.name_local AS other_name_local, o.country AS other_country
      FROM candidates c
      JOIN border_post p ON p.id = c.id
      LEFT JOIN border_post o ON o.id = p.counterpart_post_id
     ORDER BY c.d, p.code
     LIMIT 1
    """
)


def _counterpart(post: Any) -> dict[str, Any] | None:
    """The post across the border from the nearest one: stored, or named only."""
    if post is None:
        return None
    if post.other_id is None:
        return {"name": post.counterpart, "country": post.counterpart_country, "post": None}
    return {
        "name": post.other_name_local or post.other_name,
        "country": post.other_country,
        "post": post.other_code,
    }


def chain_order(asker_level: str) -> list[str]:
    """The levels in the order the asker calls them: nearest to its own level first (the lower
    one on a tie), then the counterpart across the border."""
    at = LADDER.index(asker_level)
    levels = sorted(LADDER, key=lambda name: (abs(LADDER.index(name) - at), LADDER.index(name)))
    return [*levels, "counterpart"]


async def _names(session: AsyncSession, codes: list[str]) -> dict[str, str]:
    if not codes:
        return {}
    rows = await session.execute(
        text(
            "SELECT DISTINCT ON (code) code, coalesce(name_local, name) AS name FROM jurisdiction"
            " WHERE code = ANY(:c) ORDER BY code, valid_from DESC NULLS LAST"
        ),
        {"c": codes},
    )
    return {str(r.code): str(r.name) for r in rows}


async def contacts_for(
    session: AsyncSession,
    *,
    asker_id: int,
    identity: Identity,
    lon: float,
    lat: float,
    agency: str | None = None,
) -> dict[str, Any]:
    """The hotline chain for a point: at each level the units to call with their contacts, from
    the asker's level outwards — the commune police of the commune holding the point (today's
    map), the units of the nearest open border post, the provincial units of the province
    holding it (either era's code), the central units, and across the border the units of the
    nearest post's counterpart (units of another country at that post) with the counterpart's
    name. The asker (a key's own unit; admins may ask for any unit) is left out of the lists."""
    may_read_contacts(identity)
    if identity.role != "admin" and identity.unit_id != asker_id:
        raise Forbidden(
            f"a key asks for its own unit's chain (unit {identity.unit_id}), not for unit"
            f" {asker_id}",
            field="id",
        )
    asker = await _found(session, asker_id)
    today = eras.today()
    place = (await session.execute(PLACE_SQL, {"lon": lon, "lat": lat, "today": today})).one()
    post = (
        await session.execute(NEAREST_POST_SQL, {"lon": lon, "lat": lat, "today": today})
    ).one_or_none()
    u = Unit
    stmt = select(u).where(u.valid_to.is_(None) | (u.valid_to > today), u.id != asker.id)
    if agency:
        stmt = stmt.where(u.agency == agency)
    candidates = list((await session.execute(stmt)).scalars())
    provinces = set(place.provinces or [])
    if place.province:
        provinces.add(place.province)
    post_id = int(post.id) if post is not None else None
    # across the border: units of another country at our post, or at the stored counterpart
    other_id = int(post.other_id) if post is not None and post.other_id is not None else None

    def at_level(level: str, x: Unit) -> bool:
        home = x.country == HOME
        if level == "commune":
            return home and x.level == "commune" and x.jurisdiction_code == place.commune
        if level == "post":
            return home and x.level == "post" and post_id is not None and x.post_id == post_id
        if level == "province":
            return home and x.level == "province" and x.jurisdiction_code in provinces
        if level == "central":
            return home and x.level == "central"
        return not home and x.post_id is not None and x.post_id in (post_id, other_id)

    order = chain_order(asker.level if asker.country == HOME else "post")
    chosen = {
        level: sorted((x for x in candidates if at_level(level, x)), key=lambda x: x.code)
        for level in order
    }
    ids = [x.id for units in chosen.values() for x in units]
    contacts = await contacts_of(session, ids)
    posts = await _post_codes(session, {x.post_id for x in candidates if x.post_id is not None})
    names = await _names(session, [c for c in (place.commune, place.province) if c])

    def shown(x: Unit) -> dict[str, Any]:
        return _json(x, posts.get(x.post_id) if x.post_id else None) | {
            "contacts": contacts.get(x.id, [])
        }

    post_json = None
    if post is not None:
        post_json = {
            "code": post.code,
            "name": post.name,
            "name_local": post.name_local,
            "kind": post.kind,
            "distance_km": round(float(post.d) / 1000, 3),
        }
    return {
        "point": {"lon": lon, "lat": lat},
        "asker": _json(asker, posts.get(asker.post_id) if asker.post_id else None),
        "commune": (
            {"code": place.commune, "name": names.get(place.commune)} if place.commune else None
        ),
        "province": (
            {"code": place.province, "name": names.get(place.province)} if place.province else None
        ),
        "post": post_json,
        "counterpart": _counterpart(post),
        "chain": [{"level": level, "units": [shown(x) for x in chosen[level]]} for level in order],
    }
