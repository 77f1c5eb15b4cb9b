"""The OGC API's HTML pages with their map (app/ogc/html.py, js/ogc_map.js): the items page
draws exactly its features and frames them, a feature chosen on the map lights its row, an
item page draws exactly that feature, a collection page its extent; all over the server's own
country outlines (Vietnam's archipelagos in Vietnam), with no request leaving 127.0.0.1, no
console error and no policy violation. And the page's JSON data block cannot be broken out of.

Debian's Chromium through Playwright (test_dashboard's browser and helpers), the key sent as
HTTP Basic (any user name, the key as the password: what a GIS officer's browser sends), against
uvicorn over a database of its own. Expected values come from the JSON answers of the same
resources (f=json) and shapely, never from the page.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from shapely.geometry import MultiPolygon, Point, shape
from test_dashboard import CHROMIUM, CSP_WATCH, MAPLIBRE, browser, wait_until

from app.ogc import html
from conftest import Demo, live_app, needs

__all__ = ["browser"]  # the module-scoped Chromium of test_dashboard, shared here

pytestmark = [
    needs(CHROMIUM is not None, "chromium is not installed (make setup)"),
    needs(MAPLIBRE.exists(), "node_modules missing (make setup)"),
]

WAIT_MS = 45_000
NOW = datetime(2025, 6, 1, tzinfo=UTC)
HOSTILE = "</script><script>alert(1)</script><!-- & \u2028 'x' \"y\""
FEATURE_LAYERS = "['ogc-point', 'ogc-line', 'ogc-fill']"
# the Paracels (Hoàng Sa) and the Spratlys (Trường Sa)
ARCHIPELAGOS = {"Hoàng Sa": (111.0, 15.5, 113.0, 17.5), "Trường Sa": (111.0, 6.0, 117.0, 12.0)}


@dataclass
class Served:
    base: str
    key: str

    async def json(self, path: str, **params: Any) -> Any:
        """The resource as JSON, asked directly (the independent side of each comparison)."""
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(base_url=self.base, headers=headers, timeout=60) as c:
            r = await c.get(path, params=params)
            assert r.status_code == 200, r.text
            return r.json()


@pytest.fixture(scope="module")
async def served(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    """uvicorn over boundaries, 40 demo incidents and one whose description tries to end the
    page's data block."""
    async with live_app(
        server_url, tmp_path_factory.mktemp("ogc_map") / "server.log", name="bw_ogcmap",
        demo=Demo(40, 7, NOW), principals={"gis admin": "admin"},
    ) as live:  # fmt: skip
        s = Served(live.base, live.keys["gis admin"].key)
        async with httpx.AsyncClient(base_url=s.base, timeout=30) as c:
            r = await c.post(
                "/incidents",
                headers={"Authorization": f"Bearer {s.key}"},
                json={"category": "fraud", "severity": 2, "occurred_at": "2025-05-05T05:05:05Z",
                      "location": {"type": "Point", "coordinates": [105.44, 10.39]},
                      "description": HOSTILE},
            )  # fmt: skip
            assert r.status_code == 201, r.text
        yield s


@dataclass
class Opened:
    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    async def value(self, expression: str) -> Any:
        """An expression (or a promise) evaluated in the page."""
        return await self.page.evaluate(f"(async () => await ({expression}))()")

    async def source(self) -> list[dict[str, Any]]:
        """The features the map's own source holds."""
        fc = await self.value("window.borderwatch.map.getSource('ogc-features').getData()")
        features: list[dict[str, Any]] = fc["features"]
        return features

    async def bounds(self) -> tuple[float, float, float, float]:
        (w, s), (e, n) = await self.value("window.borderwatch.map.getBounds().toArray()")
        return w, s, e, n

    async def drawn(self) -> list[dict[str, Any]]:
        """The properties of the features drawn on the canvas."""
        found: list[dict[str, Any]] = await self.value(
            f"window.borderwatch.map.queryRenderedFeatures({{layers: {FEATURE_LAYERS}}})"
            ".map((f) => f.properties)"
        )
        return found

    def assert_clean(self, base: str) -> None:
        """No console error, no dialog, no request to anywhere but the server."""
        assert self.errors == []
        assert self.dialogs == []
        host = urlsplit(base).netloc
        for url in self.requests:
            inner = url.removeprefix("blob:")
            if inner.startswith("data:"):
                continue
            assert urlsplit(inner).netloc == host, url


