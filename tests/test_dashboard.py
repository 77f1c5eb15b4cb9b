"""The map dashboard in a real browser: Debian's Chromium driven by Playwright (never a
browser Playwright downloads), WebGL through SwiftShader, against uvicorn on 127.0.0.1 (a free
port) over a database of its own with committed fixture data (boundaries + 80 demo
incidents), dropped after.

Expected values come from SQL on that database or from the API called directly, never from
the page. The page's test hook is `window.borderwatch` (docs/dashboard.md). Every wait is
bounded.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import service as auth_service
from app.config import Settings
from app.db import sessionmaker
from conftest import Demo, app_client, live_app, needs, needs_module

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MAPLIBRE = ROOT / "node_modules" / "maplibre-gl" / "dist" / "maplibre-gl.js"

pytestmark = [
    needs(CHROMIUM is not None, "chromium is not installed (make setup)"),
    needs(MAPLIBRE.exists(), "node_modules missing (make setup)"),
]

playwright_api = needs_module("playwright.async_api", "playwright is not installed (make setup)")

NOW = datetime(2025, 6, 1, tzinfo=UTC)
COUNT = 80
ICT = timezone(timedelta(hours=7))  # the dashboard's months are Vietnam's calendar months
# WebGL without a GPU: ANGLE on SwiftShader (software), which headless Chromium blocks unless
# told that the unsafe software path is wanted
CHROMIUM_ARGS = [
    "--use-gl=angle",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--no-sandbox",
]
WAIT_MS = 45_000
# every Content-Security-Policy violation of a page, as the browser reports it (an init script
# runs before the page's own and is not subject to its policy)
CSP_WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


async def wait_until(page: Any, expression: str, timeout_ms: int = WAIT_MS) -> None:
    """Wait until `expression` (a value or a promise) is truthy in the page. Playwright's
    wait_for_function compiles its predicate with eval in the page, which the page's
    Content-Security-Policy forbids (as it should); page.evaluate goes through the DevTools
    protocol, which the policy does not govern."""
    deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
    while not await page.evaluate(f"(async () => Boolean(await ({expression})))()"):
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {expression}"
        await asyncio.sleep(0.05)


@dataclass
class Served:
    base: str
    admin: str
    viewer: str
    admin_id: int
    engine: AsyncEngine
    log: Path

    async def scalar(self, sql: str, **params: Any) -> Any:
        """One value from the served database (the independent side of a comparison)."""
        async with self.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def api(self, path: str, key: str | None = None, **params: Any) -> Any:
        """The API, called directly with the admin key (or `key`)."""
        headers = {"Authorization": f"Bearer {key or self.admin}"}
        async with httpx.AsyncClient(base_url=self.base, headers=headers, timeout=30) as c:
            r = await c.get(path, params=params)
            assert r.status_code == 200, r.text
            return r.json()


@pytest.fixture(scope="module")
async def served(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    """uvicorn (one worker, as `make run`) over a committed fixture database."""
    async with live_app(
        server_url, tmp_path_factory.mktemp("dashboard") / "server.log", name="bw_dash",
        demo=Demo(COUNT, 11, NOW), principals={"dash admin": "admin", "dash viewer": "viewer"},
    ) as live:  # fmt: skip
        admin, viewer = live.keys["dash admin"], live.keys["dash viewer"]
        yield Served(live.base, admin.key, viewer.key, admin.id, live.engine, live.log)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """The system Chromium, headless, with software WebGL."""
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield b
        finally:
            await b.close()


@dataclass
class Page:
    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    async def settled(self) -> None:
        """Wait until no request is in flight and every tile is drawn."""
        await self.page.evaluate(f"window.borderwatch.settled({WAIT_MS})")

    async def rendered(self) -> dict[str, int]:
        counts: dict[str, int] = await self.page.evaluate("window.borderwatch.renderedIncidents()")
        return counts

    async def click_map(self, lon: float, lat: float) -> None:
        """A real mouse click where (lon, lat) is on screen."""
        xy = await self.page.evaluate(
            f"(() => {{ const p = window.borderwatch.map.project([{lon}, {lat}]); return [p.x, p.y]; }})()"
        )
        box = await self.page.locator("#map").bounding_box()
        await self.page.mouse.click(box["x"] + xy[0], box["y"] + xy[1])


async def _new_page(
    browser: Any,
    *,
    width: int = 1366,
    height: int = 768,
    lang: str | None = "en",
    locale: str | None = None,
    bypass_csp: bool = False,
) -> Page:
    """A page in a new browser context, not yet opened: in `lang` (chosen as a user would,
    remembered in the browser; None: the page picks from the browser's `locale`), its errors,
    requests and Content-Security-Policy violations recorded."""
    options: dict[str, Any] = {"viewport": {"width": width, "height": height}}
    if bypass_csp:
        options["bypass_csp"] = True  # a test's own script (axe-core) injected into the page
    if locale:
        options["locale"] = locale
    context = await browser.new_context(**options)
    if lang:
        await context.add_init_script(f"localStorage.setItem('borderwatch.lang', '{lang}');")
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    out = Page(page)
    page.on("console", lambda m: out.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: out.errors.append(str(e)))
    page.on("request", lambda r: out.requests.append(r.url))
    await page.add_init_script(CSP_WATCH)
    return out


async def _open(
    browser: Any,
    served: Served,
    key: str,
    *,
    width: int = 1366,
    height: int = 768,
    query: str = "",
    lang: str | None = "en",
    locale: str | None = None,
    bypass_csp: bool = False,
) -> Page:
    """The dashboard with `key` in a new page (`_new_page`), settled."""
    out = await _new_page(
        browser, width=width, height=height, lang=lang, locale=locale, bypass_csp=bypass_csp
    )
    await out.page.goto(f"{served.base}/{query}#key={key}")
    await wait_until(
        out.page, "window.borderwatch && window.borderwatch.map && window.borderwatch.state.me"
    )
    await out.settled()
    return out


async def _fit_incidents(p: Page, served: Served) -> None:
    """Frame every fixture incident (with room for the circles)."""
    box = await served.scalar(
        "SELECT json_build_array(ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e))"
        " FROM (SELECT ST_Extent(geom) AS e FROM incident) s"
    )
    await p.page.evaluate(
        f"window.borderwatch.map.fitBounds([[{box[0]}, {box[1]}], [{box[2]}, {box[3]}]], {{padding: 80, duration: 0}})"
    )
    await p.settled()


def _read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text("utf-8"))


CATALOGUES = ROOT / "app" / "web" / "static" / "i18n"


def catalogue() -> dict[str, dict[str, Any]]:
    """The dashboard's messages (common.json and dashboard.json), key → {"vi": …, "en": …}."""
    out: dict[str, dict[str, Any]] = {}
    for name in ("common", "dashboard"):
        out |= _read_json(CATALOGUES / f"{name}.json")
    return out


def msg(key: str, lang: str = "en", **params: Any) -> str:
    """A catalogue message as the page shows it (plural forms: "other"; {name} filled)."""
    value = catalogue()[key][lang]
    text = value["other"] if isinstance(value, dict) else str(value)
    for name, v in params.items():
        text = text.replace("{" + name + "}", str(v))
    return text


def _month_bounds(month: str) -> tuple[datetime, datetime]:
    y, m = (int(v) for v in month.split("-"))
    start = datetime(y, m, 1, tzinfo=ICT)
    end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=ICT)
    return start, end


