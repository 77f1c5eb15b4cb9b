"""`borderwatch posts …`: border posts (the same service, audit and history as the API).

The command line acts as a national admin, named by the operating-system user."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.scope import Scope
from app.cli.common import cli_actor, console, error, group, run, with_session
from app.config import get_settings
from app.db import create_engine, sessionmaker
from app.errors import InvalidInput
from app.incidents import rules
from app.posts import areas, files, manage, rederive
from app.runtime import database_url

posts_app = group("Border posts: create, change, close, import, export, areas, re-derivation.")
NATIONAL = Scope(code=None, distance_m=0)
T = TypeVar("T")


def _day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"'{text}' is not a day (YYYY-MM-DD)", param_hint=option) from exc


def _json_file(file: Path) -> Any:
    try:
        return orjson.loads(file.read_bytes())
    except orjson.JSONDecodeError as exc:
        error(f"{file}: {exc}")
        raise typer.Exit(1) from exc


def _print(feature: dict[str, Any], job: dict[str, Any] | None = None) -> None:
    p = feature["properties"]
    period = f"{p.get('valid_from') or '…'} – {p.get('valid_to') or '…'}"
    console.print(
        f"{escape(p['code'])}: {escape(p['name'])} ({p['kind']}, {period}, v{p['version']})"
    )
    if job is not None:
        console.print(
            f"  nearest post derived again: job {job['id']} {job['state']},"
            f" {job['done']}/{job['total']} incidents, {job['changed']} changed"
        )


async def _own_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` with a session that commits by itself (batch by batch)."""
    settings = get_settings()
    rules.use_time_zone(settings.time_zone)
    engine = create_engine(database_url(settings), settings)
    try:
        async with sessionmaker(engine)() as session:
            return await work(session)
    finally:
        await engine.dispose()


def _format(file: Path, fmt: str | None) -> files.Format:
    found = files.guess(None, file.name) if fmt is None else fmt
    for known in files.FORMATS:
        if found == known:
            return known
    raise typer.BadParameter("csv, geojson or gpkg", param_hint="--format")


@posts_app.command("list")
def list_cmd(closed: Annotated[bool, typer.Option(help="closed posts too")] = False) -> None:
    """The posts in force today (or every post)."""

    async def work(session: AsyncSession) -> bytes:
        return await files.export(session=session, fmt="geojson")

    today = date.today().isoformat()
    for f in orjson.loads(run(with_session(get_settings(), work)))["features"]:
        p = f["properties"]
        if not closed and p["valid_to"] is not None and p["valid_to"] <= today:
            continue
        console.print(f"{escape(p['code'])}: {escape(p['name'])} ({p['kind']}, {p['border']})")


