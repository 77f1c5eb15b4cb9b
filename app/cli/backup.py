"""`backup` and `restore`: a pg_dump custom-format dump with a JSON manifest beside it.

`borderwatch backup FILE` writes FILE (pg_dump -Fc) and FILE.manifest.json: what the database
held when the dump was taken (schema revision, rows per table, the headline counts), the tools
and server versions, and the dump's SHA-256. The counts are read in the very snapshot pg_dump
dumps (`pg_export_snapshot()` + `pg_dump --snapshot`), so they describe the dump exactly even
while the service keeps writing.

`borderwatch restore FILE` checks the SHA-256 first, restores only into an empty database, in
one transaction (all or nothing), and then compares the restored database with the manifest.

The password never reaches an argument list: the tools read it from a temporary passfile
(mode 0600) named by PGPASSFILE. See docs/backup.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import URL, make_url

from app import migrate
from app.cli.common import console, error, run
from app.cli.server import db_start
from app.config import Settings, async_url, get_settings
from app.db import ensure_database
from app.embedded import ClusterError, bindir
from app.runtime import database_url, embedded_cluster

MANIFEST_FORMAT = "borderwatch-backup/1"
MANIFEST_SUFFIX = ".manifest.json"
HOUR_S = 3600
CHUNK_BYTES = 1 << 20

# the counts an operator reads first (each also checked, with every other table, on restore)
HEADLINE = {
    "incidents": "SELECT count(*) FROM incident",
    "incidents_deleted": "SELECT count(*) FROM incident WHERE deleted_at IS NOT NULL",
    "incident_history": "SELECT count(*) FROM incident_history",
    "incident_notes": "SELECT count(*) FROM incident_note",
    "incident_photos": "SELECT count(*) FROM incident_photo",
    "incident_photos_in_files": "SELECT count(*) FROM incident_photo WHERE content IS NULL",
    "principals": "SELECT count(*) FROM principal",
    "audit_events": "SELECT count(*) FROM audit_event",
    "jurisdictions": "SELECT count(*) FROM jurisdiction",
    "border_posts": "SELECT count(*) FROM border_post",
}
HEADLINE_TABLE = {name: sql.split(" FROM ")[1].split()[0] for name, sql in HEADLINE.items()}

# relations of the database itself: not in a system schema, not a member of an extension
# (PostGIS's spatial_ref_sys, the topology tables of the postgis/postgis image are)
OWN_RELATIONS = """
SELECT format('%I.%I', n.nspname, c.relname) AS name, c.relkind::text AS kind
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = ANY($1::text[])
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')
 ORDER BY 1
"""
TABLE_KINDS = ["r", "p"]
ANY_KINDS = ["r", "p", "v", "m", "S", "f"]


class BackupError(RuntimeError):
    """A backup or restore that cannot go on (printed as an error line by `run`)."""


@dataclass(frozen=True)
class Target:
    """Where a database is, as the client tools are told (the password kept apart)."""

    url: URL

    @classmethod
    def parse(cls, url: str) -> Target:
        """A target from a SQLAlchemy or libpq-style URL."""
        return cls(make_url(async_url(url)))

    @property
    def database(self) -> str:
        """The database name."""
        return str(self.url.database or "")

    def label(self) -> str:
        """The URL with its password shown as ***, for messages and the manifest."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=True)

    def dsn(self) -> str:
        """A libpq DSN with the password (for asyncpg, never for a child process)."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def tool_args(self) -> list[str]:
        """Connection options for pg_dump / pg_restore (no password)."""
        host = self.url.host or self.url.query.get("host")
        args = ["--no-password", "--dbname", self.database]
        if host:
            args += ["--host", str(host)]
        if self.url.port:
            args += ["--port", str(self.url.port)]
        if self.url.username:
            args += ["--username", self.url.username]
        return args

    @contextmanager
    def tool_env(self) -> Iterator[dict[str, str]]:
        """The child's environment: a passfile (0600, removed afterwards) instead of a
        password in argv or PGPASSWORD, and sslmode when the URL asks for one."""
        env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
        env |= {"PGCONNECT_TIMEOUT": "15", "PGAPPNAME": "borderwatch-backup"}
        sslmode = self.url.query.get("sslmode") or self.url.query.get("ssl")
        if isinstance(sslmode, str):
            env["PGSSLMODE"] = sslmode
        folder = Path(tempfile.mkdtemp(prefix="borderwatch-pgpass-"))  # 0700
        try:
            if self.url.password is not None:
                passfile = folder / "pgpass"
                fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                user = _pgpass_field(self.url.username or "*")
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(f"*:*:*:{user}:{_pgpass_field(str(self.url.password))}\n")
                env["PGPASSFILE"] = str(passfile)
            yield env
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


async def _connect(target: Target) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(target.dsn(), timeout=15)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackupError(f"cannot connect to {target.label()}: {exc}") from exc


@dataclass(frozen=True)
class Facts:
    """What a database holds: the things a manifest records and a restore compares."""

    revision: str | None
    tables: dict[str, int]
    counts: dict[str, int]


async def _facts(conn: asyncpg.Connection) -> Facts:
    """Rows per table, the headline counts and the Alembic revision, in `conn`'s snapshot."""
    tables: dict[str, int] = {}
    for row in await conn.fetch(OWN_RELATIONS, TABLE_KINDS):
        tables[row["name"]] = int(await conn.fetchval(f"SELECT count(*) FROM {row['name']}"))
    counts = {
        name: int(await conn.fetchval(sql))
        for name, sql in HEADLINE.items()
        if f"public.{HEADLINE_TABLE[name]}" in tables
    }
    revision = None
    if "public.alembic_version" in tables:
        revision = await conn.fetchval("SELECT version_num FROM public.alembic_version LIMIT 1")
    return Facts(revision=revision, tables=tables, counts=counts)