async def _post_name(served: Served, code: str) -> str:
    """A border post's name as the page shows it: the Vietnamese one, with its diacritics."""
    posts = await served.api("/border-posts")
    [p] = [f["properties"] for f in posts["features"] if f["properties"]["code"] == code]
    return str(p.get("display_name") or p.get("name_local") or p["name"])


async def _canvas_colours(p: Page, also: dict[str, list[int]] | None = None) -> dict[str, int]:
    """Pixels of the sea, the home country's land and the border line in the WebGL canvas (and
    of the colours `also` names, as [r, g, b])."""
    counts: dict[str, int] = await p.page.evaluate(
        """async (also) => {
          const map = window.borderwatch.map;
          const url = await new Promise((resolve) => {
            map.once('render', () => resolve(map.getCanvas().toDataURL('image/png')));
            map.triggerRepaint();
          });
          const img = new Image();
          await new Promise((resolve) => { img.onload = resolve; img.src = url; });
          const c = document.createElement('canvas');
          c.width = img.width; c.height = img.height;
          const ctx = c.getContext('2d');
          ctx.drawImage(img, 0, 0);
          const d = ctx.getImageData(0, 0, c.width, c.height).data;
          const want = { sea: [0xd7, 0xe8, 0xf2], land: [0xfb, 0xfa, 0xf5], border: [0xc9, 0x2a, 0x2a], ...also };
          const out = { total: d.length / 4 };
          for (const k of Object.keys(want)) out[k] = 0;
          for (let i = 0; i < d.length; i += 4) {
            for (const [k, [r, g, b]] of Object.entries(want)) {
              if (Math.abs(d[i] - r) <= 2 && Math.abs(d[i + 1] - g) <= 2 && Math.abs(d[i + 2] - b) <= 2) out[k] += 1;
            }
          }
          return out;
        }""",
        also or {},
    )
    return counts


async def test_dashboard_loads_renders_and_counts(
    browser: Any, served: Served, tmp_path: Path
) -> None:
    p = await _open(browser, served, served.admin)
    assert "key=" not in p.page.url  # the key left the address bar
    assert await p.page.evaluate("sessionStorage.getItem('borderwatch.key')") == served.admin
    await _fit_incidents(p, served)
    # settledAt(): after every request the page made had answered, before settled() resolved
    times = await p.page.evaluate(
        "({at: window.borderwatch.settledAt(), now: performance.now(), ends:"
        " performance.getEntriesByType('resource').filter((e) => ['fetch',"
        " 'xmlhttprequest'].includes(e.initiatorType)).map((e) => e.responseEnd)})"
    )
    assert times["ends"] and times["at"] >= max(times["ends"]) - 1, times
    assert times["at"] <= times["now"] - 150, times  # three calm looks 100 ms apart

    colours = await _canvas_colours(p)
    assert colours["sea"] > colours["total"] * 0.05, colours  # WebGL really drew the style
    assert colours["land"] > colours["total"] * 0.05, colours
    assert colours["border"] > 50, colours

    total = await served.scalar("SELECT count(*) FROM incident WHERE deleted_at IS NULL")
    assert total == COUNT
    rendered = await p.rendered()
    assert rendered["incidents"] == total
    # the view's statistics count what is in the view: every incident here
    assert await p.page.locator("#stat-total").inner_text() == f"{total:,}"
    assert await p.page.locator("#whoami").inner_text() == "dash admin · admin · national"
    # Hoàng Sa and Trường Sa are labelled as Vietnam's (the polygons: test_incident_derive)
    labels = await p.page.locator(".map-label-archipelago").all_text_contents()
    assert labels == ["Quần đảo Hoàng Sa (Việt Nam)", "Quần đảo Trường Sa (Việt Nam)"]
    # provinces are named as Vietnamese readers write them, as the API names them in vi
    shown = set(await p.page.locator(".map-label-province").all_text_contents())
    named = await served.api("/jurisdictions", level="province", lang="vi")
    assert shown == {f["properties"]["display_name"] for f in named["features"]}
    assert {"Tỉnh An Giang", "Thành phố Hồ Chí Minh"} <= shown
    assert any("/tiles/incidents/" in u and ".mvt?v=" in u for u in p.requests)
    # the preloaded files (index.html) are fetched once: the page's fetch() takes the preload
    for path in (
        "/static/map_colours.json",
        "/static/i18n/common.json",
        "/static/i18n/dashboard.json",
    ):
        assert len([u for u in p.requests if u.endswith(path)]) == 1, path

    # the loaded dashboard as a person sees it (kept under the test's tmp_path)
    await p.page.screenshot(path=str(tmp_path / "dashboard.png"))
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000

    # one click exports the view with the filters: every incident here, as GeoJSON
    async with p.page.expect_download() as download_info:
        await p.page.locator("[data-export='geojson']").click()
    download = await download_info.value
    assert download.suggested_filename.endswith(".geojson")
    exported = _read_json(await download.path())
    ids = await served.scalar("SELECT json_agg(id::text) FROM incident WHERE deleted_at IS NULL")
    assert sorted(f["id"] for f in exported["features"]) == sorted(ids)

    assert p.errors == []
    # the strict policy held the whole page: MapLibre's workers, the legend's colours, the charts
    assert await p.page.evaluate("window.__csp") == []
    await p.page.context.close()


async def test_api_docs_and_ogc_pages_work_offline_under_the_policy(
    browser: Any, served: Served
) -> None:
    # a GIS officer browsing the OGC pages sends the key as a header
    context = await browser.new_context(
        extra_http_headers={"Authorization": f"Bearer {served.admin}"}
    )
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    await page.add_init_script(CSP_WATCH)
    docs = await page.goto(f"{served.base}/docs")
    assert docs is not None and "script-src 'self'" in docs.headers["content-security-policy"]
    title = page.locator(".swagger-ui .info .title")
    await title.wait_for()
    assert "Borderwatch" in await title.inner_text()
    # the operations are listed from /openapi.json (the page needs no internet)
    assert await page.locator(".opblock").count() > 20
    assert await page.evaluate("window.__csp") == []
    ogc = await page.goto(f"{served.base}/ogc?f=html")
    assert ogc is not None and ogc.status == 200
    assert await page.locator("h1").count() == 1
    # its style sheet applied (a file, not inline)
    margin = await page.evaluate("getComputedStyle(document.body).marginTop")
    assert margin == "24px"
    assert await page.evaluate("window.__csp") == []
    assert errors == []
    await context.close()


