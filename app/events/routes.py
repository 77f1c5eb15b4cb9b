"""GET /events: the live feed (Server-Sent Events) of incident changes within the key's scope."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from app.alerts import service as alerts
from app.auth.deps import Reader, presented_key
from app.auth.service import Identity, authenticate
from app.db import SessionDep
from app.errors import InvalidInput, Unauthorized
from app.events import service
from app.events.hub import EventHub
from app.events.service import Position
from app.incidents.filters import FilterDep
from app.openapi import problems

router = APIRouter(tags=["live feed"])

RETRY_MS = 3000  # how long a browser waits before it reconnects
# a stream is never cached, and proxies that buffer (nginx) pass each write on at once
NO_BUFFERING = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def hub(request: Request) -> EventHub:
    """The process's event hub (app/main.py makes it)."""
    found: EventHub = request.app.state.event_hub
    return found


async def _key_refused(request: Request) -> str | None:
    """Why the stream's key no longer works (revoked, expired, its area ended: the rules of
    every request), or None."""
    key = presented_key(request)
    async with request.app.state.sessionmaker() as s:
        try:
            await authenticate(
                session=s, key=key or "", cooperation_m=request.app.state.settings.cooperation_m
            )
        except Unauthorized as refused:
            return str(refused)
    return None


async def _receives(request: Request, principal: Identity, rule_id: int) -> bool:
    """Whether the principal receives the alerts of rule `rule_id` (asked once per stream)."""
    known: dict[int, bool] = request.state.__dict__.setdefault("alert_rules", {})
    if rule_id not in known:
        async with request.app.state.sessionmaker() as s:
            known[rule_id] = await alerts.receives(s, principal, rule_id)
    return known[rule_id]


@router.get(
    "/events",
    response_class=StreamingResponse,
    summary="Live feed of incident changes (Server-Sent Events), resumable with Last-Event-ID",
    responses={
        200: {
            "description": "an endless stream of events (`event:`, `id:`, `data:` JSON)",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **problems(403),
    },
)
async def events(
    request: Request,
    session: SessionDep,
    principal: Reader,
    filt: FilterDep,
    last_event_id: Annotated[
        str | None,
        Header(
            max_length=100,
            description="the id of the last event received: the feed resumes after it",
        ),
    ] = None,
    after: Annotated[
        str | None,
        Query(max_length=100, description="as Last-Event-ID, for clients that cannot set it"),
    ] = None,
) -> StreamingResponse:
    """Events `incident.created`, `incident.changed`, `incident.status`, `incident.deleted`,
    `incident.restored` and `incident.left` (moved out of what the filters let through: id
    only); `alert.raised` and `alert.acknowledged` for the alerts the key receives. Filtered
    by the key's scope and the list filters; `resync` when the position to resume from is
    older than the retention or unknown (then: reload, and go on from here); `end` when the
    key stops working; a heartbeat comment while quiet. docs/events.md."""
    if filt.text is not None:  # the log holds no descriptions: refuse, never ignore
        raise InvalidInput("q= is not available on the live feed", field="q")
    feed = hub(request)
    settings = request.app.state.settings
    token = last_event_id or after
    start: Position | None = None
    resync: str | None = None
    if token:
        start = Position.parse(token)
        if start is None:
            resync = "the event id to resume from is not one this service issued"
        elif start < await service.horizon(session):
            start, resync = None, "the events after that one are older than the retention"
    await session.close()  # a stream holds no pooled connection while it waits

    async def stream() -> AsyncIterator[bytes]:
        nonlocal start
        yield f"retry: {RETRY_MS}\n: Borderwatch live feed\n\n".encode()
        if resync is not None:
            await feed.ready()
            start = feed.head
            yield service.frame("resync", {"type": "resync", "reason": resync}, start.token())
        checked = time.monotonic()
        async for events in feed.subscribe(filt, start, settings.events_heartbeat_s):
            if time.monotonic() - checked > settings.events_key_check_s:
                checked = time.monotonic()
                reason = await _key_refused(request)
                if reason is not None:
                    yield service.frame("end", {"type": "end", "reason": reason})
                    return
            if not events:
                yield b": heartbeat\n\n"
                continue
            out = [
                e.frame
                for e in events
                if e.rule_id is None or await _receives(request, principal, e.rule_id)
            ]
            if out:
                yield b"".join(out)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=NO_BUFFERING)