@asynccontextmanager
async def _open(browser: Any, served: Served, path: str) -> AsyncIterator[Opened]:
    # Basic credentials on every request (Playwright's http_credentials answer a Basic
    # challenge only, and the server challenges Bearer)
    basic = base64.b64encode(f"gis:{served.key}".encode()).decode()
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900},
        extra_http_headers={"Authorization": f"Basic {basic}"},
    )
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    out = Opened(page)
    page.on("console", lambda m: out.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: out.errors.append(str(e)))
    page.on("request", lambda r: out.requests.append(r.url))
    page.on("response", lambda r: out.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)  # fmt: skip

    async def dialog(d: Any) -> None:
        out.dialogs.append(d.message)
        await d.dismiss()

    page.on("dialog", dialog)
    await page.add_init_script(CSP_WATCH)
    try:
        answer = await page.goto(served.base + path)
        assert answer is not None and answer.status == 200
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        await wait_until(
            page, "window.borderwatch && (window.borderwatch.ready || window.borderwatch.failed)"
        )
        assert await out.value("window.borderwatch.failed") is None
        yield out
        assert await out.value("window.__csp") == []
        out.assert_clean(served.base)
    finally:
        await context.close()


def _positions(geometry: dict[str, Any]) -> Iterator[tuple[float, float]]:
    def walk(c: Any) -> Iterator[tuple[float, float]]:
        if isinstance(c[0], (int, float)):
            yield float(c[0]), float(c[1])
        else:
            for inner in c:
                yield from walk(inner)

    yield from walk(geometry["coordinates"])


def _fitted(bounds: tuple[float, float, float, float], features: list[dict[str, Any]]) -> None:
    """The map shows every position of the features, and frames them: along one axis at
    least they fill more than half the view (the rest is the padding and the other axis)."""
    w, s, e, n = bounds
    points = [p for f in features for p in _positions(f["geometry"])]
    assert points
    for x, y in points:
        assert w <= x <= e and s <= y <= n, (x, y, bounds)
    xs, ys = [x for x, _ in points], [y for _, y in points]
    if max(xs) > min(xs) and max(ys) > min(ys):
        spans = ((max(xs) - min(xs)) / (e - w), (max(ys) - min(ys)) / (n - s))
        assert max(spans) > 0.5, (spans, bounds)


ITEM_PAGES = [
    ("incidents", 100),
    ("border_posts", 100),
    ("border_segments", 10),
    ("jurisdictions_province", 8),
    ("hotspots", 60),
]


@pytest.mark.parametrize(("collection", "limit"), ITEM_PAGES)
async def test_items_page_maps_exactly_its_features(
    browser: Any, served: Served, collection: str, limit: int
) -> None:
    path = f"/ogc/collections/{collection}/items"
    expected = await served.json(path, limit=limit, f="json")
    assert expected["numberReturned"] == len(expected["features"]) > 0
    async with _open(browser, served, f"{path}?limit={limit}&f=html") as p:
        embedded = await p.value("JSON.parse(document.getElementById('ogc-map-data').textContent)")
        source = await p.source()
        assert len(source) == embedded["numberReturned"] == expected["numberReturned"]
        assert [f["properties"]["fid"] for f in source] == [
            str(f["id"]) for f in expected["features"]
        ]
        _fitted(await p.bounds(), expected["features"])
        assert {d["fid"] for d in await p.drawn()} <= {str(f["id"]) for f in expected["features"]}
        assert await p.drawn()
        # one table row per feature, still the page's content; the map named, its canvas too
        assert await p.page.locator("tr[data-row]").count() == expected["numberReturned"]
        label = f"Map of the {expected['numberReturned']} features of this page"
        assert await p.page.get_by_role("region", name=label).count() == 1
        region = p.page.locator("canvas")
        assert await region.get_attribute("aria-label") == label
        assert await region.get_attribute("aria-describedby") == "ogc-map-note"


