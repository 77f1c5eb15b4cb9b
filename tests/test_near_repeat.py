"""Near-repeat (Knox) table: a planted near-repeat pattern is significant in the first cell,
uniform random data is significant no more than chance allows; every observed count equals a
brute-force count over all pairs made here (pyproj projection, numpy distances); a scoped key
counts only its own incidents."""

from __future__ import annotations

import math
from typing import Any

import httpx
import numpy as np
import pytest
from pyproj import Transformer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.analysis import nearrepeat
from app.config import Settings
from conftest import app_client, make_key

PROBLEM = "application/problem+json"
UTM = Transformer.from_crs("EPSG:4326", "EPSG:32648", always_xy=True)
GEO = Transformer.from_crs("EPSG:32648", "EPSG:4326", always_xy=True)
CENTRE = (108.30, 12.90)  # Central Highlands
BOX = (108.15, 12.75, 108.45, 13.05)
T0 = 1_735_664_400.0  # 2025-01-01T00:00:00+07:00, seconds since 1970
DISTANCES = [200.0, 400.0, 600.0, 800.0, 1000.0]
DAYS = [3.0, 6.0, 9.0, 12.0]


async def insert(
    session: AsyncSession, x: Any, y: Any, seconds: Any, category: str = "robbery_theft"
) -> None:
    """Incidents at projected (x, y) and times (seconds since 1970)."""
    lon, lat = GEO.transform(x, y)
    await session.execute(
        text(
            "INSERT INTO incident (category, severity, occurred_at, geom)"
            " SELECT :c, 3, to_timestamp(t), ST_SetSRID(ST_MakePoint(x, y), 4326)"
            " FROM unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[]), CAST(:ts AS float8[]))"
            " AS u(x, y, t)"
        ),
        {
            "xs": np.asarray(lon).tolist(),
            "ys": np.asarray(lat).tolist(),
            "ts": np.asarray(seconds).tolist(),
            "c": category,
        },
    )


def uniform(rng: np.random.Generator, n: int, half_m: float) -> tuple[Any, Any, Any]:
    cx, cy = UTM.transform(*CENTRE)
    x = cx + rng.uniform(-half_m, half_m, n)
    y = cy + rng.uniform(-half_m, half_m, n)
    t = T0 + rng.uniform(0, 365 * 86_400, n)
    return x, y, t


def brute_force(x: Any, y: Any, t: Any) -> Any:
    """Pairs per (distance band, time band), "beyond" last, over all n(n-1)/2 pairs."""
    x, y, days = np.asarray(x), np.asarray(y), np.asarray(t) / 86_400
    iu = np.triu_indices(len(x), 1)
    d = np.hypot(x[iu[0]] - x[iu[1]], y[iu[0]] - y[iu[1]])
    dt = np.abs(days[iu[0]] - days[iu[1]])
    rows = np.searchsorted(DISTANCES, d, side="left")  # band k: (e[k-1], e[k]]
    cols = np.searchsorted(DAYS, dt, side="left")
    table = np.zeros((len(DISTANCES) + 1, len(DAYS) + 1), dtype=np.int64)
    np.add.at(table, (rows, cols), 1)
    return table


def observed(body: dict[str, Any]) -> Any:
    cells = body["cells"]
    table = np.array([c["observed"] for c in cells]).reshape(len(DISTANCES) + 1, len(DAYS) + 1)
    return table


PARAMS = {
    "distance_bands": ",".join(f"{v:g}" for v in DISTANCES),
    "time_bands": ",".join(f"{v:g}" for v in DAYS),
    "area": "bbox:" + ",".join(map(str, BOX)),
}


