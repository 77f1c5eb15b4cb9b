"""Read replicas (app/replicas.py) against a real streaming replica of the test cluster.

A hot standby made with `pg_basebackup -R` (tests/replica.py) serves the lag-tolerant reads.
Pausing its WAL replay proves where a read was answered: a row committed on the primary after
the pause is missing from what the replica serves, and present on the primary. The app runs
in-process (ASGI transport) with its lifespan, over a database of its own on the primary whose
writes are committed (the replica only sees committed WAL).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from replica import primary_lsn, replay, start_standby, wait_replayed, wait_streaming
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import create_engine, ensure_database
from app.embedded import EmbeddedCluster
from app.main import create_app
from app.replicas import LSN_COOKIE, LSN_HEADER, format_lsn, parse_lsn
from conftest import Key, _free_port, database_on, drop_database, prepare_database

PROBLEM = "application/problem+json"
LON, LAT = 106.705, 21.96  # near Hữu Nghị, Lạng Sơn (VN-P20 today)
SCOPED = "VN-P20"
OTHER_PROVINCE = "VN-44"  # a key of a province nobody has used yet: its zone is not built
VISIBLE_WAIT_S = 30.0
COPY_TRIES = 10


@dataclass
class Served:
    """The app over a database of its own on the primary, its replica and their URLs."""

    app: FastAPI
    engine: AsyncEngine
    url: str
    replica_url: str
    standby: EmbeddedCluster
    keys: dict[str, Key]


@dataclass
class Database:
    """The app's database on the primary: its name, URL and principals."""

    name: str
    url: str
    keys: dict[str, Key]


async def _copy_of(server_url: str, shared: AsyncEngine, name: str) -> bool:
    """Make database `name` a copy of the run's shared, migrated database with its boundaries
    (CREATE DATABASE … TEMPLATE: seconds, where loading the boundaries takes minutes); False
    when that database is in use (a template must have no other connection)."""
    await shared.dispose()  # its idle pooled connections; the pool opens new ones when needed
    template = shared.url.database
    u = make_url(server_url)
    conn = await asyncpg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, database="postgres"
    )
    try:
        for _ in range(COPY_TRIES):
            try:
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                return True
            except asyncpg.ObjectInUseError:
                await asyncio.sleep(0.5)
        return False
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def database(
    server_url: str, cluster: EmbeddedCluster | None, engine: AsyncEngine
) -> AsyncIterator[Database]:
    """A database of its own on the tests' cluster, migrated, with boundaries and principals,
    committed before the replica is copied (so the copy holds it and replays little)."""
    if cluster is None:
        pytest.skip("a replica is made of the tests' own cluster (DATABASE_URL is set)")
    name = f"bw_replica_{uuid.uuid4().hex[:8]}"
    url = database_on(server_url, name)
    copied = await _copy_of(server_url, engine, name)
    if not copied:
        await ensure_database(url)
    settings = Settings(environment="test", database_url=url)
    own = create_engine(url, settings)
    try:
        keys = await prepare_database(
            own, settings, boundaries=not copied,
            principals={"admin": "admin", "analyst": "analyst"},
        )  # fmt: skip
        async with own.begin() as conn:  # keys bound to a province
            keys["scoped officer"] = await _scoped_key(conn, "officer", SCOPED)
            keys["scoped analyst"] = await _scoped_key(conn, "analyst", OTHER_PROVINCE)
        await own.dispose()
        yield Database(name, url, keys)
    finally:
        await own.dispose()
        await drop_database(server_url, name)


@pytest.fixture(scope="module")
def standby(cluster: EmbeddedCluster | None, database: Database) -> Iterator[EmbeddedCluster]:
    """A streaming replica of the tests' own cluster, stopped and deleted afterwards."""
    assert cluster is not None
    c = start_standby(cluster, _free_port())
    try:
        yield c
    finally:
        c.destroy()


@pytest.fixture(scope="module")
async def served(database: Database, standby: EmbeddedCluster) -> AsyncIterator[Served]:
    """The app with BORDERWATCH_READ_DATABASE_URL pointing at the replica."""
    await wait_streaming(standby)
    replica_url = standby.url(database.name)
    settings = Settings(
        environment="test",
        database_url=database.url,
        read_database_url=[replica_url],
        read_check_s=0.2,
        read_max_lag_s=30,
        rate_limit="",
        tile_rate_limit="",
    )
    await wait_replayed(replica_url, await primary_lsn(database.url))
    engine = create_engine(database.url, settings)
    try:
        app = create_app(settings, engine=engine)
        async with app.router.lifespan_context(app):
            yield Served(app, engine, database.url, replica_url, standby, database.keys)
    finally:
        await engine.dispose()


