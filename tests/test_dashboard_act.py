"""Acting on incidents from the dashboard, and the incident table (docs/dashboard.md, "Acting on
an incident" and "The incident table"), in Debian's Chromium over test_dashboard.py's server
and fixture database: an officer of the incident's unit changes its status, corrects it (a
stale If-Match is refused and nothing changes), adds a note and a photo; viewers and analysts
get no controls; the table lists exactly the filters' incidents and its rows and the map's
points select each other. Expected values come from SQL; every wait is bounded."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import test_dashboard
from PIL import Image
from test_dashboard import (
    AXE,
    SHOWN_TEXTS,
    Page,
    Served,
    _open,
    _other_language,
    msg,
    pytestmark,  # noqa: F401  (skipped without Chromium or MapLibre, as test_dashboard)
    wait_until,
)

from app.auth import service as auth_service
from app.db import sessionmaker

# test_dashboard's fixtures: the browser and the server over a fixture database (one of its
# own for this module)
browser = test_dashboard.browser
served = test_dashboard.served


async def _key(srv: Served, name: str, role: str, unit: str | None) -> str:
    """A national key of `role` (officers: of `unit`)."""
    async with sessionmaker(srv.engine)() as session, session.begin():
        _, key = await auth_service.create_principal(
            session=session, name=name, role=role, jurisdiction_code=None, unit=unit, actor="test"
        )
    return key


async def _incident(srv: Served, where: str) -> tuple[str, str]:
    """The id and unit of the first live incident matching `where` (SQL)."""
    row = await srv.scalar(
        "SELECT json_build_array(id::text, unit) FROM incident"
        f" WHERE deleted_at IS NULL AND unit IS NOT NULL AND {where} ORDER BY id LIMIT 1"
    )
    return str(row[0]), str(row[1])


async def _open_incident(p: Page, ident: str) -> None:
    """Select the incident's row in the table (opened with ?table=1): its details open."""
    await p.page.locator(f"#incident-table tr[data-id='{ident}']").click()
    await _wait_shown(p, ident)


async def _wait_shown(p: Page, ident: str) -> None:
    await wait_until(
        p.page,
        f"window.borderwatch.state.incident && window.borderwatch.state.incident.id === '{ident}'"
        " && !document.querySelector('#detail').hidden",
    )
    await p.settled()


