"""`borderwatch backup` / `restore` on the real test server: a round trip compared row by row
with SQL on both databases, and the refusals (a database that is not empty, a damaged dump)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import stat
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from app import migrate
from app.cli import app
from app.cli.backup import Target, manifest_path
from app.config import Settings
from app.db import create_engine, ensure_database
from app.embedded import bindir
from conftest import ROOT, Demo, database_on, drop_database, prepare_database, started_cluster

TOOL_TIMEOUT = "300"  # seconds pg_dump / pg_restore may take here (--timeout)


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@dataclass
class ToolCalls:
    """What the CLI gave pg_dump / pg_restore: the argument lists, and whether the passfile
    named by PGPASSFILE was private (0600) while the tool ran."""

    argv: list[list[str]] = field(default_factory=list)
    passfile_modes: list[int] = field(default_factory=list)
    pgpassword_set: list[bool] = field(default_factory=list)

    def ran(self, tool: str) -> bool:
        """Whether `tool` was started (not its `--version`)."""
        return any(Path(args[0]).name == tool and "--version" not in args for args in self.argv)


@pytest.fixture
def tool_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[ToolCalls]:
    """subprocess.run, recording every client-tool call before running it for real."""
    calls = ToolCalls()
    real = subprocess.run

    def spy(args: Any, *a: Any, **kw: Any) -> Any:
        if isinstance(args, list) and Path(str(args[0])).name in ("pg_dump", "pg_restore"):
            calls.argv.append([str(x) for x in args])
            env = kw.get("env") or {}
            calls.pgpassword_set.append("PGPASSWORD" in env)
            if "PGPASSFILE" in env:
                calls.passfile_modes.append(stat.S_IMODE(os.stat(env["PGPASSFILE"]).st_mode))
        return real(args, *a, **kw)

    monkeypatch.setattr(subprocess, "run", spy)
    yield calls


def cli(*args: str) -> tuple[int, str]:
    """Run the CLI in this process (typer's runner), off the test's event loop."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


# every column of a row as PostgreSQL prints it (geometry as hex EWKB, floats exactly),
# in primary-key order: equal text is equal data
ROWS = {
    "incident": "SELECT t::text FROM incident t ORDER BY id",
    "incident_history": "SELECT t::text FROM incident_history t ORDER BY id",
    "incident_note": "SELECT t::text FROM incident_note t ORDER BY id",
    "incident_photo": "SELECT t::text FROM incident_photo t ORDER BY id",
    "principal": "SELECT t::text FROM principal t ORDER BY id",
    "audit_event": "SELECT t::text FROM audit_event t ORDER BY id",
}
INCIDENT_FIELDS = """
SELECT id, ST_AsEWKB(geom) AS geom, country_code, province_code, commune_code,
       province_at_occurrence, commune_at_occurrence, jurisdiction_path, jurisdiction_method,
       offshore_km, maritime_zone, border_segment, border_distance_km, nearest_post_id,
       nearest_post_km, version, deleted_at
  FROM incident ORDER BY id
"""
EVERY_TABLE = """
SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
 WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
   AND tablename <> 'spatial_ref_sys' ORDER BY 1
"""
SEQUENCES = """
SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences
 WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1
"""
# constraints by name and kind: a CHECK's text is not stable through a dump (PostgreSQL prints
# `x IN (...)` on a varchar back differently once it has parsed its own output again)
SCHEMA = """
SELECT 'trigger ' || tgrelid::regclass || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || contype::text
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
ORDER BY 1
"""


async def snapshot(url: str) -> dict[str, Any]:
    """Everything the comparison looks at, read with SQL from the database at `url`."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.execute("SET TIME ZONE 'UTC'; SET extra_float_digits = 3")
        out: dict[str, Any] = {
            name: [r[0] for r in await conn.fetch(sql)] for name, sql in ROWS.items()
        }
        out["incident_fields"] = [tuple(r) for r in await conn.fetch(INCIDENT_FIELDS)]
        out["tables"] = {
            name: await conn.fetchval(
                # a digest of each row's text, then of the sorted digests (a table's whole
                # text could pass string_agg's 1 GB)
                f"SELECT md5(coalesce(string_agg(h, '' ORDER BY h), '')) || ':' || count(*)"
                f" FROM (SELECT md5(t::text) AS h FROM {name} t) rows"
            )
            for (name,) in await conn.fetch(EVERY_TABLE)
        }
        out["sequences"] = [tuple(r) for r in await conn.fetch(SEQUENCES)]
        out["schema"] = [r[0] for r in await conn.fetch(SCHEMA)]
        return out
    finally:
        await conn.close()


async def fill(url: str, settings: Settings) -> None:
    """A database with what a backup must keep: boundaries, demo incidents, history (status
    changes, a move, soft deletes), notes, photos (one held as a file), keys, audit entries."""
    await ensure_database(url)
    engine = create_engine(url, settings)
    try:
        await prepare_database(
            engine, settings,
            demo=Demo(count=60, seed=11, now=datetime(2026, 12, 1, tzinfo=UTC)),
            principals={"Đồn Biên phòng Tịnh Biên": "officer", "analyst": "analyst"},
        )  # fmt: skip
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(_dsn(url))
    try:
        # not yet verified: a status set to what it was is no change, and writes no history
        # (the ids are random, so "the first 8" would sometimes hold a verified one)
        ids = [
            r[0]
            for r in await conn.fetch(
                "SELECT id FROM incident WHERE status <> 'verified' ORDER BY id LIMIT 8"
            )
        ]
        await conn.execute(
            "UPDATE incident SET status = 'verified', version = version + 1, updated_at = now()"
            " WHERE id = ANY($1::uuid[])",
            ids[:4],
        )
        await conn.execute(
            "UPDATE incident SET geom = ST_SetSRID(ST_MakePoint(105.05, 10.70), 4326),"
            " version = version + 1 WHERE id = $1",
            ids[4],
        )
        await conn.execute(
            "UPDATE incident SET deleted_at = now(), version = version + 1"
            " WHERE id = ANY($1::uuid[])",
            ids[5:7],
        )
        for n, body in enumerate(("Đã xác minh tại hiện trường", "Chuyển Công an tỉnh An Giang")):
            await conn.execute(
                "INSERT INTO incident_note (id, incident_id, body, created_by, unit)"
                " VALUES ($1, $2, $3, 'test', 'BĐBP An Giang')",
                uuid.uuid4(), ids[n], body,
            )  # fmt: skip
        for content in (b"\xff\xd8\xff\xe0 not really a jpeg", None):
            await conn.execute(
                "INSERT INTO incident_photo (id, incident_id, media_type, bytes, width, height,"
                " sha256, content, thumbnail, caption, created_by)"
                " VALUES ($1, $2, 'image/jpeg', 21, 4, 3, $3, $4, $5, 'Bến đò', 'test')",
                uuid.uuid4(), ids[0], hashlib.sha256(b"x").hexdigest(), content, b"\xff\xd8thumb",
            )  # fmt: skip
        await conn.execute(
            "UPDATE principal SET revoked_at = now() WHERE name = 'analyst';"
            " INSERT INTO audit_event (actor, action, entity_type, entity_id, after)"
            " VALUES ('test', 'key_revoke', 'principal', '2', '{\"name\": \"analyst\"}')"
        )
    finally:
        await conn.close()


async def count_rows(url: str, sql: str) -> int:
    """One number from the database at `url`."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def database_exists(server_url: str, name: str) -> bool:
    """Whether the server has a database called `name`."""
    u = make_url(server_url)
    conn = await asyncpg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, database="postgres"
    )
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def test_backup_restore_round_trip_and_refusals(
    cli_database: str, server_url: str, tmp_path: Path, tool_calls: ToolCalls
) -> None:
    source_url = database_on(server_url, cli_database)
    names = {k: f"bw_{k}_{uuid.uuid4().hex[:8]}" for k in ("restored", "tampered")}
    restored_url = database_on(server_url, names["restored"])
    password = str(make_url(server_url).password)
    try:
        await fill(source_url, Settings(environment="test", database_url=None))
        before = await snapshot(source_url)
        assert len(before["incident"]) == 60 and len(before["incident_photo"]) == 2
        assert len(before["incident_history"]) == 60 + 4 + 1 + 2
        assert len(before["principal"]) == 2 and len(before["audit_event"]) >= 4

        # backup (DATABASE_URL is the source, from the cli_database fixture)
        dump = tmp_path / "nightly.dump"
        code, out = await asyncio.to_thread(cli, "backup", str(dump), "--timeout", TOOL_TIMEOUT)
        assert code == 0, out
        assert "backup written" in out and "BORDERWATCH_PHOTO_DIR" in out  # one photo is a file
        assert stat.S_IMODE(dump.stat().st_mode) == 0o600
        manifest = json.loads(manifest_path(dump).read_text("utf-8"))
        assert manifest["format"] == "borderwatch-backup/1"
        assert manifest["dump"]["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()
        assert manifest["dump"]["bytes"] == dump.stat().st_size
        assert manifest["created_at"].endswith("Z")
        created = datetime.fromisoformat(manifest["created_at"])
        assert abs((datetime.now(UTC) - created).total_seconds()) < 600
        assert manifest["schema_revision"] == migrate.head_revision()
        assert manifest["counts"] == {
            "incidents": 60,
            "incidents_deleted": 2,
            "incident_history": 67,
            "incident_notes": 2,
            "incident_photos": 2,
            "incident_photos_in_files": 1,
            "principals": 2,
            "audit_events": len(before["audit_event"]),
            "jurisdictions": await count_rows(source_url, "SELECT count(*) FROM jurisdiction"),
            "border_posts": await count_rows(source_url, "SELECT count(*) FROM border_post"),
        }
        assert manifest["counts"]["jurisdictions"] > 3000 and manifest["counts"]["border_posts"]
        assert set(manifest["tables"]) == set(before["tables"])
        for tool in ("pg_dump", "pg_restore"):
            assert "PostgreSQL" in manifest["tools"][tool]
        assert "postgis" in manifest["source"]["extensions"]
        assert password not in json.dumps(manifest)
        # the password reached pg_dump through a private passfile, never argv or PGPASSWORD
        assert tool_calls.ran("pg_dump")
        assert tool_calls.passfile_modes and set(tool_calls.passfile_modes) == {0o600}
        assert not any(tool_calls.pgpassword_set)
        assert not any(password in arg for args in tool_calls.argv for arg in args)

        # restore into a database that does not exist yet (created empty, then filled)
        code, out = await asyncio.to_thread(
            cli, "restore", str(dump), "--database-url", restored_url, "--timeout", TOOL_TIMEOUT
        )
        assert code == 0, out
        assert "SHA-256 matches" in out and "restore complete" in out and "✗" not in out
        assert not any(password in arg for args in tool_calls.argv for arg in args)
        assert "--exit-on-error" in tool_calls.argv[-1] and "--no-owner" in tool_calls.argv[-1]
        after = await snapshot(restored_url)
        for key in (*ROWS, "incident_fields", "tables", "sequences", "schema"):
            assert after[key] == before[key], key
        # the restored database works: its triggers write history, identities go on
        history = len(after["incident_history"])
        changed = await count_rows(
            restored_url,
            "WITH u AS (UPDATE incident SET status = 'solved', version = version + 1"
            " WHERE deleted_at IS NULL AND status = 'verified' RETURNING 1) SELECT count(*) FROM u",
        )
        assert (
            await count_rows(restored_url, "SELECT count(*) FROM incident_history")
            == history + changed
        )
        assert changed >= 4  # the four made verified above, and any demo incident that was
        new_id = await count_rows(
            restored_url,
            "INSERT INTO audit_event (actor, action, entity_type) VALUES ('t', 'x', 'y')"
            " RETURNING id",
        )
        assert new_id == max(await count_rows(source_url, "SELECT max(id) FROM audit_event"), 0) + 1

        # refused: a database that is not empty (the source itself, the restored copy)
        source_before = await snapshot(source_url)
        restored_before = await snapshot(restored_url)
        tool_calls.argv.clear()
        for url in (source_url, restored_url):
            code, out = await asyncio.to_thread(
                cli, "restore", str(dump), "--database-url", url, "--timeout", TOOL_TIMEOUT
            )
            assert code == 1 and "is not empty" in " ".join(out.split()), out
        assert not tool_calls.ran("pg_restore")
        assert await snapshot(source_url) == source_before
        assert await snapshot(restored_url) == restored_before

        # refused before pg_restore runs: one byte of the dump changed
        tampered = tmp_path / "tampered.dump"
        data = bytearray(dump.read_bytes())
        data[len(data) // 2] ^= 0x01
        tampered.write_bytes(bytes(data))
        manifest_path(tampered).write_text(json.dumps(manifest), "utf-8")
        code, out = await asyncio.to_thread(
            cli, "restore", str(tampered), "--database-url",
            database_on(server_url, names["tampered"]), "--timeout", TOOL_TIMEOUT,
        )  # fmt: skip
        flat = " ".join(out.split())
        assert code == 1 and "SHA-256" in flat and "nothing was restored" in flat, out
        assert not tool_calls.ran("pg_restore")
        assert not await database_exists(server_url, names["tampered"])
        # and one without its manifest
        manifest_path(tampered).unlink()
        code, out = await asyncio.to_thread(
            cli, "restore", str(tampered), "--database-url", restored_url
        )
        assert code == 1 and "manifest" in out, out
    finally:
        for name in (cli_database, *names.values()):
            await drop_database(server_url, name)


def test_backup_refuses_to_overwrite(tmp_path: Path) -> None:
    """An existing file is never replaced (before any database is looked at)."""
    dump = tmp_path / "taken.dump"
    dump.write_bytes(b"precious")
    code, out = cli("backup", str(dump))
    assert code == 1 and "exists" in out
    assert dump.read_bytes() == b"precious"


ARCHIVE = "/var/lib/postgresql/backup"  # the compose deployment's pgbackup volume


def _compose_server_settings() -> dict[str, str]:
    import yaml

    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["db"]["command"]
    return dict(str(s).split("=", 1) for s in command[2::2])


def _give_to_server(path: Path) -> None:
    """Hand a folder tree to the unprivileged server user (when we are root)."""
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres:postgres", str(path)], check=True, timeout=60)


async def test_point_in_time_recovery_as_documented(tmp_path: Path) -> None:
    """docs/backup.md's recovery, on a private cluster with docker-compose.yml's archiving
    settings and the guide's restore_command (their folder moved under a temporary one): a base
    backup, writes before and after a moment, recovery to that moment."""
    cluster = started_cluster("borderwatch-pitr-")
    archive = cluster.home / "backup"
    try:
        cluster.stop()
        for sub in ("wal", "base"):
            (archive / sub).mkdir(parents=True)
        archive.chmod(0o700)
        _give_to_server(archive)
        settings = _compose_server_settings()
        assert settings["archive_mode"] == "on"
        guide = (ROOT / "docs" / "backup.md").read_text("utf-8")
        found = re.search(r"^\s*(restore_command = '.*')$", guide, re.M)
        assert found, "docs/backup.md names no restore_command"
        restore_command = found.group(1).replace(ARCHIVE, str(archive))
        with (cluster.pgdata / "postgresql.auto.conf").open("a") as conf:
            for name, value in settings.items():
                value = value.replace(ARCHIVE, str(archive)).replace("'", "''")
                conf.write(f"{name} = '{value}'\n")
        await asyncio.to_thread(cluster.start)
        url = cluster.url("postgres")

        async def sql(*queries: str) -> Any:
            conn = await asyncpg.connect(_dsn(url))
            try:
                return [await conn.fetch(query) for query in queries][-1]
            finally:
                await conn.close()

        await sql("CREATE TABLE t (n int)", "INSERT INTO t VALUES (1)")
        base = archive / "base" / "one"
        source = Target.parse(url)
        with source.tool_env() as env:  # the password in a passfile, as the backup's tools
            args = [str(bindir() / "pg_basebackup"), "--no-password",
                    "--host", str(source.url.host), "--port", str(source.url.port),
                    "--username", str(source.url.username),
                    "-D", str(base), "-Ft", "-z", "-X", "stream", "-c", "fast"]  # fmt: skip
            done = await asyncio.to_thread(
                subprocess.run, args, env=env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stderr
        await sql("INSERT INTO t VALUES (2)")
        await asyncio.sleep(1.1)
        target = (await sql("SELECT now()::text"))[0][0]
        await asyncio.sleep(1.1)
        await sql("INSERT INTO t VALUES (3)", "DELETE FROM t WHERE n = 1")
        last = (await sql("SELECT pg_walfile_name(pg_switch_wal())"))[0][0]
        for _ in range(300):  # the archiver copies the switched segment within seconds
            if (archive / "wal" / last).exists():
                break
            await asyncio.sleep(0.1)
        assert (archive / "wal" / last).exists(), sorted(
            p.name for p in (archive / "wal").iterdir()
        )
        await asyncio.to_thread(cluster.stop)

        # the guide's steps: data aside, the base backup unpacked, recovery settings, signal
        data = cluster.pgdata
        data.rename(data.with_name("before-recovery"))
        data.mkdir(mode=0o700)
        with tarfile.open(base / "base.tar.gz") as tar:
            tar.extractall(data, filter="tar")
        with tarfile.open(base / "pg_wal.tar.gz") as tar:
            tar.extractall(data / "pg_wal", filter="tar")
        # this cluster keeps its socket in the data directory (the image: /var/run/postgresql),
        # so the base backup holds the old server's socket lock file
        for stale in data.glob(".s.PGSQL.*"):
            stale.unlink()
        with (data / "postgresql.auto.conf").open("a") as conf:
            conf.write(
                f"{restore_command}\nrecovery_target_time = '{target}'\n"
                "recovery_target_action = 'promote'\n"
            )
        (data / "recovery.signal").touch()
        _give_to_server(data)
        await asyncio.to_thread(cluster.start)
        for _ in range(300):
            if not (await sql("SELECT pg_is_in_recovery()"))[0][0]:
                break
            await asyncio.sleep(0.1)
        assert [r[0] for r in await sql("SELECT n FROM t ORDER BY n")] == [1, 2]
        log = cluster.log_file.read_text(errors="replace")
        assert "recovery stopping before commit" in log and "archive recovery complete" in log
    finally:
        await asyncio.to_thread(cluster.destroy)
