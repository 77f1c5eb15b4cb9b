"""Domain errors (no HTTP inside) and their rendering as application/problem+json (RFC 9457)."""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.observe.context import request_id

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


class UnsupportedMediaType(AppError):
    """The body's type (declared or found in its content) is not one this operation reads."""

    title = "Unsupported media type"


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
    UnsupportedMediaType: 415,
    PreconditionRequired: 428,
    Unavailable: 503,
}

STATEMENT_TIMEOUT = (
    "the query ran longer than the database statement timeout; narrow it (a shorter time range,"
    " a smaller area, fewer categories) or retry later"
)
CONNECTION_LOST = "the connection to the database was lost; retry the request"
DATABASE_DOWN = (
    "the database is not reachable or not accepting connections (down, starting up or shutting"
    " down); retry shortly"
)
DATABASE_BUSY = "every database connection is in use; retry shortly"

# SQLSTATEs after which the same request can succeed later (checked on the driver's error, which
# the asyncpg adapter wraps in a plain DBAPIError when it has no class of its own for it).
# Class 08 (connection exceptions) is matched by its prefix.
SQLSTATE_DETAIL = {
    "57014": STATEMENT_TIMEOUT,  # query_canceled (statement_timeout)
    "57P01": CONNECTION_LOST,  # admin_shutdown: the server ended the session (fast/immediate stop)
    "57P02": CONNECTION_LOST,  # crash_shutdown: another backend crashed
    "57P03": DATABASE_DOWN,  # cannot_connect_now: starting up, in recovery, shutting down
    "53300": DATABASE_BUSY,  # too_many_connections
}
# errno of an OSError that says the server cannot be reached over the network
NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETUNREACH,
        errno.ENETDOWN,
    }
)


def database_failure(exc: BaseException) -> str | None:
    """The 503 detail when `exc` says the database cannot serve this request now but may soon
    (unreachable, starting up or shutting down, connection lost, no free connection, statement
    timeout); None for any other error, a bug or bad data, which stays a 500.

    The one classification used by every error handler, by the pool's error hook and by the
    statements run on the driver connection (app/db.py). It looks through the wrappers (a
    SQLAlchemy DBAPIError's `orig`, the asyncpg adapter's `__cause__`) at the driver's own
    error and its SQLSTATE: SQLAlchemy's exception class alone is not enough, since the asyncpg
    adapter raises a plain DBAPIError for errors it has no class for (e.g. 57P03)."""
    if isinstance(exc, BaseExceptionGroup):  # e.g. from a task group in a middleware
        return next(filter(None, map(database_failure, exc.exceptions)), None)
    if isinstance(exc, sa_exc.TimeoutError):  # the pool had no connection within its timeout
        return DATABASE_BUSY
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return CONNECTION_LOST  # SQLAlchemy found the connection closed and dropped it
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        detail = _own_failure(current)
        if detail is not None:
            return detail
        orig = getattr(current, "orig", None)  # sqlalchemy.exc.DBAPIError
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return None


def log_failure(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """Log background work that failed (`what` failed): one warning line when the database is
    away, which the next round retries; a traceback for anything else, a bug."""
    detail = database_failure(exc)
    if detail is None:
        logger.error("%s failed", what, exc_info=exc)
    else:
        logger.warning("%s failed (%s)", what, detail)


def _own_failure(exc: BaseException) -> str | None:
    """database_failure for one exception of the chain, without looking inside it."""
    sqlstate = getattr(exc, "sqlstate", None)  # asyncpg errors and the adapter's copies
    if isinstance(sqlstate, str):
        if sqlstate.startswith("08"):
            return CONNECTION_LOST
        if sqlstate in SQLSTATE_DETAIL:
            return SQLSTATE_DETAIL[sqlstate]
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        # the protocol's state broke: the server ended the connection while it was idle, and
        # asyncpg saw the notice only when the next statement ran
        return CONNECTION_LOST
    if isinstance(exc, asyncpg.exceptions.InterfaceError):
        # "connection is closed", the test SQLAlchemy's asyncpg dialect makes for a disconnect;
        # the other interface errors (wrong argument count, nested operations) are bugs
        message = str(exc)
        if "connection is closed" in message or "connection was closed" in message:
            return CONNECTION_LOST
        return None
    if isinstance(exc, ConnectionError):  # refused, reset, aborted, broken pipe
        return DATABASE_DOWN
    if isinstance(exc, TimeoutError):  # asyncpg's connect timeout (asyncio.TimeoutError)
        return DATABASE_DOWN
    if isinstance(exc, socket.gaierror):  # the database host name does not resolve
        return DATABASE_DOWN
    if isinstance(exc, OSError):
        if exc.errno in NETWORK_ERRNOS:
            return DATABASE_DOWN
        # asyncio's connect to a name with several addresses (localhost: ::1 and 127.0.0.1)
        # raises one OSError without errno that lists each address's failure
        if exc.errno is None and str(exc).startswith("Multiple exceptions:"):
            return DATABASE_DOWN
    return None


# the classes a database failure can arrive as; their handler sorts them with database_failure
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.DBAPIError,  # through SQLAlchemy (IntegrityError has a handler of its own)
    sa_exc.TimeoutError,  # the pool's wait for a connection
    asyncpg.PostgresError,  # the driver's own, on its connection (imports, fetch_row's others)
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,  # connecting: refused, unreachable, timed out
)


def problem(
    status: int, title: str, detail: str, request: Request | None = None, **extra: Any
) -> Response:
    """An RFC 9457 problem response, with the request's id (app/observe) as `request_id`."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update(extra)
    headers: dict[str, str] = {}
    rid = request_id.get()
    if rid is not None:
        body["request_id"] = rid
        if status >= 500:  # a 500 may be sent from outside the middleware that adds it
            headers["X-Request-ID"] = rid
    if status == 503:
        headers["Retry-After"] = "5"
        if detail == STATEMENT_TIMEOUT and request is not None:
            _count_statement_timeout(request)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers or None
    )


def _count_statement_timeout(request: Request) -> None:
    """One more 503 for a statement timeout in the app's metrics (app/observe/metrics.py)."""
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.statement_timeout()


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

    @app.exception_handler(sa_exc.IntegrityError)
    async def _integrity(request: Request, exc: sa_exc.IntegrityError) -> Response:
        log.warning("integrity error on %s: %s", request.url.path, exc.orig)
        return problem(
            409,
            "Conflict",
            "the request conflicts with stored data (a constraint refused it)",
            request,
        )

    async def _failure(request: Request, exc: Exception) -> Response:
        detail = database_failure(exc)
        if detail is not None:
            log.warning("database unavailable on %s: %s", request.url.path, _one_line(exc))
            return problem(503, "Service unavailable", detail, request)
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return problem(500, "Internal error", "an unexpected error occurred", request)

    # A database failure is 503, anything else unexpected 500. The classes a failure arrives as
    # are handled inside the middleware stack; `Exception` reaches the same handler from the
    # outermost layer (errors raised in a middleware).
    for cls in (*DATABASE_ERRORS, Exception):
        app.add_exception_handler(cls, _failure)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