async def _scoped_key(conn: Any, role: str, code: str) -> Key:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.auth import service

    session = AsyncSession(bind=conn)
    record, key = await service.create_principal(
        session=session, name=f"{code} {role}", role=role, jurisdiction_code=code,
        unit=None, actor="test",
    )  # fmt: skip
    await session.flush()
    return Key(int(record["id"]), key)


def client(served: Served, key: str, **headers: str) -> httpx.AsyncClient:
    """A client of the app (its own cookie jar) sending `key`."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=served.app),
        base_url="http://borderwatch.test",
        headers={"Authorization": f"Bearer {key}", **headers},
    )


def incident() -> dict[str, Any]:
    return {
        "category": "smuggling",
        "severity": 3,
        "occurred_at": "2025-03-04T05:06:07Z",
        "location": {"type": "Point", "coordinates": [LON, LAT]},
        "description": "Hàng lậu qua đường mòn",
    }


async def listed(c: httpx.AsyncClient, **params: str) -> set[str]:
    """The ids of GET /incidents (200 asserted)."""
    r = await c.get("/incidents", params={"limit": "1000", **params})
    assert r.status_code == 200, r.text
    return {f["id"] for f in r.json()["features"]}


async def _replicas(c: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await c.get("/readyz")
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["replicas"]
    return found


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The web-mercator tile holding a point (the slippy-map formula)."""
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


async def test_reads_wait_for_the_writers_own_write_and_reach_others_after_replay(
    served: Served,
) -> None:
    officer = served.keys["scoped officer"].key
    other = served.keys["analyst"].key
    async with client(served, officer) as writer, client(served, other) as reader:
        await replay(served.replica_url, paused=True)
        try:
            assert (await _replicas(reader))[0]["replay_paused"] is True
            before = await primary_lsn(served.url)
            made = await writer.post("/incidents", json=incident())
            assert made.status_code == 201, made.text
            new = made.json()["id"]
            shown = made.headers[LSN_HEADER]
            lsn = parse_lsn(shown)
            assert lsn is not None and format_lsn(lsn) == shown
            assert lsn > before  # the write's WAL, after the position taken before it
            cookie = made.headers["set-cookie"]
            for part in (f"{LSN_COOKIE}={shown}", "HttpOnly", "SameSite=Strict", "Path=/"):
                assert part in cookie
            # another client reads from the replica, whose replay is paused: not there yet
            assert new not in await listed(reader)
            # the primary has it: the reads above came from the replica
            async with served.engine.connect() as conn:
                found = await conn.execute(text("SELECT 1 FROM incident WHERE id = :i"), {"i": new})
                assert found.scalar() == 1
            # the writer's cookie sends its reads to the primary until the replica has it
            assert writer.cookies.get(LSN_COOKIE) == shown
            assert new in await listed(writer)
            # the header echoed back, by any client
            r = await reader.get(
                "/incidents", params={"limit": "1000"}, headers={LSN_HEADER: shown}
            )
            assert r.status_code == 200
            assert new in {f["id"] for f in r.json()["features"]}
            # the cookie alone, in another client's jar (another key: no memory of the write)
            async with client(served, served.keys["admin"].key) as browser:
                assert new not in await listed(browser)
                browser.cookies.set(LSN_COOKIE, shown, domain="borderwatch.test")
                assert new in await listed(browser)
            # the same credentials, without cookie or header: this process remembers the write
            async with client(served, officer) as again:
                assert new in await listed(again)
            assert new not in await listed(reader)  # still paused: still the replica
            # a refused write names no position
            bad = await writer.post("/incidents", json={**incident(), "severity": 9})
            assert bad.status_code == 422 and LSN_HEADER not in bad.headers
        finally:
            await replay(served.replica_url, paused=False)
        # everyone sees it once the replica has replayed it, within a bounded wait
        start = time.monotonic()
        while new not in await listed(reader):
            assert time.monotonic() - start < VISIBLE_WAIT_S, "the replica never showed it"
            await asyncio.sleep(0.05)
        # a replica that has replayed up to the position the write answered has the row: the
        # position is that of (or after) the write's commit
        await wait_replayed(served.replica_url, lsn)
        replica = create_engine(served.replica_url, Settings(environment="test"))
        try:
            async with replica.connect() as conn:
                row = await conn.execute(text("SELECT 1 FROM incident WHERE id = :i"), {"i": new})
                assert row.scalar() == 1
        finally:
            await replica.dispose()


