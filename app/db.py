"""Engine, sessions and the request-scoped session dependency."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import MetaData
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from app.config import Settings, async_url

SRID_WGS84 = 4326

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING)


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    """An asyncpg engine with a statement timeout and a pre-ping pool."""
    return create_async_engine(
        async_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        connect_args={
            "server_settings": {
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "application_name": "borderwatch",
                "TimeZone": "UTC",
                # asyncpg prepares every statement; a generic plan (after 5 runs) cannot see
                # the bbox or time values and picks plans that are 10x slower for lists
                "plan_cache_mode": "force_custom_plan",
                # JIT compiled the hot-spot count for 2 s of a 6 s query, and our statements
                # are short or dominated by PostGIS calls JIT cannot speed up
                "jit": "off",
            },
            "timeout": 10,
        },
    )


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it is missing; True when it was created."""
    u = make_url(async_url(url))
    conn = await asyncpg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, database="postgres"
    )
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", u.database)
        if exists:
            return False
        # identifiers cannot be bound as parameters; quote it the PostgreSQL way
        quoted = '"' + str(u.database).replace('"', '""') + '"'
        await conn.execute(f"CREATE DATABASE {quoted} ENCODING 'UTF8' TEMPLATE template0")
        return True
    finally:
        await conn.close()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, from the app's session factory."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with factory() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
