"""A mixed load on 1 M incidents: dashboard users, field units and one import at once, against
1, 2 and 4 API processes (and, with --replica, reads on a streaming replica).

    .venv/bin/python -m bench.bench_load [--processes 1,2,4] [--users 6,12,24,48] [--stage-s 30]
                                         [--replica] [--json out.json]

Virtual users, each with a key of its own (national admins for the dashboards, province-scoped
editors for the field units), closed loops with think time:
- a **dashboard user** opens one of five views (the national view at z4, the south at z8,
  Hồ Chí Minh City at z11, the Hữu Nghị gate at z12, the northern border at z6) at 1366 × 768:
  the incidents and hot-spot tiles covering it (512 px tiles, 6 at a time, as a browser does
  over HTTP/1.1), the statistics for the view and the first list page; then pans by a third of
  the screen, thinks 3 s, and pans again (new tiles, stats, list), five pans per view;
- a **field unit** asks what happened within 5 km of where it stands (nearby, limit 50, at one
  of six border gates and cities), records an incident one time in four, and thinks 5 s;
- **one import** of 5 000 rows (CSV) starts with every stage.
Two dashboard users per field unit. Each stage runs --stage-s seconds at one number of users,
then every user stops after its current request (bounded by a timeout). Reported per stage
and request type: throughput, p50/p95/p99, errors and 5xx; the CPU used by the API processes,
PostgreSQL and this load generator over the stage (from /proc: all local); the busiest count of
active database connections (pg_stat_activity, sampled every second). The highest sustainable
load is the largest stage with no error, no 5xx and a tile p95 under 1 s.

The rate limits are off (the point is capacity, not the limits), and so is the dashboard warmer
(steady state, not the minute after a start). What the stages write (their
incidents and imported rows, source `bench-load…`) is deleted at the end, history included.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import math
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.common import (
    ROOT,
    Served,
    _serve,
    bench_key,
    cluster,
    free_port,
    prepare,
    replica,
    run,
)

TILE_PX = 512
SCREEN = (1366, 768)
# (name, lon, lat, zoom): the dashboard's own views (docs/performance.md, issue 20)
VIEWS = (
    ("national", 106.0, 16.0, 4),
    ("south", 106.7, 10.8, 8),
    ("hcmc", 106.70, 10.78, 11),
    ("huu-nghi", 106.70, 21.96, 12),
    ("north-border", 105.5, 22.3, 6),
)
# where field units stand: border gates and cities
FIELD = (
    (106.74, 21.90),  # by the Hữu Nghị gate, Lạng Sơn
    (107.30, 21.10),  # Quảng Ninh, inland of Móng Cái
    (106.20, 11.05),  # by the Mộc Bài gate, Tây Ninh
    (106.65, 16.62),  # by the Lao Bảo gate, Quảng Trị
    (105.25, 18.35),  # by the Cầu Treo gate, Hà Tĩnh
    (106.70, 10.78),  # Hồ Chí Minh City
)
# a field unit's key is scoped to the province it stands in (today's codes); each spot is 3 km
# or more inside it, and units stray about 1 km (the records stay inside their province)
FIELD_PROVINCES = ("VN-P20", "VN-P22", "VN-P80", "VN-P44", "VN-P42", "VN-P79")
IMPORT_ROWS = 5_000
PANS = 5
DASH_THINK_S = 3.0
FIELD_THINK_S = 5.0
BROWSER_PARALLEL = 6
SOURCE = "bench-load"
STOP_GRACE_S = 30.0
LOG = Path("/tmp/borderwatch-bench-load.log")  # the API processes' output


def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[float, float]:
    """Fractional tile coordinates of a point (Web Mercator)."""
    n = 2**z
    x = (lon + 180.0) / 360.0 * n
    lat_r = math.radians(lat)
    y = (1.0 - math.asinh(math.tan(lat_r)) / math.pi) / 2.0 * n
    return x, y


def tile_to_lonlat(x: float, y: float, z: int) -> tuple[float, float]:
    n = 2**z
    lon = x / n * 360.0 - 180.0
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / n))))
    return lon, lat


def view_tiles(lon: float, lat: float, z: int) -> tuple[list[tuple[int, int, int]], str]:
    """The 512 px tiles a 1366 × 768 map centred on (lon, lat) at zoom z shows, and its bbox."""
    cx, cy = lonlat_to_tile(lon, lat, z)
    half_w, half_h = SCREEN[0] / TILE_PX / 2, SCREEN[1] / TILE_PX / 2
    x0, x1, y0, y1 = cx - half_w, cx + half_w, cy - half_h, cy + half_h
    n = 2**z
    tiles = [
        (z, x, y)
        for x in range(max(0, math.floor(x0)), min(n - 1, math.floor(x1)) + 1)
        for y in range(max(0, math.floor(y0)), min(n - 1, math.floor(y1)) + 1)
    ]
    west, north = tile_to_lonlat(x0, y0, z)
    east, south = tile_to_lonlat(x1, y1, z)
    return tiles, f"{west:.5f},{south:.5f},{east:.5f},{north:.5f}"


@dataclass
class Record:
    """Every request of a stage: (type, seconds, status or 0 for a transport error)."""

    rows: list[tuple[str, float, int]] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    created: list[str] = field(default_factory=list)

    async def get(
        self, client: httpx.AsyncClient, kind: str, url: str, **kw: Any
    ) -> httpx.Response | None:
        return await self.send(client, kind, "GET", url, **kw)

    async def send(
        self, client: httpx.AsyncClient, kind: str, method: str, url: str, **kw: Any
    ) -> httpx.Response | None:
        t = time.perf_counter()
        try:
            r = await client.request(method, url, **kw)
        except httpx.HTTPError as exc:
            self.rows.append((kind, time.perf_counter() - t, 0))
            self.errors[kind].append(type(exc).__name__)
            return None
        self.rows.append((kind, time.perf_counter() - t, r.status_code))
        if r.status_code >= 400:
            self.errors[kind].append(f"{r.status_code} {r.text[:120]}")
        return r


async def templates(client: httpx.AsyncClient) -> dict[str, str]:
    """The tile URL templates (with their version) from the layers' TileJSON, as the page does."""
    out = {}
    for layer in ("incidents", "hotspots"):
        r = await client.get(f"/tiles/{layer}.json")
        r.raise_for_status()
        out[layer] = str(r.json()["tiles"][0])
    return out


