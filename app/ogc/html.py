"""Plain HTML views of the OGC resources (f=html or a browser's Accept header): tables and
links for a person looking around; machines use JSON. Every value is escaped.

The items, item and collection pages add a small map above the table (js/ogc_map.js, MapLibre
GL JS from /vendor like the dashboard, the server's own country outlines as the base: no
internet). Its data travels in the page as a JSON data block (the page's policy runs no inline
script); the table stays the primary content."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

import orjson

MAPLIBRE_CSS = "/vendor/maplibre-gl/maplibre-gl.css"
MAPLIBRE_JS = "/vendor/maplibre-gl/maplibre-gl.js"
MAP_MODULE = "/static/js/ogc_map.js"
MAP_DATA_ID = "ogc-map-data"
BASE_NOTE = (
    "Base map: the server's own boundaries (Natural Earth; 2025 units: vietnamadminunits),"
    " from Vietnam's point of view."
)
# `<`, `>` and `&` as JSON escapes: no value (`</script>`, `<!--`) can end or reopen the element
_JSON_IN_HTML = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}


def _page(title: str, body: str, *, with_map: bool = False) -> str:
    css = f'<link rel="stylesheet" href="{MAPLIBRE_CSS}">' if with_map else ""
    scripts = (
        f'<script src="{MAPLIBRE_JS}"></script><script type="module" src="{MAP_MODULE}"></script>'
        if with_map
        else ""
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f'</title><link rel="icon" href="data:,">{css}'
        f'<link rel="stylesheet" href="/static/ogc.css"></head><body><h1>{escape(title)}'
        f"</h1>{body}{scripts}</body></html>"
    )


def json_script(element_id: str, data: Any) -> str:
    """`data` as a `<script type="application/json">` block that JSON.parse reads back exactly
    and that no string inside it can break out of."""
    text = orjson.dumps(data).decode().translate(_JSON_IN_HTML)
    return f'<script type="application/json" id="{escape(element_id)}">{text}</script>'


def _map(kind: str, label: str, note: str, fc: dict[str, Any]) -> str:
    """The map's figure (`kind`: items, item or extent) and its data. MapLibre makes the
    canvas a region: ogc_map.js names it `label` and has the caption describe it."""
    return (
        '<figure class="ogc-map-figure">'
        f'<div id="ogc-map" class="ogc-map" data-kind="{kind}" data-label="{escape(label)}">'
        "</div>"
        f'<figcaption id="ogc-map-note">{escape(note)} {BASE_NOTE}</figcaption>'
        '<p class="ogc-map-failed" hidden>The map could not be drawn here (it needs WebGL and'
        " MapLibre GL JS from the server); the table lists the same features.</p>"
        f"</figure>{json_script(MAP_DATA_ID, fc)}"
    )


def _links(links: list[dict[str, Any]]) -> str:
    items = "".join(
        f'<li><a href="{escape(str(link["href"]))}">'
        f"{escape(str(link.get('title') or link['rel']))}</a> <small>"
        f"({escape(str(link['rel']))}, {escape(str(link.get('type', '')))})</small></li>"
        for link in links
    )
    return f"<ul>{items}</ul>"


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return escape(", ".join(str(v) for v in value))
    return "" if value is None else escape(str(value))


def landing(doc: dict[str, Any]) -> str:
    """The landing page."""
    return _page(doc["title"], f"<p>{escape(doc['description'])}</p>{_links(doc['links'])}")


def conformance(doc: dict[str, Any]) -> str:
    """The conformance classes."""
    items = "".join(f"<li><code>{escape(c)}</code></li>" for c in doc["conformsTo"])
    return _page("Conformance", f"<ul>{items}</ul>")


def collections(doc: dict[str, Any]) -> str:
    """The collection list as a table."""
    rows = "".join(
        f'<tr><td><a href="{escape(_href(c, "self"))}">{escape(c["id"])}</a></td>'
        f"<td>{escape(c['title'])}</td><td>{escape(c['description'])}</td>"
        f'<td><a href="{escape(_href(c, "items", "text/html"))}">items</a></td></tr>'
        for c in doc["collections"]
    )
    table = f"<table><tr><th>id</th><th>title</th><th>description</th><th></th></tr>{rows}</table>"
    return _page("Collections", table + _links(doc["links"]))


def collection(doc: dict[str, Any]) -> str:
    """One collection's description, its extent on a map (when it has one) and a link to its
    items."""
    ext = doc.get("extent", {})
    box = ext.get("spatial", {}).get("bbox", [[]])[0]
    period = ext.get("temporal", {}).get("interval", [[None, None]])[0]
    items_link = (
        f'<p><a href="{escape(_href(doc, "items", "text/html"))}">Browse the items</a>'
        f' · <a href="{escape(_href(doc, "items", "application/geo+json"))}">GeoJSON</a></p>'
    )
    shown = ""
    if len(box) == 4:
        shown = _map(
            "extent",
            f"Map of the extent of {doc['title']}",
            "The rectangle is the collection's extent (bbox, longitude and latitude).",
            {"type": "FeatureCollection", "features": [_box_feature(box)]},
        )
    body = (
        f"<p>{escape(doc['description'])}</p>{items_link}{shown}<table>"
        f"<tr><th>bbox</th><td>{_cell(box)}</td></tr>"
        f"<tr><th>time</th><td>{_cell(period)}</td></tr>"
        f"<tr><th>item type</th><td>{escape(doc['itemType'])}</td></tr></table>"
    )
    return _page(doc["title"], body + _links(doc["links"]), with_map=bool(shown))


def _box_feature(box: list[float]) -> dict[str, Any]:
    """The bbox [west, south, east, north] as a GeoJSON Polygon Feature."""
    w, s, e, n = box
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    return {"type": "Feature", "id": "extent", "properties": {"bbox": box},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}  # fmt: skip


def items(title: str, fc: dict[str, Any]) -> str:
    """A page of features: a map of them above a table (geometries on the map only)."""
    feats = fc.get("features", [])
    names: list[str] = []
    for f in feats:
        for k in f.get("properties") or {}:
            if k not in names:
                names.append(k)
    head = "".join(f"<th>{escape(n)}</th>" for n in ["id", *names])
    rows = "".join(
        f'<tr data-row="{i}">'
        + f'<td><a href="{escape(_item_href(fc, f))}">{escape(str(f.get("id")))}</a></td>'
        + "".join(f"<td>{_cell((f.get('properties') or {}).get(n))}</td>" for n in names)
        + "</tr>"
        for i, f in enumerate(feats)
    )
    returned = fc.get("numberReturned", 0)
    counts = f"<p>{returned} features"
    if "numberMatched" in fc:
        counts += f" of {fc['numberMatched']}"
    counts += "</p>"
    nav = [link for link in fc.get("links", []) if link.get("type") == "text/html"]
    shown = ""
    if feats:
        data = {"type": "FeatureCollection", "numberReturned": returned, "features": feats}
        shown = _map(
            "items",
            f"Map of the {returned} features of this page",
            "Select a feature on the map for a link to its page; its row in the table below"
            " is marked.",
            data,
        )
    return _page(
        title,
        counts + _links(nav) + shown + f"<table><tr>{head}</tr>{rows}</table>",
        with_map=bool(shown),
    )


def item(title: str, feature: dict[str, Any]) -> str:
    """One feature's properties, its geometry on a map."""
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td>{_cell(v)}</td></tr>"
        for k, v in (feature.get("properties") or {}).items()
    )
    geom = feature.get("geometry") or {}
    shown = ""
    if geom:
        shown = _map(
            "item",
            f"Map of {title} {feature.get('id')}",
            f"The feature's geometry ({geom.get('type')}).",
            {"type": "FeatureCollection", "features": [{k: v for k, v in feature.items()
                                                       if k != "links"}]},
        )  # fmt: skip
    body = f"<p>geometry: {escape(str(geom.get('type')))}</p>{shown}<table>{rows}</table>" + _links(
        feature.get("links", [])
    )
    return _page(f"{title}: {feature.get('id')}", body, with_map=bool(shown))


def queryables(doc: dict[str, Any]) -> str:
    """The queryables as a table."""
    rows = "".join(
        f"<tr><td><code>{escape(k)}</code></td><td>{escape(str(v.get('type', '')))}</td>"
        f"<td>{escape(str(v.get('format', '')))}</td></tr>"
        for k, v in doc["properties"].items()
    )
    return _page(
        doc["title"], f"<table><tr><th>name</th><th>type</th><th>format</th></tr>{rows}</table>"
    )


def feature_schema(doc: dict[str, Any]) -> str:
    """The schema of a collection's Features as a table of their properties."""
    return queryables({"title": doc["title"], "properties": doc["properties"]["properties"]})


def _href(doc: dict[str, Any], rel: str, media: str | None = None) -> str:
    for link in doc.get("links", []):
        if link["rel"] == rel and (media is None or link.get("type") == media):
            return str(link["href"])
    return "#"


def _item_href(fc: dict[str, Any], feature: dict[str, Any]) -> str:
    base = fc.get("_items_url", "")
    return f"{base}/{quote(str(feature.get('id')), safe='')}?f=html"
