"""Request bodies read whole before the route (size and time limits, 413 / 408), NUL characters
refused wherever a request carries text (422 naming where), and the per-process spool folder
(stale ones removed at start, live ones never)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app import spool
from app.config import Settings
from conftest import ROOT, app_client, live_app, make_key

PROBLEM = "application/problem+json"
INCIDENT = {
    "category": "drug_trafficking",
    "severity": 4,
    "occurred_at": "2025-06-01T12:00:00+07:00",
    "location": {"type": "Point", "coordinates": [103.97, 22.5]},
}
CSV = "lat,lon,date,category\n10.4,105.4,2024-01-01,other\n"


async def _written(session: AsyncSession) -> tuple[int, int]:
    """(incidents, audit entries): what a refused request must leave unchanged."""
    row = (
        await session.execute(
            text("SELECT (SELECT count(*) FROM incident), (SELECT count(*) FROM audit_event)")
        )
    ).one()
    return int(row[0]), int(row[1])


# ---------------------------------------------------------------------------------------------
# NUL characters: 422 naming the parameter, path segment or JSON member


NUL_URLS = [
    ("/audit?actor=%00", "query.actor"),
    ("/audit?action=a%00b", "query.action"),
    ("/audit?entity_type=%00", "query.entity_type"),
    ("/audit?entity_id=%00", "query.entity_id"),
    ("/audit?since=%00", "query.since"),
    ("/audit?until=2024-01-01%00", "query.until"),
    ("/audit?limit=5&actor=x%00", "query.actor"),
    ("/jurisdictions?parent=%00", "query.parent"),
    ("/border-posts?province=%00", "query.province"),
    ("/ogc/collections/incidents/items?category=%00", "query.category"),
    ("/jurisdictions/%00", "path.code"),
    ("/jurisdictions/VN-01/shared-zone/%00", "path.b"),
    ("/jurisdictions/VN%0001/neighbours", "path.code"),
]


@pytest.mark.parametrize(("url", "location"), NUL_URLS, ids=[u for u, _ in NUL_URLS])
async def test_nul_in_the_url_is_422_naming_it(
    client: httpx.AsyncClient, session: AsyncSession, url: str, location: str
) -> None:
    before = await _written(session)
    r = await client.get(url)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["status"] == 422
    assert problem["errors"] == [{"location": location, "message": problem["errors"][0]["message"]}]
    assert "NUL" in problem["detail"] and location in problem["detail"]
    assert await _written(session) == before


NUL_BODIES: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", "/incidents", {**INCIDENT, "description": "a\u0000b"}, "body.description"),
    ("POST", "/incidents", {**INCIDENT, "unit": "\u0000"}, "body.unit"),
    (
        "POST",
        "/incidents",
        {
            "type": "Feature",
            "geometry": INCIDENT["location"],
            "properties": {k: v for k, v in INCIDENT.items() if k != "location"}
            | {"description": "ok", "unit": "x\u0000"},
        },
        "body.properties.unit",
    ),
    ("POST", "/incidents", {**INCIDENT, "description\u0000": "x"}, "body"),
    ("POST", "/principals", {"name": "n\u0000", "role": "viewer"}, "body.name"),
]


@pytest.mark.parametrize(
    ("method", "path", "payload", "location"), NUL_BODIES, ids=[b[3] for b in NUL_BODIES]
)
async def test_nul_in_a_json_body_is_422_naming_the_member(
    client: httpx.AsyncClient,
    session: AsyncSession,
    method: str,
    path: str,
    payload: dict[str, Any],
    location: str,
) -> None:
    before = await _written(session)
    r = await client.request(method, path, json=payload)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["errors"][0]["location"] == location
    assert await _written(session) == before


async def test_nul_in_a_patch_body_and_escaped_backslash_u(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    created = await client.post("/incidents", json={**INCIDENT, "description": "before"})
    assert created.status_code == 201
    url = f"/incidents/{created.json()['id']}"
    etag = created.headers["etag"]
    before = await _written(session)
    r = await client.patch(url, json={"description": "a\u0000"}, headers={"If-Match": etag})
    assert r.status_code == 422 and r.json()["errors"][0]["location"] == "body.description"
    assert await _written(session) == before
    # a backslash followed by "u0000" is text, not a NUL: accepted as it is
    literal = "C:\\u0000dir"
    r = await client.patch(url, json={"description": literal}, headers={"If-Match": etag})
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["description"] == literal


# ---------------------------------------------------------------------------------------------
# Size and time limits through the application (ASGI transport)


@pytest.fixture
async def strict_client(
    engine: AsyncEngine, session: AsyncSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    folder = tmp_path / "spool"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))  # where the app's spool goes
    settings = Settings(
        environment="test",
        max_body_bytes=2048,
        max_import_bytes=4096,
        body_timeout_s=0.5,
        import_body_timeout_s=0.5,
    )
    key = await make_key(session, "admin")
    async with app_client(engine, session, settings, key) as c:
        yield c, folder


async def _slowly(data: bytes, pause_s: float) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 16):
        await asyncio.sleep(pause_s)
        yield data[i : i + 16]


def _spooled(folder: Path) -> list[str]:
    """Files left in the spool directories (the lock files aside)."""
    return sorted(p.name for d in folder.iterdir() for p in d.iterdir() if p.name != spool.LOCK)


async def test_bodies_over_the_limit_are_413(
    strict_client: tuple[httpx.AsyncClient, Path], session: AsyncSession
) -> None:
    client, folder = strict_client
    before = await _written(session)
    big = {**INCIDENT, "description": "x" * 3000}
    declared = await client.post("/incidents", json=big)
    assert declared.status_code == 413 and declared.headers["content-type"] == PROBLEM
    assert "2048-byte" in declared.json()["detail"] and declared.json()["limit"] == 2048
    streamed = await client.post(
        "/incidents",
        content=_slowly(httpx.Request("POST", "/", json=big).content, 0),
        headers={"content-type": "application/json"},
    )
    assert streamed.status_code == 413
    # every route with a body, not only the incident routes
    named = await client.post("/principals", json={"name": "x" * 3000, "role": "viewer"})
    assert named.status_code == 413
    upload = CSV + "10.4,105.4,2024-01-01,other\n" * 200
    for content in (upload.encode(), _slowly(upload.encode(), 0)):
        r = await client.post(
            "/incidents/import", content=content, headers={"content-type": "text/csv"}
        )
        assert r.status_code == 413 and "4096-byte import limit" in r.json()["detail"]
    assert await _written(session) == before
    assert _spooled(folder) == []
    ok = await client.post("/incidents", json=INCIDENT)
    assert ok.status_code == 201


async def test_slow_bodies_are_408_and_leave_no_spool_file(
    strict_client: tuple[httpx.AsyncClient, Path], session: AsyncSession
) -> None:
    client, folder = strict_client
    before = await _written(session)
    body = httpx.Request("POST", "/", json=INCIDENT).content
    started = time.monotonic()
    r = await client.post(
        "/incidents", content=_slowly(body, 0.1), headers={"content-type": "application/json"}
    )
    assert r.status_code == 408, r.text
    assert r.headers["content-type"] == PROBLEM
    assert "BORDERWATCH_BODY_TIMEOUT_S" in r.json()["detail"]
    assert 0.5 <= time.monotonic() - started < 5
    r = await client.post(
        "/incidents/import",
        content=_slowly(CSV.encode() * 4, 0.1),
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 408
    assert "BORDERWATCH_IMPORT_BODY_TIMEOUT_S" in r.json()["detail"]
    assert await _written(session) == before
    assert _spooled(folder) == []
    # a body that arrives in time is imported, and its spool file removed afterwards
    r = await client.post(
        "/incidents/import", content=CSV.encode(), headers={"content-type": "text/csv"}
    )
    assert r.status_code == 200 and r.json()["inserted"] == 1
    assert _spooled(folder) == []
    empty = await client.post(
        "/incidents/import", content=b"", headers={"content-type": "text/csv"}
    )
    assert empty.status_code == 422 and empty.json()["detail"] == "the upload is empty"


# ---------------------------------------------------------------------------------------------
# The spool folder


@dataclass
class Holder:
    """A process that holds a spool directory (and a half-written upload) until killed."""

    proc: subprocess.Popen[str]
    directory: Path


HOLD = """
import sys, time
from pathlib import Path
from app.spool import SpoolDir
d = SpoolDir(Path(sys.argv[1]))
f = d.new_file(); f.write(b"half an upload"); f.flush()
print(d.directory(), flush=True)
time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Holder]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line, "the holder did not start"
        yield Holder(proc, Path(line))
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_sweep_keeps_a_live_process_s_spool_and_removes_a_killed_one(
    holder: Holder, tmp_path: Path
) -> None:
    assert holder.directory.parent == tmp_path
    assert holder.directory.name.startswith(spool.PREFIX)
    unrelated = tmp_path / "borderwatch-export-1"
    unrelated.mkdir()
    assert spool.sweep(tmp_path) == []
    assert len(list(holder.directory.iterdir())) == 2  # the lock and the upload
    # this process's own directory is kept too (its lock is held by another open file)
    mine = spool.SpoolDir(tmp_path)
    own = mine.directory()
    assert spool.sweep(tmp_path) == []
    os.kill(holder.proc.pid, signal.SIGKILL)  # an import killed mid-way
    holder.proc.wait(timeout=10)
    assert spool.sweep(tmp_path) == [holder.directory]
    assert not holder.directory.exists()
    assert own.is_dir() and unrelated.is_dir()
    mine.close()
    assert not own.exists()
    assert spool.sweep(tmp_path) == []


