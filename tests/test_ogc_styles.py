"""OGC API – Styles under /ogc: the styles of a collection, their QGIS (.qml) and MapLibre
stylesheets, access, languages and content negotiation.

Expected values come from elsewhere than the code under test: the category table read here
with SQL, the hot-spot legend written out below, the TileJSON and real vector tiles of the
server for the attributes and layer names, the MapLibre style-spec validator (node) for the
style JSON, xml.etree for the QML.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import mapbox_vector_tile
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.incidents import demo
from conftest import (
    QGIS_PYTHON,
    QGIS_REASON,
    app_client,
    make_key,
    needs,
    qgis_env,
    qgis_importable,
)

try:  # the dashboard in Chromium: its fixtures, and its marks (skips without Chromium …)
    import test_dashboard
    from test_dashboard import Served, _open, browser, served  # noqa: F401  (fixtures)

    DASHBOARD_MARKS: list[pytest.MarkDecorator] = list(test_dashboard.pytestmark)
except pytest.skip.Exception:  # … or Playwright: then test_dashboard itself is skipped.
    # Only outside CI: under CI=true its needs_module fails the run instead of skipping, and
    # that failure is not caught here.
    DASHBOARD_MARKS = [pytest.mark.skip(reason="playwright is not installed (make setup)")]

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "app" / "web" / "static"
COLOURS = json.loads((STATIC / "map_colours.json").read_text("utf-8"))
NODE = shutil.which("node")
VALIDATOR = ROOT / "node_modules" / ".bin" / "gl-style-validate"
PROBLEM = "application/problem+json"
QML = "application/vnd.qgis.qml"
MAPBOX = "application/vnd.mapbox.style+json"
REL_STYLES = "http://www.opengis.net/def/rel/ogc/1.0/styles"
INCIDENT_STYLE = "/ogc/collections/incidents/styles/by-category"
HOTSPOT_STYLE = "/ogc/collections/hotspots/styles/gi-bins"
NOW = datetime(2025, 6, 1, tzinfo=UTC)

# the dashboard's hot-spot legend, written out: bin -> (vi, en)
BIN_LABELS = {
    3: ("nóng, độ tin cậy 99%", "hot, 99% confidence"),
    2: ("nóng, độ tin cậy 95%", "hot, 95% confidence"),
    1: ("nóng, độ tin cậy 90%", "hot, 90% confidence"),
    -1: ("lạnh, độ tin cậy 90%", "cold, 90% confidence"),
    -2: ("lạnh, độ tin cậy 95%", "cold, 95% confidence"),
    -3: ("lạnh, độ tin cậy 99%", "cold, 99% confidence"),
}
needs_validator = needs(
    NODE is not None and VALIDATOR.exists(),
    "node or node_modules/@maplibre/maplibre-gl-style-spec missing (make setup)",
)


@pytest.fixture
async def categories(session: AsyncSession) -> list[tuple[str, str, str, bool]]:
    """The category table with one more active category and an inactive one (so the styles
    are seen to follow the table), read back in the dashboard's order."""
    await session.execute(
        text(
            "INSERT INTO category (code, name_en, name_vi, sort_order, active) VALUES"
            " ('owl_smuggling', 'Owl smuggling', 'Buôn lậu cú mèo', 1, true),"
            " ('old_kind', 'Retired kind', 'Loại đã bỏ', 2, false)"
        )
    )
    rows = await session.execute(
        text("SELECT code, name_vi, name_en, active FROM category ORDER BY sort_order, code")
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def expected_colours(cats: list[tuple[str, str, str, bool]]) -> dict[str, str]:
    """code -> colour as the dashboard assigns it: the i-th active category the i-th colour of
    the palette (wrapping), any other the `other` colour."""
    palette = COLOURS["categories"]["palette"]
    active = [c[0] for c in cats if c[3]]
    return {
        code: palette[active.index(code) % len(palette)]
        if code in active
        else COLOURS["categories"]["other"]
        for code, *_ in cats
    }


def rgba(colour: str) -> str:
    return ",".join(str(int(colour[i : i + 2], 16)) for i in (1, 3, 5)) + ",255"


def qml_classes(body: str) -> tuple[ET.Element, dict[str, tuple[str, str, str]]]:
    """The renderer and its categories: value -> (label, type, colour of its symbol, checked
    in both the Option map and the prop elements)."""
    assert body.startswith("<?xml") and "<!DOCTYPE qgis" in body
    root = ET.fromstring(body)
    assert root.tag == "qgis"
    renderer = root.find("renderer-v2")
    assert renderer is not None and renderer.get("type") == "categorizedSymbol"
    symbols = {s.get("name"): s for s in renderer.findall("symbols/symbol")}
    out: dict[str, tuple[str, str, str]] = {}
    for cat in renderer.findall("categories/category"):
        assert cat.get("render") == "true"
        symbol = symbols[cat.get("symbol")]
        layer = symbol.find("layer")
        assert layer is not None
        option = layer.find("Option[@type='Map']/Option[@name='color']")
        prop = layer.find("prop[@k='color']")
        assert option is not None and prop is not None
        assert option.get("value") == prop.get("v")
        value = cat.get("value")
        assert value is not None and value not in out
        out[value] = (str(cat.get("label")), str(cat.get("type")), str(option.get("value")))
    assert len(symbols) == len(out)
    return root, out


def gets(node: Any) -> set[str]:
    """Every attribute a style expression reads (["get", name])."""
    if isinstance(node, list):
        found = {node[1]} if len(node) == 2 and node[0] == "get" else set()
        return found.union(*(gets(n) for n in node))
    if isinstance(node, dict):
        return set().union(*(gets(v) for v in node.values()))
    return set()


def match_pairs(expr: list[Any]) -> tuple[dict[Any, str], str]:
    """The value -> colour pairs and the fallback of a ["match", ["get", …], …] expression."""
    assert expr[0] == "match"
    body = expr[2:-1]
    return dict(zip(body[::2], body[1::2], strict=True)), expr[-1]


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return int((lon + 180) / 360 * n), int(y)


def validate_style(doc: dict[str, Any], tmp_path: Path, name: str) -> None:
    """The MapLibre style-spec validator finds no error."""
    assert NODE is not None
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    run = subprocess.run(
        [NODE, str(VALIDATOR), "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


# --- the styles of a collection -------------------------------------------------------------


async def test_styles_are_listed_and_linked(client: httpx.AsyncClient) -> None:
    conformance = (await client.get("/ogc/conformance")).json()["conformsTo"]
    for c in ("core", "collection-styles"):
        assert f"http://www.opengis.net/spec/ogcapi-styles-1/1.0/conf/{c}" in conformance

    for collection, style in (("incidents", "by-category"), ("hotspots", "gi-bins")):
        doc = (await client.get(f"/ogc/collections/{collection}")).json()
        linked = [x for x in doc["links"] if x["rel"] == REL_STYLES]
        assert [x["href"] for x in linked] == [f"http://test/ogc/collections/{collection}/styles"]
        r = await client.get(linked[0]["href"])
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.headers["content-language"] == "vi"
        body = r.json()
        assert body["default"] == style and [s["id"] for s in body["styles"]] == [style]
        links = body["styles"][0]["links"]
        assert {x["rel"] for x in links} == {"stylesheet"}
        # each encoding in each language, the asked language first
        assert [(x["type"], x["hreflang"]) for x in links] == [
            (MAPBOX, "vi"), (QML, "vi"), (MAPBOX, "en"), (QML, "en"),
        ]  # fmt: skip
        for x in links:
            got = await client.get(x["href"])
            assert got.status_code == 200, x
            assert got.headers["content-type"] == x["type"]
            assert got.headers["content-language"] == x["hreflang"]
        english = (await client.get(linked[0]["href"], params={"lang": "en"})).json()
        assert english["styles"][0]["title"] != body["styles"][0]["title"]
        assert english["styles"][0]["links"][0]["hreflang"] == "en"

    # collections without styles: no link, an empty list
    posts = (await client.get("/ogc/collections/border_posts")).json()
    assert not [x for x in posts["links"] if x["rel"] == REL_STYLES]
    empty = await client.get("/ogc/collections/border_posts/styles")
    assert empty.status_code == 200 and empty.json()["styles"] == []
    assert "default" not in empty.json()


async def test_unknown_collections_styles_and_parameters(client: httpx.AsyncClient) -> None:
    for url, status in (
        ("/ogc/collections/nowhere/styles", 404),
        ("/ogc/collections/nowhere/styles/by-category", 404),
        ("/ogc/collections/incidents/styles/gi-bins", 404),
        ("/ogc/collections/border_posts/styles/by-category", 404),
        (f"{INCIDENT_STYLE}?f=sld10", 400),
        (f"{INCIDENT_STYLE}?lang=fr", 400),
        ("/ogc/collections/incidents/styles?f=html", 400),
    ):
        r = await client.get(url)
        assert r.status_code == status, (url, r.text)
        assert r.headers["content-type"] == PROBLEM
    r = await client.get("/ogc/collections/incidents/styles/gi-bins")
    assert r.json()["styles"] == ["by-category"]


async def test_access_follows_the_collections(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    viewer_key = await make_key(session, "viewer")
    async with app_client(engine, session, settings, viewer_key) as viewer:
        for url in ("/ogc/collections/incidents/styles", INCIDENT_STYLE):
            r = await viewer.get(url)
            assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
        assert (await viewer.get(HOTSPOT_STYLE)).status_code == 200  # an aggregate
    officer_key = await make_key(session, "officer", jurisdiction="VN-44")
    async with app_client(engine, session, settings, officer_key) as officer:
        assert (await officer.get(INCIDENT_STYLE, params={"f": "qml"})).status_code == 200
    async with app_client(engine, session, settings, None) as anonymous:
        for url in ("/ogc/collections/incidents/styles", HOTSPOT_STYLE):
            assert (await anonymous.get(url)).status_code == 401


async def test_negotiation_and_languages(client: httpx.AsyncClient) -> None:
    for accept, media in (
        (QML, QML),
        ("application/xml", QML),
        (MAPBOX, MAPBOX),
        ("application/json", MAPBOX),
        (f"{MAPBOX};q=0.5, {QML}", QML),
        (f"{QML};q=0.2, {MAPBOX};q=0.9", MAPBOX),
        ("image/png", MAPBOX),  # nothing we serve: the default
        ("*/*", MAPBOX),
    ):
        r = await client.get(INCIDENT_STYLE, headers={"Accept": accept})
        assert r.status_code == 200 and r.headers["content-type"] == media, accept
        assert set(r.headers["vary"].replace(" ", "").split(",")) == {"Accept", "Accept-Language"}
    # f wins over Accept; the QML comes as a download named after the style and language
    r = await client.get(INCIDENT_STYLE, params={"f": "qml"}, headers={"Accept": MAPBOX})
    assert r.headers["content-type"] == QML
    assert r.headers["content-disposition"] == (
        'attachment; filename="borderwatch-incidents-by-category.vi.qml"'
    )
    assert "content-disposition" not in (await client.get(INCIDENT_STYLE)).headers
    # lang wins over Accept-Language, which wins over the default (vi)
    for params, header, lang in (
        ({}, None, "vi"),
        ({}, "en-GB,en;q=0.9", "en"),
        ({"lang": "vi"}, "en", "vi"),
        ({"lang": "en"}, "vi", "en"),
    ):
        headers = {"Accept-Language": header} if header else {}
        r = await client.get(HOTSPOT_STYLE, params={"f": "qml", **params}, headers=headers)
        assert r.headers["content-language"] == lang
        _, classes = qml_classes(r.text)
        assert classes["3"][0] == BIN_LABELS[3][0 if lang == "vi" else 1]


# --- QGIS ------------------------------------------------------------------------------------


async def test_incident_qml_has_every_category_with_its_colour_and_name(
    client: httpx.AsyncClient, categories: list[tuple[str, str, str, bool]]
) -> None:
    colours = expected_colours(categories)
    assert "owl_smuggling" in colours and colours["old_kind"] == COLOURS["categories"]["other"]
    queryables = (await client.get("/ogc/collections/incidents/queryables")).json()
    assert queryables["properties"]["category"]["type"] == "string"
    for lang, index in (("vi", 1), ("en", 2)):
        r = await client.get(INCIDENT_STYLE, params={"f": "qml", "lang": lang})
        assert r.status_code == 200
        root, classes = qml_classes(r.text)
        renderer = root.find("renderer-v2")
        assert renderer is not None and renderer.get("attr") == "category"
        assert root.findtext("layerGeometryType") == "0"  # points
        assert list(classes) == [c[0] for c in categories]  # every category, in order
        for cat in categories:
            label, type_, colour = classes[cat[0]]
            assert (label, type_, colour) == (cat[index], "string", rgba(colours[cat[0]]))
        assert classes["owl_smuggling"][0] == (
            "Buôn lậu cú mèo" if lang == "vi" else "Owl smuggling"
        )
        # the dashboard's circles: sized and outlined by severity
        marker = renderer.find("symbols/symbol/layer")
        assert marker is not None and marker.get("class") == "SimpleMarker"
        dd = {
            o.get("name"): o.find("Option[@name='expression']")
            for o in marker.findall(
                "data_defined_properties/Option/Option[@name='properties']/Option"
            )
        }
        assert set(dd) == {"size", "outlineColor", "outlineWidth"}
        assert all(e is not None and '"severity"' in str(e.get("value")) for e in dd.values())


async def test_hotspot_qml_has_the_dashboards_bins(client: httpx.AsyncClient) -> None:
    queryables = (await client.get("/ogc/collections/hotspots/queryables")).json()
    assert queryables["properties"]["bin"]["type"] == "integer"
    for lang, index in (("vi", 0), ("en", 1)):
        r = await client.get(HOTSPOT_STYLE, params={"f": "qml", "lang": lang})
        root, classes = qml_classes(r.text)
        renderer = root.find("renderer-v2")
        assert renderer is not None and renderer.get("attr") == "bin"
        assert root.findtext("layerGeometryType") == "2"  # polygons
        # the significant bins, hottest first; bin 0 is not drawn (as on the dashboard)
        assert list(classes) == ["3", "2", "1", "-1", "-2", "-3"]
        for b, (label, type_, colour) in classes.items():
            assert label == BIN_LABELS[int(b)][index]
            assert (type_, colour) == ("long", rgba(COLOURS["hotspot_bins"][b]))
        fill = renderer.find("symbols/symbol")
        assert fill is not None and fill.get("type") == "fill" and fill.get("alpha") == "0.7"


# --- MapLibre --------------------------------------------------------------------------------


@needs_validator
async def test_maplibre_styles_are_valid_and_coloured_like_the_dashboard(
    client: httpx.AsyncClient, categories: list[tuple[str, str, str, bool]], tmp_path: Path
) -> None:
    colours = expected_colours(categories)
    for lang in ("vi", "en"):
        r = await client.get(INCIDENT_STYLE, params={"f": "mapbox", "lang": lang})
        assert r.status_code == 200 and r.headers["content-type"] == MAPBOX
        doc = r.json()
        validate_style(doc, tmp_path, f"incidents-{lang}")
        assert doc["sources"] == {
            "incidents": {"type": "vector", "url": "http://test/tiles/incidents.json"}
        }
        assert [x["id"] for x in doc["layers"]] == ["incident-clusters", "incident-points"]
        for layer in doc["layers"]:
            pairs, fallback = match_pairs(layer["paint"]["circle-color"])
            assert fallback == COLOURS["categories"]["other"]
            assert pairs == colours  # every category with the dashboard's colour
        legend = doc["metadata"]["borderwatch:legend"]
        names = {c[0]: c[1 if lang == "vi" else 2] for c in categories}
        assert {x["value"]: (x["label"], x["color"]) for x in legend} == {
            code: (names[code], colours[code]) for code in names
        }

        r = await client.get(HOTSPOT_STYLE, params={"lang": lang})
        doc = r.json()
        validate_style(doc, tmp_path, f"hotspots-{lang}")
        assert doc["sources"]["hotspots"]["url"] == "http://test/tiles/hotspots.json"
        (fill,) = doc["layers"]
        assert fill["filter"] == ["!=", ["get", "bin"], 0]
        pairs, _ = match_pairs(fill["paint"]["fill-color"])
        assert pairs == {int(b): c for b, c in COLOURS["hotspot_bins"].items()}
        assert [x["label"] for x in doc["metadata"]["borderwatch:legend"]] == [
            BIN_LABELS[b][0 if lang == "vi" else 1] for b in (3, 2, 1, -1, -2, -3)
        ]


async def test_maplibre_styles_read_what_the_tiles_hold(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """The sources' TileJSON answers, its layer is the styles' source-layer, and the attributes
    the styles read are in the TileJSON and in real tiles."""
    await demo.load(session=session, count=240, seed=11, now=NOW)
    near = (
        await session.execute(
            text(
                "SELECT ST_X(geom), ST_Y(geom) FROM incident WHERE deleted_at IS NULL"
                " AND border_distance_km IS NOT NULL ORDER BY border_distance_km LIMIT 1"
            )
        )
    ).one()
    for style, zooms in ((INCIDENT_STYLE, (4, 10)), (HOTSPOT_STYLE, (7,))):
        doc = (await client.get(style)).json()
        (source,) = doc["sources"].values()
        tilejson = await client.get(source["url"])
        assert tilejson.status_code == 200, tilejson.text
        (vector_layer,) = tilejson.json()["vector_layers"]
        read: set[str] = set()
        for layer in doc["layers"]:
            assert layer["source-layer"] == vector_layer["id"]
            read |= gets(layer)
        assert read <= set(vector_layer["fields"]), read - set(vector_layer["fields"])
        seen: set[str] = set()
        for z in zooms:
            x, y = tile_of(near[0], near[1], z)
            tile = tilejson.json()["tiles"][0].format(z=z, x=x, y=y)
            r = await client.get(tile)
            assert r.status_code == 200 and r.content, tile
            decoded = mapbox_vector_tile.decode(r.content)
            assert list(decoded) == [vector_layer["id"]]
            for feature in decoded[vector_layer["id"]]["features"]:
                seen |= set(feature["properties"])
        # every attribute the layers read occurs in the tiles (aggregates and points)
        assert read <= seen, read - seen


# --- one source of colours -------------------------------------------------------------------


def test_the_dashboard_reads_the_same_colours() -> None:
    mapview = (STATIC / "js" / "mapview.js").read_text("utf-8")
    # read from the shared file (fetched: a JSON module import is a syntax error in Firefox
    # ESR 128), and none of its colours typed again into the script
    assert re.search(r'new URL\("\.\./map_colours\.json", import\.meta\.url\)', mapview)
    written = {c.lower() for c in re.findall(r"#[0-9a-fA-F]{6}", mapview)}
    ours = {*COLOURS["categories"]["palette"], COLOURS["categories"]["other"]}
    ours |= set(COLOURS["hotspot_bins"].values())
    assert not written & ours, written & ours  # none of them is also typed into the script


# --- QGIS itself -----------------------------------------------------------------------------

# Loads a QML into a memory layer with QGIS and reports, per feature, the colour and size
# (pixels) of the symbol the renderer gives it. Job on stdin, report on stdout (JSON).
QGIS_LOAD = """
import json, sys
from qgis.core import (QgsApplication, QgsExpressionContext, QgsExpressionContextUtils,
                       QgsFeature, QgsRenderContext, QgsSymbolLayer, QgsVectorLayer)
job = json.load(sys.stdin)
app = QgsApplication([], False)
app.initQgis()
layer = QgsVectorLayer(job["uri"], "styled", "memory")
message, ok = layer.loadNamedStyle(job["qml"])
renderer = layer.renderer()
features = []
for values in job["features"]:
    f = QgsFeature(layer.fields())
    f.setAttributes(values)
    features.append(f)
layer.dataProvider().addFeatures(features)
ctx = QgsRenderContext()
ctx.setExpressionContext(QgsExpressionContext(QgsExpressionContextUtils.globalProjectLayerScopes(layer)))
renderer.startRender(ctx, layer.fields())
out = []
for f in layer.getFeatures():
    ctx.expressionContext().setFeature(f)
    symbol = renderer.symbolForFeature(f, ctx)
    size = None
    if symbol is not None and symbol.type() == 0:  # a marker: its data-defined size
        dd = symbol.symbolLayer(0).dataDefinedProperties()
        size = dd.property(QgsSymbolLayer.PropertySize).valueAsDouble(ctx.expressionContext(), -1)[0]
    out.append({"values": f.attributes(), "colour": symbol.color().name() if symbol else None,
                "opacity": symbol.opacity() if symbol else None, "size": size})
renderer.stopRender(ctx)
print(json.dumps({"ok": ok, "message": message, "type": renderer.type(),
                  "attribute": renderer.classAttribute(), "features": out}))
app.exitQgis()
"""


def qgis_load(qml: str, uri: str, features: list[list[Any]], tmp_path: Path) -> dict[str, Any]:
    """What QGIS makes of a QML on a memory layer holding these features."""
    path = tmp_path / "style.qml"
    path.write_text(qml, "utf-8")
    job = json.dumps({"qml": str(path), "uri": uri, "features": features})
    run = subprocess.run(
        [QGIS_PYTHON, "-c", QGIS_LOAD], input=job, env=qgis_env(tmp_path / "qgis"),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return report


@needs(qgis_importable(), QGIS_REASON)
async def test_qgis_loads_the_styles(
    client: httpx.AsyncClient, categories: list[tuple[str, str, str, bool]], tmp_path: Path
) -> None:
    colours = expected_colours(categories)
    qml = (await client.get(INCIDENT_STYLE, params={"f": "qml"})).text
    features = [[code, severity] for code, *_ in categories for severity in (1, 5)]
    report = qgis_load(
        qml, "Point?field=category:string&field=severity:integer", features, tmp_path
    )
    assert report["ok"], report["message"]
    assert (report["type"], report["attribute"]) == ("categorizedSymbol", "category")
    assert len(report["features"]) == len(features)
    for f in report["features"]:
        code, severity = f["values"]
        assert f["colour"] == colours[code], f
        # the dashboard's radius, 4 px at severity 1 to 9 px at 5: QGIS sizes by diameter
        assert f["size"] == pytest.approx({1: 8, 5: 18}[severity]), f

    qml = (await client.get(HOTSPOT_STYLE, params={"f": "qml"})).text
    bins = [[b] for b in (3, 2, 1, 0, -1, -2, -3)]
    report = qgis_load(qml, "Polygon?field=bin:integer", bins, tmp_path)
    assert report["ok"] and report["attribute"] == "bin"
    assert len(report["features"]) == len(bins)
    for f in report["features"]:
        (b,) = f["values"]
        if b == 0:  # not significant: not drawn
            assert f["colour"] is None
        else:
            assert (f["colour"], f["opacity"]) == (COLOURS["hotspot_bins"][str(b)], 0.7)


# --- the dashboard itself ----------------------------------------------------------------------


def on_the_dashboard(test: Callable[..., Any]) -> Callable[..., Any]:
    """The marks of test_dashboard.py's tests (skipped where they are)."""
    for mark in DASHBOARD_MARKS:
        test = mark(test)
    return test


@on_the_dashboard
async def test_the_dashboard_paints_what_the_styles_say(browser: Any, served: Served) -> None:
    """The command centre's map (in Chromium) and the MapLibre styles colour every category
    and every hot-spot bin alike."""
    p = await _open(browser, served, served.admin)
    paint = await p.page.evaluate(
        "(() => { const m = window.borderwatch.map; return {"
        " points: m.getPaintProperty('incident-points', 'circle-color'),"
        " clusters: m.getPaintProperty('incident-clusters', 'circle-color'),"
        " hot: m.getPaintProperty('hotspot-fill', 'fill-color') }; })()"
    )
    headers = {"Authorization": f"Bearer {served.admin}"}
    async with httpx.AsyncClient(base_url=served.base, headers=headers) as c:
        incidents = (await c.get(INCIDENT_STYLE)).json()
        hotspots = (await c.get(HOTSPOT_STYLE)).json()
    styled = {x["id"]: x["paint"] for x in incidents["layers"]}
    for layer in ("points", "clusters"):
        drawn, drawn_else = match_pairs(paint[layer])
        ours, ours_else = match_pairs(styled[f"incident-{layer}"]["circle-color"])
        assert drawn_else == ours_else
        # the page lists the active categories, the style every one (the others as the fallback)
        assert drawn and drawn == {k: v for k, v in ours.items() if v != ours_else or k in drawn}
        assert all(v == ours_else for k, v in ours.items() if k not in drawn)
    drawn, drawn_else = match_pairs(paint["hot"])
    ours, _fallback = match_pairs(hotspots["layers"][0]["paint"]["fill-color"])
    assert {**drawn, -3: drawn_else} == ours  # the page's fallback is bin -3
    assert p.errors == []
    await p.page.context.close()
