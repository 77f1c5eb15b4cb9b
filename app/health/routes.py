"""Liveness and readiness."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app import migrate
from app.errors import database_failure, problem
from app.openapi import problems

router = APIRouter(tags=["health"])

# What /readyz checks; the 503 names the first that fails as `dependency`.
DATABASE, POSTGIS, MIGRATIONS, REFERENCE_DATA = (
    "database",
    "postgis",
    "migrations",
    "reference_data",
)
# PostGIS in this database, and the categories: they come with the migrations and every
# incident names one (the boundaries do not gate readiness: docs/observability.md)
CONTENT_SQL = text(
    "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'postgis'),"
    " EXISTS (SELECT FROM category)"
)
POSTGIS_AVAILABLE_SQL = text(
    "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'postgis')"
)


class NotReady(Exception):
    """A dependency of the service is missing; the detail says what to do."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(detail)
        self.dependency = dependency
        self.detail = detail


@router.get("/healthz", summary="The process is up")
async def healthz() -> Response:
    """Always 200 while the process serves requests."""
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="The database is reachable, migrated to head, with PostGIS and the categories",
    responses=problems(503),
)
async def readyz(request: Request) -> Response:
    """200 when every dependency is there, else 503 problem+json whose `dependency` names the
    first missing one: database, migrations (or postgis, when they cannot run without it),
    postgis or reference_data. With read replicas, the 200 lists each one's state (`ok`,
    `lagging`, `down`, `not_standby`), whether reads go to it and its lag in seconds."""
    engine = request.app.state.engine
    try:
        async with engine.connect() as conn:
            current = await _check(conn)
    except NotReady as missing:
        return problem(503, "Not ready", missing.detail, request, dependency=missing.dependency)
    except Exception as exc:  # any failure to reach the database means "not ready"
        detail = database_failure(exc) or f"database error: {type(exc).__name__}"
        return problem(503, "Not ready", detail, request, dependency=DATABASE)
    body: dict[str, object] = {"status": "ready", "database": "ok", "schema": current}
    replicas = getattr(request.app.state, "replicas", None)
    if replicas is not None:
        # each read replica as checked now; one that is down or too far behind is skipped
        # (its reads go to the primary) and never makes the service unready
        await replicas.check()
        body["replicas"] = replicas.report()
    return JSONResponse(body)


def _revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def _check(conn: AsyncConnection) -> str | None:
    """The schema's revision, once it is at head with PostGIS and the categories there."""
    current = await conn.run_sync(_revision)
    head = migrate.head_revision()
    if current != head:
        if not (await conn.execute(POSTGIS_AVAILABLE_SQL)).scalar():
            raise NotReady(
                POSTGIS,
                "PostGIS is not available on the PostgreSQL server (its package, e.g. Debian's"
                " postgresql-15-postgis-3, is not installed): the migrations cannot run",
            )
        raise NotReady(MIGRATIONS, f"database schema at {current}, expected {head}")
    postgis, categories = (await conn.execute(CONTENT_SQL)).one()
    if not postgis:
        raise NotReady(POSTGIS, "the PostGIS extension is not installed in the database")
    if not categories:
        raise NotReady(REFERENCE_DATA, "the incident categories are missing")
    return current
