"""Data commands: boundary data (`geodata load`), demo incidents (`demo load`), `import`.

Each calls the service function the API or `make run` calls; the service records the audit
event, with the operating-system user as the actor."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
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
from sqlalchemy.ext.asyncio import AsyncSession

from app.cli.common import cli_actor, console, error, group, run, with_session
from app.config import Settings, get_settings
from app.db import create_engine, sessionmaker
from app.errors import InvalidInput
from app.geodata import load as geodata
from app.incidents import demo, imports
from app.runtime import database_url

geodata_app = group("Boundary data and border posts.")
demo_app = group("Demo incidents.")


async def geodata_default(session: AsyncSession, settings: Settings) -> None:
    """Load the bundled boundaries with a progress line, and print what was loaded."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console) as bar:
        task = bar.add_task("loading default boundaries", total=None)
        report = await geodata.load_default(
            session=session,
            settings=settings,
            actor=cli_actor(),
            progress=lambda step: bar.update(task, description=step),
        )
    _print_report(report)


async def load_demo(session: AsyncSession, *, count: int, seed: int) -> int:
    """Add demo incidents with a progress bar; returns how many were new."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("demo incidents", total=count)
        written = await demo.load(
            session=session,
            count=count,
            seed=seed,
            actor=cli_actor(),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(f"demo incidents: {written} new")
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
    official_code_field: Annotated[
        str | None,
        typer.Option(
            help="replace the polygons of today's units of --level (province or commune),"
            " matched on the official code in this attribute (e.g. an agency's commune file)"
        ),
    ] = None,
) -> None:
    """Load boundaries (replacing the same code + valid_from), then re-derive borders,
    adjacency and every incident's jurisdiction and border distance."""
    settings = get_settings()

    async def work(session: AsyncSession) -> None:
        if if_empty and (await session.execute(text("SELECT count(*) FROM jurisdiction"))).scalar():
            console.print("boundaries already loaded: nothing to do")
            return
        if from_file is None:
            await geodata_default(session, settings)
            return
        if official_code_field is not None:
            with Progress(
                SpinnerColumn(), TextColumn("{task.description}"), console=console
            ) as bar:
                task = bar.add_task("loading", total=None)
                report = await geodata.load_official(
                    session=session,
                    settings=settings,
                    path=from_file,
                    level=level or "commune",
                    official_field=official_code_field,
                    source=source,
                    layer=layer,
                    actor=cli_actor(),
                    progress=lambda step: bar.update(task, description=step),
                )
            _print_report(report)
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
                actor=cli_actor(),
                progress=lambda step: bar.update(task, description=step),
            )
        _print_report(report)

    run(with_session(settings, work))


@demo_app.command("load")
def demo_load(
    count: Annotated[int, typer.Option(min=0, max=1_000_000)] = 3000,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Add demo incidents (source 'demo'); the same seed never adds them twice."""
    settings = get_settings()

    async def work(session: AsyncSession) -> None:
        await load_demo(session, count=count, seed=seed)

    run(with_session(settings, work))


class ImportFormat(StrEnum):
    """File formats of `borderwatch import`."""

    csv = "csv"
    geojson = "geojson"


class ImportMode(StrEnum):
    """What `borderwatch import` does with invalid rows."""

    all_or_nothing = "all_or_nothing"
    skip_invalid = "skip_invalid"


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
    first_load: Annotated[
        bool,
        typer.Option(
            "--first-load",
            help="empty or small table: build its indexes after the load (locks out readers"
            " of incidents until it ends)",
        ),
    ] = False,
) -> None:
    """Import incidents from a CSV (plain or ACLED) or GeoJSON file (see docs/import.md).

    Rows with a source_id update the incident imported before from the same source."""
    settings = get_settings()
    chosen: imports.Format | None = imports.guess_format(filename=file.name)
    if fmt is not None:
        chosen = "csv" if fmt is ImportFormat.csv else "geojson"
    if chosen is None:
        error("cannot tell the format from the file name: use --format")
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
                        actor=cli_actor(),
                        clock_skew_s=settings.clock_skew_s,
                        statement_timeout_ms=settings.import_statement_timeout_ms,
                        first_load=first_load,
                        progress=progress,
                    )
        except InvalidInput as exc:
            return exc
        finally:
            await engine.dispose()

    outcome = run(work())
    if isinstance(outcome, InvalidInput):
        error(outcome.detail, "rejected")
        _print_row_errors(outcome.extra.get("errors", []), int(outcome.extra.get("more_errors", 0)))
        raise typer.Exit(1)
    r = outcome
    console.print(
        f"rows: {r.rows}, inserted: {r.inserted}, updated: {r.updated}, "
        f"unchanged: {r.unchanged}, skipped: {r.skipped}"
    )
    if r.ignored_columns:
        console.print(f"ignored columns: {escape(', '.join(r.ignored_columns))}")
    console.print(f"times without an offset read as local time in {r.time_zone}")
    _print_row_errors(r.errors, r.more_errors)


def _print_row_errors(errors: list[dict[str, object]], more: int) -> None:
    for e in errors:
        column = f" {e['column']}" if e.get("column") else ""
        console.print(
            f"  [yellow]row {e['row']}{escape(column)}:[/yellow] {escape(str(e['reason']))}"
        )
    if more:
        console.print(f"  … and {more} more")
