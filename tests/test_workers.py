"""`borderwatch serve --workers 2` for real: requests land on both processes, the rate limit
counts across them, a write through one process changes what the other serves from its caches,
one scrape of /metrics counts every process's requests and live streams (and forgets a killed
worker's streams, never its requests), and SIGTERM stops everything in bounded time. Also: the
accepted connections' TCP_NODELAY.

Which process served a request is found the way an operator would, from outside: the server
side of the request's TCP connection (/proc/net/tcp) and the worker that holds that socket
(/proc/<pid>/fd); no response header tells a process id."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mapbox_vector_tile
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import create_engine, ensure_database
from conftest import ROOT, Key, _free_port, database_on, drop_database, needs, prepare_database

pytestmark = needs(Path("/proc/net/tcp").exists(), "Linux /proc (which process holds a socket)")

RATE_LIMIT = 20  # BORDERWATCH_RATE_LIMIT of the served processes, per minute
WORKERS = 2
STARTED = re.compile(r"Started server process \[(\d+)\]")
TILE = (5, 25, 14)  # z/x/y: northern Viet Nam, an aggregate tile (below the points' zoom)
HANOI = (105.85, 21.03)
HANOI_CODE = "VN-P01"  # Hà Nội since 2025-07-01


# --- which process served a connection ------------------------------------------------------


def _tcp_inode(server_port: int, client_port: int) -> int | None:
    """The inode of the server's socket of the connection from `client_port` (IPv4)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], int(fields[9])
        if int(local.split(":")[1], 16) == server_port and (
            int(remote.split(":")[1], 16) == client_port
        ):
            return inode
    return None


def _holder(pids: list[int], inode: int) -> int | None:
    """Which of `pids` holds the socket `inode` open."""
    wanted = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                    return pid
            except OSError:
                continue
    return None


SYS_PIDFD_GETFD = 438  # Linux >= 5.6, the same number on x86-64 and arm64


def _nodelay_in(pid: int, inode: int) -> bool | None:
    """TCP_NODELAY of socket `inode` as process `pid` holds it (a duplicate of its descriptor
    through pidfd_getfd, which needs ptrace rights: None when refused)."""
    wanted = f"socket:[{inode}]"
    fd = next(
        (int(n) for n in os.listdir(f"/proc/{pid}/fd")
         if os.readlink(f"/proc/{pid}/fd/{n}") == wanted),
        None,
    )  # fmt: skip
    if fd is None:
        return None
    pidfd = os.pidfd_open(pid)
    try:
        ours = ctypes.CDLL(None, use_errno=True).syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
    finally:
        os.close(pidfd)
    if ours < 0:
        return None
    with socket.socket(fileno=ours) as sock:  # closing our duplicate leaves theirs open
        return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


