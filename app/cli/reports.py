"""`borderwatch report …`: printable reports, the same files as GET /reports/… gives."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.scope import Scope
from app.cli.common import console, group, run, with_session
from app.config import get_settings
from app.i18n import LANGS, Lang
from app.reports import briefing, render

report_app = group("Printable reports (the briefing).")


def _lang(value: str) -> Lang:
    for lang in LANGS:
        if value == lang:
            return lang
    raise typer.BadParameter(f"'{value}' is not vi or en", param_hint="--lang")


@report_app.command("briefing")
def briefing_cmd(
    area: Annotated[
        str,
        typer.Option(
            help="jurisdiction:CODE[,CODE…], cooperation:ID or border-segment:CODE[:KM]",
        ),
    ],
    period: Annotated[
        str,
        typer.Option(
            "--datetime",
            help="start/end (days are Vietnam's, the end day included), 2025-Q1, 2025-03 or 2025",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="the file to write")],
    lang: Annotated[str, typer.Option(help="vi (default) or en")] = "vi",
    fmt: Annotated[str, typer.Option("--format", help="pdf (default) or html")] = "pdf",
) -> None:
    """Write the briefing of an area over a period: the file GET /reports/briefing gives a
    national admin key (the operator sees every incident)."""
    language = _lang(lang)
    settings = get_settings()

    async def work(session: AsyncSession) -> bytes:
        kind = briefing.check_format(fmt)
        found = await briefing.gather(
            session=session,
            scope=Scope(code=None, distance_m=settings.cooperation_m),
            role="admin",
            area=area,
            period=briefing.parse_period(period),
            lang=language,
            home=settings.home_country,
        )
        return await asyncio.to_thread(render.render, found, kind)

    body = run(with_session(settings, work))  # a bad area or period: its message, exit 1
    output.write_bytes(body)
    console.print(f"wrote {escape(str(output))} ({len(body):,} bytes)")
