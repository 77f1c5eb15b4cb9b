"""Request bodies read whole, bounded in size and time, before the application runs; and NUL
characters refused wherever a request carries text (path, query, JSON body).

A route takes a pooled database connection as soon as it authenticates. A client that sends its
body slowly would hold that connection for as long as it likes; here the body has arrived in
full (or been refused: 413 over the size limit, 408 past the deadline) before any route runs,
so a connection is held only while the work is done. Ordinary bodies are kept in memory
(`BORDERWATCH_MAX_BODY_BYTES`; an incident photo: `BORDERWATCH_PHOTO_MAX_BYTES`); an import
upload goes to a file in this process's spool directory (`BORDERWATCH_MAX_IMPORT_BYTES`), removed
when the request ends. The routes read the result with `body_of(request)`. See docs/decisions.md,
"Request bodies read before the route".

GET, HEAD and OPTIONS pass straight through (map tiles are the hottest path): the middleware is
a plain function that returns the application's own coroutine for them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.errors import STATUS, AppError, PayloadTooLarge, RequestTimeout, problem
from app.spool import SpoolDir

SCOPE_KEY = "borderwatch.body"
IMPORT_PATH = "/incidents/import"
# an incident photo's upload (PUT or POST): images, up to BORDERWATCH_PHOTO_MAX_BYTES
PHOTO_PATH = re.compile(r"/incidents/[^/]+/photos(?:/[^/]+)?")
NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})
WRITE_CHUNK = 1 << 20  # spooled bytes are written in pieces of about this size
NUL_MESSAGE = "contains a NUL character (U+0000), which is not allowed"


@dataclass(frozen=True, slots=True)
class Body:
    """A request body that has arrived in full: in memory (`data`) or spooled (`path`)."""

    size: int
    data: bytes | None = None
    path: Path | None = None


EMPTY = Body(size=0, data=b"")


def body_of(request: Request) -> Body:
    """The body the middleware read for this request (empty for a request without one)."""
    body: Body = request.scope.get(SCOPE_KEY, EMPTY)
    return body


PERCENT = ord("%")


def body_middleware(app: ASGIApp, *, settings: Settings, spool: SpoolDir) -> ASGIApp:
    """The middleware (see the module's text), for `app.add_middleware(body_middleware, …)`."""
    reader = _BodyReader(app, settings, spool)
    refuse_nul, read = reader.refuse_nul, reader.read

    # A plain function, not `async` and not a class instance: a request without a body costs
    # one call and a few tests, and the application's own coroutine is returned (tiles are the
    # hottest path; docs/performance.md). `int in bytes` is a memchr; `bytes in bytes` builds
    # a buffer per call.
    def body_first(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "http":
            query = scope["query_string"]
            if (PERCENT in query and query.find(b"%00") >= 0) or "\x00" in scope["path"]:
                return refuse_nul(scope, receive, send)
            if scope["method"] not in NO_BODY:
                return read(scope, receive, send)
        return app(scope, receive, send)

    return body_first


class _BodyReader:
    """The middleware's work for requests that carry a body or a NUL."""

    def __init__(self, app: ASGIApp, settings: Settings, spool: SpoolDir) -> None:
        self.app = app
        self.settings = settings
        self.spool = spool

    # ------------------------------------------------------------------------------------
    # bodies

    async def read(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        spooled = path == IMPORT_PATH
        photo = not spooled and PHOTO_PATH.fullmatch(path) is not None
        settings = self.settings
        if spooled:
            limit, limit_name = settings.max_import_bytes, "max_import_bytes"
        elif photo:
            limit, limit_name = settings.photo_max_bytes, "photo_max_bytes"
        else:
            limit, limit_name = settings.max_body_bytes, "max_body_bytes"
        timeout_s = settings.import_body_timeout_s if spooled else settings.body_timeout_s
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            return await _refuse(_too_large(limit, limit_name), scope, receive, send)
        deadline = asyncio.get_running_loop().time() + timeout_s
        handle: IO[bytes] | None = None
        try:
            if spooled:
                handle = await asyncio.to_thread(self.spool.new_file)
                body = await _to_file(receive, handle, limit, deadline)
            else:
                body = await _to_memory(receive, limit, deadline)
        except _Refused as refused:
            if handle is not None:
                await asyncio.to_thread(_discard, handle)
            error: AppError = _too_large(limit, limit_name)
            if refused.reason == "timeout":
                error = RequestTimeout(
                    f"the request body did not arrive within {timeout_s:g} s"
                    f" ({_setting('import_body' if spooled else 'body')}_TIMEOUT_S); send it"
                    " again over a faster link, or in smaller parts",
                    timeout_s=timeout_s,
                )
            return await _refuse(error, scope, receive, send)
        except BaseException:  # cancelled (the server stops), or a bug: no await here
            if handle is not None:
                _discard(handle)
            raise
        if body is None:  # the client went away
            if handle is not None:
                await asyncio.to_thread(_discard, handle)
            return None
        # (bytes.find: `bytes in bytes` costs a buffer per call)
        if not photo and body.data is not None and body.data.find(b"\\u0000") >= 0:
            where = _json_nul(body.data)
            if where is not None:
                location = f"body.{where}" if where else "body"
                return await _nul_problem(location, scope, receive, send)
        scope[SCOPE_KEY] = body
        try:
            await self.app(scope, _replay(body, receive), send)
        finally:
            if body.path is not None:
                await asyncio.to_thread(body.path.unlink, missing_ok=True)

    # ------------------------------------------------------------------------------------
    # NUL in the path or the query string

    async def refuse_nul(self, scope: Scope, receive: Receive, send: Send) -> None:
        if "\x00" in scope["path"]:
            name = _path_parameter(scope["app"], scope["path"])
            location = f"path.{name}" if name else "path"
        else:
            pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            name = next((k for k, v in pairs if "\x00" in k + v), None)
            location = f"query.{name}" if name and "\x00" not in name else "query"
        await _nul_problem(location, scope, receive, send)


def _path_parameter(app: Any, path: str) -> str | None:
    """The name of the path parameter holding a NUL, from the templates of the OpenAPI
    document (built once, then cached by FastAPI): the router's own structures are internal."""
    try:
        templates = list(app.openapi().get("paths", {}))
    except Exception:  # a broken document must not turn a 422 into a 500
        return None
    for template in templates:
        match = compile_path(template)[0].match(path)
        if match is not None:
            return next((k for k, v in match.groupdict().items() if "\x00" in v), None)
    return None


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "size" or "timeout"


async def _next(receive: Receive, deadline: float) -> Message:
    try:
        async with asyncio.timeout_at(deadline):
            return await receive()
    except TimeoutError:
        raise _Refused("timeout") from None


async def _to_memory(receive: Receive, limit: int, deadline: float) -> Body | None:
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout_at(deadline):  # one timer for the whole body
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return None
                chunk = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        raise _Refused("size")
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise _Refused("timeout") from None
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return Body(size=size, data=data)


async def _to_file(receive: Receive, handle: IO[bytes], limit: int, deadline: float) -> Body | None:
    pending: list[bytes] = []
    pending_size = size = 0
    while True:
        message = await _next(receive, deadline)
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Refused("size")
        if chunk:
            pending.append(chunk)
            pending_size += len(chunk)
        more = message.get("more_body", False)
        if pending and (pending_size >= WRITE_CHUNK or not more):
            await asyncio.to_thread(handle.write, b"".join(pending))
            pending, pending_size = [], 0
        if not more:
            break
    await asyncio.to_thread(handle.close)
    return Body(size=size, path=Path(handle.name))


def _discard(handle: IO[bytes]) -> None:
    handle.close()
    Path(handle.name).unlink(missing_ok=True)


def _replay(body: Body, receive: Receive) -> Receive:
    """A `receive` that gives the application the body again, then the client's own events
    (a disconnect)."""
    if body.path is None:
        pending: list[bytes] = [body.data or b""]

        async def from_memory() -> Message:
            if pending:
                return {"type": "http.request", "body": pending.pop(), "more_body": False}
            return await receive()

        return from_memory

    # a spooled body, should anything read it as a stream (the import route reads the file)
    path = body.path
    state: dict[str, Any] = {"handle": None, "done": False}

    async def from_file() -> Message:
        if state["done"]:
            return await receive()
        if state["handle"] is None:
            state["handle"] = await asyncio.to_thread(path.open, "rb")
        chunk = await asyncio.to_thread(state["handle"].read, WRITE_CHUNK)
        if len(chunk) < WRITE_CHUNK:
            state["done"] = True
            await asyncio.to_thread(state["handle"].close)
        return {"type": "http.request", "body": chunk, "more_body": not state["done"]}

    return from_file


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _setting(name: str) -> str:
    return "BORDERWATCH_" + name.upper()


TOO_LARGE = {
    "max_import_bytes": "the upload is over the {limit}-byte import limit ({setting})",
    "max_body_bytes": "the request body is over the {limit}-byte limit ({setting})",
    "photo_max_bytes": "the photo is over the {limit}-byte limit ({setting}); resize it and"
    " send it again",
}


def _too_large(limit: int, setting: str) -> PayloadTooLarge:
    """413 naming the limit and the setting (`max_body_bytes`, …) that sets it."""
    detail = TOO_LARGE[setting].format(limit=limit, setting=_setting(setting))
    return PayloadTooLarge(detail, limit=limit)


async def _refuse(error: AppError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with the error's problem document and close the connection: the rest of the body
    is never read."""
    status = STATUS[type(error)]
    response = problem(status, error.title, error.detail, Request(scope), **error.extra)
    response.headers["Connection"] = "close"
    await response(scope, receive, send)


async def _nul_problem(location: str, scope: Scope, receive: Receive, send: Send) -> None:
    """422 in the shape of the other validation errors (docs/api.md), naming where the NUL is."""
    message = f"{location} {NUL_MESSAGE}"
    response = problem(
        422,
        "Invalid request",
        message,
        Request(scope),
        errors=[{"location": location, "message": NUL_MESSAGE}],
    )
    await response(scope, receive, send)


def _json_nul(data: bytes) -> str | None:
    """Where the first text containing U+0000 sits in a JSON document (`properties.unit`,
    `items.2`; "" for the document itself), or None when there is none or it is not JSON
    (the route reports that)."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    stack: list[tuple[Any, tuple[str, ...]]] = [(document, ())]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return ".".join(where)
        elif isinstance(value, dict):
            if any("\x00" in key for key in value):  # a name, not a value: the object itself
                return ".".join(where)
            # back to front: the stack gives them back in document order
            stack.extend((item, (*where, key)) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((value[i], (*where, str(i))) for i in range(len(value) - 1, -1, -1))
    return None
