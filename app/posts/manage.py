"""Border posts changed through the service: create, change (If-Match), close, read, history.

Who may write (routes and CLI share these checks): a national admin any post; an admin scoped
to a jurisdiction only posts inside it (the post's position lies in that jurisdiction, by the
rule that gives an incident its jurisdiction path: the unit that holds it, or at sea and just
beyond generalised boundaries the nearest one); an admin scoped to a cooperation area only posts
its scope shows (its members and their cooperation zone). Creating, moving or changing a post
outside → Forbidden (403), nothing written. Every write is audited (`audit_event`, before and
after) and leaves a history row (trigger, migration 0023); generated areas are made again and
the incidents whose nearest post may differ are derived again (app/posts/rederive.py).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import String, func, literal, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.scope import Scope
from app.auth.service import record
from app.errors import Conflict, Forbidden, InvalidInput, NotFound, PreconditionFailed
from app.geo import geojson, spatial
from app.incidents.schemas import PointGeometry
from app.jurisdictions import eras
from app.posts import areas, rederive
from app.posts.models import OPENING, BorderPost, BorderPostHistory, PostKind
from app.posts.service import managed_properties, properties

NAME_MAX = 200
CODE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
COUNTRY_PATTERN = r"^[A-Z]{3}$"
# how far from a border segment a post is still "on" it when none is named
BORDER_KM = 50.0
# jobs up to this many incidents run inside the request that caused them
INLINE_MAX = 5000

Opening = Literal["open", "restricted", "suspended", "closed"]
Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX)]
Text200 = Annotated[str, Field(max_length=NAME_MAX)]
Country = Annotated[str, Field(pattern=COUNTRY_PATTERN)]
Code = Annotated[str, Field(pattern=CODE_PATTERN)]
KindCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Border = Annotated[str, Field(pattern=r"^[A-Z]{3}-[A-Z]{3}$")]
assert set(OPENING) == set(Opening.__args__)  # type: ignore[attr-defined]


class PostFields(BaseModel):
    """Fields shared by creation and change."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name_local: Text200 | None = Field(default=None, description="the name with diacritics")
    border: Border | None = Field(
        default=None, description="border segment, e.g. VNM-LAO; default: the nearest"
    )
    province_code: Annotated[str, Field(max_length=32)] | None = Field(
        default=None, description="default: today's province at the position"
    )
    counterpart: Text200 | None = Field(default=None, description="the post across the border")
    counterpart_country: Country | None = None
    counterpart_post: Code | None = Field(
        default=None, description="the code of the counterpart when it is stored (its country)"
    )
    opening_status: Opening | None = Field(default=None, description="gates only")
    opening_hours: Text200 | None = Field(default=None, description="gates only")
    valid_from: date | None = None
    area: dict[str, Any] | None = Field(
        default=None,
        description="a drawn area of responsibility (GeoJSON Polygon or MultiPolygon);"
        " none: the generated share of the border zone",
    )
    source: Text200 | None = None


class PostIn(PostFields):
    """A new post."""

    code: Code
    name: Name
    kind: KindCode
    agency: Name
    country: Country = "VNM"
    position_approximate: bool = True
    location: PointGeometry
    valid_to: date | None = None


class PostPatch(PostFields):
    """A change: the fields given replace the stored ones (`area: null` returns to the
    generated area). The code, the country and the end date are not changed here (close)."""

    name: Name | None = None
    kind: KindCode | None = None
    agency: Name | None = None
    position_approximate: bool | None = None
    location: PointGeometry | None = None


def _set_context(actor: str, action: str) -> Any:
    """The statement that names the actor and action for the history trigger."""
    return select(
        func.set_config("borderwatch.actor", literal(actor), True),
        func.set_config("borderwatch.action", literal(action), True),
    )


async def _place(session: AsyncSession, lon: float, lat: float) -> Any:
    """What the incident rule says of a position today: its jurisdiction path (every unit of
    either era), today's province, the nearest border segment and the distance to it."""
    return (
        await session.execute(
            text(
                "SELECT d.jurisdiction_path, d.province_code, d.border_segment,"
                " d.border_distance_km FROM incident_derived("
                " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :day) d"
            ),
            {"lon": lon, "lat": lat, "day": eras.today()},
        )
    ).one()


