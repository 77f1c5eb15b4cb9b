"""Incident exports (GeoJSON, CSV, GeoPackage) of every matching incident, with flat memory.

Rows come from one server-side cursor (`session.stream`) in partitions, so an export is one
consistent snapshot and never holds more than a partition in Python. GeoJSON Features are
built by PostgreSQL (the list's `feature_expr`); CSV is written with the csv module; a
GeoPackage is appended to a temporary file a partition at a time (pyogrio), then streamed from
an already-unlinked file handle, so nothing is left on disk whatever happens to the request.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from sqlalchemy import Float, Select, Text, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import i18n
from app.geo import geojson
from app.geo.spatial import SRID_WGS84
from app.i18n import Lang
from app.incidents import schema
from app.incidents.filters import IncidentFilter
from app.incidents.models import Incident
from app.incidents.service import feature_expr

Format = Literal["geojson", "csv", "gpkg"]

GEOPACKAGE = "application/geopackage+sqlite3"
CSV = "text/csv; charset=utf-8"
MEDIA_TYPES: dict[str, str] = {"geojson": geojson.GEOJSON, "csv": CSV, "gpkg": GEOPACKAGE}
LAYER = "incidents"
UTF8_BOM = "\ufeff"

# Rows per partition: one partition is the most Python ever holds.
TEXT_CHUNK = 2_000
GPKG_CHUNK = 5_000
GPKG_VERSION = "1.2"
FILE_PIECE = 1 << 20  # bytes per read when streaming the GeoPackage

# the GeoPackage (pandas) type of each field type (app/incidents/schema.py)
FRAME_TYPES: dict[str, str] = {
    "uuid": "str",
    "string": "str",
    "integer": "int32",
    "number": "float64",
    "datetime": "datetime",
}
# the GeoPackage's attributes: the fields, in their order (the position is the geometry)
COLUMNS: dict[str, str] = {f.name: FRAME_TYPES[f.type] for f in schema.FIELDS}
# the CSV's columns: the fields, with the position as `lon`, `lat` after the id (the import
# reads `lon`, `lat`, `occurred_at`, `category`, `source`, `source_id` by name)
CSV_COLUMNS = ("id", "lon", "lat", *schema.PROPERTIES)
DATETIME_INDEXES = tuple(CSV_COLUMNS.index(f.name) for f in schema.FIELDS if f.type == "datetime")


@dataclass(frozen=True)
class Export:
    """A started export: the body as byte pieces, its media type, file name and (if known) size."""

    chunks: AsyncIterator[bytes]
    media_type: str
    filename: str
    size: int | None = None


def _ordered(stmt: Select[Any], filt: IncidentFilter) -> Select[Any]:
    """The list's selection and order (newest first), without a limit."""
    i = Incident
    return stmt.where(*filt.conditions()).order_by(i.occurred_at.desc(), i.id.desc())


def _rows_stmt(filt: IncidentFilter, lang: Lang) -> Select[Any]:
    """One row per matching incident with the CSV_COLUMNS, in the list order (numbers as
    floats: PostgreSQL rounds them as in the GeoJSON; Python reads floats faster than
    decimals)."""
    fields = schema.joined(lang)
    values = [
        cast(expr, Float) if schema.BY_NAME[name].type == "number" else expr
        for name, expr in fields.columns.items()
    ]
    i = Incident
    stmt = select(values[0], func.ST_X(i.geom), func.ST_Y(i.geom), *values[1:])
    return _ordered(stmt.select_from(fields.from_), filt)


def geojson_statement(filt: IncidentFilter, lang: Lang) -> Select[Any]:
    """One Feature (json text) per matching incident, in the list order."""
    f, from_ = feature_expr(lang)
    return _ordered(select(cast(f, Text)).select_from(from_), filt)


def rfc3339(value: datetime) -> str:
    """A UTC instant as RFC 3339 with `Z` (fractional seconds only when present)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _csv_text(rows: Sequence[Sequence[Any]]) -> str:
    """CSV lines (RFC 4180 quoting, CRLF) of rows in CSV_COLUMNS order."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in rows:
        values = list(row)
        for n in DATETIME_INDEXES:
            if values[n] is not None:
                values[n] = rfc3339(values[n])
        writer.writerow(values)
    return buf.getvalue()


async def geojson_chunks(
    *, session: AsyncSession, filt: IncidentFilter, lang: Lang, chunk: int = TEXT_CHUNK
) -> AsyncIterator[bytes]:
    """A FeatureCollection of every matching incident (Features made by PostgreSQL), in pieces."""
    stmt = geojson_statement(filt, lang)
    result = await session.stream(stmt.execution_options(yield_per=chunk))
    try:
        head = b'{"type":"FeatureCollection","features":['
        returned = 0
        async for rows in result.partitions(chunk):
            yield head + ",".join(r[0] for r in rows).encode()
            head = b","
            returned += len(rows)
        yield (b"" if returned else head) + b'],"numberReturned":%d}' % returned
    finally:
        await result.close()


async def csv_chunks(
    *,
    session: AsyncSession,
    filt: IncidentFilter,
    lang: Lang,
    bom: bool = False,
    chunk: int = TEXT_CHUNK,
) -> AsyncIterator[bytes]:
    """CSV (UTF-8, header row, optional BOM for Excel) of every matching incident, in pieces."""
    result = await session.stream(_rows_stmt(filt, lang).execution_options(yield_per=chunk))
    try:
        head = (UTF8_BOM if bom else "") + ",".join(CSV_COLUMNS) + "\r\n"  # plain names
        async for rows in result.partitions(chunk):
            yield (head + _csv_text(rows)).encode()
            head = ""
        if head:
            yield head.encode()
    finally:
        await result.close()