async def _server_major(conn: asyncpg.Connection) -> tuple[int, str]:
    number = int(await conn.fetchval("SELECT current_setting('server_version_num')"))
    return number // 10000, str(await conn.fetchval("SELECT current_setting('server_version')"))


def _tool_version(tool: Path) -> tuple[int, str]:
    """The major version and the `--version` line of a client tool."""
    done = subprocess.run(
        [str(tool), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    line = done.stdout.strip()
    found = re.search(r"\)\s*(\d+)", line)
    if done.returncode != 0 or not found:
        raise BackupError(f"{tool} --version failed: {done.stderr.strip() or line}")
    return int(found.group(1)), line


def _find_tool(name: str, *, server_major: int, embedded: bool) -> tuple[Path, str]:
    """The client tool of the server's own PostgreSQL: the embedded cluster's bindir, that
    major's Debian folder, or PATH; a newer major only when no equal one exists."""
    candidates: list[Path] = []
    if embedded:
        candidates.append(bindir() / name)
    candidates.append(Path("/usr/lib/postgresql") / str(server_major) / "bin" / name)
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    found = [(c, *_tool_version(c)) for c in candidates if c.is_file()]
    for path, major, line in found:
        if major == server_major:
            return path, line
    for path, major, line in found:
        if major > server_major:
            return path, line
    seen = ", ".join(f"{line} ({path})" for path, _, line in found) or "none"
    raise BackupError(
        f"no {name} of PostgreSQL {server_major} or newer (the server's version) was found"
        f" (found: {seen}): install postgresql-client-{server_major}"
    )


def _run_tool(args: list[str], env: dict[str, str], timeout_s: float, what: str) -> None:
    """Run a client tool with a spinner; its error output becomes the error message."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        bar.add_task(what, total=None)
        try:
            done = subprocess.run(
                args, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BackupError(f"{Path(args[0]).name} did not finish in {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise BackupError(f"{Path(args[0]).name} failed (exit {done.returncode}):\n{tail}")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path(dump: Path) -> Path:
    """Where the manifest of `dump` is: beside it, its name + .manifest.json."""
    return dump.with_name(dump.name + MANIFEST_SUFFIX)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@contextmanager
def _database(settings: Settings, url: str | None, *, create_cluster: bool) -> Iterator[Target]:
    """The target: `url`, DATABASE_URL, or the embedded cluster, started for the duration of
    the command when it is not running (and, for a restore, created when it does not exist)."""
    if url or settings.database_url:
        yield Target.parse(url or str(settings.database_url))
        return
    cluster = embedded_cluster(settings)
    if not create_cluster and not cluster.initialised():
        raise BackupError(
            f"DATABASE_URL is not set and there is no embedded cluster in {cluster.pgdata}:"
            " nothing to back up"
        )
    started = db_start(settings)
    try:
        yield Target.parse(database_url(settings))
    finally:
        if started:
            cluster.stop()
            console.print("embedded cluster stopped")


def _print_counts(title: str, facts: Facts, restored: Facts | None = None) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("")
    table.add_column("manifest" if restored else "rows", justify="right")
    if restored:
        table.add_column("restored", justify="right")
        table.add_column("")
    for name, value in facts.counts.items():
        cells = [name, f"{value:,}"]
        if restored:
            got = restored.counts.get(name)
            cells += ["-" if got is None else f"{got:,}", _mark(got == value)]
        table.add_row(*cells)
    if restored:
        same = sum(restored.tables.get(name) == n for name, n in facts.tables.items())
        table.add_row(
            "tables (rows each)",
            str(len(facts.tables)),
            f"{same} equal",
            _mark(restored.tables == facts.tables),
        )
        table.add_row(
            "schema revision",
            str(facts.revision),
            str(restored.revision),
            _mark(restored.revision == facts.revision),
        )
    else:
        table.add_row("tables", str(len(facts.tables)))
        table.add_row("schema revision", str(facts.revision))
    console.print(table)


def _mark(ok: bool) -> str:
    return "[green]✓[/green]" if ok else "[red]✗[/red]"


def backup(
    file: Annotated[
        Path | None,
        typer.Argument(help="the dump to write; default borderwatch-<UTC time>.dump here"),
    ] = None,
    timeout_s: Annotated[
        float, typer.Option("--timeout", help="seconds pg_dump may take", min=1)
    ] = 6 * HOUR_S,
) -> None:
    """Dump the database (pg_dump -Fc, one consistent snapshot) to FILE and write
    FILE.manifest.json (schema revision, row counts, versions, SHA-256)."""
    settings = get_settings()
    dump = file or Path(f"borderwatch-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.dump")
    manifest = manifest_path(dump)
    for path in (dump, manifest):
        if path.exists():
            error(f"{path} exists: choose another name (a backup never overwrites a file)")
            raise typer.Exit(1)
    if not dump.parent.is_dir():
        error(f"folder {dump.parent} does not exist")
        raise typer.Exit(1)
    try:
        with _database(settings, None, create_cluster=False) as target:
            written = run(
                _backup(target, dump, embedded=not settings.database_url, timeout_s=timeout_s)
            )
    except (BackupError, ClusterError) as exc:
        error(str(exc))
        raise typer.Exit(1) from exc
    console.print(f"backup written: {escape(str(dump))} ({written['dump']['bytes']:,} bytes)")
    console.print(f"manifest: {escape(str(manifest))}")
    console.print(f"sha256 {written['dump']['sha256']}")
    if written["counts"].get("incident_photos_in_files"):
        console.print(
            "[yellow]note:[/yellow] some photos are files in BORDERWATCH_PHOTO_DIR, not in the"
            " database: back that folder up as well (docs/backup.md)"
        )


async def _backup(
    target: Target, dump: Path, *, embedded: bool, timeout_s: float
) -> dict[str, Any]:
    partial = dump.with_name(dump.name + ".partial")
    conn = await _connect(target)
    try:
        major, server_version = await _server_major(conn)
        pg_dump, dump_line = _find_tool("pg_dump", server_major=major, embedded=embedded)
        restore_tool = pg_dump.with_name("pg_restore")
        restore_line = _tool_version(restore_tool)[1] if restore_tool.is_file() else None
        # one snapshot for the counts and the dump: the manifest describes exactly this dump
        tx = conn.transaction(isolation="repeatable_read", readonly=True)
        await tx.start()
        try:
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            taken_at: datetime = await conn.fetchval("SELECT now()")
            facts = await _facts(conn)
            extensions = {
                r["extname"]: r["extversion"]
                for r in await conn.fetch("SELECT extname, extversion FROM pg_extension")
            }
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            with target.tool_env() as env:
                args = [
                    str(pg_dump),
                    "--format=custom",
                    f"--file={partial}",
                    f"--snapshot={snapshot}",
                    *target.tool_args(),
                ]
                _run_tool(args, env, timeout_s, f"pg_dump {target.database}")
        finally:
            await tx.rollback()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        await conn.close()
    written = {
        "format": MANIFEST_FORMAT,
        "created_at": _utc(taken_at),
        "dump": {
            "file": dump.name,
            "format": "pg_dump custom (-Fc)",
            "bytes": partial.stat().st_size,
            "sha256": sha256_of(partial),
        },
        "schema_revision": facts.revision,
        "counts": facts.counts,
        "tables": facts.tables,
        "source": {
            "database": target.label(),
            "server_version": server_version,
            "server_major": major,
            "extensions": extensions,
        },
        "tools": {
            "pg_dump": dump_line,
            "pg_dump_major": _tool_version(pg_dump)[0],
            "pg_restore": restore_line,
        },
    }
    partial.rename(dump)
    # the manifest last: a dump without one is an unfinished backup
    manifest = manifest_path(dump)
    scratch = manifest.with_name(manifest.name + ".partial")
    scratch.write_text(json.dumps(written, indent=2, ensure_ascii=False) + "\n", "utf-8")
    scratch.chmod(0o600)
    scratch.rename(manifest)
    _print_counts(f"{target.database} at {written['created_at']}", facts)
    return written


def read_manifest(dump: Path) -> dict[str, Any]:
    """The manifest beside `dump`, checked for the fields a restore needs."""
    path = manifest_path(dump)
    if not dump.is_file():
        raise BackupError(f"{dump} not found")
    if not path.is_file():
        raise BackupError(f"{path} not found: a dump is restored only with its manifest")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text("utf-8"))
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, expected {MANIFEST_FORMAT}")
        for key in ("dump", "tables", "counts", "tools", "schema_revision"):
            if key not in manifest:
                raise ValueError(f"no {key!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", str(manifest["dump"].get("sha256"))):
            raise ValueError("no valid dump.sha256")
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{path} is not a Borderwatch backup manifest: {exc}") from exc
    return manifest


def verify_dump(dump: Path, manifest: dict[str, Any]) -> None:
    """Refuse a dump whose size or SHA-256 differs from its manifest's."""
    expected = manifest["dump"]
    size = dump.stat().st_size
    if size != expected.get("bytes"):
        raise BackupError(
            f"{dump} has {size} bytes, its manifest says {expected.get('bytes')}: the file is"
            " truncated or not the one the manifest describes; nothing was restored"
        )
    actual = sha256_of(dump)
    if actual != expected["sha256"]:
        raise BackupError(
            f"the SHA-256 of {dump} ({actual}) differs from its manifest's"
            f" ({expected['sha256']}): the file is damaged or altered; nothing was restored"
        )


def restore(
    file: Annotated[Path, typer.Argument(help="a dump written by `borderwatch backup`")],
    target_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="the database to restore into (created when missing; must be empty);"
            " default: DATABASE_URL or the embedded cluster",
        ),
    ] = None,
    timeout_s: Annotated[
        float, typer.Option("--timeout", help="seconds pg_restore may take", min=1)
    ] = 6 * HOUR_S,
) -> None:
    """Restore FILE into an EMPTY database (checked first, never overwritten): SHA-256 against
    the manifest, pg_restore in one transaction, then counts and revision against the
    manifest."""
    settings = get_settings()
    try:
        manifest = read_manifest(file)
        verify_dump(file, manifest)
        console.print(f"{escape(str(file))}: SHA-256 matches the manifest")
        with _database(settings, target_url, create_cluster=True) as target:
            embedded = not (target_url or settings.database_url)
            run(_restore(target, file, manifest, embedded=embedded, timeout_s=timeout_s))
    except (BackupError, ClusterError) as exc:
        error(str(exc))
        raise typer.Exit(1) from exc


