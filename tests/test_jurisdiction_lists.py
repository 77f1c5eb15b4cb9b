"""Jurisdiction lists kept per version of the boundaries (app/jurisdictions/service.py LISTS):
a kept list is the one the statement makes, checked against the table itself; a change of the
boundaries is in the very next list; a transaction that wrote is never served from the cache
unless told its writes are named (as these rolled-back tests are)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.jurisdictions import service
from conftest import app_client, make_key

COUNTRIES = {"level": "country", "simplify": "500"}


@pytest.fixture
async def made(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[int]]:
    """The lists made by a statement (not taken from the cache), counted; the cache empty
    before and after."""
    service.LISTS.values.clear()
    calls: list[int] = []
    make = service._list_features

    async def counted(**kwargs: Any) -> bytes:
        calls.append(1)
        return await make(**kwargs)

    monkeypatch.setattr(service, "_list_features", counted)
    yield calls
    service.LISTS.values.clear()


@pytest.fixture
async def client(engine: AsyncEngine, session: AsyncSession) -> AsyncIterator[httpx.AsyncClient]:
    key = await make_key(session, "viewer")
    async with app_client(engine, session, Settings(environment="test"), key) as c:
        yield c


async def in_force_today(session: AsyncSession, level: str) -> dict[str, str]:
    rows = await session.execute(
        text(
            "SELECT code, coalesce(name_local, name) FROM jurisdiction WHERE level = :level"
            " AND (valid_from IS NULL OR valid_from <= (now() AT TIME ZONE 'Asia/Ho_Chi_Minh')::date)"
            " AND (valid_to IS NULL OR valid_to > (now() AT TIME ZONE 'Asia/Ho_Chi_Minh')::date)"
        ),
        {"level": level},
    )
    return {str(code): str(name) for code, name in rows}


async def test_a_kept_list_is_the_table_and_follows_a_change(
    client: httpx.AsyncClient,
    session: AsyncSession,
    made: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "TRUST_OWN_WRITES", True)
    first = await client.get("/jurisdictions", params=COUNTRIES)
    second = await client.get("/jurisdictions", params=COUNTRIES)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content and len(made) == 1  # the second one was kept
    expected = await in_force_today(session, "country")
    got = {f["id"]: f["properties"]["name_local"] for f in first.json()["features"]}
    assert got == expected and "VNM" in got
    # other parameters are other lists
    english = await client.get("/jurisdictions", params=COUNTRIES | {"lang": "en"})
    assert english.status_code == 200 and len(made) == 2
    assert english.content != first.content
    # a change of the boundaries moves their counter: the next list is made afresh
    await session.execute(
        text("UPDATE jurisdiction SET name_local = 'Lào (sửa)' WHERE code = 'LAO'")
    )
    third = await client.get("/jurisdictions", params=COUNTRIES)
    assert len(made) == 3
    names = {f["id"]: f["properties"]["name_local"] for f in third.json()["features"]}
    assert names["LAO"] == "Lào (sửa)" and names["VNM"] == expected["VNM"]


async def test_a_transaction_that_wrote_is_never_served_from_the_cache(
    client: httpx.AsyncClient, session: AsyncSession, made: list[int]
) -> None:
    # the client's key was made in this transaction: it has written
    await client.get("/jurisdictions", params=COUNTRIES)
    await client.get("/jurisdictions", params=COUNTRIES)
    assert len(made) == 2 and not service.LISTS.values