async def test_a_malformed_lsn_header_is_refused_with_a_problem(served: Served) -> None:
    async with client(served, served.keys["analyst"].key) as c:
        r = await c.get("/incidents", headers={LSN_HEADER: "not-a-position"})
        assert r.status_code == 422
        assert r.headers["content-type"].startswith(PROBLEM)
        assert LSN_HEADER in r.json()["detail"]
        # a stale or odd cookie is ignored instead (the browser keeps it for minutes)
        c.cookies.set(LSN_COOKIE, "garbage", domain="borderwatch.test")
        assert (await c.get("/incidents")).status_code == 200


async def test_lag_tolerant_reads_on_the_replica_answer_for_scoped_and_national_keys(
    served: Served,
) -> None:
    """Every kind of lag-tolerant read, served by the replica, for a key whose cooperation zone
    is not built yet (built on the primary, the request moved there) and whose last use must be
    written on the primary, and for a national key."""
    x, y = tile_of(LON, LAT, 12)
    paths = [
        "/incidents", "/incidents/nearby?lon=106.705&lat=21.96&radius_m=5000",
        "/incidents/export?format=csv", f"/tiles/incidents/12/{x}/{y}.mvt",
        "/tiles/incidents.json", "/analysis/stats?group_by=category", "/analysis/hotspots",
        "/analysis/border-zone", "/ogc/collections", "/ogc/collections/incidents/items",
        "/jurisdictions?level=province", "/border-posts", "/borders", "/categories",
        f"/jurisdictions/{SCOPED}/neighbours", "/analysis/cross-boundary",
        "/analysis/border-posts", "/places?q=L%E1%BA%A1ng%20S%C6%A1n", "/statuses",
        "/border-posts/nearest?lon=106.705&lat=21.96", "/ogc", "/auth/check",
        "/ogc/collections/incidents/items?limit=5", "/ogc/collections/incidents/styles",
        *(f"/tiles/{layer}/12/{x}/{y}.mvt" for layer in (
            "jurisdictions", "borders", "border_posts", "hotspots")),
    ]  # fmt: skip
    scoped = served.keys["scoped analyst"]
    async with served.engine.connect() as conn:
        before = await conn.execute(
            text("SELECT count(*) FROM scope_zone_built WHERE code = :c"), {"c": OTHER_PROVINCE}
        )
        assert before.scalar() == 0  # so the first scoped request must build it
    replica = served.app.state.replicas.replicas[0]
    routed = replica.reads
    for key in (scoped.key, served.keys["admin"].key):
        async with client(served, key) as c:
            for path in paths:
                r = await c.get(path)
                assert r.status_code < 400, f"{path}: {r.status_code} {r.text[:300]}"
    assert replica.reads - routed == 2 * len(paths)  # every one of them went to the replica
    async with served.engine.connect() as conn:
        built = await conn.execute(
            text("SELECT count(*) FROM scope_zone_built WHERE code = :c"), {"c": OTHER_PROVINCE}
        )
        assert built.scalar() == 1
        used = await conn.execute(
            text("SELECT last_used_at FROM principal WHERE id = :i"), {"i": scoped.id}
        )
        assert used.scalar() is not None  # written on the primary during a replica read


async def test_a_key_made_moments_ago_works_while_the_replica_lags(served: Served) -> None:
    async with client(served, served.keys["admin"].key) as admin:
        await replay(served.replica_url, paused=True)
        try:
            made = await admin.post("/principals", json={"name": "new unit", "role": "analyst"})
            assert made.status_code == 201, made.text
            key = made.json()["key"]
            async with client(served, key) as fresh:
                r = await fresh.get("/incidents")  # a replica path; the replica lacks the key
                assert r.status_code == 200, r.text
        finally:
            await replay(served.replica_url, paused=False)


async def test_tile_etag_holds_across_primary_and_replica(served: Served) -> None:
    """A tile answered by the replica and the same tile by the primary carry one ETag while the
    replica is current, so a client's copy stays valid (304) whichever answers."""
    x, y = tile_of(LON, LAT, 12)
    path = f"/tiles/incidents/12/{x}/{y}.mvt"
    await wait_replayed(served.replica_url, await primary_lsn(served.url))
    far = {LSN_HEADER: "FFFFFFFF/0"}  # no replica has replayed that far: the primary answers
    async with client(served, served.keys["analyst"].key) as c:
        from_replica = await c.get(path)
        from_primary = await c.get(path, headers=far)
        assert from_replica.status_code == from_primary.status_code == 200
        tag = from_replica.headers["etag"]
        assert from_primary.headers["etag"] == tag
        assert from_primary.content == from_replica.content
        again = await c.get(path, headers={**far, "If-None-Match": tag})
        assert again.status_code == 304
        back = await c.get(path, headers={"If-None-Match": from_primary.headers["etag"]})
        assert back.status_code == 304


