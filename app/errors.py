"""Domain errors (no HTTP inside) and their rendering as application/problem+json (RFC 9457)."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("borderwatch")

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    """Base of every error a service raises; the message is shown to the person."""

    title = "Error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(AppError):
    """The thing named in the request does not exist."""

    title = "Not found"


class InvalidInput(AppError):
    """The request is well-formed but its values cannot be used."""

    title = "Invalid input"


class Conflict(AppError):
    """The request conflicts with the stored state."""

    title = "Conflict"


class PreconditionFailed(AppError):
    """A conditional request's precondition (If-Match) does not hold."""

    title = "Precondition failed"


class PayloadTooLarge(AppError):
    """The request body is over the configured limit."""

    title = "Payload too large"


class RequestTimeout(AppError):
    """The request body did not arrive within the configured time."""

    title = "Request timeout"


class PreconditionRequired(AppError):
    """A write that needs If-Match came without it."""

    title = "Precondition required"


class Unauthorized(AppError):
    """No credentials, or credentials that are malformed, unknown or revoked."""

    title = "Unauthorized"


class Forbidden(AppError):
    """The principal is known but its role does not allow this."""

    title = "Forbidden"


class TooManyRequests(AppError):
    """The principal is over its rate limit."""

    title = "Too many requests"


class Unavailable(AppError):
    """A dependency (the database) is not reachable."""

    title = "Service unavailable"


STATUS: dict[type[AppError], int] = {
    Unauthorized: 401,
    Forbidden: 403,
    TooManyRequests: 429,
    NotFound: 404,
    InvalidInput: 422,
    Conflict: 409,
    PreconditionFailed: 412,
    RequestTimeout: 408,
    PayloadTooLarge: 413,
    PreconditionRequired: 428,
    Unavailable: 503,
}

STATEMENT_TIMEOUT = (
    "the query ran longer than the database statement timeout; narrow it (a shorter time range,"
    " a smaller area, fewer categories) or retry later"
)
CONNECTION_LOST = "the connection to the database was lost; retry the request"

# Errors raised when PostgreSQL cannot be reached or went away: answered with 503, not 500.
DB_DOWN: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.TooManyConnectionsError,
    ConnectionError,
    TimeoutError,
)


def problem(
    status: int, title: str, detail: str, request: Request | None = None, **extra: Any
) -> Response:
    """An RFC 9457 problem response."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update(extra)
    headers = {"Retry-After": "5"} if status == 503 else None
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def _location(loc: Any) -> str:
    return ".".join(str(p) for p in loc)


def install(app: FastAPI) -> None:
    """Register one handler per error family."""

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> Response:
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
        extra = {k: v for k, v in exc.extra.items() if not k.startswith("_")}
        response = problem(status, exc.title, exc.detail, request, **extra)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="borderwatch"'
        if "_retry_after" in exc.extra:
            response.headers["Retry-After"] = str(exc.extra["_retry_after"])
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"location": _location(e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors) or "invalid request"
        return problem(422, "Invalid request", detail, request, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such resource: {request.url.path}"
        return problem(exc.status_code, _title(exc.status_code), detail, request)

    for cls in DB_DOWN:

        @app.exception_handler(cls)
        async def _db_down(request: Request, exc: Exception) -> Response:
            log.warning("database unavailable: %s", exc)
            return problem(
                503, "Service unavailable", "the database is not reachable; retry shortly", request
            )

    @app.exception_handler(sa_exc.IntegrityError)
    async def _integrity(request: Request, exc: sa_exc.IntegrityError) -> Response:
        log.warning("integrity error on %s: %s", request.url.path, exc.orig)
        return problem(
            409,
            "Conflict",
            "the request conflicts with stored data (a constraint refused it)",
            request,
        )

    @app.exception_handler(sa_exc.DBAPIError)
    async def _dbapi(request: Request, exc: sa_exc.DBAPIError) -> Response:
        if _cancelled(exc):
            log.warning("statement timeout on %s", request.url.path)
            return problem(503, "Service unavailable", STATEMENT_TIMEOUT, request)
        if exc.connection_invalidated:  # the database dropped the connection (e.g. a restart)
            log.warning("database connection lost on %s: %s", request.url.path, exc.orig)
            return problem(503, "Service unavailable", CONNECTION_LOST, request)
        log.exception("database error on %s", request.url.path)
        return problem(500, "Internal error", "an unexpected error occurred", request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return problem(500, "Internal error", "an unexpected error occurred", request)


def _cancelled(exc: sa_exc.DBAPIError) -> bool:
    """Whether PostgreSQL cancelled the statement (statement_timeout; SQLSTATE 57014)."""
    orig = exc.orig
    return (
        isinstance(orig, asyncpg.exceptions.QueryCanceledError)
        or isinstance(getattr(orig, "__cause__", None), asyncpg.exceptions.QueryCanceledError)
        or getattr(orig, "sqlstate", None) == "57014"
    )


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
