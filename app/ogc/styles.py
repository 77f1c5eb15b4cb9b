"""Styles for GIS tools (OGC API – Styles, draft 20-009, "collection styles"): per collection, a
QGIS style (.qml) for its OGC API Features layer and a MapLibre style (style spec v8) for its
vector tiles, so that a GIS officer's map looks like the command centre's.

Nothing here is a copy of the dashboard's: the colours come from the file the dashboard itself
imports (app/web/static/map_colours.json), the category names from the `category` table (the
list GET /categories gives the dashboard, in its order), the hot-spot legend from the
dashboard's catalogue (app/web/static/i18n/dashboard.json) with the confidence levels of the
Gi* bins (app/analysis/gistar.py). The tile layers and their attributes are those of
app/tiles/layers.py.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.analysis.gistar import LEVELS
from app.errors import NotFound
from app.i18n import Lang
from app.incidents import service as incident_service
from app.ogc.collections import HOTSPOTS, INCIDENTS
from app.tiles.layers import LAYERS

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
COLOURS_FILE = STATIC / "map_colours.json"
CATALOGUE_FILE = STATIC / "i18n" / "dashboard.json"

QML = "application/vnd.qgis.qml"
MAPBOX = "application/vnd.mapbox.style+json"
FORMATS: dict[str, str] = {"mapbox": MAPBOX, "qml": QML}  # `f=` value -> media type
DEFAULT_FORMAT = "mapbox"
QGIS_VERSION = "3.28.0-Firenze"  # the version the QML says it was written for (3.28 LTR on)


@dataclass(frozen=True)
class Style:
    """One style of a collection: what it colours by, its tile layer and its titles."""

    id: str
    collection: str
    tile_layer: str  # the layer of app/tiles/layers.py its MapLibre style draws
    attribute: str  # the property it classifies the features by
    geometry: str  # Point | Polygon
    titles: dict[Lang, str]


STYLES: dict[str, tuple[Style, ...]] = {
    INCIDENTS: (
        Style(
            "by-category",
            INCIDENTS,
            LAYERS["incidents"].name,
            "category",
            "Point",
            {
                "vi": "Sự việc theo danh mục (màu của trung tâm chỉ huy)",
                "en": "Incidents by category (the command centre's colours)",
            },
        ),
    ),
    HOTSPOTS: (
        Style(
            "gi-bins",
            HOTSPOTS,
            LAYERS["hotspots"].name,
            "bin",
            "Polygon",
            {
                "vi": "Điểm nóng Gi* theo độ tin cậy (màu của trung tâm chỉ huy)",
                "en": "Gi* hot spots by confidence (the command centre's colours)",
            },
        ),
    ),
}


def available(collection_id: str) -> tuple[Style, ...]:
    """The styles of a collection (none for most)."""
    return STYLES.get(collection_id, ())


def find(collection_id: str, style_id: str) -> Style:
    """The style `style_id` of the collection (NotFound otherwise)."""
    for style in available(collection_id):
        if style.id == style_id:
            return style
    ids = [s.id for s in available(collection_id)]
    raise NotFound(
        f"collection '{collection_id}' has no style '{style_id[:64]}'"
        + (f"; styles: {', '.join(ids)}" if ids else "; it has no styles"),
        styles=ids,
    )


# --- what the rules are made of --------------------------------------------------------------


@cache
def colours() -> dict[str, Any]:
    """The dashboard's map colours (map_colours.json)."""
    data: dict[str, Any] = json.loads(COLOURS_FILE.read_text("utf-8"))
    return data


@cache
def catalogue() -> dict[str, dict[str, Any]]:
    """The dashboard's catalogue (key -> {"vi": …, "en": …})."""
    data: dict[str, dict[str, Any]] = json.loads(CATALOGUE_FILE.read_text("utf-8"))
    return data


