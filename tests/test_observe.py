"""Observability (app/observe/): /metrics (exact counts, route templates, no incident data,
who may read it), the request id (given or made, in the header, the problem body and the log
line), JSON log lines, and /readyz naming the dependency that failed."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app import db
from app.auth.scope import NATIONAL
from app.config import Settings
from app.db import get_session
from app.errors import STATEMENT_TIMEOUT
from app.incidents.filters import IncidentFilter
from app.main import create_app
from app.observe import logs
from app.observe.context import request_id
from app.observe.metrics import UNMATCHED
from conftest import live_app, make_key

PROBLEM = "application/problem+json"
INCIDENT = "/incidents/{incident_id}"
TILE = "/tiles/incidents/{z}/{x}/{y}.mvt"
UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _app(engine: AsyncEngine, session: AsyncSession, settings: Settings) -> FastAPI:
    """A fresh app whose requests share the test's session (as conftest.app_client)."""
    app = create_app(settings, engine=engine)

    async def _session() -> AsyncIterator[AsyncSession]:
        yield session

    app.dependency_overrides[get_session] = _session
    return app


def _client(app: FastAPI, key: str | None = None, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client of `app` from `address`, sending `key`."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)


def _parse(exposition: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


async def _scrape(client: httpx.AsyncClient) -> tuple[str, Samples]:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text, _parse(r.text)


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _incident(description: str) -> dict[str, Any]:
    return {
        "category": "smuggling",
        "severity": 3,
        "occurred_at": "2025-03-04T05:06:07Z",
        "location": {"type": "Point", "coordinates": [106.7050, 21.9600]},
        "location_precision_m": 50,
        "description": description,
        "unit": f"Đồn {description}",
    }


async def test_requests_are_counted_by_route_template(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    key = await make_key(session, "admin")
    async with _client(_app(engine, session, settings), key) as c:
        _, before = await _scrape(c)
        assert _value(before, "borderwatch_http_requests_total", route="/healthz",
                      method="GET", status="200") == 0  # fmt: skip
        created = await c.post("/incidents", json=_incident("counted"))
        assert created.status_code == 201, created.text
        ident = created.json()["id"]
        for _ in range(3):
            assert (await c.get(f"/incidents/{ident}")).status_code == 200
        missing = uuid.uuid4()
        for _ in range(2):
            assert (await c.get(f"/incidents/{missing}")).status_code == 404
        for _ in range(4):
            assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/no/such/thing")).status_code == 404
        text_, after = await _scrape(c)

    def count(route: str, method: str, status: str) -> float:
        return _value(after, "borderwatch_http_requests_total", route=route, method=method,
                      status=status)  # fmt: skip

    assert count(INCIDENT, "GET", "200") == 3
    assert count(INCIDENT, "GET", "404") == 2
    assert count("/incidents", "POST", "201") == 1
    assert count("/healthz", "GET", "200") == 4
    assert count(UNMATCHED, "GET", "404") == 1
    assert count("/metrics", "GET", "200") == 1  # the first scrape (this one ends after)
    durations = "borderwatch_http_request_duration_seconds_count"
    assert _value(after, durations, route=INCIDENT, method="GET") == 5
    assert _value(after, durations, route="/healthz", method="GET") == 4
    inf = _value(after, "borderwatch_http_request_duration_seconds_bucket", route="/healthz",
                 method="GET", le="+Inf")  # fmt: skip
    assert inf == 4
    assert ident not in text_ and str(missing) not in text_ and "/no/such" not in text_


async def test_no_incident_data_in_metrics(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    key = await make_key(session, "admin")
    secret = f"Bí mật {uuid.uuid4().hex[:12]}"
    async with _client(_app(engine, session, settings), key) as c:
        ids = []
        for n in range(2):
            r = await c.post("/incidents", json=_incident(f"{secret} {n}"))
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        for ident in ids:
            assert (await c.get(f"/incidents/{ident}")).status_code == 200
            assert (await c.get(f"/incidents/{ident}/history")).status_code in (200, 404)
        assert (await c.get("/incidents", params={"q": secret})).status_code == 200
        assert (await c.get("/tiles/incidents/7/101/56.mvt")).status_code == 200
        exposition, samples = await _scrape(c)
    for ident in ids:
        assert ident not in exposition and ident.replace("-", "") not in exposition
    assert secret not in exposition and "Bí mật" not in exposition
    for _name, labels in samples:
        for label, value in labels:
            assert not UUID.search(value), (label, value)
            if label == "route":
                assert value == UNMATCHED or value.startswith("/"), value


async def test_tiles_by_layer_and_revalidation(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    key = await make_key(session, "admin")
    async with _client(_app(engine, session, settings), key) as c:
        first = await c.get("/tiles/incidents/7/101/56.mvt")
        assert first.status_code == 200
        again = await c.get(
            "/tiles/incidents/7/101/56.mvt", headers={"If-None-Match": first.headers["etag"]}
        )
        assert again.status_code == 304
        assert (await c.get("/tiles/borders/5/25/14.mvt")).status_code == 200
        _, samples = await _scrape(c)
    tiles = "borderwatch_tile_responses_total"
    assert _value(samples, tiles, layer="incidents", status="200") == 1
    assert _value(samples, tiles, layer="incidents", status="304") == 1
    assert _value(samples, tiles, layer="borders", status="200") == 1
    assert _value(samples, "borderwatch_http_requests_total", route=TILE, method="GET",
                  status="304") == 1  # fmt: skip


async def test_rate_limit_refusals_statement_timeouts_and_import_rows(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    settings = Settings(environment="test", database_url=None, rate_limit="2/minute")
    key = await make_key(session, "admin")
    async with _client(_app(engine, session, settings), key) as c:
        rows = "lat,lon,date,category,source_id\n10.386,105.435,2024-05-01,other,a\n" \
               "21.028,105.854,2024-05-02,fraud,b\n"  # fmt: skip
        imported = await c.post(
            "/incidents/import", content=rows.encode(), headers={"content-type": "text/csv"},
            params={"source": f"metrics test {uuid.uuid4().hex[:6]}"},
        )  # fmt: skip
        assert imported.status_code == 200, imported.text
        assert imported.json()["inserted"] == 2
        assert (await c.get("/me")).status_code == 200
        assert (await c.get("/me")).status_code == 429  # the import, /me, then over
        assert (await c.get("/me")).status_code == 429
        # the requests' statements share the test's transaction: a 1 ms timeout cancels one
        await session.execute(text("SET LOCAL statement_timeout = 1"))
        limited = Settings(environment="test", database_url=None, rate_limit="")
        async with _client(_app(engine, session, limited), key) as other:
            timed_out = await other.get(
                "/analysis/hotspots", params={"area": "border-zone", "cell_km": 2}
            )
            assert timed_out.status_code == 503 and timed_out.json()["detail"] == STATEMENT_TIMEOUT
            _, other_samples = await _scrape(other)
        _, samples = await _scrape(c)
    assert _value(samples, "borderwatch_rate_limit_refusals_total", limit="requests") == 2
    assert _value(samples, "borderwatch_rate_limit_refusals_total", limit="tiles") == 0
    assert _value(samples, "borderwatch_import_rows_total", result="inserted") == 2
    assert _value(samples, "borderwatch_import_rows_total", result="skipped") == 0
    assert _value(samples, "borderwatch_db_statement_timeouts_total") == 0
    assert _value(other_samples, "borderwatch_db_statement_timeouts_total") == 1


async def test_pool_in_use_and_waiting(engine: AsyncEngine) -> None:
    """A pool of 1 (+1 overflow) with both connections out: a third checkout waits, and
    /metrics says so until a connection comes back."""
    url = engine.url.render_as_string(hide_password=False)
    settings = Settings(environment="test", database_url=url, db_pool_size=1)
    app_engine = db.create_engine(url, settings)
    app = create_app(settings, engine=app_engine)

    def gauges() -> tuple[float, float]:
        samples = _parse(app.state.metrics.exposition().decode())
        in_use = _value(samples, "borderwatch_db_pool_connections", state="in_use")
        return in_use, _value(samples, "borderwatch_db_pool_waiting")

    async def third() -> None:
        async with app_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    try:
        assert gauges() == (0, 0)
        async with AsyncExitStack() as stack:
            held = [await stack.enter_async_context(app_engine.connect()) for _ in range(2)]
            for conn in held:
                await conn.execute(text("SELECT 1"))
            assert gauges() == (2, 0)
            waiter = asyncio.create_task(third())
            for _ in range(200):
                if gauges()[1] == 1:
                    break
                await asyncio.sleep(0.01)
            assert gauges() == (2, 1)
            await held[0].close()
            await asyncio.wait_for(waiter, 5)
            assert gauges() == (1, 0)
    finally:
        await app_engine.dispose()


async def test_live_feed_subscribers(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    app = _app(engine, session, settings)
    hub = app.state.event_hub

    def subscribers() -> float:
        samples = _parse(app.state.metrics.exposition().decode())
        return _value(samples, "borderwatch_live_feed_subscribers")

    async def listen() -> None:  # as GET /events does: every batch or heartbeat at once
        async for _ in hub.subscribe(IncidentFilter(scope=NATIONAL), None, 0.05):
            pass

    async def until(n: int) -> None:
        for _ in range(600):
            if subscribers() == n:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{subscribers()} subscribers, expected {n}")

    listeners = []
    try:
        assert subscribers() == 0
        listeners = [asyncio.create_task(listen()) for _ in range(2)]
        await until(2)
        listeners[0].cancel()
        await asyncio.gather(listeners[0], return_exceptions=True)
        assert subscribers() == 1
        listeners[1].cancel()
        await asyncio.gather(listeners[1], return_exceptions=True)
        assert subscribers() == 0
    finally:
        for task in listeners:
            task.cancel()
        await hub.close()


async def test_metrics_access(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    admin = await make_key(session, "admin")
    officer = await make_key(session, "officer")
    app = _app(engine, session, settings)
    outside = "203.0.113.7"
    async with _client(app, None, outside) as c:
        r = await c.get("/metrics")
        assert r.status_code == 401 and r.headers["content-type"] == PROBLEM
        assert "borderwatch_" not in r.text
    async with _client(app, officer, outside) as c:
        r = await c.get("/metrics")
        assert r.status_code == 403 and r.json()["allowed_roles"] == ["admin"]
    async with _client(app, admin, outside) as c:
        assert (await c.get("/metrics")).status_code == 200
    async with _client(app, None, "127.0.0.1") as c:
        assert (await c.get("/metrics")).status_code == 200  # the operator network
    async with _client(app, None, "::1") as c:
        assert (await c.get("/metrics")).status_code == 200
    closed = Settings(environment="test", database_url=None, metrics_networks=[])
    async with _client(_app(engine, session, closed), None, "127.0.0.1") as c:
        assert (await c.get("/metrics")).status_code == 401
    wide = Settings(
        environment="test", database_url=None, metrics_networks=[IPv4Network("203.0.113.0/24")]
    )
    async with _client(_app(engine, session, wide), None, outside) as c:
        assert (await c.get("/metrics")).status_code == 200


async def test_request_id_round_trip(
    engine: AsyncEngine, session: AsyncSession, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    key = await make_key(session, "admin")
    async with _client(_app(engine, session, settings), key) as c:
        me = (await c.get("/me")).json()
        caplog.clear()
        given = "unit-7.retry:2_Ab"
        with caplog.at_level(logging.INFO, logger="borderwatch.requests"):
            bad = await c.get("/incidents", params={"limit": "many"},
                              headers={"X-Request-ID": given})  # fmt: skip
            ok = await c.get("/healthz", headers={"X-Request-ID": given})
            made = await c.get("/me")
            unsafe = await c.get("/me", headers={"X-Request-ID": "a b<script>"})
            too_long = await c.get("/me", headers={"X-Request-ID": "x" * 65})
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    assert bad.headers["x-request-id"] == given and bad.json()["request_id"] == given
    assert ok.headers["x-request-id"] == given
    for r in (made, unsafe, too_long):
        assert r.status_code == 200
        assert re.fullmatch(r"[0-9a-f]{24,}", r.headers["x-request-id"]), r.headers
    assert len({made.headers["x-request-id"], unsafe.headers["x-request-id"]}) == 2

    lines = [rec for rec in caplog.records if rec.name == "borderwatch.requests"]
    assert len(lines) == 5
    line = next(rec for rec in lines if rec.__dict__["status"] == 422)
    fields = {k: line.__dict__[k] for k in logs.REQUEST_FIELDS}
    assert fields["request_id"] == given and fields["route"] == "/incidents"
    assert fields["method"] == "GET" and fields["duration_ms"] >= 0
    ids = [rec.__dict__["request_id"] for rec in lines]
    assert ids[2] == made.headers["x-request-id"]
    assert lines[2].__dict__["principal_id"] == me["id"]
    # as JSON: one object per line with the fields, never the key
    for rec in lines:
        out = logs.formatter("json").format(rec)
        assert "\n" not in out and key not in out
        parsed = json.loads(out)
        assert {"time", "level", "logger", "message", *logs.REQUEST_FIELDS} <= parsed.keys()
    assert json.loads(logs.formatter("json").format(lines[2]))["principal_id"] == me["id"]


def test_json_lines_carry_the_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(Settings(environment="local", log_format="json"))
    try:
        token = request_id.set("abc123")
        try:
            logging.getLogger("borderwatch").warning("database unavailable on %s", "/x")
        finally:
            request_id.reset(token)
        logging.getLogger("app.events.hub").warning("outside any request")
    finally:
        logs.configure(Settings(environment="test"))
        logging.getLogger("uvicorn.access").setLevel(logging.NOTSET)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["request_id"] == "abc123" and lines[0]["level"] == "WARNING"
    assert lines[0]["message"] == "database unavailable on /x"
    assert lines[1]["logger"] == "app.events.hub" and "request_id" not in lines[1]


async def test_served_log_lines_are_json(server_url: str, tmp_path: Path) -> None:
    """uvicorn with BORDERWATCH_LOG_FORMAT=json: one JSON object per request, uvicorn's own
    access line gone."""
    log = tmp_path / "server.log"
    env = {"BORDERWATCH_LOG_FORMAT": "json"}
    async with (
        live_app(server_url, log, name="bw_observe", boundaries=False, env=env,
                 log_level="info") as live,
        httpx.AsyncClient(base_url=live.base) as c,
    ):  # fmt: skip
        r = await c.get("/nothing-here", headers={"X-Request-ID": "served-1"})
        assert r.status_code == 404 and r.json()["request_id"] == "served-1"
        await asyncio.sleep(0.2)
        lines = log.read_text().splitlines()
    mine = [json.loads(line) for line in lines if '"served-1"' in line]
    assert len(mine) == 1 and mine[0]["status"] == 404 and mine[0]["route"] == UNMATCHED
    assert not [line for line in lines if "nothing-here" in line]  # no uvicorn access line


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_readyz_names_the_failed_dependency(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    url = f"postgresql+asyncpg://nobody:secret@127.0.0.1:{_closed_port()}/nothing"
    down = db.create_engine(url, settings)
    try:
        transport = httpx.ASGITransport(app=create_app(settings, engine=down))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            r = await c.get("/readyz")
    finally:
        await down.dispose()
    assert r.status_code == 503 and r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["dependency"] == "database" and body["title"] == "Not ready"
    assert body["request_id"] == r.headers["x-request-id"]


async def test_a_stalled_subscriber_holds_up_nobody(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    """A subscriber that stops reading at a heartbeat (its client's write stalls) does not keep
    the others from theirs: the hub yields heartbeats with its lock released."""
    app = _app(engine, session, settings)
    hub = app.state.event_hub
    stalled = hub.subscribe(IncidentFilter(scope=NATIONAL), None, 0.05)
    beats = 0

    async def listen() -> None:
        nonlocal beats
        async for batch in hub.subscribe(IncidentFilter(scope=NATIONAL), None, 0.05):
            if batch == []:
                beats += 1

    listener = None
    try:
        assert await anext(stalled) == []  # its heartbeat, and then it is not read again
        listener = asyncio.create_task(listen())
        await asyncio.sleep(1.0)
        assert beats >= 5, beats  # ~20 at 0.05 s; none while a stalled one held the lock
    finally:
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        await stalled.aclose()
        await hub.close()
