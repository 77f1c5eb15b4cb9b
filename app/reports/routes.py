"""GET /reports/briefing: the printable briefing of an area and a period (PDF or HTML)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.auth.deps import Viewer
from app.db import SessionDep
from app.i18n import LangDep, headers
from app.openapi import problems
from app.reports import briefing, render

router = APIRouter(tags=["reports"])


@router.get(
    "/reports/briefing",
    summary="A printable briefing: figures, map, charts, cross-boundary pairs, emerging hot"
    " spots and severe incidents of an area over a period",
    response_class=Response,
    responses={
        200: {
            "content": {"application/pdf": {}, "text/html": {}},
            "description": "the report (PDF by default)",
        },
        **problems(403, 422),
    },
)
async def briefing_report(
    request: Request,
    session: SessionDep,
    principal: Viewer,
    lang: LangDep,
    area: Annotated[
        str,
        Query(
            max_length=1000,
            description="`jurisdiction:CODE[,CODE…]` (a province, a commune or a group of"
            " communes, either era), `cooperation:ID` or `border-segment:CODE[:KM]` (the home"
            " side of a national border, 50 km by default)",
        ),
    ],
    dt: Annotated[
        str,
        Query(
            alias="datetime",
            max_length=100,
            description="the period: `start/end` (days are Vietnam's, the end day included;"
            " times without an offset are Asia/Ho_Chi_Minh) or `2025`, `2025-Q1`, `2025-03`",
        ),
    ],
    fmt: Annotated[str, Query(alias="format", max_length=10, description="pdf or html")] = "pdf",
) -> Response:
    """Vietnamese by default (`lang=en` for English). A scoped key reports only on an area
    that overlaps its own (403 otherwise), and every figure counts only what it sees; the
    national total and share only for national keys; a viewer key gets aggregates only (no
    incident drawn or listed)."""
    kind = briefing.check_format(fmt)
    period = briefing.parse_period(dt)
    found = await briefing.gather(
        session=session,
        scope=principal.scope,
        role=principal.role,
        area=area,
        period=period,
        lang=lang,
        home=request.app.state.settings.home_country,
    )
    body = await asyncio.to_thread(render.render, found, kind)
    disposition = "attachment" if kind == "pdf" else "inline"
    return Response(
        body,
        media_type=render.media_type(kind),
        headers=headers(lang)
        | {
            "Content-Disposition": f'{disposition}; filename="{render.filename(found, kind)}"',
            "Cache-Control": "no-store",
        },
    )