async def dashboard_user(base: str, key: str, rec: Record, stop: asyncio.Event, seed: int) -> None:
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=BROWSER_PARALLEL)
    headers = {"Authorization": f"Bearer {key}", "Accept-Language": "vi"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits) as c:
        gate = asyncio.Semaphore(BROWSER_PARALLEL)

        async def tile(kind: str, url: str) -> None:
            async with gate:
                await rec.get(c, kind, url)

        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                urls = await templates(c)
            except httpx.HTTPError as exc:
                rec.errors["tilejson"].append(type(exc).__name__)
                await asyncio.sleep(1)
                continue
            rec.rows.append(("tilejson", time.perf_counter() - t0, 200))
            _, lon, lat, z = VIEWS[rng.randrange(len(VIEWS))]
            for _pan in range(PANS):
                if stop.is_set():
                    return
                tiles, bbox = view_tiles(lon, lat, z)
                jobs: list[Awaitable[Any]] = [
                    tile("tile", urls["incidents"].format(z=tz, x=tx, y=ty)) for tz, tx, ty in tiles
                ]
                if z >= 5:
                    jobs += [
                        tile("hotspot_tile", urls["hotspots"].format(z=tz, x=tx, y=ty))
                        for tz, tx, ty in tiles
                    ]
                jobs.append(
                    rec.get(c, "stats", "/analysis/stats", params={"group_by": "category",
                                                                  "bbox": bbox})
                )  # fmt: skip
                jobs.append(rec.get(c, "list", "/incidents", params={"bbox": bbox, "limit": 50}))
                await asyncio.gather(*jobs)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), DASH_THINK_S * rng.uniform(0.5, 1.5))
                # pan by a third of the screen in a random direction
                cx, cy = lonlat_to_tile(lon, lat, z)
                angle = rng.uniform(0, 2 * math.pi)
                cx += math.cos(angle) * SCREEN[0] / TILE_PX / 3
                cy += math.sin(angle) * SCREEN[1] / TILE_PX / 3
                lon, lat = tile_to_lonlat(cx, cy, z)


