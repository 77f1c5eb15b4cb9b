"""Partitioning `incident` by time (docs/scaling.md): a copy of the table range-partitioned by
`occurred_at`, one partition per year in Vietnam's time, with the same columns, constraints,
indexes and triggers, filled with demo incidents, in the test's rolled-back transaction.

The services' own statements (compiled from the same SQLAlchemy code the routes run, not SQL
written again here) are explained against it by putting its schema first on the search_path:
a list page in a box and a time range, the field unit's nearby search, a point tile, and a
count by category in a time range. Each must read only the partitions its time range reaches
(pruned at planning) and read each through an index: the spatial ones through the GiST index
on the position, as on the plain table.

The planner is told to avoid sequential scans (`enable_seqscan = off`) on both tables: with a
few thousand rows it would rightly prefer them, and the question is whether an index path
exists on every partition, not which one is cheapest on a toy table. What partitioning
changes in the schema (the primary key, unique constraints, foreign keys into the table) is
checked too: PostgreSQL refuses the forms that do not hold the partition key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.analysis import stats
from app.auth.scope import Scope
from app.db import DriverStatement
from app.incidents import demo as demo_data
from app.incidents import listing, nearby
from app.incidents.filters import IncidentFilter
from app.tiles import incidents as incident_tiles
from app.tiles.tile import tile_address

VN = timezone(timedelta(hours=7))  # Asia/Ho_Chi_Minh: no daylight saving time
NOW = datetime(2025, 6, 1, tzinfo=UTC)
YEARS = range(2018, 2028)
SCHEMA = "part"  # the partitioned copy; `incident` in it shadows public.incident
NATIONAL = Scope(code=None, distance_m=10_000)
HCM = (106.70, 10.78)  # Hồ Chí Minh City: the densest part of the demo data


def bounds() -> dict[str, tuple[datetime | None, datetime | None]]:
    """Each partition's name and range [from, to) (None: unbounded)."""
    out: dict[str, tuple[datetime | None, datetime | None]] = {
        "incident_before_2018": (None, datetime(YEARS[0], 1, 1, tzinfo=VN))
    }
    for year in YEARS:
        out[f"incident_{year}"] = (
            datetime(year, 1, 1, tzinfo=VN),
            datetime(year + 1, 1, 1, tzinfo=VN),
        )
    return out


def reached(start: datetime | None, end: datetime | None) -> set[str]:
    """The partitions whose range meets [start, end] (computed here, from the bounds)."""
    return {
        name
        for name, (lo, hi) in bounds().items()
        if (start is None or hi is None or hi > start) and (end is None or lo is None or lo <= end)
    }


async def run(conn: AsyncConnection, sql: str) -> None:
    await conn.execute(text(sql))


async def build_partitioned_copy(conn: AsyncConnection) -> None:
    """part.incident: public.incident's columns, defaults and checks, range-partitioned by
    occurred_at per year; its indexes (the primary key and the unique one with occurred_at
    added); filled from public.incident; then its triggers."""
    await run(conn, f"CREATE SCHEMA {SCHEMA}")
    await run(
        conn,
        f"CREATE TABLE {SCHEMA}.incident (LIKE public.incident INCLUDING DEFAULTS"
        " INCLUDING CONSTRAINTS INCLUDING GENERATED) PARTITION BY RANGE (occurred_at)",
    )
    for name, (lo, hi) in bounds().items():
        low = "MINVALUE" if lo is None else f"'{lo.isoformat()}'"
        high = f"'{hi.isoformat()}'" if hi is not None else "MAXVALUE"
        await run(
            conn,
            f"CREATE TABLE {SCHEMA}.{name} PARTITION OF {SCHEMA}.incident"
            f" FOR VALUES FROM ({low}) TO ({high})",
        )
    # the primary key must hold the partition key: (id, occurred_at)
    await run(
        conn,
        f"ALTER TABLE {SCHEMA}.incident ADD CONSTRAINT pk_incident PRIMARY KEY (id, occurred_at)",
    )
    indexes = await conn.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = 'public' AND tablename = 'incident' ORDER BY indexname"
        )
    )
    for name, definition in indexes:
        if name == "pk_incident":
            continue
        made = definition.replace(" ON public.incident ", f" ON {SCHEMA}.incident ")
        assert made != definition
        if definition.startswith("CREATE UNIQUE INDEX"):
            # unique per partition only: the partition key must be part of it
            made = made.replace(")", ", occurred_at)", 1)
        await run(conn, made)
    await run(conn, f"INSERT INTO {SCHEMA}.incident SELECT * FROM public.incident")
    # both tables' statistics from the same rows: the plain table's would otherwise be what
    # autovacuum last saw of the earlier tests' data (an empty table, say), and the planner
    # would read the demo rows through whatever index such stale numbers make cheapest
    await run(conn, f"ANALYZE public.incident, {SCHEMA}.incident")
    # the same triggers, made after the copy (they would write history and events for it)
    triggers = await conn.execute(
        text(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger"
            " WHERE tgrelid = 'public.incident'::regclass AND NOT tgisinternal"
        )
    )
    for (definition,) in triggers.all():
        await run(conn, definition.replace(" ON public.incident ", f" ON {SCHEMA}.incident "))


