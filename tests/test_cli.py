"""The operator CLI end to end, on a database of its own (it commits)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import Polygon
from typer.testing import CliRunner

from app import migrate
from app.cli import app
from conftest import GEODATA, ROOT, drop_database


async def test_migrate_load_demo_and_own_file(
    cli_database: str, server_url: str, tmp_path: Path
) -> None:
    import asyncio

    runner = CliRunner()

    def run(*args: str) -> str:
        # the CLI runs its own event loop: keep it off the test's loop
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    try:
        out = await asyncio.to_thread(run, "migrate")
        assert f"revision {migrate.head_revision()}" in out
        out = await asyncio.to_thread(run, "geodata", "load")
        # both maps: 5 countries and the 63 former provinces, the 34 provinces and 3 321
        # communes since 2025-07-01
        bundled = sum(
            len(json.loads((GEODATA / name).read_text("utf-8"))["features"])
            for name in ("jurisdictions.geojson", "units_2025.geojson")
        )
        assert bundled == 68 + 34 + 3321
        flat = " ".join(out.split())  # the console wraps the longer summary
        assert f"jurisdictions: {bundled}," in flat and "border segments: 3" in flat
        assert "border posts: 29" in flat
        out = await asyncio.to_thread(run, "demo", "load", "--count", "40", "--seed", "3")
        assert "40 new" in out
        out = await asyncio.to_thread(run, "demo", "load", "--count", "40", "--seed", "3")
        assert "0 new" in out
        bowtie = Polygon([(105.05, 10.55), (105.25, 10.75), (105.25, 10.55), (105.05, 10.75)])
        path = tmp_path / "own.gpkg"
        gpd.GeoDataFrame(
            {"MA": ["VN-44-X"], "TEN": ["Test district"]}, geometry=[bowtie], crs="EPSG:4326"
        ).to_file(path, driver="GPKG")
        out = await asyncio.to_thread(
            run,
            "geodata", "load", "--from", str(path), "--code-field", "MA", "--name-field", "TEN",
            "--level", "district", "--country", "VNM", "--parent", "VN-44",
        )  # fmt: skip
        flat = " ".join(out.split())
        assert "jurisdictions: 1," in flat and "repaired" in flat
        assert "incidents re-derived: 40" in flat
        out = await asyncio.to_thread(run, "geodata", "load", "--if-empty")
        assert "nothing to do" in out
        bad = await asyncio.to_thread(
            runner.invoke, app, ["geodata", "load", "--from", str(tmp_path / "missing.gpkg")]
        )
        assert bad.exit_code == 1 and "not found" in bad.output
        out = await asyncio.to_thread(
            run, "keys", "create", "--name", "An Giang PC analyst", "--role", "analyst",
            "--jurisdiction", "VN-44", "--expires-in", "90d",
        )  # fmt: skip
        key = out.strip().splitlines()[-1]
        assert key.startswith("bw_") and "analyst, VN-44" in out
        listed = await asyncio.to_thread(run, "keys", "list")
        assert "An Giang PC analyst" in listed and key not in listed
        row = next(line for line in listed.splitlines() if "An Giang PC analyst" in line)
        principal_id = row.split()[0]
        in_90_days = (datetime.now(UTC) + timedelta(days=90)).strftime("%Y-%m-%d")
        assert in_90_days in row and "never" in row  # expires in 90 days, never used yet
        rotated = await asyncio.to_thread(run, "keys", "rotate", principal_id)
        assert rotated.strip().splitlines()[-1] != key
        bad_lifetime = await asyncio.to_thread(
            runner.invoke,
            app,
            ["keys", "create", "--name", "x", "--role", "viewer", "--expires-in", "forever"],
        )
        assert bad_lifetime.exit_code == 2 and "90d" in bad_lifetime.output
        assert "revoked" in await asyncio.to_thread(run, "keys", "revoke", principal_id)
        bad_role = await asyncio.to_thread(
            runner.invoke, app, ["keys", "create", "--name", "x", "--role", "god"]
        )
        assert bad_role.exit_code == 1 and "role" in bad_role.output
        # cooperation areas: the examples of the demo data, one from a file, ended
        assert "created: 3" in await asyncio.to_thread(run, "cooperation", "examples")
        area = tmp_path / "area.json"
        area.write_text(
            json.dumps({"name": "Liên kết Châu Đốc – Tịnh Biên", "valid_from": "2026-01-01",
                        "members": [{"kind": "border_segment", "code": "VNM-KHM"}]}),
            encoding="utf-8",
        )  # fmt: skip
        made = await asyncio.to_thread(run, "cooperation", "create", str(area))
        area_id = made.split(":")[0].strip()
        assert "Liên kết Châu Đốc – Tịnh Biên" in made and "1 members" in made
        ended = await asyncio.to_thread(run, "cooperation", "end", area_id, "--on", "2030-01-01")
        assert "2030-01-01" in ended and "v2" in ended
        listed = await asyncio.to_thread(run, "cooperation", "list", "--on", "2030-06-01")
        assert listed.count("[example]") == 3 and "Tịnh Biên" not in listed
        # a key bound to the area (in force today, until 2030)
        out = await asyncio.to_thread(
            run, "keys", "create", "--name", "Tổ liên kết", "--role", "viewer",
            "--cooperation-area", area_id,
        )  # fmt: skip
        assert out.strip().splitlines()[-1].startswith("bw_")
        assert f"viewer, area:{area_id} Liên kết Châu Đốc – Tịnh Biên" in out.splitlines()[0]
        row = next(
            line
            for line in (await asyncio.to_thread(run, "keys", "list")).splitlines()
            if "Tổ liên kết" in line
        )
        assert f"area:{area_id}" in row
        assert row.endswith(f"[cooperation area {area_id} Liên kết Châu Đốc – Tịnh Biên]")
        for extra, says, code in (
            (["--cooperation-area", "99999"], "no cooperation area with id 99999", 1),
            (["--cooperation-area", area_id, "--jurisdiction", "VN-44"], "not both", 2),
        ):
            refused = await asyncio.to_thread(
                runner.invoke, app, ["keys", "create", "--name", "x", "--role", "viewer", *extra]
            )
            assert refused.exit_code == code and says in refused.output, refused.output
        bad_area = await asyncio.to_thread(runner.invoke, app, ["cooperation", "end", "99999"])
        assert bad_area.exit_code == 1 and "no cooperation area 99999" in bad_area.output
        bad_day = await asyncio.to_thread(
            runner.invoke, app, ["cooperation", "end", area_id, "--on", "2030-13-01"]
        )
        assert bad_day.exit_code == 2 and "not a day" in bad_day.output
        # every data load and key change is in the audit log, with the key never stored
        import asyncpg

        from conftest import database_on as _on

        conn = await asyncpg.connect(
            _on(server_url, cli_database).replace("postgresql+asyncpg", "postgresql")
        )
        try:
            actions = [r[0] for r in await conn.fetch("SELECT action FROM audit_event ORDER BY id")]
            stored = await conn.fetchval(
                "SELECT string_agg(key_hash || key_prefix, '') FROM principal"
            )
        finally:
            await conn.close()
        assert actions == [
            "geodata_load", "demo_load", "demo_load", "geodata_load",
            "key_create", "key_rotate", "key_revoke",
            *["cooperation_create"] * 4, "cooperation_end", "key_create",
        ]  # fmt: skip
        assert key not in stored and key.split("_", 2)[2] not in stored
        out = await asyncio.to_thread(run, "migrate", "base", "--down")
        assert "revision None" in out
    finally:
        await drop_database(server_url, cli_database)


LONG_PATH = "/no/such/folder/" + "x" * 70 + "/incidents.csv"
ANNOUNCE = (
    "from app.cli.server import announce; announce('http://127.0.0.1:8000', 'bw_' + 'k' * 60)"
)


@pytest.mark.parametrize(
    ("args", "whole"),
    [
        # a usage error naming a long path (typer's panel broke it mid-path at 80 columns)
        (["import", LONG_PATH], f"'{LONG_PATH}' does not exist"),
        # an error of the command itself (no database here)
        (
            ["keys", "list"],
            "error: DATABASE_URL is not set and the embedded cluster does not exist",
        ),
        # the sign-in link `make run` prints
        (None, "dashboard sign-in link: http://127.0.0.1:8000/#key=bw_" + "k" * 60),
    ],
)
def test_lines_are_never_wrapped(args: list[str] | None, whole: str, tmp_path: Path) -> None:
    """At 40 columns, an error message, a path, a key or a link stays on one line: a copied
    line is the whole of it."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {"COLUMNS": "40", "BORDERWATCH_DATA_DIR": str(tmp_path / "none")}
    code = ANNOUNCE if args is None else "from app.cli import main; main()"
    cmd = [sys.executable, "-c", code, *(args or [])]
    done = subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    out = done.stdout + done.stderr
    assert any(whole in line for line in out.splitlines()), out
    assert done.returncode == (0 if args is None else 1 if args[0] == "keys" else 2), out
