"""The dashboard's live feed and alerts panel in a real browser (Debian's Chromium through
Playwright, as tests/test_dashboard.py), against real API processes over a database of their
own.

The page reaches its server through a TCP relay on a fixed port (`Relay`), so the process
behind the page's address can be stopped and another started (a server restart), or every
connection cut (a dropped network), while the page stays open. Writes come from the test with
an admin key, straight to a second API process. Expected values come from the API called
directly or from SQL, never from the page. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from test_dashboard import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MAPLIBRE,
    WAIT_MS,
    Page,
    Served,
    _open,
    msg,
    playwright_api,
    wait_until,
)

from app.auth import service as auth_service
from app.db import sessionmaker
from conftest import Demo, LiveApp, live_app, live_server, needs

pytestmark = [
    needs(CHROMIUM is not None, "chromium is not installed (make setup)"),
    needs(MAPLIBRE.exists(), "node_modules missing (make setup)"),
]

ENV = {
    "BORDERWATCH_EVENTS_POLL_S": "0.5",
    "BORDERWATCH_EVENTS_HEARTBEAT_S": "1",
    "BORDERWATCH_EVENTS_KEY_CHECK_S": "0.5",  # a revoked key's stream ends within a second
}
ICT = timezone(timedelta(hours=7))
PROVINCE = "VN-44"  # An Giang (the map before 1 July 2025): the officers' area
# Long Xuyên and Châu Đốc, well inside An Giang (tens of km from any other province)
LONG_XUYEN = (105.4352, 10.3866)
CHAU_DOC = (105.1170, 10.7050)
OFFICERS = ("Cán bộ An Giang 1", "Cán bộ An Giang 2")
REVOKED = "Cán bộ An Giang 3"  # its key is revoked while its page is open
WAIT_S = WAIT_MS / 1000


class Relay:
    """A TCP relay on a fixed port of 127.0.0.1 in front of an API process: the page's origin
    stays the same while the process behind it changes. With no process behind it (`target`
    None) it closes every connection it accepts, as a stopped server refuses them."""

    def __init__(self) -> None:
        self.target: int | None = None
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and cut every connection."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Close every relayed connection at once (both sides), as a dropped network does."""
        for writer in list(self._open):
            writer.close()
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.target is None:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._open |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.close()


@dataclass
class Live:
    """The served database: the page's server behind `relay` (replaceable), the writer
    process the test talks to (`api`), the keys, and an engine over the database."""

    live: LiveApp
    relay: Relay
    logs: Path
    page_server: contextlib.AsyncExitStack
    keys: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    @property
    def base(self) -> str:
        """The page's address (the relay)."""
        return f"http://127.0.0.1:{self.relay.port}"

    @property
    def api(self) -> str:
        """The writer process."""
        return self.live.base

    @property
    def engine(self) -> AsyncEngine:
        return self.live.engine

    def served(self) -> Served:
        """test_dashboard's view of a served database (what its `_open` needs)."""
        return Served(
            self.base, self.keys["admin"], self.keys["viewer"], self.ids["admin"],
            self.engine, self.live.log,
        )  # fmt: skip

    async def start_page_server(self) -> None:
        """A new API process over the database, behind the relay."""
        stack = contextlib.AsyncExitStack()
        base = await stack.enter_async_context(
            live_server(self.live.url, self.logs / "page-server.log", env=ENV)
        )
        self.page_server = stack
        self.relay.target = int(base.rsplit(":", 1)[1])

    async def stop_page_server(self) -> None:
        """The page's server goes away: its connections are cut and its process stopped."""
        self.relay.target = None
        self.relay.cut()
        await self.page_server.aclose()

    def client(self, who: str = "admin") -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api, headers={"Authorization": f"Bearer {self.keys[who]}"},
            timeout=WAIT_S,
        )  # fmt: skip

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()


