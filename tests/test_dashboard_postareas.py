"""The posts' areas of responsibility on the dashboard in a real browser (test_dashboard's
Chromium and served fixture database): off by default and nothing asked while off; switched on
it asks GET /border-posts/areas once, draws the areas the API returns (named as the API names
the posts), shows its toggle and legend in Vietnamese, and a click on an area names its post
(Vietnamese with its diacritics; English when the page is English). Expected values come from
the API and from PostGIS, never from the page."""

from __future__ import annotations

import json
from typing import Any

import test_dashboard
from test_dashboard import (
    Page,
    Served,
    _open,
    msg,
    pytestmark,  # noqa: F401  (skipped without Chromium or MapLibre, as test_dashboard)
    wait_until,
)

# test_dashboard's fixtures: the browser and the server over a fixture database
browser = test_dashboard.browser
served = test_dashboard.served

TOGGLE = '#layer-toggles input[data-layer="{}"]'


def area_requests(p: Page) -> list[str]:
    return [u for u in p.requests if "/border-posts/areas" in u]


async def rendered_areas(p: Page) -> list[dict[str, Any]]:
    areas: list[dict[str, Any]] = await p.page.evaluate(
        "window.borderwatch.map.queryRenderedFeatures({ layers: ['postarea-fill'] })"
        ".map((f) => f.properties)"
    )
    return areas


def vi_number(x: float) -> str:
    """A number as Vietnamese readers write it (one decimal at most): 5.336,4."""
    whole, _, tenth = f"{x:,.1f}".partition(".")
    return whole.replace(",", ".") + ("" if tenth == "0" else f",{tenth}")


async def largest_area(served: Served) -> tuple[str, float, float]:
    """The post with the largest area in force, and a point inside that area (PostGIS)."""
    row = await served.scalar(
        "SELECT json_build_array(code, ST_X(p), ST_Y(p)) FROM ("
        " SELECT code, ST_PointOnSurface(area) AS p FROM border_post"
        " WHERE area IS NOT NULL AND (valid_to IS NULL OR valid_to > CURRENT_DATE)"
        " ORDER BY ST_Area(geography(area)) DESC LIMIT 1) s"
    )
    code, lon, lat = json.loads(row) if isinstance(row, str) else row
    return str(code), float(lon), float(lat)


async def click_area(p: Page, lon: float, lat: float) -> Any:
    """Only the areas and the provinces under the click: fly there and click."""
    for layer in ("incidents", "posts"):
        toggle = p.page.locator(TOGGLE.format(layer))
        if await toggle.count() and await toggle.is_checked():
            await toggle.uncheck()
    await p.page.evaluate(f"window.borderwatch.map.jumpTo({{ center: [{lon}, {lat}], zoom: 9 }})")
    await p.settled()
    await p.click_map(lon, lat)
    popup = p.page.locator(".maplibregl-popup .postarea-popup")
    await popup.wait_for(state="visible")
    return popup


async def test_areas_layer_in_vietnamese(browser: Any, served: Served) -> None:
    p = await _open(browser, served, served.admin, lang="vi")
    toggle = p.page.locator(TOGGLE.format("postareas"))
    assert not await toggle.is_checked()  # off by default
    label = p.page.locator(
        "#layer-toggles label", has=p.page.locator('input[data-layer="postareas"]')
    )
    assert (await label.inner_text()).strip() == msg("layer.postareas", "vi")
    assert (await label.inner_text()).strip() == "Vùng phụ trách của đồn"
    assert area_requests(p) == []  # off: nothing asked
    assert await p.page.locator('[data-legend="postareas"]').count() == 0

    await toggle.check()
    await wait_until(p.page, "window.borderwatch.map.getLayer('postarea-fill')")
    await p.settled()
    assert len(area_requests(p)) == 1
    assert "postareas" in p.page.url.split("layers=")[1].split("&")[0].split(",")

    # the areas drawn are the API's, named as the API names their posts
    fc = await served.api("/border-posts/areas")
    by_code = {f["id"]: f["properties"] for f in fc["features"]}
    assert by_code, "the fixture's posts have generated areas"
    in_force = await served.scalar(
        "SELECT count(*) FROM border_post WHERE area IS NOT NULL"
        " AND (valid_to IS NULL OR valid_to > CURRENT_DATE)"
    )
    assert len(by_code) == in_force
    drawn = await rendered_areas(p)
    assert drawn
    for area in drawn:
        api = by_code[area["code"]]
        assert (area["name"], area["name_local"], area["kind"]) == (
            api["name"],
            api["name_local"],
            api["kind"],
        )
    # coloured by the post's kind, as the posts' rings
    fill = await p.page.evaluate(
        "window.borderwatch.map.getPaintProperty('postarea-fill', 'fill-color')"
    )
    ring = await p.page.evaluate(
        "window.borderwatch.map.getPaintProperty('post-circles', 'circle-stroke-color')"
    )
    assert fill == ring and fill[0] == "match"

    # the legend: the layer's Vietnamese name and the kinds
    legend = await p.page.locator('[data-legend="postareas"]').inner_text()
    assert msg("layer.postareas", "vi") in legend
    assert msg("post.border_gate", "vi") in legend and msg("legend.postareasNote", "vi") in legend

    # a click inside the largest area names its post, in Vietnamese with its diacritics
    code, lon, lat = await largest_area(served)
    popup = await click_area(p, lon, lat)
    assert await popup.get_attribute("data-code") == code
    body = await popup.inner_text()
    name_local = by_code[code]["name_local"]
    assert name_local and name_local in body
    assert any(ord(c) > 127 for c in name_local)  # with its diacritics
    km2 = await served.scalar(
        "SELECT ST_Area(geography(area)) / 1e6 FROM border_post WHERE code = :c", c=code
    )
    assert abs(by_code[code]["area_km2"] - km2) <= 0.05
    assert f"{vi_number(by_code[code]['area_km2'])} km²" in body

    # off and on again: the posts did not change, the areas are not asked again
    await toggle.uncheck()
    await toggle.check()
    await p.settled()
    assert (
        await p.page.evaluate(
            "window.borderwatch.map.getLayoutProperty('postarea-fill', 'visibility')"
        )
        == "visible"
    )
    assert len(area_requests(p)) == 1
    assert p.errors == []
    await p.page.context.close()


async def test_areas_layer_from_the_link_in_english(browser: Any, served: Served) -> None:
    p = await _open(browser, served, served.viewer, lang="en", query="?layers=postareas,boundaries")
    await wait_until(p.page, "window.borderwatch.map.getLayer('postarea-fill')")
    await p.settled()
    assert await p.page.locator(TOGGLE.format("postareas")).is_checked()
    assert len(area_requests(p)) == 1
    label = p.page.locator(
        "#layer-toggles label", has=p.page.locator('input[data-layer="postareas"]')
    )
    assert (await label.inner_text()).strip() == "Posts' areas of responsibility"
    assert await rendered_areas(p)  # a viewer key reads the areas too
    fc = await served.api("/border-posts/areas", key=served.viewer)
    by_code = {f["id"]: f["properties"] for f in fc["features"]}
    code, lon, lat = await largest_area(served)
    popup = await click_area(p, lon, lat)
    assert await popup.get_attribute("data-code") == code
    strong = popup.locator("strong")
    assert await strong.inner_text() == by_code[code]["name"]
    assert await strong.get_attribute("title") == by_code[code]["name_local"]
    assert p.errors == []
    await p.page.context.close()
