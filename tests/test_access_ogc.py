"""Access through /ogc equals access through the rest of the API: a scoped key sees exactly
what GET /incidents shows it, viewers never see incident-level rows, reference collections
follow the public-reference setting, and no filter widens a scope.

Uses the `world` fixture of test_access.py: incidents inside An Giang (VN-44), in Dong Thap
within the cooperation zone, in Dong Thap far away, and in Ha Noi.
"""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from test_access import PROBLEM, ROLES, VISIBLE, World, assert_no_leak, clients, world  # noqa: F401  (fixtures)

from app.config import Settings
from conftest import app_client

ITEMS = "/ogc/collections/incidents/items"
READERS = ("officer", "analyst", "admin")


async def test_scoped_items_equal_the_incident_list(
    world: World,  # noqa: F811
    clients: dict[str, httpx.AsyncClient],  # noqa: F811
) -> None:
    for role in (*READERS, "national"):
        c = clients[role]
        plain = (await c.get("/incidents", params={"limit": 1000})).json()
        ogc = await c.get(ITEMS, params={"limit": 1000})
        assert ogc.status_code == 200, (role, ogc.text)
        got = [f["id"] for f in ogc.json()["features"]]
        assert sorted(got) == sorted(f["id"] for f in plain["features"]), role
        assert ogc.json()["numberMatched"] == len(got)
        if role != "national":
            assert set(got) == {world.ids[n] for n in VISIBLE}
            assert_no_leak(ogc.text, world, VISIBLE)
        # single items: visible ones readable, hidden ones the same 404 as an unknown id
        for name, ident in world.ids.items():
            r = await c.get(f"{ITEMS}/{ident}")
            visible = role == "national" or name in VISIBLE
            assert r.status_code == (200 if visible else 404), (role, name)
            if not visible:
                assert r.headers["content-type"] == PROBLEM and "smuggling" not in r.text


async def test_filters_and_parameters_cannot_widen_a_scope(
    world: World,  # noqa: F811
    clients: dict[str, httpx.AsyncClient],  # noqa: F811
) -> None:
    c = clients["analyst"]
    attempts: list[dict[str, str | int]] = [
        {"filter": "province = 'VN-HN' OR province <> 'VN-HN'"},
        {"filter": "INCLUDE"},
        {"filter": "S_INTERSECTS(geometry, POLYGON((100 5, 112 5, 112 25, 100 25, 100 5)))"},
        {"filter": "province IS NULL OR province IS NOT NULL"},
        {"bbox": "105.5,20.5,106.5,21.5"},
        {"near": "105.854,21.028,50"},
        {"filter": f"id = '{world.elsewhere}'"},
        {"sortby": "-occurred_at", "limit": 10_000},
    ]
    for params in attempts:
        r = await c.get(ITEMS, params=params)
        assert r.status_code == 200, (params, r.text)
        assert {f["id"] for f in r.json()["features"]} <= {world.ids[n] for n in VISIBLE}
        if "id =" not in str(params.get("filter", "")):  # (that one echoes the id in its links)
            assert_no_leak(r.text, world, VISIBLE)
    hanoi = await c.get(ITEMS, params={"near": "105.854,21.028,50"})
    assert hanoi.json()["features"] == [] and hanoi.json()["numberMatched"] == 0


async def test_viewers_and_anonymous(
    world: World,  # noqa: F811
    clients: dict[str, httpx.AsyncClient],  # noqa: F811
) -> None:
    viewer = clients["viewer"]
    listed = {c["id"] for c in (await viewer.get("/ogc/collections")).json()["collections"]}
    assert "incidents" not in listed and {"border_posts", "hotspots"} <= listed
    api = (await viewer.get("/ogc/api")).json()
    assert "/collections/incidents/items" not in api["paths"]
    for path in ("/ogc/collections/incidents", ITEMS, f"{ITEMS}/{world.inside}",
                 "/ogc/collections/incidents/queryables"):  # fmt: skip
        r = await viewer.get(path)
        assert r.status_code == 403 and r.headers["content-type"] == PROBLEM, path
        assert "smuggling" not in r.text and "features" not in r.text
    # hot spots: an aggregate every role may read, counting only the scope's incidents (those
    # of the two visible ones that lie in the 50 km border zone)
    for role in ROLES:
        cells = await clients[role].get(
            "/ogc/collections/hotspots/items", params={"filter": "count > 0", "limit": 10_000}
        )
        assert cells.status_code == 200, role
        grid = (await clients[role].get("/analysis/hotspots")).json()  # same defaults
        counted = sum(f["properties"]["count"] for f in cells.json()["features"])
        assert counted == grid["incidents"] >= 1 and grid["scope"] == "VN-44", role
        assert_no_leak(cells.text, world, set())
    national = await clients["national"].get(
        "/ogc/collections/hotspots/items", params={"filter": "count > 0", "limit": 10_000}
    )
    grid = (await clients["national"].get("/analysis/hotspots")).json()
    assert sum(f["properties"]["count"] for f in national.json()["features"]) == grid["incidents"]
    anon = clients["anonymous"]
    for path in ("/ogc", "/ogc/collections", ITEMS, "/ogc/collections/border_posts/items"):
        r = await anon.get(path)
        assert r.status_code == 401 and r.headers["content-type"] == PROBLEM, path
    for role in ROLES:
        r = await clients[role].get("/ogc/collections/border_posts/items", params={"limit": 1})
        assert r.status_code == 200, role


async def test_public_reference_data(
    world: World,  # noqa: F811
    engine: AsyncEngine,
    session: AsyncSession,
) -> None:
    settings = Settings(environment="test", public_reference_data=True)
    async with app_client(engine, session, settings, None) as anon:
        listed = {c["id"] for c in (await anon.get("/ogc/collections")).json()["collections"]}
        assert listed == {"border_posts", "jurisdictions_country", "jurisdictions_province",
                          "jurisdictions_commune", "border_segments"}  # fmt: skip
        assert (await anon.get("/ogc/collections/jurisdictions_province/items")).status_code == 200
        for path in (ITEMS, "/ogc/collections/hotspots/items", f"{ITEMS}/{world.inside}"):
            r = await anon.get(path)
            assert r.status_code == 401 and r.headers["content-type"] == PROBLEM, path
