"""The emerging-hot-spot tile layer (`/tiles/emerging-hotspots/…`): its cells and their
category, trend and counts are GET /analysis/emerging-hotspots' answer for the same filters
(planted clusters near the Cambodian border); the polygons sit where the analysis puts them
(checked with pyproj, not with the service's SQL); versions, ETags and 304s as the other
layers, the cube's span in the version, the cube computed once per version; a scoped key's
tiles count only its own incidents; the dashboard's names of the categories are the
analysis's."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import mapbox_vector_tile
import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import box, shape
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from test_emerging_hotspots import cell_centre

from app.analysis import emerging
from app.config import Settings
from conftest import app_client, make_key

PROBLEM = "application/problem+json"
LAYER = "emerging-hotspots"
UTM = Transformer.from_crs("EPSG:4326", "EPSG:32648", always_xy=True)
GEO = Transformer.from_crs("EPSG:32648", "EPSG:4326", always_xy=True)
TO_MERC = Transformer.from_crs(4326, 3857, always_xy=True)
HALF = math.pi * 6378137.0
YEAR = "2025-01-01T00:00:00+07:00/2026-01-01T00:00:00+07:00"  # 12 local months
CATALOGUE = Path(__file__).resolve().parent.parent / "app/web/static/i18n/dashboard.json"

# planted clusters within ~20 km of the Cambodian border (An Giang): place, incidents per month
PLANTED: dict[str, tuple[tuple[float, float], list[int]]] = {
    "new_hot_spot": ((105.00, 10.55), [0] * 11 + [30]),
    "intensifying_hot_spot": ((105.15, 10.63), [15 + 5 * t for t in range(12)]),
    "historical_hot_spot": ((105.30, 10.72), [30] * 10 + [0, 0]),
}
# the tile at zoom 8 holding all three (and much of An Giang's border zone)
Z = 8


@pytest.fixture(autouse=True)
async def versions_per_statement(session: AsyncSession) -> None:
    """The incident counter moves at COMMIT, which a rolled-back test never reaches: fire it at
    the end of each statement instead (tests/test_tiles.py does the same)."""
    await session.execute(text("SET CONSTRAINTS layer_version_incidents IMMEDIATE"))


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def mercator_box(z: int, x: int, y: int, pad_units: float) -> Any:
    width = 2 * HALF / 2**z
    pad = width * pad_units / 4096
    xmin, ymax = -HALF + x * width, HALF - y * width
    return box(xmin - pad, ymax - width - pad, xmin + width + pad, ymax + pad)


def to_tile_units(lon: float, lat: float, z: int, x: int, y: int) -> tuple[float, float]:
    mx, my = TO_MERC.transform(lon, lat)
    width = 2 * HALF / 2**z
    return (mx - (-HALF + x * width)) / width * 4096, ((HALF - y * width) - my) / width * 4096


def merc(g: Any) -> Any:
    return shapely.transform(g, TO_MERC.transform, interleaved=False)  # type: ignore[arg-type]


def decode(body: bytes) -> list[dict[str, Any]]:
    if not body:
        return []
    tile = mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})
    return tile[LAYER]["features"] if LAYER in tile else []


def month_time(rng: np.random.Generator, month: int, n: int) -> list[str]:
    start = np.datetime64(f"2025-{month + 1:02d}-01T00:00")
    minutes = rng.uniform(0, 28 * 24 * 60, n).astype(np.int64)
    return [f"{start + np.timedelta64(int(m), 'm')}:00+07:00" for m in minutes]


def near(
    rng: np.random.Generator, place: tuple[float, float], n: int, metres: float = 1000
) -> list[tuple[float, float]]:
    cx, cy = UTM.transform(*place)
    rad = metres * np.sqrt(rng.uniform(0, 1, n))
    ang = rng.uniform(0, 2 * math.pi, n)
    lon, lat = GEO.transform(cx + rad * np.cos(ang), cy + rad * np.sin(ang))
    return list(zip(lon.tolist(), lat.tolist(), strict=True))


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


async def plant(session: AsyncSession) -> None:
    rng = np.random.default_rng(21)
    for place, per_month in PLANTED.values():
        centre = cell_centre(*place)  # the cluster within 1 km of its cell's centre
        for month, n in enumerate(per_month):
            if n:
                await insert(session, near(rng, centre, n), month_time(rng, month, n), "smuggling")
    # background: 300 incidents over 30 km around the middle cluster, every month
    months = rng.integers(0, 12, 300)
    await insert(
        session,
        near(rng, (105.15, 10.63), 300, 30_000),
        [month_time(rng, int(m), 1)[0] for m in months],
        "drug_trafficking",
    )


async def analysis(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get("/analysis/emerging-hotspots", params={"lang": "en", **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def tile(client: httpx.AsyncClient, z: int, x: int, y: int, **params: Any) -> httpx.Response:
    r = await client.get(f"/tiles/{LAYER}/{z}/{x}/{y}.mvt", params=params)
    assert r.status_code in (200, 304), r.text
    return r


def check_tile_against(
    fc: dict[str, Any], feats: list[dict[str, Any]], z: int, x: int, y: int, lang: str = "en"
) -> None:
    """The tile's cells are the analysis's cells reaching into the tile, each with the same
    category, trend and counts, its polygon where the analysis's is."""
    by_id = {f["id"]: f for f in fc["features"]}
    inner = mercator_box(z, x, y, -1)  # surely in the tile
    outer = mercator_box(z, x, y, 64 + 1)  # the tile and its buffer
    cells = {i: merc(shape(f["geometry"])) for i, f in by_id.items()}
    # a cell surely drawn covers a few square units of the tile (slivers of cells clipped by
    # the border zone's edge may be dropped by ST_AsMVTGeom as degenerate)
    unit = 2 * HALF / 2**z / 4096
    xmin, _, _, ymax = mercator_box(z, x, y, 0).bounds
    must = {i for i, g in cells.items() if g.intersection(inner).area > 4 * unit**2}
    may = {i for i, g in cells.items() if g.intersects(outer)}
    got = [f["properties"]["cell"] for f in feats]
    assert len(got) == len(set(got))
    assert must <= set(got) <= may
    period = f"{fc['steps'][0]}/{fc['steps'][-1]}"
    for f in feats:
        p = f["properties"]
        want = by_id[p["cell"]]["properties"]
        assert p["category"] == want["category"]
        assert p["category_name"] == emerging.NAMES[want["category"]][lang]  # type: ignore[index]
        for k in ("trend_s", "trend_z", "trend_p"):
            if want[k] is None:
                assert k not in p
            else:
                assert p[k] == pytest.approx(want[k], abs=1e-9), k
        assert p["count"] == want["count"] == sum(want["counts"])
        assert p["count_last"] == want["counts"][-1]
        assert p["hot_steps"] == sum(b > 0 for b in want["bins"])
        assert p["cold_steps"] == sum(b < 0 for b in want["bins"])
        assert p["period"] == period
        # the drawn polygon is the analysis's (cells wholly in the tile): the same centroid and
        # area, within the snapping to whole tile units (small clipped cells move most)
        cell = cells[p["cell"]]
        if inner.contains(cell) and cell.geom_type == "Polygon":
            drawn = shape(f["geometry"])
            cx, cy = (cell.centroid.x - xmin) / unit, (ymax - cell.centroid.y) / unit
            at = drawn.centroid
            assert abs(at.x - cx) < 2 and abs(at.y - cy) < 2, (p["cell"], at, cx, cy)
            # vertices move by up to half a unit: the area by up to half the perimeter
            assert abs(drawn.area - cell.area / unit**2) <= 0.5 * cell.length / unit
            lon, lat = want["centre"]
            centre = shapely.Point(to_tile_units(lon, lat, z, x, y))
            if cell.contains(merc(shapely.Point(lon, lat))):  # a whole hexagon
                assert drawn.buffer(1).contains(centre), (p["cell"], centre)