async def test_a_feature_chosen_on_the_map_lights_its_row(browser: Any, served: Served) -> None:
    path = "/ogc/collections/border_posts/items"
    expected = await served.json(path, limit=100, f="json")
    async with _open(browser, served, f"{path}?limit=100&f=html") as p:
        # a post far from the others (its circle alone under the pointer): the westernmost
        row = min(range(len(expected["features"])),
                  key=lambda i: expected["features"][i]["geometry"]["coordinates"][0])  # fmt: skip
        lon, lat = expected["features"][row]["geometry"]["coordinates"]
        x, y = await p.value(
            f"(() => {{ const q = window.borderwatch.map.project([{lon}, {lat}]);"
            " return [q.x, q.y]; })()"
        )
        box = await p.page.locator("#ogc-map").bounding_box()
        await p.page.mouse.click(box["x"] + x, box["y"] + y)
        await wait_until(p.page, f"window.borderwatch.selected === {row}")
        lit = p.page.locator("tr.selected")
        assert await lit.count() == 1 and await lit.get_attribute("data-row") == str(row)
        assert await p.value("window.scrollY") == 0  # the map stays where the pointer is
        # the popup links to the feature's own page, which opens
        fid = str(expected["features"][row]["id"])
        link = p.page.locator(".maplibregl-popup a.ogc-map-link")
        assert await link.inner_text() == fid
        href = await link.get_attribute("href")
        assert href is not None and href.endswith(f"/items/{fid}?f=html")
        await link.click()
        await p.page.wait_for_url(href)
        await wait_until(p.page, "window.borderwatch && window.borderwatch.ready")
        assert await p.page.locator("h1").inner_text() == f"Border posts: {fid}"
        # a row's link that takes the focus (Tab through the table) lights its feature
        await p.page.go_back()
        await wait_until(p.page, "window.borderwatch && window.borderwatch.ready")
        await p.page.locator('tr[data-row="2"] a').focus()
        await wait_until(p.page, "window.borderwatch.selected === 2")
        state = await p.value(
            "window.borderwatch.map.getFeatureState({source: 'ogc-features', id: 2})"
        )
        assert state == {"selected": True}


@pytest.mark.parametrize(
    "collection", ["incidents", "border_posts", "border_segments", "jurisdictions_province"]
)
async def test_item_page_maps_that_feature_only(
    browser: Any, served: Served, collection: str
) -> None:
    first = (await served.json(f"/ogc/collections/{collection}/items", limit=1))["features"][0]
    path = f"/ogc/collections/{collection}/items/{first['id']}"
    expected = await served.json(path, f="json")
    async with _open(browser, served, f"{path}?f=html") as p:
        source = await p.source()
        assert len(source) == 1
        assert source[0]["properties"]["fid"] == str(expected["id"])
        assert source[0]["geometry"] == expected["geometry"]
        drawn = await p.drawn()
        assert drawn and {d["fid"] for d in drawn} == {str(expected["id"])}
        _fitted(await p.bounds(), [expected])


