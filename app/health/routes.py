"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app import migrate
from app.errors import database_failure, problem
from app.openapi import problems

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> Response:
    """Always 200 while the process serves requests."""
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="The database is reachable and migrated to head",
    responses=problems(503),
)
async def readyz(request: Request) -> Response:
    """200 when PostgreSQL answers and the schema is at the newest migration, else 503."""
    engine = request.app.state.engine
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        current = await migrate.current_revision(engine)
    except Exception as exc:  # any failure to reach the database means "not ready"
        detail = database_failure(exc) or f"database error: {type(exc).__name__}"
        return problem(503, "Not ready", detail, request)
    head = migrate.head_revision()
    if current != head:
        return problem(503, "Not ready", f"database schema at {current}, expected {head}", request)
    return JSONResponse({"status": "ready", "database": "ok", "schema": current})
