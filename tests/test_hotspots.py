"""Hot spots (Gi* on a hexagonal grid) and DBSCAN clusters, against independent computations.

The study area, the cell membership of every incident and the expected counts are recomputed
with shapely + pyproj from the bundled boundary file and the stored border lines; the Gi*
z-scores are compared with PySAL's esda.G_Local(star=True) on the same counts and a libpysal
distance band; the FDR levels with a plain Benjamini-Hochberg loop; the clusters with
scikit-learn's DBSCAN on the same projected coordinates.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import esda
import httpx
import libpysal
import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import shape
from sklearn.cluster import DBSCAN
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.analysis import clusters, hotspots
from app.config import Settings
from conftest import GEODATA, app_client, make_key
from geo_reference import features, projected

PROBLEM = "application/problem+json"
UTM = Transformer.from_crs("EPSG:4326", "EPSG:32648", always_xy=True)
GEO = Transformer.from_crs("EPSG:32648", "EPSG:4326", always_xy=True)
# planted cluster: 60 incidents within 3 km of a point 5 km east of the Lao Bao border gate
CENTRE = (106.643, 16.622)
PLANTED = 60
CATEGORIES = ("smuggling", "drug_trafficking", "illegal_border_crossing")


async def insert(session: AsyncSession, points: list[tuple[float, float]], **kw: Any) -> list[str]:
    """Insert incidents at (lon, lat) in one statement (the trigger derives the rest)."""
    cats = [CATEGORIES[n % len(CATEGORIES)] for n in range(len(points))]
    rows = await session.execute(
        text(
            "INSERT INTO incident (category, severity, occurred_at, geom)"
            " SELECT c, :sev, '2025-03-01T00:00:00Z', ST_SetSRID(ST_MakePoint(x, y), 4326)"
            " FROM unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[]), CAST(:cs AS text[]))"
            " AS t(x, y, c) RETURNING id"
        ),
        {
            "xs": [p[0] for p in points],
            "ys": [p[1] for p in points],
            "cs": kw.get("categories", cats),
            "sev": 3,
        },
    )
    return [str(r[0]) for r in rows]


async def border_zone_utm(session: AsyncSession) -> Any:
    """The border zone recomputed with shapely: the stored border lines buffered by 50 km in
    EPSG:32648, clipped to Vietnam's polygon from the bundled file."""
    rows = await session.execute(text("SELECT ST_AsGeoJSON(geom) FROM border_segment"))
    import json

    lines = shapely.union_all([shape(json.loads(r[0])) for r in rows])
    vnm = features(GEODATA / "jurisdictions.geojson")["VNM"][1]
    return projected(lines, UTM).buffer(50_000, quad_segs=32).intersection(projected(vnm, UTM))


def disc(rng: np.random.Generator, n: int, centre: tuple[float, float], r_m: float) -> Any:
    """n points uniform in a disc of radius r_m (metres) around a lon/lat centre, in UTM."""
    cx, cy = UTM.transform(*centre)
    rad = r_m * np.sqrt(rng.uniform(0, 1, n))
    ang = rng.uniform(0, 2 * math.pi, n)
    return np.column_stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)])


def uniform_in(rng: np.random.Generator, area: Any, n: int, margin_m: float = 500) -> Any:
    """n points uniform over `area` (UTM), none within margin_m of its edge."""
    x1, y1, x2, y2 = area.bounds
    inner = area.buffer(-margin_m)
    out: list[Any] = []
    while len(out) < n:
        xy = rng.uniform((x1, y1), (x2, y2), (4 * n, 2))
        out.extend(xy[shapely.contains_xy(inner, xy[:, 0], xy[:, 1])])
    return np.array(out[:n])


def to_lonlat(xy: Any) -> list[tuple[float, float]]:
    lon, lat = GEO.transform(xy[:, 0], xy[:, 1])
    return list(zip(lon.tolist(), lat.tolist(), strict=True))


