"""Plain HTML views of the OGC resources (f=html or a browser's Accept header): tables and
links for a person looking around; machines use JSON. Every value is escaped."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f'</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/static/ogc.css">'
        f"</head><body><h1>{escape(title)}"
        f"</h1>{body}</body></html>"
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
    """One collection's description."""
    ext = doc.get("extent", {})
    box = ext.get("spatial", {}).get("bbox", [[]])[0]
    period = ext.get("temporal", {}).get("interval", [[None, None]])[0]
    body = (
        f"<p>{escape(doc['description'])}</p><table>"
        f"<tr><th>bbox</th><td>{_cell(box)}</td></tr>"
        f"<tr><th>time</th><td>{_cell(period)}</td></tr>"
        f"<tr><th>item type</th><td>{escape(doc['itemType'])}</td></tr></table>"
    )
    return _page(doc["title"], body + _links(doc["links"]))


def items(title: str, fc: dict[str, Any]) -> str:
    """A page of features as a table (geometries left out)."""
    feats = fc.get("features", [])
    names: list[str] = []
    for f in feats:
        for k in f.get("properties") or {}:
            if k not in names:
                names.append(k)
    head = "".join(f"<th>{escape(n)}</th>" for n in ["id", *names])
    rows = "".join(
        "<tr>"
        + f'<td><a href="{escape(_item_href(fc, f))}">{escape(str(f.get("id")))}</a></td>'
        + "".join(f"<td>{_cell((f.get('properties') or {}).get(n))}</td>" for n in names)
        + "</tr>"
        for f in feats
    )
    counts = f"<p>{fc.get('numberReturned', 0)} features"
    if "numberMatched" in fc:
        counts += f" of {fc['numberMatched']}"
    counts += "</p>"
    nav = [link for link in fc.get("links", []) if link.get("type") == "text/html"]
    return _page(title, counts + _links(nav) + f"<table><tr>{head}</tr>{rows}</table>")


def item(title: str, feature: dict[str, Any]) -> str:
    """One feature's properties."""
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td>{_cell(v)}</td></tr>"
        for k, v in (feature.get("properties") or {}).items()
    )
    geom = feature.get("geometry") or {}
    body = f"<p>geometry: {escape(str(geom.get('type')))}</p><table>{rows}</table>" + _links(
        feature.get("links", [])
    )
    return _page(f"{title}: {feature.get('id')}", body)


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


def _href(doc: dict[str, Any], rel: str, media: str | None = None) -> str:
    for link in doc.get("links", []):
        if link["rel"] == rel and (media is None or link.get("type") == media):
            return str(link["href"])
    return "#"


def _item_href(fc: dict[str, Any], feature: dict[str, Any]) -> str:
    base = fc.get("_items_url", "")
    return f"{base}/{quote(str(feature.get('id')), safe='')}?f=html"
