"""Writing the staged rows: INSERT … SELECT … ON CONFLICT (source, source_id) DO UPDATE … WHERE
something changed, in batches, each batch as soon as its places are derived. The history
triggers record each insert and each real change with action 'import'."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.geo.spatial import SRID_WGS84
from app.incidents.imports.derive import DERIVED_COLUMNS, Deriver, day_of
from app.incidents.imports.report import Progress
from app.incidents.imports.rows import GIVEN_BITS

# rows upserted per statement: a staging chunk, so each is written soon after its places are
# derived and the write after the last derivation is short (docs/performance.md, 2026-12-06)
WRITE_BATCH = 10_000


def upsert_sql(given: int) -> str:
    """INSERT ... SELECT ... ON CONFLICT for the staged rows that carry the fields in `given`."""
    carried = [name for name, bit in GIVEN_BITS.items() if given & bit]
    compared = ["occurred_at", "geom", *carried]
    columns = [
        "category", "severity", "status", "occurred_at", "geom", "location_precision_m",
        "description", "unit", "source", "source_id", "created_by", "updated_by",
        *DERIVED_COLUMNS,
    ]  # fmt: skip
    values = [
        "r.category", "r.severity", "r.status", "r.occurred_at",
        f"ST_SetSRID(ST_MakePoint(r.lon, r.lat), {SRID_WGS84})", "r.location_precision_m",
        "r.description", "r.unit", "r.source", "r.source_id", ":actor", ":actor",
        *(f"pl.{c}" for c in DERIVED_COLUMNS),
    ]  # fmt: skip
    sets = [f"{c} = EXCLUDED.{c}" for c in (*compared, *DERIVED_COLUMNS)]
    sets += ["version = i.version + 1", "updated_at = now()", "updated_by = EXCLUDED.updated_by"]
    old = ", ".join(f"i.{c}" for c in compared)
    new = ", ".join(f"EXCLUDED.{c}" for c in compared)
    return f"""
WITH w AS (
    INSERT INTO incident AS i ({", ".join(columns)})
    SELECT {", ".join(values)}
      FROM import_row r
      JOIN import_place pl
        ON pl.lon = r.lon AND pl.lat = r.lat AND pl.day = {day_of("r")}
     WHERE r.given = :given AND r.n BETWEEN :lo AND :hi
     ORDER BY r.n
    ON CONFLICT (source, source_id) WHERE source_id IS NOT NULL DO UPDATE
       SET {", ".join(sets)}
     WHERE i.deleted_at IS NULL AND ({old}) IS DISTINCT FROM ({new})
    RETURNING (i.xmax = 0) AS fresh
)
SELECT count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh) FROM w
"""


# a staged row whose place was not derived would silently be left out of the write
MISSING_PLACES = f"""
SELECT count(*) FROM import_row r
 WHERE NOT EXISTS (SELECT FROM import_place pl
                    WHERE pl.lon = r.lon AND pl.lat = r.lat AND pl.day = {day_of("r")})
"""


def _ranges(first: int, last: int, step: int) -> Iterator[tuple[int, int]]:
    lo = first
    while lo <= last:
        yield lo, min(lo + step - 1, last)
        lo += step


async def upsert(
    session: AsyncSession, *, actor: str, deriver: Deriver | None, progress: Progress
) -> tuple[int, int, int]:
    """Write the staged rows, each batch once its places are in import_place (delivered by
    `deriver`, or all there already when it is None); (staged, inserted, updated)."""
    stats = (
        await session.execute(
            text("SELECT count(*), coalesce(min(n), 0), coalesce(max(n), -1) FROM import_row")
        )
    ).one()
    staged, first, last = int(stats[0]), int(stats[1]), int(stats[2])
    groups = [
        int(g)
        for g in (
            await session.execute(text("SELECT DISTINCT given FROM import_row ORDER BY given"))
        ).scalars()
    ]
    batches = [(g, lo, hi) for g in groups for lo, hi in _ranges(first, last, WRITE_BATCH)]
    inserted = updated = 0
    progress("writing", 0, staged)
    for done, (given, lo, hi) in enumerate(batches, start=1):
        if deriver is not None:
            await deriver.deliver(session, upto=hi)
        fresh, changed = (
            await session.execute(
                text(upsert_sql(given)), {"given": given, "lo": lo, "hi": hi, "actor": actor}
            )
        ).one()
        inserted += int(fresh)
        updated += int(changed)
        progress("writing", staged * done // len(batches), staged)
    missing = int((await session.execute(text(MISSING_PLACES))).scalar_one())
    if missing:
        raise RuntimeError(f"{missing} staged rows had no derived place")
    return staged, inserted, updated
