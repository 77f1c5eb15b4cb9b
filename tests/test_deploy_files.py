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


def test_ci_and_readme_use_the_two_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*lint", makefile, re.M), "make test runs lint first"