def test_sweep_gives_a_directory_being_made_a_minute(tmp_path: Path) -> None:
    young = tmp_path / f"{spool.NEW_PREFIX}young"
    old = tmp_path / f"{spool.NEW_PREFIX}old"
    young.mkdir()
    old.mkdir()
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert spool.sweep(tmp_path) == [old]
    assert young.is_dir()


def test_the_spool_directory_comes_back_if_removed(tmp_path: Path) -> None:
    d = spool.SpoolDir(tmp_path)
    first = d.directory()
    (first / spool.LOCK).unlink()
    first.rmdir()  # e.g. a cleaner of old files in /tmp
    second = d.directory()
    assert second.is_dir() and second != first
    d.close()


# ---------------------------------------------------------------------------------------------
# A live server: slow uploads hold no database connection


POOL_SIZE = 2  # BORDERWATCH_DB_POOL_SIZE: 2 pooled + 2 overflow connections
UPLOADERS = 10  # more than twice the connections the pool can open
DEADLINE_S = 3.0  # both body deadlines, for this server
TRICKLE_S = 0.5  # one byte every TRICKLE_S
DECLARED = 400  # bytes each uploader announces (it would need 200 s to send them)


@dataclass
class Live:
    base: str
    port: int
    admin: str
    reader: str
    tmp: Path


