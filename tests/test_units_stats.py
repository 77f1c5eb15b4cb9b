"""`/analysis/stats?group_by=unit` (docs/units.md): counts by reporting unit against SQL."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.units import demo
from conftest import app_client, make_key


async def test_stats_by_reporting_unit(
    client: httpx.AsyncClient, session: AsyncSession, engine: AsyncEngine, settings: Settings
) -> None:
    await demo.load(session=session)
    incident = {
        "category": "smuggling",
        "severity": 2,
        "occurred_at": "2026-11-01T10:00:00+07:00",
        "location": {"type": "Point", "coordinates": [105.15, 18.40]},
    }
    made = {"VN-P42-BP-cau-treo": 3, "VN-P42-HQ-cau-treo": 1}
    for code, n in made.items():
        key = await make_key(session, "officer")
        pid = (await session.execute(text("SELECT max(id) FROM principal"))).scalar_one()
        uid = (
            await session.execute(text("SELECT id FROM unit WHERE code = :c"), {"c": code})
        ).scalar_one()
        assert (await client.put(f"/units/{uid}/keys/{pid}")).status_code == 200
        async with app_client(engine, session, settings, key) as c:
            for _ in range(n):
                assert (await c.post("/incidents", json=incident)).status_code == 201
    assert (await client.post("/incidents", json=incident)).status_code == 201  # no unit
    r = await client.get("/analysis/stats", params={"group_by": "unit"})
    assert r.status_code == 200, r.text
    groups = {g["key"]: g for g in r.json()["groups"]}
    expected = await session.execute(
        text(
            "SELECT reporting_unit_id::text, count(*), max(u.name) FROM incident i"
            " LEFT JOIN unit u ON u.id = i.reporting_unit_id WHERE i.deleted_at IS NULL GROUP BY 1"
        )
    )
    rows = {k: (n, name) for k, n, name in expected}
    assert {k: g["count"] for k, g in groups.items()} == {k: n for k, (n, _) in rows.items()}
    for k, (_, name) in rows.items():
        assert groups[k]["name_local"] == name
    assert groups[None]["count"] >= 1
