"""Exports: every format holds exactly what the list holds for the same filters, typed and intact."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyogrio
import pytest
import shapely
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.scope import NATIONAL
from app.incidents import exports
from app.incidents.filters import IncidentFilter
from conftest import GEODATA
from geo_reference import features

PROBLEM = "application/problem+json"
BASE = datetime(2024, 1, 1, tzinfo=UTC)
VIETNAMESE = 'Bắt giữ "Nguyễn Văn Ẩn", 2 xe máy; hàng lậu: thuốc lá, đường cát\nĐồn Biên phòng Hữu Nghị\r\nđã chuyển hồ sơ'
# (lon, lat, category, days after BASE); positions deliberately carry more than 6 decimals
POINTS = [
    (106.7051234567, 21.9604321098, "smuggling", 1),  # Lang Son, Huu Nghi
    (106.690, 21.940, "counterfeit_goods", 5),  # Lang Son
    (107.950, 21.520, "smuggling", 9),  # Quang Ninh, Mong Cai
    (103.970, 22.500, "drug_trafficking", 20),  # Lao Cai
    (106.600, 16.620, "drug_trafficking", 35),  # Quang Tri, Lao Bao
    (105.435, 10.386, "gambling", 50),  # An Giang
    (105.160, 10.880, "smuggling", 64),  # An Giang, Vinh Xuong
    (106.700, 10.776, "fraud", 80),  # Ho Chi Minh City
]
DELETED = (105.165, 10.875, "smuggling", 70)  # An Giang: inside most filters below, then deleted
# filters and how many of POINTS each one selects (the deleted one never counts)
FILTERS: list[tuple[dict[str, str], int]] = [
    ({}, 8),
    ({"category": "smuggling"}, 3),
    ({"category": "fraud,gambling"}, 2),
    (
        {
            "datetime": f"{(BASE + timedelta(days=4)).isoformat()}/{(BASE + timedelta(days=40)).isoformat()}"
        },
        4,
    ),
    ({"datetime": f"{(BASE + timedelta(days=60)).isoformat()}/.."}, 2),
    ({"bbox": "104,10,107,17"}, 4),
    ({"jurisdiction": "VN-44"}, 2),
    ({"category": "smuggling", "bbox": "104,8,108,12", "datetime": "2024-01-01T00:00:00Z/.."}, 1),
    ({"category": "fraud", "jurisdiction": "VN-44"}, 0),
]
# the field table of docs/fields.md: the GeoPackage's attributes, in order ...
FIELDS = [
    "id",
    "category",
    "category_name",
    "severity",
    "status",
    "status_name",
    "occurred_at",
    "reported_at",
    "location_precision_m",
    "description",
    "unit",
    "reporting_unit",
    "reporting_unit_name",
    "source",
    "source_id",
    "country",
    "province",
    "province_name",
    "commune",
    "commune_name",
    "province_at_occurrence",
    "province_at_occurrence_name",
    "commune_at_occurrence",
    "commune_at_occurrence_name",
    "jurisdictions",
    "jurisdiction_method",
    "offshore_km",
    "maritime_zone",
    "border_segment",
    "border_segment_name",
    "border_distance_km",
    "nearest_post",
    "nearest_post_name",
    "nearest_post_km",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
    "version",
]
# ... and the CSV's columns: the position as lon, lat after the id
HEADER = ["id", "lon", "lat", *FIELDS[1:]]
REAL = {"location_precision_m", "offshore_km", "border_distance_km", "nearest_post_km"}
FILENAME = re.compile(
    r'^attachment; filename="borderwatch-incidents-\d{8}T\d{6}Z\.(geojson|csv|gpkg)"$'
)


def _holding(lon: float, lat: float) -> dict[str, str]:
    """The units of a point on land from the bundled files (shapely, not the database): the
    former province (jurisdictions.geojson, until 2025-07-01) and today's province and
    commune (units_2025.geojson), by level."""
    point = shapely.Point(lon, lat)
    out: dict[str, str] = {}
    for era, name in (("former", "jurisdictions.geojson"), ("today", "units_2025.geojson")):
        for code, (level, geom) in features(GEODATA / name).items():
            if level != "country" and geom.covers(point):
                assert f"{era} {level}" not in out, (code, out)
                out[f"{era} {level}"] = code
    return out


async def _post(
    client: httpx.AsyncClient, n: int, point: tuple[float, float, str, int]
) -> dict[str, Any]:
    lon, lat, category, days = point
    body: dict[str, Any] = {
        "category": category,
        "severity": 1 + n % 5,
        "occurred_at": (BASE + timedelta(days=days, hours=n)).isoformat(),
        "location": {"type": "Point", "coordinates": [lon, lat]},
        "source": "export-test",
        "source_id": f"x{n}",
    }
    if n == 0:
        body |= {
            "description": VIETNAMESE,
            "unit": "Đồn BP Hữu Nghị, Lạng Sơn",
            "location_precision_m": 12.5,
        }
    r = await client.post("/incidents", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _seed(client: httpx.AsyncClient) -> tuple[list[dict[str, Any]], str]:
    """POINTS as incidents, and the id of one more incident that is then deleted."""
    seeded = [await _post(client, n, p) for n, p in enumerate(POINTS)]
    gone = await _post(client, len(POINTS), DELETED)
    # in former An Giang (VN-44, which the filters below name), today's An Giang
    assert "VN-44" in gone["properties"]["jurisdictions"]
    assert gone["properties"]["province"] == _holding(*DELETED[:2])["today province"]
    assert (await client.delete(f"/incidents/{gone['id']}")).status_code == 204
    return seeded, str(gone["id"])


async def _list(client: httpx.AsyncClient, params: dict[str, str]) -> list[dict[str, Any]]:
    r = await client.get("/incidents", params={"limit": 10000, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["features"])


async def _export(client: httpx.AsyncClient, fmt: str, params: dict[str, str]) -> httpx.Response:
    r = await client.get("/incidents/export", params={"format": fmt, **params})
    assert r.status_code == 200, (params, r.text)
    assert FILENAME.match(r.headers["content-disposition"]), r.headers["content-disposition"]
    assert r.headers["content-disposition"].endswith(f'.{fmt}"')
    return r


def _csv_rows(content: bytes) -> list[dict[str, str]]:
    text = content.decode("utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    assert next(reader) == HEADER
    return [dict(zip(HEADER, row, strict=True)) for row in reader]


def _gpkg(content: bytes, folder: Path) -> Any:
    path = folder / "export.gpkg"
    path.write_bytes(content)
    return pyogrio.read_dataframe(path, layer="incidents")


@pytest.mark.parametrize("fmt", ["geojson", "csv", "gpkg"])
async def test_each_format_holds_what_the_list_holds(
    client: httpx.AsyncClient, fmt: str, tmp_path: Path
) -> None:
    seeded, gone = await _seed(client)
    assert len(seeded) == len(POINTS)
    for params, expected in FILTERS:
        listed = [f["id"] for f in await _list(client, params)]
        assert len(listed) == expected, params
        r = await _export(client, fmt, params)
        if fmt == "geojson":
            assert r.headers["content-type"] == "application/geo+json"
            body = r.json()
            assert body["type"] == "FeatureCollection" and body["numberReturned"] == expected
            ids = [f["id"] for f in body["features"]]
        elif fmt == "csv":
            assert r.headers["content-type"] == "text/csv; charset=utf-8"
            ids = [row["id"] for row in _csv_rows(r.content)]
        else:
            assert r.headers["content-type"] == "application/geopackage+sqlite3"
            assert int(r.headers["content-length"]) == len(r.content)
            ids = list(_gpkg(r.content, tmp_path)["id"])
        assert ids == listed, params  # same incidents, same order (newest first)
        assert gone not in ids


async def test_geojson_features_equal_the_list(client: httpx.AsyncClient) -> None:
    await _seed(client)
    r = await _export(client, "geojson", {})
    assert r.json()["features"] == await _list(client, {})
    empty = await _export(client, "geojson", {"category": "fraud", "jurisdiction": "VN-44"})
    assert empty.json() == {"type": "FeatureCollection", "features": [], "numberReturned": 0}


async def test_csv_values_and_text_survive(client: httpx.AsyncClient) -> None:
    seeded, _ = await _seed(client)
    rows = {row["id"]: row for row in _csv_rows((await _export(client, "csv", {})).content)}
    assert len(rows) == len(POINTS)
    first = seeded[0]
    row = rows[first["id"]]
    p = first["properties"]
    assert row["description"] == VIETNAMESE  # diacritics, quotes, commas, LF and CRLF intact
    assert row["unit"] == "Đồn BP Hữu Nghị, Lạng Sơn"
    assert (float(row["lon"]), float(row["lat"])) == POINTS[0][:2]  # full precision, not 6 decimals
    assert row["occurred_at"] == "2024-01-02T00:00:00Z"
    assert row["reported_at"].endswith("Z") and row["created_at"].endswith("Z")
    assert datetime.fromisoformat(row["updated_at"]) == datetime.fromisoformat(p["updated_at"])
    assert (row["category"], row["severity"], row["status"], row["version"]) == (
        "smuggling",
        "1",
        "reported",
        "1",
    )
    assert (row["source"], row["source_id"], row["location_precision_m"]) == (
        "export-test",
        "x0",
        "12.5",
    )
    # Huu Nghi, 2024: today's province and commune (Lang Son since 2025-07-01), the former
    # province in force when it occurred, every unit of both eras in the path; on land
    units = _holding(*POINTS[0][:2])
    assert units["former province"] == "VN-09"  # Lang Son until 2025-07-01
    assert {k: row[k] for k in ("country", "province", "commune", "province_at_occurrence",
                                "commune_at_occurrence", "jurisdictions", "offshore_km",
                                "maritime_zone")} == {
        "country": "VNM",
        "province": units["today province"],
        "commune": units["today commune"],
        "province_at_occurrence": "VN-09",
        "commune_at_occurrence": "",  # no commune level before 2025-07-01
        "jurisdictions": "|".join(["VNM", "VN-09", units["today province"],
                                   units["today commune"]]),
        "offshore_km": "",
        "maritime_zone": "",
    }  # fmt: skip
    assert [row[k] or None for k in ("province", "commune", "province_at_occurrence")] == [
        p["province"],
        p["commune"],
        p["province_at_occurrence"],
    ]
    assert row["jurisdictions"] == p["jurisdictions"]
    assert (row["border_segment"], row["nearest_post"]) == ("VNM-CHN", "huu-nghi")
    assert float(row["border_distance_km"]) == p["border_distance_km"]
    assert float(row["nearest_post_km"]) == p["nearest_post_km"]
    assert row["jurisdiction_method"] == p["jurisdiction_method"]
    second = rows[seeded[1]["id"]]
    assert (second["description"], second["unit"], second["location_precision_m"]) == ("", "", "")


async def test_csv_bom_for_excel(client: httpx.AsyncClient) -> None:
    await _seed(client)
    plain = (await _export(client, "csv", {})).content
    marked = (await _export(client, "csv", {"bom": "true"})).content
    assert not plain.startswith(b"\xef\xbb\xbf")
    assert marked == b"\xef\xbb\xbf" + plain
    empty = await _export(client, "csv", {"category": "fraud", "jurisdiction": "VN-44"})
    assert empty.content == (",".join(HEADER) + "\r\n").encode()


async def test_geopackage_is_typed_points_in_wgs84(
    client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded, gone = await _seed(client)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    r = await _export(client, "gpkg", {})
    assert list(work.iterdir()) == []  # the temporary GeoPackage is gone
    path = tmp_path / "export.gpkg"
    path.write_bytes(r.content)
    assert pyogrio.list_layers(path).tolist() == [["incidents", "Point"]]
    info = pyogrio.read_info(path, layer="incidents")
    assert (info["crs"], info["geometry_type"], info["features"]) == (
        "EPSG:4326",
        "Point",
        len(POINTS),
    )
    assert info["fields"].tolist() == FIELDS
    types = dict(zip(FIELDS, info["ogr_types"], strict=True))
    assert {k for k, v in types.items() if v == "OFTDateTime"} == {
        "occurred_at",
        "reported_at",
        "created_at",
        "updated_at",
    }
    assert {k for k, v in types.items() if v == "OFTInteger"} == {"severity", "version"}
    assert {k for k, v in types.items() if v == "OFTReal"} == REAL
    assert {k for k, v in types.items() if v == "OFTString"} == set(FIELDS) - REAL - {
        "occurred_at", "reported_at", "created_at", "updated_at", "severity", "version",
    }  # fmt: skip
    frame = pyogrio.read_dataframe(path, layer="incidents")
    assert frame.crs is not None and frame.crs.to_epsg() == 4326
    assert len(frame) == len(POINTS) and gone not in set(frame["id"])
    assert str(frame["occurred_at"].dtype) == "datetime64[ms, UTC]"
    by_id = frame.set_index("id")
    for feature, (lon, lat, category, days) in zip(seeded, POINTS, strict=True):
        row = by_id.loc[feature["id"]]
        assert row.geometry.geom_type == "Point"
        assert (row.geometry.x, row.geometry.y) == (lon, lat)  # exact, not rounded
        assert row["category"] == category
        n = seeded.index(feature)
        assert row["occurred_at"] == BASE + timedelta(days=days, hours=n)
        assert (int(row["severity"]), int(row["version"])) == (1 + n % 5, 1)
        assert row["province"] == feature["properties"]["province"]
        assert row["province_at_occurrence"] == feature["properties"]["province_at_occurrence"]
    first = by_id.loc[seeded[0]["id"]]
    units = _holding(*POINTS[0][:2])
    assert first["description"] == VIETNAMESE
    assert first["jurisdictions"] == "|".join(
        ["VNM", "VN-09", units["today province"], units["today commune"]]
    )
    assert (first["commune"], first["province_at_occurrence"]) == (
        units["today commune"], "VN-09"
    )  # fmt: skip
    assert first["location_precision_m"] == 12.5
    assert first["nearest_post_km"] == seeded[0]["properties"]["nearest_post_km"]
    with closing(sqlite3.connect(path)) as db:  # missing values are NULL, not '' or NaN
        nulls = db.execute(
            "SELECT count(*) FROM incidents WHERE description IS NULL AND unit IS NULL"
            " AND location_precision_m IS NULL AND offshore_km IS NULL"
            " AND maritime_zone IS NULL AND commune_at_occurrence IS NULL"
        ).fetchone()
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert nulls == (len(POINTS) - 1,)
    assert "rtree_incidents_geom" in tables  # a spatial index for QGIS


async def test_empty_geopackage_keeps_its_schema(client: httpx.AsyncClient, tmp_path: Path) -> None:
    await _seed(client)
    r = await _export(client, "gpkg", {"category": "fraud", "jurisdiction": "VN-44"})
    path = tmp_path / "empty.gpkg"
    path.write_bytes(r.content)
    info = pyogrio.read_info(path, layer="incidents")
    assert (info["features"], info["geometry_type"], info["crs"]) == (0, "Point", "EPSG:4326")
    assert info["fields"].tolist() == FIELDS


async def test_small_partitions_give_the_same_files(
    client: httpx.AsyncClient, session: AsyncSession, tmp_path: Path
) -> None:
    """Partitions of 3 rows: several pieces (and GeoPackage appends), the same content."""
    await _seed(client)
    everything = IncidentFilter(scope=NATIONAL)

    async def body(fmt: exports.Format, chunk: int | None) -> list[bytes]:
        result = await exports.export(session=session, filt=everything, fmt=fmt, chunk=chunk)
        return [piece async for piece in result.chunks]

    for fmt in ("geojson", "csv"):
        small, whole = await body(fmt, 3), await body(fmt, None)
        # ceil(8 / 3) = 3 partitions (the first carries the header); GeoJSON adds its tail
        assert len(small) == {"geojson": 4, "csv": 3}[fmt]
        assert b"".join(small) == b"".join(whole)
    small_path, whole_path = tmp_path / "small.gpkg", tmp_path / "whole.gpkg"
    small_path.write_bytes(b"".join(await body("gpkg", 3)))
    whole_path.write_bytes(b"".join(await body("gpkg", None)))
    small_frame = pyogrio.read_dataframe(small_path)
    assert len(small_frame) == len(POINTS)
    assert small_frame.equals(pyogrio.read_dataframe(whole_path))


async def test_bad_format_is_422_problem(client: httpx.AsyncClient) -> None:
    for value in ("xlsx", "GeoJSON", ""):
        r = await client.get("/incidents/export", params={"format": value})
        assert r.status_code == 422, value
        assert r.headers["content-type"] == PROBLEM
        body = r.json()
        assert [e["location"] for e in body["errors"]] == ["query.format"]
        assert "format" in body["detail"]


@pytest.mark.parametrize("fmt", ["geojson", "csv", "gpkg"])
async def test_bad_filters_are_422_problem(client: httpx.AsyncClient, fmt: str) -> None:
    cases = [
        ({"bbox": "1,2,3"}, "bbox"),
        ({"bbox": "107,10,104,17"}, "bbox"),
        ({"datetime": "yesterday"}, "datetime"),
    ]
    for params, field in cases:
        r = await client.get("/incidents/export", params={"format": fmt, **params})
        assert r.status_code == 422, params
        assert r.headers["content-type"] == PROBLEM
        body = r.json()
        assert body["field"] == field and body["status"] == 422
    r = await client.get("/incidents/export", params={"format": fmt, "severity_min": 9})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert [e["location"] for e in r.json()["errors"]] == ["query.severity_min"]


async def test_openapi_lists_export(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    params = {p["name"] for p in spec["paths"]["/incidents/export"]["get"]["parameters"]}
    assert params == {
        "format",
        "bom",
        "bbox",
        "datetime",
        "category",
        "status",
        "severity_min",
        "jurisdiction",
        "cooperation",
        "border_km_max",
        "q",
        "lang",
        "accept-language",
    }


async def test_geopackage_is_version_1_2_read_cleanly_by_the_installed_gdal(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """GeoPackage 1.2 (application_id 'GPKG', user_version 10200 in the SQLite header), which
    GDAL 3.6 and QGIS 3.22 read without "may only be partially supported"; checked with the
    system's ogrinfo (Debian's gdal-bin, not the GDAL inside pyogrio) when CI has it."""
    await _seed(client)
    path = tmp_path / "export.gpkg"
    path.write_bytes((await _export(client, "gpkg", {})).content)
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == int.from_bytes(b"GPKG")
        assert db.execute("PRAGMA user_version").fetchone()[0] == 10200
    ogrinfo = shutil.which("ogrinfo")
    if ogrinfo is None:
        assert os.environ.get("CI") != "true", "ogrinfo (gdal-bin) is missing in CI"
        pytest.skip("ogrinfo is not installed (scripts/install-system-deps.sh)")
    done = await asyncio.to_thread(
        subprocess.run,
        [ogrinfo, "-ro", "-so", str(path), "incidents"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"Feature Count: {len(POINTS)}" in done.stdout
    assert "Warning" not in done.stderr and "partially" not in done.stderr, done.stderr