def esda_check(fc: dict[str, Any], cell_km: float) -> None:
    """gi_z/gi_p equal esda.G_Local(star=True) with a binary distance band of 1.5 x spacing."""
    props = [f["properties"] for f in fc["features"]]
    lon, lat = zip(*(p["centre"] for p in props), strict=True)
    x, y = UTM.transform(lon, lat)
    with warnings.catch_warnings():  # islands and separate components are expected
        warnings.simplefilter("ignore", UserWarning)
        w = libpysal.weights.DistanceBand(
            np.column_stack([x, y]), threshold=1.5 * cell_km * 1000, binary=True
        )
        # the band holds exactly the lattice's 6 adjacent cells (next ring at 1.73 x spacing)
        assert max(w.cardinalities.values()) == 6
        g = esda.G_Local(
            np.array([p["count"] for p in props], dtype=float),
            w,
            transform="B",
            star=True,
            permutations=0,
        )
    z = np.array([p["gi_z"] for p in props], dtype=float)
    p = np.array([p["gi_p"] for p in props], dtype=float)
    assert np.max(np.abs(z - g.Zs)) < 1e-6
    assert np.max(np.abs(p - 2 * g.p_norm)) < 1e-6  # esda's p_norm is one-sided


def expected_bins(props: list[dict[str, Any]], fdr: bool) -> list[int]:
    """Bins recomputed from gi_p: the highest level whose threshold p meets, signed by z."""
    ps = sorted(p["gi_p"] for p in props)
    m = len(ps)
    out = [0] * len(props)
    for level, alpha in ((1, 0.10), (2, 0.05), (3, 0.01)):
        cut = alpha
        if fdr:
            cut = -1.0
            for k, pk in enumerate(ps, start=1):  # Benjamini-Hochberg step-up
                if pk <= k / m * alpha:
                    cut = pk
        for n, p in enumerate(props):
            if p["gi_p"] <= cut:
                out[n] = level if p["gi_z"] > 0 else -level
    return out