async def may_write_at(session: AsyncSession, scope: Scope, lon: float, lat: float) -> bool:
    """Whether an admin of `scope` may have a post at this position."""
    if scope.national:
        return True
    place = await _place(session, lon, lat)
    path = list(place.jurisdiction_path or [])
    if scope.area is None:
        return scope.code in path
    cond = scope.condition(
        literal(path, ARRAY(String(32))),
        spatial.point(lon, lat),
        border_segment=literal(place.border_segment),
        border_distance_km=literal(place.border_distance_km),
    )
    return bool((await session.execute(select(cond))).scalar_one())


async def _require_scope(
    session: AsyncSession, scope: Scope, lon: float, lat: float, what: str
) -> None:
    if not await may_write_at(session, scope, lon, lat):
        raise Forbidden(
            f"{what} at ({lon:g}, {lat:g}) lies outside your scope ({scope.label}): only a"
            " national admin or an admin of that area may write it"
        )


async def _lon_lat(session: AsyncSession, post: BorderPost) -> tuple[float, float]:
    x, y = (await session.execute(select(func.ST_X(post.geom), func.ST_Y(post.geom)))).one()
    return float(x), float(y)


async def _found(session: AsyncSession, code: str, *, lock: bool = False) -> BorderPost:
    stmt = select(BorderPost).where(BorderPost.code == code)
    if lock:
        stmt = stmt.with_for_update()
    post = (await session.execute(stmt)).scalar_one_or_none()
    if post is None:
        raise NotFound(f"no border post '{code}'")
    return post


async def kinds(session: AsyncSession) -> list[dict[str, Any]]:
    """The kinds of post (active ones), in their order."""
    rows = await session.execute(
        select(PostKind).where(PostKind.active).order_by(PostKind.sort_order, PostKind.code)
    )
    return [
        {"code": k.code, "name_vi": k.name_vi, "name_en": k.name_en, "gate": k.gate}
        for k in rows.scalars()
    ]


async def add_kind(
    session: AsyncSession, *, code: str, name_vi: str, name_en: str, gate: bool, actor: str
) -> dict[str, Any]:
    """A new kind of post (the list is extensible like incident categories); audited."""
    if await session.get(PostKind, code) is not None:
        raise Conflict(f"the kind '{code}' exists already")
    top = (await session.execute(select(func.max(PostKind.sort_order)))).scalar() or 0
    session.add(
        PostKind(code=code, name_vi=name_vi, name_en=name_en, gate=gate, sort_order=top + 10)
    )
    await session.flush()
    after = {"code": code, "name_vi": name_vi, "name_en": name_en, "gate": gate}
    await record(
        session=session, actor=actor, action="post_kind_create",
        entity_type="post_kind", entity_id=code, after=after,
    )  # fmt: skip
    return after


async def _checked_fields(
    session: AsyncSession, values: dict[str, Any], *, country: str, area_source: str = "drawn"
) -> dict[str, Any]:
    """Check the values of a post against the data (kind, gate fields, counterpart, border);
    the columns to write (InvalidInput otherwise)."""
    out = dict(values)
    kind = await session.get(PostKind, values["kind"])
    if kind is None or not kind.active:
        known = ", ".join(k["code"] for k in await kinds(session))
        raise InvalidInput(f"unknown kind '{values['kind']}' (one of: {known})", field="kind")
    if not kind.gate:
        for f in ("opening_status", "opening_hours"):
            if values.get(f) is not None:
                raise InvalidInput(f"{f} applies to border gates only", field=f)
    code = values.pop("counterpart_post", None)
    out.pop("counterpart_post", None)
    if code is not None:
        other = (
            await session.execute(select(BorderPost).where(BorderPost.code == code))
        ).scalar_one_or_none()
        if other is None:
            raise InvalidInput(f"no stored post '{code}'", field="counterpart_post")
        if other.country == country:
            raise InvalidInput(
                f"the counterpart '{code}' is a post of {country}: it must be across the border",
                field="counterpart_post",
            )
        if values.get("counterpart_country") not in (None, other.country):
            raise InvalidInput(
                f"counterpart_country says {values['counterpart_country']}, the post"
                f" '{code}' is in {other.country}",
                field="counterpart_country",
            )
        out["counterpart_post_id"] = other.id
        out["counterpart_country"] = other.country
    elif "counterpart_post" in values:
        out["counterpart_post_id"] = None
    if values.get("border") is not None:
        found = await session.execute(
            text("SELECT 1 FROM border_segment WHERE code = :c"), {"c": values["border"]}
        )
        if found.first() is None:
            raise InvalidInput(f"no border segment '{values['border']}'", field="border")
    vf, vt = values.get("valid_from"), values.get("valid_to")
    if vf is not None and vt is not None and vt <= vf:
        raise InvalidInput("valid_to must be after valid_from", field="valid_to")
    if "area" in values:
        area = out.pop("area")
        if area is None:
            out["area"], out["area_source"], out["area_km"] = None, None, None
        else:
            out["area"] = func.ST_Multi(func.ST_GeomFromText(areas.checked_area(area), 4326))
            out["area_source"], out["area_km"] = area_source, None
    return out


