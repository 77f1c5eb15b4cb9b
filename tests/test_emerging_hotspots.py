"""Emerging hot spots on planted data: clusters that appear, grow, stay and stop are classified
as Esri defines (docs/analysis.md); the counts match /analysis/hotspots' own cell counting;
the z-scores match esda.G_Local(star=True) over space-time weights built here from the cell
centres; the trend matches scipy's Kendall tau on the same series; a scoped key sees only its
own incidents."""

from __future__ import annotations

import math
import warnings
from typing import Any

import esda
import httpx
import libpysal
import numpy as np
import pytest
import scipy.stats  # type: ignore[import-untyped]
from pyproj import Transformer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.analysis import emerging
from app.config import Settings
from conftest import app_client, make_key

PROBLEM = "application/problem+json"
UTM = Transformer.from_crs("EPSG:4326", "EPSG:32648", always_xy=True)
GEO = Transformer.from_crs("EPSG:32648", "EPSG:4326", always_xy=True)
BOX = (107.8, 12.4, 108.8, 13.4)  # Central Highlands, wholly inside Viet Nam (~110 x 110 km)
AREA = "bbox:" + ",".join(map(str, BOX))
YEAR = "2025-01-01T00:00:00+07:00/2026-01-01T00:00:00+07:00"  # 12 local months
STEPS = 12
CELL_KM = 5.0
SPACING = CELL_KM * 1000


def month_time(rng: np.random.Generator, month: int, n: int) -> list[str]:
    """n instants spread over local month `month` (0 = January 2025), as RFC 3339."""
    start = np.datetime64(f"2025-{month + 1:02d}-01T00:00")
    days = 28
    minutes = rng.uniform(0, days * 24 * 60, n).astype(np.int64)
    return [f"{start + np.timedelta64(int(m), 'm')}:00+07:00" for m in minutes]


async def insert(
    session: AsyncSession, points: list[tuple[float, float]], times: list[str], category: str
) -> None:
    await session.execute(
        text(
            "INSERT INTO incident (category, severity, occurred_at, geom)"
            " SELECT :c, 3, CAST(t AS timestamptz), ST_SetSRID(ST_MakePoint(x, y), 4326)"
            " FROM unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[]), CAST(:ts AS text[]))"
            " AS u(x, y, t)"
        ),
        {"xs": [p[0] for p in points], "ys": [p[1] for p in points], "ts": times, "c": category},
    )


def cell_centre(lon: float, lat: float) -> tuple[float, float]:
    """The lon/lat of the centre of the 5 km hexagon holding a place (flat-topped lattice of
    ST_HexagonGrid in EPSG:32648, computed here by brute force over nearby centres)."""
    x, y = UTM.transform(lon, lat)
    edge = SPACING / math.sqrt(3)
    best = min(
        (
            (1.5 * edge * i, math.sqrt(3) * edge * (j + 0.5 * (abs(i) % 2)))
            for i in range(round(x / (1.5 * edge)) - 2, round(x / (1.5 * edge)) + 3)
            for j in range(round(y / SPACING) - 2, round(y / SPACING) + 3)
        ),
        key=lambda c: (c[0] - x) ** 2 + (c[1] - y) ** 2,
    )
    return GEO.transform(*best)


def near(
    rng: np.random.Generator, centre: tuple[float, float], n: int
) -> list[tuple[float, float]]:
    """n places within 1 km of a cell's centre (so inside that hexagon)."""
    cx, cy = UTM.transform(*centre)
    rad = 1000 * np.sqrt(rng.uniform(0, 1, n))
    ang = rng.uniform(0, 2 * math.pi, n)
    lon, lat = GEO.transform(cx + rad * np.cos(ang), cy + rad * np.sin(ang))
    return list(zip(lon.tolist(), lat.tolist(), strict=True))


# planted clusters: cell centre (lon, lat), incidents per month (January … December 2025)
PLANTED: dict[str, tuple[tuple[float, float], list[int]]] = {
    "new_hot_spot": ((107.95, 12.55), [0] * 11 + [30]),
    "consecutive_hot_spot": ((108.60, 12.55), [0] * 9 + [25, 25, 25]),
    "intensifying_hot_spot": ((107.95, 13.20), [15 + 5 * t for t in range(12)]),
    "historical_hot_spot": ((108.60, 13.20), [30] * 10 + [0, 0]),
    "persistent_hot_spot": ((108.30, 12.90), [30] * 12),
}