async def get(client: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    r = await client.get(path, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/geo+json"
    body: dict[str, Any] = r.json()
    assert body["type"] == "FeatureCollection"
    return body


async def test_planted_cluster_is_a_99_percent_hot_spot(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    rng = np.random.default_rng(5)
    zone = await border_zone_utm(session)
    planted = disc(rng, PLANTED, CENTRE, 3000)
    assert shapely.contains_xy(zone.buffer(-500), planted[:, 0], planted[:, 1]).all()
    noise = uniform_in(rng, zone, 600)
    outside = [(105.854, 21.028), (106.70, 10.776), (102.60, 17.96)]  # Ha Noi, HCMC, Vientiane
    await insert(session, to_lonlat(planted) + to_lonlat(noise) + outside)
    started = time.perf_counter()
    fc = await get(client, "/analysis/hotspots", cell_km=5, area="border-zone")
    elapsed = time.perf_counter() - started
    print(f"border zone at 5 km: {fc['cells']} cells, {elapsed * 1000:.0f} ms")
    assert {k: fc[k] for k in ("area", "cell_km", "fdr", "incidents", "scope")} == {
        "area": "border-zone",
        "cell_km": 5.0,
        "fdr": False,
        "incidents": PLANTED + 600,
        "scope": None,
    }
    feats = fc["features"]
    assert fc["cells"] == len(feats) and len({f["id"] for f in feats}) == len(feats)

    # every cell lies in the study area, and together they tile it
    cells = [projected(shape(f["geometry"]), UTM) for f in feats]
    zone_area = zone.area
    assert abs(sum(c.area for c in cells) - zone_area) / zone_area < 0.002
    hexagon = hotspots.hexagon_area_m2(5)
    # outside the zone only by the coordinates' rounding (6 decimals) and its edge's vertices
    assert max(c.difference(zone).area for c in cells) < 0.001 * hexagon
    assert all(c.intersection(zone).area > 0 for c in cells)
    assert max(c.area for c in cells) < hexagon * 1.001

    # each count is the number of our points inside the cell polygon (shapely)
    pts = np.vstack([planted, noise])
    ours = shapely.points(pts)
    assert isinstance(ours, np.ndarray)  # an array of points for an (n, 2) array
    tree = shapely.STRtree(ours)
    counts = [len(tree.query(c, predicate="intersects")) for c in cells]
    assert [f["properties"]["count"] for f in feats] == counts
    assert sum(counts) == PLANTED + 600

    # the planted cells are 99 % hot spots
    props = [f["properties"] for f in feats]
    centre_cell = next(
        n for n, c in enumerate(cells) if c.contains(shapely.Point(UTM.transform(*CENTRE)))
    )
    assert props[centre_cell]["bin"] == 3 and props[centre_cell]["gi_z"] > 10
    dense = [n for n, c in enumerate(counts) if c >= 10]
    assert dense and all(props[n]["bin"] == 3 for n in dense)

    esda_check(fc, 5)
    assert [p["bin"] for p in props] == expected_bins(props, fdr=False)

    fdr = await get(client, "/analysis/hotspots", cell_km=5, area="border-zone", fdr="true")
    fprops = [f["properties"] for f in fdr["features"]]
    assert fdr["fdr"] is True and [f["id"] for f in fdr["features"]] == [f["id"] for f in feats]
    assert [p["bin"] for p in fprops] == expected_bins(fprops, fdr=True)
    assert all(abs(b["bin"]) <= abs(a["bin"]) for a, b in zip(props, fprops, strict=True))
    assert sum(p["bin"] != 0 for p in fprops) <= sum(p["bin"] != 0 for p in props)
    assert fprops[centre_cell]["bin"] == 3


async def test_uniform_noise_has_almost_no_hot_spots(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    # a box in the Central Highlands, wholly inside Vietnam: ~110 x 110 km
    box = (107.8, 12.4, 108.8, 13.4)
    vnm = features(GEODATA / "jurisdictions.geojson")["VNM"][1]
    assert vnm.contains(shapely.box(*box))
    area = projected(shapely.segmentize(shapely.box(*box), 0.01), UTM)
    rng = np.random.default_rng(11)
    noise = uniform_in(rng, area, 4000, margin_m=50)
    await insert(session, to_lonlat(noise))
    params = {"cell_km": 5, "area": "bbox:" + ",".join(map(str, box))}
    fc = await get(client, "/analysis/hotspots", **params)
    assert fc["incidents"] == 4000
    props = [f["properties"] for f in fc["features"]]
    esda_check(fc, 5)
    # Edge cells clipped by the box hold less area, so fewer incidents: they lean cold (an
    # edge effect of any clipped grid, docs/hotspots.md). Whole cells follow the null: about
    # 10 % reach 90 % and 1 % reach 99 % by chance.
    hexagon = hotspots.hexagon_area_m2(5)
    whole = [
        p
        for f, p in zip(fc["features"], props, strict=True)
        if projected(shape(f["geometry"]), UTM).area > 0.99 * hexagon
    ]
    assert len(whole) > 350
    assert sum(p["bin"] != 0 for p in whole) <= 0.12 * len(whole)
    assert sum(abs(p["bin"]) == 3 for p in whole) <= 0.02 * len(whole)
    fdr = await get(client, "/analysis/hotspots", fdr="true", **params)
    fbins = [f["properties"]["bin"] for f in fdr["features"]]
    # with the false-discovery-rate correction (almost) nothing is left
    assert sum(b != 0 for b in fbins) <= 0.01 * len(fbins)
    assert sum(b != 0 for b in fbins) <= sum(p["bin"] != 0 for p in props)


async def test_scope_and_other_areas(
    client: httpx.AsyncClient,
    session: AsyncSession,
    engine: AsyncEngine,
    settings: Settings,
) -> None:
    an_giang = (105.10, 10.70)  # An Giang, ~10 km from the Cambodian border
    lao_cai = (103.99, 22.40)  # Lao Cai, near the Chinese border: outside An Giang's scope
    await insert(session, [an_giang, an_giang, lao_cai])
    national = await get(client, "/analysis/hotspots", cell_km=10, area="border-zone")
    assert national["incidents"] == 3
    key = await make_key(session, "viewer", "VN-44")
    async with app_client(engine, session, settings, key) as viewer:
        scoped = await get(viewer, "/analysis/hotspots", cell_km=10, area="border-zone")
        assert scoped["incidents"] == 2 and scoped["scope"] == "VN-44"
        assert scoped["cells"] == national["cells"]
        by_id = {f["id"]: f["properties"]["count"] for f in scoped["features"]}
        assert sorted(n for n in by_id.values() if n) == [2]
        clusters = await get(viewer, "/analysis/clusters", eps_m=100, min_points=2)
        assert clusters["incidents"] == 2 and clusters["clusters"] == 1
    # a jurisdiction: the cells tile An Giang (areas from the bundled file)
    ag = projected(features(GEODATA / "jurisdictions.geojson")["VN-44"][1], UTM)
    fc = await get(client, "/analysis/hotspots", cell_km=2, area="jurisdiction:VN-44")
    assert fc["incidents"] == 2
    total = sum(projected(shape(f["geometry"]), UTM).area for f in fc["features"])
    assert abs(total - ag.area) / ag.area < 0.002
    # the shared filters apply: one of the three points has the second category
    assert CATEGORIES[0] != CATEGORIES[1]
    fc = await get(client, "/analysis/hotspots", cell_km=10, category=CATEGORIES[1])
    assert fc["incidents"] == 1
    assert sorted(n for f in fc["features"] if (n := f["properties"]["count"])) == [1]
    fc = await get(client, "/analysis/hotspots", cell_km=10, category="no_such_category")
    assert fc["incidents"] == 0
    assert all(f["properties"]["gi_z"] is None for f in fc["features"])
    assert all(f["properties"]["bin"] == 0 for f in fc["features"])


async def test_grid_follows_a_changed_boundary(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """The grid is cached per process, keyed by the study area's geometry: a new boundary
    gives a new grid at once, never the old cells."""
    ag = features(GEODATA / "jurisdictions.geojson")["VN-44"][1]
    before = await get(client, "/analysis/hotspots", cell_km=5, area="jurisdiction:VN-44")
    west = (104.0, 10.0, 105.2, 11.2)  # An Giang west of 105.2°E
    await session.execute(
        text(
            "UPDATE jurisdiction SET geom = ST_Multi(ST_CollectionExtract(ST_Intersection("
            "geom, ST_MakeEnvelope(:w, :s, :e, :n, 4326)), 3)) WHERE code = 'VN-44'"
        ),
        dict(zip(("w", "s", "e", "n"), west, strict=True)),
    )
    after = await get(client, "/analysis/hotspots", cell_km=5, area="jurisdiction:VN-44")
    expected = projected(ag.intersection(shapely.box(*west)), UTM).area
    total = sum(projected(shape(f["geometry"]), UTM).area for f in after["features"])
    assert abs(total - expected) / expected < 0.002
    assert after["cells"] < before["cells"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cell_km": 0.1}, "cell_km"),
        ({"cell_km": 1000}, "cell_km"),
        ({"cell_km": 0.5, "area": "jurisdiction:VNM"}, "cell_km"),
        ({"area": "moon"}, "area"),
        ({"area": "jurisdiction:XX-99"}, "area"),
        ({"area": "jurisdiction:LAO"}, "area"),
        ({"area": "bbox:105,20,106"}, "area"),
        ({"area": "bbox:106,20,105,21"}, "area"),
        ({"area": "bbox:0,0,1,1"}, "area"),
    ],
)
async def test_hotspot_bad_input(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    r = await client.get("/analysis/hotspots", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["field"] == field
    if params.get("area") == "jurisdiction:VNM":
        assert r.json()["max_cells"] == 50_000 and "50,000" in r.json()["detail"]
        assert r.json()["estimated_cells"] > 50_000


@pytest.mark.parametrize(
    "params",
    [{"eps_m": 5}, {"eps_m": 60_000}, {"min_points": 1}, {"min_points": 1001}, {"eps_m": "x"}],
)
async def test_cluster_bad_input(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    r = await client.get("/analysis/clusters", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM


async def test_clusters(client: httpx.AsyncClient, session: AsyncSession) -> None:
    rng = np.random.default_rng(7)
    planted = disc(rng, PLANTED, CENTRE, 3000)
    # noise: 30 points on a 25 km lattice far from the cluster, none with a neighbour within eps
    noise = np.array(
        [(x, y) for x in range(0, 6) for y in range(0, 5)], dtype=float
    ) * 25_000 + np.array(UTM.transform(105.0, 20.0))
    same = [(107.0, 12.0)] * 5  # five incidents at one spot: a degenerate (point) cluster
    cats = [CATEGORIES[n % 3] for n in range(PLANTED)] + ["fraud"] * (30 + 5)
    ids = await insert(session, to_lonlat(planted) + to_lonlat(noise) + same, categories=cats)
    r = await client.get("/analysis/clusters", params={"eps_m": 1500, "min_points": 5})
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    assert all(i not in r.text for i in ids)  # aggregates only
    assert {k: fc[k] for k in ("eps_m", "min_points", "clusters", "incidents", "noise")} == {
        "eps_m": 1500.0,
        "min_points": 5,
        "clusters": 2,
        "incidents": PLANTED + 35,
        "noise": 30,
    }
    # scikit-learn's DBSCAN on the same projected points agrees on the cluster sizes
    xy = np.vstack([planted, noise, np.array([UTM.transform(107.0, 12.0)] * 5)])
    labels = DBSCAN(eps=1500, min_samples=5).fit(xy).labels_
    sizes = sorted(np.bincount(labels[labels >= 0]).tolist(), reverse=True)
    assert [f["properties"]["count"] for f in fc["features"]] == sizes == [PLANTED, 5]
    big, small = fc["features"]
    assert big["id"] == 1 and big["properties"]["by_category"] == {
        c: cats[:PLANTED].count(c) for c in CATEGORIES
    }
    assert big["geometry"]["type"] == small["geometry"]["type"] == "Polygon"
    # the shown area is the hull widened by eps/2 (750 m): in UTM it covers every incident
    # with a margin of about 750 m, and no vertex is an incident's position
    shown = projected(shape(big["geometry"]), UTM)
    hull_utm = shapely.MultiPoint(planted).convex_hull
    assert shown.contains(hull_utm.buffer(700))
    assert not shown.contains(hull_utm.buffer(800))
    polygon = shape(big["geometry"])
    assert isinstance(polygon, shapely.Polygon)
    vertices = {tuple(np.round(v, 6)) for v in polygon.exterior.coords}
    assert not vertices & {tuple(np.round(v, 6)) for v in to_lonlat(planted)}
    expected_hull = hull_utm.area / 1e6
    assert big["properties"]["hull_area_km2"] == pytest.approx(expected_hull, rel=1e-3)
    dot = projected(shape(small["geometry"]), UTM)
    centre = shapely.Point(UTM.transform(107.0, 12.0))
    assert dot.centroid.distance(centre) < 1 and dot.area == pytest.approx(
        math.pi * 750**2, rel=0.02
    )
    assert small["properties"] == {"count": 5, "by_category": {"fraud": 5}, "hull_area_km2": 0}
    # below min_points nothing forms
    r = await client.get("/analysis/clusters", params={"eps_m": 1500, "min_points": 61})
    assert r.json()["clusters"] == 0 and r.json()["features"] == []


def nearest_core_rule(xy: Any, eps: float, min_points: int) -> tuple[Any, Any]:
    """scikit-learn's DBSCAN with each border point moved to the cluster of its nearest core
    point (brute-force distances): the labels our clusters promise, and the core mask."""
    fit = DBSCAN(eps=eps, min_samples=min_points).fit(xy)
    labels = fit.labels_.copy()
    core = np.zeros(len(xy), dtype=bool)
    core[fit.core_sample_indices_] = True
    for i in np.nonzero((labels >= 0) & ~core)[0]:
        d = np.hypot(*(xy[core] - xy[i]).T)
        labels[i] = fit.labels_[core][np.argmin(d)]
    return labels, core


@pytest.mark.parametrize("seed", range(12))
def test_grid_dbscan_against_scikit_learn(seed: int) -> None:
    """The grid DBSCAN behind /analysis/clusters against scikit-learn on the same points:
    blobs of every density, scattered noise, and (every third set) positions rounded to 50 m
    so that incidents share positions and distances tie with eps. Noise, core points and
    their partition into clusters are identical; a border point joins a cluster holding a
    core point nearest to it."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 30_000, (int(rng.integers(1, 12)), 2))
    blobs = [
        c + rng.normal(0, rng.uniform(100, 2500), (int(rng.integers(20, 600)), 2)) for c in centres
    ]
    xy = np.vstack([*blobs, rng.uniform(0, 30_000, (int(rng.integers(10, 400)), 2))])
    if seed % 3 == 0:
        xy = np.round(xy / 50) * 50
    eps = float(rng.choice([100.0, 250.0, 500.0, 1000.0, 1500.0]))
    min_points = int(rng.integers(2, 15))
    ours = clusters.dbscan(xy[:, 0].copy(), xy[:, 1].copy(), eps, min_points)
    fit = DBSCAN(eps=eps, min_samples=min_points).fit(xy)
    core = np.zeros(len(xy), dtype=bool)
    core[fit.core_sample_indices_] = True
    assert np.array_equal(ours < 0, fit.labels_ < 0)
    mapping = dict(zip(ours[core].tolist(), fit.labels_[core].tolist(), strict=True))
    assert len(mapping) == len(set(mapping.values())) == len(set(ours[ours >= 0].tolist()))
    assert all(mapping[o] == s for o, s in zip(ours[core], fit.labels_[core], strict=True))
    for i in np.nonzero((ours >= 0) & ~core)[0]:
        d = np.hypot(*(xy[core] - xy[i]).T)
        assert d.min() <= eps
        assert ours[i] in set(ours[core][d == d.min()].tolist())


async def test_clusters_defaults_against_scikit_learn(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """GET /analysis/clusters with no parameters (eps 1 km, 5 incidents): dense blobs (cells
    full of core incidents), thin ones (core incidents found by counting) and scattered
    incidents (noise and border incidents) give the clusters scikit-learn finds on the same
    projected points, border incidents going to their nearest core incident's cluster."""
    rng = np.random.default_rng(11)
    origin = np.array(UTM.transform(105.5, 21.0))
    blobs = [
        origin + rng.normal(0, 300, (400, 2)),
        origin + np.array((6000, 0)) + rng.normal(0, 900, (120, 2)),
        origin + np.array((0, 9000)) + rng.normal(0, 1500, (60, 2)),
        origin + np.array((9000, 9000)) + rng.normal(0, 2500, (50, 2)),
    ]
    xy = np.vstack([*blobs, origin + rng.uniform(-8000, 20_000, (150, 2))])
    cats = [CATEGORIES[n % 3] for n in range(len(xy))]
    await insert(session, to_lonlat(xy), categories=cats)
    r = await client.get("/analysis/clusters")
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    labels, _ = nearest_core_rule(xy, 1000, 5)
    sizes = sorted(np.bincount(labels[labels >= 0]).tolist(), reverse=True)
    assert fc["eps_m"] == 1000 and fc["min_points"] == 5 and fc["incidents"] == len(xy)
    assert fc["clusters"] == len(sizes) > 3 and fc["noise"] == int((labels < 0).sum()) > 0
    assert [f["properties"]["count"] for f in fc["features"]] == sizes
    assert [f["id"] for f in fc["features"]] == list(range(1, len(sizes) + 1))
    # per cluster, the categories of its incidents and the area of their hull
    expected = {}
    for k in range(len(sizes)):
        members = np.nonzero(labels == k)[0]
        hull = shapely.MultiPoint(xy[members]).convex_hull.area / 1e6
        by_cat = {c: n for c in CATEGORIES if (n := [cats[i] for i in members].count(c))}
        expected[len(members), round(hull, 4)] = by_cat
    for f in fc["features"]:
        p = f["properties"]
        assert expected[p["count"], p["hull_area_km2"]] == p["by_category"]


async def test_clusters_refuse_unbounded_work(
    client: httpx.AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clustering runs outside the database's statement timeout, so it has a budget of
    distance measurements of its own: past it the request is refused with a problem that
    says what to narrow, not left running."""
    rng = np.random.default_rng(5)
    await insert(session, to_lonlat(disc(rng, 300, CENTRE, 20_000)))
    params = {"eps_m": 3000, "min_points": 200}
    assert (await client.get("/analysis/clusters", params=params)).status_code == 200
    monkeypatch.setattr(clusters, "MAX_PAIRS", 1000)
    r = await client.get("/analysis/clusters", params=params)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert r.json()["field"] == "min_points" and "narrow the filters" in r.json()["detail"]