@dataclass
class Served:
    """The `serve --workers 2` process, its workers, its database and principals."""

    proc: subprocess.Popen[bytes]
    base: str
    port: int
    workers: list[int]
    engine: AsyncEngine
    keys: dict[str, Key]
    log: Path
    metrics_dir: Path  # where serve keeps the workers' metrics (BORDERWATCH_DATA_DIR/metrics)

    def served_by(self, response: httpx.Response) -> int | None:
        """The worker that answered `response` (by its connection)."""
        stream = response.extensions["network_stream"]
        client_port = int(stream.get_extra_info("client_addr")[1])
        inode = _tcp_inode(self.port, client_port)
        return _holder(self.workers, inode) if inode is not None else None

    async def on(
        self, pid: int, method: str, path: str, key: str | None = None, **kw: Any
    ) -> httpx.Response:
        """`method path` answered by worker `pid`: new connections until one lands on it
        (checked with /healthz, which no limit counts), then the request on that connection,
        checked again."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        for _ in range(60):
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            async with httpx.AsyncClient(base_url=self.base, limits=limits, timeout=30) as c:
                probe = await c.get("/healthz")
                if self.served_by(probe) != pid:
                    continue
                r = await c.request(method, path, headers=headers, **kw)
                if self.served_by(r) == pid:
                    return r
        raise AssertionError(f"no connection reached worker {pid} in 60 tries")


def _spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
async def served(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    """A database of its own with the default boundaries and a few principals, served by
    `borderwatch serve --workers 2` on 127.0.0.1 (the command migrates it once, then starts
    the workers); stopped, by PID, and the database dropped afterwards."""
    settings = Settings(environment="test", database_url=None)
    name = f"bw_workers_{uuid.uuid4().hex[:8]}"
    url = database_on(server_url, name)
    await ensure_database(url)
    engine = create_engine(url, settings)
    log = tmp_path_factory.mktemp("workers") / "serve.log"
    roles = {"writer": "admin", "reader": "analyst", "limited": "analyst", "other": "analyst"}
    keys = await prepare_database(engine, settings, principals=roles)
    await engine.dispose()
    # the metrics directory as an earlier run might have left it: open to all, a stale file
    data_dir = tmp_path_factory.mktemp("data")
    metrics_dir = data_dir / "metrics"
    metrics_dir.mkdir()
    metrics_dir.chmod(0o777)
    (metrics_dir / "counter_1.db").write_bytes(b"an earlier run's counts")
    env = dict(
        os.environ, DATABASE_URL=url, BORDERWATCH_ENVIRONMENT="test",
        BORDERWATCH_RATE_LIMIT=f"{RATE_LIMIT}/minute", BORDERWATCH_DB_POOL_SIZE="3",
        BORDERWATCH_LOG_FORMAT="text", BORDERWATCH_DATA_DIR=str(data_dir),
    )  # fmt: skip
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = _free_port()
    command = [
        str(Path(sys.executable).with_name("borderwatch")), "serve", "--workers", str(WORKERS),
        "--no-demo", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    proc = _spawn(command, env, log)
    try:
        deadline = time.monotonic() + 180  # a loaded machine: workers import the app slowly
        workers: list[int] = []
        while len(workers) < WORKERS or log.read_text().count("startup complete") < WORKERS:
            assert proc.poll() is None, _tail(log)
            assert time.monotonic() < deadline, _tail(log)
            await asyncio.sleep(0.3)
            workers = [int(p) for p in STARTED.findall(log.read_text())]
        assert len(set(workers)) == WORKERS, _tail(log)
        base = f"http://127.0.0.1:{port}"
        yield Served(proc, base, port, workers, engine, keys, log, metrics_dir)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        await engine.dispose()
        await drop_database(server_url, name)


# --- the tests ------------------------------------------------------------------------------


async def test_rate_limit_counts_across_processes(served: Served) -> None:
    """(a) requests land on both processes; (b) one key's requests, half on each, are refused
    from the 21st of a 20/minute limit on (whichever process), with Retry-After, while another
    key still passes; each process counts on a connection of its own (pg_stat_activity)."""
    a, b = served.workers
    key = served.keys["limited"].key
    codes = [(await served.on(a if n % 2 else b, "GET", "/me", key)).status_code
             for n in range(RATE_LIMIT)]  # fmt: skip
    assert codes == [200] * RATE_LIMIT  # half through each process: no process saw 11
    for pid in (a, b):
        r = await served.on(pid, "GET", "/me", key)
        assert r.status_code == 429, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert "rate limit of 20 per 1 minute exceeded" in r.json()["detail"]
    assert (await served.on(a, "GET", "/me", served.keys["other"].key)).status_code == 200
    assert (await served.on(b, "GET", "/me", served.keys["other"].key)).status_code == 200
    async with served.engine.connect() as conn:
        counted = await conn.execute(
            text("SELECT sum(count) FROM rate_limit_counter WHERE name = :n AND key = :k"),
            {"n": f"requests {RATE_LIMIT} per 1 minute", "k": str(served.keys["limited"].id)},
        )
        assert counted.scalar_one() == RATE_LIMIT  # the refused requests are not counted
        names = await conn.execute(
            text("SELECT application_name FROM pg_stat_activity WHERE datname = current_database()")
        )
        counting = {n for n in names.scalars() if n.startswith("borderwatch-ratelimit ")}
    assert counting == {f"borderwatch-ratelimit {pid}" for pid in (a, b)}


def _tile_count(body: bytes) -> int:
    tile = mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})
    feats = tile["incidents"]["features"] if "incidents" in tile else []
    assert all(f["properties"]["cluster"] is True for f in feats)
    return sum(int(f["properties"]["count"]) for f in feats)


def _in_tile(lon: float, lat: float) -> bool:
    z, x, y = TILE
    n = 2**z
    tx = int((lon + 180) / 360 * n)
    ty = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return (tx, ty) == (x, y)


def _incident(lon: float, lat: float) -> dict[str, Any]:
    return {
        "category": "smuggling", "severity": 3, "occurred_at": "2026-11-30T08:00:00+07:00",
        "location": {"type": "Point", "coordinates": [lon, lat]}, "location_precision_m": 50,
        "description": "Vận chuyển hàng lậu", "unit": "Công an tỉnh",
    }  # fmt: skip


async def test_a_write_through_one_process_changes_the_others_cached_answers(
    served: Served,
) -> None:
    """(c) the aggregate tile and the cross-boundary table are kept per process, keyed by the
    layer versions read from the database: a write through one process moves them, and the
    other process's next answer counts it."""
    a, b = served.workers
    writer, reader = served.keys["writer"].key, served.keys["reader"].key
    assert _in_tile(*HANOI)
    tile = "/tiles/incidents/{}/{}/{}.mvt".format(*TILE)
    table = "/analysis/cross-boundary"
    # a point on the boundary that Hà Nội (today's unit) shares with a neighbour: in that pair's zone
    async with served.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT n.code, ST_X(p), ST_Y(p) FROM jurisdiction h"
                    " JOIN jurisdiction_adjacency x ON x.a_id = h.id"
                    " JOIN jurisdiction n ON n.id = x.b_id,"
                    " ST_ClosestPoint(h.geom, n.geom) AS p"
                    f" WHERE h.code = '{HANOI_CODE}' AND h.level = 'province' AND h.valid_to IS NULL"
                    " AND n.valid_to IS NULL ORDER BY n.code LIMIT 1"
                )
            )
        ).one()
    neighbour, lon, lat = str(row[0]), float(row[1]), float(row[2])

    def pair_count(body: dict[str, Any]) -> int:
        found = [p["count"] for p in body["pairs"] if {p["a"], p["b"]} == {HANOI_CODE, neighbour}]
        assert len(found) == 1, body
        return int(found[0])

    async def tables(pid: int) -> int:
        r = await served.on(pid, "GET", table, reader)
        assert r.status_code == 200, r.text
        return pair_count(r.json())

    async def tiles(pid: int) -> int:
        r = await served.on(pid, "GET", tile, reader)
        assert r.status_code == 200, r.text
        return _tile_count(r.content)

    made = await served.on(a, "POST", "/incidents", writer, json=_incident(*HANOI))
    assert made.status_code == 201, made.text
    # both processes answer (and keep) the tile and the table of this version
    for pid in (a, b, a, b):
        assert await tiles(pid) == 1
    base = [await tables(pid) for pid in (a, b, a, b)]
    assert len(set(base)) == 1 and base[0] in (0, 1)  # the one incident, in the zone or not
    # a write through a: b's next answers count it
    made = await served.on(a, "POST", "/incidents", writer, json=_incident(lon, lat))
    assert made.status_code == 201, made.text
    on_edge = 1 if _in_tile(lon, lat) else 0
    assert await tiles(b) == 1 + on_edge
    assert await tables(b) == base[0] + 1
    # and the other way round: a second incident where the first is
    made = await served.on(b, "POST", "/incidents", writer, json=_incident(*HANOI))
    assert made.status_code == 201, made.text
    assert await tiles(a) == 2 + on_edge
    assert await tables(a) == 2 * base[0] + 1


