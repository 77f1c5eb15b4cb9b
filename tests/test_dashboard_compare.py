"""The statistics panel's period comparison in a real browser (test_dashboard's Chromium and
served fixture database): the figures the panel shows are those the API gives for the same
request, and the totals those SQL counts; Vietnamese first."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import test_dashboard
from test_dashboard import (
    ICT,
    Served,
    _fit_incidents,
    _open,
    msg,
    pytestmark,  # noqa: F401  (skipped without Chromium or MapLibre, as test_dashboard)
    wait_until,
)

# test_dashboard's fixtures: the browser and the server over a fixture database
browser = test_dashboard.browser
served = test_dashboard.served

# the three months before the fixture's "now" (2025-06-01), in Vietnam's calendar
FIRST, LAST = "2025-03", "2025-05"
START = datetime(2025, 3, 1, tzinfo=ICT)
STOP = datetime(2025, 6, 1, tzinfo=ICT)


async def _count(served: Served, start: datetime, stop: datetime) -> int:
    return int(
        await served.scalar(
            "SELECT count(*) FROM incident WHERE deleted_at IS NULL"
            " AND occurred_at >= :a AND occurred_at < :b",
            a=start,
            b=stop,
        )
    )


async def test_panel_shows_the_comparison_the_api_gives(browser: Any, served: Served) -> None:
    p = await _open(browser, served, served.admin, query=f"?from={FIRST}&to={LAST}", lang="vi")
    await _fit_incidents(p, served)
    select = p.page.locator("#stats-compare")
    # Vietnamese first: the choices as the catalogue words them
    labels = await select.locator("option").all_inner_texts()
    assert labels == [
        msg(f"stats.compare.{m}", "vi")
        for m in ("none", "previous_period", "same_period_last_year")
    ]
    assert await p.page.locator("#stat-compare").count() == 0  # nothing compared yet

    for mode in ("previous_period", "same_period_last_year"):
        await select.select_option(mode)
        await wait_until(p.page, f"document.querySelector('#stat-compare[data-compare={mode}]')")
        await p.settled()
        asked = [u for u in p.requests if "/analysis/stats" in u and f"compare={mode}" in u]
        assert asked, p.requests
        params = dict(parse_qsl(urlsplit(asked[-1]).query))
        api = await served.api("/analysis/stats", **params)
        assert api["compare"] == mode and api["group_by"] == "category"

        # totals: the panel = the API = SQL (every incident is in view)
        line = p.page.locator("#stat-compare")
        assert int(await line.get_attribute("data-previous") or -1) == api["previous_total"]
        assert int(await line.get_attribute("data-change") or -1) == api["change"]
        assert await p.page.locator("#stat-total").inner_text() == f"{api['total']:,}".replace(
            ",", "."
        )
        assert api["total"] == await _count(served, START, STOP)
        cstart = datetime.fromisoformat(api["comparison_period"]["start"])
        cstop = datetime.fromisoformat(api["comparison_period"]["end"]) + timedelta(microseconds=1)
        if mode == "same_period_last_year":
            assert (cstart, cstop) == (
                datetime(2024, 3, 1, tzinfo=ICT),
                datetime(2024, 6, 1, tzinfo=ICT),
            )
        else:
            assert cstop == START and cstart == START - (STOP - START)
        assert api["previous_total"] == await _count(served, cstart, cstop)
        assert msg(f"stats.compare.{mode}", "vi") in await line.inner_text()

        # every category row: its count, the comparison count, the change and the marker
        rows = p.page.locator("#stat-categories .bar-row")
        shown = {}
        for i in range(await rows.count()):
            row = rows.nth(i)
            change = await row.locator(".bar-change").inner_text()
            shown[await row.get_attribute("data-category")] = (
                int(await row.get_attribute("data-count") or -1),
                int(await row.get_attribute("data-previous") or -1),
                int(await row.get_attribute("data-change") or -1),
                await row.get_attribute("data-significant") == "true",
                change.endswith(("▲", "▼")),
            )
        expected = {
            g["key"]: (
                g["count"],
                g["previous_count"],
                g["change"],
                g["significant"],
                g["significant"],
            )
            for g in api["groups"]
        }
        assert shown == expected
        assert len(shown) > 1

    # back to none: the comparison goes away
    await select.select_option("none")
    await wait_until(p.page, "!document.querySelector('#stat-compare')")
    assert p.errors == []
    await p.page.context.close()


async def test_an_open_time_range_asks_for_bounds(browser: Any, served: Served) -> None:
    """Without a first and a last month the panel says what it needs and asks nothing."""
    p = await _open(browser, served, served.admin, lang="vi")
    await p.page.locator("#stats-compare").select_option("previous_period")
    await wait_until(p.page, "document.querySelector('#stat-compare')")
    await p.settled()
    assert await p.page.locator("#stat-compare").inner_text() == msg(
        "stats.compare.needsPeriod", "vi"
    )
    assert not [u for u in p.requests if "compare=" in u]
    assert p.errors == []
    await p.page.context.close()


async def test_the_comparison_is_kept_in_the_link(browser: Any, served: Served) -> None:
    """A link with compare= opens the panel compared (the selector showing it); choosing another
    comparison writes it into the address bar, and none removes it."""
    query = f"?from={FIRST}&to={LAST}&compare=same_period_last_year"
    p = await _open(browser, served, served.admin, query=query, lang="vi")
    await wait_until(
        p.page, "document.querySelector('#stat-compare[data-compare=same_period_last_year]')"
    )
    select = p.page.locator("#stats-compare")
    assert await select.input_value() == "same_period_last_year"
    await select.select_option("previous_period")
    await wait_until(p.page, "location.search.includes('compare=previous_period')")
    await select.select_option("none")
    await wait_until(p.page, "!location.search.includes('compare=')")
    assert p.errors == []
    await p.page.context.close()