async def _alerts_caught_up(live: Live) -> None:
    """Wait until alert raising has read the whole event log (the demo incidents), so that
    rules made afterwards (the officers' default rule) only meet the test's incidents."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while await live.scalar(
        "SELECT EXISTS (SELECT 1 FROM event_log e, alert_cursor c WHERE (e.xid, e.id) > (c.xid, c.id))"
    ):
        assert asyncio.get_running_loop().time() < deadline, "alert raising never caught up"
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def served_live(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Live]:
    logs = tmp_path_factory.mktemp("dashboard-live")
    relay = Relay()
    await relay.start()
    async with live_app(
        server_url, logs / "server.log", name="bw_live", env=ENV,
        demo=Demo(60, 7, datetime(2025, 6, 1, tzinfo=ICT)),
        principals={"live admin": "admin", "live viewer": "viewer"},
    ) as app:  # fmt: skip
        live = Live(app, relay, logs, contextlib.AsyncExitStack())
        live.keys = {"admin": app.keys["live admin"].key, "viewer": app.keys["live viewer"].key}
        live.ids = {"admin": app.keys["live admin"].id}
        await _alerts_caught_up(live)
        async with sessionmaker(app.engine)() as s, s.begin():
            for name in (*OFFICERS, REVOKED):
                record, key = await auth_service.create_principal(
                    session=s, name=name, role="officer", jurisdiction_code=PROVINCE,
                    unit="Công an tỉnh An Giang", actor="test",
                )  # fmt: skip
                live.keys[name], live.ids[name] = key, int(record["id"])
        try:
            await live.start_page_server()
            yield live
        finally:
            await relay.close()
            await live.page_server.aclose()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """The system Chromium, headless, with software WebGL (as tests/test_dashboard.py)."""
    async with playwright_api.async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield b
        finally:
            await b.close()


def _body(lon: float, lat: float, severity: int) -> dict[str, Any]:
    occurred = datetime.now(ICT).replace(microsecond=0) - timedelta(hours=1)
    return {
        "category": "drug_trafficking",
        "severity": severity,
        "occurred_at": occurred.isoformat(),
        "location": {"type": "Point", "coordinates": [lon, lat]},
        "description": "Vận chuyển ma túy qua biên giới (thử nghiệm)",
    }


async def _create(live: Live, lon: float, lat: float, severity: int = 3) -> str:
    """An incident recorded through the writer process with the admin key; its id."""
    async with live.client() as c:
        r = await c.post("/incidents", json=_body(lon, lat, severity))
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


async def _open_live(browser: Any, live: Live, who: str, query: str = "") -> Page:
    """The dashboard with `who`'s key, its live feed connected."""
    p = await _open(browser, live.served(), live.keys[who], query=query)
    await wait_until(p.page, "window.borderwatch.live.status === 'live'")
    return p


async def _total(p: Page) -> int:
    return int((await p.page.locator("#stat-total").inner_text()).replace(",", ""))


async def _matched(live: Live, who: str, bbox: str) -> int:
    """GET /incidents?count=true for the page's view, with the page's key."""
    async with live.client(who) as c:
        r = await c.get("/incidents", params={"bbox": bbox, "count": "true", "limit": 1})
        assert r.status_code == 200, r.text
        return int(r.json()["numberMatched"])


async def _view_bbox(p: Page) -> str:
    box: list[float] = await p.page.evaluate(
        "window.borderwatch.map.getBounds().toArray().flat().map((v) => v.toFixed(5))"
    )
    return ",".join(str(v) for v in box)


async def _wait_received(p: Page, incident: str, event: str = "incident.created") -> None:
    await wait_until(
        p.page,
        f"window.borderwatch.live.received.some((e) => e.event === '{event}' && e.incident === '{incident}')",
    )