async def test_collection_page_maps_its_extent_over_vietnam_as_vietnam_draws_it(
    browser: Any, served: Served
) -> None:
    path = "/ogc/collections/jurisdictions_province"
    doc = await served.json(path, f="json")
    w, s, e, n = doc["extent"]["spatial"]["bbox"][0]
    countries = await served.json("/jurisdictions", level="country", simplify=500)
    home = next(
        f for f in countries["features"] if shape(f["geometry"]).contains(Point(105.85, 21.03))
    )  # Hà Nội's country
    async with _open(browser, served, f"{path}?f=html") as p:
        source = await p.source()
        assert len(source) == 1
        ring = source[0]["geometry"]["coordinates"][0]
        assert ring == [[w, s], [e, s], [e, n], [w, n], [w, s]]
        _fitted(await p.bounds(), source)
        link = p.page.get_by_role("link", name="Browse the items")
        assert (await link.get_attribute("href")).endswith(f"{path}/items?f=html")
        # each archipelago: a point of one of its islands (from the server's outlines, with
        # shapely) is drawn as land of the same country as Hà Nội
        for name, (x0, y0, x1, y1) in ARCHIPELAGOS.items():
            outline = shape(home["geometry"])
            assert isinstance(outline, MultiPolygon)
            parts = [g for g in outline.geoms
                     if x0 <= g.centroid.x <= x1 and y0 <= g.centroid.y <= y1]  # fmt: skip
            assert parts, name
            at = max(parts, key=lambda g: g.area).representative_point()
            await p.value(
                "new Promise((done) => { const m = window.borderwatch.map; m.once('idle', done);"
                f" m.jumpTo({{center: [{at.x}, {at.y}], zoom: 11}}); }})"
            )
            codes = await p.value(
                f"(() => {{ const m = window.borderwatch.map; const q = m.project([{at.x}, {at.y}]);"
                " return m.queryRenderedFeatures(q, {layers: ['country-fill']})"
                ".map((f) => f.properties.code); })()"
            )
            assert codes == [home["properties"]["code"]], name


async def test_hostile_description_stays_text_in_the_browser(browser: Any, served: Served) -> None:
    path = "/ogc/collections/incidents/items"
    async with _open(browser, served, f"{path}?limit=1000&f=html") as p:
        cells = await p.value("[...document.querySelectorAll('td')].map((td) => td.textContent)")
        assert HOSTILE in cells
        embedded = await p.value("JSON.parse(document.getElementById('ogc-map-data').textContent)")
        descriptions = [f["properties"].get("description") for f in embedded["features"]]
        assert HOSTILE in descriptions
        assert await p.page.locator("script").count() == 3
    # (no dialog opened: checked as the page closes)


class _Scripts(HTMLParser):
    """Every <script> of a page: its attributes and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append((dict(attrs), ""))
            self._in = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in = False

    def handle_data(self, data: str) -> None:
        if self._in:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def _scripts(page: str) -> list[tuple[dict[str, str | None], str]]:
    parser = _Scripts()
    parser.feed(page)
    parser.close()
    return parser.scripts


def _hostile_feature() -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": "a</script>b",
        "geometry": {"type": "Point", "coordinates": [105.44, 10.39]},
        "properties": {"description": HOSTILE, "category": "fraud"},
        "links": [],
    }


@pytest.mark.parametrize("render", ["items", "item"])
def test_data_block_cannot_be_broken_out_of(render: str) -> None:
    feature = _hostile_feature()
    if render == "items":
        fc = {"type": "FeatureCollection", "numberReturned": 1, "features": [feature],
              "links": [], "_items_url": "http://test/ogc/collections/incidents/items"}  # fmt: skip
        page = html.items("Incidents", fc)
    else:
        page = html.item("Incidents", feature)
    assert "<script>alert(1)" not in page and "</script><script>" not in page.split("<table>")[0]
    scripts = _scripts(page)
    # the data block, MapLibre and the map module: nothing else became a script
    assert [a.get("type") for a, _ in scripts] == ["application/json", None, "module"]
    assert [a.get("src") for a, _ in scripts] == [None, html.MAPLIBRE_JS, html.MAP_MODULE]
    data = json.loads(scripts[0][1])
    assert data["features"][0]["properties"]["description"] == HOSTILE
    assert data["features"][0]["id"] == "a</script>b"
    # and the table shows it as text
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_json_script_escapes_what_html_would_read() -> None:
    block = html.json_script("x", {"a": "<!--<script></script>&amp;"})
    inner = re.fullmatch(r'<script type="application/json" id="x">(.*)</script>', block)
    assert inner is not None
    assert "<" not in inner.group(1) and ">" not in inner.group(1) and "&" not in inner.group(1)
    assert json.loads(inner.group(1)) == {"a": "<!--<script></script>&amp;"}
