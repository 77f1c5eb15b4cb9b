"""GeoJSON FeatureCollections: each Feature validated as POST /incidents validates one
(schemas.parse_incident), after the import's own conventions (category names, the Feature id
as source_id, Borderwatch's read-only properties ignored)."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from app.errors import InvalidInput
from app.incidents import rules
from app.incidents.imports.rows import GIVEN_BITS, TEXT_FIELDS, Context, Record
from app.incidents.schemas import check_not_future, parse_incident

# Properties of Borderwatch's own GeoJSON (exports, GET /incidents) that an import ignores.
READ_ONLY_PROPERTIES = frozenset(
    {
        "country",
        "province",
        "jurisdictions",
        "jurisdiction_method",
        "border_segment",
        "border_distance_km",
        "nearest_post",
        "nearest_post_name",
        "nearest_post_km",
        "reporting_unit",
        "reporting_unit_name",
        "reported_at",
        "created_at",
        "updated_at",
        "created_by",
        "updated_by",
        "version",
    }
)


class GeoJsonFile:
    """A GeoJSON FeatureCollection, parsed whole (expect a few times its size in memory)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.total_bytes = path.stat().st_size
        self.bytes_read = 0
        self._features: list[Any] | None = None

    def open(self) -> None:
        """Parse the document and check its shape (422 when unusable); needs no database."""
        try:
            data = orjson.loads(self.path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"the file is not valid JSON: {exc}", field="body") from exc
        self.bytes_read = self.total_bytes
        if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
            raise InvalidInput("a GeoJSON import must be a FeatureCollection", field="type")
        features = data.get("features")
        if not isinstance(features, list):
            raise InvalidInput("the FeatureCollection has no 'features' list", field="features")
        self._features = features

    def chunks(self, size: int, ctx: Context) -> Generator[list[Record], None, None]:
        """Valid records, `size` features at a time (invalid ones go to ctx.errors)."""
        features, self._features = self._features, None
        assert features is not None, "open() first"
        out: list[Record] = []
        for number, feature in enumerate(features, start=1):
            ctx.rows += 1
            record = _feature(feature, number, ctx)
            if record is not None:
                out.append(record)
            if number % size == 0:
                yield out
                out = []
        yield out


def _feature(feature: Any, n: int, ctx: Context) -> Record | None:
    errors = ctx.errors
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        errors.add(n, None, "not a GeoJSON Feature")
        return None
    props = feature.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        errors.add(n, "properties", "properties must be an object")
        return None
    props = {k: v for k, v in props.items() if k not in READ_ONLY_PROPERTIES}
    given = sum(bit for name, bit in GIVEN_BITS.items() if name in props)
    given |= GIVEN_BITS["category"]
    fid = props.pop("id", None)
    if fid is None:
        fid = feature.get("id")
    usable = isinstance(fid, str | int) and not isinstance(fid, bool) and str(fid).strip()
    if props.get("source_id") is None and usable:
        props["source_id"] = str(fid).strip()
    if props.get("source_id") == "":
        props["source_id"] = None
    if props.get("source") in (None, ""):
        props["source"] = ctx.source_for(acled=False)
    props.setdefault("severity", rules.DEFAULT_SEVERITY)
    category = props.get("category")
    if isinstance(category, str) and category.strip():
        found = ctx.category(category)
        if isinstance(found, tuple):
            errors.add(n, "category", found[0])
            return None
        props["category"] = found
    body = {k: v for k, v in feature.items() if k not in ("id", "properties")}
    body["properties"] = props
    try:
        data = parse_incident(body)
        check_not_future(data.occurred_at, ctx.clock_skew_s)
    except ValidationError as exc:
        for e in exc.errors():
            errors.add(n, _column(e.get("loc", ())), _reason(e.get("msg", "")))
        return None
    ok = True
    for name in TEXT_FIELDS:
        value = getattr(data, name)
        if value is not None and "\x00" in value:
            errors.add(n, name, f"{name} contains a NUL character")
            ok = False
    assert data.source is not None
    if ok and data.source_id is not None and (dup := ctx.claim(data.source, data.source_id, n)):
        errors.add(n, "source_id", dup)
        ok = False
    if not ok:
        return None
    return (
        n,
        given,
        data.category,
        data.severity,
        data.status,
        data.occurred_at,
        data.location.lon,
        data.location.lat,
        data.location_precision_m,
        data.description,
        data.unit,
        data.source,
        data.source_id,
    )


def _column(loc: Any) -> str | None:
    parts = [str(p) for p in loc]
    if not parts:
        return None
    if parts[0] == "location":
        parts[0] = "geometry"
    return ".".join(parts)


def _reason(message: str) -> str:
    return message.removeprefix("Value error, ")