async def plant(session: AsyncSession) -> dict[str, tuple[float, float]]:
    rng = np.random.default_rng(21)
    centres: dict[str, tuple[float, float]] = {}
    for name, (place, per_month) in PLANTED.items():
        centre = cell_centre(*place)
        centres[name] = centre
        for month, n in enumerate(per_month):
            if n:
                await insert(session, near(rng, centre, n), month_time(rng, month, n), "smuggling")
    # background: 1 200 incidents uniform over the box and the year
    x1, y1 = UTM.transform(BOX[0] + 0.02, BOX[1] + 0.02)
    x2, y2 = UTM.transform(BOX[2] - 0.02, BOX[3] - 0.02)
    xy = rng.uniform((x1, y1), (x2, y2), (1200, 2))
    lon, lat = GEO.transform(xy[:, 0], xy[:, 1])
    months = rng.integers(0, 12, 1200)
    times = [month_time(rng, int(m), 1)[0] for m in months]
    await insert(
        session, list(zip(lon.tolist(), lat.tolist(), strict=True)), times, "drug_trafficking"
    )
    return centres


async def get(client: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    r = await client.get(path, params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def cell_of(fc: dict[str, Any], centre: tuple[float, float]) -> dict[str, Any]:
    best = min(
        fc["features"],
        key=lambda f: (
            (f["properties"]["centre"][0] - centre[0]) ** 2
            + (f["properties"]["centre"][1] - centre[1]) ** 2
        ),
    )
    assert abs(best["properties"]["centre"][0] - centre[0]) < 1e-4
    props: dict[str, Any] = best["properties"]
    return props


def space_time_weights(fc: dict[str, Any], back: int) -> libpysal.weights.W:
    """Binary weights over the bins (t * cells + c): centres within 1.5 x spacing in the same
    step; the cell and those within 1.5 x spacing in the `back` previous steps."""
    lon, lat = zip(*(f["properties"]["centre"] for f in fc["features"]), strict=True)
    x, y = UTM.transform(lon, lat)
    xy = np.column_stack([x, y])
    n = len(xy)
    d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    close = [np.nonzero(d[c] < 1.5 * SPACING)[0].tolist() for c in range(n)]
    neighbours: dict[int, list[int]] = {}
    for t in range(STEPS):
        for c in range(n):
            nb = [t * n + m for m in close[c] if m != c]
            for k in range(1, back + 1):
                if t - k >= 0:
                    nb += [(t - k) * n + m for m in close[c]]
            neighbours[t * n + c] = nb
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return libpysal.weights.W(neighbours, silence_warnings=True)


def expected_trend(series: list[float]) -> tuple[float, float, float]:
    """S, Z and p of the Mann-Kendall test from scipy's Kendall tau of (time, z): S is
    tau_b's numerator; scipy's asymptotic z has no continuity correction, ours has one."""
    n = len(series)
    res = scipy.stats.kendalltau(np.arange(n), series, method="asymptotic")
    _, ties = np.unique(series, return_counts=True)
    n0 = n * (n - 1) / 2
    s = float(res.statistic) * math.sqrt(n0 * (n0 - float((ties * (ties - 1) / 2).sum())))
    if abs(s) < 0.5:
        return 0.0, 0.0, 1.0
    z_plain = scipy.stats.norm.isf(float(res.pvalue) / 2) * math.copysign(1, s)
    sd = s / z_plain  # √Var(S), the same variance
    z = (s - math.copysign(1, s)) / sd
    return s, z, math.erfc(abs(z) / math.sqrt(2))


def check_category(
    code: str, bins: list[int], trend_z: float | None, trend_p: float | None
) -> None:
    """The written definitions (docs/analysis.md), checked on the published series."""
    n = len(bins)
    hot = [b > 0 for b in bins]
    cold = [b < 0 for b in bins]
    trend = trend_p is not None and trend_p <= emerging.TREND_ALPHA
    if code.endswith("_cold_spot"):
        hot, cold = cold, hot
        trend_z = None if trend_z is None else -trend_z
    kind = code.removesuffix("_hot_spot").removesuffix("_cold_spot")
    share = sum(hot) / n
    if kind == "new":
        assert hot[-1] and sum(hot) == 1 and not any(cold)
    elif kind == "consecutive":
        run = next(k for k in range(n) if not hot[n - 1 - k])
        assert run >= 2 and sum(hot) == run and not any(cold) and share < 0.9
    elif kind in ("intensifying", "diminishing", "persistent"):
        assert share >= 0.9 and hot[-1]
        if kind == "persistent":
            assert not trend
        else:
            assert trend and trend_z is not None and (trend_z > 0) == (kind == "intensifying")
    elif kind == "historical":
        assert share >= 0.9 and not hot[-1]
    elif kind == "oscillating":
        assert hot[-1] and share < 0.9 and any(cold)
    elif kind == "sporadic":
        assert hot[-1] and share < 0.9 and not any(cold)
        run = next(k for k in range(n) if not hot[n - 1 - k])
        assert sum(hot) > run  # hot before the final run: on and off
    else:
        assert code == "no_pattern"
        for side, other in ((hot, cold), (cold, hot)):
            assert not side[-1] and sum(side) / n < 0.9, (bins, other)


async def test_planted_clusters_are_classified(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    centres = await plant(session)
    fc = await get(
        client, "/analysis/emerging-hotspots", area=AREA, cell_km=CELL_KM, datetime=YEAR,
        lang="en",
    )  # fmt: skip
    assert fc["type"] == "FeatureCollection" and fc["step"] == "month"
    assert fc["steps"] == [f"2025-{m:02d}" for m in range(1, 13)]
    total = sum(sum(v) for _, v in PLANTED.values()) + 1200
    assert fc["incidents"] == total and fc["bins"] == fc["cells"] * STEPS
    for name, centre in centres.items():
        props = cell_of(fc, centre)
        assert props["category"] == name, (name, props["bins"], props["trend_p"])
        assert props["category_name"] == emerging.NAMES[name]["en"]
    grows = cell_of(fc, centres["intensifying_hot_spot"])
    assert grows["trend_z"] > 3 and grows["trend_p"] < 0.01

    # every cell's category meets its written definition
    for f in fc["features"]:
        p = f["properties"]
        check_category(p["category"], p["bins"], p["trend_z"], p["trend_p"])
        assert len(p["counts"]) == len(p["z"]) == len(p["bins"]) == STEPS

    # the counts: the hot spots' own cell counting, per month and over the year
    hs = await get(client, "/analysis/hotspots", area=AREA, cell_km=CELL_KM, datetime=YEAR)
    assert [f["id"] for f in hs["features"]] == [f["id"] for f in fc["features"]]
    assert [f["properties"]["count"] for f in hs["features"]] == [
        f["properties"]["count"] for f in fc["features"]
    ]
    march = "2025-03-01T00:00:00+07:00/2025-03-31T23:59:59.999999+07:00"
    hs = await get(client, "/analysis/hotspots", area=AREA, cell_km=CELL_KM, datetime=march)
    assert [f["properties"]["count"] for f in hs["features"]] == [
        f["properties"]["counts"][2] for f in fc["features"]
    ]

    # z-scores: esda's Gi* over space-time weights built from the centres
    counts = np.array([f["properties"]["counts"] for f in fc["features"]]).T.reshape(-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        g = esda.G_Local(
            counts.astype(float), space_time_weights(fc, 1), transform="B", star=True,
            permutations=0,
        )  # fmt: skip
    z = np.array([f["properties"]["z"] for f in fc["features"]], dtype=float).T.reshape(-1)
    assert np.max(np.abs(z - g.Zs)) < 1e-4 + 1e-9

    # the trend: scipy's Kendall tau on each cell's published z-scores
    for f in fc["features"]:
        p = f["properties"]
        s, tz, tp = expected_trend(p["z"])
        assert p["trend_s"] == round(s), (p["z"], s)
        assert abs(p["trend_z"] - tz) < 1e-3 and abs(p["trend_p"] - tp) < 1e-5

    # Vietnamese by default (Accept-Language absent), from the header otherwise
    r = await client.get(
        "/analysis/emerging-hotspots", params={"area": AREA, "cell_km": 20, "datetime": YEAR}
    )
    assert r.headers["content-language"] == "vi"
    body = r.json()
    assert {f["properties"]["category_name"] for f in body["features"]} <= {
        v["vi"] for v in emerging.NAMES.values()
    }
    assert body["legend"][0] == {"code": "new_hot_spot", "name": "Điểm nóng mới"}
    r = await client.get(
        "/analysis/emerging-hotspots",
        params={"area": AREA, "cell_km": 20, "datetime": YEAR},
        headers={"Accept-Language": "en-GB,en;q=0.9"},
    )
    assert r.headers["content-language"] == "en"
    assert r.json()["legend"][-1] == {"code": "no_pattern", "name": "No pattern detected"}


async def test_time_neighbours_and_weeks(client: httpx.AsyncClient, session: AsyncSession) -> None:
    await plant(session)
    fc = await get(
        client, "/analysis/emerging-hotspots", area=AREA, cell_km=CELL_KM, datetime=YEAR,
        time_neighbours=2, fdr="false",
    )  # fmt: skip
    counts = np.array([f["properties"]["counts"] for f in fc["features"]]).T.reshape(-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        g = esda.G_Local(
            counts.astype(float), space_time_weights(fc, 2), transform="B", star=True,
            permutations=0,
        )  # fmt: skip
    z = np.array([f["properties"]["z"] for f in fc["features"]], dtype=float).T.reshape(-1)
    assert np.max(np.abs(z - g.Zs)) < 1e-4 + 1e-9
    # without FDR a bin is significant at 90 % when its two-sided p <= 0.10
    p = 2 * g.p_norm
    bins = np.array([f["properties"]["bins"] for f in fc["features"]]).T.reshape(-1)
    assert ((bins != 0) == (p <= 0.10)).all()
    # weeks: Mondays, local; 53 weeks touch 2025 (29 Dec 2025 starts the last)
    weeks = await get(
        client, "/analysis/emerging-hotspots", area=AREA, cell_km=20, datetime=YEAR, step="week"
    )
    assert weeks["steps"][0] == "2024-12-30" and weeks["steps"][-1] == "2025-12-29"
    assert len(weeks["steps"]) == 53 and weeks["incidents"] == fc["incidents"]


async def test_scoped_key_sees_its_own(
    session: AsyncSession, engine: AsyncEngine, settings: Settings, client: httpx.AsyncClient
) -> None:
    rng = np.random.default_rng(4)
    an_giang = near(rng, (105.10, 10.70), 6)  # An Giang, near the Cambodian border
    lao_cai = near(rng, (103.99, 22.40), 4)  # Lao Cai: outside An Giang's scope
    months = [month_time(rng, m % 12, 1)[0] for m in range(10)]
    await insert(session, an_giang + lao_cai, months, "smuggling")
    params = {"area": "border-zone", "cell_km": 20, "datetime": YEAR}
    national = await get(client, "/analysis/emerging-hotspots", **params)
    assert national["incidents"] == 10 and national["scope"] is None
    key = await make_key(session, "viewer", "VN-44")
    async with app_client(engine, session, settings, key) as viewer:
        scoped = await get(viewer, "/analysis/emerging-hotspots", **params)
        assert scoped["incidents"] == 6 and scoped["scope"] == "VN-44"
        assert scoped["cells"] == national["cells"]
        busy = [f for f in scoped["features"] if f["properties"]["count"]]
        assert sum(f["properties"]["count"] for f in busy) == 6
        assert all(abs(f["properties"]["centre"][1] - 10.7) < 0.5 for f in busy)


def test_classify_by_hand() -> None:
    """Series written by hand (12 steps; H hot, C cold, . neither)."""

    def cat(series: str, trend_z: float = 0.0, trend_p: float = 1.0) -> str:
        return emerging.classify(
            [c == "H" for c in series], [c == "C" for c in series], trend_z, trend_p
        )

    assert cat("...........H") == "new_hot_spot"
    assert cat("C..........H") == "oscillating_hot_spot"
    assert cat(".........HHH") == "consecutive_hot_spot"
    assert cat("..H......HHH") == "sporadic_hot_spot"
    assert cat("HHHHHHHHHHHH", 3.0, 0.001) == "intensifying_hot_spot"
    assert cat("HHHHHHHHHHHH", -3.0, 0.001) == "diminishing_hot_spot"
    assert cat("HHHHHHHHHHHH", 1.0, 0.3) == "persistent_hot_spot"
    assert cat(".HHHHHHHHHHH", 1.0, 0.3) == "persistent_hot_spot"  # 11/12 >= 90 %
    assert cat("..HHHHHHHHHH") == "consecutive_hot_spot"  # 10/12 < 90 %
    assert cat("HHHHHHHHHHH.") == "historical_hot_spot"
    assert cat("HHHHHHHHHH..") == "no_pattern"  # 10/12 < 90 %, not hot at the end
    assert cat("...........C") == "new_cold_spot"
    assert cat("CCCCCCCCCCCC", -3.0, 0.001) == "intensifying_cold_spot"
    assert cat("CCCCCCCCCCC.") == "historical_cold_spot"
    assert cat("H..........C") == "oscillating_cold_spot"
    assert cat("............") == "no_pattern"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"step": "day"}, "step"),
        ({"time_neighbours": 13}, "time_neighbours"),
        ({"datetime": "2025-01-01T00:00:00+07:00/2025-03-01T00:00:00+07:00"}, "datetime"),
        ({"datetime": "0001-01-01T00:00:00Z/9999-12-31T23:59:59Z"}, "datetime"),
        ({"datetime": "2025-01-01T00:00:00+07:00/2025-01-01T00:00:00+07:00"}, "datetime"),
        ({"area": "moon"}, "area"),
        ({"cell_km": 0.1}, "cell_km"),
        (
            {
                "cell_km": 2,
                "datetime": "2023-01-01T00:00:00+07:00/2026-01-01T00:00:00+07:00",
            },
            "cell_km",
        ),
    ],
)
async def test_bad_input(client: httpx.AsyncClient, params: dict[str, Any], field: str) -> None:
    r = await client.get("/analysis/emerging-hotspots", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    if field in ("step", "time_neighbours"):
        assert field in r.text
    else:
        assert body["field"] == field
    if field == "cell_km" and "datetime" in params:
        assert body["max_bins"] == emerging.MAX_BINS and "1,000,000" in body["detail"]
        assert body["estimated_bins"] > emerging.MAX_BINS
