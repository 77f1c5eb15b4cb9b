"""What every command shares: the console, running a coroutine, one transaction, the actor."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import create_engine, sessionmaker
from app.embedded import ClusterError
from app.errors import AppError
from app.incidents import rules
from app.runtime import database_url

console = Console(stderr=True)

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; a domain, cluster or runtime error is printed and exits with 1."""
    try:
        return asyncio.run(coro)
    except (AppError, ClusterError, RuntimeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
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