@pytest.fixture
async def live(server_url: str, tmp_path: Path) -> AsyncIterator[Live]:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # a killed process's spool directory, from before this server started
    stale = tmp / f"{spool.PREFIX}99999-stale"
    stale.mkdir()
    (stale / spool.LOCK).touch()
    (stale / "upload-x").write_bytes(b"x" * 1000)
    env = {
        "BORDERWATCH_BODY_TIMEOUT_S": str(DEADLINE_S),
        "BORDERWATCH_IMPORT_BODY_TIMEOUT_S": str(DEADLINE_S),
        "TMPDIR": str(tmp),
    }
    async with live_app(
        server_url, tmp_path / "server.log", name="bw_bodies", boundaries=False,
        principals={"bodies admin": "admin", "bodies analyst": "analyst"}, env=env,
        pool_size=POOL_SIZE,
    ) as server:  # fmt: skip
        keys = server.keys
        yield Live(
            server.base, server.port, keys["bodies admin"].key, keys["bodies analyst"].key, tmp
        )


async def _slow_upload(live: Live, path: str, content_type: str) -> tuple[int, float, bytes]:
    """POST `path` announcing DECLARED bytes and sending one every TRICKLE_S; the answer's
    status, when it came (s after the headers were sent) and its body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {live.admin}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {DECLARED}\r\n\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    started = time.monotonic()

    async def trickle() -> None:
        for _ in range(DECLARED):
            await asyncio.sleep(TRICKLE_S)
            writer.write(b" ")
            await writer.drain()

    sending = asyncio.create_task(trickle())
    try:
        answer = await asyncio.wait_for(reader.read(), timeout=DEADLINE_S + 15)
        took = time.monotonic() - started
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    status = int(status_line.split()[1]) if status_line.startswith(b"HTTP/") else 0
    return status, took, rest.partition(b"\r\n\r\n")[2]


async def test_slow_uploads_do_not_starve_the_pool(live: Live) -> None:
    # the stale spool directory went at start; this server's own is made on first use
    assert sorted(p.name for p in live.tmp.iterdir()) == []
    uploads = [
        asyncio.create_task(_slow_upload(live, "/incidents", "application/json"))
        for _ in range(UPLOADERS // 2)
    ] + [
        asyncio.create_task(_slow_upload(live, "/incidents/import", "text/csv"))
        for _ in range(UPLOADERS // 2)
    ]
    try:
        latencies = await _read_meanwhile(live, uploads)
        results = await asyncio.gather(*uploads)
    finally:
        for upload in uploads:
            upload.cancel()
        await asyncio.gather(*uploads, return_exceptions=True)
    assert len(latencies) >= 5
    assert max(latencies) < 2.0, latencies  # the pool would have made them wait 30 s
    for status, took, body in results:
        assert status == 408, body
        assert DEADLINE_S - 0.6 <= took < DEADLINE_S + 5, took
        assert b"TIMEOUT_S" in body
    # the import uploads' spool files are gone; only this server's lock remains
    left = [p.relative_to(live.tmp).as_posix() for p in live.tmp.rglob("*") if p.is_file()]
    assert len(left) == 1 and left[0].endswith(f"/{spool.LOCK}"), left


async def _read_meanwhile(live: Live, uploads: list[asyncio.Task[Any]]) -> list[float]:
    """Another user's reads while the uploads trickle: each must answer 200; their latencies."""
    await asyncio.sleep(0.5)  # every uploader is sending its body now
    latencies: list[float] = []
    async with httpx.AsyncClient(
        base_url=live.base, headers={"Authorization": f"Bearer {live.reader}"}, timeout=10
    ) as c:
        stop = time.monotonic() + DEADLINE_S - 1.0
        while time.monotonic() < stop and len(latencies) < 200:
            began = time.monotonic()
            r = await c.get("/incidents", params={"limit": 1})
            latencies.append(time.monotonic() - began)
            assert r.status_code == 200, r.text
        assert not any(u.done() for u in uploads)  # still uploading
        # several reads at once need more than one connection: the pool has them free
        burst = await asyncio.gather(
            *(c.get("/incidents", params={"limit": 1}) for _ in range(2 * POOL_SIZE))
        )
        assert [r.status_code for r in burst] == [200] * (2 * POOL_SIZE)
    return latencies


async def test_declared_length_over_the_limit_is_413_at_once(live: Live) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    try:
        writer.write(
            (
                f"POST /incidents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {live.admin}\r\n"
                "Content-Type: application/json\r\nContent-Length: 999999999\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"application/problem+json" in answer and b"connection: close" in answer.lower()