DEMO = 3000  # incidents: a few years of them, hundreds around Hồ Chí Minh City


@pytest.fixture
async def partitioned(
    request: pytest.FixtureRequest, session: AsyncSession, connection: AsyncConnection
) -> AsyncConnection:
    """The test's transaction with demo incidents (DEMO, or as many as the test's indirect
    parameter says) and the partitioned copy."""
    count = int(getattr(request, "param", DEMO))
    await demo_data.load(session=session, count=count, seed=5, now=NOW)
    await session.flush()
    await build_partitioned_copy(connection)
    return connection


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def explain(
    conn: AsyncConnection, stmt: Select[Any], params: dict[str, Any], schema: str
) -> dict[str, Any]:
    """The plan of the service's statement with `schema` first on the search_path."""
    await run(conn, f"SET LOCAL search_path = {schema}, public")
    await run(conn, "SET LOCAL enable_seqscan = off")
    await run(conn, "SET LOCAL max_parallel_workers_per_gather = 0")
    await run(conn, "SET LOCAL plan_cache_mode = force_custom_plan")
    compiled = DriverStatement(stmt, conn.dialect, params)
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    # the comment names the schema: asyncpg keeps prepared statements by their text
    found = await raw.fetchval(
        f"EXPLAIN (FORMAT JSON) /* {schema} */ {compiled.sql}", *compiled.args(params)
    )
    await run(conn, "SET LOCAL search_path = public")
    # the app's connections decode json themselves
    plan: dict[str, Any] = (json.loads(found) if isinstance(found, str) else found)[0]["Plan"]
    return plan


async def parent_indexes(conn: AsyncConnection) -> dict[str, str]:
    """Each index of a partition -> the index of part.incident it belongs to; the indexes of
    public.incident -> themselves."""
    rows = await conn.execute(
        text(
            "SELECT c.relname, p.relname FROM pg_inherits h"
            " JOIN pg_class c ON c.oid = h.inhrelid JOIN pg_class p ON p.oid = h.inhparent"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'i' AND n.nspname = :s"
        ),
        {"s": SCHEMA},
    )
    out = {str(child): str(parent) for child, parent in rows}
    own = await conn.execute(
        text(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'incident'"
        )
    )
    return out | {str(name): str(name) for (name,) in own}


INCIDENT_TABLES = {"incident", *bounds()}


def scans(plan: dict[str, Any], indexes: dict[str, str]) -> dict[str, tuple[str, set[str]]]:
    """Each incident table (or partition) read: how (the scan node's type), and through which
    indexes (named by the parent table's index; a bitmap scan's are below it)."""
    out: dict[str, tuple[str, set[str]]] = {}
    for n in nodes(plan):
        relation = n.get("Relation Name")
        if relation in INCIDENT_TABLES:
            used = {indexes[m["Index Name"]] for m in nodes(n) if m.get("Index Name") in indexes}
            kind, before = out.get(relation, (n["Node Type"], set()))
            out[relation] = (kind, before | used)
    return out


def filt(**kw: Any) -> IncidentFilter:
    return IncidentFilter(scope=NATIONAL, **kw)


Statement = tuple[str, Select[Any], dict[str, Any], IncidentFilter, frozenset[str] | None]
GIST = frozenset({"ix_incident_geom"})
# a page is ordered by time with a LIMIT: walking the time index and stopping early is as good
# a path as the box's GiST index, and which one wins depends on the statistics of the moment
BOX_OR_TIME = GIST | {"ix_incident_occurred_at_id"}


