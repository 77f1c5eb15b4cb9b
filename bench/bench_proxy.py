"""The tile hit path through nginx's shared cache against the app answering the same URL, at
1 000 000 incidents.

    .venv/bin/python -m bench.bench_proxy

nginx runs docker/nginx/borderwatch.conf.template (the compose file's, its three placeholders
filled in) as this user on 127.0.0.1, in a temporary prefix, in front of one uvicorn on the
benchmark cluster; it is stopped by PID at the end. Two tiles: the busiest z12 tile (over the
5 000-point cap, so drawn as dense cells, made by its statement on every request: the app keeps
only z < 10 tiles) and 8/203/120 around Hồ Chí Minh City (an aggregate, which the app keeps
per version in memory after the first request). Both URLs carry
the current `v` from TileJSON, as a map's do; a national analyst key.

Targets, alternating per slice (the order rotating, so that load from elsewhere hits both
alike): "nginx hit" (the URL stored after its first request; the key's check kept 5 s, so
nearly every request is answered by nginx alone: the app's own count of /auth/check requests
during the run says how many were not) and "app" (the same URL and key to uvicorn directly: a
200 with the tile, as a client without the proxy gets it). Concurrency 1 and 8 over as many
keep-alive connections, each request written and read on the socket by a minimal HTTP/1.1
client (httpx's own CPU per request is several times nginx's, and would be what a hit
measures): p50 / p95 latency and requests per second. The machine is shared: compare within
one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from bench.bench_tiles import busiest
from bench.common import ROOT, bench_key, cluster, free_port, load, prepare, served

TEMPLATE = ROOT / "docker" / "nginx" / "borderwatch.conf.template"
OPENING = (8, 203, 120)
REQUESTS = 300  # per slice: target x tile x concurrency
CAP_S = 20.0  # no request of a slice starts after this


@contextmanager
def nginx(upstream: str) -> Iterator[str]:
    """nginx with the template on a free 127.0.0.1 port in front of `upstream` (as
    tests/test_proxy_cache.py runs it); its base URL; stopped by PID afterwards."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    home = Path(tempfile.mkdtemp(prefix="borderwatch-bench-nginx-"))
    port = free_port()
    conf = TEMPLATE.read_text()
    for name, value in (
        ("BORDERWATCH_UPSTREAM", upstream),
        ("BORDERWATCH_LISTEN", f"127.0.0.1:{port}"),
        ("BORDERWATCH_CACHE_DIR", str(home / "cache")),
    ):
        conf = conf.replace("${" + name + "}", value)
    (home / "cache").mkdir()
    (home / "borderwatch.conf").write_text(conf)
    user = "user root;" if os.geteuid() == 0 else ""
    temp = " ".join(
        f"{kind}_temp_path {home}/temp_{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # one worker: the app is one process too
    (home / "nginx.conf").write_text(
        f"{user}\nworker_processes 1;\npid {home}/nginx.pid;\nerror_log {home}/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; {temp} include {home}/borderwatch.conf; }}\n"
    )
    cmd = [binary, "-p", str(home), "-e", str(home / "error.log"), "-c", str(home / "nginx.conf")]
    proc = subprocess.Popen([*cmd, "-g", "daemon off;"])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((home / "error.log").read_text()[-2000:])
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


async def tile_paths(
    proxy: str, key: str, tiles: dict[str, tuple[int, int, int]]
) -> dict[str, str]:
    """Each tile's path and query with the current `v`, from the TileJSON through the proxy."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as c:
        template = (await c.get(proxy + "/tiles/incidents.json")).json()["tiles"][0]
    out = {}
    for name, (z, x, y) in tiles.items():
        parts = urlsplit(template.replace("{z}/{x}/{y}", f"{z}/{x}/{y}"))
        out[name] = f"{parts.path}?{parts.query}"
    return out


class Connections:
    """`size` keep-alive HTTP/1.1 connections to one server, each used by one request at a
    time; GET only, bodies by Content-Length (tiles and problems have one)."""

    def __init__(self, base: str, headers: dict[str, str], size: int) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.size = size
        self.free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def open(self) -> None:
        for _ in range(self.size):
            self.free.put_nowait(await asyncio.open_connection(self.host, self.port))

    async def close(self) -> None:
        while not self.free.empty():
            _, writer = self.free.get_nowait()
            writer.close()

    async def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        reader, writer = await self.free.get()
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.head}\r\n".encode()
            )
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            status = int(head[0].split()[1])
            headers = {}
            for line in head[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            return status, headers, body
        finally:
            self.free.put_nowait((reader, writer))


async def auth_checks(app: str) -> float:
    """How many GET /auth/check the app has answered (its /metrics, open to this host)."""
    async with httpx.AsyncClient() as c:
        text = (await c.get(app + "/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("borderwatch_http_requests_total{") and '"/auth/check"' in line
    )


async def run(url: str, app: str, proxy: str, key: str, rounds: int) -> dict[str, Any]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        x, y, n = (await busiest(conn, 12, 1))[0]
    finally:
        await conn.close()
    tiles = {f"z12 busiest 12/{x}/{y} ({n} incidents)": (12, x, y), "8/203/120": OPENING}
    paths = await tile_paths(proxy, key, tiles)
    headers = {"Authorization": f"Bearer {key}"}
    result: dict[str, Any] = {"tiles": paths, "timing": {}}
    via, direct = Connections(proxy, headers, 8), Connections(app, headers, 8)
    await via.open()
    await direct.open()
    try:
        statuses = {}
        for name, path in paths.items():  # fill the cache: the first is a miss
            statuses[name] = [(await via.get(path))[1].get("x-cache-status") for _ in range(2)]
        result["first two through nginx"] = statuses
        checks_before = await auth_checks(app)
        hits = 0
        sizes: dict[str, set[int]] = {}
        targets = {"nginx hit": via, "app": direct}
        samples: dict[str, list[dict[str, float]]] = {}
        for r in range(rounds):
            order = list(targets)[r % 2 :] + list(targets)[: r % 2]
            for name, path in paths.items():
                for concurrency in (1, 8):
                    for target in order:
                        client = targets[target]

                        async def fetch(p: str, client: Connections = client) -> bytes:
                            status, got, body = await client.get(p)
                            assert status == 200, body[:200]
                            if client is via:
                                assert got["x-cache-status"] == "HIT", got
                            return body

                        s = await load(fetch, [path] * REQUESTS, concurrency, CAP_S)
                        if client is via:
                            hits += int(s["requests"])
                        samples.setdefault(f"{name} | {target} | c{concurrency}", []).append(s)
                        sizes.setdefault(name, set()).add(int(s["median_bytes"]))
        checks = await auth_checks(app) - checks_before
        result["nginx hits"] = hits
        result["key checks the app answered meanwhile"] = checks
        result["bytes"] = {k: sorted(v) for k, v in sizes.items()}
        for label, runs in samples.items():
            result["timing"][label] = {
                "median_ms": sorted(s["median_ms"] for s in runs)[len(runs) // 2],
                "p95_ms": sorted(s["p95_ms"] for s in runs)[len(runs) // 2],
                "per_s": sorted(s["per_s"] for s in runs)[len(runs) // 2],
                "slices": [round(s["median_ms"], 2) for s in runs],
            }
    finally:
        await via.close()
        await direct.close()
    return result


def report(result: dict[str, Any]) -> None:
    print("\n| tile | target | c | p50 | p95 | req/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, s in result["timing"].items():
        tile, target, c = label.split(" | ")
        print(
            f"| {tile} | {target} | {c[1:]} | {s['median_ms']:.2f} ms | {s['p95_ms']:.2f} ms"
            f" | {s['per_s']:.0f} |"
        )
    print()
    for label, s in result["timing"].items():
        tile, target, c = label.split(" | ")
        if target == "nginx hit":
            app = result["timing"][f"{tile} | app | {c}"]
            print(
                f"{tile} {c}: nginx hit / app p50 = {s['median_ms'] / app['median_ms']:.4f}x,"
                f" req/s {s['per_s'] / app['per_s']:.1f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="slices per target, tile and c")
    args = parser.parse_args()
    c = cluster()
    url = c.url("bench")
    asyncio.run(prepare(url, args.incidents))
    key = asyncio.run(bench_key(url, "analyst", name="bench proxy"))
    # one principal sends far more tiles than the per-principal tile limit: off, as served()
    # turns the general limit off (the server inherits this environment)
    os.environ["BORDERWATCH_TILE_RATE_LIMIT"] = ""
    with served(url) as app, nginx(f"127.0.0.1:{app.port}") as proxy:
        result = asyncio.run(run(url, app.base, proxy, key, args.rounds))
    print(json.dumps(result, indent=1, default=str))
    report(result)


if __name__ == "__main__":
    main()
