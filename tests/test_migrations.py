"""Migrations upgrade, downgrade and upgrade again on an empty database."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import migrate
from app.config import Settings
from app.db import create_engine, ensure_database
from app.main import create_app
from conftest import database_on, drop_database

TABLES = {
    "jurisdiction",
    "jurisdiction_piece",
    "category",
    "incident_history",
    "principal",
    "audit_event",
    "scope_zone",
    "jurisdiction_adjacency",
    "border_segment",
    "border_segment_piece",
    "border_post",
    "incident",
}


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        return set(rows.scalars())


async def test_round_trip(server_url: str, settings: Settings) -> None:
    name = f"bw_migrations_{uuid.uuid4().hex[:8]}"
    url = database_on(server_url, name)
    await ensure_database(url)
    engine = create_engine(url, settings)
    try:
        assert await migrate.current_revision(engine) is None
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        assert await _tables(engine) >= TABLES
        async with engine.connect() as conn:
            trigger = await conn.execute(
                text("SELECT count(*) FROM pg_trigger WHERE tgname = 'incident_derive'")
            )
            assert trigger.scalar_one() == 1
            gist = await conn.execute(
                text("SELECT count(*) FROM pg_indexes WHERE indexdef ILIKE '%USING gist%'")
            )
            assert gist.scalar_one() >= 4

        # one revision behind: the service says it is not ready, and which revision it expects
        head = migrate.head_revision()
        await migrate.downgrade(engine, "-1")
        behind = await migrate.current_revision(engine)
        assert behind is not None and behind != head
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(settings, engine=engine)),
            base_url="http://test",
        ) as c:
            r = await c.get("/readyz")
            assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
            assert r.json()["detail"] == f"database schema at {behind}, expected {head}"
            await migrate.upgrade(engine)
            assert (await c.get("/readyz")).json() == {
                "status": "ready",
                "database": "ok",
                "schema": head,
            }

        await migrate.downgrade(engine, "base")
        assert await migrate.current_revision(engine) is None
        assert not (TABLES & await _tables(engine))
        async with engine.connect() as conn:
            fn = await conn.execute(
                text("SELECT count(*) FROM pg_proc WHERE proname = 'incident_derive'")
            )
            assert fn.scalar_one() == 0

        await migrate.upgrade(engine)
        assert await _tables(engine) >= TABLES
    finally:
        await engine.dispose()
        await drop_database(server_url, name)


async def test_models_match_migrations(engine: AsyncEngine) -> None:
    """Autogenerate finds nothing to add: the ORM models and the migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from geoalchemy2 import alembic_helpers

    from app.models import Base

    def diff(conn: Connection) -> Any:  # alembic types the diff as Any
        ctx = MigrationContext.configure(
            conn,
            opts={
                "include_object": alembic_helpers.include_object,
                "compare_type": True,
                "target_metadata": Base.metadata,
            },
        )
        return compare_metadata(ctx, Base.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


# migrations/sql/: once a migration loads a file, the file never changes (a change is a new
# file, loaded by a new migration): an edited one would make an old revision build another
# schema than it did. A new file gets its line here.
FROZEN_SQL = {
    "incident_derive_v1.sql": "06cad6de2b4435b81fba535608caadae763ff0cf97d8c4b72b23eda8a09361a6",
    "incident_derive_v2.sql": "8790d62f4acf99efa269446f934ff3fe33e3cd50a075cda0d3baa6af970f39d5",
    "incident_derive_v3.sql": "bcbd8b4aed46a572f9f1d5554ca4308e485e1218130ca8f7666259fd50eb1b6f",
    "incident_derive_v4.sql": "bf7d291b4f1ec062ecd41dfc0d574a09c8ca2bc54d0d2b64eff0ed247ba33e4d",
    "incident_derive_v5.sql": "5955e96ad8264e1d570d50ef598d424e87b0a32f5a6bda3558592ac0559b6f81",
    "incident_derive_v6.sql": "65efef051f29b95249220fe657e8c7198fe52b518584cd5db438954c9c886998",
    "incident_derive_v7.sql": "0296284bb4c195d4e14d4c2d1052538a2b89c33a5d5194d27616a8dc0ae9a58c",
    "incident_events_v1.sql": "8589ef72c69b7974b7af45efb85e7fd7f17c8fcc6c6f3b20297836508af21bf1",
    "incident_history_v1.sql": "a68ff39a45879a8c3ac268b7f48d5c4a012f9f03f3442c12dc9a69c77586ccf9",
    "incident_history_v2.sql": "f72cf14522b98c84857ceed6b104f3bb0568384db5cdeffa4e0bb2e4f700faaf",
    "incident_history_v3.sql": "db54a0254eccf86b5f46e296a4ef7dbf8cf9ebb977c0bca2ab62984b4bed8dbe",
}


def test_sql_files_of_migrations_are_frozen() -> None:
    import hashlib

    from app.sqlfiles import SQL_DIR

    found = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in SQL_DIR.glob("*.sql")}
    assert found == FROZEN_SQL
    loaded = set()
    for migration in (SQL_DIR.parent / "versions").glob("*.py"):
        loaded |= {name for name in FROZEN_SQL if f'"{name}"' in migration.read_text()}
    assert loaded == set(FROZEN_SQL)  # every file belongs to a revision
    for migration in (SQL_DIR.parent / "versions").glob("*.py"):
        assert ".replace(" not in migration.read_text(), migration.name  # no patched SQL


def test_sql_files_split_into_statements() -> None:
    from app.sqlfiles import split

    script = """
    -- a comment; with a semicolon
    CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $fn$ SELECT 'a;b' || $$;$$ $fn$;
    /* block; comment */ SELECT ';' AS "semi;colon";
    SELECT 1 -- trailing; comment
    """
    assert split(script) == [
        "-- a comment; with a semicolon\n    CREATE FUNCTION f() RETURNS text LANGUAGE sql AS"
        " $fn$ SELECT 'a;b' || $$;$$ $fn$",
        "/* block; comment */ SELECT ';' AS \"semi;colon\"",
        "SELECT 1 -- trailing; comment",
    ]