def _frame(rows: Sequence[Sequence[Any]]) -> gpd.GeoDataFrame:
    """Rows in CSV_COLUMNS order as a typed GeoDataFrame of the COLUMNS (Point, EPSG:4326)."""
    columns: list[Sequence[Any]] = (
        list(zip(*rows, strict=True)) if rows else [()] * len(CSV_COLUMNS)
    )
    by_name = dict(zip(CSV_COLUMNS, columns, strict=True))
    data: dict[str, pd.Series] = {}
    for name, kind in COLUMNS.items():
        values = by_name[name]
        if name == "id":
            data[name] = pd.Series([str(v) for v in values], dtype=object)
        elif kind == "str":
            data[name] = pd.Series(values, dtype=object)
        elif kind == "datetime":
            data[name] = pd.Series(values, dtype="datetime64[us, UTC]")
        else:
            data[name] = pd.Series(values, dtype=kind)
    frame = pd.DataFrame(data)
    points = shapely.points(
        np.asarray(by_name["lon"], dtype="float64"), np.asarray(by_name["lat"], dtype="float64")
    )
    return gpd.GeoDataFrame(frame, geometry=points, crs=f"EPSG:{SRID_WGS84}")


def _write_frame(path: Path, rows: Sequence[Sequence[Any]], *, append: bool) -> None:
    """Create the GeoPackage layer, or append rows to it (blocking; run in a thread)."""
    pyogrio.write_dataframe(
        _frame(rows),
        path,
        layer=LAYER,
        driver="GPKG",
        geometry_type="Point",
        append=append,
        # GeoPackage 1.2, not the bundled GDAL's 1.4: QGIS 3.22 and GDAL 3.6 (Debian 12) read
        # 1.4 with a warning ("may only be partially supported"); nothing here needs 1.3+
        dataset_options=None if append else {"VERSION": GPKG_VERSION},
    )


async def write_gpkg(
    *,
    session: AsyncSession,
    filt: IncidentFilter,
    path: Path,
    lang: Lang = i18n.DEFAULT,
    chunk: int = GPKG_CHUNK,
) -> int:
    """Write every matching incident to a new GeoPackage at `path`, a partition at a time."""
    result = await session.stream(_rows_stmt(filt, lang).execution_options(yield_per=chunk))
    written = 0
    try:
        async for rows in result.partitions(chunk):
            await asyncio.to_thread(_write_frame, path, rows, append=written > 0)
            written += len(rows)
    finally:
        await result.close()
    if written == 0:  # an empty layer that still has every column
        await asyncio.to_thread(_write_frame, path, [], append=False)
    return written


def _open_unlinked(path: Path) -> BinaryIO:
    """Open a finished file for reading and remove its folder (the open handle keeps the data)."""
    handle = path.open("rb")
    shutil.rmtree(path.parent, ignore_errors=True)
    return handle


async def gpkg_file(
    *, session: AsyncSession, filt: IncidentFilter, lang: Lang, chunk: int = GPKG_CHUNK
) -> BinaryIO:
    """A GeoPackage of every matching incident as an open file already removed from disk."""
    folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="borderwatch-export-"))
    try:
        path = folder / f"{LAYER}.gpkg"
        await write_gpkg(session=session, filt=filt, path=path, lang=lang, chunk=chunk)
        return await asyncio.to_thread(_open_unlinked, folder / f"{LAYER}.gpkg")
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)


async def file_chunks(handle: BinaryIO, *, piece: int = FILE_PIECE) -> AsyncIterator[bytes]:
    """The contents of an open file in pieces; the file is closed at the end."""
    try:
        while data := await asyncio.to_thread(handle.read, piece):
            yield data
    finally:
        handle.close()


async def _started(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Run `chunks` to its first piece now (query errors raise here), the rest on demand."""
    first = await anext(chunks)

    async def rest() -> AsyncIterator[bytes]:
        yield first
        async for piece in chunks:
            yield piece

    return rest()


def filename(fmt: Format, at: datetime) -> str:
    """The download name, e.g. borderwatch-incidents-20250101T120000Z.csv."""
    return f"borderwatch-incidents-{at.astimezone(UTC):%Y%m%dT%H%M%SZ}.{fmt}"


async def export(
    *,
    session: AsyncSession,
    filt: IncidentFilter,
    fmt: Format,
    bom: bool = False,
    chunk: int | None = None,
    lang: Lang = i18n.DEFAULT,
) -> Export:
    """Start an export of every matching incident; the body streams from the result's chunks."""
    name = filename(fmt, datetime.now(UTC))
    if fmt == "gpkg":
        handle = await gpkg_file(session=session, filt=filt, lang=lang, chunk=chunk or GPKG_CHUNK)
        size = os.fstat(handle.fileno()).st_size
        return Export(file_chunks(handle), GEOPACKAGE, name, size)
    if fmt == "csv":
        body = csv_chunks(session=session, filt=filt, lang=lang, bom=bom, chunk=chunk or TEXT_CHUNK)
    else:
        body = geojson_chunks(session=session, filt=filt, lang=lang, chunk=chunk or TEXT_CHUNK)
    return Export(await _started(body), MEDIA_TYPES[fmt], name)
