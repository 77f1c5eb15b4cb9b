"""Database faults under load: PostgreSQL crashes (`pg_ctl stop -m immediate`, then held in
recovery for a while when it starts again) or shuts down (`-m fast`), stays down, and comes
back. Meanwhile the API answers 503 problem+json with Retry-After, never 500 and never a
dropped connection; afterwards it serves again without a restart, and every create it
acknowledged is stored.

The faults happen to a cluster of this module's own, so the rest of the suite is not disturbed.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app import db
from app.config import Settings
from app.db import create_engine, ensure_database
from app.embedded import EmbeddedCluster
from app.errors import CONNECTION_LOST, DATABASE_BUSY, DATABASE_DOWN
from app.main import create_app
from conftest import live_server, prepare_database, started_cluster

PROBLEM = "application/problem+json"
WORKERS = 4
MAX_REQUESTS = 4000  # the load loop's bound, whatever the timing
BEFORE_S, AFTER_S = 2.0, 2.5  # load before the fault, and after the database is back


@dataclass(frozen=True)
class Fault:
    """How PostgreSQL goes away and comes back."""

    stop_mode: str  # immediate: a crash; fast: a clean shutdown that ends every session (57P01)
    down_s: float  # how long it stays down
    recovery_s: float  # how long the restarted server stays in recovery (0: it starts normally)


FAULTS = {"crash": Fault("immediate", 3.0, 1.5), "shutdown": Fault("fast", 1.5, 0.0)}


@pytest.fixture(scope="module")
def fault_cluster() -> Iterator[EmbeddedCluster]:
    """A cluster this module may crash (the embedded one only: it stops and starts the server)."""
    if os.environ.get("DATABASE_URL"):
        pytest.skip("crashes its own embedded cluster; not run against DATABASE_URL")
    cluster = started_cluster("borderwatch-faults-")
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
async def fault_db(fault_cluster: EmbeddedCluster, settings: Settings) -> tuple[str, str]:
    """The URL of a migrated database with the default boundaries, and an admin key."""
    url = fault_cluster.url("borderwatch")
    await ensure_database(url)
    engine = create_engine(url, settings)
    try:
        keys = await prepare_database(engine, settings, principals={"faults admin": "admin"})
    finally:
        await engine.dispose()
    return url, keys["faults admin"].key


def incident(incident_id: str) -> dict[str, Any]:
    """A valid create with a client-supplied id (so a retry could not duplicate it)."""
    return {
        "id": incident_id,
        "category": "smuggling",
        "severity": 3,
        "occurred_at": "2025-03-04T05:06:07Z",
        "location": {"type": "Point", "coordinates": [106.7050, 21.9600]},
        "description": "fault test",
    }


@dataclass(frozen=True)
class Outcome:
    """One request of the fault run: when it was sent and answered, and how."""

    path: str  # with the method: "POST /incidents"
    sent: float
    answered: float
    status: int  # 0: no HTTP answer (a dropped connection or a timeout)
    content_type: str
    retry_after: str | None
    detail: str
    incident_id: str | None = None


async def _request(
    client: httpx.AsyncClient, method: str, path: str, incident_id: str | None = None
) -> Outcome:
    sent, label = time.monotonic(), f"{method} {path}"
    try:
        if incident_id is None:
            r = await client.request(method, path)
        else:
            r = await client.request(method, path, json=incident(incident_id))
    except httpx.HTTPError as exc:
        return Outcome(label, sent, time.monotonic(), 0, "", None, repr(exc), incident_id)
    content_type = r.headers.get("content-type", "")
    detail = r.json().get("detail", "") if content_type == PROBLEM else ""
    return Outcome(
        label,
        sent,
        time.monotonic(),
        r.status_code,
        content_type,
        r.headers.get("retry-after"),
        detail,
        incident_id,
    )


async def _creates(client: httpx.AsyncClient, done: asyncio.Event, out: list[Outcome]) -> None:
    """POST /incidents until `done` (or MAX_REQUESTS in all); a short pause after a 503 keeps
    the request count of the outage small (a real client would honour Retry-After)."""
    while not done.is_set() and len(out) < MAX_REQUESTS:
        outcome = await _request(client, "POST", "/incidents", str(uuid.uuid4()))
        out.append(outcome)
        if outcome.status != 201:
            await asyncio.sleep(0.05)


async def _probes(client: httpx.AsyncClient, done: asyncio.Event, out: list[Outcome]) -> None:
    """Readiness and the streamed incident list, four times a second."""
    while not done.is_set():
        out.append(await _request(client, "GET", "/readyz"))
        out.append(await _request(client, "GET", "/incidents?limit=5"))
        await asyncio.sleep(0.25)


async def _fault(cluster: EmbeddedCluster, fault: Fault, phases: dict[str, float]) -> None:
    """Stop PostgreSQL, keep it down, start it again; with `recovery_s`, held in recovery that
    long first (every connection refused with 57P03 "not accepting connections", as while it
    replays WAL after a crash), then promoted."""
    await asyncio.sleep(BEFORE_S)
    phases["stop"] = time.monotonic()
    await asyncio.to_thread(cluster.stop, fault.stop_mode)
    phases["down"] = time.monotonic()
    await asyncio.sleep(fault.down_s)
    if fault.recovery_s:
        signal = cluster.pgdata / "standby.signal"  # recovery that does not end by itself
        signal.touch()
        owner = cluster.pgdata.stat()
        os.chown(signal, owner.st_uid, owner.st_gid)
    phases["start"] = time.monotonic()
    if fault.recovery_s:
        await asyncio.to_thread(cluster.start, hot_standby="off")
        phases["starting"] = time.monotonic()
        await asyncio.sleep(fault.recovery_s)
        phases["promote"] = time.monotonic()
        await asyncio.to_thread(cluster.promote)
    else:
        await asyncio.to_thread(cluster.start)
    phases["up"] = time.monotonic()
    await asyncio.sleep(AFTER_S)


def _summary(outcomes: list[Outcome], phases: dict[str, float]) -> str:
    def phase(o: Outcome) -> str:
        names = [n for n, t in sorted(phases.items(), key=lambda kv: kv[1]) if o.sent >= t]
        return names[-1] if names else "before"

    counts = Counter((o.path, phase(o), o.status) for o in outcomes)
    details = Counter(o.detail.split(";")[0] for o in outcomes if o.status >= 500 or not o.status)
    return "; ".join(
        [f"{path} {ph} {status}: {n}" for (path, ph, status), n in sorted(counts.items())]
        + [f"'{detail}': {n}" for detail, n in details.most_common()]
    )


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
async def test_outage_and_recovery_under_load(
    fault_cluster: EmbeddedCluster, fault_db: tuple[str, str], fault: Fault, tmp_path: Path
) -> None:
    url, key = fault_db
    creates: list[Outcome] = []
    probes: list[Outcome] = []
    phases: dict[str, float] = {}
    log = tmp_path / "uvicorn.log"
    async with (
        live_server(url, log) as base,
        httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=20
        ) as client,
    ):
        done = asyncio.Event()
        load = [asyncio.create_task(_creates(client, done, creates)) for _ in range(WORKERS)]
        load.append(asyncio.create_task(_probes(client, done, probes)))
        try:
            await asyncio.wait_for(_fault(fault_cluster, fault, phases), timeout=60)
        finally:
            done.set()
            await asyncio.gather(*load)
        server_log = log.read_text(errors="replace")
    summary = _summary(creates + probes, phases)
    t0 = min(o.sent for o in creates)
    timeline = ", ".join(f"{name} {t - t0:.1f} s" for name, t in phases.items())
    print(f"\n{fault} ({timeline}): {len(creates)} creates, {len(probes)} probes; {summary}")

    # never a 500 or a dropped connection: 201 (stored) or 503 (retry), and the probes 200/503
    assert {o.status for o in creates} <= {201, 503}, summary
    assert {o.status for o in probes} <= {200, 503}, summary
    unavailable = [o for o in creates + probes if o.status == 503]
    for o in unavailable:
        assert o.content_type == PROBLEM and o.retry_after == "5", o
        assert o.detail in (DATABASE_DOWN, CONNECTION_LOST), o
    assert "Traceback" not in server_log, server_log[-3000:]

    # the fault happened: answers were 503 while PostgreSQL was down and while it was starting
    # (each request sent and answered inside the phase)
    def within(start: str, end: str) -> list[Outcome]:
        return [
            o for o in creates + probes if o.sent >= phases[start] and o.answered <= phases[end]
        ]

    paths = {"POST /incidents", "GET /readyz", "GET /incidents?limit=5"}
    down = within("down", "start")
    assert down and all(o.status == 503 for o in down), summary
    assert {o.path for o in down} == paths
    if fault.recovery_s:
        starting = within("starting", "promote")
        assert starting and all(o.status == 503 for o in starting), summary
        assert {o.path for o in starting} == paths

    # recovery without a restart: everything sent once PostgreSQL was up again was served
    after = [o for o in creates + probes if o.sent >= phases["up"]]
    assert sum(o.status == 201 for o in after) >= WORKERS, summary
    assert all(o.status in (200, 201) for o in after), summary

    # every acknowledged create is stored (read directly, after the crash and the recovery)
    acknowledged = {o.incident_id for o in creates if o.status == 201}
    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, database=u.database
    )
    try:
        rows = await conn.fetch(
            "SELECT id::text FROM incident WHERE id = ANY($1::uuid[])", list(acknowledged)
        )
    finally:
        await conn.close()
    assert {r[0] for r in rows} == acknowledged
    assert sum(o.status == 201 and o.sent < phases["stop"] for o in creates) >= WORKERS


async def test_no_free_connection_is_503(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection of a tiny pool is in use: a request waits POOL_TIMEOUT_S, then answers
    503 problem+json with Retry-After; once one is free it is served."""
    monkeypatch.setattr(db, "POOL_TIMEOUT_S", 0.2)
    url = engine.url.render_as_string(hide_password=False)
    settings = Settings(
        environment="test", database_url=url, db_pool_size=1, public_reference_data=True
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        async with AsyncExitStack() as held:
            for _ in range(2):  # pool_size 1 + max_overflow 1
                await held.enter_async_context(app.state.engine.connect())
            r = await client.get("/border-posts")
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == PROBLEM and r.headers["retry-after"] == "5"
            assert r.json()["detail"] == DATABASE_BUSY
        assert (await client.get("/border-posts")).status_code == 200