async def get(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get("/analysis/near-repeat", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_planted_near_repeats(client: httpx.AsyncClient, session: AsyncSession) -> None:
    rng = np.random.default_rng(7)
    x, y, t = uniform(rng, 400, 12_000)
    # 200 of them are followed by a repeat within 150 m and 2.5 days
    lead = rng.choice(400, 200, replace=False)
    ang = rng.uniform(0, 2 * math.pi, 200)
    rad = rng.uniform(0, 150, 200)
    rx = x[lead] + rad * np.cos(ang)
    ry = y[lead] + rad * np.sin(ang)
    rt = t[lead] + rng.uniform(0, 2.5 * 86_400, 200)
    ax, ay, at = np.concatenate([x, rx]), np.concatenate([y, ry]), np.concatenate([t, rt])
    await insert(session, ax, ay, at)
    body = await get(client, permutations=199, seed=3, lang="en", **PARAMS)
    assert body["incidents"] == 600 and body["permutations"] == 199
    assert body["pairs"] == 600 * 599 // 2
    table = observed(body)
    assert (table == brute_force(ax, ay, at)).all()
    assert table.sum() == body["pairs"]
    first = body["cells"][0]
    assert (first["distance_from_m"], first["distance_to_m"]) == (0.0, 200.0)
    assert (first["time_from_days"], first["time_to_days"]) == (0.0, 3.0)
    assert first["observed"] >= 200 and first["knox_ratio"] > 5
    assert first["p_value"] == pytest.approx(1 / 200) and first["significant"] is True
    # the expectation: the mean over shuffles of the times, recomputed with the same seed is
    # not possible here, but it must sit near the pairs' time-band share of the row
    row = [c for c in body["cells"] if c["distance_to_m"] == 200.0]
    assert sum(c["expected"] for c in row) == pytest.approx(sum(c["observed"] for c in row))
    assert "Knox" in body["explanation"] and "199 permutations" in body["explanation"]
    # reproducible with the same seed
    again = await get(client, permutations=199, seed=3, lang="en", **PARAMS)
    assert again["cells"] == body["cells"]


async def test_uniform_random_is_not_significant(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    rng = np.random.default_rng(11)
    x, y, t = uniform(rng, 1500, 6_000)
    await insert(session, x, y, t)
    body = await get(client, permutations=199, seed=5, **PARAMS)
    assert body["incidents"] == 1500
    table = observed(body)
    assert (table == brute_force(x, y, t)).all()
    cells = body["cells"]
    # the expectation under shuffled times, exactly: a pair gets two of the n times at random,
    # so its time band follows all pairs' time differences; expected = row pairs x that share
    share = table.sum(axis=0) / table.sum()
    exact = table.sum(axis=1)[:, None] * share[None, :]
    expected = np.array([c["expected"] for c in cells]).reshape(table.shape)
    # the mean of 199 shuffles (fixed seed): within 4 Poisson standard errors of it
    assert (np.abs(expected - exact) <= 4 * np.sqrt(exact / 199) + 1e-3).all(), (expected, exact)
    significant = sum(c["p_value"] <= 0.05 for c in cells)
    # 30 cells: about 1.5 significant at 0.05 by chance; 6 or more has probability < 0.5 %
    assert significant <= 5, [(c["observed"], c["expected"], c["p_value"]) for c in cells]
    near = [c for c in cells if c["distance_to_m"] is not None and c["time_to_days"] is not None]
    ratios = [c["knox_ratio"] for c in near]
    assert 0.8 < float(np.mean(ratios)) < 1.2
    # Vietnamese by default
    assert "Kiểm định lặp lại gần" in body["explanation"]


async def test_scope_and_category(
    session: AsyncSession, engine: AsyncEngine, settings: Settings, client: httpx.AsyncClient
) -> None:
    rng = np.random.default_rng(2)
    ag = UTM.transform(105.10, 10.70)  # An Giang
    lc = UTM.transform(103.99, 22.40)  # Lao Cai: outside An Giang's scope
    for (cx, cy), n in ((ag, 8), (lc, 5)):
        await insert(
            session,
            cx + rng.uniform(-300, 300, n),
            cy + rng.uniform(-300, 300, n),
            T0 + rng.uniform(0, 10 * 86_400, n),
        )
    await insert(session, [ag[0]], [ag[1]], [T0], category="smuggling")
    params = {"distance_bands": "1000", "time_bands": "30"}
    national = await get(client, **params)
    assert national["incidents"] == 14
    # both places lie within 50 km of the border: the border zone holds all of them
    zone = await get(client, area="border-zone", **params)
    assert zone["incidents"] == 14 and zone["cells"] == national["cells"]
    key = await make_key(session, "viewer", "VN-44")
    async with app_client(engine, session, settings, key) as viewer:
        scoped = await get(viewer, **params)
        assert scoped["incidents"] == 9 and scoped["scope"] == "VN-44"
        assert scoped["cells"][0]["observed"] == 9 * 8 // 2  # all within 1 km and 30 days
        one = await get(viewer, category="robbery_theft", **params)
        assert one["incidents"] == 8 and one["cells"][0]["observed"] == 28


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"permutations": 5000}, "permutations"),
        ({"permutations": 1}, "permutations"),
        ({"distance_bands": "a,b"}, "distance_bands"),
        ({"distance_bands": "400,200"}, "distance_bands"),
        ({"distance_bands": "0,200"}, "distance_bands"),
        ({"distance_bands": "50000"}, "distance_bands"),
        ({"time_bands": "7,7"}, "time_bands"),
        ({"time_bands": ",".join(str(v) for v in range(1, 23))}, "time_bands"),
        ({"area": "moon"}, "area"),
    ],
)
async def test_bad_input(client: httpx.AsyncClient, params: dict[str, Any], field: str) -> None:
    r = await client.get("/analysis/near-repeat", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["field"] == field
    if params.get("permutations") == 5000:
        assert r.json()["max_permutations"] == nearrepeat.MAX_PERMUTATIONS
        assert "999" in r.json()["detail"]


async def test_incident_cap(
    client: httpx.AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    x, y, t = uniform(rng, 12, 1000)
    await insert(session, x, y, t)
    monkeypatch.setattr(nearrepeat, "MAX_INCIDENTS", 11)
    r = await client.get("/analysis/near-repeat")
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert r.json()["max_incidents"] == 11 and "at most 11" in r.json()["detail"]
    monkeypatch.setattr(nearrepeat, "MAX_INCIDENTS", 12)
    assert (await get(client))["incidents"] == 12