async def test_tile_cells_are_the_analysis_cells(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await plant(session)
    fc = await analysis(client, datetime=YEAR)
    assert fc["area"] == "border-zone" and fc["cell_km"] == 5 and fc["step"] == "month"
    x, y = tile_of(105.15, 10.63, Z)
    r = await tile(client, Z, x, y, datetime=YEAR, lang="en")
    assert r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    feats = decode(r.content)
    check_tile_against(fc, feats, Z, x, y)
    # the planted clusters are drawn with their categories (and the tile holds more than one)
    categories = {f["properties"]["category"] for f in feats}
    for name, (place, _) in PLANTED.items():
        holding = [
            f
            for f in fc["features"]
            if shape(f["geometry"]).contains(shapely.Point(*place))  # the cell of the place
        ]
        assert len(holding) == 1
        assert holding[0]["properties"]["category"] == name
        assert name in categories
    assert sum(f["properties"]["count"] for f in feats) == fc["incidents"]
    # a finer tile (zoom 11) at the intensifying cluster: the same agreement
    x11, y11 = tile_of(105.15, 10.63, 11)
    fine = decode((await tile(client, 11, x11, y11, datetime=YEAR, lang="en")).content)
    assert fine
    check_tile_against(fc, fine, 11, x11, y11)
    # Vietnamese names by default; a filter no incident meets: every cell without counts
    vi = decode((await tile(client, Z, x, y, datetime=YEAR)).content)
    assert {f["properties"]["category_name"] for f in vi} >= {"Điểm nóng mới"}
    quiet = decode((await tile(client, Z, x, y, datetime=YEAR, category="weapons")).content)
    assert quiet and all(f["properties"]["count"] == 0 for f in quiet)
    # far from the border zone (the sea off Vũng Tàu): an empty 200
    x0, y0 = tile_of(107.5, 9.5, Z)
    assert (await tile(client, Z, x0, y0, datetime=YEAR)).content == b""


async def test_versions_etags_and_the_cube_kept_per_version(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await plant(session)
    doc = (await client.get(f"/tiles/{LAYER}.json", params={"datetime": YEAR})).json()
    assert doc["tilejson"] == "3.0.0" and doc["vector_layers"][0]["id"] == LAYER
    assert set(doc["vector_layers"][0]["fields"]) >= {"category", "trend_z", "count"}
    assert doc["minzoom"] == 5 and doc["maxzoom"] == 12
    v1 = doc["data_version"]
    assert doc["tiles"][0].startswith(f"http://test/tiles/{LAYER}/{{z}}/{{x}}/{{y}}.mvt?v={v1}&")
    assert "datetime=" in doc["tiles"][0]
    x, y = tile_of(105.15, 10.63, Z)
    first = await tile(client, Z, x, y, v=v1, datetime=YEAR)
    assert first.headers["cache-control"] == "private, max-age=86400, immutable"
    tag = first.headers["etag"]
    cached = await client.get(
        f"/tiles/{LAYER}/{Z}/{x}/{y}.mvt",
        params={"v": v1, "datetime": YEAR},
        headers={"If-None-Match": tag},
    )
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["etag"] == tag
    other = await tile(client, Z, x + 1, y, v=v1, datetime=YEAR)
    assert other.headers["etag"] != tag
    # one cube for both tiles of this version
    app = client._transport.app  # type: ignore[attr-defined]
    assert len(app.state.emerging_cache.grids.values) == 1
    before = {f["properties"]["cell"]: f["properties"]["count"] for f in decode(first.content)}

    # a new incident in the intensifying cluster moves the version; the tile is made afresh
    created = await client.post(
        "/incidents",
        json={
            "category": "smuggling",
            "severity": 3,
            "occurred_at": "2025-12-15T10:00:00+07:00",
            "location": {"type": "Point", "coordinates": [105.15, 10.63]},
        },
    )
    assert created.status_code == 201, created.text
    v2 = (await client.get(f"/tiles/{LAYER}.json", params={"datetime": YEAR})).json()[
        "data_version"
    ]
    assert v2 != v1
    stale = await client.get(
        f"/tiles/{LAYER}/{Z}/{x}/{y}.mvt",
        params={"v": v1, "datetime": YEAR},
        headers={"If-None-Match": tag},
    )
    assert stale.status_code == 200 and stale.headers["etag"] != tag
    assert stale.headers["cache-control"] == "private, no-cache"  # an old v: revalidate
    after = {f["properties"]["cell"]: f["properties"]["count"] for f in decode(stale.content)}
    changed = [c for c in after if after[c] != before.get(c)]
    assert len(changed) == 1 and after[changed[0]] == before[changed[0]] + 1
    assert len(app.state.emerging_cache.grids.values) == 2
    fc = await analysis(client, datetime=YEAR)
    check_tile_against(fc, decode(stale.content), Z, x, y, lang="vi")

    # the cube's span is part of the version (the same data, another span: another version)
    half = "2025-01-01T00:00:00+07:00/2025-07-01T00:00:00+07:00"
    v_half = (await client.get(f"/tiles/{LAYER}.json", params={"datetime": half})).json()
    assert v_half["data_version"] != v2
    hot = await client.get("/tiles/hotspots.json", params={"datetime": half})
    hot_year = await client.get("/tiles/hotspots.json", params={"datetime": YEAR})
    assert hot.json()["data_version"] == hot_year.json()["data_version"]  # no span there
    # without datetime: the last 24 complete months, named in the tiles
    bare = decode((await tile(client, Z, x, y)).content)
    assert bare and len({f["properties"]["period"] for f in bare}) == 1
    first_month, last_month = bare[0]["properties"]["period"].split("/")
    fy, fm = map(int, first_month.split("-"))
    ly, lm = map(int, last_month.split("-"))
    assert (ly * 12 + lm) - (fy * 12 + fm) == 23


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (
            f"/tiles/{LAYER}.json?datetime=2025-03-01T00:00:00%2B07:00/2025-04-01T00:00:00%2B07:00",
            422,
        ),
        (f"/tiles/{LAYER}/8/203/120.mvt?datetime=2025-03-01T00:00:00Z/2025-03-20T00:00:00Z", 422),
        (f"/tiles/{LAYER}/8/203/120.mvt?datetime=1800-01-01T00:00:00Z/1800-12-01T00:00:00Z", 422),
        (f"/tiles/{LAYER}/8/203/120.mvt?lang=fr", 422),
        (f"/tiles/{LAYER}/8/203/120.mvt?status=lost", 422),
        (f"/tiles/{LAYER}/23/0/0.mvt", 400),
        (f"/tiles/{LAYER}/3/9/0.mvt", 404),
    ],
)
async def test_bad_input(client: httpx.AsyncClient, path: str, status: int) -> None:
    r = await client.get(path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM


async def test_scoped_key_sees_only_its_area(
    session: AsyncSession, engine: AsyncEngine, settings: Settings, client: httpx.AsyncClient
) -> None:
    rng = np.random.default_rng(4)
    an_giang = near(rng, (105.10, 10.70), 6)  # An Giang, near the Cambodian border
    lao_cai = near(rng, (103.99, 22.40), 4)  # Lao Cai: outside An Giang's scope
    months = [month_time(rng, m % 12, 1)[0] for m in range(10)]
    await insert(session, an_giang + lao_cai, months, "smuggling")
    key = await make_key(session, "viewer", "VN-44")
    national = await counted_in_tiles(client)
    async with app_client(engine, session, settings, key) as viewer:
        scoped = await counted_in_tiles(viewer)
    assert (national[0], scoped[0]) == (10, 6)
    assert national[1] != scoped[1]  # the scope is in the version


async def counted_in_tiles(c: httpx.AsyncClient) -> tuple[int, str]:
    """The incidents counted in the zoom-7 tiles of An Giang and Lao Cai (each tile checked
    against the analysis as this key sees it), and the layer's version for this key."""
    fc = await analysis(c, datetime=YEAR)
    got = 0
    for place in ((105.10, 10.70), (103.99, 22.40)):
        x, y = tile_of(*place, 7)
        feats = decode((await tile(c, 7, x, y, datetime=YEAR, lang="en")).content)
        check_tile_against(fc, feats, 7, x, y)
        got += sum(f["properties"]["count"] for f in feats)
    doc = (await c.get(f"/tiles/{LAYER}.json", params={"datetime": YEAR})).json()
    return got, str(doc["data_version"])


def test_dashboard_names_the_categories_as_the_analysis() -> None:
    """The dashboard's legend and popup names (i18n/dashboard.json, `emerging.<code>`) are the
    analysis's own, in both languages."""
    catalogue = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    for code, names in emerging.NAMES.items():
        assert catalogue[f"emerging.{code}"] == {"vi": names["vi"], "en": names["en"]}, code
