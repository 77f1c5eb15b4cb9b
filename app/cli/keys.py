"""`borderwatch keys …`: API principals and their keys (a key is printed once, never stored)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.markup import escape
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth_service
from app.auth.keys import parse_lifetime
from app.cli.common import cli_actor, console, group, run, with_session
from app.config import Settings, get_settings

keys_app = group("API principals and their keys (keys are shown once).")
LOCAL_ADMIN = "local admin (make run)"


def _scope(record: dict[str, object]) -> str:
    """A key's scope in one word: its jurisdiction, `area:<id>`, or national."""
    area = record.get("cooperation_area")
    if isinstance(area, dict):
        return f"area:{area['id']}"
    return str(record.get("jurisdiction") or "national")


def _print_key(record: dict[str, object], key: str) -> None:
    scope = escape(_scope(record))
    area = record.get("cooperation_area")
    if isinstance(area, dict):
        scope += f" {escape(str(area['name']))}"
    console.print(
        f"principal {record['id']} '{escape(str(record['name']))}' ({record['role']}, {scope})"
    )
    console.print("API key (shown once, store it now):")
    print(key)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="who or what uses the key")],
    role: Annotated[str, typer.Option(help="viewer, officer, analyst or admin")],
    jurisdiction: Annotated[
        str | None,
        typer.Option(
            help="scope: a province of either era (VN-P91 today, VN-44 before 1 July 2025) or a"
            " commune (VN-C…); omit for national"
        ),
    ] = None,
    cooperation_area: Annotated[
        int | None,
        typer.Option(
            help="scope instead of a jurisdiction: the id of a cooperation area in force"
            " (`borderwatch cooperation list`); the key sees its members and their zone",
            min=1,
        ),
    ] = None,
    unit: Annotated[str | None, typer.Option(help="an officer's unit")] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="the key's lifetime, e.g. 90d, 12h or 2w; omit: no expiry")
    ] = None,
) -> None:
    """Create a principal and print its key once."""
    settings = get_settings()
    lifetime = _lifetime(expires_in)
    if jurisdiction and cooperation_area is not None:
        raise typer.BadParameter(
            "give --jurisdiction or --cooperation-area, not both", param_hint="--cooperation-area"
        )

    async def work(session: AsyncSession) -> tuple[dict[str, object], str]:
        return await auth_service.create_principal(
            session=session, name=name, role=role, jurisdiction_code=jurisdiction, unit=unit,
            actor=cli_actor(), expires_at=auth_service.expiry(lifetime),
            cooperation_area_id=cooperation_area,
        )  # fmt: skip

    record, key = run(with_session(settings, work))
    _print_key(record, key)


@keys_app.command("list")
def keys_list() -> None:
    """List principals (never keys)."""
    settings = get_settings()

    async def work(session: AsyncSession) -> list[dict[str, object]]:
        return await auth_service.list_principals(session=session)

    now = datetime.now(UTC)
    # one line per principal, never wrapped: operators grep it; a scope's place in today's map
    # ends the line ("VN-47 Kiên Giang (former; today in VN-P91 An Giang)")
    print(f"{'id':>4}  {'role':<8} {'scope':<10} {'state':<8} {'key':<16} "
          f"{'expires (UTC)':<17} {'last used (UTC)':<17} name  [scope today]")  # fmt: skip
    for p in run(with_session(settings, work)):
        expires = _when(p["expires_at"])
        state = "revoked" if p["revoked_at"] else "active"
        if not p["revoked_at"] and expires and expires <= now:
            state = "expired"
        print(
            f"{p['id']:>4}  {p['role']!s:<8} {_scope(p):<10} "
            f"{state:<8} bw_{p['key_prefix']}_… {_minutes(expires) or 'never':<17} "
            f"{_minutes(_when(p['last_used_at'])) or 'never':<17} {p['name']}{_area(p)}"
        )


def _area(p: dict[str, object]) -> str:
    """The scope as today's map reads it, for the end of a `keys list` line."""
    scope = p.get("scope")
    return f"  [{scope['label']}]" if isinstance(scope, dict) else ""


def _lifetime(text: str | None) -> timedelta | None:
    if text is None:
        return None
    try:
        return parse_lifetime(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--expires-in") from exc


def _when(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _minutes(value: datetime | None) -> str | None:
    """A time to the minute, in UTC (operators compare it with logs)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else None


@keys_app.command("rotate")
def keys_rotate(
    principal_id: Annotated[int, typer.Argument()],
    expires_in: Annotated[
        str | None,
        typer.Option(help="the new key's lifetime (90d, 12h, 2w); omit: as long as the old one"),
    ] = None,
) -> None:
    """Replace a principal's key (the old one stops working) and print the new one."""
    settings = get_settings()
    lifetime = _lifetime(expires_in)

    async def work(session: AsyncSession) -> tuple[dict[str, object], str]:
        return await auth_service.rotate(
            session=session,
            principal_id=principal_id,
            actor=cli_actor(),
            expires_at=auth_service.expiry(lifetime),
        )

    record, key = run(with_session(settings, work))
    _print_key(record, key)


@keys_app.command("revoke")
def keys_revoke(principal_id: Annotated[int, typer.Argument()]) -> None:
    """Revoke a principal's key."""
    settings = get_settings()

    async def work(session: AsyncSession) -> dict[str, object]:
        return await auth_service.revoke(
            session=session, principal_id=principal_id, actor=cli_actor()
        )

    record = run(with_session(settings, work))
    console.print(f"principal {record['id']} revoked at {record['revoked_at']}")


async def local_admin_key(settings: Settings) -> str:
    """A fresh key for the local admin of `make run` (created the first time, rotated after)."""

    async def work(session: AsyncSession) -> str:
        existing = [
            p
            for p in await auth_service.list_principals(session=session)
            if p["name"] == LOCAL_ADMIN and not p["revoked_at"]
        ]
        if existing:
            _, key = await auth_service.rotate(
                session=session, principal_id=int(str(existing[0]["id"])), actor="make run"
            )
        else:
            _, key = await auth_service.create_principal(
                session=session, name=LOCAL_ADMIN, role="admin", jurisdiction_code=None,
                unit=None, actor="make run",
            )  # fmt: skip
        return key

    return await with_session(settings, work)
