"""The embedded cluster (`db up / down / status`), `migrate`, and `serve` (what `make run`
runs: database up, migrate, load defaults when empty, serve)."""

from __future__ import annotations

import os
import signal
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from app import migrate
from app.cli.common import console, error, group, run
from app.cli.data import geodata_default, load_demo
from app.cli.keys import local_admin_key
from app.config import Settings, get_settings
from app.cooperation import examples as cooperation_examples
from app.db import create_engine, ensure_database, sessionmaker
from app.embedded import ClusterError
from app.geodata import load as geodata
from app.incidents import demo
from app.observe import multiprocess
from app.runtime import database_url, embedded_cluster

GRACEFUL_S = 10  # with --workers: how long a stopping worker lets open requests finish
# with --workers: a worker that does not answer the supervisor's ping for this long is killed
# and replaced. uvicorn's 5 s default killed workers still importing the app on a loaded
# 2-core machine (spawn imports it again in each worker), over and over
HEALTHCHECK_S = 30

db_app = group("The embedded PostGIS cluster (used when DATABASE_URL is not set).")


def db_start(settings: Settings) -> bool:
    """Create and start the embedded cluster if needed; True when this call started it."""
    if settings.database_url:
        return False
    cluster = embedded_cluster(settings)
    if cluster.init():
        console.print(f"created embedded PostGIS cluster in {cluster.pgdata}")
    if cluster.running():
        return False
    cluster.start()
    console.print(f"PostgreSQL listening on 127.0.0.1:{cluster.port}")
    return True


async def prepare(settings: Settings, *, with_demo: bool = True) -> None:
    """Create the database if missing, migrate it, and load defaults + demo data when empty."""
    url = database_url(settings)
    if await ensure_database(url):
        console.print("created database")
    engine = create_engine(url, settings)
    try:
        await migrate.upgrade(engine)
        await _load_if_empty(engine, settings, with_demo=with_demo)
    finally:
        await engine.dispose()


async def _load_if_empty(engine: AsyncEngine, settings: Settings, *, with_demo: bool) -> None:
    async with sessionmaker(engine)() as session, session.begin():
        if await geodata.needs_default(session=session):
            await geodata_default(session, settings)
        if with_demo and not await demo.count_incidents(session=session):
            await load_demo(session, count=3000, seed=7)
        if with_demo and not await cooperation_examples.count(session):
            created = await cooperation_examples.load(session)
            console.print(f"example cooperation areas: {created}")


@db_app.command("up")
def db_up() -> None:
    """Create (first time) and start the embedded cluster, then create and migrate the database."""
    settings = get_settings()
    if settings.database_url:
        console.print("DATABASE_URL is set: the embedded cluster is not used")
        raise typer.Exit(0)
    try:
        db_start(settings)
    except ClusterError as exc:
        error(str(exc))
        raise typer.Exit(1) from exc
    run(prepare(settings, with_demo=False))


@db_app.command("down")
def db_down() -> None:
    """Stop the embedded cluster (its data stays in the data directory)."""
    cluster = embedded_cluster(get_settings())
    cluster.stop()
    console.print("embedded cluster stopped")


@db_app.command("status")
def db_status() -> None:
    """Say where the database is and whether it is running."""
    settings = get_settings()
    if settings.database_url:
        console.print("using DATABASE_URL (external server)")
        return
    cluster = embedded_cluster(settings)
    state = "running" if cluster.running() else "stopped"
    made = "initialised" if cluster.initialised() else "not created yet"
    console.print(f"embedded cluster: {made}, {state}, data {cluster.pgdata}, port {cluster.port}")
    if not cluster.running():
        raise typer.Exit(3)


def migrate_cmd(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    down: Annotated[bool, typer.Option("--down", help="downgrade to the revision")] = False,
) -> None:
    """Apply (or with --down revert) Alembic migrations."""
    settings = get_settings()

    async def work() -> None:
        url = database_url(settings)
        await ensure_database(url)
        engine = create_engine(url, settings)
        try:
            if down:
                await migrate.downgrade(engine, revision)
            else:
                await migrate.upgrade(engine, revision)
            console.print(f"database at revision {await migrate.current_revision(engine)}")
        finally:
            await engine.dispose()

    run(work())


