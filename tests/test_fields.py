"""One field list for every output (docs/fields.md): the table in the documentation is read and
every output is held to it: the API's Features, the OGC items and queryables, the GeoJSON, CSV
and GeoPackage exports (read by pyogrio, i.e. GDAL) and the incidents vector tiles. The names
beside the codes are checked against the bundled boundary and post files and the category
table, in Vietnamese (with diacritics) and English."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyogrio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from test_tiles import decode, tile_of

from geo_reference import units_of

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "fields.md"
GEODATA = ROOT / "geodata"
# near the Hữu Nghị gate (Lạng Sơn; VN-09 before 2025-07-01), before the merger of provinces
HUU_NGHI = (106.7050, 21.9600)
OGR_TYPES = {
    "uuid": "OFTString",
    "string": "OFTString",
    "integer": "OFTInteger",
    "number": "OFTReal",
    "datetime": "OFTDateTime",
}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def documented() -> list[tuple[str, str, bool]]:
    """(name, type, in tiles) of each row of the field table, in order."""
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| (yes)? ?\|", DOC.read_text(), re.MULTILINE)
    return [(name, kind, tiles == "yes") for name, kind, tiles in rows]


FIELDS = documented()
TYPES = {name: kind for name, kind, _ in FIELDS}
PROPERTIES = [name for name, _, _ in FIELDS if name != "id"]
TILE_FIELDS = {name for name, _, tiles in FIELDS if tiles}


def test_the_table_is_complete() -> None:
    assert len(FIELDS) == 39 and FIELDS[0] == ("id", "uuid", True)
    assert set(TYPES.values()) == {"uuid", "string", "integer", "number", "datetime"}


def _check_json_types(properties: dict[str, Any], *, where: str) -> None:
    """Each value has its field's type as JSON parses it (numbers with a decimal point parse
    as floats, which is what GDAL's and QGIS's type guess reads)."""
    for name, value in properties.items():
        if value is None:
            continue
        kind = TYPES[name]
        if kind == "integer":
            assert isinstance(value, int) and not isinstance(value, bool), (where, name, value)
        elif kind == "number":
            assert isinstance(value, float), (where, name, value)
        elif kind == "datetime":
            assert isinstance(value, str) and RFC3339.match(value), (where, name, value)
        else:
            assert isinstance(value, str), (where, name, value)


def _local(code: str) -> dict[str, Any]:
    """A unit's properties in the bundled files."""
    for name in ("units_2025.geojson", "jurisdictions.geojson"):
        for f in json.loads((GEODATA / name).read_text())["features"]:
            if f["properties"]["code"] == code:
                props: dict[str, Any] = f["properties"]
                return props
    raise AssertionError(code)


def _vi(code: str) -> str:
    """The Vietnamese name of a unit as a reader writes it: with its type ('Tỉnh Lạng Sơn',
    'Xã Đồng Đăng'), the former provinces without one ('Lạng Sơn')."""
    p = _local(code)
    name, kind = p["name_local"], p.get("type_local")
    return name if not kind or name.startswith(kind + " ") else f"{kind} {name}"


