"""The fast path for a first load into an empty or small table: the secondary indexes and the
foreign keys of `incident` are dropped inside the import's transaction and built again (the
keys validated in one pass each) after the write, instead of being maintained row by row.

Dropping an index locks `incident` (ACCESS EXCLUSIVE) until the commit: every reader of
incidents waits for the whole import. That is why it is asked for (`--first-load`,
`?first_load=true`), never chosen by itself, and refused when the table already holds more rows
than the file brings. The primary key and the unique (source, source_id) index stay: the upsert
needs the latter to find re-imported rows. The definitions are read from the catalogue, so the
rebuilt objects are exactly the migrations' ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput

KEPT_INDEXES = ("pk_incident", "uq_incident_source_source_id")

INDEXES = """
SELECT i.indexname, i.indexdef FROM pg_indexes i
 WHERE i.schemaname = current_schema() AND i.tablename = 'incident'
   AND NOT i.indexname = ANY(:kept)
 ORDER BY i.indexname
"""
FOREIGN_KEYS = """
SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c
 WHERE c.conrelid = 'incident'::regclass AND c.contype = 'f'
 ORDER BY c.conname
"""


@dataclass(frozen=True)
class Dropped:
    """What was dropped, with the statements that make it again."""

    indexes: list[tuple[str, str]]  # (name, CREATE INDEX …)
    foreign_keys: list[tuple[str, str]]  # (name, FOREIGN KEY … definition)


async def check_small(session: AsyncSession, *, staged: int) -> None:
    """Refuse the fast path when `incident` holds more rows than the import brings."""
    held = int((await session.execute(text("SELECT count(*) FROM incident"))).scalar_one())
    if held > staged:
        raise InvalidInput(
            f"first_load is for an empty or small table: incident holds {held} rows, more than "
            f"the {staged} of this file (rebuilding its indexes would cost more than keeping "
            "them); import without first_load",
            field="first_load",
        )


async def drop(session: AsyncSession) -> Dropped:
    """Drop the secondary indexes and the foreign keys of `incident` (in the transaction)."""
    indexes = [
        (str(name), str(ddl))
        for name, ddl in (await session.execute(text(INDEXES), {"kept": list(KEPT_INDEXES)})).all()
    ]
    keys = [(str(name), str(ddl)) for name, ddl in (await session.execute(text(FOREIGN_KEYS)))]
    for name, _ in keys:
        await session.execute(text(f'ALTER TABLE incident DROP CONSTRAINT "{name}"'))
    for name, _ in indexes:
        await session.execute(text(f'DROP INDEX "{name}"'))
    return Dropped(indexes=indexes, foreign_keys=keys)


async def rebuild(session: AsyncSession, dropped: Dropped) -> None:
    """Build the dropped indexes again and add the foreign keys back (each checked once)."""
    # CREATE INDEX refuses a table with trigger events still queued for the commit
    await session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    for _, ddl in dropped.indexes:
        await session.execute(text(ddl))
    for name, definition in dropped.foreign_keys:
        await session.execute(text(f'ALTER TABLE incident ADD CONSTRAINT "{name}" {definition}'))
