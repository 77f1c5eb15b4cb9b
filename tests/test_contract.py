"""The OpenAPI contract is the real one: /openapi.json and /ogc/api describe what the service
answers (GeoJSON bodies, problem+json errors, their statuses, media types and headers), and
Schemathesis finds no case where it answers otherwise, nor any 5xx.

The fuzz runs the Schemathesis CLI with the settings in schemathesis.toml (shared with
bench/fuzz_api.py, the larger run; docs/contract.md) against uvicorn on 127.0.0.1, over a
database of its own (migrated, boundaries, demo incidents, committed), dropped afterwards. A
small, derandomised budget: the same cases on every run. Every subprocess has a timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from conftest import Demo, live_app

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2025, 6, 1, tzinfo=UTC)
GEOJSON = "application/geo+json"
PROBLEM = "application/problem+json"
# per operation; the coverage phase (boundary and invalid values) adds its own fixed set
MAX_EXAMPLES = 2
RUN_TIMEOUT_S = 300

# the routes whose GeoJSON was declared `type: string` (issue 14, item 8), and the others
COLLECTIONS = [
    "/analysis/border-posts",
    "/analysis/border-zone",
    "/analysis/clusters",
    "/analysis/hotspots",
    "/border-posts",
    "/border-posts/nearest",
    "/borders",
    "/incidents/nearby",
    "/jurisdictions",
    "/jurisdictions/{code}/neighbours",
    "/jurisdictions/{a}/shared-zone/{b}",
    "/incidents",
]
FEATURES = ["/jurisdictions/{code}", "/incidents/{incident_id}"]


def _ref(content: dict[str, Any], media: str) -> str | None:
    ref: str | None = content.get(media, {}).get("schema", {}).get("$ref")
    return ref


async def test_geojson_routes_declare_features(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    validate(doc)
    for path in COLLECTIONS:
        content = doc["paths"][path]["get"]["responses"]["200"]["content"]
        assert list(content) == [GEOJSON], path
        assert content[GEOJSON]["schema"] == {"$ref": "#/components/schemas/FeatureCollection"}
    for path in FEATURES:
        content = doc["paths"][path]["get"]["responses"]["200"]["content"]
        assert content[GEOJSON]["schema"] == {"$ref": "#/components/schemas/Feature"}, path
    created = doc["paths"]["/incidents"]["post"]["responses"]
    assert _ref(created["201"]["content"], GEOJSON) == "#/components/schemas/Feature"
    assert created["201"]["headers"].keys() == {"ETag", "Location"}
    schemas = doc["components"]["schemas"]
    assert schemas["FeatureCollection"]["properties"]["features"]["items"] == {
        "$ref": "#/components/schemas/Feature"
    }
    # nothing declares a bare string where JSON comes back
    text = json.dumps(doc["paths"])
    assert '"application/geo+json": {"schema": {"type": "string"}}' not in text


async def test_every_error_is_a_problem(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in json.dumps(doc)
    assert "Problem" in doc["components"]["schemas"]
    seen: dict[str, set[str]] = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if status[0] in "45":
                    assert list(response["content"]) == [PROBLEM], (method, path, status)
                    assert _ref(response["content"], PROBLEM) == "#/components/schemas/Problem"
                    seen.setdefault(status, set()).add(f"{method.upper()} {path}")
            # a keyed operation says how the key is sent
            if "401" in op["responses"]:
                assert op["security"] == [{"bearer": []}, {"apiKey": []}], path
    assert set(seen) == {
        "400", "401", "403", "404", "408", "409", "412", "413", "415", "422", "428", "429", "503"
    }  # fmt: skip
    assert "GET /healthz" not in seen["401"] and "GET /readyz" in seen["503"]
    patch = doc["paths"]["/incidents/{incident_id}"]["patch"]["responses"]
    assert {"404", "409", "412", "413", "428"} <= patch.keys()
    limited = doc["paths"]["/me"]["get"]["responses"]["429"]
    assert limited["headers"]["Retry-After"]["required"] is True
    # the OGC API answers invalid parameters with 400: no 422 but the NUL one
    items = doc["paths"]["/ogc/collections/{collection_id}/items"]["get"]["responses"]
    assert {"400", "403", "404"} <= items.keys()
    assert "NUL" in items["422"]["description"]
    # request-body schemas refer to components, not to a `$defs` OpenAPI tools cannot resolve
    assert "#/$defs/" not in json.dumps(doc)


async def test_ogc_api_document_shares_the_definitions(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/ogc/api")).json()
    validate(doc)
    schemas = doc["components"]["schemas"]
    assert {"Problem", "Feature", "FeatureCollection", "Geometry"} <= schemas.keys()
    # OpenAPI 3.0: a null geometry is `nullable`, not a type list
    assert schemas["Feature"]["properties"]["geometry"] == {
        "allOf": [{"$ref": "#/components/schemas/Geometry"}],
        "nullable": True,
    }
    items = doc["paths"]["/collections/incidents/items"]["get"]["responses"]
    assert set(items) == {"200", "400", "401", "403", "404", "422", "429", "503"}


@dataclass(frozen=True)
class Target:
    """The server under test and the key the fuzz uses."""

    base: str
    key: str
    principal_id: int
    spare_id: int


@pytest.fixture
async def target(server_url: str, tmp_path: Path) -> AsyncIterator[Target]:
    # no limits: one principal sends thousands of requests, and the failed-authentication
    # limit must not turn the rest of the run into 429s
    env = {"BORDERWATCH_TILE_RATE_LIMIT": "", "BORDERWATCH_AUTH_FAILURE_LIMIT": ""}
    async with live_app(
        server_url, tmp_path / "server.log", name="bw_contract", demo=Demo(60, 14, NOW),
        principals={"fuzz": "admin", "fuzz spare": "officer"}, env=env,
    ) as live:  # fmt: skip
        fuzz, spare = live.keys["fuzz"], live.keys["fuzz spare"]
        yield Target(live.base, fuzz.key, fuzz.id, spare.id)


def fuzz(target: Target, document: str, report: Path) -> subprocess.CompletedProcess[str]:
    """`schemathesis run` against one OpenAPI document with the shared settings."""
    env = dict(
        os.environ,
        BORDERWATCH_FUZZ_PRINCIPAL=str(target.principal_id),
        BORDERWATCH_FUZZ_SPARE=str(target.spare_id),
    )
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", "schemathesis.toml",
        "run", target.base + document, "--header", f"Authorization: Bearer {target.key}",
        "--max-examples", str(MAX_EXAMPLES), "--report", "json",
        "--report-json-path", str(report), "--no-color",
    ]  # fmt: skip
    return subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )


async def test_schemathesis_finds_no_violation(target: Target, tmp_path: Path) -> None:
    for document in ("/openapi.json", "/ogc/api"):
        report = tmp_path / f"{document.strip('/').replace('/', '-')}.json"
        run = await asyncio.to_thread(fuzz, target, document, report)
        assert run.returncode == 0, run.stdout[-12_000:] + run.stderr[-3_000:]
        figures = json.loads(report.read_text())
        assert figures["failures"] == [] and figures["errors"] == []
        assert figures["operations"]["tested"] == figures["operations"]["selected"] > 20
        assert figures["test_cases"]["generated"] > 500
    # the key outlived the run (rotate/revoke of its own id were redirected: bench/fuzz_hooks.py)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {target.key}"}) as c:
        me = await c.get(target.base + "/me")
    assert me.status_code == 200 and me.json()["id"] == target.principal_id