async def field_unit(
    base: str, key: str, spot: tuple[float, float], rec: Record, stop: asyncio.Event, seed: int
) -> None:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as c:
        i = 0
        while not stop.is_set():
            lon = spot[0] + rng.gauss(0, 0.008)
            lat = spot[1] + rng.gauss(0, 0.008)
            await rec.get(
                c, "nearby", "/incidents/nearby",
                params={"lon": f"{lon:.5f}", "lat": f"{lat:.5f}", "radius_m": 5000, "limit": 50},
            )  # fmt: skip
            if i % 4 == 0:
                body = {
                    "category": "smuggling",
                    "severity": 1 + i % 5,
                    "occurred_at": "2026-11-30T08:00:00+07:00",
                    "location": {"type": "Point", "coordinates": [round(lon, 5), round(lat, 5)]},
                    "description": f"load test {seed}-{i}",
                    "source": SOURCE,
                }
                r = await rec.send(c, "create", "POST", "/incidents", json=body)
                if r is not None and r.status_code == 201:
                    rec.created.append(str(r.json()["id"]))
            i += 1
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FIELD_THINK_S * rng.uniform(0.5, 1.5))


def import_csv(stage: str, rows: int) -> bytes:
    rng = random.Random(hash(stage) & 0xFFFF)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["source_id", "occurred_at", "lat", "lon", "category", "severity", "description"])
    for i in range(rows):
        lon, lat = FIELD[i % len(FIELD)]
        w.writerow([
            f"{stage}-{i}", f"2026-10-{1 + i % 28:02d}T09:00:00+07:00",
            f"{lat + rng.gauss(0, 0.05):.6f}", f"{lon + rng.gauss(0, 0.05):.6f}",
            "smuggling", 1 + i % 5, f"nhập thử {i}",
        ])  # fmt: skip
    return out.getvalue().encode()


async def one_import(base: str, key: str, stage: str, rec: Record) -> float:
    async with httpx.AsyncClient(base_url=base, timeout=600) as c:
        t = time.perf_counter()
        await rec.send(
            c, "import", "POST", "/incidents/import",
            params={"format": "csv", "source": f"{SOURCE}-import"},
            content=import_csv(stage, IMPORT_ROWS),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "text/csv"},
        )  # fmt: skip
        return time.perf_counter() - t


async def _nothing() -> float:
    return 0.0


TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    with suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / TICK
    return 0.0


def _tree(root: int) -> list[int]:
    """`root` and its descendants (from /proc)."""
    parents: dict[int, list[int]] = defaultdict(list)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with suppress(OSError, IndexError, ValueError):
            ppid = int(Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[1])
            parents[ppid].append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def cpu_of(roots: list[int]) -> dict[int, float]:
    """CPU seconds so far (children that exited included) of each process under `roots`."""
    return {pid: _cpu(pid) for root in roots for pid in _tree(root)}