async def test_metrics_show_each_replica(served: Served) -> None:
    async with client(served, served.keys["admin"].key) as c:
        await _replicas(c)  # a fresh check
        body = (await c.get("/metrics")).text
    name = served.app.state.replicas.replicas[0].name
    assert f'borderwatch_db_replica_up{{replica="{name}"}} 1.0' in body
    assert f'borderwatch_db_replica_lag_seconds{{replica="{name}"}}' in body


async def test_a_stopped_replica_sends_reads_to_the_primary_without_errors(
    database: Database, standby: EmbeddedCluster
) -> None:
    """The app's own checks are minutes apart here, so the replica stops while the app still
    takes it for healthy: the first read fails on it and is answered again on the primary; the
    reads after it go to the primary at once; /readyz reports the replica down, then back."""
    replica_url = standby.url(database.name)
    settings = Settings(
        environment="test", database_url=database.url, read_database_url=[replica_url],
        read_check_s=60, rate_limit="", tile_rate_limit="",
    )  # fmt: skip
    engine = create_engine(database.url, settings)
    app = create_app(settings, engine=engine)
    served = Served(app, engine, database.url, replica_url, standby, database.keys)
    replicas = app.state.replicas
    x, y = tile_of(LON, LAT, 12)
    try:
        async with (
            app.router.lifespan_context(app),
            client(served, database.keys["analyst"].key) as c,
        ):
            await wait_replayed(replica_url, await primary_lsn(database.url))
            assert (await _replicas(c))[0]["used_for_reads"] is True
            before = await listed(c)
            assert replicas.retries == 0
            standby.stop("fast")
            try:
                assert await listed(c) == before  # failed on the replica, answered on the primary
                assert replicas.retries == 1
                for _ in range(3):  # the replica is known down: straight to the primary
                    assert await listed(c) == before
                assert (await c.get(f"/tiles/incidents/12/{x}/{y}.mvt")).status_code == 200
                assert replicas.retries == 1
                ready = await c.get("/readyz")
                assert ready.status_code == 200
                replica = ready.json()["replicas"][0]
                assert replica["status"] == "down" and replica["used_for_reads"] is False
                assert replica["detail"]
                metrics = (await c.get("/metrics")).text
                assert (
                    f'borderwatch_db_replica_up{{replica="{replicas.replicas[0].name}"}} 0.0'
                    in (metrics)
                )
                assert "borderwatch_db_replica_retries_total 1.0" in metrics
            finally:
                standby.start(hot_standby="on")
            # back again once a check finds it streaming and current (/readyz checks now)
            start = time.monotonic()
            while not (await _replicas(c))[0]["used_for_reads"]:
                assert time.monotonic() - start < VISIBLE_WAIT_S, "the replica did not come back"
                await asyncio.sleep(0.2)
            assert await listed(c) == before
    finally:
        await engine.dispose()


async def test_a_replica_too_far_behind_is_skipped_until_it_catches_up(
    database: Database, standby: EmbeddedCluster
) -> None:
    """With a lag bound of half a second, a replica whose replay is paused while the primary
    takes a write is judged `lagging` by the next checks: everyone's reads go to the primary
    (the row is there for a client that did not write it), /readyz says so and stays 200."""
    replica_url = standby.url(database.name)
    settings = Settings(
        environment="test", database_url=database.url, read_database_url=[replica_url],
        read_check_s=0.1, read_max_lag_s=0.5, rate_limit="", tile_rate_limit="",
    )  # fmt: skip
    engine = create_engine(database.url, settings)
    app = create_app(settings, engine=engine)
    served = Served(app, engine, database.url, replica_url, standby, database.keys)
    try:
        async with (
            app.router.lifespan_context(app),
            client(served, database.keys["scoped officer"].key) as writer,
            client(served, database.keys["analyst"].key) as reader,
        ):
            await wait_replayed(replica_url, await primary_lsn(database.url))
            await replay(replica_url, paused=True)
            try:
                made = await writer.post("/incidents", json=incident())
                assert made.status_code == 201
                new = made.json()["id"]
                start = time.monotonic()
                while (await _replicas(reader))[0]["status"] != "lagging":
                    assert time.monotonic() - start < VISIBLE_WAIT_S, "never judged lagging"
                    await asyncio.sleep(0.1)
                replica = (await _replicas(reader))[0]
                assert replica["used_for_reads"] is False and replica["lag_s"] > 0.5
                assert replica["replay_paused"] is True
                assert new in await listed(reader)  # from the primary now
            finally:
                await replay(replica_url, paused=False)
            start = time.monotonic()
            while not (await _replicas(reader))[0]["used_for_reads"]:
                assert time.monotonic() - start < VISIBLE_WAIT_S, "the replica did not catch up"
                await asyncio.sleep(0.1)
            assert new in await listed(reader)
    finally:
        await engine.dispose()
