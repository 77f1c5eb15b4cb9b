"""The one field list of an incident, as every output gives it: the API's Features (one
incident, lists, nearby), the OGC items, the GeoJSON, CSV and GeoPackage exports and the
incidents vector tiles. Each field has one name, one type and one SQL expression, so an
analyst's join, a QGIS style or a filter written for one output works on the others.

Readable names sit beside the codes (`category_name`, `province_name`, `border_segment_name`,
`nearest_post_name` …) in the reader's language (vi by default, with diacritics). They come from
joins (`Joined`), not from copies in the incident row: a renamed commune or category is renamed
everywhere at once. The joins are to small tables on their keys, so PostgreSQL hashes them once
for an export of a million rows and looks them up by index for a page of ten.

docs/fields.md is the table of these fields; tests/test_fields.py compares every output with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Date,
    FromClause,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    select,
)
from sqlalchemy.orm import aliased

from app import i18n
from app.geo import geojson
from app.i18n import Lang
from app.incidents.models import STATUSES, Category, Incident
from app.jurisdictions import eras
from app.jurisdictions.models import Jurisdiction
from app.posts.models import BorderPost
from app.units.models import Unit

FieldType = Literal["uuid", "string", "integer", "number", "datetime"]
JURISDICTION_SEPARATOR = "|"
KM_DECIMALS = 3  # distances in km: metres
PRECISION_DECIMALS = 1  # location_precision_m: decimetres, always written with a decimal point

# the status names are the interface's (the dashboard's and the field page's catalogue)
CATALOGUE = Path(__file__).resolve().parent.parent / "web" / "static" / "i18n" / "common.json"


@dataclass(frozen=True)
class Field:
    """One attribute of an incident in every output."""

    name: str
    type: FieldType
    description: str
    tile: bool = False  # carried by the point features of the incidents vector tiles


FIELDS: tuple[Field, ...] = (
    Field("id", "uuid", "The incident's id (a Feature's `id` in GeoJSON).", tile=True),
    Field("category", "string", "Category code (GET /categories).", tile=True),
    Field("category_name", "string", "The category's name in the reader's language.", tile=True),
    Field("severity", "integer", "1 (lowest) to 5 (highest).", tile=True),
    Field("status", "string", "Lifecycle status code (GET /statuses).", tile=True),
    Field("status_name", "string", "The status in the reader's language.", tile=True),
    Field("occurred_at", "datetime", "When it happened (UTC).", tile=True),
    Field("reported_at", "datetime", "When it was reported (UTC)."),
    Field("location_precision_m", "number", "Uncertainty of the position, metres."),
    Field("description", "string", "What happened (free text)."),
    Field("unit", "string", "The reporting unit.", tile=True),
    Field("reporting_unit", "string", "The reporting unit's code (GET /units)."),
    Field("reporting_unit_name", "string", "The reporting unit's name (English with lang=en)."),
    Field("source", "string", "Where the record came from (an import's source)."),
    Field("source_id", "string", "The record's id in its source."),
    Field("country", "string", "Country containing the point (ISO 3166-1 alpha-3).", tile=True),
    Field("province", "string", "Today's province (code).", tile=True),
    Field("province_name", "string", "Today's province (name).", tile=True),
    Field("commune", "string", "Today's commune (code).", tile=True),
    Field("commune_name", "string", "Today's commune (name).", tile=True),
    Field("province_at_occurrence", "string", "The province in force when it happened.", tile=True),
    Field("province_at_occurrence_name", "string", "Its name."),
    Field("commune_at_occurrence", "string", "The commune in force when it happened.", tile=True),
    Field("commune_at_occurrence_name", "string", "Its name."),
    Field(
        "jurisdictions",
        "string",
        "Every unit containing the point, of both eras, separated by `|` (VNM|VN-71|…).",
    ),
    Field("jurisdiction_method", "string", "How the units were found (contains, nearest …)."),
    Field("offshore_km", "number", "Distance from the coast at sea, km.", tile=True),
    Field("maritime_zone", "string", "Maritime zone at sea.", tile=True),
    Field("border_segment", "string", "Nearest national border (VNM-LAO …).", tile=True),
    Field("border_segment_name", "string", "Its name.", tile=True),
    Field("border_distance_km", "number", "Distance to that border, km.", tile=True),
    Field("nearest_post", "string", "Nearest border post (code).", tile=True),
    Field("nearest_post_name", "string", "Nearest border post (name).", tile=True),
    Field("nearest_post_km", "number", "Distance to that post, km.", tile=True),
    Field("created_at", "datetime", "When the record was created (UTC)."),
    Field("updated_at", "datetime", "When the record last changed (UTC)."),
    Field("created_by", "string", "Who created it (a key's principal, never the key)."),
    Field("updated_by", "string", "Who changed it last."),
    Field("version", "integer", 'Record version (the ETag is `"v<version>"`).'),
)
BY_NAME = {f.name: f for f in FIELDS}
PROPERTIES = tuple(f.name for f in FIELDS if f.name != "id")  # a Feature's properties
TILE_FIELDS = tuple(f.name for f in FIELDS if f.tile)
# the readable names beside codes: for reading, not for filtering (the codes are indexed)
NAMES = frozenset(f.name for f in FIELDS if f.name.endswith("_name"))


@cache
def status_names() -> dict[str, dict[str, str]]:
    """code → {lang: name}, from the interface's catalogue (common.json: `status.<code>`)."""
    messages: dict[str, dict[str, str]] = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    names = {code: messages[f"status.{code}"] for code in STATUSES}
    return names