async def test_category_filter_and_month_slider_change_the_count(
    browser: Any, served: Served
) -> None:
    p = await _open(browser, served, served.admin)
    await _fit_incidents(p, served)
    category = await served.scalar(
        "SELECT category FROM incident GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
    )
    month = await served.scalar(
        "SELECT to_char(occurred_at AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM') FROM incident"
        " WHERE category = :c GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
        c=category,
    )

    await p.page.locator(f"#f-categories input[value='{category}']").check()
    await wait_until(p.page, "window.borderwatch.state.filters.categories.length === 1")
    await p.settled()
    expected = await served.scalar(
        "SELECT count(*) FROM incident WHERE deleted_at IS NULL AND category = :c", c=category
    )
    assert 0 < expected < COUNT
    assert (await p.rendered())["incidents"] == expected
    assert await p.page.locator("#stat-total").inner_text() == f"{expected:,}"
    assert f"category={category}" in p.page.url  # the link holds the state

    months = await p.page.evaluate("window.borderwatch.state.months")
    await p.page.locator("#month-slider").fill(str(months.index(month)))
    await wait_until(p.page, f"window.borderwatch.state.filters.from === '{month}'")
    await p.settled()
    start, end = _month_bounds(month)
    expected_month = await served.scalar(
        "SELECT count(*) FROM incident WHERE deleted_at IS NULL AND category = :c"
        " AND occurred_at >= :a AND occurred_at < :b",
        c=category, a=start, b=end,
    )  # fmt: skip
    assert 0 < expected_month < expected
    assert (await p.rendered())["incidents"] == expected_month
    # the API, called directly with the same filters, agrees
    stats = await served.api(
        "/analysis/stats", group_by="category", category=category,
        datetime=f"{start.isoformat()}/{(end - timedelta(microseconds=1)).isoformat()}",
    )  # fmt: skip
    assert stats["total"] == expected_month
    assert f"from={month}" in p.page.url and f"to={month}" in p.page.url

    # ▶ steps to the next month (with the same category) and pauses on request
    following = months[(months.index(month) + 1) % len(months)]
    await p.page.locator("#play").click()
    await wait_until(p.page, f"window.borderwatch.state.filters.from === '{following}'")
    await p.page.locator("#play").click()
    assert await p.page.locator("#play").get_attribute("aria-label") == msg("time.play")
    await p.settled()
    assert await p.page.evaluate("window.borderwatch.state.filters.to") == following
    start2, end2 = _month_bounds(following)
    expected_following = await served.scalar(
        "SELECT count(*) FROM incident WHERE deleted_at IS NULL AND category = :c"
        " AND occurred_at >= :a AND occurred_at < :b",
        c=category, a=start2, b=end2,
    )  # fmt: skip
    assert (await p.rendered())["incidents"] == expected_following
    await p.page.locator("#month-slider").fill(str(months.index(month)))
    await wait_until(p.page, f"window.borderwatch.state.filters.from === '{month}'")
    await p.settled()

    # the link restores the same view in a new page
    query = p.page.url[len(served.base) + 1 :]
    again = await _open(browser, served, served.admin, query=query)
    assert await again.page.locator(f"#f-categories input[value='{category}']").is_checked()
    assert (await again.rendered())["incidents"] == expected_month
    assert p.errors == [] and again.errors == []
    await p.page.context.close()
    await again.page.context.close()