def test_accepted_connections_have_tcp_nodelay() -> None:
    """The workers accept on the socket uvicorn's supervisor binds (a TCP socket) and rebuilds
    in each worker (multiprocessing keeps family, type and protocol); asyncio turns Nagle's
    algorithm off on every connection accepted from such a socket. Without it, each keep-alive
    request after the first would wait ~40 ms for a delayed ACK."""

    async def accept_one() -> int:
        config = uvicorn.Config("app.main:create_app", host="127.0.0.1", port=0, workers=2)
        listener = config.bind_socket()
        # what a worker gets (multiprocessing.reduction._rebuild_socket)
        rebuilt = socket.socket(
            listener.family, listener.type, listener.proto, fileno=os.dup(listener.fileno())
        )
        loop = asyncio.get_running_loop()
        accepted: asyncio.Future[socket.socket] = loop.create_future()

        class Accept(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.set_result(transport.get_extra_info("socket"))

        server = await loop.create_server(Accept, sock=rebuilt)
        try:
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            sock = await asyncio.wait_for(accepted, 10)
            value = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            writer.close()
            return value
        finally:
            server.close()
            listener.close()

    assert asyncio.run(accept_one()) != 0


async def test_the_workers_connections_have_tcp_nodelay(served: Served) -> None:
    """The sockets the workers accepted, read from the workers themselves: TCP_NODELAY on."""
    seen: dict[int, bool | None] = {}
    for _ in range(60):
        if len(seen) == WORKERS:
            break
        async with httpx.AsyncClient(base_url=served.base, timeout=30) as c:
            r = await c.get("/healthz")  # the connection stays open (keep-alive) until we leave
            client_port = int(r.extensions["network_stream"].get_extra_info("client_addr")[1])
            inode = _tcp_inode(served.port, client_port)
            assert inode is not None
            pid = _holder(served.workers, inode)
            assert pid is not None
            if pid not in seen:
                seen[pid] = _nodelay_in(pid, inode)
    # None: pidfd_getfd refused (it needs Linux >= 5.6 and ptrace rights, as root here)
    assert seen == dict.fromkeys(served.workers, True)


# --- /metrics across the workers ------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
READY = frozenset({("route", "/readyz"), ("method", "GET"), ("status", "200")})


async def _scrape(served: Served, pid: int) -> Samples:
    """/metrics as worker `pid` answers it (from 127.0.0.1, an operator address: no key)."""
    r = await served.on(pid, "GET", "/metrics")
    assert r.status_code == 200, r.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


async def _until(
    served: Served, pid: int, settled: Callable[[Samples], bool], within_s: float = 20
) -> Samples:
    """Scrapes through worker `pid` until `settled` (the other worker copies what it reads
    from its objects to the shared files once a second)."""
    deadline = time.monotonic() + within_s
    while True:
        samples = await _scrape(served, pid)
        if settled(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.3)


@contextlib.asynccontextmanager
async def _stream_on(served: Served, pid: int, path: str, key: str) -> AsyncIterator[None]:
    """An open `GET path` stream (the live feed) answered by worker `pid`, held until exit."""
    for _ in range(60):
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=served.base, limits=limits, timeout=30) as c:
            if served.served_by(await c.get("/healthz")) != pid:
                continue
            headers = {"Authorization": f"Bearer {key}"}
            async with c.stream("GET", path, headers=headers) as r:
                assert r.status_code == 200, await r.aread()
                assert served.served_by(r) == pid
                yield
                return
    raise AssertionError(f"no connection reached worker {pid} in 60 tries")


