"""What every command shares: the console, running a coroutine, one transaction, the actor."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import create_engine, sessionmaker
from app.embedded import ClusterError
from app.errors import AppError
from app.incidents import rules
from app.runtime import database_url

# soft wrap: a line longer than the terminal is left for the terminal to fold, never broken
# by us (a sign-in link, a key, a path or an error message copied from a broken line is wrong)
console = Console(stderr=True, soft_wrap=True)


def group(help_text: str, **options: Any) -> typer.Typer:
    """A command group. Usage errors are printed by click as plain lines (typer's rich panel
    hard-wraps them at the terminal's width, paths and values included)."""
    return typer.Typer(help=help_text, rich_markup_mode=None, **options)


def error(message: str, label: str = "error") -> None:
    """An error line: `label:` in red, the message as text (never read as rich markup)."""
    console.print(f"[red]{label}:[/red] {escape(message)}")


T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; a domain, cluster or runtime error is printed and exits with 1."""
    try:
        return asyncio.run(coro)
    except (AppError, ClusterError, RuntimeError) as exc:
        error(str(exc))
        raise typer.Exit(1) from exc


async def with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction: committed when it succeeds, rolled back otherwise."""
    rules.use_time_zone(settings.time_zone)
    engine = create_engine(database_url(settings), settings)
    try:
        async with sessionmaker(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


def cli_actor() -> str:
    """The operating-system user, as the actor recorded in the history and the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
