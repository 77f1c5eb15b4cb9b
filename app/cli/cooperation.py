"""`borderwatch cooperation …`: cooperation areas (the same service and audit as the API)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from pydantic import ValidationError
from rich.markup import escape
from sqlalchemy.ext.asyncio import AsyncSession

from app.cli.common import cli_actor, console, error, group, run, with_session
from app.config import get_settings
from app.cooperation import examples
from app.cooperation import service as cooperation

cooperation_app = group("Cooperation areas: units working together over an area.")


def _day(text: str | None, option: str) -> date | None:
    """A YYYY-MM-DD option, or a usage error naming it."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"'{text}' is not a day (YYYY-MM-DD)", param_hint=option) from exc


def _print(area: dict[str, Any]) -> None:
    period = f"{area['valid_from'] or '…'} – {area['valid_to'] or '…'}"
    tag = escape(" [example]") if area["example"] else ""
    count = area.get("member_count", len(area.get("members", [])))
    console.print(
        f"{area['id']}: {escape(area['name'])}{tag} ({period}, {count} members, v{area['version']})"
    )


@cooperation_app.command("list")
def list_cmd(
    on: Annotated[str | None, typer.Option(help="only those in force on this day")] = None,
) -> None:
    """Every area (or those in force on a day)."""
    day = _day(on, "--on")

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return await cooperation.list_areas(session, on=day)

    for area in run(with_session(get_settings(), work)):
        _print(area)


@cooperation_app.command("create")
def create_cmd(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True,
            help="JSON in the shape of POST /cooperation-areas",
        ),
    ],
) -> None:  # fmt: skip
    """Create an area from a JSON file (audited as the operating-system user)."""
    try:
        body = cooperation.AreaIn.model_validate(orjson.loads(file.read_bytes()))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        error(str(exc))
        raise typer.Exit(1) from exc

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await cooperation.create(session, body=body, actor=cli_actor())

    _print(run(with_session(get_settings(), work)))


@cooperation_app.command("end")
def end_cmd(
    area_id: Annotated[int, typer.Argument(help="the area's id")],
    on: Annotated[str | None, typer.Option(help="last day + 1 (default today)")] = None,
) -> None:
    """End an area (it is kept, with its valid_to); audited."""
    day = _day(on, "--on")

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await cooperation.end(
            session, area_id=area_id, on=day, expected_version=None, actor=cli_actor()
        )

    _print(run(with_session(get_settings(), work)))


@cooperation_app.command("examples")
def examples_cmd() -> None:
    """Create the example areas of the demo data (seeds 000, 003, 004) not created yet."""

    async def work(session: AsyncSession) -> int:
        return await examples.load(session)

    console.print(f"example cooperation areas created: {run(with_session(get_settings(), work))}")
