"""Independent reference computations (shapely + pyproj), never PostGIS."""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import Any

import shapely
from pyproj import Geod, Transformer
from shapely.geometry import shape

GEOD = Geod(ellps="WGS84")
GAP_M = 3000.0
MARGIN_M = 500.0
FACING_MIN_KM = 2.0


def geodesic_km(geom: Any) -> float:
    """Geodesic length of a (multi)line in km."""
    return float(GEOD.geometry_length(geom)) / 1000.0


def local_metric(lon: float, lat: float) -> tuple[Transformer, Transformer]:
    """Azimuthal equidistant projection centred at (lon, lat): metres, true near the centre."""
    proj = f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m"
    fwd = Transformer.from_crs("EPSG:4326", proj, always_xy=True)
    back = Transformer.from_crs(proj, "EPSG:4326", always_xy=True)
    return fwd, back


def projected(geom: Any, t: Transformer) -> Any:
    """`geom` with its coordinates transformed by `t`."""
    import numpy as np

    def apply(xy: Any) -> Any:
        x, y = t.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, apply)


def lines_only(geom: Any) -> Any:
    """The linear parts of a GEOS result."""
    parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("LineString", "LinearRing")]
    return shapely.multilinestrings(parts) if parts else shapely.MultiLineString()


@lru_cache
def features(path: Path) -> dict[str, tuple[str, Any]]:
    """code -> (level, geometry) from a GeoJSON file."""
    import json

    fc = json.loads(path.read_text("utf-8"))
    return {
        f["properties"]["code"]: (f["properties"]["level"], shape(f["geometry"]))
        for f in fc["features"]
    }


def adjacency(
    path: Path, corrections: Path, only: set[str] | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """The adjacency rule of app.jurisdictions.service, recomputed with shapely and pyproj,
    between the units of one file (one era), or only between the units coded in `only`."""
    feats = {c: v for c, v in features(path).items() if only is None or c in only}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    codes = sorted(feats)
    tree = shapely.STRtree([feats[c][1] for c in codes])
    for i, ca in enumerate(codes):
        la, ga = feats[ca]
        # candidates within 0.1 degree (far beyond any tolerance)
        for j in tree.query(ga, predicate="dwithin", distance=0.1):
            if j <= i:
                continue
            cb = codes[j]
            lb, gb = feats[cb]
            if la != lb or la == "country":
                continue
            touches = ga.intersects(gb)
            line_km = geodesic_km(lines_only(ga.boundary.intersection(gb.boundary)))
            c = shapely.centroid(shapely.union(ga.envelope, gb.envelope))
            fwd, _ = local_metric(c.x, c.y)
            pa, pb = projected(ga, fwd), projected(gb, fwd)
            gap_m = 0.0 if touches else float(pa.distance(pb))
            if line_km > 0:
                out[(ca, cb)] = {
                    "method": "shared_line",
                    "shared_km": line_km,
                    "touches": touches,
                    "gap_m": gap_m,
                }
                continue
            if gap_m > GAP_M:
                continue
            reach = gap_m + MARGIN_M
            facing = (
                pa.boundary.intersection(pb.buffer(reach)).length
                + pb.boundary.intersection(pa.buffer(reach)).length
            ) / 2000.0
            if facing >= FACING_MIN_KM:
                out[(ca, cb)] = {
                    "method": "gap",
                    "shared_km": facing,
                    "touches": touches,
                    "gap_m": gap_m,
                }
    with corrections.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            a, b = sorted((row["a"], row["b"]))
            if not {a, b} <= set(feats):
                continue
            if row["action"] == "remove":
                out.pop((a, b), None)
            else:
                out.setdefault((a, b), {"method": "correction"})["method"] = "correction"
    return out


def nearest_line_km(lon: float, lat: float, line: Any, step_deg: float = 0.002) -> float:
    """Geodesic distance (km) from a point to a line, by brute force over a densified line.

    Densifying to ~200 m makes the vertex minimum exceed the true distance by at most ~100 m."""
    dense = shapely.segmentize(line, step_deg)
    coords = shapely.get_coordinates(dense)
    _, _, dist = GEOD.inv([lon] * len(coords), [lat] * len(coords), coords[:, 0], coords[:, 1])
    return float(min(dist)) / 1000.0


@lru_cache
def _units_2025() -> tuple[Any, list[tuple[str, str, Any]]]:
    import json

    path = Path(__file__).resolve().parent.parent / "geodata" / "units_2025.geojson"
    fc = json.loads(path.read_text("utf-8"))
    communes = [
        (f["properties"]["code"], f["properties"]["parent_code"], shape(f["geometry"]))
        for f in fc["features"]
        if f["properties"]["level"] == "commune"
    ]
    return shapely.STRtree([g for *_, g in communes]), communes


def units_of(lon: float, lat: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The units that hold a point, from the bundled files: the former provinces of
    geodata/jurisdictions.geojson (codes), and today's (province, commune) of
    geodata/units_2025.geojson (empty when none, or on a boundary between two)."""
    point = shapely.Point(lon, lat)
    former_file = Path(__file__).resolve().parent.parent / "geodata" / "jurisdictions.geojson"
    former = tuple(
        code
        for code, (level, geom) in features(former_file).items()
        if level == "province" and geom.contains(point)
    )
    tree, communes = _units_2025()
    hits = [communes[i] for i in tree.query(point) if communes[i][2].contains(point)]
    today = (hits[0][1], hits[0][0]) if len(hits) == 1 else ()
    return former, today