def message(key: str, lang: Lang, **params: object) -> str:
    """A catalogue text with its {name} placeholders filled (as the dashboard's t())."""
    text = str(catalogue()[key][lang])
    for name, value in params.items():
        text = text.replace("{" + name + "}", str(value))
    return text


@dataclass(frozen=True)
class Rule:
    """One class of a style: the attribute's value, its legend label and its colour."""

    value: str | int
    label: str
    colour: str  # #rrggbb


async def category_rules(*, session: AsyncSession, lang: Lang) -> list[Rule]:
    """Every category, in the order of GET /categories: the i-th active one takes the i-th
    colour of the palette (as the dashboard's legend), an inactive one the `other` colour."""
    palette: list[str] = colours()["categories"]["palette"]
    other: str = colours()["categories"]["other"]
    rules: list[Rule] = []
    active = 0
    for c in await incident_service.categories(session=session):
        if c["active"]:
            colour = palette[active % len(palette)]
            active += 1
        else:
            colour = other
        rules.append(Rule(c["code"], c["name_vi"] if lang == "vi" else c["name"], colour))
    return rules


def bin_rules(lang: Lang) -> list[Rule]:
    """The significant Gi* bins, hottest first, labelled as the dashboard's legend (bin 0, not
    significant, is not drawn there either)."""
    confidence = {level: round((1 - alpha) * 100) for level, alpha in LEVELS}
    bins: dict[str, str] = colours()["hotspot_bins"]
    order = sorted((int(b) for b in bins), key=lambda b: -b)
    return [
        Rule(
            b,
            message(
                "legend.hotspot.hot" if b > 0 else "legend.hotspot.cold",
                lang,
                confidence=confidence[abs(b)],
            ),
            bins[str(b)],
        )
        for b in order
    ]


async def rules(*, session: AsyncSession, style: Style, lang: Lang) -> list[Rule]:
    """The classes of a style in `lang`."""
    if style.attribute == "category":
        return await category_rules(session=session, lang=lang)
    return bin_rules(lang)


# --- MapLibre (style spec v8) ----------------------------------------------------------------


def _match(attribute: str, rules: list[Rule], fallback: str) -> Any:
    """A `match` expression on the attribute (just the fallback when there is no rule: a match
    needs at least one value)."""
    if not rules:
        return fallback
    pairs = [x for r in rules for x in (r.value, r.colour)]
    return ["match", ["get", attribute], *pairs, fallback]


def _incident_layers(style: Style, rules: list[Rule]) -> list[dict[str, Any]]:
    """The dashboard's incident circles (app/web/static/js/mapview.js, addDataLayers):
    aggregates below zoom 10 sized by count, single incidents sized by severity."""
    # an inactive category's rule has the `other` colour, as the fallback: the dashboard's colours
    colour = _match(style.attribute, rules, colours()["categories"]["other"])
    common = {"type": "circle", "source": style.collection, "source-layer": style.tile_layer}
    return [
        {
            "id": "incident-clusters",
            **common,
            "filter": ["==", ["get", "cluster"], True],
            "paint": {
                "circle-color": colour,
                "circle-opacity": 0.75,
                "circle-radius": [
                    "interpolate",
                    ["linear"],
                    ["sqrt", ["get", "count"]],
                    *(1, 4, 10, 13, 40, 26),
                ],
                "circle-stroke-color": "#212529",
                "circle-stroke-width": ["case", [">=", ["get", "severity_max"], 4], 1.5, 0.5],
            },
        },
        {
            "id": "incident-points",
            **common,
            "filter": ["==", ["get", "cluster"], False],
            "paint": {
                "circle-color": colour,
                "circle-radius": ["interpolate", ["linear"], ["get", "severity"], 1, 4, 5, 9],
                "circle-stroke-color": [
                    "case",
                    [">=", ["get", "severity"], 4],
                    "#000000",
                    "#ffffff",
                ],
                "circle-stroke-width": ["case", [">=", ["get", "severity"], 4], 2, 1],
            },
        },
    ]


