"""HTTP Basic authentication with the API key as the password (QGIS 3.22, GDAL, ArcGIS send
it with no plug-in): the same key, scope, role and audit as `Authorization: Bearer`."""

from __future__ import annotations

import base64

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from conftest import app_client, make_key

PROBLEM = "application/problem+json"
AN_GIANG = (105.435, 10.386)
HA_NOI = (105.854, 21.028)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_basic_is_the_key(
    engine: AsyncEngine, session: AsyncSession, settings: Settings, client: httpx.AsyncClient
) -> None:
    for where in (AN_GIANG, HA_NOI):
        r = await client.post(
            "/incidents",
            json={"category": "smuggling", "severity": 3, "occurred_at": "2026-01-02T03:04:05Z",
                  "location": {"type": "Point", "coordinates": list(where)}},
        )  # fmt: skip
        assert r.status_code == 201
    key = await make_key(session, "officer", "VN-44", "Đội 3")
    async with app_client(engine, session, settings, None) as anon:
        bearer = await anon.get("/incidents", headers={"Authorization": f"Bearer {key}"})
        assert bearer.status_code == 200
        seen = {f["id"] for f in bearer.json()["features"]}
        # any user name; the key as the password, or as the user name with no password
        for headers in (basic("qgis", key), basic("", key), basic(key, ""), basic("Tổ GIS", key)):
            r = await anon.get("/incidents", headers=headers)
            assert r.status_code == 200, r.text
            assert {f["id"] for f in r.json()["features"]} == seen  # the same scope
        # a write under Basic is the key's own: its role, its scope, its name in the audit
        made = await anon.post(
            "/incidents",
            headers=basic("qgis", key),
            json={"category": "smuggling", "severity": 1, "occurred_at": "2026-01-02T03:04:05Z",
                  "location": {"type": "Point", "coordinates": list(AN_GIANG)}},
        )  # fmt: skip
        assert made.status_code == 201
        outside = await anon.post(
            "/incidents",
            headers=basic("qgis", key),
            json={"category": "smuggling", "severity": 1, "occurred_at": "2026-01-02T03:04:05Z",
                  "location": {"type": "Point", "coordinates": list(HA_NOI)}},
        )  # fmt: skip
        assert outside.status_code == 403
        me = await anon.get("/me", headers=basic("x", key))
        creator = (
            await session.execute(
                text("SELECT created_by FROM incident WHERE id = :i"), {"i": made.json()["id"]}
            )
        ).scalar_one()
        assert creator.startswith(f"principal:{me.json()['id']}:")
        # refused: a wrong key, no key, not base64, not user:password
        for headers in (
            basic("qgis", "bw_wrong"),
            basic("qgis", ""),
            {"Authorization": "Basic !!!"},
            {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
            {"Authorization": "Digest abc"},
        ):
            r = await anon.get("/incidents", headers=headers)
            assert r.status_code == 401 and r.headers["content-type"] == PROBLEM, headers
            assert key not in r.text