async def test_cooperation_area_filters_every_panel(browser: Any, served: Served) -> None:
    """A cooperation area chosen in the side bar narrows the map and the statistics to its
    members' incidents (the API's answer, from the database), and the link keeps it."""
    province = await served.scalar(
        "SELECT province_code FROM incident WHERE province_code IS NOT NULL"
        " GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
    )
    headers = {"Authorization": f"Bearer {served.admin}"}
    async with httpx.AsyncClient(base_url=served.base, headers=headers, timeout=30) as c:
        r = await c.post(
            "/cooperation-areas",
            json={"name": "Phối hợp thử · test area", "lead_unit": "Công an tỉnh",
                  "members": [{"kind": "jurisdiction", "code": province}]},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        area = r.json()["id"]
    expected = await served.scalar(
        "SELECT count(*) FROM incident WHERE deleted_at IS NULL AND :c = ANY(jurisdiction_path)",
        c=province,
    )
    assert 0 < expected < COUNT
    p = await _open(browser, served, served.admin)
    await _fit_incidents(p, served)
    await p.page.locator("#f-cooperation").select_option(str(area))
    await wait_until(p.page, f"window.borderwatch.state.filters.cooperation === {area}")
    await p.settled()
    # the map frames the area (its box from the API) and draws exactly its incidents
    box = (await served.api(f"/cooperation-areas/{area}"))["bbox"]
    view = await p.page.evaluate("window.borderwatch.map.getBounds().toArray().flat()")
    assert view[0] <= box[0] and view[1] <= box[1] and view[2] >= box[2] and view[3] >= box[3]
    assert (view[2] - view[0]) < 3 * (box[2] - box[0]) + 1  # framed, not the whole country
    assert (await p.rendered())["incidents"] == expected
    assert await p.page.locator("#stat-total").inner_text() == f"{expected:,}"
    assert "Công an tỉnh" in await p.page.locator("#cooperation-note").inner_text()
    assert f"cooperation={area}" in p.page.url
    assert any(f"cooperation={area}" in u for u in p.requests if "/tiles/incidents/" in u)
    query = p.page.url[len(served.base) + 1 :]
    again = await _open(browser, served, served.admin, query=query)
    assert await again.page.locator("#f-cooperation").input_value() == str(area)
    assert (await again.rendered())["incidents"] == expected
    assert p.errors == [] and again.errors == []
    await p.page.context.close()
    await again.page.context.close()


async def test_clicking_a_province_highlights_exactly_its_neighbours(
    browser: Any, served: Served
) -> None:
    # An Giang as it was before 1 July 2025: the link opens that map
    p = await _open(browser, served, served.admin, query="?era=before")
    assert await p.page.locator("#era input[value='before']").is_checked()
    for layer in ("incidents", "posts"):  # nothing drawn above the province where we click
        await p.page.locator(f"#layer-toggles input[data-layer='{layer}']").uncheck()
    code = "VN-44"
    point = await served.scalar(
        "SELECT json_build_array(ST_X(pt), ST_Y(pt)) FROM (SELECT ST_PointOnSurface(geom) AS pt"
        " FROM jurisdiction WHERE code = :c ORDER BY valid_from DESC NULLS LAST LIMIT 1) s",
        c=code,
    )
    await p.page.evaluate(
        f"window.borderwatch.map.jumpTo({{center: [{point[0]}, {point[1]}], zoom: 7}})"
    )
    await p.settled()
    await p.click_map(point[0], point[1])
    await wait_until(p.page, f"window.borderwatch.state.selected === '{code}'")
    await p.settled()

    api = await served.api(f"/jurisdictions/{code}/neighbours")
    expected = sorted(f["properties"]["code"] for f in api["features"])
    assert len(expected) >= 2
    assert sorted(await p.page.evaluate("window.borderwatch.state.neighbours")) == expected
    drawn = await p.page.evaluate(
        "[...new Set(window.borderwatch.map.queryRenderedFeatures({layers: ['neighbour-fill']})"
        ".map((f) => f.properties.code))].sort()"
    )
    assert drawn == expected
    selected = await p.page.evaluate(
        "[...new Set(window.borderwatch.map.queryRenderedFeatures({layers: ['selected-fill']})"
        ".map((f) => f.properties.code))]"
    )
    assert selected == [code]
    rows = await p.page.locator("#neighbour-table tbody tr").evaluate_all(
        "rs => rs.map(r => r.dataset.code)"
    )
    assert rows == [f["properties"]["code"] for f in api["features"]]  # longest shared line first
    counts = await p.page.locator("#neighbour-table tbody tr td:nth-child(3)").all_inner_texts()
    assert counts == [str(f["properties"]["incident_count"]) for f in api["features"]]
    # the shared boundaries light up, each with the count of incidents within 5 km of it
    near = await p.page.locator("#neighbour-table tbody tr td:nth-child(4)").all_inner_texts()
    zones = [await served.api(f"/jurisdictions/{code}/shared-zone/{other}", km=5) for other in rows]
    assert near == [str(z["numberMatched"]) for z in zones]
    assert any(z["numberMatched"] > 0 for z in zones)
    assert [z["numberReturned"] for z in zones] == [z["numberMatched"] for z in zones]
    badges = await p.page.locator(".shared-badge").evaluate_all(
        "bs => bs.map(b => [b.dataset.code, b.textContent])"
    )
    assert sorted(badges) == sorted([z["b"], str(z["numberMatched"])] for z in zones)
    lit = await p.page.evaluate("window.borderwatch.map.querySourceFeatures('shared').length")
    assert lit >= len(zones)
    assert f"province={code}" in p.page.url
    assert p.errors == []
    await p.page.context.close()


def _codes(fc: dict[str, Any]) -> list[str]:
    return sorted(f["properties"]["code"] for f in fc["features"])


def _boundary_tiles(requests: list[str]) -> list[str]:
    return [
        u for u in requests if "/tiles/jurisdictions/" in u and u.split("?")[0].endswith(".mvt")
    ]


async def test_era_control_sets_the_day_of_provinces_and_boundary_tiles(
    browser: Any, served: Served
) -> None:
    p = await _open(browser, served, served.admin)
    await p.page.evaluate("window.borderwatch.map.jumpTo({center: [105.5, 10.5], zoom: 6})")
    await p.settled()
    provinces = "window.borderwatch.state.provinces"
    # today (the default): the 34 provinces, tiles of today (no `at`: the server's today)
    today = _codes(await served.api("/jurisdictions", level="province"))
    assert len(today) == 34
    assert sorted(await p.page.evaluate(provinces)) == today
    assert await p.page.locator("#era input[value='today']").is_checked()
    tiles = _boundary_tiles(p.requests)
    assert tiles and not any("at=" in u for u in tiles)

    cases = [
        ("before", None, "2025-06-30", "era=before"),
        ("date", "2020-01-01", "2020-01-01", "era=2020-01-01"),
        ("date", "2025-07-01", "2025-07-01", "era=2025-07-01"),
    ]
    for mode, day, at, link in cases:
        p.requests.clear()
        await p.page.locator(f"#era input[value='{mode}']").check()
        if day:
            await p.page.locator("#era-date").fill(day)
        await wait_until(p.page, f"window.location.search.includes('{link}')")
        expected = _codes(await served.api("/jurisdictions", level="province", at=at))
        await wait_until(p.page, f"{provinces}.length === {len(expected)}")
        await p.settled()
        assert sorted(await p.page.evaluate(provinces)) == expected, mode
        assert len(expected) == (34 if at >= "2025-07-01" else 63)
        # the province list and the boundary tiles were asked for that day
        asked = [u for u in p.requests if "/jurisdictions?" in u and "level=province" in u]
        assert asked and all(f"at={at}" in u for u in asked), asked
        tiles = _boundary_tiles(p.requests)
        assert tiles and all(f"at={at}" in u for u in tiles), tiles
        drawn = await p.page.evaluate(
            "[...new Set(window.borderwatch.map.querySourceFeatures('boundaries',"
            " {sourceLayer: 'jurisdictions', filter: ['==', ['get', 'level'], 'province']})"
            ".filter((f) => f.properties.country === 'VNM').map((f) => f.properties.code))]"
        )
        assert drawn and set(drawn) <= set(expected), mode

    # back to today; the incidents did not change with the map
    p.requests.clear()
    await p.page.locator("#era input[value='today']").check()
    await wait_until(p.page, f"{provinces}.length === 34")
    await p.settled()
    assert sorted(await p.page.evaluate(provinces)) == today
    tiles = _boundary_tiles(p.requests)
    assert tiles and not any("at=" in u for u in tiles)
    assert "era=" not in p.page.url
    assert not [u for u in p.requests if "/tiles/incidents/" in u]
    assert p.errors == []
    assert await p.page.evaluate("window.__csp") == []
    await p.page.context.close()

    # a link with a day opens that map; a day that does not exist is today's map
    again = await _open(browser, served, served.admin, query="?era=2020-01-01")
    assert await again.page.locator("#era input[value='date']").is_checked()
    assert await again.page.locator("#era-date").input_value() == "2020-01-01"
    old = _codes(await served.api("/jurisdictions", level="province", at="2020-01-01"))
    assert sorted(await again.page.evaluate(provinces)) == old
    assert _boundary_tiles(again.requests) and all(
        "at=2020-01-01" in u for u in _boundary_tiles(again.requests)
    )
    await again.page.context.close()
    wrong = await _open(browser, served, served.admin, query="?era=2025-02-30")
    assert await wrong.page.locator("#era input[value='today']").is_checked()
    assert sorted(await wrong.page.evaluate(provinces)) == today
    assert again.errors == [] and wrong.errors == []
    await wrong.page.context.close()


HA_TIEN = (104.469, 10.4029)  # Phường Hà Tiên's official centroid


async def test_communes_from_zoom_9_dashed_as_approximate(
    browser: Any, served: Served, tmp_path: Path
) -> None:
    p = await _open(browser, served, served.admin)
    lon, lat = HA_TIEN
    communes = "['commune-line', 'commune-line-approximate']"
    rendered = (
        f"window.borderwatch.map.queryRenderedFeatures({{layers: {communes}}})"
        ".map((f) => [f.layer.id, f.properties.code, f.properties.geometry_approximate])"
    )
    await p.page.evaluate(f"window.borderwatch.map.jumpTo({{center: [{lon}, {lat}], zoom: 8}})")
    await p.settled()
    assert await p.page.evaluate(rendered) == []
    assert await p.page.locator(".map-label-commune").count() == 0

    await p.page.evaluate(f"window.borderwatch.map.jumpTo({{center: [{lon}, {lat}], zoom: 10}})")
    await p.settled()
    ha_tien = await served.scalar(
        "SELECT json_build_array(code, name_local) FROM jurisdiction WHERE level = 'commune'"
        " AND ST_Intersects(geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))",
        lon=lon, lat=lat,
    )  # fmt: skip
    drawn = await p.page.evaluate(rendered)
    assert ha_tien[0] in {code for _, code, _ in drawn}
    # every commune polygon is approximate: all drawn dashed, none solid
    assert {(layer, approx) for layer, _, approx in drawn} == {("commune-line-approximate", True)}
    dash = await p.page.evaluate(
        "window.borderwatch.map.getPaintProperty('commune-line-approximate', 'line-dasharray')"
    )
    assert dash and len(dash) == 2
    await wait_until(p.page, "document.querySelectorAll('.map-label-commune').length > 0")
    names = await p.page.locator(".map-label-commune").all_text_contents()
    assert ha_tien[1] in names
    await p.page.screenshot(path=str(tmp_path / "communes.png"))  # as a person sees it
    legend = await p.page.locator("#legend").inner_text()
    assert msg("legend.approximate") in legend and msg("legend.communesFrom", zoom=9) in legend
    # the map before 1 July 2025 had no communes
    await p.page.locator("#era input[value='before']").check()
    await wait_until(p.page, "window.borderwatch.state.provinces.length === 63")
    await p.settled()
    assert await p.page.evaluate(rendered) == []
    await wait_until(p.page, "document.querySelectorAll('.map-label-commune').length === 0")
    assert p.errors == []
    assert await p.page.evaluate("window.__csp") == []
    await p.page.context.close()


async def test_place_search_flies_to_ha_tien(browser: Any, served: Served) -> None:
    p = await _open(browser, served, served.admin)
    found = await served.api("/places", q="ha tien")
    assert found["features"]
    first = found["features"][0]
    assert first["properties"]["name_local"] == "Phường Hà Tiên"
    w, s, e, n = first["bbox"]
    await p.page.locator("#place-q").fill("ha tien")
    await p.page.locator("#place-search button[type='submit']").click()
    await wait_until(p.page, "document.querySelectorAll('#place-results li button').length > 0")
    await p.settled()
    centre = await p.page.evaluate(
        "(() => { const c = window.borderwatch.map.getCenter(); return [c.lng, c.lat]; })()"
    )
    assert w <= centre[0] <= e and s <= centre[1] <= n, (centre, first["bbox"])
    assert await p.page.evaluate("window.borderwatch.map.getZoom()") >= 9
    listed = await p.page.locator("#place-results li button").evaluate_all(
        "bs => bs.map((b) => b.dataset.code)"
    )
    assert listed == [f["properties"]["code"] for f in found["features"]][: len(listed)]
    # a former province: listed with where it went; picking it flies there too
    await p.page.locator("#place-q").fill("kien giang")
    await p.page.locator("#place-search button[type='submit']").click()
    await wait_until(
        p.page,
        "[...document.querySelectorAll('#place-results li')].some((l) => l.textContent.includes('1 Jul 2025'))",
    )
    await p.settled()
    assert p.errors == []
    assert await p.page.evaluate("window.__csp") == []
    await p.page.context.close()


async def test_nearby_tool_lists_what_the_api_returns_in_order(
    browser: Any, served: Served
) -> None:
    p = await _open(browser, served, served.admin)
    # the busiest spot: the incident with the most others within 50 km
    lon, lat = await served.scalar(
        "SELECT json_build_array(ST_X(a.geom), ST_Y(a.geom)) FROM incident a JOIN incident b"
        " ON ST_DWithin(a.geom::geography, b.geom::geography, 50000)"
        " GROUP BY a.id, a.geom ORDER BY count(*) DESC, a.id LIMIT 1"
    )
    await p.page.evaluate(f"window.borderwatch.map.jumpTo({{center: [{lon}, {lat}], zoom: 8}})")
    await p.settled()
    await p.page.select_option("#nearby-radius", "50000")
    await p.page.locator("#nearby-tool").click()
    await p.click_map(lon, lat)
    await wait_until(
        p.page, "window.borderwatch.state.nearby && window.borderwatch.state.nearby.ids"
    )
    await p.settled()
    at = await p.page.evaluate("window.borderwatch.state.nearby")
    assert abs(at["lon"] - lon) < 0.01 and abs(at["lat"] - lat) < 0.01
    api = await served.api(
        "/incidents/nearby",
        lat=f"{at['lat']:.6f}",
        lon=f"{at['lon']:.6f}",
        radius_m=50000,
        limit=50,
    )
    expected = [f["id"] for f in api["features"]]
    assert len(expected) >= 3
    listed = await p.page.locator("#nearby-list li").evaluate_all("ls => ls.map(l => l.dataset.id)")
    assert listed == expected
    # a listed incident opens the detail panel with its derived fields and history
    await p.page.locator("#nearby-list li").first.click()
    await wait_until(p.page, "window.borderwatch.state.incident !== null")
    await p.settled()
    detail = await p.page.locator("#detail").inner_text()
    first = api["features"][0]["properties"]
    assert await _post_name(served, first["nearest_post"]) in detail
    assert msg("incident.history") in detail and "v1 " in detail
    assert p.errors == []
    await p.page.context.close()


# MapLibre's own cache of WebGL programs (Painter.cache; maplibre-gl is pinned in package.json)
PROGRAMS = "Object.keys(window.borderwatch.map.painter.cache).sort()"


@pytest.mark.parametrize("query", ["", "?at=106.70,10.78,11"])
async def test_warm_up_makes_only_the_programs_the_view_draws(
    browser: Any, served: Served, query: str
) -> None:
    """The programs made early (mapview.js, warmUpPrograms) are those the opened view makes
    without them: none more but the border posts' (made for every view, as posts lie in most),
    and the warm-up's layers are gone once the page has settled, its drawing unseen."""
    made = {}
    for warmup in ("on", "off"):
        sep = "&" if query else "?"
        p = await _open(browser, served, served.admin, query=query + f"{sep}warmup={warmup}")
        made[warmup] = set(await p.page.evaluate(PROGRAMS))
        style = await p.page.evaluate(
            "(() => { const m = window.borderwatch.map; return {layers: m.getStyle().layers"
            ".map((l) => l.id).filter((id) => id.startsWith('warmup')), source: Boolean("
            "m.getSource('warmup'))}; })()"
        )
        assert style == {"layers": [], "source": False}
        assert p.errors == []
        await p.page.context.close()
    posts = {k for k in made["on"] if k.startswith("circle/a_circle-stroke-color/u_circle-blur")}
    assert made["on"] - posts == made["off"] - posts
    # one program for the fills (no antialiasing outline pass), one for every circle layer
    # whose paint depends on the data the same way (aggregates and single incidents)
    assert not any(k.startswith("fillOutline") for k in made["on"])
    assert len([k for k in made["on"] if k.startswith("circle/a_circle-color")]) == 1


TILE = re.compile(r"/tiles/(incidents|jurisdictions|hotspots)/\d+/\d+/\d+\.mvt")
# the national view; the south at z6 with the hot spots on (their tiles start at z5)
OPENINGS = [
    ("", ["incidents", "boundaries"]),
    (
        "?at=106.7,10.8,6&layers=incidents,density,hotspots,boundaries",
        ["incidents", "hotspots", "boundaries"],
    ),
]


@pytest.mark.parametrize(("query", "early"), OPENINGS)
async def test_opening_view_asks_its_tiles_before_the_reference_data(
    browser: Any, served: Served, query: str, early: list[str]
) -> None:
    """The opening view's incident and boundary tiles are asked as soon as the map's style and
    their URLs are there (mapview.js, earlyTiles), not once the reference data has come: with
    /borders held back, they are asked and arrive while nothing but the early layers is on the
    map. Let through, the real layers draw the incidents from those tiles, none asked twice."""
    p = await _new_page(browser)
    page, context = p.page, p.page.context
    release = asyncio.Event()

    async def hold(route: Any) -> None:
        await asyncio.wait_for(release.wait(), WAIT_MS / 1000)
        await route.continue_()

    try:
        await page.route(re.compile(r"/borders(\?|$)"), hold)
        done: list[str] = []
        page.on("requestfinished", lambda r: done.append(r.url) if TILE.search(r.url) else None)
        stats: list[str] = []
        page.on(
            "request", lambda r: stats.append(r.url) if "/analysis/stats?bbox=" in r.url else None
        )
        await page.goto(f"{served.base}/{query}#key={served.admin}")
        deadline = asyncio.get_running_loop().time() + WAIT_MS / 1000
        wanted = {"boundaries": "jurisdictions"}
        while {TILE.search(u)[1] for u in done} != {wanted.get(x, x) for x in early}:  # type: ignore[index]
            assert asyncio.get_running_loop().time() < deadline, done
            await asyncio.sleep(0.05)
        layers = await page.evaluate(
            "window.borderwatch.map.getStyle().layers.map((l) => l.id).filter((id) => !id.startsWith('warmup'))"
        )
        assert layers == ["sea", *(f"early-{x}" for x in early)]
        release.set()
        await page.evaluate(f"window.borderwatch.settled({WAIT_MS})")
        asked = [TILE.search(u)[0] for u in done]  # type: ignore[index]
        assert len(asked) == len(set(asked)), asked
        # the view's statistics asked once: the map had its final size when it was made (the
        # table bar's room taken first), so no resize moved the view after the panels asked
        assert len([u for u in stats if "group_by=category" in u]) == 1, stats
        layers = await page.evaluate("window.borderwatch.map.getStyle().layers.map((l) => l.id)")
        assert "incident-clusters" in layers and not [x for x in layers if x.startswith("early-")]
        rendered: dict[str, int] = await page.evaluate("window.borderwatch.renderedIncidents()")
        if not query:  # the national view holds every incident
            assert rendered["incidents"] == await served.scalar(
                "SELECT count(*) FROM incident WHERE deleted_at IS NULL"
            )
        else:
            assert "hotspot-fill" in layers and rendered["incidents"] > 0
        assert p.errors == []
    finally:
        release.set()  # a failed look leaves no request held
        await context.close()


async def test_viewer_sees_aggregates_only(browser: Any, served: Served) -> None:
    p = await _open(browser, served, served.viewer)
    await _fit_incidents(p, served)
    assert await p.page.evaluate("window.borderwatch.map.getLayer('incident-points') === undefined")
    assert await p.page.locator("#layer-toggles input[data-layer='incidents']").count() == 0
    assert await p.page.locator("#layer-toggles input[data-layer='density']").is_checked()
    features = await p.page.evaluate(
        "window.borderwatch.map.queryRenderedFeatures({layers: ['incident-clusters']}).map(f => f.properties.cluster)"
    )
    assert features and all(features)
    rendered = await p.rendered()
    assert rendered["points"] == 0 and rendered["incidents"] == COUNT
    assert await p.page.locator("#nearby-tool").is_disabled()
    assert await p.page.locator("[data-export='csv']").is_disabled()
    # nothing incident-level was asked for (which would have been refused with 403)
    assert not [u for u in p.requests if "/incidents" in u and "/tiles/" not in u]
    assert await p.page.locator("#whoami").inner_text() == "dash viewer · viewer · national"
    assert p.errors == []
    await p.page.context.close()


async def test_officer_clicks_an_incident_for_its_details(browser: Any, served: Served) -> None:
    """Officers read incidents (points, details, history, nearby) but may not export."""
    async with sessionmaker(served.engine)() as session, session.begin():
        _, key = await auth_service.create_principal(
            session=session, name="dash officer", role="officer", jurisdiction_code=None,
            unit="unit 7", actor="test",
        )  # fmt: skip
    p = await _open(browser, served, key)
    assert await p.page.locator("[data-export='geojson']").is_disabled()
    assert not await p.page.locator("#nearby-tool").is_disabled()
    ident, lon, lat = await served.scalar(
        "SELECT json_build_array(a.id::text, ST_X(a.geom), ST_Y(a.geom)) FROM incident a"
        " WHERE NOT EXISTS (SELECT 1 FROM incident b WHERE b.id <> a.id"
        " AND ST_DWithin(a.geom::geography, b.geom::geography, 3000)) ORDER BY a.id LIMIT 1"
    )
    await p.page.evaluate(f"window.borderwatch.map.jumpTo({{center: [{lon}, {lat}], zoom: 12}})")
    await p.settled()
    assert (await p.rendered())["points"] >= 1
    await p.click_map(lon, lat)
    await wait_until(
        p.page,
        f"window.borderwatch.state.incident && window.borderwatch.state.incident.id === '{ident}'",
    )
    await p.settled()
    api = await served.api(f"/incidents/{ident}")
    detail = await p.page.locator("#detail").inner_text()
    assert ident in detail
    assert f"{api['properties']['border_distance_km']:.1f} km" in detail, detail
    assert await _post_name(served, api["properties"]["nearest_post"]) in detail
    history = await served.api(f"/incidents/{ident}/history")
    items = await p.page.locator("#detail .history li").all_inner_texts()
    assert len(items) == len(history["entries"]) >= 1
    assert p.errors == []
    await p.page.context.close()


async def test_tablet_width_keeps_map_and_panels_usable(browser: Any, served: Served) -> None:
    p = await _open(browser, served, served.admin, width=768, height=1024)
    map_box = await p.page.locator("#map canvas").bounding_box()
    stats_box = await p.page.locator("#stats").bounding_box()
    assert map_box["width"] == 768 and map_box["height"] >= 360
    assert stats_box["y"] >= map_box["y"] + map_box["height"] - 1  # below the map, not over it
    assert p.errors == []
    await p.page.context.close()


async def test_a_refused_request_shows_a_message(browser: Any, served: Served) -> None:
    """The key is revoked while the page is open: the next request fails visibly."""
    _, key = await _new_admin(served)
    p = await _open(browser, served, key)
    principal_id = await served.scalar("SELECT id FROM principal WHERE name = 'dash admin 2'")
    async with sessionmaker(served.engine)() as session, session.begin():
        await auth_service.revoke(session=session, principal_id=principal_id, actor="test")
    await p.page.locator("#f-severity").select_option("3")
    message = p.page.locator("#messages .message")
    await message.first.wait_for(state="visible")
    assert "the API key is malformed, unknown or revoked" in await message.first.inner_text()
    assert await p.page.locator("#signin").is_visible()
    await p.page.context.close()


async def test_an_unknown_key_opens_the_sign_in_box(browser: Any, served: Served) -> None:
    """A link with a key the server does not know: /me's refusal is told in the sign-in box;
    no other message, no error in the page, nothing asked with the key after /me, and the key
    is forgotten."""
    p = await _new_page(browser)
    page, context = p.page, p.page.context
    refused: list[str] = []
    page.on("response", lambda r: refused.append(r.url) if r.status == 401 else None)
    try:
        await page.goto(f"{served.base}/?at=106.7,10.8,11#key=bw_not_a_key")
        await page.locator("#signin").wait_for(state="visible", timeout=WAIT_MS)
        await page.wait_for_load_state("networkidle", timeout=WAIT_MS)
        reason = await page.locator("#signin-reason").inner_text()
        assert "the API key is malformed, unknown or revoked" in reason
        assert [u.rsplit("/", 1)[-1] for u in refused] == ["me"], refused
        assert await page.locator("#messages .message").count() == 0
        assert await page.evaluate("sessionStorage.length") == 0
        # the browser's own line for the refused /me is the only error
        assert [e for e in p.errors if "status of 401" not in e] == [], p.errors
    finally:
        await context.close()


async def _new_admin(served: Served) -> tuple[Any, str]:
    async with sessionmaker(served.engine)() as session, session.begin():
        return await auth_service.create_principal(
            session=session, name="dash admin 2", role="admin", jurisdiction_code=None,
            unit=None, actor="test",
        )  # fmt: skip


async def test_static_files_config_and_errors(engine: AsyncEngine, session: Any) -> None:
    """The page, its modules and MapLibre are served without a key; a missing file is a
    problem+json 404; the base-map setting reaches the page's config."""
    settings = Settings(
        environment="test",
        database_url=None,
        basemap_url="https://tiles.example.org/{z}/{x}/{y}.png",
        basemap_attribution="© example",
    )
    async with app_client(engine, session, settings, None) as c:
        page = await c.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<script src="/vendor/maplibre-gl/maplibre-gl.js">' in page.text
        js = await c.get("/static/js/main.js")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]
        lib = await c.get("/vendor/maplibre-gl/maplibre-gl.js")
        assert lib.status_code == 200 and lib.content == MAPLIBRE.read_bytes()
        css = await c.get("/vendor/maplibre-gl/maplibre-gl.css")
        assert css.status_code == 200
        missing = await c.get("/static/js/nope.js")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        config = await c.get("/dashboard/config.json")
        assert config.json() == {
            "basemap_url": "https://tiles.example.org/{z}/{x}/{y}.png",
            "basemap_attribution": "© example",
            "home_country": "VNM",
        }
        # the page's policy lets the base map's images in, and nothing else from outside
        csp = page.headers["content-security-policy"]
        assert "img-src 'self' data: blob: https://tiles.example.org;" in csp
        assert "script-src 'self';" in csp and "unsafe" not in csp
    async with app_client(engine, session, Settings(environment="test"), None) as c:
        assert (await c.get("/dashboard/config.json")).json()["basemap_url"] is None
        page = await c.get("/")
        assert "https:" not in page.headers["content-security-policy"]


