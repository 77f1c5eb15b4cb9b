"""`borderwatch`: the operators' command line (embedded cluster, migrations, data, serving)."""

from __future__ import annotations

import asyncio
import getpass
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app import migrate
from app.auth import service as auth_service
from app.auth.keys import parse_lifetime
from app.config import Settings, get_settings
from app.db import create_engine, ensure_database, sessionmaker
from app.embedded import ClusterError
from app.errors import AppError, InvalidInput
from app.geodata import load as geodata
from app.incidents import demo, imports
from app.runtime import database_url, embedded_cluster

console = Console(stderr=True)
app = typer.Typer(help="Borderwatch operator commands.", no_args_is_help=True)
db_app = typer.Typer(help="The embedded PostGIS cluster (used when DATABASE_URL is not set).")
geodata_app = typer.Typer(help="Boundary data and border posts.")
demo_app = typer.Typer(help="Demo incidents.")
app.add_typer(db_app, name="db")
app.add_typer(geodata_app, name="geodata")
keys_app = typer.Typer(help="API principals and their keys (keys are shown once).")
app.add_typer(demo_app, name="demo")
app.add_typer(keys_app, name="keys")
LOCAL_ADMIN = "local admin (make run)"

T = TypeVar("T")


def _run(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except (AppError, ClusterError, RuntimeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


async def _with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction: committed when it succeeds, rolled back otherwise."""
    engine = create_engine(database_url(settings), settings)
    try:
        async with sessionmaker(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


def db_start(settings: Settings) -> bool:
    """Create and start the embedded cluster if needed; True when this call started it."""
    if settings.database_url:
        return False
    cluster = embedded_cluster(settings)
    if cluster.init():
        console.print(f"created embedded PostGIS cluster in {cluster.pgdata}")
    if cluster.running():
        return False
    cluster.start()
    console.print(f"PostgreSQL listening on 127.0.0.1:{cluster.port}")
    return True


async def prepare(settings: Settings, *, with_demo: bool = True) -> None:
    """Create the database if missing, migrate it, and load defaults + demo data when empty."""
    url = database_url(settings)
    if await ensure_database(url):
        console.print("created database")
    engine = create_engine(url, settings)
    try:
        await migrate.upgrade(engine)
        await _load_if_empty(engine, settings, with_demo=with_demo)
    finally:
        await engine.dispose()


async def _load_if_empty(engine: AsyncEngine, settings: Settings, *, with_demo: bool) -> None:
    async with sessionmaker(engine)() as session, session.begin():
        has_boundaries = (await session.execute(text("SELECT count(*) FROM jurisdiction"))).scalar()
        if not has_boundaries:
            await _geodata_default(session, settings)
        if with_demo and not await demo.count_incidents(session=session):
            await _demo(session, count=3000, seed=7)


async def _geodata_default(session: AsyncSession, settings: Settings) -> None:
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console) as bar:
        task = bar.add_task("loading default boundaries", total=None)
        report = await geodata.load_default(
            session=session,
            settings=settings,
            progress=lambda step: bar.update(task, description=step),
        )
    _print_report(report)
    await auth_service.record(
        session=session, actor=_cli_actor(), action="geodata_load", entity_type="geodata",
        entity_id="default", after=_report_dict(report),
    )  # fmt: skip


def _report_dict(report: geodata.LoadReport) -> dict[str, object]:
    return {
        "jurisdictions": report.jurisdictions,
        "segments": report.segments,
        "adjacency_pairs": report.adjacency_pairs,
        "posts": report.posts,
        "incidents_rederived": report.incidents_rederived,
        "repaired": report.repaired,
        "skipped": report.skipped,
    }


async def _demo(session: AsyncSession, *, count: int, seed: int) -> int:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("demo incidents", total=count)
        written = await demo.load(
            session=session,
            count=count,
            seed=seed,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(f"demo incidents: {written} new")
    await auth_service.record(
        session=session, actor=_cli_actor(), action="demo_load", entity_type="incident",
        entity_id=None, after={"count": count, "seed": seed, "written": written},
    )  # fmt: skip
    return written


def _print_report(report: geodata.LoadReport) -> None:
    console.print(
        f"jurisdictions: {report.jurisdictions}, border segments: {report.segments}, "
        f"adjacent pairs: {report.adjacency_pairs}, border posts: {report.posts}, "
        f"incidents re-derived: {report.incidents_rederived}"
    )
    for line in report.repaired:
        console.print(f"  [yellow]repaired[/yellow] {line}")
    for line in report.skipped:
        console.print(f"  [yellow]skipped[/yellow] {line}")


@db_app.command("up")
def db_up() -> None:
    """Create (first time) and start the embedded cluster, then create and migrate the database."""
    settings = get_settings()
    if settings.database_url:
        console.print("DATABASE_URL is set: the embedded cluster is not used")
        raise typer.Exit(0)
    try:
        db_start(settings)
    except ClusterError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    _run(prepare(settings, with_demo=False))


@db_app.command("down")
def db_down() -> None:
    """Stop the embedded cluster (its data stays in the data directory)."""
    cluster = embedded_cluster(get_settings())
    cluster.stop()
    console.print("embedded cluster stopped")


@db_app.command("status")
def db_status() -> None:
    """Say where the database is and whether it is running."""
    settings = get_settings()
    if settings.database_url:
        console.print("using DATABASE_URL (external server)")
        return
    cluster = embedded_cluster(settings)
    state = "running" if cluster.running() else "stopped"
    made = "initialised" if cluster.initialised() else "not created yet"
    console.print(f"embedded cluster: {made}, {state}, data {cluster.pgdata}, port {cluster.port}")
    if not cluster.running():
        raise typer.Exit(3)


@app.command("migrate")
def migrate_cmd(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    down: Annotated[bool, typer.Option("--down", help="downgrade to the revision")] = False,
) -> None:
    """Apply (or with --down revert) Alembic migrations."""
    settings = get_settings()

    async def work() -> None:
        url = database_url(settings)
        await ensure_database(url)
        engine = create_engine(url, settings)
        try:
            if down:
                await migrate.downgrade(engine, revision)
            else:
                await migrate.upgrade(engine, revision)
            console.print(f"database at revision {await migrate.current_revision(engine)}")
        finally:
            await engine.dispose()

    _run(work())


@geodata_app.command("load")
def geodata_load(
    from_file: Annotated[
        Path | None,
        typer.Option("--from", help="GeoJSON / GeoPackage / Shapefile; default: bundled data"),
    ] = None,
    layer: Annotated[str | None, typer.Option(help="layer name in a GeoPackage")] = None,
    code_field: Annotated[str, typer.Option(help="attribute holding the code")] = "code",
    name_field: Annotated[str, typer.Option(help="attribute holding the name")] = "name",
    name_local_field: Annotated[str | None, typer.Option(help="local-language name")] = None,
    parent_field: Annotated[str | None, typer.Option(help="attribute with the parent code")] = None,
    level: Annotated[str | None, typer.Option(help="level for every feature")] = None,
    country: Annotated[str | None, typer.Option(help="alpha-3 for every feature")] = None,
    parent: Annotated[str | None, typer.Option(help="parent code for every feature")] = None,
    source: Annotated[str | None, typer.Option(help="provenance text")] = None,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="do nothing when boundaries are already loaded")
    ] = False,
) -> None:
    """Load boundaries (replacing the same code + valid_from), then re-derive borders,
    adjacency and every incident's jurisdiction and border distance."""
    settings = get_settings()

    async def work(session: AsyncSession) -> None:
        if if_empty and (await session.execute(text("SELECT count(*) FROM jurisdiction"))).scalar():
            console.print("boundaries already loaded: nothing to do")
            return
        if from_file is None:
            await _geodata_default(session, settings)
            return
        fields = geodata.FieldMap(
            code=code_field,
            name=name_field,
            name_local=name_local_field,
            level=None if level else "level",
            parent_code=parent_field,
            country=None if country else "country",
        )
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console) as bar:
            task = bar.add_task("loading", total=None)
            report = await geodata.load_file(
                session=session,
                settings=settings,
                path=from_file,
                fields=fields,
                level=level,
                country=country,
                parent_code=parent,
                source=source,
                layer=layer,
                progress=lambda step: bar.update(task, description=step),
            )
        _print_report(report)
        await auth_service.record(
            session=session, actor=_cli_actor(), action="geodata_load", entity_type="geodata",
            entity_id=str(from_file), after=_report_dict(report),
        )  # fmt: skip

    _run(_with_session(settings, work))


@demo_app.command("load")
def demo_load(
    count: Annotated[int, typer.Option(min=0, max=1_000_000)] = 3000,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Add demo incidents (source 'demo'); the same seed never adds them twice."""
    settings = get_settings()

    async def work(session: AsyncSession) -> None:
        await _demo(session, count=count, seed=seed)

    _run(_with_session(settings, work))


class ImportFormat(StrEnum):
    """File formats of `borderwatch import`."""

    csv = "csv"
    geojson = "geojson"


class ImportMode(StrEnum):
    """What `borderwatch import` does with invalid rows."""

    all_or_nothing = "all_or_nothing"
    skip_invalid = "skip_invalid"


@app.command("import")
def import_cmd(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV or GeoJSON")
    ],
    fmt: Annotated[
        ImportFormat | None,
        typer.Option("--format", help="default: from the file name (.csv, .geojson, .json)"),
    ] = None,
    mode: Annotated[
        ImportMode, typer.Option(help="all_or_nothing: any invalid row rejects the whole file")
    ] = ImportMode.all_or_nothing,
    source: Annotated[
        str | None,
        typer.Option(help="source of rows that name none (default 'import'; 'acled' for ACLED)"),
    ] = None,
) -> None:
    """Import incidents from a CSV (plain or ACLED) or GeoJSON file (see docs/import.md).

    Rows with a source_id update the incident imported before from the same source."""
    settings = get_settings()
    chosen: imports.Format | None = imports.guess_format(filename=file.name)
    if fmt is not None:
        chosen = "csv" if fmt is ImportFormat.csv else "geojson"
    if chosen is None:
        console.print("[red]error:[/red] cannot tell the format from the file name: use --format")
        raise typer.Exit(2)
    chosen_mode: imports.Mode = (
        "skip_invalid" if mode is ImportMode.skip_invalid else "all_or_nothing"
    )

    async def work() -> imports.ImportReport | InvalidInput:
        engine = create_engine(database_url(settings), settings)
        columns = (
            TextColumn("{task.description:<15}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        try:
            with Progress(*columns, console=console) as bar:
                tasks: dict[str, TaskID] = {}

                def progress(phase: str, done: int, total: int | None) -> None:
                    if phase not in tasks:
                        label = "reading (bytes)" if phase == "reading" else phase
                        tasks[phase] = bar.add_task(label, total=total)
                    bar.update(tasks[phase], completed=done, total=total)

                async with sessionmaker(engine)() as session:
                    return await imports.import_file(
                        session=session,
                        path=file,
                        fmt=chosen,
                        mode=chosen_mode,
                        source=source,
                        actor=_cli_actor(),
                        clock_skew_s=settings.clock_skew_s,
                        progress=progress,
                    )
        except InvalidInput as exc:
            return exc
        finally:
            await engine.dispose()

    outcome = _run(work())
    if isinstance(outcome, InvalidInput):
        console.print(f"[red]rejected:[/red] {escape(outcome.detail)}")
        _print_row_errors(outcome.extra.get("errors", []), int(outcome.extra.get("more_errors", 0)))
        raise typer.Exit(1)
    r = outcome
    console.print(
        f"rows: {r.rows}, inserted: {r.inserted}, updated: {r.updated}, "
        f"unchanged: {r.unchanged}, skipped: {r.skipped}"
    )
    if r.ignored_columns:
        console.print(f"ignored columns: {escape(', '.join(r.ignored_columns))}")
    _print_row_errors(r.errors, r.more_errors)


def _cli_actor() -> str:
    """The operating-system user, as the actor recorded in the incident history."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _print_row_errors(errors: list[dict[str, object]], more: int) -> None:
    for e in errors:
        column = f" {e['column']}" if e.get("column") else ""
        console.print(
            f"  [yellow]row {e['row']}{escape(column)}:[/yellow] {escape(str(e['reason']))}"
        )
    if more:
        console.print(f"  … and {more} more")


def _print_key(record: dict[str, object], key: str) -> None:
    scope = record.get("jurisdiction") or "national"
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
        str | None, typer.Option(help="scope, e.g. VN-44; omit for national")
    ] = None,
    unit: Annotated[str | None, typer.Option(help="an officer's unit")] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="the key's lifetime, e.g. 90d, 12h or 2w; omit: no expiry")
    ] = None,
) -> None:
    """Create a principal and print its key once."""
    settings = get_settings()
    lifetime = _lifetime(expires_in)

    async def work(session: AsyncSession) -> tuple[dict[str, object], str]:
        return await auth_service.create_principal(
            session=session, name=name, role=role, jurisdiction_code=jurisdiction, unit=unit,
            actor=_cli_actor(), expires_at=auth_service.expiry(lifetime),
        )  # fmt: skip

    record, key = _run(_with_session(settings, work))
    _print_key(record, key)


