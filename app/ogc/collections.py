"""The OGC collections: what each one reads, its properties, queryables and who may read it.

A `Source` binds a collection to one request (the principal's scope, the level of a
jurisdictions collection, the hot-spot grid computed for it): the FROM clause, the Feature id,
the geometry, the output properties and the queryables, all as SQL expressions. The items query
(service.py) is the same for every collection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    SQLColumnExpression,
    Text,
    cast,
    column,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app import i18n
from app.analysis import hotspots
from app.auth.scope import Scope
from app.auth.service import Identity
from app.borders.models import BorderSegment
from app.errors import Forbidden, NotFound, Unauthorized
from app.geo import geojson
from app.geo.spatial import SRID_WGS84
from app.incidents import schema as incident_schema
from app.incidents.filters import IncidentFilter
from app.incidents.models import STATUSES, Incident
from app.jurisdictions import eras
from app.jurisdictions import service as jurisdiction_service
from app.jurisdictions.models import LEVELS, Jurisdiction
from app.ogc.cql import Queryable, Queryables
from app.posts import service as post_service
from app.posts.models import KINDS, BorderPost
from app.units.models import Unit

READER_ROLES = ("officer", "analyst", "admin")  # as app.auth.deps.Reader
HOTSPOT_CELL_KM = 5.0  # the defaults of GET /analysis/hotspots
INCIDENTS, POSTS, SEGMENTS, HOTSPOTS = "incidents", "border_posts", "border_segments", "hotspots"
JURISDICTIONS = "jurisdictions_"  # + level
# properties of a jurisdiction that are no queryable: formed_from is a list of codes (no array
# comparison in the CQL2 subset served here)
NOT_QUERYABLE = ("formed_from",)


@dataclass(frozen=True)
class Info:
    """What the collection list says about a collection."""

    id: str
    title: str
    description: str
    access: str  # incidents | reference | aggregate
    geometry: str  # the GeoJSON geometry type of every item
    temporal: str | None = None  # the property `datetime` applies to


@dataclass(frozen=True)
class Source:
    """A collection bound to one request, as SQL expressions."""

    info: Info
    from_: FromClause
    id: Any
    geom: Any
    properties: dict[str, Any]
    queryables: Queryables
    order: tuple[Any, ...]  # default order (ORDER BY items); the id is always added last
    where: tuple[ColumnElement[bool], ...] = ()
    id_type: str = "string"  # uuid: a featureId that is not a UUID is simply not found
    # datetime parameter: (start, end) columns; an instant property gives the same column twice
    period: tuple[Any, Any] | None = None
    # conditions applied only when the request has no `datetime` (jurisdictions: the units in
    # force today; `datetime` selects those in force then instead)
    default_where: tuple[ColumnElement[bool], ...] = ()
    # a Feature read by id: the preferred row when several match (jurisdictions: a code
    # loaded in several versions gives the one in force today, else the newest)
    item_order: tuple[Any, ...] = ()
    # period is (valid_from, valid_to) with valid_to exclusive, as days of Vietnam's calendar
    period_end_exclusive: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # the FROM clause the Features are built from when it is not `from_` (incidents: the names'
    # joins, applied to the page's rows only)
    feature_from: FromClause | None = None
    # the type of each property that is no queryable (string when not given)
    property_types: dict[str, str] = field(default_factory=dict)

    def feature(self, names: list[str] | None = None) -> ColumnElement[Any]:
        """The Feature json, with only `names` among the properties when given."""
        if names is None:
            return self._whole_feature
        props = {n: self.properties[n] for n in names}
        return geojson.feature(id_=self.id, geom=self.geom, properties=props)

    @cached_property
    def _whole_feature(self) -> ColumnElement[Any]:
        # built once per Source: the incidents' Source is kept per scope (incidents())
        return geojson.feature(id_=self.id, geom=self.geom, properties=self.properties)


def _q(
    expr: SQLColumnExpression[Any], type_: str, title: str, enum: tuple[str, ...] | None = None
) -> Queryable:
    return Queryable(expr, type_, title, enum)


def infos(levels: list[str]) -> list[Info]:
    """Every collection, with one jurisdictions collection per level present."""
    out = [
        Info(
            INCIDENTS,
            "Incidents",
            "Security incidents (points) within your access scope; needs an officer, analyst"
            " or admin key.",
            "incidents",
            "Point",
            "occurred_at",
        ),
        Info(
            POSTS,
            "Border posts",
            "Border gates, border-guard stations, police, customs and coast-guard posts"
            " (positions approximate unless surveyed).",
            "reference",
            "Point",
        ),
    ]
    for level in LEVELS:
        if level in levels:
            out.append(
                Info(
                    JURISDICTIONS + level,
                    f"Jurisdictions: {level}",
                    f"Administrative areas at {level} level in force today (since 2025-07-01"
                    " Vietnam's 34 provinces and their communes); `datetime` gives those in"
                    " force then instead (e.g. the 63 former provinces before 2025-07-01).",
                    "reference",
                    "MultiPolygon",
                    "valid_from",
                )
            )
    out += [
        Info(
            SEGMENTS,
            "National border segments",
            "One MultiLineString per country pair, derived from the country polygons.",
            "reference",
            "MultiLineString",
        ),
        Info(
            HOTSPOTS,
            "Incident hot spots (Gi*)",
            f"Getis-Ord Gi* on a {HOTSPOT_CELL_KM:g} km hexagonal grid over the border zone"
            " (the defaults of /analysis/hotspots), computed per request over the incidents"
            " in your scope: an aggregate, open to every role.",
            "aggregate",
            "Polygon",
        ),
    ]
    return out


def may_read(info: Info, principal: Identity | None) -> bool:
    """Whether the principal may read this collection (anonymous only with public reference
    data, and then only reference collections)."""
    if info.access == "reference":
        return True
    if principal is None:
        return False
    return info.access == "aggregate" or principal.role in READER_ROLES


async def levels_present(session: AsyncSession) -> list[str]:
    """The jurisdiction levels that have rows."""
    rows = await session.execute(select(Jurisdiction.level).distinct())
    return [str(r[0]) for r in rows]


async def info(session: AsyncSession, collection_id: str) -> Info:
    """The collection with this id (NotFound otherwise); the jurisdiction levels present are
    looked up only for a jurisdictions collection (one round trip less for the others)."""
    levels = await levels_present(session) if collection_id.startswith(JURISDICTIONS) else []
    for i in infos(levels):
        if i.id == collection_id:
            return i
    raise NotFound(f"no collection '{collection_id[:64]}'", collection=collection_id[:64])


def check_access(i: Info, principal: Identity | None) -> None:
    """Forbidden (403) when the principal may not read the collection."""
    if may_read(i, principal):
        return
    if principal is None:
        raise Unauthorized("an API key is required (Authorization: Bearer <key>)")
    raise Forbidden(
        f"role '{principal.role}' may not read collection '{i.id}'; allowed: "
        + ", ".join(READER_ROLES),
        allowed_roles=list(READER_ROLES),
    )


async def source(
    *,
    session: AsyncSession,
    info: Info,
    principal: Identity | None,
    home: str,
    metadata_only: bool = False,
    lang: i18n.Lang = i18n.DEFAULT,
) -> Source:
    """The collection bound to this request (access already checked); with `metadata_only`
    the hot-spot grid is not computed (for descriptions that need only the queryables)."""
    if info.id == INCIDENTS:
        assert principal is not None
        return incidents(info, principal.scope, lang)
    if info.id == POSTS:
        return posts(info)
    if info.id == SEGMENTS:
        return segments(info)
    if info.id == HOTSPOTS:
        assert principal is not None
        if metadata_only:
            return hotspot_rows(info, b'{"features":[]}')
        return await hotspot_cells(session=session, info=info, principal=principal, home=home)
    return jurisdictions(info, info.id.removeprefix(JURISDICTIONS))


@lru_cache(maxsize=64)
def incidents(info: Info, scope: Scope, lang: i18n.Lang = i18n.DEFAULT) -> Source:
    """Incidents in a scope (the scope condition of GET /incidents) with the fields of
    app/incidents/schema.py; kept per scope and language, so the Feature expression and its
    columns are built once, not for every page.

    The page is chosen over the incident table and its nearest post (`from_`: filters, order,
    counts), then only its rows are joined to what the names need (`feature_from`). The names
    are for reading: filters and sorting use the codes beside them."""
    i = Incident
    fields = incident_schema.joined(lang)
    raw: dict[str, Any] = {
        "location_precision_m": i.location_precision_m,
        "offshore_km": i.offshore_km,
        "border_distance_km": i.border_distance_km,
        "nearest_post_km": i.nearest_post_km,
        # filters name the code without the page's join of the unit
        "reporting_unit": select(Unit.code).where(Unit.id == i.reporting_unit_id).scalar_subquery(),
    }
    nearest = aliased(BorderPost)
    queryables = {"geometry": _q(i.geom, "geometry", "geometry")} | {
        f.name: _q(
            nearest.code if f.name == "nearest_post" else raw.get(f.name, fields.columns[f.name]),
            f.type,
            f.name,
            STATUSES if f.name == "status" else None,
        )
        for f in incident_schema.FIELDS
        if f.name not in incident_schema.NAMES
    }
    return Source(
        info=info,
        from_=i.__table__.outerjoin(nearest, nearest.id == i.nearest_post_id),
        id=i.id,
        geom=i.geom,
        properties=fields.properties(),
        queryables=queryables,
        order=(i.occurred_at.desc(), i.id.desc()),
        where=tuple(IncidentFilter(scope=scope).conditions()),
        id_type="uuid",
        period=(i.occurred_at, i.occurred_at),
        feature_from=fields.from_,
    )


def posts(info: Info) -> Source:
    """Border posts."""
    p = BorderPost
    props: dict[str, Any] = post_service.properties()
    types = {"position_approximate": "boolean"}
    queryables = {"geometry": _q(p.geom, "geometry", "geometry")} | {
        name: _q(expr, types.get(name, "string"), name, KINDS if name == "kind" else None)
        for name, expr in props.items()
    }
    return Source(
        info=info,
        from_=p.__table__,
        id=p.code,
        geom=p.geom,
        properties=props,
        queryables=queryables,
        order=(p.code,),
    )


def segments(info: Info) -> Source:
    """National border segments."""
    s = BorderSegment
    props: dict[str, Any] = {
        "code": s.code,
        "country_a": s.country_a,
        "country_b": s.country_b,
        "length_km": geojson.rounded(s.length_km, 3),
        "source": s.source,
    }
    queryables = {
        "geometry": _q(s.geom, "geometry", "geometry"),
        "code": _q(s.code, "string", "code"),
        "country_a": _q(s.country_a, "string", "country_a"),
        "country_b": _q(s.country_b, "string", "country_b"),
        "length_km": _q(s.length_km, "number", "length_km"),
        "source": _q(s.source, "string", "source"),
    }
    return Source(
        info=info,
        from_=s.__table__,
        id=s.code,
        geom=s.geom,
        properties=props,
        queryables=queryables,
        order=(s.code,),
    )


def jurisdictions(info: Info, level: str) -> Source:
    """The units of one level in force today (Vietnam's calendar, as GET /jurisdictions); a
    `datetime` parameter selects the units in force then instead, of either era."""
    j = Jurisdiction
    today = eras.today()
    props: dict[str, Any] = jurisdiction_service.properties(j)
    types = {"valid_from": "date", "valid_to": "date", "geometry_approximate": "boolean"}
    queryables = {"geometry": _q(j.geom, "geometry", "geometry")} | {
        name: _q(expr, types.get(name, "string"), name)
        for name, expr in props.items()
        if name not in NOT_QUERYABLE
    }
    return Source(
        info=info,
        from_=j.__table__,
        id=j.code,
        geom=j.geom,
        properties=props,
        queryables=queryables,
        order=(j.code,),
        where=(j.level == level,),
        period=(j.valid_from, j.valid_to),
        default_where=(eras.in_force(j, today),),
        item_order=(eras.in_force(j, today).desc(), j.valid_from.desc().nulls_last()),
        period_end_exclusive=True,
        property_types=dict.fromkeys(NOT_QUERYABLE, "array"),
    )


async def hotspot_cells(
    *, session: AsyncSession, info: Info, principal: Identity, home: str
) -> Source:
    """The Gi* grid of /analysis/hotspots for its defaults, over the principal's incidents,
    as rows (the grid is computed by the analysis service and read back as a table)."""
    body = await hotspots.hotspots(
        session=session,
        filt=IncidentFilter(scope=principal.scope),
        area=hotspots.BORDER_ZONE,
        cell_km=HOTSPOT_CELL_KM,
        fdr=False,
        home=home,
    )
    return hotspot_rows(info, body)


def hotspot_rows(info: Info, body: bytes) -> Source:
    """Hot-spot cells read back from the analysis service's FeatureCollection."""
    cells = func.jsonb_array_elements(
        cast(literal(body.decode(), Text), JSONB)["features"]
    ).table_valued(column("value", JSONB))
    v = cells.c.value
    props = v["properties"]
    rows = select(
        v["id"].astext.label("id"),
        func.ST_SetSRID(func.ST_GeomFromGeoJSON(cast(v["geometry"], Text)), SRID_WGS84).label(
            "geom"
        ),
        props["count"].as_integer().label("count"),
        props["gi_z"].as_float().label("gi_z"),
        props["gi_p"].as_float().label("gi_p"),
        props["bin"].as_integer().label("bin"),
    ).subquery("hotspot")
    c = rows.c
    out: dict[str, Any] = {"count": c.count, "gi_z": c.gi_z, "gi_p": c.gi_p, "bin": c.bin}
    queryables = {
        "geometry": _q(c.geom, "geometry", "geometry"),
        "count": _q(c.count, "integer", "count"),
        "gi_z": _q(c.gi_z, "number", "gi_z"),
        "gi_p": _q(c.gi_p, "number", "gi_p"),
        "bin": _q(c.bin, "integer", "bin"),
    }
    return Source(
        info=info,
        from_=rows,
        id=c.id,
        geom=c.geom,
        properties=out,
        queryables=queryables,
        order=(c.id,),
        where=(true(),),
    )
