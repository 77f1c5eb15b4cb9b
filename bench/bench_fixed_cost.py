"""The fixed cost of a request: each endpoint over HTTP against its own statements and /healthz,
in one run, alternating (issue 20, "Fast where it is busiest").

    .venv/bin/python -m bench.bench_fixed_cost --incidents 1000000 [--old /tmp/h4-old]

Targets: sequential requests (keep-alive, one uvicorn worker, the rate limits counted as in
production but set too high to refuse) and statement runs, one call of each target per step,
the order rotated at each step (others share the machine: compare within a run):

- `GET /healthz` (no database, no key);
- `GET /incidents/{id}` (one incident near the Hữu Nghị gate) against the key lookup and the
  Feature statement, each run as the service runs it (asyncpg `fetchrow` on one connection
  with the service's session settings);
- a 304 z12 tile (If-None-Match) against the layer-versions statement;
- z12 tiles holding bench_tiles' sampled incidents (as bench_ogc) against the tile statement;
- `GET /incidents/nearby` 5 km, limit 50, at the centre of the densest 0.5° cell (as bench_api)
  against the same statement run twice: with `fetch` (every row asked for at once: PostgreSQL
  may start parallel workers, as it did through SQLAlchemy) and with `fetchrow` (a portal that
  may be suspended: the leader alone).

With `--old DIR` a second server runs the code checked out in DIR (a `git worktree add DIR
<commit>`) beside ours, with `--limits-off` a third runs ours with no rate limit counted: every
server's figures come from the same steps.

Then, in process (httpx's ASGI transport, no server), the database round trips of one request
of each kind: calls into asyncpg that each cost one exchange with PostgreSQL (simple queries
such as BEGIN and ROLLBACK, prepares of new statements, binds and executes).
Bounded: a fixed number of requests and a wall-clock cap on every loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from app.auth import keys
from app.auth import service as auth_service
from app.auth.scope import NATIONAL
from app.config import Settings
from app.db import DriverStatement
from app.incidents import nearby
from app.incidents import service as incident_service
from app.incidents.filters import IncidentFilter
from app.tiles import incidents as tiles
from app.tiles import versions
from app.tiles.tile import Tile
from bench.bench_api import hotspot_sql
from bench.bench_tiles import sample_points, tile_of
from bench.common import ROOT, Served, _serve, admin_key, cluster, free_port, prepare

# the dialect the service compiles for (numbered $n parameters)
ASYNCPG_DIALECT = make_url("postgresql+asyncpg://").get_dialect()()
CAP_S = 60.0  # no loop runs longer than this
# the service's session settings (app/db.py create_engine), for the statements run alone
SERVER_SETTINGS = {"TimeZone": "UTC", "jit": "off", "plan_cache_mode": "force_custom_plan"}
GATE = (106.70, 21.96)  # Hữu Nghị gate: the incident read by id is the one nearest to it
NEARBY_RADIUS_M, NEARBY_LIMIT = 5000, 50
Z = 12
TILES = 8  # z12 tiles of bench_tiles' sample points (fixed seed), as bench_ogc


@dataclass
class Target:
    """A loop: `fetch()` once per sample."""

    name: str
    fetch: Callable[[], Awaitable[Any]]
    samples: list[float] = field(default_factory=list)
    pid: int | None = None  # the server's process: its CPU time per call is kept too
    cpu: list[float] = field(default_factory=list)


def cpu_s(pid: int) -> float:
    """Seconds the process's threads have run on a CPU (the scheduler's nanosecond count,
    /proc/PID/task/*/schedstat: unlike utime, fine enough for one request)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def p50(samples: list[float]) -> float:
    """Median in ms."""
    return statistics.median(samples) * 1000 if samples else float("nan")


# the limits as production counts them (in PostgreSQL, app/auth/ratelimit.py), set high enough
# that one benchmark principal is never refused; LIMITS_OFF: not counted at all
LIMITS_ON = {
    "BORDERWATCH_RATE_LIMIT": "1000000/minute",
    "BORDERWATCH_TILE_RATE_LIMIT": "1000000/minute",
    "BORDERWATCH_AUTH_FAILURE_LIMIT": "30/minute",
}
LIMITS_OFF = dict.fromkeys(LIMITS_ON, "")


@contextlib.contextmanager
def serve_from(url: str, root: Path, env_extra: dict[str, str] | None = None) -> Iterator[Served]:
    """The API of the code in `root` (one uvicorn worker, as bench.common.served), run with
    this interpreter, with the rate limits of LIMITS_ON unless `env_extra` says otherwise."""
    port = free_port()
    env = dict(os.environ, DATABASE_URL=url, BORDERWATCH_ENVIRONMENT="test", PYTHONPATH=str(root))
    env |= LIMITS_ON | (env_extra or {})
    cmd = [
        sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    with _serve(cmd, env, root, port) as s:
        yield s


@dataclass
class Setup:
    """What every target asks for."""

    key: str
    incident_id: uuid.UUID
    lon: float
    lat: float
    tiles: list[tuple[int, int, int]]


async def choose(dsn: str) -> tuple[uuid.UUID, float, float, list[tuple[int, int, int]]]:
    """The incident read by id, the nearby point and the z12 tiles."""
    conn = await asyncpg.connect(dsn)
    try:
        incident_id = await conn.fetchval(
            "SELECT id FROM incident WHERE deleted_at IS NULL"
            " ORDER BY geom <-> ST_SetSRID(ST_MakePoint($1, $2), 4326) LIMIT 1",
            *GATE,
        )
        row = await conn.fetchrow(hotspot_sql())
        assert row is not None, "no incidents"
        points = await sample_points(conn, TILES)
    finally:
        await conn.close()
    lon, lat = float(row["x"]) + 0.25, float(row["y"]) + 0.25
    return incident_id, lon, lat, [(Z, *tile_of(x, y, Z)) for x, y in points]


MISSED_304: dict[str, int] = {}  # server -> 304 requests answered 200 (the version moved)


def http_targets(
    label: str, client: httpx.AsyncClient, pid: int, s: Setup, etag: str
) -> list[Target]:
    """The five HTTP loops of one server (process `pid`)."""
    tile_turn = iter(range(10**9))

    async def get(path: str, params: dict[str, Any] | None = None, **headers: str) -> bytes:
        r = await client.get(path, params=params, headers=headers)
        assert r.status_code in (200, 304), (path, r.status_code, r.text[:300])
        return r.content

    async def tile() -> bytes:
        z, x, y = s.tiles[next(tile_turn) % len(s.tiles)]
        return await get(f"/tiles/incidents/{z}/{x}/{y}.mvt")

    z, x, y = s.tiles[0]
    held = {"etag": etag}

    async def not_modified() -> bytes:
        # other work on the shared cluster writes incidents: the layer version moves, and the
        # tile is then sent again (200, counted apart) with the ETag the next request sends
        r = await client.get(
            f"/tiles/incidents/{z}/{x}/{y}.mvt", headers={"if-none-match": held["etag"]}
        )
        if r.status_code != 304:
            assert r.status_code == 200, r.text[:300]
            held["etag"] = r.headers["etag"]
            MISSED_304[label] = MISSED_304.get(label, 0) + 1
        return r.content

    near = {"lon": s.lon, "lat": s.lat, "radius_m": NEARBY_RADIUS_M, "limit": NEARBY_LIMIT}
    return [
        Target(f"{label} healthz", lambda: get("/healthz"), pid=pid),
        Target(f"{label} by id", lambda: get(f"/incidents/{s.incident_id}"), pid=pid),
        Target(f"{label} tile 304", not_modified, pid=pid),
        Target(f"{label} tile z12", tile, pid=pid),
        Target(f"{label} nearby", lambda: get("/incidents/nearby", near), pid=pid),
    ]


def sql_targets(
    conn: asyncpg.Connection, light: asyncpg.Connection, generic: asyncpg.Connection, s: Setup
) -> list[Target]:
    """The statements of those requests, run as the service runs them: the tiles and nearby on
    `conn`, the small ones on `light` (on a loaded machine a backend that has just run 100 ms of
    work waits longer for a CPU than one that mostly sleeps), and the key lookup and the Feature
    also on `generic`, a connection whose plan_cache_mode lets PostgreSQL keep a generic plan:
    the service plans every statement afresh (force_custom_plan), and the Feature's nine-table
    join costs several times more to plan than to run."""
    d = ASYNCPG_DIALECT
    by_prefix = auth_service._by_prefix(d)
    prefix = keys.prefix_of(s.key)
    by_id = DriverStatement(
        incident_service._feature_statement(NATIONAL, "vi"), d, {"incident_id": s.incident_id}
    )
    version = versions._statement(d)
    filt = IncidentFilter(scope=NATIONAL)
    made: list[tuple[str, list[Any]]] = []
    for z, x, y in s.tiles:
        m = tiles.incident_tile_statement(
            filt, Tile(z, x, y), aggregate_only=False, cap=tiles.MAX_TILE_POINTS
        )
        assert m is not None
        stmt, params = m
        ds = tiles._driver_statement(stmt, d, frozenset(params))
        made.append((ds.sql, ds.args(params)))
    tile_turn = iter(range(10**9))
    near = nearby._driver_statement(filt, "vi", d)
    near_args = near.args(
        nearby.parameters(lon=s.lon, lat=s.lat, radius_m=NEARBY_RADIUS_M, limit=NEARBY_LIMIT)
    )
    key_args = by_prefix.args({"prefix": prefix})
    id_args = by_id.args({"incident_id": s.incident_id})

    async def tile() -> Any:
        sql, args = made[next(tile_turn) % len(made)]
        return await conn.fetchrow(sql, *args)

    return [
        Target("SQL key lookup", lambda: light.fetchrow(by_prefix.sql, *key_args)),
        Target("SQL by id", lambda: light.fetchrow(by_id.sql, *id_args)),
        Target("SQL key lookup, generic plan", lambda: generic.fetchrow(by_prefix.sql, *key_args)),
        Target("SQL by id, generic plan", lambda: generic.fetchrow(by_id.sql, *id_args)),
        Target("SQL versions", lambda: light.fetchrow(version.sql)),
        Target("SQL tile z12", tile),
        Target("SQL nearby, fetch (parallel allowed)", lambda: conn.fetch(near.sql, *near_args)),
        Target("SQL nearby, fetchrow (leader alone)", lambda: conn.fetchrow(near.sql, *near_args)),
    ]


async def run_rounds(targets: list[Target], steps: int) -> None:
    """`steps` times one call of every target, the order rotated at each step: every target
    sees the same load from whatever else runs on the machine."""
    for t in targets:  # warm-up: plans, caches, connections
        for _ in range(3):
            await t.fetch()
    deadline = time.monotonic() + CAP_S * 10
    for i in range(steps):
        k = i % len(targets)
        for t in targets[k:] + targets[:k]:
            cpu = cpu_s(t.pid) if t.pid is not None else 0.0
            started = time.perf_counter()
            await t.fetch()
            t.samples.append(time.perf_counter() - started)
            if t.pid is not None:
                t.cpu.append(cpu_s(t.pid) - cpu)
        if time.monotonic() > deadline:
            break


def report(targets: list[Target], labels: list[str]) -> None:
    """Per server: each endpoint's p50 against its statements and /healthz."""
    m = {t.name: p50(t.samples) for t in targets}
    print("\nmedians (ms), all steps; for the servers also their CPU time per request:")
    for t in targets:
        cpu = f"  server CPU {p50(t.cpu):6.2f} ms" if t.cpu else ""
        print(f"  {t.name:<40} {m[t.name]:8.2f}{cpu}  (n={len(t.samples)})")
    key = m["SQL key lookup"]
    own = {
        "by id": ("SQL by id", "SQL by id, generic plan"),
        "tile 304": ("SQL versions",),
        "tile z12": ("SQL tile z12",),
        "nearby": ("SQL nearby, fetchrow (leader alone)", "SQL nearby, fetch (parallel allowed)"),
    }
    for label in labels:
        health = m[f"{label} healthz"]
        print(f"\n{label}: endpoint p50 against its statement (and the key lookup) and /healthz")
        for endpoint, stmts in own.items():
            http = m[f"{label} {endpoint}"]
            for stmt in stmts:
                sql = m[stmt]
                print(
                    f"  {endpoint:<9} {http:7.2f} ms | {stmt:<37} {sql:6.2f} ms:"
                    f" {http / sql:5.2f}x, +{http - sql:6.2f} ms"
                    f" (+{http - sql - key:6.2f} beyond key lookup)"
                    f" | healthz {health:5.2f} ms: +{http - health:6.2f} ms"
                )
    first = labels[0]
    for other in labels[1:]:
        print(f"\n{first} against {other} (p50 ratio, the same steps):")
        for endpoint in ("healthz", *own):
            a, b = m[f"{first} {endpoint}"], m[f"{other} {endpoint}"]
            print(f"  {endpoint:<9} {a:7.2f} / {b:7.2f} ms = {a / b:.2f}x")


# --- round trips, in process ---------------------------------------------------------------

ROUND_TRIPS: list[str] = []


def count_round_trips() -> None:
    """Wrap the asyncpg calls that each cost one exchange with PostgreSQL (for this process)."""
    conn_cls = asyncpg.connection.Connection
    stmt_cls = asyncpg.prepared_stmt.PreparedStatement

    def wrap(cls: Any, name: str, label: Callable[..., str]) -> None:
        original = getattr(cls, name)

        async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            ROUND_TRIPS.append(label(*args, **kwargs))
            return await original(self, *args, **kwargs)

        setattr(cls, name, counted)

    def first_words(query: str, *_: Any, **__: Any) -> str:
        return " ".join(query.split()[:2])[:30]

    wrap(conn_cls, "execute", lambda q, *a, **k: first_words(q) if not a else "execute+args")
    wrap(conn_cls, "_execute", lambda q, *a, **k: "bind/execute " + first_words(q))
    wrap(conn_cls, "prepare", lambda q, *a, **k: "prepare " + first_words(q))
    for name in ("fetch", "fetchrow", "fetchval"):
        wrap(stmt_cls, name, lambda *a, n=name, **k: f"prepared.{n}")


async def round_trips(url: str, s: Setup, label: str) -> None:
    """Round trips per request of each kind, in process (the same app as the server, the
    rate limits counted as in LIMITS_ON)."""
    from app.db import create_engine
    from app.main import create_app

    settings = Settings(
        environment="test",
        database_url=None,
        rate_limit=LIMITS_ON["BORDERWATCH_RATE_LIMIT"],
        tile_rate_limit=LIMITS_ON["BORDERWATCH_TILE_RATE_LIMIT"],
        auth_failure_limit=LIMITS_ON["BORDERWATCH_AUTH_FAILURE_LIMIT"],
    )
    engine = create_engine(url, settings)
    app = create_app(settings, engine=engine)
    count_round_trips()
    z, x, y = s.tiles[0]
    tile = f"/tiles/incidents/{z}/{x}/{y}.mvt"
    near = {"lon": s.lon, "lat": s.lat, "radius_m": NEARBY_RADIUS_M, "limit": NEARBY_LIMIT}
    print(f"\n{label}: round trips per request (in process, after two warm-up requests):")
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {s.key}"},
        ) as client:
            etag = (await client.get(tile)).headers["etag"]
            asks: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
                ("healthz", "/healthz", {}, {}),
                ("by id", f"/incidents/{s.incident_id}", {}, {}),
                ("tile 304", tile, {}, {"if-none-match": etag}),
                ("tile z12", tile, {}, {}),
                ("nearby", "/incidents/nearby", near, {}),
            ]
            for name, path, params, headers in asks:
                for _ in range(2):
                    await client.get(path, params=params, headers=headers)
                ROUND_TRIPS.clear()
                r = await client.get(path, params=params, headers=headers)
                assert r.status_code in (200, 304), r.text[:300]
                print(f"  {name:<9} {len(ROUND_TRIPS)} ({r.status_code}): {', '.join(ROUND_TRIPS)}")
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=60, help="calls of each target")
    parser.add_argument("--old", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--round-trips-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--limits-off", action="store_true", help="also our code with no rate limit counted"
    )
    args = parser.parse_args()

    url = cluster().url("bench")
    asyncio.run(prepare(url, args.incidents))
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    key = asyncio.run(admin_key(url))
    incident_id, lon, lat, tile_list = asyncio.run(choose(dsn))
    s = Setup(key, incident_id, lon, lat, tile_list)
    if args.round_trips_only:  # run by the line below with another checkout's code
        asyncio.run(round_trips(url, s, "old"))
        return
    print(
        f"incident {incident_id}; nearby at ({lon}, {lat}) {NEARBY_RADIUS_M} m limit"
        f" {NEARBY_LIMIT}; z12 tiles {tile_list}"
    )

    async def measure(servers: dict[str, Served]) -> list[Target]:
        conn = await asyncpg.connect(dsn, server_settings=SERVER_SETTINGS)
        light = await asyncpg.connect(dsn, server_settings=SERVER_SETTINGS)
        generic = await asyncpg.connect(
            dsn, server_settings=SERVER_SETTINGS | {"plan_cache_mode": "auto"}
        )
        clients = {
            label: httpx.AsyncClient(
                base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"}
            )
            for label, base in ((name, served.base) for name, served in servers.items())
        }
        try:
            z, x, y = tile_list[0]
            first = await clients["new"].get(f"/tiles/incidents/{z}/{x}/{y}.mvt")
            etag = first.headers["etag"]
            targets = sql_targets(conn, light, generic, s)
            for label, client in clients.items():
                targets += http_targets(label, client, servers[label].pid, s, etag)
            await run_rounds(targets, args.steps)
            return targets
        finally:
            for client in clients.values():
                await client.aclose()
            await conn.close()
            await light.close()
            await generic.close()

    with contextlib.ExitStack() as stack:
        servers = {"new": stack.enter_context(serve_from(url, ROOT))}
        if args.limits_off:
            servers["new-nolimits"] = stack.enter_context(serve_from(url, ROOT, LIMITS_OFF))
        if args.old is not None:
            servers["old"] = stack.enter_context(serve_from(url, args.old.resolve()))
        targets = asyncio.run(measure(servers))
    report(targets, list(servers))
    print(f"\n304 requests answered 200 because the layer version moved: {MISSED_304 or 0}")
    asyncio.run(round_trips(url, s, "new"))
    if args.old is not None:  # the same count with the old code (its own process)
        old = str(args.old.resolve())
        subprocess.run(
            [sys.executable, __file__, "--round-trips-only", "--incidents", str(args.incidents)],
            env=dict(os.environ, PYTHONPATH=old),
            cwd=old,
            check=True,
        )


if __name__ == "__main__":
    main()