async def get(session: AsyncSession, code: str, *, history: bool = False) -> dict[str, Any]:
    """One post as a GeoJSON Feature (with its area and, asked, its history)."""
    p = BorderPost
    f = geojson.feature(
        id_=p.code,
        geom=p.geom,
        properties=properties()
        | managed_properties()
        | {
            "id": p.id,
            "area": geojson.geometry_json(p.area),
            "created_at": p.created_at,
            "created_by": p.created_by,
        },
    )
    raw = await geojson.single(session, select(f.label("f")).where(p.code == code))
    if raw is None:
        raise NotFound(f"no border post '{code}'")
    feature: dict[str, Any] = orjson.loads(raw)
    if history:
        feature["history"] = await history_of(session, code)
    return feature


async def history_of(session: AsyncSession, code: str) -> list[dict[str, Any]]:
    """The post's history, oldest first: version, action, who, when, what changed."""
    post = await _found(session, code)
    h = BorderPostHistory
    rows = await session.execute(select(h).where(h.post_id == post.id).order_by(h.id))
    return [
        {
            "version": r.version,
            "action": r.action,
            "actor": r.actor,
            "at": r.changed_at.isoformat(),
            "changes": r.changes,
        }
        for r in rows.scalars()
    ]


def _audit_picture(feature: dict[str, Any]) -> dict[str, Any]:
    """A post for the audit log: its Feature without the area's coordinates."""
    props = dict(feature["properties"])
    props.pop("area", None)
    return {"geometry": feature["geometry"], "properties": props}


async def after_change(
    session: AsyncSession, post_ids: list[int], *, reason: str, actor: str
) -> dict[str, Any]:
    """Generated areas made again and the re-derivation planned (and, when small, run here,
    in the caller's transaction): the job's status."""
    await areas.generate(session=session, actor=actor)
    job_id, total = await rederive.plan(
        session=session, post_ids=post_ids, reason=reason, actor=actor
    )
    if total <= INLINE_MAX:
        return await rederive.run(session=session, job_id=job_id, commit=False)
    return await rederive.status(session=session, job_id=job_id)


