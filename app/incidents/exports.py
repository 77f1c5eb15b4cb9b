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
import pandas as pd
import pyogrio
import shapely
from sqlalchemy import Float, Select, Text, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.geo import geojson
from app.geo.spatial import SRID_WGS84
from app.incidents.filters import IncidentFilter
from app.incidents.models import Incident
from app.incidents.service import feature_expr
from app.posts.models import BorderPost

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

# CSV header and GeoPackage attributes, in order, with the GeoPackage (pandas) type of each.
# `lon`, `lat`, `occurred_at`, `category`, `source`, `source_id` are what the import reads.
COLUMNS: dict[str, str] = {
    "id": "str",
    "category": "str",
    "severity": "int16",
    "status": "str",
    "occurred_at": "datetime",
    "reported_at": "datetime",
    "lon": "float64",
    "lat": "float64",
    "location_precision_m": "float64",
    "description": "str",
    "unit": "str",
    "source": "str",
    "source_id": "str",
    "country": "str",
    "province": "str",
    "commune": "str",
    "province_at_occurrence": "str",
    "commune_at_occurrence": "str",
    "jurisdictions": "str",
    "jurisdiction_method": "str",
    "offshore_km": "float64",
    "maritime_zone": "str",
    "border_segment": "str",
    "border_distance_km": "float64",
    "nearest_post": "str",
    "nearest_post_km": "float64",
    "created_at": "datetime",
    "updated_at": "datetime",
    "version": "int32",
}
DATETIME_INDEXES = tuple(i for i, kind in enumerate(COLUMNS.values()) if kind == "datetime")
JURISDICTION_SEPARATOR = "|"


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


def _rows_stmt(filt: IncidentFilter) -> Select[Any]:
    """One row per matching incident with the COLUMNS, in the list order."""
    i = Incident
    post = aliased(BorderPost)
    km = 3  # decimals of distances, as in the GeoJSON
    stmt = (
        select(
            i.id,
            i.category,
            i.severity,
            i.status,
            i.occurred_at,
            i.reported_at,
            func.ST_X(i.geom),
            func.ST_Y(i.geom),
            i.location_precision_m,
            i.description,
            i.unit,
            i.source,
            i.source_id,
            i.country_code,
            i.province_code,
            i.commune_code,
            i.province_at_occurrence,
            i.commune_at_occurrence,
            func.array_to_string(i.jurisdiction_path, JURISDICTION_SEPARATOR),
            i.jurisdiction_method,
            cast(geojson.rounded(i.offshore_km, km), Float),
            i.maritime_zone,
            i.border_segment,
            cast(geojson.rounded(i.border_distance_km, km), Float),
            post.code,
            cast(geojson.rounded(i.nearest_post_km, km), Float),
            i.created_at,
            i.updated_at,
            i.version,
        )
        .select_from(i)
        .outerjoin(post, post.id == i.nearest_post_id)
    )
    return _ordered(stmt, filt)


def rfc3339(value: datetime) -> str:
    """A UTC instant as RFC 3339 with `Z` (fractional seconds only when present)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _csv_text(rows: Sequence[Sequence[Any]]) -> str:
    """CSV lines (RFC 4180 quoting, CRLF) of rows in COLUMNS order."""
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
    *, session: AsyncSession, filt: IncidentFilter, chunk: int = TEXT_CHUNK
) -> AsyncIterator[bytes]:
    """A FeatureCollection of every matching incident (Features made by PostgreSQL), in pieces."""
    f, post = feature_expr()
    stmt = _ordered(
        select(cast(f, Text))
        .select_from(Incident)
        .outerjoin(post, post.id == Incident.nearest_post_id),
        filt,
    )
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
    *, session: AsyncSession, filt: IncidentFilter, bom: bool = False, chunk: int = TEXT_CHUNK
) -> AsyncIterator[bytes]:
    """CSV (UTF-8, header row, optional BOM for Excel) of every matching incident, in pieces."""
    result = await session.stream(_rows_stmt(filt).execution_options(yield_per=chunk))
    try:
        head = (UTF8_BOM if bom else "") + ",".join(COLUMNS) + "\r\n"  # plain names
        async for rows in result.partitions(chunk):
            yield (head + _csv_text(rows)).encode()
            head = ""
        if head:
            yield head.encode()
    finally:
        await result.close()


def _frame(rows: Sequence[Sequence[Any]]) -> gpd.GeoDataFrame:
    """Rows in COLUMNS order as a typed GeoDataFrame (Point, EPSG:4326)."""
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * len(COLUMNS)
    data: dict[str, pd.Series] = {}
    for (name, kind), values in zip(COLUMNS.items(), columns, strict=True):
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
        frame["lon"].to_numpy(dtype="float64"), frame["lat"].to_numpy(dtype="float64")
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
    *, session: AsyncSession, filt: IncidentFilter, path: Path, chunk: int = GPKG_CHUNK
) -> int:
    """Write every matching incident to a new GeoPackage at `path`, a partition at a time."""
    result = await session.stream(_rows_stmt(filt).execution_options(yield_per=chunk))
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
    *, session: AsyncSession, filt: IncidentFilter, chunk: int = GPKG_CHUNK
) -> BinaryIO:
    """A GeoPackage of every matching incident as an open file already removed from disk."""
    folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="borderwatch-export-"))
    try:
        await write_gpkg(session=session, filt=filt, path=folder / f"{LAYER}.gpkg", chunk=chunk)
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
) -> Export:
    """Start an export of every matching incident; the body streams from the result's chunks."""
    name = filename(fmt, datetime.now(UTC))
    if fmt == "gpkg":
        handle = await gpkg_file(session=session, filt=filt, chunk=chunk or GPKG_CHUNK)
        size = os.fstat(handle.fileno()).st_size
        return Export(file_chunks(handle), GEOPACKAGE, name, size)
    if fmt == "csv":
        body = csv_chunks(session=session, filt=filt, bom=bom, chunk=chunk or TEXT_CHUNK)
    else:
        body = geojson_chunks(session=session, filt=filt, chunk=chunk or TEXT_CHUNK)
    return Export(await _started(body), MEDIA_TYPES[fmt], name)