async def test_a_new_severe_incident_appears_live_with_its_alert_and_acknowledgement(
    browser: Any, served_live: Live, tmp_path: Path
) -> None:
    live = served_live
    first = await _open_live(browser, live, OFFICERS[0])
    second = await _open_live(browser, live, OFFICERS[1])
    for p in (first, second):
        assert await p.page.locator("#alerts").is_visible()
        assert await p.page.locator("#alerts-unread").inner_text() == "0"
        assert msg("live.status.live") in await p.page.locator("#live-status").inner_text()
    bbox = await _view_bbox(first)
    before = await _total(first)
    assert before == await _matched(live, OFFICERS[0], bbox)
    tiles_before = await first.page.evaluate(
        "window.borderwatch.map.getSource('incidents').tiles[0]"
    )
    refreshes = await first.page.evaluate("window.borderwatch.live.refreshes")

    made = await _create(live, *LONG_XUYEN, severity=5)

    # without a reload: the highlight where it happened, the count up by exactly one
    await wait_until(first.page, f"document.querySelector('.live-pulse[data-incident=\"{made}\"]')")
    xy = await first.page.evaluate(
        f"(() => {{ const m = window.borderwatch.map.project([{LONG_XUYEN[0]}, {LONG_XUYEN[1]}]);"
        f" const r = document.querySelector('.live-pulse[data-incident=\"{made}\"]').getBoundingClientRect();"
        " const c = document.getElementById('map').getBoundingClientRect();"
        " return [m.x, m.y, r.x + r.width / 2 - c.x, r.y + r.height / 2 - c.y]; })()"
    )
    assert abs(xy[0] - xy[2]) < 2 and abs(xy[1] - xy[3]) < 2, xy  # centred on the incident
    await wait_until(first.page, f"window.borderwatch.live.refreshes > {refreshes}")
    await first.settled()
    assert await _total(first) == before + 1 == await _matched(live, OFFICERS[0], bbox)
    # the incident tiles were refreshed through their new version (GET /tiles/incidents.json)
    async with live.client(OFFICERS[0]) as c:
        tilejson = (await c.get("/tiles/incidents.json")).json()
    tiles_after = await first.page.evaluate(
        "window.borderwatch.map.getSource('incidents').tiles[0]"
    )
    assert tiles_after != tiles_before
    assert tiles_after.split("?")[1] == tilejson["tiles"][0].split("?")[1]
    assert "?v=" in tiles_after or "&v=" in tiles_after

    # its alert: unread 1 on both officers' pages, with rule, category, severity, time, place
    item = f"#alert-list li[data-incident='{made}']"
    for p in (first, second):
        await p.page.locator(item).wait_for()
        await wait_until(p.page, "document.getElementById('alerts-unread').textContent === '1'")
    async with live.client(OFFICERS[0]) as c:
        listed = (await c.get("/alerts", params={"acknowledged": "false"})).json()
    assert listed["unacknowledged"] == 1
    [alert] = listed["alerts"]
    text_shown = await first.page.locator(item).inner_text()
    assert alert["rule"]["name"] in text_shown
    assert "Drug trafficking" in text_shown
    assert msg("alerts.severity", severity=5) in text_shown
    occurred = datetime.fromisoformat(alert["incident"]["occurred_at"]).astimezone(ICT)
    assert f"{occurred:%H:%M} GMT+7" in text_shown  # Vietnam's time, with its offset
    assert "An Giang" in text_shown
    await first.page.screenshot(path=str(tmp_path / "live-alert.png"))  # as a person sees it

    # acknowledged on the first page: unread 0; the second page shows who, without a reload
    await first.page.locator(f"{item} button.ack").click()
    await wait_until(first.page, "document.getElementById('alerts-unread').textContent === '0'")
    await wait_until(second.page, "document.getElementById('alerts-unread').textContent === '0'")
    await wait_until(
        second.page, f"document.querySelector(\"{item}\").classList.contains('acknowledged')"
    )
    acked = await second.page.locator(item).inner_text()
    assert msg("alerts.acknowledged", who=OFFICERS[0]).split("{time}")[0] in acked
    assert await second.page.locator(f"{item} button.ack").count() == 0
    async with live.client(OFFICERS[1]) as c:
        after = (await c.get("/alerts")).json()
    assert after["unacknowledged"] == 0
    assert after["alerts"][0]["acknowledged_by"].endswith(OFFICERS[0])

    # a click on the alert flies the map to it
    await second.page.locator(f"{item} .alert-rule").click()
    await wait_until(
        second.page,
        "(() => { const c = window.borderwatch.map.getCenter();"
        f" return Math.abs(c.lng - {LONG_XUYEN[0]}) < 0.001 && Math.abs(c.lat - {LONG_XUYEN[1]}) < 0.001"
        " && window.borderwatch.map.getZoom() >= 11 && !window.borderwatch.map.isMoving(); })()",
    )
    for p in (first, second):
        assert p.errors == []
        assert await p.page.evaluate("window.__csp") == []
        # the key travelled as a header only, never in an address
        assert not any(live.keys[o] in u for u in p.requests for o in OFFICERS)
    # the highlight is brief: gone after a few seconds
    await wait_until(first.page, "!document.querySelector('.live-pulse')", timeout_ms=15_000)
    await first.page.context.close()
    await second.page.context.close()