async def test_security_headers_on_every_kind_of_response(
    engine: AsyncEngine, session: Any, settings: Settings
) -> None:
    from conftest import make_key

    key = await make_key(session, "admin")
    async with app_client(engine, session, settings, key) as c:
        responses = {
            "page": await c.get("/"),
            "docs": await c.get("/docs"),
            "ogc html": await c.get("/ogc", params={"f": "html"}),
            "json": await c.get("/me"),
            "geojson": await c.get("/borders"),
            "tile": await c.get("/tiles/borders/0/0/0.mvt"),
            "static": await c.get("/static/js/main.js"),
            "problem": await c.get("/incidents/not-an-id"),
            "unauthorised": await c.get("/me", headers={"Authorization": "Bearer nope"}),
            "too large": await c.post("/incidents", content=b"x" * (settings.max_body_bytes + 1)),
        }
    for name, r in responses.items():
        assert r.headers["x-content-type-options"] == "nosniff", name
        assert r.headers["x-frame-options"] == "DENY", name
        assert r.headers["referrer-policy"] == "no-referrer", name
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, name
        if r.headers["content-type"].startswith("text/html"):
            assert "default-src 'none'; script-src 'self'; style-src 'self';" in csp, name
        else:  # data: nothing in it may run
            assert csp.startswith("default-src 'none'; frame-ancestors"), name
    assert responses["too large"].status_code == 413


