"""The derived fields of the imported rows, once per distinct place (point and day), by the SQL
functions of migrations/sql/ that the incident_derive trigger calls too: the import restates no
rule and no constant of the derivation; it only chooses the circles the functions search in.

The trigger searches a circle of radius 0 around its incident; the import groups the points in
grid cells (FINE_DEG where at least DENSE_CELL points share one, else COARSE_DEG) and shares the
candidates of each cell's circle among its points: one or two geodesic distances per point
instead of an index search and the distances of its candidates (docs/decisions.md).

The places are derived on a second connection while the file is still being read and while
the first connection writes; the first connection derives the next chunk itself when it would
otherwise wait for it: on two cores that keeps both busy (docs/performance.md, 2026-12-06).
The importing transaction first takes SHARE locks on the tables the derivation reads, so no
boundary load can commit between the snapshot of the second connection and the import's commit
(a load waits for the import, then re-derives every incident, the imported ones included). A
re-imported row at the same point on the same day takes the fields stored on its incident
(looked up by the importing connection, which sees its own transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.geo.spatial import SRID_WGS84

# what the derivation functions read (and so what must not change while an import derives)
BOUNDARY_TABLES = (
    "jurisdiction",
    "jurisdiction_piece",
    "border_segment_piece",
    "border_segment",
    "border_post",
)
# the columns incident_derived_near answers (migrations/sql/incident_derive_v6.sql), with types
DERIVED_TYPES = {
    "country_code": "text",
    "province_code": "text",
    "commune_code": "text",
    "province_at_occurrence": "text",
    "commune_at_occurrence": "text",
    "jurisdiction_path": "text[]",
    "jurisdiction_method": "text",
    "offshore_km": "float8",
    "maritime_zone": "text",
    "border_segment": "text",
    "border_distance_km": "float8",
    "nearest_post_id": "integer",
    "nearest_post_km": "float8",
}
DERIVED_COLUMNS = tuple(DERIVED_TYPES)
PLACE_COLUMNS = ("lon", "lat", "day", *DERIVED_COLUMNS)


def day_of(row: str) -> str:
    """SQL: the day a row occurred, in Vietnam (the calendar of the units' validity)."""
    return f"incident_local_day({row}.occurred_at)"


# Grid cells (degrees): preparing a cell's circle costs as much as a few dozen of its points.
FINE_DEG = 0.1
COARSE_DEG = 0.4
# distinct points in a fine cell (expected in the whole file, from those seen so far and the
# share of the file read) before it gets a circle of its own
DENSE_CELL = 8

# --- the importing connection -----------------------------------------------------------------
LOCK_BOUNDARIES = f"LOCK TABLE {', '.join(BOUNDARY_TABLES)} IN SHARE MODE"
PLACE_DDL = (
    """
CREATE TEMP TABLE import_place (
    lon float8 NOT NULL, lat float8 NOT NULL, day date NOT NULL,
    """
    + ", ".join(f"{c} {t}" for c, t in DERIVED_TYPES.items())
    + """,
    PRIMARY KEY (lon, lat, day)
) ON COMMIT DROP
""",
    "CREATE TEMP TABLE import_derived (LIKE import_place) ON COMMIT DROP",
)
# The places of rows n in [lo, hi] that still need deriving, after those a re-import finds on
# its incidents (same source_id, point and day) have been stored.
_STORED = ", ".join(f"e.{c}" for c in DERIVED_COLUMNS)
KNOWN_PLACES = f"""
INSERT INTO import_place
SELECT DISTINCT ON (r.lon, r.lat, {day_of("r")}) r.lon, r.lat, {day_of("r")}, {_STORED}
  FROM import_row r
  JOIN incident e ON e.source = r.source AND e.source_id = r.source_id
 WHERE r.n BETWEEN :lo AND :hi AND r.source_id IS NOT NULL
   AND ST_X(e.geom) = r.lon AND ST_Y(e.geom) = r.lat AND {day_of("e")} = {day_of("r")}
ON CONFLICT DO NOTHING
"""
NEW_PLACES = f"""
SELECT DISTINCT r.lon, r.lat, {day_of("r")}
  FROM import_row r
 WHERE r.n BETWEEN $1 AND $2
   AND NOT EXISTS (SELECT FROM import_place p
                    WHERE p.lon = r.lon AND p.lat = r.lat AND p.day = {day_of("r")})
"""
# derived places arrive by COPY into import_derived; a place may have been found on an
# incident in the meantime (a later chunk): the first stored wins, they are equal
MERGE_DERIVED = (
    "INSERT INTO import_place SELECT * FROM import_derived ON CONFLICT DO NOTHING",
    "TRUNCATE import_derived",
)

# --- the deriving connection ------------------------------------------------------------------
DERIVER_DDL = (
    "CREATE TEMP TABLE import_new (lon float8 NOT NULL, lat float8 NOT NULL, day date NOT NULL,"
    " deg float8 NOT NULL)",
    f"CREATE TEMP TABLE import_xy (lon float8, lat float8, geom geometry(Point, {SRID_WGS84}),"
    " deg float8, cx integer, cy integer)",
    "CREATE INDEX ON import_xy USING gist (geom)",
    "CREATE TEMP TABLE import_cover (lon float8, lat float8, ids integer[])",
    "CREATE TEMP TABLE import_cell (deg float8, cx integer, cy integer, centre geography,"
    " piece_ids integer[], piece_m float8[], post_ids integer[], post_m float8[],"
    " PRIMARY KEY (deg, cx, cy))",
)
DERIVER_TABLES = ("import_new", "import_xy", "import_cover", "import_cell")
# the size of each point's cell is chosen when its chunk is submitted (Deriver.submit)
POINT_CELLS = f"""
INSERT INTO import_xy
SELECT x.lon, x.lat, ST_SetSRID(ST_MakePoint(x.lon, x.lat), {SRID_WGS84}), x.deg,
       floor(x.lon / x.deg)::int, floor(x.lat / x.deg)::int
  FROM (SELECT DISTINCT lon, lat, deg FROM import_new) x
"""
# the covering pieces of every point, piece by piece: each piece is prepared once for the
# points in its box (the trigger's incident_covering asks the index point by point)
COVER = """
INSERT INTO import_cover
SELECT x.lon, x.lat, array_agg(p.id ORDER BY p.id)
  FROM jurisdiction_piece p
 CROSS JOIN LATERAL (SELECT x.lon, x.lat FROM import_xy x WHERE ST_Covers(p.geom, x.geom)) x
 GROUP BY x.lon, x.lat
"""
NEW_CELLS = """
INSERT INTO import_cell
SELECT c.deg, c.cx, c.cy, k.centre, b.ids, b.distances_m, p.ids, p.distances_m
  FROM (SELECT DISTINCT x.deg, x.cx, x.cy FROM import_xy x
         WHERE NOT EXISTS (SELECT FROM import_cell e
                            WHERE e.deg = x.deg AND e.cx = x.cx AND e.cy = x.cy)) c
 CROSS JOIN LATERAL incident_cell_circle(c.deg, c.cx, c.cy) k
 CROSS JOIN LATERAL incident_border_candidates(k.centre, k.radius_m) b
 CROSS JOIN LATERAL incident_post_candidates(k.centre, k.radius_m) p
"""
# cell by cell: consecutive points measure the same first candidates, which PostGIS then
# keeps prepared
DERIVE_PLACES = f"""
SELECT n.lon, n.lat, n.day, {", ".join(f"d.{c}" for c in DERIVED_COLUMNS)}
  FROM (SELECT n.lon, n.lat, n.day, x.geom, x.deg, x.cx, x.cy
          FROM import_new n JOIN import_xy x ON x.lon = n.lon AND x.lat = n.lat
         ORDER BY x.deg, x.cx, x.cy OFFSET 0) n
  JOIN import_cell c ON c.deg = n.deg AND c.cx = n.cx AND c.cy = n.cy
  LEFT JOIN import_cover cv ON cv.lon = n.lon AND cv.lat = n.lat
 CROSS JOIN LATERAL incident_derived_near(n.geom, n.day, coalesce(cv.ids, '{{}}'), c.centre,
                                          c.piece_ids, c.piece_m, c.post_ids, c.post_m) d
"""
NEXT_CHUNK = ("TRUNCATE import_new", "TRUNCATE import_xy", "TRUNCATE import_cover")

Place = tuple[float, float, date]
PlaceInCell = tuple[float, float, date, float]  # and the size of its cell (degrees)


def engine_of(session: AsyncSession) -> AsyncEngine:
    """The engine behind a session bound to an engine or to a connection."""
    bind: Any = session.bind
    return bind if isinstance(bind, AsyncEngine) else bind.engine


async def driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a SQLAlchemy one (for COPY and prepared fetches)."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    return raw


async def new_places(session: AsyncSession, lo: int, hi: int) -> list[Place]:
    """Store the known places of rows lo..hi; the distinct places among them left to derive."""
    await session.execute(text(KNOWN_PLACES), {"lo": lo, "hi": hi})
    conn = await driver(await session.connection())
    return [(r[0], r[1], r[2]) for r in await conn.fetch(NEW_PLACES, lo, hi)]


@dataclass
class _Chunk:
    last_row: int  # the chunk's rows end with this row number
    places: list[PlaceInCell]


class _Steps:
    """Adds up the time of the derivation's steps, by connection."""

    def __init__(self, seconds: dict[str, float], where: str) -> None:
        self.seconds, self.where = seconds, where
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()

    def lap(self, step: str) -> None:
        now = self.loop.time()
        key = f"{step} ({self.where})"
        self.seconds[key] = self.seconds.get(key, 0.0) + now - self.started
        self.started = now


async def _derive(raw: Any, chunk: _Chunk, steps: _Steps) -> list[Any]:
    """The derived places of one chunk, on a connection with DERIVER_DDL's tables."""
    await raw.copy_records_to_table(
        "import_new", records=chunk.places, columns=("lon", "lat", "day", "deg")
    )
    await raw.execute(POINT_CELLS)
    steps.lap("points")
    await raw.execute(COVER)
    steps.lap("covering pieces")
    await raw.execute(NEW_CELLS)
    steps.lap("cells")
    derived: list[Any] = await raw.fetch(DERIVE_PLACES)
    for sql in NEXT_CHUNK:
        await raw.execute(sql)
    steps.lap("places")
    return derived


class Deriver:
    """Derives the submitted places, chunk by chunk, on a connection of its own; the importing
    connection takes the next chunk itself whenever it would otherwise wait for one (the
    rows of a write batch must all be derived first). Results reach import_place of the
    importing session between its other statements."""

    def __init__(self, session: AsyncSession, statement_timeout_ms: int) -> None:
        self._session = session
        self._timeout_ms = statement_timeout_ms
        self._pending: deque[_Chunk] = deque()
        self._submitted: list[int] = []  # last rows of the chunks, in order
        self._completed: set[int] = set()
        self._finished = False
        self._ready: list[Sequence[Any]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection | None = None
        self._helping = False  # the importing connection has DERIVER_DDL's tables
        self._density: Counter[tuple[int, int]] = Counter()  # distinct points per fine cell
        self.places = 0
        self.seconds: dict[str, float] = {}  # time spent deriving, by step and connection

    async def __aenter__(self) -> Deriver:
        self._conn = await engine_of(self._session).connect()
        # through SQLAlchemy first: that opens the transaction the driver's statements join
        await self._conn.execute(text(f"SET LOCAL statement_timeout = {int(self._timeout_ms)}"))
        raw = await driver(self._conn)
        for ddl in DERIVER_DDL:
            await raw.execute(ddl)
        self._task = asyncio.ensure_future(self._run(raw))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the second connection and give it back (its transaction rolled back)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.rollback()
            await conn.close()

    def submit(self, last_row: int, places: list[Place], *, share_read: float) -> None:
        """Derive these places (of the chunk that ends with row `last_row`, when `share_read`
        of the file has been read)."""
        self._submitted.append(last_row)
        if places:
            self._pending.append(_Chunk(last_row, self._in_cells(places, share_read)))
        else:
            self._completed.add(last_row)
        self._changed.set()

    def _in_cells(self, places: list[Place], share_read: float) -> list[PlaceInCell]:
        """The places with the size of their cell: FINE_DEG where the fine cell is expected to
        hold DENSE_CELL distinct points in the whole file (the point itself, and the others
        seen so far scaled to the whole file), else COARSE_DEG. Counted here, in the order of
        the file, whichever connection derives the chunk."""
        fine: dict[tuple[float, float], tuple[int, int]] = {
            (lon, lat): (math.floor(lon / FINE_DEG), math.floor(lat / FINE_DEG))
            for lon, lat, _ in places
        }
        self._density.update(fine.values())
        scale = 1 / max(share_read, 1e-6)
        deg = {
            point: FINE_DEG if (self._density[cell] - 1) * scale + 1 >= DENSE_CELL else COARSE_DEG
            for point, cell in fine.items()
        }
        return [(lon, lat, day, deg[lon, lat]) for lon, lat, day in places]

    def finish(self) -> None:
        """No more chunks will come."""
        self._finished = True
        self._changed.set()

    def _done_upto(self) -> int:
        """Every row up to this number has its places derived."""
        done = 0
        for last_row in self._submitted:
            if last_row not in self._completed:
                break
            done = last_row
        return done

    async def deliver(self, session: AsyncSession, *, upto: int | None = None) -> None:
        """Store the derived places in import_place of the importing session: those ready
        now, or (with `upto`) all those of the rows up to `upto`, deriving chunks here rather
        than waiting for the second connection."""
        while upto is not None and self._done_upto() < upto:
            self._raise_if_failed()
            if self._pending:
                await self._derive_here(session, self._pending.popleft())
            elif self._task is None or self._task.done():
                raise RuntimeError(f"the derivation stopped before row {upto}")
            else:
                self._changed.clear()
                await self._changed.wait()
        self._raise_if_failed()
        if not self._ready:
            return
        ready, self._ready = self._ready, []
        conn = await driver(await session.connection())
        await conn.copy_records_to_table("import_derived", records=ready, columns=PLACE_COLUMNS)
        for sql in MERGE_DERIVED:
            await conn.execute(sql)

    async def wait_all(self, session: AsyncSession) -> None:
        """Deliver everything, after the last chunk (see finish) has been derived."""
        await self.deliver(session, upto=self._submitted[-1] if self._submitted else 0)

    async def _derive_here(self, session: AsyncSession, chunk: _Chunk) -> None:
        raw = await driver(await session.connection())
        if not self._helping:
            for ddl in DERIVER_DDL:
                await raw.execute(ddl)
            self._helping = True
        derived = await _derive(raw, chunk, _Steps(self.seconds, "importing connection"))
        await raw.copy_records_to_table("import_derived", records=derived, columns=PLACE_COLUMNS)
        for sql in MERGE_DERIVED:
            await raw.execute(sql)
        self.places += len(derived)
        self._completed.add(chunk.last_row)

    def _raise_if_failed(self) -> None:
        if self._task is not None and self._task.done() and not self._task.cancelled():
            exc = self._task.exception()
            if exc is not None:
                raise exc

    async def _run(self, raw: Any) -> None:
        steps = _Steps(self.seconds, "second connection")
        try:
            while True:
                while not self._pending and not self._finished:
                    self._changed.clear()
                    await self._changed.wait()
                if not self._pending:
                    return
                chunk = self._pending.popleft()
                steps.started = steps.loop.time()
                # (not self._ready.extend(await …): that would extend the list that a
                # delivery may swap out during the await)
                derived = await _derive(raw, chunk, steps)
                self._ready.extend(derived)
                self.places += len(chunk.places)
                self._completed.add(chunk.last_row)
                self._changed.set()
        finally:
            self._changed.set()
