"""The incident list: one page of Features, newest first, with a keyset cursor (GET /incidents).

The page is one statement built once per filter and limit, run in one round trip; PostgreSQL
joins the Features into a few large texts that stream out as they are read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, Text, bindparam, cast, func, literal, select, tuple_
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from app import i18n
from app.db import LEADER_ONLY
from app.i18n import Lang
from app.incidents.filters import Cursor, IncidentFilter
from app.incidents.models import Incident
from app.incidents.service import feature_expr

# what one key recorded (`recorded_by=me`), bound per request
BY_CREATOR = Incident.created_by == bindparam("creator", type_=Incident.created_by.type)


async def count(*, session: AsyncSession, filt: IncidentFilter, creator: str | None = None) -> int:
    """How many incidents match (recorded by `creator`, when given)."""
    stmt = select(func.count()).select_from(Incident).where(*filt.conditions())
    if creator is not None:
        stmt = stmt.where(BY_CREATOR)
    await session.execute(LEADER_ONLY)
    return int((await session.execute(stmt, {"creator": creator})).scalar_one())


@dataclass
class Page:
    """State filled in while a page streams: how many rows, and where the next page starts."""

    returned: int = 0
    next_cursor: Cursor | None = None


async def stream_page(
    *,
    session: AsyncSession,
    filt: IncidentFilter,
    limit: int,
    cursor: Cursor | None,
    page: Page,
    chunk: int = 500,
    creator: str | None = None,
    lang: Lang = i18n.DEFAULT,
) -> AsyncIterator[bytes]:
    """Feature texts of one page, comma-separated, newest first; fills `page` as it goes.

    PostgreSQL joins the Features into one text per `chunk` rows, so Python handles a few
    large strings instead of a thousand small ones. `creator`: only what that actor recorded."""
    stmt = _page_statement(filt, limit, chunk, cursor is not None, creator is not None, lang)
    params: dict[str, Any] = {} if cursor is None else {
        "cursor_at": cursor.occurred_at, "cursor_id": cursor.id
    }  # fmt: skip
    if creator is not None:
        params["creator"] = creator
    # one round trip: a page is at most 10 000 rows, and one result is faster than a
    # server-side cursor for that (docs/performance.md); the export streams through a cursor
    conn = await session.connection()
    await conn.execute(LEADER_ONLY)  # this request's transaction only
    result = await conn.execute(stmt, params)
    emitted = False
    more = False
    last: tuple[Any, Any] | None = None
    for text_part, n, max_rn, last_at, last_ids in result:
        if text_part:
            yield (("," + text_part) if emitted else text_part).encode()
            emitted = True
        page.returned += int(n)
        more = more or int(max_rn) > limit
        if last_at is not None:
            last = (last_at, last_ids[0])
    if more and last is not None:
        page.next_cursor = Cursor(last[0], last[1])


# the page's keyset position, bound per request (the statement is built once per filter)
AFTER_CURSOR = tuple_(Incident.occurred_at, Incident.id) < tuple_(
    bindparam("cursor_at", type_=Incident.occurred_at.type),
    bindparam("cursor_id", type_=Incident.id.type),
)


@lru_cache(maxsize=128)
def _page_statement(
    filt: IncidentFilter,
    limit: int,
    chunk: int,
    paged: bool,
    by_creator: bool = False,
    lang: Lang = i18n.DEFAULT,
) -> Select[Any]:
    """The page statement (see stream_page), after the cursor's position when `paged`, of one
    creator's incidents when `by_creator`. The page's rows are chosen first, then joined to
    what their names need (a dense filter joins a page, not every match)."""
    i = Incident
    chosen = (
        select(i)
        .where(*filt.conditions())
        .order_by(i.occurred_at.desc(), i.id.desc())
        .limit(limit + 1)
    )
    if paged:
        chosen = chosen.where(AFTER_CURSOR)
    if by_creator:
        chosen = chosen.where(BY_CREATOR)
    page = chosen.subquery("page")
    f, from_ = feature_expr(lang, rows=page)
    p = page.c
    rn = func.row_number().over(order_by=(p.occurred_at.desc(), p.id.desc()))
    rows = select(
        cast(f, Text).label("f"),
        p.occurred_at,
        p.id,
        rn.label("rn"),
        ((rn - 1) // chunk).label("grp"),
    ).select_from(from_)
    sub = rows.subquery()
    in_page = sub.c.rn <= limit
    at_end = sub.c.rn == limit
    stmt = (
        select(
            func.string_agg(sub.c.f, aggregate_order_by(literal(","), sub.c.rn)).filter(in_page),
            func.count().filter(in_page),
            func.max(sub.c.rn),
            func.max(sub.c.occurred_at).filter(at_end),
            func.array_agg(sub.c.id).filter(at_end),
        )
        .group_by(sub.c.grp)
        .order_by(sub.c.grp)
    )
    return stmt
