"""A database outage answers 503 problem+json, not 500."""

from __future__ import annotations

import socket

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.db import create_engine
from app.main import create_app
from conftest import app_client, make_key


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_database_down_is_503(settings: Settings) -> None:
    url = f"postgresql+asyncpg://nobody:secret@127.0.0.1:{_closed_port()}/nothing"
    engine = create_engine(url, settings)
    app = create_app(settings, engine=engine)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    # a well-formed key: checking it needs the database, which is down
    headers = {"Authorization": "Bearer bw_0123456789_" + "x" * 43}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            for path in ("/jurisdictions", "/borders", "/border-posts", "/readyz"):
                r = await client.get(path)
                assert r.status_code == 503, path
                assert r.headers["content-type"] == "application/problem+json"
                assert r.headers["retry-after"] == "5"
                assert r.json()["status"] == 503
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await engine.dispose()


async def test_statement_timeout_is_503_with_advice(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    key = await make_key(session, "admin")
    # the request's statements share the test's transaction: a 1 ms timeout cancels the query
    async with app_client(engine, session, settings, key) as c:
        await session.execute(text("SET LOCAL statement_timeout = 1"))
        r = await c.get("/analysis/hotspots", params={"area": "border-zone", "cell_km": 2})
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert "statement timeout" in r.json()["detail"]