def _post(code: str) -> dict[str, str]:
    with (GEODATA / "border_posts.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["code"] == code:
                return row
    raise AssertionError(code)


async def _seed(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Three incidents: one near Hữu Nghị with every field, one with the optional ones empty,
    one verified at sea."""
    bodies = [
        {
            "category": "smuggling",
            "severity": 3,
            "occurred_at": "2025-03-04T05:06:07Z",
            "location": {"type": "Point", "coordinates": list(HUU_NGHI)},
            "location_precision_m": 50,
            "description": "Hàng lậu qua đường mòn",
            "unit": "Đồn Biên phòng Hữu Nghị",
            "source": "test",
            "source_id": "f-1",
        },
        {
            "category": "drug_trafficking",
            "severity": 5,
            "occurred_at": "2025-08-01T01:00:00Z",
            "location": {"type": "Point", "coordinates": [104.8, 21.2]},
        },
        {
            "category": "smuggling",
            "severity": 2,
            "occurred_at": "2025-09-01T01:00:00Z",
            "location": {"type": "Point", "coordinates": [107.9, 20.9]},
            "location_precision_m": 12.5,
        },
    ]
    out = []
    for body in bodies:
        r = await client.post("/incidents", json=body)
        assert r.status_code == 201, r.text
        out.append(r.json())
    return out


async def test_names_beside_codes_in_both_languages(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    created = (await _seed(client))[0]
    former, today = units_of(*HUU_NGHI)
    assert former == ("VN-09",) and len(today) == 2
    category = (
        await session.execute(
            text("SELECT name_vi, name_en FROM category WHERE code = 'smuggling'")
        )
    ).one()
    post = _post("huu-nghi")
    vi = (await client.get(f"/incidents/{created['id']}")).json()["properties"]
    assert vi == created["properties"]  # the create answers in the same (default) language
    assert vi["category_name"] == category.name_vi
    assert (vi["status"], vi["status_name"]) == ("reported", "Đã báo cáo")
    assert (vi["province"], vi["province_name"]) == (today[0], _vi(today[0]))
    assert vi["province_name"] == "Tỉnh Lạng Sơn"
    assert (vi["commune"], vi["commune_name"]) == (today[1], _vi(today[1]))
    assert (vi["province_at_occurrence"], vi["province_at_occurrence_name"]) == (
        "VN-09",
        "Lạng Sơn",
    )
    assert vi["commune_at_occurrence"] is None and vi["commune_at_occurrence_name"] is None
    assert vi["border_segment"] == "VNM-CHN"
    assert vi["border_segment_name"] == "Biên giới Việt Nam – Trung Quốc"
    assert (vi["nearest_post"], vi["nearest_post_name"]) == ("huu-nghi", post["name_local"])
    en = await client.get(f"/incidents/{created['id']}", headers={"Accept-Language": "en-GB"})
    assert (en.headers["content-language"], en.headers["vary"]) == ("en", "Accept-Language")
    p = en.json()["properties"]
    assert p["category_name"] == category.name_en and p["status_name"] == "Reported"
    assert p["province_name"] == _local(today[0])["name"]
    assert p["province_at_occurrence_name"] == _local("VN-09")["name"]
    assert p["border_segment_name"] == "Vietnam – China border"
    assert p["nearest_post_name"] == post["name"]
    again = await client.get(f"/incidents/{created['id']}", params={"lang": "vi"},
                             headers={"Accept-Language": "en"})  # fmt: skip
    assert again.json()["properties"] == vi  # lang= wins over the header


async def test_every_output_has_the_documented_fields(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    seeded = await _seed(client)
    ids = {f["id"] for f in seeded}

    def ours(features: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [f for f in features if f["id"] in ids]

    outputs: dict[str, list[dict[str, Any]]] = {
        "list": (await client.get("/incidents", params={"limit": 10000})).json()["features"],
        "ogc": (
            await client.get("/ogc/collections/incidents/items", params={"limit": 10000})
        ).json()["features"],
        "export": orjson.loads(
            (await client.get("/incidents/export", params={"format": "geojson"})).content
        )["features"],
    }
    for where, features in outputs.items():
        mine = ours(features)
        assert len(mine) == 3, where
        for f in mine:
            assert list(f["properties"]) == PROPERTIES, where
            _check_json_types(f["properties"], where=where)
    # every output says the same about each incident
    by_id = {where: {f["id"]: f["properties"] for f in ours(fs)} for where, fs in outputs.items()}
    assert by_id["list"] == by_id["ogc"] == by_id["export"]
    # and the Feature by id, whose names are looked up one by one (schema.joined, lookups)
    for lang in ("vi", "en"):
        page = await client.get("/incidents", params={"limit": 10000, "lang": lang})
        for f in ours(page.json()["features"]):
            one_by_id = await client.get(f"/incidents/{f['id']}", params={"lang": lang})
            assert one_by_id.json()["properties"] == f["properties"], (lang, f["id"])
    # numbers keep a decimal point in the JSON text itself: 50 m is written 50.0
    one = (await client.get(f"/incidents/{seeded[0]['id']}")).text
    assert '"location_precision_m":50.0' in one.replace(" ", "")

    # the OGC queryables: every documented field but the names, with the documented type
    q = (await client.get("/ogc/collections/incidents/queryables")).json()["properties"]
    names = {n for n in PROPERTIES if n.endswith("_name")}
    assert set(q) == {"geometry", "id", *PROPERTIES} - names
    for name, schema in q.items():
        if name == "geometry":
            continue
        kind = TYPES[name]
        expected = {"uuid": "string", "datetime": "string"}.get(kind, kind)
        assert schema["type"] == expected, (name, schema)
        if kind == "datetime":
            assert schema["format"] == "date-time"

    # the schema GIS clients type their fields from (`describedBy`): every field, typed
    collection = (await client.get("/ogc/collections/incidents")).json()
    (described,) = [x["href"] for x in collection["links"] if x["rel"] == "describedBy"]
    feature = (await client.get(described)).json()["properties"]
    assert feature["id"]["format"] == "uuid"
    typed = feature["properties"]["properties"]
    assert list(typed) == PROPERTIES
    for name, schema in typed.items():
        kind = TYPES[name]
        expected = {"uuid": "string", "datetime": "string"}.get(kind, kind)
        assert schema["type"] == expected, (name, schema)
        assert (schema.get("format") == "date-time") == (kind == "datetime"), name

    # CSV: id, lon, lat, then the fields
    r = await client.get("/incidents/export", params={"format": "csv"})
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8"), newline="")))
    assert rows[0] == ["id", "lon", "lat", *PROPERTIES]
    csv_first = next(
        dict(zip(rows[0], row, strict=True)) for row in rows if row[0] == seeded[0]["id"]
    )
    assert csv_first["province_name"] == "Tỉnh Lạng Sơn"
    assert csv_first["border_segment_name"] == seeded[0]["properties"]["border_segment_name"]

    # GeoPackage, as GDAL reads it: the fields in order, each with its type
    path = tmp_path / "incidents.gpkg"
    path.write_bytes((await client.get("/incidents/export", params={"format": "gpkg"})).content)
    info = pyogrio.read_info(path, layer="incidents")
    assert info["fields"].tolist() == [name for name, _, _ in FIELDS]
    assert list(info["ogr_types"]) == [OGR_TYPES[kind] for _, kind, _ in FIELDS]
    frame = pyogrio.read_dataframe(path, layer="incidents").set_index("id")
    assert frame.loc[seeded[0]["id"], "nearest_post_name"] == _post("huu-nghi")["name_local"]


@pytest.mark.parametrize("lang", ["vi", "en"])
async def test_tiles_carry_the_tile_fields(client: httpx.AsyncClient, lang: str) -> None:
    seeded = await _seed(client)
    first = seeded[0]
    x, y = tile_of(*HUU_NGHI, 12)  # a point zoom: one feature per incident
    r = await client.get(f"/tiles/incidents/12/{x}/{y}.mvt", params={"lang": lang})
    assert r.status_code == 200
    features = [f for f in decode(r.content, "incidents") if f["properties"]["id"] == first["id"]]
    assert len(features) == 1
    props = features[0]["properties"]
    # every tile field this incident has a value for, and nothing else but `cluster`
    expected = {n for n in TILE_FIELDS if n == "id" or first["properties"][n] is not None}
    assert set(props) == expected | {"cluster"} and props["cluster"] is False
    for name, value in props.items():
        if name == "cluster":
            continue
        kind = TYPES[name]
        if kind == "integer":
            assert isinstance(value, int), name
        elif kind == "number":
            assert isinstance(value, float), name
            assert value == pytest.approx(first["properties"][name], abs=1e-9), name
        else:
            assert isinstance(value, str), name
    named = await client.get(f"/incidents/{first['id']}", params={"lang": lang})
    for name in ("category_name", "status_name", "province_name", "border_segment_name",
                 "nearest_post_name"):  # fmt: skip
        assert props[name] == named.json()["properties"][name], name
    # the TileJSON carries `lang` into the tile URLs, so a URL names its language
    tj = (await client.get("/tiles/incidents.json", params={"lang": lang})).json()
    assert f"lang={lang}" in tj["tiles"][0]