def _local_day(moment: Any) -> ColumnElement[Any]:
    """SQL: the day of Vietnam's calendar of a timestamp (the validity dates of the units)."""
    return cast(func.timezone(eras.VIETNAM_TIME.key, moment), Date)


def _in_force_on(j: Any, day: ColumnElement[Any]) -> ColumnElement[bool]:
    return and_(
        (j.valid_from.is_(None)) | (j.valid_from <= day),
        (j.valid_to.is_(None)) | (j.valid_to > day),
    )


@dataclass(frozen=True)
class Joined:
    """An incident row joined to what its names need: `from_` replaces `FROM incident`
    (outer joins only: every incident stays, a missing name is null), `columns` are the fields'
    SQL expressions over it (`id` included), in FIELDS order."""

    from_: FromClause
    columns: dict[str, ColumnElement[Any]]

    def properties(self) -> dict[str, ColumnElement[Any]]:
        """The Feature properties (every field but `id`, which is the Feature's own)."""
        return {name: self.columns[name] for name in PROPERTIES}


def joined(
    lang: Lang,
    rows: FromClause | None = None,
    wanted: Collection[str] | None = None,
    *,
    lookups: bool = False,
) -> Joined:
    """The fields of the incident table (or of `rows`, a subquery with its columns) in `lang`;
    with `wanted`, only the joins those fields need are made (the others' names are NULL).
    With `lookups` (one row read: a Feature by id), each name is a scalar subquery instead of
    an outer join: PostgreSQL plans a one-table query and small lookups, not a ten-table join
    (2.1 of the 2.3 ms of a read by id were planning, on every request: the connections plan
    with each call's values, app/db.py).

    Names are looked up with fresh aliases on every call, so two calls may share a statement.
    Today's units are the ones in force today (Vietnam's day); the units at occurrence the ones
    in force on the day it happened: the versions of one code never overlap in time."""
    i: Any = Incident if rows is None else rows.c
    from_: Any = Incident.__table__ if rows is None else rows
    today = _local_day(func.now())
    then = _local_day(i.occurred_at)
    segment = i.border_segment

    found: dict[int, ColumnElement[bool]] = {}  # id(alias) -> its lookup's condition

    def join(
        names: str | tuple[str, ...] | None,
        table: Any,
        *on: Callable[[Any], ColumnElement[bool]],
    ) -> Any:
        """`table` aliased and outer-joined (or looked up) when one of the fields `names` is
        wanted (None: always), else None."""
        nonlocal from_
        asked = (names,) if isinstance(names, str) else names
        if wanted is not None and asked is not None and not set(asked) & set(wanted):
            return None
        alias = aliased(table)
        cond = and_(*(c(alias) for c in on))
        if lookups:
            found[id(alias)] = cond
        else:
            from_ = from_.outerjoin(alias, cond)
        return alias

    def val(expr: Any, *aliases: Any) -> Any:
        """`expr` over the joined aliases, or its scalar subquery (lookups; correlated to the
        incident row)."""
        if not lookups:
            return expr
        return select(expr).where(*(found[id(a)] for a in aliases)).limit(1).scalar_subquery()

    def unit(code: Any, day: Any) -> list[Callable[[Any], ColumnElement[bool]]]:
        return [lambda j: j.code == code, lambda j: _in_force_on(j, day)]

    def country(part: int) -> list[Callable[[Any], ColumnElement[bool]]]:
        code = func.split_part(segment, "-", part)
        return [lambda j: j.code == code, lambda j: j.level == "country",
                lambda j: _in_force_on(j, today)]  # fmt: skip

    post = join(None, BorderPost, lambda p: p.id == i.nearest_post_id)  # its code is a field
    # the reporting unit: joined when its code or name is wanted
    reporting = join(("reporting_unit", "reporting_unit_name"), Unit,
                     lambda u: u.id == i.reporting_unit_id)  # fmt: skip
    cat = join("category_name", Category, lambda c: c.code == i.category)
    province = join("province_name", Jurisdiction, *unit(i.province_code, today))
    commune = join("commune_name", Jurisdiction, *unit(i.commune_code, today))
    province_then = join(
        "province_at_occurrence_name", Jurisdiction, *unit(i.province_at_occurrence, then)
    )
    commune_then = join(
        "commune_at_occurrence_name", Jurisdiction, *unit(i.commune_at_occurrence, then)
    )
    home = join("border_segment_name", Jurisdiction, *country(1))
    other = join("border_segment_name", Jurisdiction, *country(2))

    def named(alias: Any, expr: Callable[[], Any]) -> Any:
        return null() if alias is None else expr()

    def place(j: Any) -> Any:
        return null() if j is None else val(i18n.display_name(j, lang), j)

    columns: dict[str, Any] = {
        "id": i.id,
        "category": i.category,
        "category_name": named(cat, lambda: val(cat.name_vi if lang == "vi" else cat.name_en, cat)),
        "severity": i.severity,
        "status": i.status,
        "status_name": _status_name(i.status, lang),
        "occurred_at": i.occurred_at,
        "reported_at": i.reported_at,
        "location_precision_m": geojson.rounded(i.location_precision_m, PRECISION_DECIMALS),
        "description": i.description,
        "unit": i.unit,
        "reporting_unit": named(reporting, lambda: val(reporting.code, reporting)),
        "reporting_unit_name": named(
            reporting,
            lambda: val(
                reporting.name
                if lang == "vi"
                else func.coalesce(reporting.name_en, reporting.name),
                reporting,
            ),
        ),
        "source": i.source,
        "source_id": i.source_id,
        "country": i.country_code,
        "province": i.province_code,
        "province_name": place(province),
        "commune": i.commune_code,
        "commune_name": place(commune),
        "province_at_occurrence": i.province_at_occurrence,
        "province_at_occurrence_name": place(province_then),
        "commune_at_occurrence": i.commune_at_occurrence,
        "commune_at_occurrence_name": place(commune_then),
        "jurisdictions": func.array_to_string(i.jurisdiction_path, JURISDICTION_SEPARATOR),
        "jurisdiction_method": i.jurisdiction_method,
        "offshore_km": geojson.rounded(i.offshore_km, KM_DECIMALS),
        "maritime_zone": i.maritime_zone,
        "border_segment": segment,
        "border_segment_name": named(
            home, lambda: val(_segment_name(home, other, lang), home, other)
        ),
        "border_distance_km": geojson.rounded(i.border_distance_km, KM_DECIMALS),
        "nearest_post": val(post.code, post),
        "nearest_post_name": val(i18n.post_display_name(post, lang), post),
        "nearest_post_km": geojson.rounded(i.nearest_post_km, KM_DECIMALS),
        "created_at": i.created_at,
        "updated_at": i.updated_at,
        "created_by": i.created_by,
        "updated_by": i.updated_by,
        "version": i.version,
    }
    assert tuple(columns) == tuple(BY_NAME), "the columns follow FIELDS"
    return Joined(from_, columns)


def _status_name(status: Any, lang: Lang) -> ColumnElement[Any]:
    names = status_names()
    return case(
        *((status == code, literal(names[code][lang])) for code in STATUSES),
        else_=cast(status, String),
    )


def _segment_name(home: Any, other: Any, lang: Lang) -> ColumnElement[Any]:
    """'Biên giới Việt Nam – Lào' / 'Vietnam – Laos border' (null when either is unknown)."""
    pair = i18n.display_name(home, lang) + literal(" – ") + i18n.display_name(other, lang)
    if lang == "vi":
        return literal("Biên giới ") + pair
    return pair + literal(" border")
