"""Test infrastructure: one throw-away PostGIS per run, each test inside a rolled-back transaction.

The cluster is the same launcher `make run` uses (app.embedded), in a temporary folder on a free
port; with DATABASE_URL set, a fresh database on that server is used instead and dropped after.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app import migrate
from app.auth import service as auth_service
from app.config import Settings, async_url
from app.db import create_engine, ensure_database, get_session, sessionmaker
from app.embedded import ClusterError, EmbeddedCluster
from app.geodata import load as geodata
from app.incidents import demo as demo_data
from app.main import create_app

ROOT = Path(__file__).resolve().parent.parent


def needs(available: bool, reason: str) -> pytest.MarkDecorator:
    """Skip a suite whose client tool (Chromium, GDAL, node_modules) is missing — except in CI
    (`CI=true`), where `make setup` installs them all: there a missing tool fails the run
    instead of quietly testing less."""
    if not available and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI: {reason}", pytrace=False)
    return pytest.mark.skipif(not available, reason=reason)


QGIS_PYTHON = "/usr/bin/python3"  # Debian's python3-qgis installs into the system Python
QGIS_REASON = "python3-qgis is not installed (scripts/install-system-deps.sh)"


def qgis_env(folder: Path) -> dict[str, str]:
    """The environment of a headless QGIS run whose profile, settings, caches and temporary
    files all go under `folder` (never the user's home: QGIS keeps a network cache there)."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", TMPDIR=str(folder))
    for var, sub in (("HOME", "home"), ("XDG_CONFIG_HOME", "config"),
                     ("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data")):  # fmt: skip
        (folder / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(folder / sub)
    return env


def qgis_importable() -> bool:
    """Whether the system Python can import QGIS (a suite needing it: `needs(qgis_importable(),
    QGIS_REASON)`)."""
    if not Path(QGIS_PYTHON).exists():
        return False
    with tempfile.TemporaryDirectory() as folder:
        try:
            done = subprocess.run(
                [QGIS_PYTHON, "-c", "import qgis.core"], env=qgis_env(Path(folder)),
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0


def needs_module(name: str, reason: str) -> Any:
    """The module, or a skip (a failure under CI=true), as `needs`."""
    try:
        return importlib.import_module(name)
    except ImportError:
        needs(False, reason)
        pytest.skip(reason, allow_module_level=True)


def _free_port() -> int:
    """A port nobody listens on now. Another process may take it before we bind it: whoever
    uses one retries with another when the bind fails (`started_cluster`, `live_server`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BIND_TRIES = 3


def started_cluster(prefix: str) -> EmbeddedCluster:
    """A new private cluster in a temporary folder, started on a free port (another port when
    the first is taken between the choice and the bind)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    home.chmod(0o755)  # the unprivileged server user must reach it
    for attempt in range(BIND_TRIES):
        c = EmbeddedCluster(home=home, port=_free_port())
        if attempt == 0:
            c.init()
        try:
            c.start()
            return c
        except ClusterError:
            if attempt == BIND_TRIES - 1 or not _port_taken(c.log_file):
                raise
    raise AssertionError("unreachable")


def _port_taken(log: Path) -> bool:
    try:
        return "already in use" in log.read_text(errors="replace")[-4000:]
    except OSError:
        return False


@pytest.fixture(scope="session")
def cluster() -> Iterator[EmbeddedCluster | None]:
    """A private cluster for this run (None when DATABASE_URL is given)."""
    if os.environ.get("DATABASE_URL"):
        yield None
        return
    c = started_cluster("borderwatch-test-")
    try:
        yield c
    finally:
        c.destroy()


@pytest.fixture(scope="session")
def server_url(cluster: EmbeddedCluster | None) -> str:
    """URL of the server's maintenance database; tests create their own databases on it."""
    if cluster is None:
        return async_url(os.environ["DATABASE_URL"])
    return cluster.url("postgres")


def database_on(server_url: str, name: str) -> str:
    """The URL of database `name` on the test server."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(server_url: str, name: str) -> None:
    """Drop a test database (forcing out leftover connections)."""
    u = make_url(server_url)
    conn = await asyncpg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, database="postgres"
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings for tests (the database comes from the fixtures, not from here)."""
    return Settings(environment="test", database_url=None)


@pytest.fixture(scope="session")
async def engine(server_url: str, settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A migrated database with the default boundary data, shared by the whole run."""
    name = f"bw_test_{uuid.uuid4().hex[:8]}"
    url = database_on(server_url, name)
    await ensure_database(url)
    eng = create_engine(url, settings)
    await migrate.upgrade(eng)
    async with eng.begin() as conn:
        session = AsyncSession(bind=conn)
        await geodata.load_default(session=session, settings=settings)
        await session.flush()
    try:
        yield eng
    finally:
        await eng.dispose()
        await drop_database(server_url, name)


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside an outer transaction that is always rolled back."""
    async with engine.connect() as conn:
        trans = await conn.begin()
        try:
            yield conn
        finally:
            await trans.rollback()


@pytest.fixture
async def session(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    """A session whose commits become savepoints of the rolled-back outer transaction."""
    s = AsyncSession(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    try:
        yield s
    finally:
        await s.close()


async def make_key(
    session: AsyncSession,
    role: str = "admin",
    jurisdiction: str | None = None,
    unit: str | None = None,
    cooperation_area: int | None = None,
) -> str:
    """A fresh API key for a new principal (rolled back with the test), bound to a
    jurisdiction, a cooperation area (its id), or neither."""
    scope = f"area {cooperation_area}" if cooperation_area else jurisdiction or "national"
    _, key = await auth_service.create_principal(
        session=session,
        name=f"test {role} {scope} {unit or ''}".strip(),
        role=role,
        jurisdiction_code=jurisdiction,
        unit=unit,
        actor="test",
        cooperation_area_id=cooperation_area,
    )
    return key


def app_client(
    engine: AsyncEngine, session: AsyncSession, settings: Settings, key: str | None
) -> httpx.AsyncClient:
    """A client for a fresh app whose requests share the test's session, sending `key`."""
    app = create_app(settings, engine=engine)

    async def _session() -> AsyncIterator[AsyncSession]:
        yield session

    app.dependency_overrides[get_session] = _session
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers
    )


@pytest.fixture
async def client(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client with a national admin key; its requests share the test's session."""
    key = await make_key(session, "admin")
    async with app_client(engine, session, settings, key) as c:
        yield c


GEODATA = Path(__file__).resolve().parent.parent / "geodata"


@pytest.fixture(scope="session")
def source_fc() -> dict[str, Any]:
    """The bundled boundary file, read independently of the database."""
    import json

    fc: dict[str, Any] = json.loads((GEODATA / "jurisdictions.geojson").read_text("utf-8"))
    return fc


@pytest.fixture
def cli_database(server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """DATABASE_URL pointing at a fresh database for CLI tests (they commit); the test drops it."""
    from app.config import get_settings

    name = f"bw_cli_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DATABASE_URL", database_on(server_url, name))
    get_settings.cache_clear()
    try:
        yield name
    finally:
        get_settings.cache_clear()


def _start_uvicorn(
    url: str, port: int, log: Path, log_level: str, extra_env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ, DATABASE_URL=url, BORDERWATCH_ENVIRONMENT="test", BORDERWATCH_RATE_LIMIT=""
    )
    env.update(extra_env)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", log_level],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _tail(log: Path) -> str:
    return log.read_text()[-2000:]


async def _healthy(base: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    """Wait until our server answers /healthz (True), or exits (False: the port was taken, or
    it failed to start); 30 s at most. Still running after answering, so the answer was ours."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as c:
        while proc.poll() is None:
            try:
                if (await c.get(base + "/healthz", timeout=1)).status_code == 200:
                    await asyncio.sleep(0.2)
                    return proc.poll() is None
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, _tail(log)
            await asyncio.sleep(0.2)
    return False


@asynccontextmanager
async def live_server(
    url: str,
    log: Path,
    log_level: str = "warning",
    env: Mapping[str, str] | None = None,
    pool_size: int | None = None,
) -> AsyncIterator[str]:
    """uvicorn (one worker, as `make run`) on 127.0.0.1 over `url`, without a rate limit (a
    map or a GIS client sends many requests at once), its output in `log`, with `env` added to
    its environment (settings) and, given, `pool_size` as BORDERWATCH_DB_POOL_SIZE; yields the
    base URL once /healthz answers (30 s at most) and stops the process, by PID, afterwards."""
    server_env = dict(env or {})
    if pool_size is not None:
        server_env["BORDERWATCH_DB_POOL_SIZE"] = str(pool_size)
    for attempt in range(BIND_TRIES):
        port = _free_port()
        proc = _start_uvicorn(url, port, log, log_level, server_env)
        base = f"http://127.0.0.1:{port}"
        try:
            healthy = await _healthy(base, proc, log)
        except BaseException:
            _stop(proc)
            raise
        if healthy:
            break
        _stop(proc)
        assert attempt < BIND_TRIES - 1 and _port_taken(log), _tail(log)
    try:
        yield base
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a server we started, by its PID (politely, then for good)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass(frozen=True)
class Demo:
    """Demo incidents for a served database (app.incidents.demo): how many, the seed, and the
    moment they are generated back from."""

    count: int
    seed: int
    now: datetime


@dataclass(frozen=True)
class Key:
    """A principal made for a served database: its id and its API key."""

    id: int
    key: str


async def prepare_database(
    engine: AsyncEngine,
    settings: Settings,
    *,
    boundaries: bool = True,
    demo: Demo | None = None,
    principals: Mapping[str, str] | None = None,
) -> dict[str, Key]:
    """Migrate the database of `engine` and commit its content: the default boundary data
    (unless `boundaries` is False), `demo` incidents, and one national principal per
    `principals` entry (name: role). Returns each principal's id and key, by name."""
    await migrate.upgrade(engine)
    keys: dict[str, Key] = {}
    async with sessionmaker(engine)() as session, session.begin():
        if boundaries:
            await geodata.load_default(session=session, settings=settings)
        if demo is not None:
            await demo_data.load(session=session, count=demo.count, seed=demo.seed, now=demo.now)
        for name, role in (principals or {}).items():
            record, key = await auth_service.create_principal(
                session=session, name=name, role=role, jurisdiction_code=None, unit=None,
                actor="test",
            )  # fmt: skip
            keys[name] = Key(int(record["id"]), key)
    return keys


@dataclass(frozen=True)
class LiveApp:
    """A served database: uvicorn's base URL, the database's URL and an engine over it (for
    reading what the server wrote), the principals made for it (by name) and the server's
    log."""

    base: str
    url: str
    engine: AsyncEngine
    keys: dict[str, Key]
    log: Path

    @property
    def port(self) -> int:
        """The port the server listens on (127.0.0.1)."""
        return int(self.base.rsplit(":", 1)[1])


@asynccontextmanager
async def live_app(
    server_url: str,
    log: Path,
    *,
    name: str,
    settings: Settings | None = None,
    boundaries: bool = True,
    demo: Demo | None = None,
    principals: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    pool_size: int | None = None,
    log_level: str = "warning",
) -> AsyncIterator[LiveApp]:
    """A real server over a database of its own: a new database `name`_<random> on the test
    server, prepared as `prepare_database` says (committed: the server's own connections see
    it), served by `live_server` with `env`, `pool_size` and `log_level`; the server is
    stopped and the database dropped afterwards."""
    settings = settings or Settings(environment="test", database_url=None)
    db_name = f"{name}_{uuid.uuid4().hex[:8]}"
    url = database_on(server_url, db_name)
    await ensure_database(url)
    engine = create_engine(url, settings)
    try:
        keys = await prepare_database(
            engine, settings, boundaries=boundaries, demo=demo, principals=principals
        )
        await engine.dispose()  # no idle connection of ours while the server runs
        async with live_server(url, log, log_level, env, pool_size) as base:
            yield LiveApp(base, url, engine, keys, log)
    finally:
        await engine.dispose()
        await drop_database(server_url, db_name)
