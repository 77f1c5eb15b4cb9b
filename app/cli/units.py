"""`borderwatch units …`: units of the hotline network (the same service and audit as the API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from pydantic import ValidationError
from rich.markup import escape
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import OPERATOR
from app.cli.common import cli_actor, console, error, group, run, with_session
from app.config import get_settings
from app.errors import NotFound
from app.units import demo
from app.units import service as units
from app.units.models import Unit

units_app = group("Units of the four-level hotline network (central, province, commune, post).")


def _line(u: dict[str, Any]) -> str:
    area = " ".join(x for x in (u["jurisdiction"], u["post"] and f"post:{u['post']}") if x)
    closed = "" if u["in_force"] else f" (closed {u['valid_to']})"
    kind = escape(f"[{u['level']}, {u['agency']}, {u['country']}]")
    return f"{u['id']}: {escape(u['code'])} {escape(u['name'])} {kind} {escape(area)}{closed}"


async def _id_of(session: AsyncSession, code: str) -> int:
    found = (await session.execute(select(Unit.id).where(Unit.code == code))).scalar()
    if found is None:
        raise NotFound(f"no unit with code '{code}' (borderwatch units list)")
    return int(found)


@units_app.command("list")
def list_cmd(
    level: Annotated[str | None, typer.Option(help="central, province, commune or post")] = None,
    include_closed: Annotated[bool, typer.Option(help="closed units too")] = False,
) -> None:
    """Units by level, then code (no contacts)."""

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return await units.list_units(session, level=level, include_closed=include_closed)

    for u in run(with_session(get_settings(), work)):
        console.print(_line(u))


@units_app.command("create")
def create_cmd(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="JSON in the shape of POST /units"
        ),
    ],
) -> None:
    """Create a unit from a JSON file (audited as the operating-system user)."""
    try:
        body = units.UnitIn.model_validate(orjson.loads(file.read_bytes()))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        error(str(exc))
        raise typer.Exit(1) from exc

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await units.create(
            session, body=body, admin=None, manager=OPERATOR, actor=cli_actor()
        )

    console.print(_line(run(with_session(get_settings(), work))))


@units_app.command("close")
def close_cmd(code: Annotated[str, typer.Argument(help="the unit's code")]) -> None:
    """Close a unit from today (it is kept)."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        unit_id = await _id_of(session, code)
        return await units.close(
            session, unit_id=unit_id, on=None, admin=None, manager=OPERATOR, actor=cli_actor()
        )

    console.print(_line(run(with_session(get_settings(), work))))


@units_app.command("add-contact")
def add_contact_cmd(
    code: Annotated[str, typer.Argument(help="the unit's code")],
    channel: Annotated[str, typer.Argument(help="hotline, phone, radio or email")],
    value: Annotated[str, typer.Argument(help="the number, channel or address")],
    note: Annotated[str | None, typer.Option(help="a note for the caller")] = None,
) -> None:
    """Add a contact channel to a unit."""
    try:
        body = units.ContactIn.model_validate({"channel": channel, "value": value, "note": note})
    except ValidationError as exc:
        error(str(exc))
        raise typer.Exit(1) from exc

    async def work(session: AsyncSession) -> dict[str, Any]:
        unit_id = await _id_of(session, code)
        return await units.add_contact(
            session, unit_id=unit_id, body=body, admin=None, manager=OPERATOR, actor=cli_actor()
        )

    c = run(with_session(get_settings(), work))
    console.print(f"contact {c['id']}: {c['channel']} {escape(c['value'])}")


@units_app.command("bind-key")
def bind_key_cmd(
    principal_id: Annotated[int, typer.Argument(help="the key's principal id (keys list)")],
    code: Annotated[str | None, typer.Argument(help="the unit's code; omit to unbind")] = None,
) -> None:
    """Make a key belong to a unit (its incidents then record it as their reporting unit)."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        unit_id = await _id_of(session, code) if code else None
        return await units.bind_key(
            session, unit_id=unit_id, principal_id=principal_id, admin=None, manager=OPERATOR,
            actor=cli_actor(),
        )  # fmt: skip

    out = run(with_session(get_settings(), work))
    name = escape(out["unit"] or "")
    console.print(f"principal {out['principal']}: unit {out['unit_id']} {name}")


@units_app.command("demo")
def demo_cmd() -> None:
    """Load the demo units along the Lao border (fictitious numbers, marked DEMO)."""

    async def work(session: AsyncSession) -> int:
        return await demo.load(session=session)

    console.print(f"{run(with_session(get_settings(), work))} demo units added")