def _subscribers(samples: Samples) -> float:
    return samples[("borderwatch_live_feed_subscribers", frozenset())]


async def test_one_scrape_counts_every_workers_requests(served: Served) -> None:
    """Requests through both workers: a scrape, whichever worker answers it, counts them all
    (counter and histogram). The directory serve made for this: 0700, the stale file gone, a
    file of each worker's counts in it."""
    a, b = served.workers
    sent = [a, b, a, b, b, a, b]
    for pid in sent:
        assert (await served.on(pid, "GET", "/readyz")).status_code == 200
    for pid in (a, b):
        samples = await _scrape(served, pid)
        assert samples[("borderwatch_http_requests_total", READY)] == len(sent)
        timed = frozenset({("route", "/readyz"), ("method", "GET")})
        assert samples[("borderwatch_http_request_duration_seconds_count", timed)] == len(sent)
        every = timed | {("le", "+Inf")}
        assert samples[("borderwatch_http_request_duration_seconds_bucket", every)] == len(sent)
        assert not any(labels for _, labels in samples if ("pid", str(a)) in labels)
    info = served.metrics_dir.lstat()
    assert info.st_mode & 0o777 == 0o700
    files = {p.name for p in served.metrics_dir.iterdir()}
    assert "counter_1.db" not in files
    assert {f"counter_{a}.db", f"counter_{b}.db"} <= files


