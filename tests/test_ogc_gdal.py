"""GDAL's OGC API – Features driver (OAPIF) against a live server: ogrinfo lists the
collections, ogr2ogr copies filtered incidents into a GeoPackage across several pages.

The server is uvicorn in a subprocess on 127.0.0.1 (a free port), over a database of its own
whose data is committed (migrated, boundaries, demo incidents); everything is dropped after.
The API key reaches GDAL through its GDAL_HTTP_HEADERS config option. Every subprocess has a
timeout.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyogrio
import pytest
from test_fields import documented

from conftest import Demo, live_app, needs

pytestmark = needs(
    shutil.which("ogr2ogr") is not None,
    "gdal-bin is not installed (scripts/install-system-deps.sh)",
)

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2025, 6, 1, tzinfo=UTC)
PAGE = 7
TIMEOUT_S = 120


@dataclass
class Served:
    base: str
    key: str
    log: Path

    def gdal(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a GDAL utility with the key in GDAL_HTTP_HEADERS."""
        cmd = [args[0], "--config", "GDAL_HTTP_HEADERS", f"Authorization: Bearer {self.key}",
               *args[1:]]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        assert result.returncode == 0, result.stderr
        return result

    def requests(self) -> list[str]:
        """The request lines uvicorn logged."""
        return [line for line in self.log.read_text().splitlines() if '"GET ' in line]


