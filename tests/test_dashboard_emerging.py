"""The emerging-hot-spot layer of the dashboard in a real browser (Debian's Chromium driven by
Playwright, as tests/test_dashboard.py): switched on from the layer list it asks for its tiles
(never before), draws the cells of GET /analysis/emerging-hotspots (the default cube: the last
24 complete months) with their categories, shows its legend with the Vietnamese category names
(English when the page is English), and a click on a cell opens a popup with its category,
trend and counts. Expected values come from the API called directly, never from the page."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from pyproj import Transformer
from sqlalchemy import text
from test_dashboard import (  # noqa: F401  (fixtures)
    CHROMIUM,
    MAPLIBRE,
    Served,
    _open,
    browser,
    catalogue,
    wait_until,
)
from test_emerging_hotspots import cell_centre

from app.analysis import emerging
from conftest import live_app, needs

pytestmark = [
    needs(CHROMIUM is not None, "chromium is not installed (make setup)"),
    needs(MAPLIBRE.exists(), "node_modules missing (make setup)"),
]

ICT = timezone(timedelta(hours=7))
UTM = Transformer.from_crs("EPSG:4326", "EPSG:32648", always_xy=True)
GEO = Transformer.from_crs("EPSG:32648", "EPSG:4326", always_xy=True)
# cell centres in An Giang, near the Cambodian border
GROWING = cell_centre(105.15, 10.63)  # more incidents every month
NEW = cell_centre(105.00, 10.55)  # incidents in the last complete month only


def last_months(n: int) -> list[datetime]:
    """The local starts of the last `n` complete months, oldest first (the default cube's)."""
    now = datetime.now(ICT)
    months = now.year * 12 + now.month - 1
    return [
        datetime((months - k) // 12, (months - k) % 12 + 1, 1, tzinfo=ICT) for k in range(n, 0, -1)
    ]


def near(rng: np.random.Generator, place: tuple[float, float], n: int, metres: float) -> Any:
    cx, cy = UTM.transform(*place)
    rad = metres * np.sqrt(rng.uniform(0, 1, n))
    ang = rng.uniform(0, 2 * math.pi, n)
    return GEO.transform(cx + rad * np.cos(ang), cy + rad * np.sin(ang))


PLANT = text(
    "INSERT INTO incident (category, severity, occurred_at, geom)"
    " SELECT 'smuggling', 3, t, ST_SetSRID(ST_MakePoint(x, y), 4326)"
    " FROM unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[]), CAST(:ts AS timestamptz[]))"
    " AS u(x, y, t)"
)


@pytest.fixture(scope="module")
async def served(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    """uvicorn over a database of its own: boundaries and planted clusters (committed)."""
    async with live_app(
        server_url, tmp_path_factory.mktemp("emerging") / "server.log", name="bw_emerging",
        principals={"emerging admin": "admin", "emerging viewer": "viewer"},
    ) as live:  # fmt: skip
        rng = np.random.default_rng(7)
        xs: list[float] = []
        ys: list[float] = []
        ts: list[datetime] = []
        months = last_months(24)
        plan = [(GROWING, 1000, [10 + 2 * k for k in range(24)]), (NEW, 1000, [0] * 23 + [40])]
        plan.append((GROWING, 30_000, [12] * 24))  # background over 30 km, every month
        for place, metres, per_month in plan:
            for start, n in zip(months, per_month, strict=True):
                if not n:
                    continue
                lon, lat = near(rng, place, n, metres)
                xs += lon.tolist()
                ys += lat.tolist()
                ts += [start + timedelta(minutes=int(m)) for m in rng.uniform(0, 27 * 1440, n)]
        async with live.engine.begin() as conn:
            await conn.execute(PLANT, {"xs": xs, "ys": ys, "ts": [t.astimezone(UTC) for t in ts]})
        await live.engine.dispose()
        admin, viewer = live.keys["emerging admin"], live.keys["emerging viewer"]
        yield Served(live.base, admin.key, viewer.key, admin.id, live.engine, live.log)


async def rendered_cells(page: Any) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = await page.evaluate(
        "window.borderwatch.map.queryRenderedFeatures({ layers: ['emerging-fill'] })"
        ".map((f) => f.properties)"
    )
    return cells


async def test_toggle_legend_cells_and_popup_in_vietnamese(browser: Any, served: Served) -> None:  # noqa: F811
    messages = catalogue()
    p = await _open(browser, served, served.admin, lang="vi", query="?at=105.1,10.62,9")
    toggle = p.page.locator('#layer-toggles input[data-layer="emerging"]')
    assert not await toggle.is_checked()
    label = p.page.locator(
        "#layer-toggles label", has=p.page.locator('input[data-layer="emerging"]')
    )
    assert (await label.inner_text()).strip() == messages["layer.emerging"]["vi"]
    assert not [u for u in p.requests if "/tiles/emerging-hotspots" in u]  # off: nothing asked
    assert await p.page.locator('[data-legend="emerging"]').count() == 0

    await toggle.check()
    await wait_until(p.page, "window.borderwatch.map.getLayer('emerging-fill')")
    await p.settled()
    assert [u for u in p.requests if "/tiles/emerging-hotspots/" in u]
    assert "layers=" in p.page.url and "emerging" in p.page.url.split("layers=")[1]

    # the legend: every category by its Vietnamese name (with its diacritics)
    legend = p.page.locator('[data-legend="emerging"]')
    text = await legend.inner_text()
    assert messages["legend.emergingTitle"]["vi"] in text
    for code, names in emerging.NAMES.items():
        assert names["vi"] in text, code
        assert names["en"] not in text, code
    swatches = await legend.locator(".legend-item").count()
    assert swatches == len(emerging.NAMES)

    # the cells drawn are the analysis's, with its categories
    fc = await served.api("/analysis/emerging-hotspots")
    by_id = {f["id"]: f["properties"] for f in fc["features"]}
    cells = await rendered_cells(p.page)
    assert cells
    for cell in cells:
        assert cell["category"] == by_id[cell["cell"]]["category"] != "no_pattern"
        assert cell["count"] == by_id[cell["cell"]]["count"]
    drawn = {c["category"] for c in cells}
    growing = cell_at(fc, GROWING)
    new = cell_at(fc, NEW)
    assert new["category"] == "new_hot_spot"
    assert growing["category"].endswith("_hot_spot") and growing["trend_z"] > 0
    assert {new["category"], growing["category"]} <= drawn
    # hot and cold cells look different: the layer's colour per category is the file's
    colours = await p.page.evaluate(
        "window.borderwatch.map.getPaintProperty('emerging-fill', 'fill-color')"
    )
    assert colours[0] == "match" and "new_hot_spot" in colours

    # a month on the slider: the incidents follow it, the emerging cells (no time filter) stay
    asked = len([u for u in p.requests if "/tiles/emerging-hotspots/" in u])
    months = await p.page.evaluate("window.borderwatch.state.months")
    await p.page.locator("#month-slider").fill(str(len(months) - 1))
    await wait_until(p.page, f"window.borderwatch.state.filters.from === '{months[-1]}'")
    await p.settled()
    assert len([u for u in p.requests if "/tiles/emerging-hotspots/" in u]) == asked
    template = await p.page.evaluate("window.borderwatch.map.getSource('emerging').tiles[0]")
    assert "datetime" not in template and "v=" in template
    assert await rendered_cells(p.page)

    # a click on the cell of the new cluster (the incidents off: a click on their aggregate
    # zooms in): its category, trend and counts
    await p.page.locator('#layer-toggles input[data-layer="incidents"]').uncheck()
    await p.settled()
    await p.click_map(*NEW)
    popup = p.page.locator(".maplibregl-popup .emerging-popup")
    await popup.wait_for(state="visible")
    assert await popup.get_attribute("data-category") == "new_hot_spot"
    body = await popup.inner_text()
    assert "Điểm nóng mới" in body
    assert f"{new['count']} sự việc" in body
    assert f"{new['counts'][-1]}" in body.split("tháng cuối:")[1]
    assert ("Xu hướng" in body) and ("điểm nóng: 1" in body)
    assert not [e for e in p.errors if "emerging" in e.lower() or "error" in e.lower()], p.errors
    await p.page.context.close()


async def test_english_legend_from_the_link(browser: Any, served: Served) -> None:  # noqa: F811
    p = await _open(
        browser, served, served.viewer, lang="en", query="?layers=emerging&at=105.1,10.62,9"
    )
    await wait_until(p.page, "window.borderwatch.map.getLayer('emerging-fill')")
    await p.settled()
    assert await p.page.locator('#layer-toggles input[data-layer="emerging"]').is_checked()
    text = await p.page.locator('[data-legend="emerging"]').inner_text()
    for names in emerging.NAMES.values():
        assert names["en"] in text
    cells = await rendered_cells(p.page)
    assert "new_hot_spot" in {c["category"] for c in cells}  # a viewer key sees the layer
    await p.click_map(*NEW)
    popup = p.page.locator(".maplibregl-popup .emerging-popup")
    await popup.wait_for(state="visible")
    assert "New hot spot" in await popup.inner_text()
    await p.page.context.close()


def cell_at(fc: dict[str, Any], place: tuple[float, float]) -> dict[str, Any]:
    """The properties of the analysis's cell holding a place (the nearest centre)."""
    best = min(
        fc["features"],
        key=lambda f: (
            (f["properties"]["centre"][0] - place[0]) ** 2
            + (f["properties"]["centre"][1] - place[1]) ** 2
        ),
    )
    props: dict[str, Any] = best["properties"]
    return props
