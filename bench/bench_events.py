"""The live feed under load: 200 SSE subscribers while 50 incidents/s are written, at 1 M rows.

    .venv/bin/python -m bench.bench_events [--incidents 1000000] [--clients 200] [--rate 50]
                                           [--seconds 20] [--feed-process]

One uvicorn worker (as `make run`) over the benchmark cluster; with `--feed-process`, a second
one serves the subscribers (the writes go to the first). In one run:
1. creates at `--rate` per second for `--seconds` with nobody subscribed: the create latency;
2. opens `--clients` subscribers (half national with no filter, a quarter national with a
   category filter, a quarter scoped to five provinces) and reads the server's memory before and
   after: memory per idle subscriber;
3. creates at the same rate for the same time: the create latency with subscribers, and the
   delivery latency of every event every subscriber received (from the create's 201, i.e. its
   commit, to the event's arrival), with how many each kind of subscriber received.
The subscribers are plain HTTP/1.1 connections that look for the incident id in each event,
in a process of their own (the writer's measurements must not wait for them; the client must
not be the bottleneck on a 2-core machine). Bounded: a fixed number of
creates, a wall-clock cap on every phase; the server is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import text

from app.auth import service as auth_service
from app.config import Settings
from app.db import create_engine, sessionmaker
from bench.common import admin_key, cluster, prepare, served, summary

PROVINCES = ("VN-P91", "VN-P01", "VN-P79", "VN-P48", "VN-P22")  # scoped subscribers
CATEGORIES = ("smuggling", "drug_trafficking", "illegal_border_crossing", "other")
ID = re.compile(rb'"incident":\{"id":"([0-9a-f-]{36})"')


@dataclass
class Subscriber:
    kind: str
    key: str
    query: str = ""
    arrived: dict[str, float] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    writer: asyncio.StreamWriter | None = None


async def keys_and_points(url: str) -> tuple[dict[str, str], list[tuple[float, float]]]:
    """A key per scoped province and land points to write at (one per 2025 commune)."""
    engine = create_engine(url, Settings(environment="test"))
    keys = {}
    try:
        async with sessionmaker(engine)() as session, session.begin():
            for code in PROVINCES:
                _, keys[code] = await auth_service.create_principal(
                    session=session, name=f"bench feed {code}", role="officer",
                    jurisdiction_code=code, unit=None, actor="bench",
                )  # fmt: skip
            rows = await session.execute(
                text(
                    "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM"
                    " jurisdiction WHERE level = 'commune' AND valid_to IS NULL"
                    " AND country = 'VNM') x"
                )
            )
            points = [(float(x), float(y)) for x, y in rows]
    finally:
        await engine.dispose()
    return keys, points


async def subscribe(port: int, sub: Subscriber, opened: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sub.writer = writer
    writer.write(
        f"GET /events{sub.query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {sub.key}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n", 1)[0], head
    opened.set()
    while chunk := await reader.read(65536):
        now = time.perf_counter()
        for m in ID.finditer(chunk):
            sub.arrived.setdefault(m[1].decode(), now)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def write(
    base: str, key: str, points: list[tuple[float, float]], rate: float, seconds: float
) -> tuple[dict[str, float], list[float]]:
    """Create incidents at `rate` per second for `seconds`: commit time per id, latencies."""
    rng = random.Random(7)
    committed: dict[str, float] = {}
    latencies: list[float] = []
    count = int(rate * seconds)
    started = time.perf_counter()
    cap = started + seconds * 3  # bounded even when the server falls behind
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as c:

        async def one(n: int) -> None:
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            if time.perf_counter() > cap:
                return
            lon, lat = rng.choice(points)
            t = time.perf_counter()
            r = await c.post("/incidents", json={
                "category": CATEGORIES[n % len(CATEGORIES)], "severity": 1 + n % 5,
                "occurred_at": "2026-12-01T09:00:00+07:00",
                "location": {"type": "Point", "coordinates": [lon, lat]},
            })  # fmt: skip
            done = time.perf_counter()
            assert r.status_code == 201, r.text
            committed[r.json()["id"]] = done
            latencies.append(done - t)

        await asyncio.gather(*(one(n) for n in range(count)))
    return committed, latencies


def subscribers(key: str, scoped: dict[str, str], clients: int) -> list[Subscriber]:
    """Half national with no filter, a quarter national with a category, a quarter scoped."""
    subs: list[Subscriber] = []
    for n in range(clients):
        if n % 4 in (0, 1):
            subs.append(Subscriber("national", key))
        elif n % 4 == 2:
            subs.append(Subscriber("national, category", key, "?category=smuggling"))
        else:
            subs.append(Subscriber("scoped", scoped[PROVINCES[n % len(PROVINCES)]]))
    return subs


async def listen(port: int, keys: dict[str, str], clients: int) -> None:
    """The subscribers' process: open them, say `ready`, read until stdin says `stop`, then
    print what each received and when (perf_counter: one clock for every process on Linux)."""
    subs = subscribers(keys.pop("national"), keys, clients)
    for sub in subs:
        opened = asyncio.Event()
        sub.task = asyncio.create_task(subscribe(port, sub, opened))
        await asyncio.wait_for(opened.wait(), 30)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for sub in subs:
        if sub.writer is not None:
            sub.writer.close()
        if sub.task is not None:
            sub.task.cancel()
    await asyncio.gather(*(s.task for s in subs if s.task), return_exceptions=True)
    print(json.dumps({"cpu_s": time.process_time(), "subs": [[s.kind, s.arrived] for s in subs]}))


async def main_async(args: argparse.Namespace) -> None:
    c = cluster()
    url = c.url("bench")
    await prepare(url, args.incidents)
    key = await admin_key(url)
    scoped, points = await keys_and_points(url)
    with ExitStack() as stack:
        server = stack.enter_context(served(url))
        # --feed-process: the subscribers are served by a second API process on the same
        # database (the topology docs/events.md describes for many subscribers)
        feed = stack.enter_context(served(url)) if args.feed_process else server
        base, port = server.base, feed.port
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {key}"}
        ) as cl:
            await cl.get("/incidents", params={"limit": 1})  # warm
        cpu = cpu_s(server.pid)
        _, alone = await write(base, key, points, args.rate, args.seconds)
        print(
            f"creates, nobody subscribed: {fmt(alone)}; server CPU {cpu_s(server.pid) - cpu:.1f} s"
        )

        # the subscribers live in a process of their own: reading 200 streams must not delay
        # the writer's own measurements
        before = rss_kib(feed.pid)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.bench_events", "--listen", str(port),
            "--clients", str(args.clients),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=dict(os.environ, BENCH_KEYS=json.dumps({"national": key} | scoped)),
        )  # fmt: skip
        assert child.stdin is not None and child.stdout is not None
        try:
            line = await asyncio.wait_for(child.stdout.readline(), 120)
            assert line.strip() == b"ready", line
            await asyncio.sleep(3)
            after = rss_kib(feed.pid)
            print(
                f"{args.clients} idle subscribers: server RSS {before / 1024:.1f} →"
                f" {after / 1024:.1f} MiB, {(after - before) / args.clients:.1f} KiB per subscriber"
            )
            cpu, feed_cpu = cpu_s(server.pid), cpu_s(feed.pid)
            committed, with_subs = await write(base, key, points, args.rate, args.seconds)
            server_cpu, feed_cpu = cpu_s(server.pid) - cpu, cpu_s(feed.pid) - feed_cpu
            await asyncio.sleep(5)  # the last events arrive
            child.stdin.write(b"stop\n")
            await child.stdin.drain()
            report = json.loads(await asyncio.wait_for(child.stdout.read(), 120))
            received_by = report["subs"]
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()
        print(
            f"creates, {args.clients} subscribed: {fmt(with_subs)}; server CPU {server_cpu:.1f} s,"
            + (f" the feed's server {feed_cpu:.1f} s," if feed is not server else "")
            + f" the subscribers' process {report['cpu_s']:.1f} s in all"
        )
        print(
            "  create latency with / without subscribers (median, p95):"
            f" {ratio(with_subs, alone, 'median_ms')} / {ratio(with_subs, alone, 'p95_ms')}"
        )
        delays: list[float] = []
        received: Counter[str] = Counter()
        members: Counter[str] = Counter()
        for kind, arrived in received_by:
            members[kind] += 1
            for ident, at in arrived.items():
                if ident in committed:
                    delays.append(max(0.0, at - committed[ident]))
                    received[kind] += 1
        print(f"delivery latency over {len(delays):,} events received: {fmt(delays)}")
        for kind, n in members.items():
            print(f"  {kind}: {n} subscribers, {received[kind] / n:.1f} of {len(committed)} each")


def fmt(samples: list[float]) -> str:
    s = summary(samples)
    return f"median {s['median_ms']:.0f} ms, p95 {s['p95_ms']:.0f} ms ({len(samples)})"


def ratio(a: list[float], b: list[float], stat: str) -> str:
    return f"{summary(a)[stat] / summary(b)[stat]:.2f}×"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--incidents", type=int, default=1_000_000)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument(
        "--feed-process", action="store_true",
        help="serve the subscribers from a second API process (the writes from the first)",
    )  # fmt: skip
    p.add_argument("--listen", type=int, help=argparse.SUPPRESS)  # the subscribers' process
    args = p.parse_args()
    if args.listen:
        asyncio.run(listen(args.listen, json.loads(os.environ["BENCH_KEYS"]), args.clients))
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