async def test_officer_changes_status_adds_a_note_and_a_photo(
    browser: Any, served: Served, tmp_path: Path
) -> None:
    ident, unit = await _incident(served, "status = 'reported'")
    key = await _key(served, "act officer", "officer", unit)
    p = await _open(browser, served, key, query="?table=1")
    await p.page.locator(f"#incident-table tr[data-id='{ident}']").wait_for()
    await _open_incident(p, ident)

    # only the lifecycle's next states are offered
    offered = await p.page.locator("#status-next option").evaluate_all(
        "(os) => os.map((o) => o.value)"
    )
    assert offered == ["verified", "rejected", "duplicate"]
    await p.page.locator("#status-next").select_option("verified")
    await p.page.locator("#status-change").click()
    await wait_until(p.page, "window.borderwatch.state.incident.properties.status === 'verified'")
    await p.settled()
    assert await served.scalar("SELECT status FROM incident WHERE id = :i", i=ident) == "verified"
    last = (await p.page.locator("#detail .history > li").all_inner_texts())[-1]
    change = msg("incident.change", field=msg("incident.field.status"),
                 **{"from": msg("status.reported"), "to": msg("status.verified")})  # fmt: skip
    assert change in last, last
    # the next states follow the new status
    offered = await p.page.locator("#status-next option").evaluate_all(
        "(os) => os.map((o) => o.value)"
    )
    assert offered == ["under_investigation", "rejected", "duplicate"]

    # a note: stored, then listed with its unit
    text = "Đã liên hệ đồn bạn, chờ xác minh thêm."
    await p.page.locator("#note-text").fill(text)
    await p.page.locator("#note-add").click()
    await wait_until(
        p.page,
        f"[...document.querySelectorAll('#incident-notes li')].some((li) => li.textContent.includes({json.dumps(text)}))",
    )
    stored = await served.scalar(
        "SELECT json_build_array(body, unit) FROM incident_note WHERE incident_id = :i", i=ident
    )
    assert stored == [text, unit]
    assert unit in await p.page.locator("#incident-notes li").last.inner_text()

    # a PNG sent as a JPEG: the server's refusal shown, nothing stored
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 0, 200)).save(png, "PNG")
    await p.page.locator("#photo-file").set_input_files(
        files=[{"name": "fake.jpg", "mimeType": "image/jpeg", "buffer": png.getvalue()}]
    )
    await p.page.locator("#photo-add").click()
    refused = msg("incident.photoRefused.415", name="fake.jpg").split("(")[0]
    await wait_until(
        p.page,
        f"document.querySelector('#photo-form [role=alert]').textContent.includes({json.dumps(refused)})",
    )
    photos = "SELECT count(*) FROM incident_photo WHERE incident_id = :i"
    assert await served.scalar(photos, i=ident) == 0

    # a photo (a JPEG made here): stored, its thumbnail shown
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(buf, "JPEG")
    await p.page.locator("#photo-file").set_input_files(
        files=[{"name": "scene.jpg", "mimeType": "image/jpeg", "buffer": buf.getvalue()}]
    )
    await p.page.locator("#photo-caption").fill("Hiện trường")
    await p.page.locator("#photo-add").click()
    await wait_until(
        p.page,
        "document.querySelector('#incident-photos img[data-loaded]')"
        " && document.querySelector('#incident-photos img').naturalWidth > 0",
    )
    photo = await served.scalar(
        "SELECT json_build_array(count(*), min(caption), min(width)) FROM incident_photo"
        " WHERE incident_id = :i",
        i=ident,
    )
    assert photo == [1, "Hiện trường", 64]
    await p.page.screenshot(path=str(tmp_path / "acted.png"))
    # every control and line of the panel in the page's language (English here)
    assert _other_language(await p.page.evaluate(SHOWN_TEXTS), "en") == []
    # a click opens the full photo
    await p.page.locator("#incident-photos button.photo").first.click()
    await wait_until(p.page, "document.querySelector('#photo-viewer').open")
    await wait_until(p.page, "document.querySelector('#photo-viewer img').naturalWidth === 64")
    await p.page.keyboard.press("Escape")
    assert [e for e in p.errors if "status of 415" not in e] == []
    await p.page.context.close()