@pytest.mark.parametrize(
    "url", ["tiles.example.org/{z}/{x}/{y}.png", "https://tiles.example.org/{z}/{x}.png"]
)
def test_basemap_url_must_be_a_tile_template(url: str) -> None:
    with pytest.raises(ValueError, match="BORDERWATCH_BASEMAP_URL"):
        Settings(environment="test", basemap_url=url)


# every text node a person can see and every attribute a person reads (title, aria-label,
# placeholder, alt), trimmed; MapLibre's own controls included
SHOWN_TEXTS = """() => {
  const out = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = n.textContent.trim();
    const parent = n.parentElement;
    if (!text || !parent || parent.closest('script, style, [hidden]')) continue;
    if (parent.getClientRects().length === 0) continue;
    out.add(text);
  }
  for (const el of document.querySelectorAll('[title], [aria-label], [placeholder], [alt]')) {
    for (const a of ['title', 'aria-label', 'placeholder', 'alt']) {
      const v = (el.getAttribute(a) || '').trim();
      if (v) out.add(v);
    }
  }
  out.add(document.title.trim());
  return [...out];
}"""


def _other_language(shown: list[str], lang: str) -> list[tuple[str, str]]:
    """The shown texts that are a message of the other language (one whose text differs from
    this language's): compared whole, after trimming; a {placeholder} matches any text."""
    other = "en" if lang == "vi" else "vi"
    hits = []
    for key, entry in catalogue().items():
        mine = {t.strip() for t in _forms(entry[lang])}
        for theirs in (t.strip() for t in _forms(entry[other])):
            if theirs in mine:
                continue  # the same in both languages (a name, a number format)
            parts = re.split(r"\{\w+\}", theirs)
            pattern = re.compile(".+?".join(re.escape(p) for p in parts))
            hits += [(key, s) for s in shown if pattern.fullmatch(s)]
    return hits