def statements() -> list[Statement]:
    """The services' statements, named, with their parameters, their filters, and the index
    every partition they read must be read through (one of them; None: any index)."""
    lon, lat = HCM
    page = filt(
        bbox=(lon - 0.5, lat - 0.5, lon + 0.5, lat + 0.5),
        start=datetime(2024, 1, 1, tzinfo=VN),
        end=datetime(2024, 6, 30, 23, 59, 59, tzinfo=VN),
    )
    near = filt(start=NOW - timedelta(days=30))
    recent = filt(start=datetime(2025, 1, 1, tzinfo=VN), end=datetime(2025, 5, 31, tzinfo=VN))
    year = filt(
        start=datetime(2024, 1, 1, tzinfo=VN), end=datetime(2024, 12, 31, 23, 59, 59, tzinfo=VN)
    )
    n = 2**12  # the z12 tile over Hồ Chí Minh City
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    tile = tile_address("12", str(x), str(y))
    out: list[Statement] = [
        ("list page", listing._page_statement(page, 100, 500, False), {}, page, BOX_OR_TIME),
        (
            "nearby",
            nearby.statement(near),
            nearby.parameters(lon=lon, lat=lat, radius_m=5000, limit=50),
            near,
            # the last 30 days of a small demo are a few rows: read through the box's GiST index
            # or through an index holding the time (which one is the statistics' call; the
            # full suite's CI run chose ix_incident_created_by_occurred_at); never a Seq Scan
            None,
        ),
        (
            "count by category",
            stats._grouped("category", "province", "Asia/Ho_Chi_Minh", year),
            {},
            year,
            None,
        ),
    ]
    for name, f in (("point tile", recent), ("point tile, no time filter", filt())):
        made = incident_tiles.incident_tile_statement(
            f, tile, aggregate_only=False, cap=incident_tiles.MAX_TILE_POINTS
        )
        assert made is not None
        out.append((name, made[0], made[1], f, GIST))
    return out


async def test_queries_keep_their_indexes_and_prune(partitioned: AsyncConnection) -> None:
    conn = partitioned
    indexes = await parent_indexes(conn)
    per_partition = await conn.execute(
        text(f"SELECT tableoid::regclass::text, count(*) FROM {SCHEMA}.incident GROUP BY 1")
    )
    counts = {str(name).rsplit(".", 1)[-1]: int(n) for name, n in per_partition}
    assert sum(counts.values()) == DEMO and len(counts) >= 3  # the demo spans several years
    for name, stmt, params, f, index in statements():
        plain = scans(await explain(conn, stmt, params, "public"), indexes)
        split = scans(await explain(conn, stmt, params, SCHEMA), indexes)
        assert set(plain) == {"incident"}, name
        # pruned while planning: exactly the partitions the time range reaches
        assert set(split) == reached(f.start, f.end), (name, split)
        if f.start is not None:
            assert len(split) < len(bounds()), name
        # every partition read through an index: the spatial ones through the GiST index
        # (a page through it or the time index), like the plain table (which of the others a time range uses on a few thousand rows,
        # or any statement on an empty partition, is the planner's guess: any index then)
        for relation, (kind, used) in (plain | split).items():
            assert kind != "Seq Scan" and used, (name, relation, kind)
            if relation == "incident" or counts.get(relation):
                assert index is None or index & used, (name, relation, used)

    # the nearby search (a box the GiST index answers, the geodesic distance, nearest first,
    # LIMIT 50) gives the plain table's answer over the partitions
    lon, lat = HCM
    f = filt(start=NOW - timedelta(days=400))
    stmt = nearby.statement(f)
    params = nearby.parameters(lon=lon, lat=lat, radius_m=20_000, limit=50)
    answers = []
    for schema in ("public", SCHEMA):
        await run(conn, f"SET LOCAL search_path = {schema}, public")
        compiled = DriverStatement(stmt, conn.dialect, params)
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        answers.append(
            json.loads(await raw.fetchval(f"/* {schema} */ {compiled.sql}", *compiled.args(params)))
        )
    await run(conn, "SET LOCAL search_path = public")
    assert answers[0]["numberReturned"] == 50 and answers[0] == answers[1]