async def test_a_stale_if_match_shows_the_conflict_and_changes_nothing(
    browser: Any, served: Served
) -> None:
    ident, unit = await _incident(served, "status = 'verified'")
    key = await _key(served, "act officer 2", "officer", unit)
    p = await _open(browser, served, key, query="?table=1")
    await p.page.locator(f"#incident-table tr[data-id='{ident}']").wait_for()
    await _open_incident(p, ident)
    # behind the page's back: someone else corrects the incident
    async with httpx.AsyncClient(
        base_url=served.base, headers={"Authorization": f"Bearer {served.admin}"}, timeout=30
    ) as c:
        r = await c.get(f"/incidents/{ident}")
        r = await c.patch(
            f"/incidents/{ident}",
            json={"description": "sửa từ nơi khác"},
            headers={"If-Match": r.headers["ETag"]},
        )
        assert r.status_code == 200, r.text
    version = await served.scalar("SELECT version FROM incident WHERE id = :i", i=ident)

    await p.page.locator("#incident-correct-box summary").click()
    await p.page.locator("#incident-correct textarea[name='description']").fill("sửa trên bản đồ")
    await p.page.locator("#incident-correct select[name='severity']").select_option("5")
    await p.page.locator("#incident-save").click()
    await wait_until(
        p.page,
        f"document.querySelector('#incident-action-message')"
        f" && document.querySelector('#incident-action-message').textContent.includes({json.dumps(msg('incident.conflict'))})",
    )
    row = await served.scalar(
        "SELECT json_build_array(version, description) FROM incident WHERE id = :i", i=ident
    )
    assert row == [version, "sửa từ nơi khác"]  # nothing of the page's change was stored

    # reload: the fresh incident, the form filled again with what the officer typed; save
    await p.page.locator("#incident-reload").click()
    await wait_until(
        p.page,
        "document.querySelector('#incident-correct textarea[name=description]')"
        " && document.querySelector('#incident-correct-box').open"
        f" && window.borderwatch.state.incidentVersion === {version}",
    )
    assert (
        await p.page.locator("#incident-correct textarea[name='description']").input_value()
        == "sửa trên bản đồ"
    )
    await p.page.locator("#incident-save").click()
    await wait_until(p.page, f"window.borderwatch.state.incidentVersion === {version + 1}")
    row = await served.scalar(
        "SELECT json_build_array(version, description, severity) FROM incident WHERE id = :i",
        i=ident,
    )
    assert row == [version + 1, "sửa trên bản đồ", 5]
    # a latitude out of range: the field is named in the user's language, nothing stored
    await p.page.locator("#incident-correct-box summary").click()
    await p.page.locator("#incident-correct input[name='lat']").fill("95")
    await p.page.locator("#incident-save").click()
    field = msg("incident.invalid", field=msg("incident.field.location")).split("{detail}")[0]
    await wait_until(
        p.page,
        "document.querySelector('#incident-action-message').textContent"
        f".startsWith({json.dumps(field)})",
    )
    assert await served.scalar("SELECT version FROM incident WHERE id = :i", i=ident) == version + 1
    # the browser logs the refused request itself; nothing else went wrong
    assert [e for e in p.errors if not any(f"status of {c}" in e for c in (412, 422))] == []
    await p.page.context.close()


async def test_readers_without_rights_see_no_action_controls(browser: Any, served: Served) -> None:
    ident, _ = await _incident(served, "true")
    analyst = await _key(served, "act analyst", "analyst", None)
    p = await _open(browser, served, analyst, query="?table=1")
    await p.page.locator(f"#incident-table tr[data-id='{ident}']").wait_for()
    await _open_incident(p, ident)
    detail = p.page.locator("#detail")
    assert await detail.locator(".history li").count() >= 1
    assert await detail.locator("h3", has_text=msg("incident.notes")).count() == 1
    for control in ("#incident-actions", "#note-form", "#photo-form", "#status-next"):
        assert await p.page.locator(control).count() == 0, control
    await p.page.context.close()

    # an officer of another unit: notes only
    officer = await _key(served, "act officer elsewhere", "officer", "another unit")
    p = await _open(browser, served, officer, query="?table=1")
    await p.page.locator(f"#incident-table tr[data-id='{ident}']").wait_for()
    await _open_incident(p, ident)
    assert await p.page.locator("#note-form").count() == 1
    for control in ("#status-next", "#incident-correct", "#photo-form"):
        assert await p.page.locator(control).count() == 0, control
    await p.page.context.close()

    # a viewer: no table, no details
    p = await _open(browser, served, served.viewer, query="?table=1")
    assert await p.page.locator("#table-bar").is_hidden()
    assert await p.page.locator("#incident-table tr").count() == 0
    assert p.errors == []
    await p.page.context.close()


