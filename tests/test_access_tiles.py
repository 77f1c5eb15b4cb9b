"""Access control on the tile routes: every tile route x every role x the scope of a key bound
to An Giang (VN-44) with its cooperation zone — the same world as tests/test_access.py.

A scoped key sees in tiles exactly the incidents it sees in GET /incidents (inside An Giang and
within 10 km of it in Dong Thap), nothing else, at any zoom; viewers get aggregates only.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import mapbox_vector_tile
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from test_access import HIDDEN, ROLES, VISIBLE, World, clients, world  # noqa: F401  (fixtures)

PROBLEM = "application/problem+json"
LAYERS = ("incidents", "jurisdictions", "borders", "border_posts", "hotspots")


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    return (
        int((lon + 180) / 360 * n),
        int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n),
    )


def features(body: bytes, layer: str) -> list[dict[str, Any]]:
    if not body:
        return []
    tile = mapbox_vector_tile.decode(body)
    return tile[layer]["features"] if layer in tile else []


async def positions(session: AsyncSession, w: World) -> dict[str, tuple[float, float]]:
    rows = await session.execute(
        text("SELECT id::text, ST_X(geom), ST_Y(geom) FROM incident WHERE deleted_at IS NULL")
    )
    where = {r[0]: (float(r[1]), float(r[2])) for r in rows}
    return {name: where[ident] for name, ident in w.ids.items()}


async def tile_contents(
    c: httpx.AsyncClient, points: dict[str, tuple[float, float]], z: int
) -> list[dict[str, Any]]:
    """The incident features of every z tile holding one of the world's points."""
    tiles = {tile_of(lon, lat, z) for lon, lat in points.values()}
    out: list[dict[str, Any]] = []
    for x, y in sorted(tiles):
        r = await c.get(f"/tiles/incidents/{z}/{x}/{y}.mvt")
        assert r.status_code == 200, r.text
        out += features(r.content, "incidents")
    return out


async def test_incident_tiles_by_role_and_scope(
    world: World,  # noqa: F811
    clients: dict[str, httpx.AsyncClient],  # noqa: F811
    session: AsyncSession,
) -> None:
    points = await positions(session, world)
    for role in ROLES:
        c = clients[role]
        for z in (4, 8, 10, 14):
            feats = await tile_contents(c, points, z)
            body = str([f["properties"] for f in feats])
            for name in HIDDEN:
                assert world.ids[name] not in body
            assert sum(f["properties"].get("count", 1) for f in feats) == len(VISIBLE), (role, z)
            if role == "viewer" or z < 10:
                assert all(f["properties"]["cluster"] is True for f in feats), (role, z)
                assert all("id" not in f["properties"] for f in feats)
            else:  # readers: the very incidents of GET /incidents
                listed = (await c.get("/incidents", params={"limit": 1000})).json()["features"]
                assert {f["properties"]["id"] for f in feats} == {f["id"] for f in listed}
                assert {f["id"] for f in listed} == {world.ids[n] for n in VISIBLE}
        # the Ha Noi tile is empty for every scoped key; the national key sees its incident
        x, y = tile_of(*points["elsewhere"], 10)
        assert (await c.get(f"/tiles/incidents/10/{x}/{y}.mvt")).content == b""
    national = await tile_contents(clients["national"], points, 10)
    assert {f["properties"]["id"] for f in national} == set(world.ids.values())
    # filters narrow, never widen
    x, y = tile_of(*points["elsewhere"], 10)
    widened = await clients["analyst"].get(
        f"/tiles/incidents/10/{x}/{y}.mvt", params={"jurisdiction": "VN-HN"}
    )
    assert widened.content == b""


async def test_tilejson_versions_differ_by_view(
    world: World,  # noqa: F811
    clients: dict[str, httpx.AsyncClient],  # noqa: F811
) -> None:
    seen = {}
    for who in (*ROLES, "national"):
        doc = (await clients[who].get("/tiles/incidents.json")).json()
        seen[who] = doc["data_version"]
    # same data; the scope tag differs between national and scoped, and for viewers
    assert seen["national"] != seen["analyst"] != seen["viewer"]
    assert seen["analyst"] == seen["officer"] == seen["admin"]


async def test_hotspot_tiles_count_only_the_scope(
    world: World,  # noqa: F811
    clients: dict[str, httpx.AsyncClient],  # noqa: F811
) -> None:
    totals: dict[str, int] = {}
    for who in (*ROLES, "national"):
        c = clients[who]
        grid = (await c.get("/analysis/hotspots")).json()
        x, y = tile_of(105.4, 10.4, 7)
        r = await c.get(f"/tiles/hotspots/7/{x}/{y}.mvt")
        assert r.status_code == 200, (who, r.text)
        counts = sum(f["properties"]["count"] for f in features(r.content, "hotspots"))
        # every border-zone incident of the world lies well inside this tile
        assert counts == grid["incidents"], who
        totals[who] = counts
        for name in HIDDEN | VISIBLE:
            assert world.ids[name].encode() not in r.content
    assert {totals[r] for r in ROLES} == {totals["viewer"]} and totals["viewer"] >= 1
    assert totals["national"] > totals["viewer"]  # the far Dong Thap incident


async def test_anonymous_and_reference_tiles(
    world: World,  # noqa: F811
    clients: dict[str, httpx.AsyncClient],  # noqa: F811
) -> None:
    anon = clients["anonymous"]
    for layer in LAYERS:
        for path in (f"/tiles/{layer}.json", f"/tiles/{layer}/5/25/14.mvt"):
            r = await anon.get(path)
            assert r.status_code == 401, path
            assert r.headers["content-type"] == PROBLEM
    for role in ROLES:
        for layer in ("jurisdictions", "borders", "border_posts"):
            assert (await clients[role].get(f"/tiles/{layer}/5/25/14.mvt")).status_code == 200
            assert (await clients[role].get(f"/tiles/{layer}.json")).status_code == 200
