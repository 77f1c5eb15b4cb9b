"""Import and export of border posts: CSV, GeoJSON, GeoPackage (docs/posts.md).

Export: every post (closed ones too, with their valid_to), the columns of FIELDS, the position
as lon/lat (CSV) or a Point (GeoJSON, GeoPackage); a drawn or imported area travels as WKT in
`area_wkt` (CSV, GeoPackage) or as a GeoJSON geometry in `area` (GeoJSON). Generated areas are
not exported: they are made again where the file is imported.

Import (all-or-nothing, as incident imports): every row is checked like an API write (the
same models, the same scope rule: a scoped admin's file may only hold posts inside its area);
a row whose code exists changes that post (its valid_to is not changed by a file: close it), the
others create posts. Any invalid row rejects the whole file with a per-row report
(InvalidInput: `errors` [{row, column, reason}]) and nothing is written. Areas and the incidents'
nearest posts follow once, after the last row.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import tempfile
from datetime import date
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import orjson
import pandas as pd
import pyogrio
import shapely
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.scope import Scope
from app.errors import AppError, InvalidInput
from app.geo.spatial import SRID_WGS84
from app.incidents.exports import GPKG_VERSION, MEDIA_TYPES
from app.incidents.imports.report import MAX_REPORTED_ERRORS, RowErrors
from app.posts import manage
from app.posts.models import BorderPost

Format = Literal["csv", "geojson", "gpkg"]
FORMATS: tuple[Format, ...] = ("csv", "geojson", "gpkg")
LAYER = "border_posts"
MAX_ROWS = 10_000
FIELDS = (
    "code", "name", "name_local", "kind", "agency", "country", "border", "province_code",
    "counterpart", "counterpart_country", "counterpart_post", "opening_status", "opening_hours",
    "position_approximate", "valid_from", "valid_to", "source",
)  # fmt: skip
# what a change by import may set (code and country name the post; valid_to: close it)
PATCHABLE = frozenset(FIELDS) - {"code", "country", "valid_to"}


def media_type(fmt: Format) -> str:
    """The media type of an export."""
    return MEDIA_TYPES[fmt]


def guess(content_type: str | None, filename: str | None = None) -> Format | None:
    """The format from a media type or a file name."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    by_media: dict[str, Format] = {
        "text/csv": "csv",
        "application/csv": "csv",
        "application/geo+json": "geojson",
        "application/json": "geojson",
        "application/geopackage+sqlite3": "gpkg",
    }
    if media in by_media:
        return by_media[media]
    by_suffix: dict[str, Format] = {
        ".csv": "csv",
        ".geojson": "geojson",
        ".json": "geojson",
        ".gpkg": "gpkg",
    }
    return by_suffix.get(Path(filename or "").suffix.lower())


# ---------------------------------------------------------------------------------------------
# export


async def _rows(session: AsyncSession) -> list[dict[str, Any]]:
    p = BorderPost
    counterpart = select(BorderPost.code).where(BorderPost.id == p.counterpart_post_id)
    q = select(
        *(getattr(p, f) for f in FIELDS if f != "counterpart_post"),
        counterpart.scalar_subquery().label("counterpart_post"),
        func.ST_X(p.geom).label("lon"),
        func.ST_Y(p.geom).label("lat"),
        func.ST_AsText(p.area).label("area_wkt"),
        p.area_source,
    ).order_by(p.code)
    q = q.correlate_except(BorderPost)
    out = []
    for r in (await session.execute(q)).mappings():
        row = {f: r[f] for f in FIELDS} | {"lon": r["lon"], "lat": r["lat"]}
        row["area_wkt"] = r["area_wkt"] if r["area_source"] in ("drawn", "imported") else None
        out.append(row)
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    columns = [*FIELDS, "lon", "lat", "area_wkt"]
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_text(r[c]) for c in columns])
    return out.getvalue().encode("utf-8")


def _geojson(rows: list[dict[str, Any]]) -> bytes:
    features = []
    for r in rows:
        props = {f: (r[f].isoformat() if isinstance(r[f], date) else r[f]) for f in FIELDS}
        if r["area_wkt"]:
            props["area"] = shapely.geometry.mapping(shapely.from_wkt(r["area_wkt"]))
        features.append(
            {
                "type": "Feature",
                "id": r["code"],
                "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
                "properties": props,
            }
        )
    return orjson.dumps({"type": "FeatureCollection", "features": features})