async def test_the_table_lists_the_filters_incidents_and_follows_the_map(
    browser: Any, served: Served, tmp_path: Path
) -> None:
    category = await served.scalar(
        "SELECT category FROM incident WHERE deleted_at IS NULL"
        " GROUP BY category ORDER BY count(*) DESC LIMIT 1"
    )
    query = f"?category={category}&severity_min=2"
    p = await _open(browser, served, served.admin, query=query, bypass_csp=True)  # for axe-core
    await p.page.locator("#table-toggle").click()
    await wait_until(p.page, "window.borderwatch.incidentTable.loads >= 1")
    await p.settled()
    expected = await served.scalar(
        "SELECT json_agg(id::text ORDER BY occurred_at DESC, id DESC) FROM incident"
        " WHERE deleted_at IS NULL AND category = :c AND severity >= 2",
        c=category,
    )
    rows = p.page.locator("#incident-table tbody tr")
    shown = await rows.evaluate_all("(rs) => rs.map((r) => r.dataset.id)")
    assert sorted(shown) == sorted(expected) and len(shown) == len(expected) > 1
    assert shown == expected  # newest first, as the served sends them

    # sorted by severity (the loaded rows), highest first
    await p.page.locator("#sort-severity").click()
    shown = await rows.evaluate_all("(rs) => rs.map((r) => r.dataset.id)")
    severity = await served.scalar(
        "SELECT json_object_agg(id::text, severity) FROM incident WHERE id::text = ANY(:ids)",
        ids=shown,
    )
    values = [severity[i] for i in shown]
    assert values == sorted(values, reverse=True)
    header = p.page.locator("th:has(#sort-severity)")
    assert await header.get_attribute("aria-sort") == "descending"

    # a row chosen from the keyboard: the map flies to its point and rings it
    ident = shown[-1]
    lon, lat = await served.scalar(
        "SELECT json_build_array(ST_X(geom), ST_Y(geom)) FROM incident WHERE id = :i", i=ident
    )
    await p.page.locator(f"#incident-table tr[data-id='{ident}']").focus()
    await p.page.keyboard.press("Enter")
    await _wait_shown(p, ident)
    center = await p.page.evaluate(
        "(() => { const c = window.borderwatch.map.getCenter(); return [c.lng, c.lat]; })()"
    )
    assert abs(center[0] - lon) < 1e-4 and abs(center[1] - lat) < 1e-4
    ringed = await p.page.evaluate(
        "window.borderwatch.map.queryRenderedFeatures({layers: ['selected-incident-ring']})"
        ".map((f) => f.properties.id)"
    )
    assert ringed == [ident]
    assert await p.page.locator("#incident-table tr.selected").get_attribute("data-id") == ident

    # a point clicked on the map selects its row
    other, olon, olat = await served.scalar(
        "SELECT json_build_array(a.id::text, ST_X(a.geom), ST_Y(a.geom)) FROM incident a"
        " WHERE a.deleted_at IS NULL AND a.category = :c AND a.severity >= 2 AND a.id <> :i"
        " AND NOT EXISTS (SELECT 1 FROM incident b WHERE b.id <> a.id"
        " AND ST_DWithin(a.geom::geography, b.geom::geography, 3000)) ORDER BY a.id LIMIT 1",
        c=category,
        i=ident,
    )
    await p.page.evaluate(f"window.borderwatch.map.jumpTo({{center: [{olon}, {olat}], zoom: 12}})")
    await p.settled()
    await p.click_map(olon, olat)
    await _wait_shown(p, other)
    await wait_until(p.page, f"window.borderwatch.incidentTable.selected === '{other}'")
    assert await p.page.locator("#incident-table tr.selected").get_attribute("data-id") == other
    assert "table=1" in p.page.url
    await p.page.screenshot(path=str(tmp_path / "table.png"))  # as a person sees it

    # the table and the details with every control: no serious accessibility violation
    await p.page.add_script_tag(path=str(AXE))
    violations = await p.page.evaluate(
        """async () => {
          const r = await axe.run(document, { resultTypes: ['violations'] });
          return r.violations.filter((v) => ['serious', 'critical'].includes(v.impact))
            .map((v) => `${v.id}: ${v.nodes.slice(0, 4).map((n) => n.target.join(' ')).join(', ')}`);
        }"""
    )
    assert violations == [], "\n".join(violations)
    assert p.errors == []
    await p.page.context.close()