async def test_a_burst_of_incidents_is_one_refresh_at_a_time(
    browser: Any, served_live: Live
) -> None:
    live = served_live
    p = await _open_live(browser, live, OFFICERS[0])
    started = await p.page.evaluate("window.borderwatch.live.refreshStarts.length")
    before = await _total(p)
    bbox = await _view_bbox(p)
    made = await asyncio.gather(
        *(_create(live, LONG_XUYEN[0] + 0.01 * i, LONG_XUYEN[1], severity=2) for i in range(6))
    )
    for incident in made:
        await _wait_received(p, incident)
    await p.settled()
    await asyncio.sleep(2.5)  # any trailing refresh of the burst
    await p.settled()
    assert await _total(p) == before + 6 == await _matched(live, OFFICERS[0], bbox)
    times: list[float] = await p.page.evaluate(
        f"window.borderwatch.live.refreshStarts.slice({started})"
    )
    assert 1 <= len(times) < 6, times
    # never two refreshes begun within 2 s of each other
    assert all(b - a > 1900 for a, b in itertools.pairwise(times)), times
    assert p.errors == []
    await p.page.context.close()


async def test_the_cooperation_picker_restarts_the_feed_with_its_filter(
    browser: Any, served_live: Live
) -> None:
    live = served_live
    async with live.client() as c:
        r = await c.post(
            "/cooperation-areas",
            json={"name": "Phối hợp An Giang · test", "lead_unit": "Công an tỉnh An Giang",
                  "members": [{"kind": "jurisdiction", "code": PROVINCE}]},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        area = r.json()["id"]
    p = await _open_live(browser, live, OFFICERS[0])
    connects = await p.page.evaluate("window.borderwatch.live.connects")
    await p.page.locator("#f-cooperation").select_option(str(area))
    await wait_until(p.page, f"window.borderwatch.live.connects > {connects}")
    await wait_until(p.page, "window.borderwatch.live.status === 'live'")
    streams = [u for u in p.requests if "/events" in u]
    assert f"cooperation={area}" in streams[-1] and f"cooperation={area}" not in streams[0]
    await p.settled()
    bbox = await _view_bbox(p)
    before = await _total(p)
    made = await _create(live, *CHAU_DOC)
    await _wait_received(p, made)
    await wait_until(p.page, f"document.querySelector('.live-pulse[data-incident=\"{made}\"]')")
    await wait_until(p.page, f"window.borderwatch.live.refreshes > 0 && {before + 1} === "
                     "Number(document.getElementById('stat-total').textContent.replaceAll(',', ''))")  # fmt: skip
    await p.settled()
    async with live.client(OFFICERS[0]) as c:
        r = await c.get(
            "/incidents", params={"bbox": bbox, "cooperation": area, "count": "true", "limit": 1}
        )
        assert await _total(p) == r.json()["numberMatched"]
    assert p.errors == []
    await p.page.context.close()


async def test_viewer_sees_no_alerts_panel_and_opens_no_feed(
    browser: Any, served_live: Live
) -> None:
    p = await _open(browser, served_live.served(), served_live.keys["viewer"])
    await asyncio.sleep(1)
    await p.settled()
    assert not await p.page.locator("#alerts").is_visible()
    assert not await p.page.locator("#live-status").is_visible()
    assert await p.page.evaluate("window.borderwatch.live.status") == "off"
    paths = {urlsplit(u).path for u in p.requests}
    assert not any(re.fullmatch(r"/(events|alerts)(/.*)?", path) for path in paths), paths
    assert p.errors == []
    assert await p.page.evaluate("window.__csp") == []
    await p.page.context.close()


async def test_the_page_resumes_after_a_dropped_connection_and_a_server_restart(
    browser: Any, served_live: Live
) -> None:
    live = served_live
    p = await _open_live(browser, live, OFFICERS[0])
    sent: list[dict[str, str]] = []
    p.page.on("request", lambda r: sent.append(r.headers) if "/events" in r.url else None)
    first = await _create(live, *LONG_XUYEN)
    await _wait_received(p, first)
    await p.settled()
    bbox = await _view_bbox(p)

    # the network drops; an incident is recorded while the page cannot hear
    target = live.relay.target
    live.relay.target = None
    live.relay.cut()
    await wait_until(p.page, "window.borderwatch.live.status === 'reconnecting'")
    position = await p.page.evaluate("window.borderwatch.live.lastEventId")
    assert position
    while_cut = await _create(live, CHAU_DOC[0], CHAU_DOC[1] + 0.01)
    live.relay.target = target
    await _wait_received(p, while_cut)  # replayed from where the page stopped
    await wait_until(p.page, "window.borderwatch.live.status === 'live'")
    assert sent[-1].get("last-event-id") == position

    # the server behind the page stops; incidents are recorded (through another process)
    # while it is down; a new server process comes up at the same address
    await live.stop_page_server()
    await wait_until(p.page, "window.borderwatch.live.status === 'reconnecting'")
    position = await p.page.evaluate("window.borderwatch.live.lastEventId")
    while_down = [
        await _create(live, LONG_XUYEN[0] + 0.02, LONG_XUYEN[1]),
        await _create(live, LONG_XUYEN[0] + 0.03, LONG_XUYEN[1], severity=5),
    ]
    await live.start_page_server()
    for incident in while_down:
        await _wait_received(p, incident)
    await wait_until(p.page, "window.borderwatch.live.status === 'live'")
    assert sent[-1].get("last-event-id") == position
    # every incident once, in the order recorded, and the alert of the severe one
    created = await p.page.evaluate(
        "window.borderwatch.live.received.filter((e) => e.event === 'incident.created').map((e) => e.incident)"
    )
    assert created[-4:] == [first, while_cut, *while_down]
    await _wait_received(p, while_down[1], "alert.raised")
    await p.page.locator(f"#alert-list li[data-incident='{while_down[1]}']").wait_for()
    await wait_until(p.page, "window.borderwatch.live.refreshes > 0")
    await p.settled()
    await asyncio.sleep(2.5)  # the last refresh of the burst
    await p.settled()
    assert await _total(p) == await _matched(live, OFFICERS[0], bbox)
    await p.page.context.close()


async def test_resync_reloads_and_a_revoked_key_ends_the_feed(
    browser: Any, served_live: Live
) -> None:
    live = served_live
    p = await _open_live(browser, live, REVOKED)
    refreshes = await p.page.evaluate("window.borderwatch.live.refreshes")
    # a position the server cannot resume from (as one past the retention): it answers
    # `resync` and the page reloads everything, then goes on live
    await p.page.evaluate("window.borderwatch.live.lastEventId = 'not-an-event-id'")
    live.relay.cut()
    await wait_until(p.page, "window.borderwatch.live.received.some((e) => e.event === 'resync')")
    await wait_until(p.page, f"window.borderwatch.live.refreshes > {refreshes}")
    await wait_until(p.page, "window.borderwatch.live.status === 'live'")
    assert msg("live.resync") in await p.page.locator("#messages").inner_text()
    await p.settled()
    made = await _create(live, *LONG_XUYEN)
    await _wait_received(p, made)

    # the key is revoked: the server ends the stream, the page stops and says why
    async with live.client() as c:
        r = await c.post(f"/principals/{live.ids[REVOKED]}/revoke")
        assert r.status_code == 200, r.text
    await wait_until(p.page, "window.borderwatch.live.status === 'ended'")
    assert msg("live.status.ended") in await p.page.locator("#live-status").inner_text()
    reason = await p.page.evaluate("window.borderwatch.live.reason")
    # the server's reason, in words, on the page
    assert reason and "key" in reason
    assert await p.page.evaluate("window.borderwatch.live.received.at(-1).event") == "end"
    assert reason in await p.page.locator("#messages").inner_text()
    assert reason in (await p.page.locator("#live-status").get_attribute("title") or "")
    connects = await p.page.evaluate("window.borderwatch.live.connects")
    await asyncio.sleep(4)  # longer than the first wait before a reconnection
    assert await p.page.evaluate("window.borderwatch.live.connects") == connects
    assert await p.page.evaluate("window.borderwatch.live.status") == "ended"
    await p.page.context.close()