def _gpkg(rows: list[dict[str, Any]]) -> bytes:
    columns = [*FIELDS, "area_wkt"]
    frame = pd.DataFrame(
        {
            c: pd.Series(
                [r[c].isoformat() if isinstance(r[c], date) else r[c] for r in rows],
                dtype="bool" if c == "position_approximate" else object,
            )
            for c in columns
        }
    )
    points = shapely.points([r["lon"] for r in rows], [r["lat"] for r in rows])
    gdf = gpd.GeoDataFrame(frame, geometry=points, crs=f"EPSG:{SRID_WGS84}")
    folder = Path(tempfile.mkdtemp(prefix="borderwatch-posts-"))
    try:
        path = folder / f"{LAYER}.gpkg"
        pyogrio.write_dataframe(
            gdf, path, layer=LAYER, driver="GPKG", geometry_type="Point",
            dataset_options={"VERSION": GPKG_VERSION},
        )  # fmt: skip
        return path.read_bytes()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def export(*, session: AsyncSession, fmt: Format) -> bytes:
    """Every post in one file of the format."""
    rows = await _rows(session)
    if fmt == "csv":
        return _csv(rows)
    if fmt == "geojson":
        return _geojson(rows)
    return await asyncio.to_thread(_gpkg, rows)


# ---------------------------------------------------------------------------------------------
# import


def _nullable(value: Any) -> Any:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, str) and value.strip() == "":
        return None
    return value


