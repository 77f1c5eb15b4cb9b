"""Deployment files stay consistent with the tree (no Docker engine runs here to build them)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_every_dockerfile_copy_source_exists() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    # a COPY --from=<stage> reads from an earlier build stage, not from the repository
    copies = [
        shlex.split(line)[1:-1]
        for line in lines
        if line.startswith("COPY ") and not line.startswith("COPY --from=")
    ]
    assert copies
    for sources in copies:
        for src in sources:
            assert (ROOT / src).exists(), f"Dockerfile copies missing path {src}"
    text = "\n".join(lines)
    assert re.search(r"^USER (?!root)\S+", text, re.M), "the image must not run as root"
    assert "python:3.11-slim" in text


def test_entrypoint_migrates_then_serves() -> None:
    script = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert script.index("borderwatch migrate") < script.index("exec uvicorn")
    assert "DATABASE_URL:?" in script


def test_compose_has_postgis_with_healthcheck_and_volume() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    db = compose["services"]["db"]
    assert db["image"].startswith("postgis/postgis:")
    assert "healthcheck" in db and db["volumes"]
    app = compose["services"]["app"]
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert "DATABASE_URL" in app["environment"]


ARCHIVE = "/var/lib/postgresql/backup"  # the pgbackup volume in the db container


def _server_settings(command: list[str]) -> dict[str, str]:
    """The `-c name=value` settings of a `postgres` command line."""
    assert command[0] == "postgres"
    pairs = command[1:]
    assert len(pairs) % 2 == 0 and all(flag == "-c" for flag in pairs[::2]), command
    return dict(str(setting).split("=", 1) for setting in pairs[1::2])


def test_compose_archives_wal_to_its_own_volume() -> None:
    """Point-in-time recovery (docs/backup.md): WAL archiving on, into a mounted volume that
    the entrypoint hands to postgres, never overwriting an archived segment."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    db = compose["services"]["db"]
    settings = _server_settings(db["command"])
    assert settings["wal_level"] == "replica" and settings["archive_mode"] == "on"
    command = settings["archive_command"]
    assert command == f"test ! -f {ARCHIVE}/wal/%f && cp %p {ARCHIVE}/wal/%f"
    assert 0 < int(settings["archive_timeout"]) <= 900
    assert int(settings["max_wal_senders"]) >= 1  # pg_basebackup streams its WAL
    mounts = dict(volume.split(":", 1)[::-1] for volume in db["volumes"])
    assert (
        mounts[ARCHIVE] in compose["volumes"]
        and mounts[ARCHIVE] != mounts["/var/lib/postgresql/data"]
    )
    # the image's entrypoint, after making the archive folders postgres's own
    shell, flag, script, name = db["entrypoint"]
    assert (shell, flag, name) == ("/bin/sh", "-c", "db-entrypoint")
    assert f"chown postgres:postgres {ARCHIVE} {ARCHIVE}/wal {ARCHIVE}/base" in script
    assert script.endswith('exec docker-entrypoint.sh "$$@"')  # $$: compose's escape of $
    # the recovery steps use the same folders
    guide = (ROOT / "docs" / "backup.md").read_text()
    assert f"restore_command = 'cp {ARCHIVE}/wal/%f %p'" in guide
    assert "recovery_target_time" in guide and "recovery.signal" in guide
    assert "pg_basebackup" in guide and f"{ARCHIVE}/base" in guide


def test_ci_and_readme_use_the_two_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*lint", makefile, re.M), "make test runs lint first"


def test_compose_puts_nginx_in_front() -> None:
    """nginx is the only published service (docs/tiles.md, "Behind a reverse proxy"); it fills
    in the template tests/test_proxy_cache.py runs, with every placeholder the file uses."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    app, proxy = compose["services"]["app"], compose["services"]["nginx"]
    assert "ports" not in app and app["expose"] == ["8000"]
    assert proxy["image"].startswith("nginx:") and proxy["ports"] == ["127.0.0.1:8000:8000"]
    # uvicorn takes X-Forwarded-For from nginx (the failed-authentication limit per address)
    assert app["environment"]["FORWARDED_ALLOW_IPS"]
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in proxy["volumes"] if ":ro" in volume)
    template = "./docker/nginx/borderwatch.conf.template"
    assert mounts[template] == "/etc/nginx/templates/borderwatch.conf.template"
    text = (ROOT / template).read_text()
    assert set(re.findall(r"\$\{(\w+)\}", text)) == set(proxy["environment"])
    env = proxy["environment"]
    assert env["BORDERWATCH_UPSTREAM"] == "app:8000" and env["BORDERWATCH_LISTEN"] == "8000"
    # the key checks' cache holds presented keys: in memory, not in the tile volume
    assert f"{env['BORDERWATCH_CACHE_DIR']}/auth" in proxy["tmpfs"]
    assert "proxy_cache_path ${BORDERWATCH_CACHE_DIR}/auth " in text
    # X-Forwarded-For is replaced, never appended to (uvicorn trusts its first address)
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text
    assert "$proxy_add_x_forwarded_for" not in text