def _forms(value: Any) -> list[str]:
    return [str(v) for v in value.values()] if isinstance(value, dict) else [str(value)]


async def _number_and_share(p: Page) -> tuple[str, str, str]:
    """1234 and 0.125 as the page's language writes them, and the clearance rate shown."""
    formatted: list[str] = await p.page.evaluate(
        "import('/static/js/i18n.js').then((m) => [m.number(1234), m.percent(0.125)])"
    )
    rate = await p.page.locator("#stat-clearance").inner_text()
    return formatted[0], formatted[1], rate


async def test_the_page_in_vietnamese_or_english_remembered(
    browser: Any, served: Served, tmp_path: Path
) -> None:
    """A browser in Vietnamese gets the page in Vietnamese; the switch turns it into English
    (and back), remembered across a reload; no text of the other language shows either way;
    numbers and shares follow the language."""
    p = await _open(browser, served, served.admin, lang=None, locale="vi-VN")
    assert await p.page.evaluate("document.documentElement.lang") == "vi"
    # panels with words in them: layers with legends, the border-zone table, a province
    for layer in ("heatmap", "hotspots", "borderzone"):
        await p.page.locator(f"#layer-toggles input[data-layer='{layer}']").check()
    await p.settled()
    # and a province with its neighbours (An Giang, around Long Xuyên)
    await p.click_map(105.43, 10.39)
    await wait_until(p.page, "window.borderwatch.state.selected !== null")
    await p.settled()
    await p.page.locator("#neighbour-table").wait_for()
    await p.page.screenshot(path=str(tmp_path / "vi.png"))  # as a person sees it
    shown_vi = await p.page.evaluate(SHOWN_TEXTS)
    assert msg("filters.categories", "vi") in shown_vi and msg("layers.title", "vi") in shown_vi
    assert _other_language(shown_vi, "vi") == []
    number_vi, share_vi, rate_vi = await _number_and_share(p)
    assert number_vi == "1.234" and share_vi.replace("\xa0", " ") in ("12,5%", "12,5 %")
    assert "." not in rate_vi
    # the categories in Vietnamese, as /categories names them
    categories = await served.api("/categories")
    names_vi = {c["name_vi"] for c in categories["categories"] if c["active"]}
    shown_categories = await p.page.locator("#f-categories label").all_inner_texts()
    assert {c.strip() for c in shown_categories} == names_vi

    await p.page.locator("#lang-switch").click()
    await wait_until(
        p.page,
        "document.documentElement.lang === 'en' && window.borderwatch && window.borderwatch.state.me",
    )
    await p.settled()
    await p.page.locator("#neighbour-table").wait_for()  # the province stays selected
    assert (await p.page.locator("#lang-switch").inner_text()).strip() == msg("lang.switch", "en")
    await p.page.screenshot(path=str(tmp_path / "en.png"))
    shown_en = await p.page.evaluate(SHOWN_TEXTS)
    assert msg("filters.categories") in shown_en
    assert _other_language(shown_en, "en") == []
    number_en, share_en, rate_en = await _number_and_share(p)
    assert number_en == "1,234" and share_en == "12.5%"
    assert "," not in rate_en
    # the same clearance rate, written two ways
    assert rate_vi.replace(",", ".").replace("\xa0", "").replace(" ", "") == rate_en
    names_en = {c["name"] for c in categories["categories"] if c["active"]}
    shown_categories = await p.page.locator("#f-categories label").all_inner_texts()
    assert {c.strip() for c in shown_categories} == names_en

    # remembered: a reload stays in English (the browser still prefers Vietnamese), and the
    # page's requests ask the API for English
    asked: list[str | None] = []
    p.page.on(
        "request",
        lambda r: (
            asked.append(r.headers.get("accept-language")) if "/categories" in r.url else None
        ),
    )
    await p.page.reload()
    await wait_until(p.page, "window.borderwatch && window.borderwatch.state.me")
    await p.settled()
    assert await p.page.evaluate("document.documentElement.lang") == "en"
    assert await p.page.locator("#stats h2").text_content() == msg("stats.title")
    assert asked == ["en"]
    assert p.errors == []
    assert await p.page.evaluate("window.__csp") == []
    await p.page.context.close()


