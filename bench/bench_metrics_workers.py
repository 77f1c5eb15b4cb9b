"""What /metrics across several processes costs (prometheus_client's multiprocess mode, as
`borderwatch serve --workers N` runs it) against one process's own counts (issue 20, "Observe").

    .venv/bin/python -m bench.bench_metrics_workers [--rounds 5] [--http]

In process, no database: the middleware's per-request update (`Metrics.observe`: a counter, a
histogram, a tile counter when a tile) and one scrape (`Metrics.exposition`) over SERIES label
combinations, in a child process per mode (prometheus_client picks memory or files when it is
imported), the modes alternating round by round (others share the machine: compare within a
run). The multiprocess scrape is timed with the files of 1 worker and of WORKERS_FILES workers
(each replaced worker leaves its counter and histogram files: they are read at every scrape).

With --http: two servers of 2 uvicorn workers each on the bench database (URL from
bench.common.cluster), one with PROMETHEUS_MULTIPROC_DIR (as serve sets it), one without (each
process its own counts, as before), alternating requests: `GET /healthz` and `GET /metrics`.
Bounded: fixed counts and a wall-clock cap on every loop.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, _serve, cluster, free_port

CAP_S = 60.0
OBSERVES = 100_000  # observe() calls per round
SCRAPES = 200  # exposition() calls per round
WORKERS_FILES = 8  # the scrape with the files of this many workers (live and replaced)
# route templates × statuses a busy process has seen: about what /metrics shows after a
# day of the dashboard (lists, tiles of three layers, analysis, OGC, the live feed)
ROUTES = [f"/bench/route{n}/{{id}}" for n in range(36)] + [
    f"/tiles/{layer}/{{z}}/{{x}}/{{y}}.mvt" for layer in ("incidents", "posts", "hotspots")
]
STATUSES = (200, 304, 404)
SERIES = [(r, "GET", s) for r in ROUTES for s in STATUSES]


def _metrics() -> Any:
    from fastapi import FastAPI

    from app.observe.metrics import Metrics

    return Metrics(FastAPI())


def _fill(directory: str) -> None:
    """Another worker's files: every series counted once (spawned with the directory set)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    metrics = _metrics()
    for route, method, status in SERIES:
        metrics.observe(route, method, status, 0.004)


def inner(mode: str) -> dict[str, float]:
    """One round in this (fresh) process: µs per observe(), ms per scrape."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o700)
        if mode == "multi":
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        else:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        metrics = _metrics()
        for route, method, status in SERIES:  # every series made once (labels() is cached)
            metrics.observe(route, method, status, 0.004)
        n, started = 0, time.perf_counter()
        while n < OBSERVES and time.perf_counter() - started < CAP_S:
            route, method, status = SERIES[n % len(SERIES)]
            metrics.observe(route, method, status, 0.004)
            n += 1
        out["observe_us"] = (time.perf_counter() - started) / n * 1e6

        def scrape_ms() -> float:
            times = []
            begun = time.perf_counter()
            for _ in range(SCRAPES):
                t = time.perf_counter()
                body = metrics.exposition()
                times.append(time.perf_counter() - t)
                if time.perf_counter() - begun > CAP_S:
                    break
            out["scrape_bytes"] = len(body)
            return statistics.median(times) * 1000

        out["scrape_ms"] = scrape_ms()
        if mode == "multi":
            ctx = multiprocessing.get_context("spawn")
            for _ in range(WORKERS_FILES - 1):
                p = ctx.Process(target=_fill, args=(directory,))
                p.start()
                p.join(60)
            out["scrape_files_ms"] = scrape_ms()
            out["files"] = len(os.listdir(directory))
    return out


def in_process(rounds: int) -> None:
    got: dict[str, list[dict[str, float]]] = {"single": [], "multi": []}
    for n in range(rounds):
        for mode in ("single", "multi") if n % 2 == 0 else ("multi", "single"):
            run = subprocess.run(
                [sys.executable, "-m", "bench.bench_metrics_workers", "--inner", mode],
                cwd=ROOT, capture_output=True, check=True, timeout=300,
                env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
            )  # fmt: skip
            got[mode].append(json.loads(run.stdout.decode().strip().splitlines()[-1]))
    med = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in got.items()}
    one, many = med["single"], med["multi"]
    print(f"in process, {len(SERIES)} series, median of {rounds} rounds per mode")
    print(f"  observe (per request)   one process {one['observe_us']:.2f} µs"
          f"   multiprocess {many['observe_us']:.2f} µs"
          f"   ratio {many['observe_us'] / one['observe_us']:.2f}")  # fmt: skip
    print(f"  scrape                  one process {one['scrape_ms']:.2f} ms"
          f"   multiprocess (1 worker's files) {many['scrape_ms']:.2f} ms"
          f"   ratio {many['scrape_ms'] / one['scrape_ms']:.2f}")  # fmt: skip
    print(f"  scrape, {WORKERS_FILES} workers' files ({many['files']:.0f} files)"
          f"   {many['scrape_files_ms']:.2f} ms"
          f"   ratio to one process {many['scrape_files_ms'] / one['scrape_ms']:.2f}"
          f"   body {one['scrape_bytes']:.0f} / {many['scrape_bytes']:.0f} bytes")  # fmt: skip


def http(rounds: int, root: Path) -> None:
    url = cluster().url("bench")
    base_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    base_env |= {"DATABASE_URL": url, "BORDERWATCH_ENVIRONMENT": "test", "PYTHONPATH": str(root)}
    base_env |= {"BORDERWATCH_RATE_LIMIT": "", "BORDERWATCH_TILE_RATE_LIMIT": ""}
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o700)
        servers = {}
        from contextlib import ExitStack

        with ExitStack() as stack:
            for mode in ("single", "multi"):
                port = free_port()
                env = dict(base_env)
                if mode == "multi":
                    env["PROMETHEUS_MULTIPROC_DIR"] = directory
                cmd = [
                    sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
                    "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                    "--workers", "2", "--timeout-worker-healthcheck", "30",
                ]  # fmt: skip
                servers[mode] = stack.enter_context(_serve(cmd, env, root, port))
            time.sleep(5)  # both workers of each up (the first /healthz may come from one)
            samples: dict[tuple[str, str], list[float]] = {}
            with httpx.Client(timeout=30) as client:
                begun = time.monotonic()
                for n in range(rounds * 100):
                    if time.monotonic() - begun > CAP_S * 3:
                        break
                    order = ("single", "multi") if n % 2 == 0 else ("multi", "single")
                    for mode in order:
                        for path in ("/healthz", "/metrics"):
                            t = time.perf_counter()
                            r = client.get(servers[mode].base + path)
                            samples.setdefault((mode, path), []).append(time.perf_counter() - t)
                            assert r.status_code == 200, r.text
    print(f"over HTTP, 2 workers each, {len(samples['single', '/healthz'])} requests each")
    for path in ("/healthz", "/metrics"):
        one = statistics.median(samples["single", path]) * 1000
        many = statistics.median(samples["multi", path]) * 1000
        print(f"  {path:9} p50 one process's counts {one:.2f} ms"
              f"   every worker's {many:.2f} ms   ratio {many / one:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--http", action="store_true", help="also over HTTP (bench database)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the code the servers run")
    parser.add_argument("--inner", choices=("single", "multi"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(inner(args.inner)))
        return
    in_process(args.rounds)
    if args.http:
        http(args.rounds, args.root)


if __name__ == "__main__":
    main()
