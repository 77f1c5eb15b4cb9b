"""The embedded cluster: private credentials, loopback only, PostGIS available."""

from __future__ import annotations

import stat

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