async def _restore(
    target: Target, dump: Path, manifest: dict[str, Any], *, embedded: bool, timeout_s: float
) -> None:
    if await ensure_database(target.url.render_as_string(hide_password=False)):
        console.print(f"created database {escape(target.database)}")
    conn = await _connect(target)
    try:
        present = await conn.fetch(OWN_RELATIONS, ANY_KINDS)
        if present:
            names = ", ".join(r["name"] for r in present[:5])
            raise BackupError(
                f"database {target.label()} is not empty ({len(present)} tables or other"
                f" relations, e.g. {names}): a restore goes only into an empty database and"
                " never overwrites data; give another --database-url (it is created when"
                " missing)"
            )
        major, _ = await _server_major(conn)
    finally:
        await conn.close()
    dump_major = int(manifest["tools"].get("pg_dump_major") or 0)
    if major < dump_major:
        raise BackupError(
            f"the dump was written by pg_dump {dump_major}; the server runs PostgreSQL"
            f" {major}: restore it into a server of version {dump_major} or newer"
        )
    pg_restore, _ = _find_tool("pg_restore", server_major=major, embedded=embedded)
    started = time.monotonic()
    with target.tool_env() as env:
        args = [
            str(pg_restore),
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            *target.tool_args(),
            str(dump),
        ]
        _run_tool(args, env, timeout_s, f"pg_restore into {target.database}")
    conn = await _connect(target)
    try:
        restored = await _facts(conn)
    finally:
        await conn.close()
    expected = Facts(
        revision=manifest["schema_revision"], tables=manifest["tables"], counts=manifest["counts"]
    )
    _print_counts(
        f"restored {dump.name} (taken {manifest.get('created_at')}) into {target.database}"
        f" in {time.monotonic() - started:.1f} s",
        expected,
        restored,
    )
    if restored != expected:
        differ = sorted(
            name
            for name in {*expected.tables, *restored.tables}
            if expected.tables.get(name) != restored.tables.get(name)
        )
        raise BackupError(
            f"the restored database differs from the manifest (tables: {', '.join(differ)};"
            f" revision {restored.revision} against {expected.revision}): do not use it"
        )
    head = migrate.head_revision()
    if restored.revision != head:
        console.print(
            f"[yellow]note:[/yellow] the backup is at revision {restored.revision}, this"
            f" version of Borderwatch at {head}: run `borderwatch migrate` before serving it"
        )
    if manifest["counts"].get("incident_photos_in_files"):
        console.print(
            "[yellow]note:[/yellow] some photos were files in BORDERWATCH_PHOTO_DIR: restore"
            " that folder as well"
        )
    console.print(f"[green]restore complete:[/green] {escape(target.label())}")