def _hotspot_layers(style: Style, rules: list[Rule]) -> list[dict[str, Any]]:
    """The dashboard's hot-spot cells: significant bins only."""
    return [
        {
            "id": "hotspot-fill",
            "type": "fill",
            "source": style.collection,
            "source-layer": style.tile_layer,
            "filter": ["!=", ["get", style.attribute], 0],
            "paint": {
                "fill-color": _match(style.attribute, rules, colours()["categories"]["other"]),
                "fill-opacity": 0.7,
                "fill-outline-color": "#ffffff",
            },
        }
    ]


def mapbox(
    *, style: Style, rules: list[Rule], lang: Lang, tilejson_url: Callable[[str], str]
) -> dict[str, Any]:
    """A MapLibre style (v8) of the collection's vector tiles; its source is the layer's
    TileJSON (which carries the tile URL with the layer's version), its legend in `metadata`."""
    layers = (_incident_layers if style.collection == INCIDENTS else _hotspot_layers)(style, rules)
    return {
        "version": 8,
        "name": f"Borderwatch – {style.titles[lang]}",
        "metadata": {
            "borderwatch:collection": style.collection,
            "borderwatch:style": style.id,
            "borderwatch:lang": lang,
            "borderwatch:attribute": style.attribute,
            "borderwatch:legend": [
                {"value": r.value, "label": r.label, "color": r.colour} for r in rules
            ],
        },
        "sources": {
            style.collection: {"type": "vector", "url": tilejson_url(style.tile_layer)},
        },
        "layers": layers,
    }


# --- QGIS (.qml) -----------------------------------------------------------------------------


def _rgba(colour: str, alpha: int = 255) -> str:
    """'#rrggbb' as QGIS writes a colour: 'r,g,b,a'."""
    h = colour.lstrip("#")
    return ",".join(str(int(h[i : i + 2], 16)) for i in (0, 2, 4)) + f",{alpha}"


def _options(parent: ET.Element, values: dict[str, str]) -> None:
    """Symbol layer properties, both as QGIS ≥ 3.26 writes them (an Option map) and as older
    versions read them (prop elements): each version reads the form it knows."""
    option_map = ET.SubElement(parent, "Option", type="Map")
    for k, v in values.items():
        ET.SubElement(option_map, "Option", name=k, type="QString", value=v)
    for k, v in values.items():
        ET.SubElement(parent, "prop", k=k, v=v)


def _data_defined(parent: ET.Element, expressions: dict[str, str]) -> None:
    """Data-defined properties (QGIS expressions) of a symbol or symbol layer."""
    dd = ET.SubElement(parent, "data_defined_properties")
    collection = ET.SubElement(dd, "Option", type="Map")
    ET.SubElement(collection, "Option", name="name", type="QString", value="")
    props = ET.SubElement(collection, "Option", name="properties", type="Map")
    for name, expression in expressions.items():
        prop = ET.SubElement(props, "Option", name=name, type="Map")
        ET.SubElement(prop, "Option", name="active", type="bool", value="true")
        ET.SubElement(prop, "Option", name="expression", type="QString", value=expression)
        ET.SubElement(prop, "Option", name="type", type="int", value="3")  # an expression
    ET.SubElement(collection, "Option", name="type", type="QString", value="collection")


# The dashboard's incident points: radius 4 px (severity 1) to 9 px (severity 5), a dark outline
# from severity 4. QGIS sizes a marker by its diameter.
SEVERITY_SIZE = 'coalesce(2 * (4 + (to_real("severity") - 1) * 1.25), 8)'
SEVERITY_OUTLINE = "CASE WHEN \"severity\" >= 4 THEN '0,0,0,255' ELSE '255,255,255,255' END"
SEVERITY_OUTLINE_WIDTH = 'CASE WHEN "severity" >= 4 THEN 2 ELSE 1 END'