async def create(
    session: AsyncSession,
    *,
    body: PostIn,
    scope: Scope,
    actor: str,
    action: str = "create",
    follow: bool = True,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A new post: the post and its re-derivation job (`follow` False: neither areas nor
    incidents are touched; the caller does it once for many posts). Forbidden outside the
    admin's scope; Conflict when the code exists; nothing written on any error."""
    await _require_scope(session, scope, body.location.lon, body.location.lat, "a post")
    if (
        await session.execute(select(BorderPost.id).where(BorderPost.code == body.code))
    ).first() is not None:
        raise Conflict(f"a border post '{body.code}' exists already (change it with PATCH)")
    values = body.model_dump(exclude={"location"})
    source = "imported" if action == "import" else "drawn"
    columns = await _checked_fields(session, values, country=body.country, area_source=source)
    place = await _place(session, body.location.lon, body.location.lat)
    if columns.get("border") is None and body.country == areas.HOME:
        km = place.border_distance_km
        columns["border"] = place.border_segment if km is not None and km <= BORDER_KM else None
    if columns.get("province_code") is None and body.country == areas.HOME:
        columns["province_code"] = place.province_code
    columns["source"] = columns.get("source") or "api"
    await session.execute(_set_context(actor, action))
    post = BorderPost(
        **columns,
        geom=spatial.point(body.location.lon, body.location.lat),
        created_by=actor,
        updated_by=actor,
    )
    session.add(post)
    await session.flush()
    job = await after_change(session, [post.id], reason=action, actor=actor) if follow else None
    after = await get(session, body.code)
    await record(
        session=session, actor=actor, action=f"post_{action}",
        entity_type="border_post", entity_id=body.code, after=_audit_picture(after),
    )  # fmt: skip
    return after, job


async def update(
    session: AsyncSession,
    *,
    code: str,
    patch: PostPatch,
    expected_version: int | None,
    scope: Scope,
    actor: str,
    action: str = "update",
    extra: dict[str, Any] | None = None,
    follow: bool = True,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Change a post (If-Match on its version): the post and its re-derivation job (see
    `create` for `follow`). Forbidden when the post, or its new position, lies outside the
    admin's scope."""
    post = await _found(session, code, lock=True)
    if expected_version is not None and post.version != expected_version:
        raise PreconditionFailed(
            f"border post '{code}' is at version {post.version}, not {expected_version}"
        )
    lon, lat = await _lon_lat(session, post)
    await _require_scope(session, scope, lon, lat, f"the post '{code}'")
    if patch.location is not None:
        await _require_scope(
            session, scope, patch.location.lon, patch.location.lat, f"a new position of '{code}'"
        )
    given = patch.model_fields_set - {"location"}
    for f in ("name", "kind", "agency", "position_approximate"):
        if f in given and getattr(patch, f) is None:
            raise InvalidInput(f"{f} cannot be removed", field=f)
    before = await get(session, code)
    stored = {
        f: getattr(post, f)
        for f in ("kind", "opening_status", "opening_hours", "valid_from", "valid_to")
    } | {"counterpart_country": post.counterpart_country}
    values = stored | {f: getattr(patch, f) for f in given} | (extra or {})
    source = "imported" if action == "import" else "drawn"
    columns = await _checked_fields(session, values, country=post.country, area_source=source)
    await session.execute(_set_context(actor, action))
    for f in given | set(extra or {}):
        if f == "counterpart_post":
            post.counterpart_post_id = columns["counterpart_post_id"]
            post.counterpart_country = columns.get("counterpart_country")
        elif f == "area":
            post.area, post.area_source, post.area_km = (
                columns["area"], columns["area_source"], columns["area_km"],
            )  # fmt: skip
        else:
            setattr(post, f, columns[f])
    if patch.location is not None:
        post.geom = spatial.point(patch.location.lon, patch.location.lat)
    post.version += 1
    post.updated_by = actor
    post.updated_at = func.now()
    await session.flush()
    job = await after_change(session, [post.id], reason=action, actor=actor) if follow else None
    after = await get(session, code)
    await record(
        session=session, actor=actor, action=f"post_{action}", entity_type="border_post",
        entity_id=code, before=_audit_picture(before), after=_audit_picture(after),
    )  # fmt: skip
    return after, job


async def close(
    session: AsyncSession,
    *,
    code: str,
    on: date | None,
    expected_version: int | None,
    scope: Scope,
    actor: str,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Close a post on `on` (exclusive; default today, Vietnam's calendar): it stays, with its
    valid_to and history; incidents from that day on get another nearest post."""
    day = on or eras.today()
    post = await _found(session, code)
    if post.valid_to is not None and post.valid_to <= day:
        raise Conflict(f"border post '{code}' is already closed since {post.valid_to}")
    if post.valid_from is not None and day <= post.valid_from:
        raise InvalidInput(
            f"a post in force from {post.valid_from} cannot close on {day}", field="on"
        )
    return await update(
        session, code=code, patch=PostPatch(), expected_version=expected_version, scope=scope,
        actor=actor, action="close", extra={"valid_to": day},
    )  # fmt: skip
