"""QGIS (Debian's python3-qgis + qgis-providers, headless) against a live server: every OGC API –
Features collection loads through the OAPIF provider with a Basic authentication configuration
(the key as the password) and counts what the server's `numberMatched` says, with and without
a subset filter; the incidents vector tiles load through the XYZ vector tile layer and draw.
Without the authentication configuration nothing loads.

QGIS runs in the SYSTEM Python (tests/qgis_probe.py; the venv has no `qgis`), twice per module
(with and without the key), against one server (`live_app`, log level info: the request lines
show what QGIS asked for). Every subprocess has a timeout; the server stops by itself.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from conftest import QGIS_PYTHON, QGIS_REASON, Demo, live_app, needs, qgis_env, qgis_importable

PROBE = Path(__file__).with_name("qgis_probe.py")
PROBE_TIMEOUT_S = 300
NOW = datetime(2025, 6, 1, tzinfo=UTC)
COUNT = 90

# A subset QGIS 3.22 evaluates itself (it sends no `filter`: it downloads every incident) ...
CATEGORY = "category = 'drug_trafficking' AND severity >= 4"
# ... and ones it translates into the `datetime` parameter (3.22 translates comparisons of a
# date-time field with a literal, nothing else): `>=` into `datetime=<t>/9999-12-31T00:00:00Z`,
# `<` into `datetime=0000-01-01T00:00:00Z/<t>` (its dummy bounds for an open end)
SINCE_AT = "2024-06-01T00:00:00Z"
SINCE = f"occurred_at >= '{SINCE_AT}'"
BEFORE = f"occurred_at < '{SINCE_AT}'"
SERVER_SIDE = {CATEGORY: {"filter": CATEGORY}, SINCE: {"datetime": f"{SINCE_AT}/.."},
               BEFORE: {"datetime": f"../{SINCE_AT}"}}  # fmt: skip
# distinct page sizes: the request lines (`limit=`) tell the incidents layers apart
PAGE = {None: 20, CATEGORY: 21, SINCE: 22, BEFORE: 23}
OTHER_PAGE = 500  # the other collections
QGIS_3_32 = 33200  # from this release on, QGIS sends a subset as a CQL2 `filter` (qgis/QGIS#52775)


pytestmark = needs(qgis_importable(), QGIS_REASON)


@dataclass
class Run:
    """One probe run: its report and the request lines the server logged meanwhile."""

    report: dict[str, Any]
    requests: list[str]

    def layer(self, collection: str, subset: str | None = None) -> dict[str, Any]:
        """The probe's result for a collection (and subset)."""
        found: list[dict[str, Any]] = [
            x for x in self.report["layers"]
            if x["collection"] == collection and x["subset"] == subset
        ]  # fmt: skip
        assert len(found) == 1, self.report
        return found[0]

    def pages(self, page_size: int) -> list[str]:
        """The incident item requests of the layer with this page size."""
        return [
            r for r in self.requests
            if "/ogc/collections/incidents/items?" in r
            and re.search(rf"[?&]limit={page_size}[& ]", r)
        ]  # fmt: skip


@dataclass
class Probed:
    """The server, what it says (over httpx), and QGIS's two runs."""

    key: str
    log: Path
    matched: dict[str, int]  # collection -> numberMatched
    subset_ids: dict[str, set[str]]  # subset -> the ids the server matches
    incident_ids: set[str]
    tiles: dict[str, Any]  # the incidents TileJSON
    with_key: Run
    without_key: Run


def _request_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if '"GET ' in line]