@pytest.fixture
async def served(server_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    async with live_app(
        server_url, tmp_path / "server.log", name="bw_gdal", demo=Demo(90, 5, NOW),
        principals={"gdal": "analyst"}, log_level="info",
    ) as live:  # fmt: skip
        yield Served(live.base + "/ogc", live.keys["gdal"].key, live.log)


async def _api(served: Served, **params: str) -> dict[str, Any]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {served.key}"}) as c:
        r = await c.get(
            f"{served.base}/collections/incidents/items", params={"limit": "10000", **params}
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


async def test_ogrinfo_lists_the_collections(served: Served) -> None:
    out = served.gdal("ogrinfo", "-ro", f"OAPIF:{served.base}").stdout
    layers = dict(re.findall(r"^\d+: (\w+) \(title: .*\) \((.+)\)$", out, re.MULTILINE))
    assert layers == {
        "incidents": "Point",
        "border_posts": "Point",
        "jurisdictions_country": "Multi Polygon",
        "jurisdictions_province": "Multi Polygon",
        "jurisdictions_commune": "Multi Polygon",  # one collection per level loaded
        "border_segments": "Multi Line String",
        "hotspots": "Polygon",
    }, out
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {served.key}"}) as c:
        posts = (await c.get(f"{served.base}/collections/border_posts/items")).json()
    summary = served.gdal("ogrinfo", "-ro", "-so", f"OAPIF:{served.base}", "border_posts").stdout
    assert f"Feature Count: {posts['numberMatched']}" in summary, summary


async def test_ogr2ogr_copies_a_cql2_filter_across_pages(served: Served, tmp_path: Path) -> None:
    where = "occurred_at >= '2024-01-01T00:00:00Z' AND severity >= 2"
    api = await _api(
        served,
        filter="occurred_at >= TIMESTAMP('2024-01-01T00:00:00Z') AND severity >= 2",
    )
    expected = {f["id"] for f in api["features"]}
    assert api["numberMatched"] == len(expected) > 2 * PAGE  # at least 3 pages
    out = tmp_path / "filtered.gpkg"
    served.gdal("ogr2ogr", "-f", "GPKG", str(out), f"OAPIF:{served.base}", "incidents",
                "-oo", f"PAGE_SIZE={PAGE}", "-where", where)  # fmt: skip
    table = pyogrio.read_dataframe(out, layer="incidents")
    assert len(table) == api["numberMatched"]
    assert set(table["id"]) == expected
    # the filter ran on the server (GDAL sent it as CQL text) and GDAL followed `next` links
    # (GDAL's first request, for the schema, has no filter)
    pages = [
        r for r in served.requests()
        if "/collections/incidents/items" in r and "filter=" in r and "limit=10000" not in r
    ]  # fmt: skip
    assert all("filter-lang=cql-text" in r for r in pages), pages
    assert len(pages) == -(-len(expected) // PAGE) >= 3


async def test_ogr2ogr_with_datetime_parameter(served: Served, tmp_path: Path) -> None:
    interval = "2024-06-01T00:00:00Z/.."
    api = await _api(served, datetime=interval, category="smuggling")
    api_all = await _api(served, datetime=interval)
    assert api_all["numberMatched"] > 2 * PAGE
    out = tmp_path / "recent.gpkg"
    # the dataset URL's own parameters go with every request GDAL makes
    served.gdal("ogr2ogr", "-f", "GPKG", str(out),
                f"OAPIF:{served.base}/collections/incidents?datetime={interval}",
                "-oo", f"PAGE_SIZE={PAGE}")  # fmt: skip
    table = pyogrio.read_dataframe(out)
    assert len(table) == api_all["numberMatched"]
    assert set(table["id"]) == {f["id"] for f in api_all["features"]}
    since = pd.Timestamp("2024-06-01", tz="UTC")
    assert (pd.to_datetime(table["occurred_at"], utc=True) >= since).all()
    # and a CQL2 equality on top of the datetime parameter
    out2 = tmp_path / "smuggling.gpkg"
    served.gdal("ogr2ogr", "-f", "GPKG", str(out2),
                f"OAPIF:{served.base}/collections/incidents?datetime={interval}",
                "-oo", f"PAGE_SIZE={PAGE}", "-where", "category = 'smuggling'")  # fmt: skip
    table2 = pyogrio.read_dataframe(out2)
    assert set(table2["id"]) == {f["id"] for f in api["features"]}
    assert len(table2) == api["numberMatched"]


async def test_basic_authentication_as_gis_tools_send_it(served: Served) -> None:
    """GDAL with HTTP Basic (the key as the password: QGIS 3.22's and ArcGIS's way, no
    plug-in) reads what the Bearer key reads, and the key is never in a logged URL."""
    api = await _api(served)
    cmd = ["ogrinfo", "-ro", "-so", "--config", "GDAL_HTTP_AUTH", "BASIC",
           "--config", "GDAL_HTTP_USERPWD", f"qgis:{served.key}",
           f"OAPIF:{served.base}", "incidents"]  # fmt: skip

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)

    done = await asyncio.to_thread(run, cmd)
    assert done.returncode == 0, done.stderr
    assert f"Feature Count: {api['numberMatched']}" in done.stdout, done.stdout
    refused = await asyncio.to_thread(run, [*cmd[:8], "qgis:bw_not_a_key", *cmd[9:]])
    assert refused.returncode != 0 and "401" in refused.stderr, refused.stderr
    assert all(served.key not in line for line in served.log.read_text().splitlines())


async def test_gdal_reads_the_documented_fields_without_warnings(served: Served) -> None:
    """GDAL's OAPIF driver guesses each field's type from the first page: it reads the names and
    types of docs/fields.md (numbers as Real, not Integer; names beside codes; `jurisdictions`
    as one string, not a list), and warns about nothing."""
    out = served.gdal("ogrinfo", "-ro", "-so", f"OAPIF:{served.base}", "incidents")
    fields = re.findall(r"^(\w+): (\w+) \(", out.stdout, re.MULTILINE)
    ogr = {"uuid": "String", "string": "String", "integer": "Integer", "number": "Real",
           "datetime": "DateTime"}  # fmt: skip
    expected = [(name, ogr[kind]) for name, kind, _ in documented()]
    assert [f for f in fields if f[0] not in ("Geometry", "Layer", "Extent")] == expected, (
        out.stdout
    )
    assert "Warning" not in out.stderr and "ERROR" not in out.stderr, out.stderr