@posts_app.command("show")
def show_cmd(
    code: Annotated[str, typer.Argument(help="the post's code")],
    history: Annotated[bool, typer.Option(help="print its history")] = False,
) -> None:
    """One post as JSON (with its history)."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await manage.get(session, code, history=history)

    feature = run(with_session(get_settings(), work))
    feature["properties"].pop("area", None)
    typer.echo(orjson.dumps(feature, option=orjson.OPT_INDENT_2).decode())


@posts_app.command("create")
def create_cmd(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSON as POST /border-posts")
    ],
) -> None:
    """Create a post (audited as the operating-system user)."""
    try:
        body = manage.PostIn.model_validate(_json_file(file))
    except ValidationError as exc:
        error(str(exc))
        raise typer.Exit(1) from exc

    async def work(session: AsyncSession) -> tuple[dict[str, Any], dict[str, Any] | None]:
        return await manage.create(session, body=body, scope=NATIONAL, actor=cli_actor())

    _print(*run(with_session(get_settings(), work)))


@posts_app.command("change")
def change_cmd(
    code: Annotated[str, typer.Argument(help="the post's code")],
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSON as PATCH /border-posts/…")
    ],
    version: Annotated[int | None, typer.Option(help="the version read (If-Match)")] = None,
) -> None:
    """Change a post (audited)."""
    try:
        patch = manage.PostPatch.model_validate(_json_file(file))
    except ValidationError as exc:
        error(str(exc))
        raise typer.Exit(1) from exc

    async def work(session: AsyncSession) -> tuple[dict[str, Any], dict[str, Any] | None]:
        return await manage.update(
            session, code=code, patch=patch, expected_version=version, scope=NATIONAL,
            actor=cli_actor(),
        )  # fmt: skip

    _print(*run(with_session(get_settings(), work)))


@posts_app.command("close")
def close_cmd(
    code: Annotated[str, typer.Argument(help="the post's code")],
    on: Annotated[str | None, typer.Option(help="first day closed (default today)")] = None,
) -> None:
    """Close a post (it is kept, with its valid_to and history)."""
    day = _day(on, "--on")

    async def work(session: AsyncSession) -> tuple[dict[str, Any], dict[str, Any] | None]:
        return await manage.close(
            session, code=code, on=day, expected_version=None, scope=NATIONAL, actor=cli_actor()
        )

    _print(*run(with_session(get_settings(), work)))


@posts_app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv, geojson or gpkg (default: suffix)")
    ] = None,
) -> None:
    """Import posts (all-or-nothing; each invalid row is printed)."""
    found = _format(file, fmt)
    data = file.read_bytes()

    async def work(session: AsyncSession) -> dict[str, Any]:
        rows = files.read(data, found)
        try:
            return await files.import_rows(
                session=session, rows=rows, scope=NATIONAL, actor=cli_actor()
            )
        except InvalidInput as exc:
            for e in exc.extra.get("errors", []):
                error(f"row {e['row']}, {e['column'] or 'row'}: {e['reason']}", "invalid")
            raise

    report = run(with_session(get_settings(), work))
    console.print(f"rows {report['rows']}: {report['inserted']} new, {report['updated']} changed")


@posts_app.command("export")
def export_cmd(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="where to write")],
    fmt: Annotated[str | None, typer.Option("--format", help="csv, geojson or gpkg")] = None,
) -> None:
    """Every post to a file."""
    found = _format(file, fmt)

    async def work(session: AsyncSession) -> bytes:
        return await files.export(session=session, fmt=found)

    file.write_bytes(run(with_session(get_settings(), work)))
    console.print(f"written: {file}")


@posts_app.command("kinds")
def kinds_cmd() -> None:
    """The kinds of post."""

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return await manage.kinds(session)

    for k in run(with_session(get_settings(), work)):
        gate = " (gate)" if k["gate"] else ""
        console.print(f"{k['code']}: {escape(k['name_vi'])} / {escape(k['name_en'])}{gate}")


@posts_app.command("kind-add")
def kind_add_cmd(
    code: Annotated[str, typer.Argument()],
    name_vi: Annotated[str, typer.Argument(help="Vietnamese name")],
    name_en: Annotated[str, typer.Argument(help="English name")],
    gate: Annotated[bool, typer.Option(help="a border gate (opening status, hours)")] = False,
) -> None:
    """Add a kind of post (audited)."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await manage.add_kind(
            session, code=code, name_vi=name_vi, name_en=name_en, gate=gate, actor=cli_actor()
        )

    run(with_session(get_settings(), work))
    console.print(f"kind added: {code}")


@posts_app.command("areas")
def areas_cmd(
    km: Annotated[float, typer.Option(help="depth of the border zone, km")] = areas.DEFAULT_KM,
) -> None:
    """Make the generated areas of responsibility again."""

    async def work(session: AsyncSession) -> int:
        return await areas.generate(session=session, km=km, actor=cli_actor())

    console.print(f"areas changed: {run(with_session(get_settings(), work))}")


@posts_app.command("rederive")
def rederive_cmd(
    job: Annotated[int | None, typer.Option(help="one job (default: every unfinished one)")] = None,
    batch: Annotated[int | None, typer.Option(min=1, max=rederive.MAX_BATCH)] = None,
) -> None:
    """Finish re-derivation jobs (nearest posts of incidents), a batch per transaction."""

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        ids = [job] if job is not None else await rederive.pending(session=session)
        await session.commit()
        done = []
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=console) as bar:
            for job_id in ids:
                task = bar.add_task(f"job {job_id}", total=None)

                def show(d: int, t: int, task: TaskID = task) -> None:
                    bar.update(task, completed=d, total=t)

                status = await rederive.run(
                    session=session, job_id=job_id, batch=batch, progress=show
                )
                done.append(status)
        return done

    for status in run(_own_session(work)):
        console.print(
            f"job {status['id']}: {status['state']}, {status['done']}/{status['total']},"
            f" {status['changed']} changed"
        )