def _probe(log: Path, job: dict[str, Any], tmp: Path) -> Run:
    """Run the probe; its temporary folder (and whatever a crash leaves) goes under `tmp`."""
    before = len(log.read_text())
    done = subprocess.run(
        [QGIS_PYTHON, str(PROBE)], input=json.dumps(job),
        env=qgis_env(tmp),
        capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return Run(json.loads(done.stdout), _request_lines(log.read_text()[before:]))


async def _ids(c: httpx.AsyncClient, url: str, **params: str) -> set[str]:
    """The ids of every matching feature (one page), numberMatched of them."""
    r = await c.get(url, params={"limit": "10000", **params})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = {str(f["id"]) for f in body["features"]}
    assert body["numberMatched"] == len(ids)
    return ids


@pytest.fixture(scope="module")
async def probed(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Probed]:
    tmp = tmp_path_factory.mktemp("qgis")
    log = tmp / "server.log"
    async with live_app(
        server_url, log, name="bw_qgis", demo=Demo(COUNT, 5, NOW),
        principals={"qgis": "analyst"}, log_level="info",
    ) as live:  # fmt: skip
        key = live.keys["qgis"].key
        ogc = live.base + "/ogc"
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as c:
            listed = (await c.get(f"{ogc}/collections")).json()["collections"]
            matched: dict[str, int] = {}
            for coll in listed:
                r = await c.get(f"{ogc}/collections/{coll['id']}/items", params={"limit": "1"})
                assert r.status_code == 200, r.text
                assert "numberMatched" in r.json(), coll["id"]  # a small demo: always counted
                matched[coll["id"]] = r.json()["numberMatched"]
            items = f"{ogc}/collections/incidents/items"
            incident_ids = await _ids(c, items)
            subset_ids = {s: await _ids(c, items, **q) for s, q in SERVER_SIDE.items()}
            r = await c.get(f"{live.base}/tiles/incidents.json")
            assert r.status_code == 200, r.text
            tiles = r.json()
        layers = [
            {"collection": cid, "page_size": PAGE[None] if cid == "incidents" else OTHER_PAGE}
            for cid in matched
        ] + [
            {"collection": "incidents", "subset": s, "page_size": PAGE[s]}
            for s in SERVER_SIDE
        ]  # fmt: skip
        tile_job = {
            "template": tiles["tiles"][0], "zmin": tiles["minzoom"], "zmax": tiles["maxzoom"],
            "extent": tiles["bounds"], "layer": tiles["vector_layers"][0]["id"],
        }  # fmt: skip
        job = {"base": live.base, "key": key, "layers": layers}
        with_key = await asyncio.to_thread(
            _probe, log, job | {"tiles": tile_job | {"image": str(tmp / "key.png")}}, tmp
        )
        without_key = await asyncio.to_thread(
            _probe,
            log,
            job | {"auth": False, "layers": [{"collection": "incidents", "page_size": 20}],
                   "tiles": tile_job | {"image": str(tmp / "no-key.png")}},
            tmp,
        )  # fmt: skip
        yield Probed(key, log, matched, subset_ids, incident_ids, tiles, with_key, without_key)


def _pages(total: int, page_size: int) -> int:
    return -(-total // page_size)


def test_every_collection_counts_as_the_server(probed: Probed) -> None:
    """Each collection the key may read loads; QGIS's feature count and the features it
    downloads (page after page, each request with the key) are the server's numberMatched."""
    run = probed.with_key
    assert run.report["authcfg"] is True
    assert probed.matched["incidents"] == COUNT
    assert {"incidents", "border_posts", "jurisdictions_province", "border_segments",
            "hotspots"} <= set(probed.matched), probed.matched  # fmt: skip
    for collection, expected in probed.matched.items():
        got = run.layer(collection)
        assert got["valid"] and not got["source_has_key"], got
        assert (collection, got["feature_count"]) == (collection, expected)
        assert (collection, got["iterated"]) == (collection, expected)
    incidents = run.layer("incidents")
    assert incidents["ids"] is not None and set(incidents["ids"]) == probed.incident_ids
    assert incidents["geometry"] == "Point"
    # QGIS followed the server's `next` links, each page once
    assert len(run.pages(PAGE[None])) == _pages(COUNT, PAGE[None])


@pytest.mark.parametrize("subset", [CATEGORY, SINCE])
def test_a_subset_counts_as_the_server(probed: Probed, subset: str) -> None:
    """With a subset string (the layer's Filter… dialog) QGIS counts and downloads exactly
    what the server's filter matches, whether QGIS evaluates it or the server does."""
    run = probed.with_key
    expected = probed.subset_ids[subset]
    assert 0 < len(expected) < COUNT  # a filter that selects something, not everything
    got = run.layer("incidents", subset)
    assert got["valid"], got
    assert got["feature_count"] == len(expected)
    assert got["iterated"] == len(expected)
    assert set(got["ids"]) == expected
    pages = [unquote(p) for p in run.pages(PAGE[subset])]
    if subset == SINCE:
        # sent as the `datetime` parameter: only the matches were downloaded
        assert pages and all(f"datetime={SINCE_AT}/" in p for p in pages), pages
        assert len(pages) == _pages(len(expected), PAGE[SINCE])
    elif run.report["qgis_version_int"] < QGIS_3_32:
        # QGIS 3.22 sends no `filter` (its OAPIF provider has no CQL): it downloads every
        # incident and keeps the matches itself
        assert not any("filter=" in p for p in pages), pages
        assert len(pages) == _pages(COUNT, PAGE[CATEGORY])


def test_a_before_subset_counts_as_the_server(probed: Probed) -> None:
    """`occurred_at < t`: QGIS 3.22's open start reaches the server as year 0000."""
    expected = probed.subset_ids[BEFORE]
    assert 0 < len(expected) < COUNT
    pages = probed.with_key.pages(PAGE[BEFORE])
    assert pages and all('" 200' in p for p in pages), pages
    got = probed.with_key.layer("incidents", BEFORE)
    assert (got["feature_count"], got["iterated"]) == (len(expected), len(expected))
    assert set(got["ids"]) == expected


def test_vector_tiles_load_and_draw(probed: Probed) -> None:
    """The incidents tiles (the TileJSON's template, zoom range and bounds) load in an XYZ
    vector tile layer with the authentication configuration, and draw incidents."""
    tiles = probed.with_key.report["tiles"]
    assert tiles["valid"] and not tiles["source_has_key"], tiles
    assert tiles["errors"] == []
    assert tiles["zoom_range"] == [probed.tiles["minzoom"], probed.tiles["maxzoom"]]
    assert tiles["painted_px"] > 0, tiles
    fetched = [r for r in probed.with_key.requests if "/tiles/incidents/" in r]
    assert fetched and all('" 200' in r for r in fetched), fetched


def test_without_the_key_nothing_loads(probed: Probed) -> None:
    """No authentication configuration: the incidents layer is invalid and the tiles draw
    nothing, because the server refused every request (401)."""
    run = probed.without_key
    assert run.report["authcfg"] is False
    assert run.layer("incidents")["valid"] is False
    assert run.report["tiles"]["painted_px"] == 0
    assert run.requests and all('" 401' in r for r in run.requests), run.requests
    assert any("/tiles/incidents/" in r for r in run.requests)


def test_the_key_is_never_in_a_url(probed: Probed) -> None:
    """QGIS sent the key in the Authorization header only: no logged URL carries it."""
    text = probed.log.read_text()
    assert probed.key not in text
    assert not re.search(r"[?&](api_?key|key|token)=", text, re.IGNORECASE)
