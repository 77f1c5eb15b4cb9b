"""One import from start to commit: parse the header (or the document) outside any transaction,
then in one transaction stage and derive, reject or write, and commit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput
from app.incidents import rules
from app.incidents.imports import first_load as fast
from app.incidents.imports.csv_file import CsvFile
from app.incidents.imports.derive import DERIVER_TABLES, LOCK_BOUNDARIES, PLACE_DDL, Deriver
from app.incidents.imports.formats import Format
from app.incidents.imports.geojson_file import GeoJsonFile
from app.incidents.imports.report import (
    MODES,
    Clock,
    ImportReport,
    Mode,
    Progress,
    no_progress,
)
from app.incidents.imports.rows import Context, fold
from app.incidents.imports.staging import STAGING_DDL, stage
from app.incidents.imports.write import upsert

# the import's own, and those of the derivation (when this connection helped with it)
TEMP_TABLES = ("import_row", "import_place", "import_derived", *DERIVER_TABLES)


async def _categories(session: AsyncSession) -> dict[str, tuple[str, bool]]:
    rows = await session.execute(text("SELECT code, name_en, name_vi, active FROM category"))
    names: dict[str, tuple[str, bool]] = {}
    for code, name_en, name_vi, active in rows.all():
        for key in (name_vi, name_en, code):
            names[fold(key)] = (code, bool(active))
    return names


async def import_file(
    *,
    session: AsyncSession,
    path: Path,
    fmt: Format,
    mode: Mode = "all_or_nothing",
    source: str | None = None,
    actor: str,
    clock_skew_s: int = 300,
    statement_timeout_ms: int,
    first_load: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Validate a CSV or GeoJSON file and upsert its incidents in one transaction; every
    statement of it may run `statement_timeout_ms` (Settings.import_statement_timeout_ms: an
    import is not held to the requests' limit)."""
    report = progress or no_progress
    clock = Clock()
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}", field="mode")
    if source is not None and not 1 <= len(source.strip()) <= rules.SOURCE_MAX:
        raise InvalidInput(f"source must be 1 to {rules.SOURCE_MAX} characters", field="source")
    reader: CsvFile | GeoJsonFile = CsvFile(path) if fmt == "csv" else GeoJsonFile(path)
    # the header (CSV) or the whole document (GeoJSON) is parsed before the session is used:
    # no transaction is open while a large or wide file is read
    with clock("parse header or document"):
        await asyncio.to_thread(reader.open)
    try:
        await session.execute(
            text(
                "SELECT set_config('statement_timeout', :timeout, true),"
                " set_config('borderwatch.actor', :actor, true),"
                " set_config('borderwatch.action', 'import', true),"
                " set_config('borderwatch.bulk', 'on', true)"
            ),
            {"actor": actor, "timeout": str(int(statement_timeout_ms))},
        )
        ctx = Context(
            categories=await _categories(session),
            default_source=source.strip() if source else None,
            latest=datetime.now(UTC) + timedelta(seconds=clock_skew_s),
            clock_skew_s=clock_skew_s,
        )
        # no boundary load may commit while the rows are derived (derive.py)
        await session.execute(text(LOCK_BOUNDARIES))
        for name in TEMP_TABLES:
            await session.execute(text(f"DROP TABLE IF EXISTS pg_temp.{name}"))
        await session.execute(text(STAGING_DDL))
        for ddl in PLACE_DDL:
            await session.execute(text(ddl))
        async with Deriver(session, statement_timeout_ms) as deriver:
            with clock("read, validate, copy"):
                await stage(
                    session,
                    reader,
                    ctx,
                    keep_going=mode == "skip_invalid",
                    deriver=deriver,
                    progress=report,
                )
            errors = ctx.errors
            if errors.total and mode == "all_or_nothing":
                raise InvalidInput(
                    f"{len(errors.bad_rows)} of {ctx.rows} rows are invalid: nothing was "
                    "imported (fix them, or import in skip_invalid mode to write the valid rows)",
                    rows=ctx.rows,
                    invalid_rows=len(errors.bad_rows),
                    errors=errors.entries,
                    more_errors=errors.more,
                )
            await session.execute(text("ANALYZE import_row"))
            dropped = None
            if first_load:
                staged_rows = int(
                    (await session.execute(text("SELECT count(*) FROM import_row"))).scalar_one()
                )
                await fast.check_small(session, staged=staged_rows)
                # everything derived first: the write cannot wait for places once it holds
                # the lock on incident that dropping its indexes takes
                with clock("derive (rest)"):
                    await deriver.wait_all(session)
                    await deriver.close()
                with clock("first load: drop indexes"):
                    dropped = await fast.drop(session)
            with clock("write"):
                staged, inserted, updated = await upsert(
                    session, actor=actor, deriver=None if first_load else deriver, progress=report
                )
            if dropped is not None:
                with clock("first load: build indexes"):
                    await fast.rebuild(session, dropped)
            for step, seconds in deriver.seconds.items():
                clock.add(f"derive: {step}", seconds)
        for name in TEMP_TABLES:
            await session.execute(text(f"DROP TABLE IF EXISTS pg_temp.{name}"))
        await session.execute(
            text(
                "SELECT set_config('borderwatch.action', '', true),"
                " set_config('borderwatch.bulk', '', true)"
            )
        )
        with clock("commit"):
            await session.commit()
    except BaseException:
        await session.rollback()
        raise
    return ImportReport(
        mode=mode,
        rows=ctx.rows,
        inserted=inserted,
        updated=updated,
        unchanged=staged - inserted - updated,
        skipped=len(errors.bad_rows),
        errors=errors.entries,
        more_errors=errors.more,
        ignored_columns=ctx.ignored_columns,
        time_zone=str(rules.local_zone()),
        timings=clock.seconds,
    )