def postmaster(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


@contextmanager
def api(url: str, processes: int, read_url: str | None) -> Iterator[Served]:
    """The API with `processes` uvicorn workers (what `borderwatch serve --workers N` runs)."""
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=url,
        BORDERWATCH_ENVIRONMENT="test",
        BORDERWATCH_RATE_LIMIT="",
        BORDERWATCH_TILE_RATE_LIMIT="",
        BORDERWATCH_LOG_FORMAT="text",
        # steady state, not a start: no warmer (its first fill is a minute of PostgreSQL's time
        # per process after each start; the warm-up stage fills what the users ask for)
        BORDERWATCH_DASHBOARD_WARM_GAP_S="0",
        # PostgreSQL here allows 100 connections: each process's pool is at most 2 × this
        BORDERWATCH_DB_POOL_SIZE=str(max(5, 40 // processes // 2)),
    )
    if read_url:
        env["BORDERWATCH_READ_DATABASE_URL"] = read_url
    cmd = [
        sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--workers", str(processes), "--timeout-worker-healthcheck", "30",
    ]  # fmt: skip
    with _serve(cmd, env, ROOT, port, log=LOG) as s:
        yield s


async def active_sampler(dsn: str, stop: asyncio.Event, seen: list[int]) -> None:
    """The number of active borderwatch connections, every second."""
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            n = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'borderwatch'"
                " AND state = 'active'"
            )
            seen.append(int(n))
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        await conn.close()


def pct(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


async def stage(
    served: Served, dsn: str, pg_roots: list[int], keys: dict[str, list[str]], users: int,
    stage_s: float, label: str, *, with_import: bool = True,
) -> dict[str, Any]:  # fmt: skip
    rec = Record()
    stop = asyncio.Event()
    n_field = max(1, users // 3)
    n_dash = users - n_field
    before = cpu_of([served.pid]), cpu_of(pg_roots), time.process_time()
    active: list[int] = []
    started = time.perf_counter()
    tasks = [
        asyncio.create_task(
            dashboard_user(served.base, keys["dash"][i % len(keys["dash"])], rec, stop, i)
        )
        for i in range(n_dash)
    ]
    tasks += [
        asyncio.create_task(
            field_unit(
                served.base, keys["field"][i % len(keys["field"])], FIELD[i % len(FIELD)],
                rec, stop, 1000 + i,
            )
        )
        for i in range(n_field)
    ]  # fmt: skip
    sampler = asyncio.create_task(active_sampler(dsn, stop, active))
    importer = asyncio.create_task(
        one_import(served.base, keys["admin"][0], label, rec) if with_import else _nothing()
    )
    await asyncio.sleep(stage_s)
    stop.set()
    _, pending = await asyncio.wait([*tasks, sampler], timeout=STOP_GRACE_S)
    for t in pending:
        t.cancel()
    import_s = await asyncio.wait_for(importer, 600)
    elapsed = time.perf_counter() - started
    after = cpu_of([served.pid]), cpu_of(pg_roots), time.process_time()
    api_cpu = sum(v - before[0].get(p, 0.0) for p, v in after[0].items())
    pg_cpu = sum(v - before[1].get(p, 0.0) for p, v in after[1].items())
    by_kind: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for kind, s, status in rec.rows:
        by_kind[kind].append((s, status))
    kinds = {}
    for kind, rows in sorted(by_kind.items()):
        lat = sorted(s for s, _ in rows)
        kinds[kind] = {
            "requests": len(rows),
            "per_s": len(rows) / elapsed,
            "p50_ms": statistics.median(lat) * 1000,
            "p95_ms": pct(lat, 0.95),
            "p99_ms": pct(lat, 0.99),
            "errors": sum(1 for _, st in rows if st == 0 or st >= 400),
            "5xx": sum(1 for _, st in rows if st >= 500),
        }
    total = len(rec.rows)
    return {
        "label": label,
        "users": users,
        "dashboard_users": n_dash,
        "field_units": n_field,
        "seconds": elapsed,
        "requests": total,
        "per_s": total / elapsed,
        "errors": sum(k["errors"] for k in kinds.values()),
        "5xx": sum(k["5xx"] for k in kinds.values()),
        "import_s": import_s,
        "cpu_api_cores": api_cpu / elapsed,
        "cpu_postgres_cores": pg_cpu / elapsed,
        "cpu_loadgen_cores": (after[2] - before[2]) / elapsed,
        "db_active_max": max(active, default=0),
        "db_active_mean": statistics.fmean(active) if active else 0.0,
        "kinds": kinds,
        "error_samples": {k: v[:3] for k, v in rec.errors.items()},
        "created": rec.created,
    }


def sustainable(result: dict[str, Any]) -> bool:
    tile = result["kinds"].get("tile")
    return (
        result["errors"] == 0 and result["5xx"] == 0 and tile is not None
        and tile["p95_ms"] < 1000
    )  # fmt: skip


def report(r: dict[str, Any]) -> None:
    print(
        f"\n== {r['label']}: {r['users']} users ({r['dashboard_users']} dashboards,"
        f" {r['field_units']} field units), {r['seconds']:.0f} s: {r['per_s']:.1f} req/s,"
        f" errors {r['errors']}, 5xx {r['5xx']}, import {r['import_s']:.1f} s;"
        f" CPU cores: API {r['cpu_api_cores']:.2f}, PostgreSQL {r['cpu_postgres_cores']:.2f},"
        f" load generator {r['cpu_loadgen_cores']:.2f}; active connections max"
        f" {r['db_active_max']} mean {r['db_active_mean']:.1f}"
        f" -> {'sustainable' if sustainable(r) else 'NOT sustainable'}"
    )
    print(f"   {'type':<13}{'req':>7}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'err':>6}{'5xx':>6}")  # fmt: skip
    for kind, k in r["kinds"].items():
        print(
            f"   {kind:<13}{k['requests']:>7}{k['per_s']:>8.1f}{k['p50_ms']:>9.0f}"
            f"{k['p95_ms']:>9.0f}{k['p99_ms']:>9.0f}{k['errors']:>6}{k['5xx']:>6}"
        )
    for kind, samples in r["error_samples"].items():
        print(f"   errors of {kind}: {samples}")


async def make_keys(url: str, dash: int, field_units: int) -> dict[str, list[str]]:
    return {
        "admin": [await bench_key(url, "admin", name="load-import")],
        "dash": [await bench_key(url, "admin", name=f"load-dash-{i}") for i in range(dash)],
        "field": [
            await bench_key(
                url, "officer", jurisdiction=FIELD_PROVINCES[i % len(FIELD)], name=f"load-field-{i}"
            )
            for i in range(field_units)
        ],
    }


async def clean(dsn: str) -> int:
    """Delete what the stages wrote (their incidents, history, events and alerts). History is
    append-only (a trigger refuses deletes): the benchmark's superuser switches triggers off for
    this transaction, then moves the incidents' layer version itself (its trigger is off too)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL statement_timeout = 0")
            await conn.execute("SET LOCAL session_replication_role = replica")
            ids = await conn.fetch(
                "SELECT id FROM incident WHERE source = $1 OR source = $2",
                SOURCE, f"{SOURCE}-import",
            )  # fmt: skip
            idl = [r["id"] for r in ids]
            for table in ("alert", "event_log", "incident_history"):
                await conn.execute(f"DELETE FROM {table} WHERE incident_id = ANY($1)", idl)
            await conn.execute("DELETE FROM incident WHERE id = ANY($1)", idl)
            await conn.execute(
                "UPDATE layer_version SET version = version + 1, changed_at = clock_timestamp()"
                " WHERE layer = 'incidents'"
            )
            return len(idl)
    finally:
        await conn.close()


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    c = cluster()
    url = c.url(args.database)
    await prepare(url, args.incidents)
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    most = max(args.users)
    keys = await make_keys(url, dash=most - max(1, most // 3), field_units=max(1, most // 3))
    pg_roots = [postmaster(c.pgdata)]
    results = []
    configs: list[tuple[int, str | None]] = [(p, None) for p in args.processes]
    if args.replica:
        replica_url = replica(c).url(args.database)
        configs += [(p, replica_url) for p in args.replica_processes or args.processes]
    try:
        for processes, read_url in configs:
            where = f"{processes} process{'es' if processes > 1 else ''}"
            if read_url:
                where += " + replica"
            with api(url, processes, read_url) as served:
                # warm: one pass of every view (first visit of the day is another benchmark)
                await stage(
                    served,
                    dsn,
                    pg_roots,
                    keys,
                    2,
                    min(10.0, args.stage_s),
                    "warm-up",
                    with_import=False,
                )
                for users in args.users:
                    r = await stage(
                        served, dsn, pg_roots, keys, users, args.stage_s, f"{where}, {users} users"
                    )
                    r["processes"], r["replica"] = processes, bool(read_url)
                    report(r)
                    results.append(r)
                    if not sustainable(r) and r["errors"] > r["requests"] * 0.05:
                        break  # far past the limit: the next stage only adds errors
    finally:
        print(f"\ncleaned {await clean(dsn)} incidents written by the load test")
    best: dict[str, Any] = {}
    for r in results:
        name = f"{r['processes']}{'+replica' if r['replica'] else ''}"
        if sustainable(r) and r["per_s"] > best.get(name, {}).get("per_s", 0):
            best[name] = r
    print("\nhighest sustainable load (no error, no 5xx, tile p95 < 1 s):")
    for name, r in best.items():
        print(f"  {name}: {r['users']} users, {r['per_s']:.1f} req/s")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--database", default="bench")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--users", default="6,12,24,48")
    parser.add_argument("--stage-s", type=float, default=30.0)
    parser.add_argument(
        "--replica",
        action="store_true",
        help="also run every stage with reads on a streaming replica of the benchmark cluster"
        " (made once with pg_basebackup: bench.common.replica)",
    )
    parser.add_argument(
        "--replica-processes", default=None, help="with --replica: these numbers of processes"
    )
    parser.add_argument("--json", default=None, help="write every stage's figures here")
    args = parser.parse_args()
    args.processes = [int(p) for p in args.processes.split(",")]
    args.users = [int(u) for u in args.users.split(",")]
    if args.replica_processes:
        args.replica_processes = [int(p) for p in args.replica_processes.split(",")]
    results = run(main_async(args))
    if args.json:
        for r in results:
            r.pop("created", None)
        Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
