"""Migrations upgrade, downgrade and upgrade again on an empty database."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text

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


async def _tables(engine) -> set[str]:  # type: ignore[no-untyped-def]
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


async def test_models_match_migrations(engine) -> None:  # type: ignore[no-untyped-def]
    """Autogenerate finds nothing to add: the ORM models and the migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from geoalchemy2 import alembic_helpers

    from app.models import Base

    def diff(conn):  # type: ignore[no-untyped-def]
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