def serve(
    host: Annotated[str | None, typer.Option(help="default: settings (127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="default: settings (8000)")] = None,
    demo_data: Annotated[bool, typer.Option("--demo/--no-demo")] = True,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="API processes on the one port; default: settings (1)"),
    ] = None,
) -> None:
    """Start the database if embedded, migrate, load defaults when empty, and serve the API.

    With --workers N, N API processes share the port (uvicorn's supervisor: one that dies is
    replaced); the database is started and migrated once, here, before them. Rate limits are
    counted in PostgreSQL for every process; caches are keyed by the layer versions read from
    the database; /metrics merges every worker's (app/observe/multiprocess.py; its directory is
    prepared here) (docs/operations.md, "Several processes").

    Ctrl-C (or SIGTERM) stops the API and, when this command started it, the embedded cluster."""
    import uvicorn

    settings = get_settings()
    try:
        started = db_start(settings)
    except ClusterError as exc:
        error(str(exc))
        raise typer.Exit(1) from exc
    try:
        run(prepare(settings, with_demo=demo_data))
        bind_host, bind_port = host or settings.host, port or settings.port
        base = f"http://{bind_host}:{bind_port}"
        announce(base, run(local_admin_key(settings)) if settings.environment == "local" else None)
        # uvicorn re-raises the signal that stopped it once it has shut down; turn SIGTERM
        # into an exception too so the `finally` below still stops the embedded cluster
        signal.signal(signal.SIGTERM, _terminate)
        processes = workers or settings.workers
        # behind a reverse proxy, the client's address (per-address limits, /metrics networks)
        # comes from X-Forwarded-For, trusted from the proxies named in the setting only
        proxies = settings.forwarded_allow_ips
        common: dict[str, Any] = {
            "factory": True,
            "host": bind_host,
            "port": bind_port,
            "log_level": "info",
            "proxy_headers": bool(proxies),
            "forwarded_allow_ips": proxies or None,
        }
        if processes == 1:
            os.environ.pop(multiprocess.ENV, None)  # one process: its own counts, as ever
            uvicorn.run("app.main:create_app", **common)
        else:
            serve_workers(settings, common, processes)
    finally:
        if started:
            # a second Ctrl-C while stopping must not leave the cluster running
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            embedded_cluster(settings).stop()
            console.print("embedded cluster stopped")


def serve_workers(settings: Settings, common: dict[str, Any], processes: int) -> None:
    """`processes` workers under uvicorn's supervisor, as `uvicorn.run(workers=…)` would run
    them, with /metrics merged across them (app/observe/multiprocess.py): the directory
    created and emptied, and named in the environment the workers inherit, before any starts.

    The supervisor binds the port once (a TCP socket: asyncio sets TCP_NODELAY on every
    connection a worker accepts, tests/test_workers.py) and hands it to its workers; it stops
    them on SIGINT/SIGTERM (its own handlers replace ours) and returns, so serve's `finally`
    still runs. A worker gives its open requests (a live feed never ends) GRACEFUL_S before it
    closes them."""
    import uvicorn

    metrics_dir = multiprocess.prepare(multiprocess.directory(settings))
    os.environ[multiprocess.ENV] = str(metrics_dir)
    config = uvicorn.Config(
        "app.main:create_app",
        **common,
        workers=processes,
        timeout_graceful_shutdown=GRACEFUL_S,
        timeout_worker_healthcheck=HEALTHCHECK_S,
    )
    sock = config.bind_socket()
    try:
        multiprocess.Supervisor(config, sockets=[sock], metrics_dir=metrics_dir).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


def announce(base: str, key: str | None) -> None:
    """Where the service is, and in local mode its admin key and the dashboard's sign-in link:
    each on a line of its own, whatever the terminal's width (common.console never wraps)."""
    console.print(f"Borderwatch on {base}/  (API docs: {base}/docs)")
    if key is not None:
        console.print(
            "local admin key (new on every start; send it as 'Authorization: Bearer <key>'):"
        )
        print(key, flush=True)
        console.print(f"dashboard sign-in link: {base}/#key={key}")


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