async def test_live_gauges_sum_and_a_killed_worker_leaves_none(served: Served) -> None:
    """One live-feed stream open on each worker: `borderwatch_live_feed_subscribers` is their
    sum (livesum) whichever worker is scraped. Then one worker is killed (SIGKILL) and the
    supervisor starts another: its stream no longer counts, its live gauges' file is removed,
    and its requests stay counted once (the new worker starts from nothing)."""
    a, b = served.workers
    key = served.keys["other"].key
    async with contextlib.AsyncExitStack() as streams:
        await streams.enter_async_context(_stream_on(served, a, "/events", key))
        await streams.enter_async_context(_stream_on(served, b, "/events", key))
        for pid in (a, b):
            samples = await _until(served, pid, lambda s: _subscribers(s) == 2)
            assert _subscribers(samples) == 2
        pool = frozenset({("state", "in_use")}), frozenset({("state", "idle")})
        opened = sum(samples[("borderwatch_db_pool_connections", p)] for p in pool)
        assert opened >= 2  # both workers' pools (each fills its own at start)
        ready = samples[("borderwatch_http_requests_total", READY)]
        assert any(p.name == f"gauge_livesum_{a}.db" for p in served.metrics_dir.iterdir())

        # SIGKILL: no shutdown of its own; the supervisor reaps it and starts a new worker
        os.kill(a, signal.SIGKILL)
        deadline = time.monotonic() + 180
        while True:
            text_ = served.log.read_text()
            started = [int(p) for p in STARTED.findall(text_)]
            if len(started) > WORKERS and text_.count("startup complete") > WORKERS:
                break
            assert served.proc.poll() is None and time.monotonic() < deadline, _tail(served.log)
            await asyncio.sleep(0.3)
        new = started[-1]
        assert new not in (a, b) and not _alive([a])
        served.workers[:] = [new, b]  # for the tests after this one
        assert f"Child process [{a}] died" in served.log.read_text()
        assert not any(p.name.startswith("gauge_live") and p.name.endswith(f"_{a}.db")
                       for p in served.metrics_dir.iterdir())  # fmt: skip
        assert (served.metrics_dir / f"counter_{a}.db").exists()  # its requests still count
        for pid in (new, b):
            samples = await _until(served, pid, lambda s: _subscribers(s) == 1)
            assert _subscribers(samples) == 1  # b's stream; a's went with it
            assert samples[("borderwatch_http_requests_total", READY)] == ready
        assert (await served.on(new, "GET", "/readyz")).status_code == 200
        samples = await _scrape(served, b)
        assert samples[("borderwatch_http_requests_total", READY)] == ready + 1
        with contextlib.suppress(httpx.HTTPError):  # the stream to the killed worker is gone
            await streams.aclose()


async def test_sigterm_stops_every_worker(served: Served) -> None:
    """(d) SIGTERM to the command: its workers stop and it exits, within a bound."""
    started = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(served.proc.wait, 40)
    assert code == 0, _tail(served.log)
    assert time.monotonic() - started < 40
    assert _alive(served.workers) == []
    assert "Stopping parent process" in served.log.read_text()
