"""A configured raster base map in a real browser (test_dashboard's Chromium), on a server
started with BORDERWATCH_BASEMAP_URL and BORDERWATCH_BASEMAP_ATTRIBUTION. The page makes its
map before it has read the configuration (js/mapview.js, createMap and completeStyle): the base
map still lies between the sea and our own layers, is credited, and its tiles are asked from
the configured host, at the view's zoom. The host is answered here by the test (one PNG of one
colour; no internet), and the canvas's pixels show that colour wherever nothing of ours is drawn
over it: the sea's own colour is gone."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import test_dashboard
from test_dashboard import (
    NOW,
    _canvas_colours,
    _new_page,
    pytestmark,  # noqa: F401  (skipped without Chromium or MapLibre, as test_dashboard)
    wait_until,
)

from conftest import Demo, live_app

browser = test_dashboard.browser

HOST = "https://tiles.example.org"
TEMPLATE = HOST + "/{z}/{x}/{y}.png"
CREDIT = "© Bản đồ nền ví dụ"
COLOUR = (0xFF, 0x00, 0xFF)  # no colour of ours
TILE = re.compile(r"^https://tiles\.example\.org/(\d+)/(\d+)/(\d+)\.png$")


def png(rgb: tuple[int, int, int], size: int = 256) -> bytes:
    """A square PNG of one colour (8-bit RGB, no filter), written by hand: no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * size))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
async def served(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[test_dashboard.Served]:
    env = {"BORDERWATCH_BASEMAP_URL": TEMPLATE, "BORDERWATCH_BASEMAP_ATTRIBUTION": CREDIT}
    async with live_app(
        server_url, tmp_path_factory.mktemp("basemap") / "server.log", name="bw_basemap",
        demo=Demo(20, 3, NOW), principals={"basemap admin": "admin"}, env=env,
    ) as live:  # fmt: skip
        key = live.keys["basemap admin"]
        yield test_dashboard.Served(live.base, key.key, key.key, key.id, live.engine, live.log)


async def test_the_base_map_lies_between_the_sea_and_our_layers(
    browser: Any, served: test_dashboard.Served
) -> None:
    p = await _new_page(browser, lang="vi")
    context = p.page.context
    asked: list[str] = []
    image = png(COLOUR)

    async def base_map(route: Any) -> None:
        asked.append(route.request.url)
        await route.fulfill(status=200, body=image, content_type="image/png")

    await context.route(f"{HOST}/**", base_map)
    try:
        await p.page.goto(f"{served.base}/?at=107.5,10.0,8#key={served.admin}")
        await wait_until(p.page, "window.borderwatch && window.borderwatch.map")
        await p.settled()
        ids = await p.page.evaluate("window.borderwatch.map.getStyle().layers.map((l) => l.id)")
        assert ids[:2] == ["sea", "basemap"] and "incident-clusters" in ids
        tiles = [TILE.match(u) for u in asked]
        assert tiles and all(tiles), asked
        # the view's zoom 8 in MapLibre's 512 px units is zoom 9 of 256 px raster tiles
        assert {int(m[1]) for m in tiles if m} == {9}
        credit = await p.page.locator(".maplibregl-ctrl-attrib-inner").inner_text()
        assert CREDIT in credit
        colours = await _canvas_colours(p, also={"base": list(COLOUR)})
        # the base map covers the sea everywhere, and shows itself where none of ours is drawn
        # over it (the open sea south-east of the view)
        assert colours["sea"] == 0 and colours["base"] > colours["total"] * 0.05, colours
        assert await p.page.evaluate("window.__csp") == []
        assert p.errors == []
    finally:
        await context.close()