async def test_one_banner_while_the_server_is_out_of_reach(browser: Any, served: Served) -> None:
    """Tiles and requests that cannot reach the server make one banner, without addresses,
    instead of a message each; it goes once requests get through again (and while the browser
    says it is offline)."""
    p = await _open(browser, served, served.admin)
    banner = p.page.locator("#connection")
    assert not await banner.is_visible()
    # the server goes out of reach: every request fails at the network level
    await p.page.route("**/tiles/**", lambda route: route.abort("connectionrefused"))
    await p.page.route("**/analysis/**", lambda route: route.abort("connectionrefused"))
    for zoom in (7, 8):
        await p.page.evaluate(
            f"window.borderwatch.map.jumpTo({{center: [105.5, 10.5], zoom: {zoom}}})"
        )
        await asyncio.sleep(1)
    await banner.wait_for(state="visible")
    assert await banner.inner_text() == msg("connection.lost")
    messages = await p.page.locator("#messages .message").all_inner_texts()
    assert not [m for m in messages if "http" in m or "/tiles/" in m], messages
    assert len(messages) <= 1, messages
    # the browser also says it is offline: the banner stays
    await p.page.context.set_offline(True)
    assert await p.page.evaluate("navigator.onLine") is False
    assert await banner.is_visible()
    # back: the next answers hide it
    await p.page.context.set_offline(False)
    await p.page.unroute("**/tiles/**")
    await p.page.unroute("**/analysis/**")
    await p.page.evaluate("window.borderwatch.map.jumpTo({center: [106.5, 11.0], zoom: 9})")
    await banner.wait_for(state="hidden")
    await p.page.context.close()


async def test_legends_slider_glyphs_and_a_finished_export(
    browser: Any, served: Served, tmp_path: Path
) -> None:
    """A legend for each layer that is on and none for one that is off; "All months" brings
    the slider's handle back; ▶/⏸ are CSS shapes (no font glyph); an export says it is done."""
    p = await _open(browser, served, served.admin)
    legends = "[...document.querySelectorAll('#legend [data-legend]')].map((e) => e.dataset.legend)"

    async def on_layers() -> list[str]:
        shown: list[str] = await p.page.evaluate(
            "[...document.querySelectorAll('#layer-toggles input:checked')].map((e) => e.dataset.layer)"
        )
        return shown

    assert await p.page.evaluate(legends) == await on_layers()
    for layer in ("heatmap", "hotspots", "borderzone"):
        await p.page.locator(f"#layer-toggles input[data-layer='{layer}']").check()
    await p.page.locator("#layer-toggles input[data-layer='posts']").uncheck()
    assert await p.page.evaluate(legends) == await on_layers()
    assert "posts" not in await p.page.evaluate(legends)
    assert len(await on_layers()) == 5

    # the slider: a month, then "All months" puts the handle back at the start
    slider = p.page.locator("#month-slider")
    months = await p.page.evaluate("window.borderwatch.state.months")
    await slider.fill(str(len(months) - 1))
    await wait_until(p.page, f"window.borderwatch.state.filters.from === '{months[-1]}'")
    await p.page.locator("#all-months").click()
    await wait_until(p.page, "window.borderwatch.state.filters.from === null")
    assert await slider.input_value() == "0"
    assert await p.page.locator("#month-label").inner_text() == msg("time.allMonths")

    # ▶ and ⏸: shapes of CSS with a size, no text to draw with a font
    play = p.page.locator("#play")
    assert (await play.text_content() or "").strip() == ""
    box = await p.page.locator("#play .play-glyph").bounding_box()
    assert box and box["width"] >= 8 and box["height"] >= 8
    await play.click()
    box = await p.page.locator("#play .pause-glyph").bounding_box()
    assert box and box["width"] >= 8 and box["height"] >= 8
    assert await play.get_attribute("aria-label") == msg("time.pause")
    await play.click()
    await p.page.locator("#play .play-glyph").wait_for()
    await p.settled()

    # an export: the file arrives and the page says so
    async with p.page.expect_download() as download:
        await p.page.locator("[data-export='csv']").click()
    saved = tmp_path / (await download.value).suggested_filename
    await (await download.value).save_as(saved)
    assert saved.stat().st_size > 0
    done = msg("export.done").split("{filename}")[0]
    await wait_until(
        p.page,
        f"[...document.querySelectorAll('#messages .message')].some((m) => m.textContent.startsWith({json.dumps(done)}))",
    )
    assert saved.name in await p.page.locator("#messages").inner_text()
    assert p.errors == []
    await p.page.context.close()


AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


@pytest.mark.parametrize("lang", ["vi"])
async def test_no_serious_accessibility_violations(browser: Any, served: Served, lang: str) -> None:
    """axe-core over the dashboard with its panels open: no serious or critical violation."""
    p = await _open(browser, served, served.admin, lang=lang, bypass_csp=True)
    for layer in ("hotspots", "borderzone"):
        await p.page.locator(f"#layer-toggles input[data-layer='{layer}']").check()
    await p.settled()
    await p.page.add_script_tag(path=str(AXE))
    violations = await p.page.evaluate(
        """async () => {
          const r = await axe.run(document, { resultTypes: ['violations'] });
          return r.violations.filter((v) => ['serious', 'critical'].includes(v.impact))
            .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 4).map((n) => n.target.join(' ')).join(', ')}`);
        }"""
    )
    assert violations == [], "\n".join(violations)
    await p.page.context.close()