def _from_flat(row: dict[Any, Any]) -> dict[str, Any]:
    """A CSV or GeoPackage row (lon, lat, area_wkt) as the fields of a post."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if not isinstance(key, str):  # cells beyond the header's columns
            out.setdefault("_extra_cells", True)
            continue
        v = _nullable(value)
        if key in ("lon", "lat", "area_wkt", "geometry") or v is None:
            continue
        if key == "position_approximate" and isinstance(v, str):
            low = v.strip().lower()
            v = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(
                low, v
            )
        out[key] = v
    lon, lat = _nullable(row.get("lon")), _nullable(row.get("lat"))
    if lon is not None or lat is not None:
        try:
            out["location"] = {"type": "Point", "coordinates": [float(lon), float(lat)]}
        except (TypeError, ValueError):
            out["location"] = {"type": "Point", "coordinates": [lon, lat]}
    wkt = _nullable(row.get("area_wkt"))
    if wkt is not None:
        try:
            out["area"] = shapely.geometry.mapping(shapely.from_wkt(str(wkt)))
        except shapely.errors.GEOSException:
            out["area"] = {"type": "unreadable WKT"}
    return out


def _read_csv(data: bytes) -> list[dict[str, Any]]:
    try:
        textual = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput("the CSV file is not UTF-8", field="body") from exc
    reader = csv.DictReader(io.StringIO(textual))
    if not reader.fieldnames or "code" not in reader.fieldnames:
        raise InvalidInput("the CSV file needs a header row with at least `code`", field="body")
    return [_from_flat(dict(r)) for r in reader]


def _read_geojson(data: bytes) -> list[dict[str, Any]]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the GeoJSON file is not JSON: {exc}", field="body") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise InvalidInput("a GeoJSON import is one FeatureCollection", field="body")
    rows = []
    for feature in doc.get("features") or []:
        if not isinstance(feature, dict):
            rows.append({"_error": "not a Feature"})
            continue
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            rows.append({"_error": "properties is not an object"})
            continue
        props = dict(props)
        if feature.get("geometry") is not None:
            props["location"] = feature["geometry"]
        rows.append({k: v for k, v in props.items() if v is not None})
    return rows


def _read_gpkg(data: bytes) -> list[dict[str, Any]]:
    folder = Path(tempfile.mkdtemp(prefix="borderwatch-posts-in-"))
    try:
        path = folder / "in.gpkg"
        path.write_bytes(data)
        try:
            gdf = pyogrio.read_dataframe(path)
        except Exception as exc:  # pyogrio raises its own errors for unreadable files
            raise InvalidInput(f"the GeoPackage cannot be read: {exc}", field="body") from exc
        rows = []
        for record in gdf.to_dict("records"):
            geom = record.pop("geometry", None)
            if geom is not None and not geom.is_empty and geom.geom_type == "Point":
                record["lon"], record["lat"] = geom.x, geom.y
            rows.append(_from_flat({str(k): v for k, v in record.items()}))
        return rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def read(data: bytes, fmt: Format) -> list[dict[str, Any]]:
    """The rows of a file, as fields of posts (not checked yet)."""
    if fmt != "gpkg" and b"\x00" in data:
        raise InvalidInput("the file contains a NUL character, which is not allowed", field="body")
    rows = (
        _read_csv(data) if fmt == "csv" else _read_geojson(data) if fmt == "geojson" else
        _read_gpkg(data)
    )  # fmt: skip
    if len(rows) > MAX_ROWS:
        raise InvalidInput(f"a file of posts holds at most {MAX_ROWS} rows", field="body")
    return rows


def _validation_errors(exc: ValidationError, row: int, errors: RowErrors) -> None:
    for e in exc.errors():
        loc = [str(x) for x in e["loc"]]
        column = loc[0] if loc else None
        errors.add(row, column, str(e["msg"]))


async def import_rows(
    *, session: AsyncSession, rows: list[dict[str, Any]], scope: Scope, actor: str
) -> dict[str, Any]:
    """Write every row or none (see the module's text): the report and the job."""
    errors = RowErrors()
    results: list[dict[str, Any]] = []
    ids: list[int] = []
    seen: set[str] = set()
    outer = await session.begin_nested()
    for n, raw in enumerate(rows, start=1):
        if "_error" in raw:
            errors.add(n, None, str(raw["_error"]))
            continue
        if raw.pop("_extra_cells", False):
            errors.add(n, None, "the row has more cells than the header has columns")
            continue
        code = raw.get("code")
        if isinstance(code, str) and code in seen:
            errors.add(n, "code", f"the code '{code}' is in the file twice")
            continue
        if isinstance(code, str):
            seen.add(code)
        existing = (
            (
                await session.execute(select(BorderPost).where(BorderPost.code == code))
            ).scalar_one_or_none()
            if isinstance(code, str)
            else None
        )
        try:
            async with session.begin_nested():
                if existing is None:
                    body = manage.PostIn.model_validate(raw)
                    feature, _ = await manage.create(
                        session, body=body, scope=scope, actor=actor, action="import",
                        follow=False,
                    )  # fmt: skip
                    results.append({"row": n, "code": body.code, "result": "inserted"})
                    ids.append(int(feature["properties"]["id"]))
                    continue
                fields = {
                    k: v for k, v in raw.items() if k in PATCHABLE or k in ("location", "area")
                }
                unknown = set(raw) - set(FIELDS) - {"location", "area"}
                if unknown:
                    raise InvalidInput(
                        f"unknown columns: {', '.join(sorted(unknown))}", field=sorted(unknown)[0]
                    )
                if raw.get("country", existing.country) != existing.country:
                    raise InvalidInput("a post's country cannot change", field="country")
                patch = manage.PostPatch.model_validate(fields)
                feature, _ = await manage.update(
                    session, code=existing.code, patch=patch, expected_version=None,
                    scope=scope, actor=actor, action="import", follow=False,
                )  # fmt: skip
                results.append({"row": n, "code": existing.code, "result": "updated"})
                ids.append(existing.id)
        except ValidationError as exc:
            _validation_errors(exc, n, errors)
        except AppError as exc:
            field = exc.extra.get("field")
            errors.add(n, str(field) if field else None, exc.detail)
    if errors.total:
        await outer.rollback()
        bad = len(errors.bad_rows)
        raise InvalidInput(
            f"{bad} of {len(rows)} rows are invalid: nothing was imported",
            rows=len(rows),
            invalid_rows=bad,
            errors=errors.entries,
            more_errors=errors.more,
        )
    job = await manage.after_change(session, ids, reason="import", actor=actor) if ids else None
    await outer.commit()
    return {
        "rows": len(rows),
        "inserted": sum(r["result"] == "inserted" for r in results),
        "updated": sum(r["result"] == "updated" for r in results),
        "results": results,
        "errors": [],
        "max_reported_errors": MAX_REPORTED_ERRORS,
        "rederive": job,
    }
