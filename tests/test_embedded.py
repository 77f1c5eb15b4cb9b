"""The embedded cluster: private credentials, loopback only, PostGIS available."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.embedded import EmbeddedCluster


async def test_cluster_is_private(cluster: EmbeddedCluster | None, engine: AsyncEngine) -> None:
    if cluster is None:
        pytest.skip("DATABASE_URL given: no embedded cluster in this run")
    mode = stat.S_IMODE(cluster.password_file.stat().st_mode)
    assert mode == 0o600
    assert cluster.running()
    async with engine.connect() as conn:
        listen = (await conn.execute(text("SHOW listen_addresses"))).scalar_one()
        postgis = (await conn.execute(text("SELECT postgis_lib_version()"))).scalar_one()
    assert listen == "127.0.0.1"
    assert postgis.startswith("3.")


async def test_a_port_taken_between_choice_and_bind_is_retried(
    server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`live_server` picks a free port, but another process may bind it first: the server
    then fails to start and another port is tried (the run does not fail, and never talks to
    the other process's server)."""
    import socket

    import conftest

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, conftest._free_port()])
        monkeypatch.setattr(conftest, "_free_port", lambda: next(ports))
        async with conftest.live_server(server_url, tmp_path / "server.log") as base:
            assert not base.endswith(f":{taken}")
            async with httpx.AsyncClient() as c:
                assert (await c.get(base + "/healthz")).status_code == 200
