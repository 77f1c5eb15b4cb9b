"""The field page (/field) in a real browser at a phone's size (390 × 844, touch): installable,
opened from its service worker with no network, incidents recorded offline kept in IndexedDB
across reloads and sent once each when the link returns (photos by their own ids), a send cut
half-way retried into exactly one incident, validation that names the field before anything is
sent, and no serious or critical axe-core violation.

Debian's Chromium through Playwright, against uvicorn over a database of its own; expected
values come from SQL on that database. Screenshots go to the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from test_dashboard import CHROMIUM, CSP_WATCH, MAPLIBRE, ROOT, browser, wait_until

from app.auth import service as auth_service
from app.db import sessionmaker
from conftest import Demo, live_app, needs

__all__ = ["browser"]  # the module-scoped Chromium of test_dashboard, shared here

pytestmark = [
    needs(CHROMIUM is not None, "chromium is not installed (make setup)"),
    needs(MAPLIBRE.exists(), "node_modules missing (make setup)"),
]

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CATALOGUE = ROOT / "app" / "web" / "static" / "i18n" / "field.json"
WAIT_MS = 30_000
# a border post's surroundings in An Giang (Tịnh Biên), where the phone says it is
HERE = {"latitude": 10.5937, "longitude": 104.9456, "accuracy": 12}
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
    "geolocation": HERE,
    "permissions": ["geolocation"],
    "locale": "vi-VN",
}
UNIT = "Đồn Biên phòng Tịnh Biên"
SHOTS = os.environ.get("BORDERWATCH_FIELD_SHOTS")  # also copy the screenshots here (to look)


@dataclass
class Field:
    base: str
    officer: str
    engine: AsyncEngine

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()


@pytest.fixture(scope="module")
async def served(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Field]:
    """uvicorn over boundaries, 30 demo incidents of the last months and the key of an officer
    of a unit in An Giang."""
    async with live_app(
        server_url, tmp_path_factory.mktemp("field") / "server.log", name="bw_field",
        demo=Demo(30, 5, datetime.now(UTC)),
    ) as live:  # fmt: skip
        # an officer of a unit in An Giang (photos: officers write their own unit's incidents)
        async with sessionmaker(live.engine)() as session, session.begin():
            _, key = await auth_service.create_principal(
                session=session, name="đồn Tịnh Biên", role="officer",
                jurisdiction_code="VN-P91", unit=UNIT, actor="test",
            )  # fmt: skip
        await live.engine.dispose()
        yield Field(live.base, key, live.engine)


@dataclass
class Phone:
    context: Any
    page: Any
    errors: list[str] = field(default_factory=list)
    posts: list[str] = field(default_factory=list)

    async def ready(self) -> None:
        await wait_until(self.page, "window.borderwatch && window.borderwatch.field.ready", WAIT_MS)
        failed = await self.page.evaluate("window.borderwatch.field.failed")
        assert failed is None, failed

    async def queue(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = await self.page.evaluate("window.borderwatch.field.queue()")
        return records

    async def shot(self, tmp_path: Path, name: str, *, full_page: bool = False) -> Path:
        path = tmp_path / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=full_page)
        if SHOTS:
            await asyncio.to_thread(_keep, path, Path(SHOTS))
        return path


def _keep(path: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, folder / path.name)


async def _phone(browser: Any, served: Field, **options: Any) -> Phone:
    context = await browser.new_context(**PHONE, **options)
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    phone = Phone(context, page)
    page.on("console", lambda m: phone.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: phone.errors.append(str(e)))
    page.on(
        "request",
        lambda r: phone.posts.append(r.url) if r.method in ("POST", "PUT") else None,
    )
    await page.add_init_script(CSP_WATCH)
    await page.goto(f"{served.base}/field#key={served.officer}")
    await phone.ready()
    return phone


def _jpeg() -> bytes:
    """A 2400 × 1600 JPEG with a GPS position in its EXIF (Pillow, a runtime dependency)."""
    from PIL import Image

    image = Image.new("RGB", (2400, 1600), (40, 120, 200))
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (10.0, 35.0, 30.0), 3: "E", 4: (104.0, 56.0, 40.0)})
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80, exif=exif)
    return out.getvalue()


async def _record(
    phone: Phone, *, category: int, severity: int, text_: str, photo: bytes | None = None
) -> None:
    """Fill the form as a person would (GPS gives the position) and save."""
    page = phone.page
    before = len(await phone.queue())
    await page.locator("#tab-record").tap()
    try:
        await wait_until(page, "document.getElementById('lat').value !== ''", 5000)
    except AssertionError:
        raise AssertionError(await page.inner_text("#position-status"), phone.errors) from None
    await page.select_option("#category", index=category)
    await page.locator(f"label.choice:has(input[value='{severity}'])").tap()
    await page.fill("#description", text_)
    if photo is not None:
        await page.set_input_files(
            "#photos", files=[{"name": "scene.jpg", "mimeType": "image/jpeg", "buffer": photo}]
        )
        await wait_until(page, "document.querySelectorAll('#photo-list img').length === 1")
    await page.locator("#save").tap()
    await wait_until(page, f"window.borderwatch.field.queue().then(q => q.length === {before + 1})")
    # the next record asks the GPS again
    await wait_until(page, "document.getElementById('lat').value !== ''", WAIT_MS)


async def _photos_api(served: Field) -> bool:
    """Whether the photos API (PUT /incidents/{id}/photos/{photo_id}) is served."""
    import httpx

    async with httpx.AsyncClient(base_url=served.base) as c:
        paths = (await c.get("/openapi.json")).json()["paths"]
    return any(p.startswith("/incidents/{") and "/photos/{" in p for p in paths)


async def test_offline_visit_queue_and_send_once(
    browser: Any, served: Field, tmp_path: Path
) -> None:
    phone = await _phone(browser, served)
    page = phone.page
    assert "key=" not in page.url
    await wait_until(page, "window.borderwatch.field.sw && window.borderwatch.field.warm")
    assert await page.evaluate("document.querySelectorAll('#category option').length") > 5
    await wait_until(page, "document.getElementById('lat').value !== ''")
    assert float(await page.input_value("#lat")) == pytest.approx(HERE["latitude"])
    assert await page.input_value("#precision") == "12"
    await phone.shot(tmp_path, "field-online")

    manifest = await page.evaluate(
        "fetch(document.querySelector('link[rel=manifest]').href).then(r => r.json())"
    )
    assert manifest["start_url"] == "/field" and manifest["display"] == "standalone"

    before = await served.scalar("SELECT count(*) FROM incident")
    await phone.context.set_offline(True)
    response = await page.reload()
    assert response is not None and response.from_service_worker
    await phone.ready()
    assert await page.is_visible("#offline")  # one banner, saying the data is saved
    assert await page.evaluate("document.querySelectorAll('#category option').length") > 5
    assert "·" in await page.inner_text("#saved-at")
    assert await page.inner_text("#whoami") != ""  # GET /me from the saved copy
    # the key's area came from the saved copy: outline, communes, their names
    await wait_until(page, "window.borderwatch.field.map.querySourceFeatures('area').length > 0")

    photo = _jpeg()
    await _record(phone, category=1, severity=4, text_="Vận chuyển ma túy qua biên giới")
    await _record(phone, category=2, severity=2, text_="Buôn lậu thuốc lá", photo=photo)
    await _record(phone, category=3, severity=3, text_="Xuất nhập cảnh trái phép")
    queued_before = await phone.queue()
    await page.reload()
    await phone.ready()
    queue = await phone.queue()
    assert len(queue) == 3, (queued_before, queue, phone.errors)
    assert [r["state"] for r in queue] == ["queued"] * 3
    assert sorted(len(r["photos"]) for r in queue) == [0, 0, 1]
    await page.locator("#tab-mine").tap()
    assert await page.locator("#mine-list li[data-state=queued]").count() == 3
    assert await page.inner_text("#queued-badge") == "3"
    await phone.shot(tmp_path, "field-offline-queued")
    assert await served.scalar("SELECT count(*) FROM incident") == before

    photos = await _photos_api(served)
    await phone.context.set_offline(False)  # the 'online' event sends the queue
    await wait_until(
        page,
        "window.borderwatch.field.queue().then(q => q.every(r => r.state !== 'queued'))",
    )
    ids = [r["id"] for r in queue]
    stored = await served.scalar(
        "SELECT count(*) FROM incident WHERE id::text = ANY(:ids)", ids=ids
    )
    assert stored == 3, await phone.queue()
    assert await served.scalar("SELECT count(*) FROM incident") == before + 3
    with_photo = next(r for r in queue if r["photos"])
    final = {r["id"]: r for r in await phone.queue()}
    if photos:
        assert all(r["state"] == "sent" for r in final.values()), final[with_photo["id"]]["error"]
        assert (
            await served.scalar(
                "SELECT count(*) FROM incident_photo WHERE incident_id::text = :i",
                i=with_photo["id"],
            )
            == 1
        )
    else:  # the photos API has not landed: the photo's record waits, visibly refused
        assert final[with_photo["id"]]["state"] == "rejected"
    # the browser logs each request refused while offline; nothing else may be an error
    assert [e for e in phone.errors if not e.startswith("Failed to load resource")] == []
    assert await page.evaluate("window.__csp") == []
    await phone.context.close()


async def test_cut_send_validation_and_accessibility(
    browser: Any, served: Field, tmp_path: Path
) -> None:
    # no service worker here: the page's own requests are the ones routed and counted; axe is
    # injected as an inline script, so this context bypasses the page's policy
    phone = await _phone(browser, served, service_workers="block", bypass_csp=True)
    page = phone.page
    catalogue = json.loads(CATALOGUE.read_text(encoding="utf-8"))

    # validation: nothing chosen for severity → the message names the field, nothing is sent
    await wait_until(page, "document.getElementById('lat').value !== ''")
    await page.select_option("#category", index=1)
    await page.locator("#save").tap()
    assert await page.is_visible("#errors")
    message = await page.inner_text("#severity-error")
    assert catalogue["field.severity"]["vi"] in message
    assert catalogue["field.category"]["vi"] not in await page.inner_text("#error-list")
    await page.fill("#lat", "95")
    await page.locator("#save").tap()
    assert catalogue["field.position"]["vi"] in await page.inner_text("#position-error")
    assert phone.posts == [] and await phone.queue() == []
    await phone.shot(tmp_path, "field-validation", full_page=True)

    # axe-core on the form with its errors shown, then on the other two panels
    await page.add_script_tag(path=str(AXE))
    for tab in ("record", "near", "mine"):
        await page.locator(f"#tab-{tab}").tap()
        result = await page.evaluate(
            "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations"
            ".filter(v => ['serious', 'critical'].includes(v.impact))"
            ".map(v => ({id: v.id, nodes: v.nodes.map(n => n.target.join(' '))})))"
        )
        assert result == [], (tab, result)

    # a send cut after the server stored the incident: retried, exactly one incident
    cut: list[int] = []

    async def cut_first(route: Any) -> None:
        if route.request.method == "POST" and not cut:
            answer = await route.fetch()
            cut.append(answer.status)
            await route.abort("connectionreset")
        else:
            await route.continue_()

    await page.route("**/incidents", cut_first)
    await page.locator("#tab-record").tap()
    await page.fill("#lat", str(HERE["latitude"]))
    await page.locator("label.choice:has(input[value='5'])").tap()
    await page.locator("#save").tap()
    await wait_until(page, "window.borderwatch.field.queue().then(q => q.length === 1)")
    await wait_until(
        page, "window.borderwatch.field.queue().then(q => q[0].state === 'sent')", WAIT_MS
    )
    assert cut == [201]
    (record,) = await phone.queue()
    assert (
        await served.scalar("SELECT count(*) FROM incident WHERE id::text = :i", i=record["id"])
        == 1
    )
    posts = [u for u in phone.posts if u.endswith("/incidents")]
    assert len(posts) == 2  # the cut one and its retry (200: the same content)
    assert await served.scalar(
        "SELECT occurred_at > now() - interval '10 minutes' FROM incident WHERE id::text = :i",
        i=record["id"],
    )

    # a refusal (4xx): kept with the server's reason, corrected and sent again under its id
    await page.unroute("**/incidents", cut_first)
    problem = {"title": "Unprocessable Content", "status": 422, "detail": "lời từ máy chủ"}

    async def refuse_once(route: Any) -> None:
        if route.request.method == "POST" and problem:
            body = json.dumps(problem)
            problem.clear()
            await route.fulfill(status=422, content_type="application/problem+json", body=body)
        else:
            await route.continue_()

    await page.route("**/incidents", refuse_once)
    await wait_until(page, "document.getElementById('lat').value !== ''")
    await page.select_option("#category", index=2)
    await page.locator("label.choice:has(input[value='2'])").tap()
    await page.locator("#save").tap()
    await wait_until(page, "window.borderwatch.field.queue().then(q => q[0].state === 'rejected')")
    await page.locator("#tab-mine").tap()
    refused = page.locator("#mine-list li[data-state=rejected]")
    assert "lời từ máy chủ" in await refused.inner_text()
    await refused.locator("button").tap()
    assert await page.is_visible("#panel-record")
    await page.locator("#save").tap()
    await wait_until(page, "window.borderwatch.field.queue().then(q => q[0].state === 'sent')")
    corrected = (await phone.queue())[0]["id"]
    assert (
        await served.scalar("SELECT count(*) FROM incident WHERE id::text = :i", i=corrected) == 1
    )

    # near me: what the database holds within 5 km of the phone in the last 30 days, nearest
    # first, one numbered marker each
    await page.locator("#tab-near").tap()
    await page.locator("#near-go").tap()
    await wait_until(page, "document.querySelectorAll('#near-list li').length > 0")
    expected = await served.scalar(
        "SELECT count(*) FROM incident WHERE deleted_at IS NULL"
        " AND occurred_at > now() - interval '30 days' AND ST_DWithin(geom::geography,"
        " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, 5000)",
        lon=HERE["longitude"], lat=HERE["latitude"],
    )  # fmt: skip
    assert await page.locator("#near-list li").count() == expected >= 5
    assert await page.locator(".near-marker").count() == expected
    await Phone.shot(phone, tmp_path, "field-near")

    # the language switch: English from the catalogue, remembered
    await page.locator("#lang").tap()
    assert await page.inner_text("#tab-near") == catalogue["field.tab.near"]["en"]
    assert await page.evaluate("document.documentElement.lang") == "en"
    await phone.context.close()