@pytest.mark.parametrize("partitioned", [300], indirect=True)
async def test_what_partitioning_changes(partitioned: AsyncConnection) -> None:
    conn = partitioned
    # same columns, in the same order, of the same types
    columns = """SELECT column_name, data_type, is_nullable FROM information_schema.columns
                 WHERE table_schema = :s AND table_name = 'incident' ORDER BY ordinal_position"""
    plain = (await conn.execute(text(columns), {"s": "public"})).all()
    split = (await conn.execute(text(columns), {"s": SCHEMA})).all()
    assert plain == split and len(plain) > 20
    # the triggers were accepted as they are (BEFORE ROW, statement-level with transition
    # tables, the deferred constraint trigger that bumps the layer version)
    named = """SELECT tgname FROM pg_trigger WHERE tgrelid = CAST(:t AS regclass)
               AND NOT tgisinternal AND tgparentid = 0 ORDER BY 1"""
    assert (await conn.execute(text(named), {"t": "public.incident"})).scalars().all() == (
        await conn.execute(text(named), {"t": f"{SCHEMA}.incident"})
    ).scalars().all()
    refused = [
        # a primary key or unique constraint without the partition key
        f"ALTER TABLE {SCHEMA}.incident ADD CONSTRAINT pk_id_only UNIQUE (id)",
        f"CREATE UNIQUE INDEX uq_source_only ON {SCHEMA}.incident (source, source_id)",
        # a foreign key to the incident's id alone (notes, photos, history)
        f"CREATE TABLE {SCHEMA}.note_by_id (incident_id uuid REFERENCES {SCHEMA}.incident (id))",
    ]
    for sql in refused:
        with pytest.raises(DBAPIError, match=r"partition|no unique constraint"):
            async with conn.begin_nested():
                await run(conn, sql)
    # a foreign key naming (id, occurred_at) holds
    async with conn.begin_nested():
        await run(
            conn,
            f"CREATE TABLE {SCHEMA}.note_by_key (incident_id uuid, occurred_at timestamptz,"
            f" FOREIGN KEY (incident_id, occurred_at) REFERENCES {SCHEMA}.incident (id, occurred_at))",
        )
    # an edit of occurred_at moves the row to its new year's partition, and the parent's
    # statement triggers see it as an update: the history records it as one
    async with conn.begin_nested() as moved:
        ident = (
            await conn.execute(text(f"SELECT id FROM {SCHEMA}.incident_2024 LIMIT 1"))
        ).scalar_one()
        # (the demo load named its own action for the rest of the transaction)
        await run(conn, "SELECT set_config('borderwatch.action', '', true)")
        where = await conn.execute(
            text(
                f"UPDATE {SCHEMA}.incident SET occurred_at = occurred_at + interval '1 year',"
                " version = version + 1 WHERE id = :i RETURNING tableoid::regclass::text"
            ),
            {"i": ident},
        )
        assert where.scalar_one() == f"{SCHEMA}.incident_2025"
        history = await conn.execute(
            text(
                "SELECT action, changes ? 'occurred_at' FROM incident_history"
                " WHERE incident_id = :i ORDER BY id DESC LIMIT 1"
            ),
            {"i": ident},
        )
        assert history.one() == ("update", True)
        await moved.rollback()
    # a row lands in the partition of its year in Vietnam's time (23:30 on 31 December 2024
    # in Hồ Chí Minh City is 16:30 UTC; a minute past midnight there is 2025)
    async with conn.begin_nested() as copy:
        await run(conn, f"ALTER TABLE {SCHEMA}.incident DISABLE TRIGGER USER")
        for at, year in (
            (datetime(2024, 12, 31, 23, 30, tzinfo=VN), 2024),
            (datetime(2025, 1, 1, 0, 1, tzinfo=VN), 2025),
        ):
            await run(conn, f"CREATE TEMP TABLE one AS SELECT * FROM {SCHEMA}.incident LIMIT 1")
            await conn.execute(
                text(
                    "UPDATE one SET id = gen_random_uuid(), occurred_at = CAST(:at AS timestamptz)"
                ),
                {"at": at},
            )
            landed = await conn.execute(
                text(
                    f"INSERT INTO {SCHEMA}.incident SELECT * FROM one RETURNING tableoid::regclass::text"
                )
            )
            await run(conn, "DROP TABLE one")
            assert landed.scalar_one() == f"{SCHEMA}.incident_{year}"
        await copy.rollback()