@keys_app.command("list")
def keys_list() -> None:
    """List principals (never keys)."""
    settings = get_settings()

    async def work(session: AsyncSession) -> list[dict[str, object]]:
        return await auth_service.list_principals(session=session)

    now = datetime.now(UTC)
    # one line per principal, never wrapped: operators grep it
    print(f"{'id':>4}  {'role':<8} {'scope':<10} {'state':<8} {'key':<16} "
          f"{'expires (UTC)':<17} {'last used (UTC)':<17} name")  # fmt: skip
    for p in _run(_with_session(settings, work)):
        expires = _when(p["expires_at"])
        state = "revoked" if p["revoked_at"] else "active"
        if not p["revoked_at"] and expires and expires <= now:
            state = "expired"
        print(
            f"{p['id']:>4}  {p['role']!s:<8} {p['jurisdiction'] or 'national'!s:<10} "
            f"{state:<8} bw_{p['key_prefix']}_… {_minutes(expires) or 'never':<17} "
            f"{_minutes(_when(p['last_used_at'])) or 'never':<17} {p['name']}"
        )


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
            actor=_cli_actor(),
            expires_at=auth_service.expiry(lifetime),
        )

    record, key = _run(_with_session(settings, work))
    _print_key(record, key)


@keys_app.command("revoke")
def keys_revoke(principal_id: Annotated[int, typer.Argument()]) -> None:
    """Revoke a principal's key."""
    settings = get_settings()

    async def work(session: AsyncSession) -> dict[str, object]:
        return await auth_service.revoke(
            session=session, principal_id=principal_id, actor=_cli_actor()
        )

    record = _run(_with_session(settings, work))
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

    return await _with_session(settings, work)


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="default: settings (127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="default: settings (8000)")] = None,
    demo_data: Annotated[bool, typer.Option("--demo/--no-demo")] = True,
) -> None:
    """Start the database if embedded, migrate, load defaults when empty, and serve the API.

    Ctrl-C stops the API and, when this command started it, the embedded cluster."""
    import uvicorn

    settings = get_settings()
    try:
        started = db_start(settings)
    except ClusterError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    try:
        _run(prepare(settings, with_demo=demo_data))
        bind_host, bind_port = host or settings.host, port or settings.port
        base = f"http://{bind_host}:{bind_port}"
        console.print(f"Borderwatch on {base}/  (API docs: {base}/docs)")
        if settings.environment == "local":
            key = _run(local_admin_key(settings))
            console.print(
                "local admin key (new on every start; send it as 'Authorization: Bearer <key>'):"
            )
            print(key, flush=True)
            console.print(f"dashboard sign-in link: {base}/#key={key}")
        # uvicorn re-raises the signal that stopped it once it has shut down; turn SIGTERM
        # into an exception too so the `finally` below still stops the embedded cluster
        signal.signal(signal.SIGTERM, _terminate)
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=bind_host,
            port=bind_port,
            log_level="info",
            proxy_headers=False,
        )
    finally:
        if started:
            # a second Ctrl-C while stopping must not leave the cluster running
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            embedded_cluster(settings).stop()
            console.print("embedded cluster stopped")


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point."""
    app()