def _symbol(parent: ET.Element, name: str, style: Style, colour: str) -> None:
    """One symbol: the dashboard's circle for incidents, its cell fill for hot spots."""
    point = style.geometry == "Point"
    symbol = ET.SubElement(
        parent,
        "symbol",
        type="marker" if point else "fill",
        name=name,
        alpha="1" if point else "0.7",
        clip_to_extent="1",
        force_rhr="0",
    )
    _data_defined(symbol, {})
    kind = "SimpleMarker" if point else "SimpleFill"
    layer = ET.SubElement(
        symbol, "layer", {"class": kind, "enabled": "1", "locked": "0", "pass": "0"}
    )
    if point:
        _options(
            layer,
            {
                "angle": "0",
                "color": _rgba(colour),
                "joinstyle": "bevel",
                "name": "circle",
                "outline_color": "255,255,255,255",
                "outline_style": "solid",
                "outline_width": "1",
                "outline_width_unit": "Pixel",
                "scale_method": "diameter",
                "size": "8",
                "size_unit": "Pixel",
            },
        )
        _data_defined(
            layer,
            {
                "size": SEVERITY_SIZE,
                "outlineColor": SEVERITY_OUTLINE,
                "outlineWidth": SEVERITY_OUTLINE_WIDTH,
            },
        )
    else:
        _options(
            layer,
            {
                "color": _rgba(colour),
                "joinstyle": "bevel",
                "outline_color": "255,255,255,255",
                "outline_style": "solid",
                "outline_width": "1",
                "outline_width_unit": "Pixel",
                "style": "solid",
            },
        )
        _data_defined(layer, {})


def qml(*, style: Style, rules: list[Rule], lang: Lang) -> str:
    """A QGIS style: a categorized renderer on the style's attribute, one category per rule
    (labels in `lang`), for the collection's OGC API Features layer (or its export)."""
    root = ET.Element("qgis", version=QGIS_VERSION, styleCategories="Symbology")
    renderer = ET.SubElement(
        root,
        "renderer-v2",
        type="categorizedSymbol",
        attr=style.attribute,
        symbollevels="0",
        forceraster="0",
        enableorderby="0",
        referencescale="-1",
    )
    categories = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    # how QGIS names the value's type: an integer attribute (the bins) is "long"
    value_type = "long" if rules and isinstance(rules[0].value, int) else "string"
    for n, r in enumerate(rules):
        ET.SubElement(
            categories,
            "category",
            value=str(r.value),
            type=value_type,
            symbol=str(n),
            label=r.label,
            render="true",
        )
        _symbol(symbols, str(n), style, r.colour)
    source = ET.SubElement(renderer, "source-symbol")
    _symbol(source, "0", style, colours()["categories"]["other"])
    ET.SubElement(renderer, "rotation")
    ET.SubElement(renderer, "sizescale")
    ET.SubElement(root, "blendMode").text = "0"
    ET.SubElement(root, "featureBlendMode").text = "0"
    ET.SubElement(root, "layerGeometryType").text = "0" if style.geometry == "Point" else "2"
    ET.indent(root)
    head = (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
    )
    return head + ET.tostring(root, encoding="unicode") + "\n"


# --- the stylesheet a request asks for -------------------------------------------------------


def file_name(style: Style, fmt: str, lang: Lang) -> str:
    """The name a downloaded stylesheet is saved under."""
    ext = "qml" if fmt == "qml" else "json"
    return f"borderwatch-{style.collection}-{style.id}.{lang}.{ext}"


async def stylesheet(
    *,
    session: AsyncSession,
    style: Style,
    fmt: str,
    lang: Lang,
    tilejson_url: Callable[[str], str],
) -> bytes:
    """The stylesheet of `style` in format `fmt` (qml | mapbox), labels in `lang`."""
    found = await rules(session=session, style=style, lang=lang)
    if fmt == "qml":
        return qml(style=style, rules=found, lang=lang).encode()
    doc = mapbox(style=style, rules=found, lang=lang, tilejson_url=tilejson_url)
    return json.dumps(doc, ensure_ascii=False).encode()
