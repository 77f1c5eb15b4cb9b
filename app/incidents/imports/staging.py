"""The staging table: the file's valid rows, validated in a worker thread a chunk at a time and
sent with binary COPY, each chunk's places handed to the deriver as soon as it is stored."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.incidents.imports.derive import Deriver, new_places
from app.incidents.imports.report import Progress
from app.incidents.imports.rows import Context

CHUNK_ROWS = 10_000  # rows validated (and COPYed) per step

STAGING_DDL = """
CREATE TEMP TABLE import_row (
    n integer PRIMARY KEY,
    given smallint NOT NULL,
    category text NOT NULL,
    severity smallint NOT NULL,
    status text NOT NULL,
    occurred_at timestamptz NOT NULL,
    lon float8 NOT NULL,
    lat float8 NOT NULL,
    location_precision_m float8,
    description text,
    unit text,
    source text NOT NULL,
    source_id text
) ON COMMIT DROP
"""
STAGING_COLUMNS = [
    "n", "given", "category", "severity", "status", "occurred_at", "lon", "lat",
    "location_precision_m", "description", "unit", "source", "source_id",
]  # fmt: skip


class Reader(Protocol):
    """A file reader: CsvFile or GeoJsonFile."""

    total_bytes: int

    @property
    def bytes_read(self) -> int: ...

    def open(self) -> None: ...

    def chunks(self, size: int, ctx: Context) -> Any: ...


async def stage(
    session: AsyncSession,
    reader: Reader,
    ctx: Context,
    *,
    keep_going: bool,
    deriver: Deriver,
    progress: Progress,
) -> None:
    """Validate the file chunk by chunk in a worker thread and COPY the valid rows to staging
    (after the first invalid row only when `keep_going`: the rest is read for the report)."""
    raw = await session.connection()
    conn = (await raw.get_raw_connection()).driver_connection
    assert conn is not None
    chunks = reader.chunks(CHUNK_ROWS, ctx)
    progress("reading", 0, reader.total_bytes)
    # the next chunk is validated while the server stores the previous one
    ahead = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
    try:
        while (records := await ahead) is not None:
            ahead = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
            progress("reading", reader.bytes_read, reader.total_bytes)
            progress("validating", ctx.rows, None)
            if records and (keep_going or not ctx.errors.total):
                await conn.copy_records_to_table(
                    "import_row", records=records, columns=STAGING_COLUMNS
                )
                lo, hi = records[0][0], records[-1][0]
                share = reader.bytes_read / max(reader.total_bytes, 1)
                deriver.submit(hi, await new_places(session, lo, hi), share_read=share)
                await deriver.deliver(session)
    finally:
        with contextlib.suppress(BaseException):  # after an error: the worker ends its chunk
            await asyncio.shield(ahead)
        with contextlib.suppress(ValueError):  # still running in its thread after a cancel
            chunks.close()
        deriver.finish()
    progress("validating", ctx.rows, ctx.rows)
