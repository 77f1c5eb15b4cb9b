"""nginx in front of the app, with the shared tile cache of docker/nginx/borderwatch.conf.template
(docs/tiles.md, "Behind a reverse proxy"): the very file compose uses, its three placeholders
filled in (upstream, listen address, cache folder), run by the system nginx as this user on
127.0.0.1, in front of a real uvicorn over a database of its own. Stopped by PID.

What must hold: a versioned tile is a MISS, then a HIT; a key with the same view shares it; a
key with another scope gets its own tile, whatever URL it asks for; a missing, wrong or revoked
key gets the app's 401, never a stored tile; a write moves the version, and the new URL is a
MISS with the new content. Tile contents are checked against SQL counts of each scope.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import mapbox_vector_tile
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from conftest import Demo, _free_port, app_client, live_app, make_key, needs

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "docker" / "nginx" / "borderwatch.conf.template"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = needs(Path(NGINX).exists(), "nginx is not installed (scripts/install-system-deps.sh)")

NOW = datetime(2025, 6, 1, tzinfo=UTC)
PROBLEM = "application/problem+json"
TILE = (8, 203, 120)  # around Hồ Chí Minh City: the densest low-zoom tile of the demo data
SCOPE = "VN-P79"  # Hồ Chí Minh City (2025): part of that tile only
CHECK_KEPT_S = 5  # proxy_cache_valid 204 of the key check in the template
AUTH_FAILURES = 20  # the app's failed-authentication limit per address, per minute


def render(upstream: str, listen: str, cache_dir: Path) -> str:
    """The template with its three placeholders filled in (as the nginx image's envsubst does:
    every other `$` is nginx's own)."""
    out = TEMPLATE.read_text()
    for name, value in (
        ("BORDERWATCH_UPSTREAM", upstream),
        ("BORDERWATCH_LISTEN", listen),
        ("BORDERWATCH_CACHE_DIR", str(cache_dir)),
    ):
        out = out.replace("${" + name + "}", value)
    assert "${" not in out, "a placeholder the test does not know"
    return out


@contextmanager
def nginx(upstream: str) -> Iterator[str]:
    """nginx on a free 127.0.0.1 port in front of `upstream`, with a prefix (config, caches,
    logs, pid) in a temporary folder; yields its base URL and stops it by PID afterwards."""
    home = Path(tempfile.mkdtemp(prefix="borderwatch-nginx-"))
    port = _free_port()
    (home / "cache").mkdir()
    (home / "borderwatch.conf").write_text(render(upstream, f"127.0.0.1:{port}", home / "cache"))
    # as root the workers would otherwise switch to `nobody`, who cannot write this folder
    user = "user root;" if os.geteuid() == 0 else ""
    temp = " ".join(
        f"{kind}_temp_path {home}/temp_{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (home / "nginx.conf").write_text(
        f"{user}\nworker_processes 1;\npid {home}/nginx.pid;\nerror_log {home}/error.log;\n"
        "events { worker_connections 256; }\n"
        f"http {{ access_log {home}/access.log; {temp} include {home}/borderwatch.conf; }}\n"
    )
    cmd = [NGINX, "-p", str(home), "-e", str(home / "error.log"), "-c", str(home / "nginx.conf")]
    checked = subprocess.run([*cmd, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen([*cmd, "-g", "daemon off;"])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (home / "error.log").read_text()[-2000:]
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (home / "error.log").read_text()[-2000:]
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()  # SIGTERM: nginx's fast shutdown, master and workers
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


@dataclass(frozen=True)
class Proxied:
    proxy: str  # nginx's base URL
    app: str  # the app's own
    engine: AsyncEngine
    admin: str  # national admin key
    national: str  # national analyst key
    national_2: str  # another national analyst key (the same view)
    national_2_id: int
    scoped: str  # an analyst key bound to SCOPE


@pytest.fixture(scope="module")
async def proxied(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Proxied]:
    names = {"admin": "admin", "national": "analyst", "national 2": "analyst"}
    async with live_app(
        server_url, tmp_path_factory.mktemp("proxy") / "server.log", name="bw_proxy",
        demo=Demo(2000, 11, NOW), principals=names,
        # a scoped key sees its province only: its tiles are counted with one SQL condition
        env={"BORDERWATCH_COOPERATION_KM": "0",
             "BORDERWATCH_AUTH_FAILURE_LIMIT": f"{AUTH_FAILURES}/minute"},
    ) as live:  # fmt: skip
        with nginx(f"127.0.0.1:{live.port}") as proxy:
            admin = live.keys["admin"].key
            async with httpx.AsyncClient(base_url=proxy, timeout=30) as c:
                made = await c.post(
                    "/principals",
                    json={"name": "HCM analyst", "role": "analyst", "jurisdiction": SCOPE},
                    headers=bearer(admin),
                )
            assert made.status_code == 201, made.text
            yield Proxied(
                proxy, live.base, live.engine, admin, live.keys["national"].key,
                live.keys["national 2"].key, live.keys["national 2"].id, made.json()["key"],
            )  # fmt: skip


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """The tile's west, south, east, north in degrees (the XYZ scheme, computed here)."""
    n = 2**z

    def lat(row: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y)


async def sql_count(engine: AsyncEngine, province: str | None = None) -> int:
    """Incidents in TILE (west and north edges inclusive, as tiles split points), in
    `province` (today's) or anywhere."""
    w, s, e, n = tile_bounds(*TILE)
    where = "" if province is None else " AND province_code = :p"
    async with engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT count(*) FROM incident WHERE deleted_at IS NULL"
                " AND ST_X(geom) >= :w AND ST_X(geom) < :e AND ST_Y(geom) > :s"
                f" AND ST_Y(geom) <= :n{where}"
            ),
            {"w": w, "s": s, "e": e, "n": n, "p": province},
        )
        return int(found.scalar_one())


def counted(body: bytes) -> int:
    """The incidents an aggregate tile holds: the sum of its cells' counts."""
    layers: dict[str, Any] = mapbox_vector_tile.decode(body) if body else {}
    feats = layers.get("incidents", {}).get("features", [])
    assert all(f["properties"]["cluster"] is True for f in feats)
    return sum(int(f["properties"]["count"]) for f in feats)


async def tile_url(c: httpx.AsyncClient, key: str) -> str:
    """TILE's URL (path and query, with `v`) from the incidents TileJSON this key gets."""
    doc = await c.get("/tiles/incidents.json", headers=bearer(key))
    assert doc.status_code == 200, doc.text
    template = doc.json()["tiles"][0]
    assert template.startswith(str(c.base_url)), "the proxy passes the Host on"
    z, x, y = TILE
    parts = urlsplit(template.replace("{z}/{x}/{y}", f"{z}/{x}/{y}"))
    return f"{parts.path}?{parts.query}"


async def fetch(c: httpx.AsyncClient, url: str, key: str | None) -> httpx.Response:
    return await c.get(url, headers=bearer(key) if key else {})


async def test_the_check_tags_what_decides_a_tile(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    """The view tag: the same for every role but viewer within a scope, another for viewers
    and for another scope; `public` without a key only where reference data are public."""
    keys = {
        "officer": await make_key(session, "officer"),
        "analyst": await make_key(session, "analyst"),
        "viewer": await make_key(session, "viewer"),
        "scoped": await make_key(session, "analyst", jurisdiction=SCOPE),
        "scoped viewer": await make_key(session, "viewer", jurisdiction=SCOPE),
    }
    tags = {}
    for who, key in keys.items():
        async with app_client(engine, session, settings, key) as c:
            r = await c.get("/auth/check")
        assert r.status_code == 204 and r.content == b"", (who, r.text)
        assert r.headers["cache-control"] == "no-store"
        tags[who] = r.headers["x-borderwatch-view"]
    assert tags["officer"] == tags["analyst"]
    assert len({tags[w] for w in ("analyst", "viewer", "scoped", "scoped viewer")}) == 4
    async with app_client(engine, session, settings, None) as c:
        anonymous = await c.get("/auth/check")
    assert anonymous.status_code == 401 and anonymous.headers["content-type"] == PROBLEM
    public = settings.model_copy(update={"public_reference_data": True})
    async with app_client(engine, session, public, None) as c:
        opened = await c.get("/auth/check")
    assert opened.status_code == 204 and opened.headers["x-borderwatch-view"] == "public"
    async with app_client(engine, session, public, "bw_wrong") as c:
        assert (await c.get("/auth/check")).status_code == 401


async def test_tiles_are_shared_per_view_only(proxied: Proxied) -> None:
    national_n = await sql_count(proxied.engine)
    scoped_n = await sql_count(proxied.engine, SCOPE)
    assert national_n > scoped_n > 0
    async with httpx.AsyncClient(base_url=proxied.proxy, timeout=30) as c:
        url = await tile_url(c, proxied.national)
        first = await fetch(c, url, proxied.national)
        assert first.status_code == 200, first.text
        assert first.headers["x-cache-status"] == "MISS"
        second = await fetch(c, url, proxied.national)
        assert second.headers["x-cache-status"] == "HIT"
        assert second.content == first.content and counted(first.content) == national_n
        assert second.headers["x-request-id"] != first.headers["x-request-id"]
        assert "immutable" in second.headers["cache-control"]  # the app's, passed on
        # another key with the same view: the same stored tile
        same = await fetch(c, url, proxied.national_2)
        assert same.headers["x-cache-status"] == "HIT" and same.content == first.content

        # a key of another scope asking for the national URL: not the stored tile but its own
        # (the app makes it, for its scope; an old `v` for that view, so it is not stored)
        other = await fetch(c, url, proxied.scoped)
        assert other.status_code == 200 and other.headers["x-cache-status"] != "HIT"
        assert counted(other.content) == scoped_n
        again = await fetch(c, url, proxied.scoped)
        assert again.headers["x-cache-status"] != "HIT" and counted(again.content) == scoped_n
        # its own URL: its own entry
        own = await tile_url(c, proxied.scoped)
        assert own != url
        mine = [await fetch(c, own, proxied.scoped) for _ in range(2)]
        assert [r.headers["x-cache-status"] for r in mine] == ["MISS", "HIT"]
        assert counted(mine[1].content) == scoped_n
        # and the national key on the scoped key's URL gets the national tile
        back = await fetch(c, own, proxied.national)
        assert back.headers["x-cache-status"] != "HIT" and counted(back.content) == national_n

    # the tag the proxy keys by is the one the tile URL carries (its first 6 hex digits)
    async with httpx.AsyncClient(base_url=proxied.app, timeout=30) as direct:
        for key, link in ((proxied.national, url), (proxied.scoped, own)):
            checked = await direct.get("/auth/check", headers=bearer(key))
            assert checked.status_code == 204 and checked.content == b""
            tag = checked.headers["x-borderwatch-view"]
            version = parse_qs(urlsplit(link).query)["v"][0]
            assert len(tag) == 64 and version.endswith("-" + tag[:6])
        tags = {
            (await direct.get("/auth/check", headers=bearer(k))).headers["x-borderwatch-view"]
            for k in (proxied.national, proxied.national_2, proxied.scoped, proxied.admin)
        }
        assert len(tags) == 2  # national (any role but viewer) and the scoped key


async def test_refused_keys_never_get_a_stored_tile(proxied: Proxied) -> None:
    async with httpx.AsyncClient(base_url=proxied.proxy, timeout=30) as c:
        url = await tile_url(c, proxied.national_2)
        for _ in range(2):
            filled = await fetch(c, url, proxied.national_2)
        assert filled.headers["x-cache-status"] == "HIT"
        for key in (None, "bw_not-a-key", proxied.national_2[:-2] + "xx"):
            refused = await fetch(c, url, key)
            assert refused.status_code == 401, key
            assert refused.headers["content-type"] == PROBLEM  # the app's own answer
            assert refused.json()["status"] == 401 and "x-cache-status" not in refused.headers
        revoked = await c.post(
            f"/principals/{proxied.national_2_id}/revoke", headers=bearer(proxied.admin)
        )
        assert revoked.status_code == 200, revoked.text
        # the proxy keeps a key's check CHECK_KEPT_S seconds: after that, refused
        await asyncio.sleep(CHECK_KEPT_S + 1)
        after = await fetch(c, url, proxied.national_2)
        assert after.status_code == 401 and after.headers["content-type"] == PROBLEM
        # the tile is still stored for the keys that may see it
        still = await fetch(c, url, proxied.national)
        assert still.headers["x-cache-status"] == "HIT"


async def test_a_write_moves_the_url(proxied: Proxied) -> None:
    w, s, e, n = tile_bounds(*TILE)
    async with httpx.AsyncClient(base_url=proxied.proxy, timeout=30) as c:
        old = await tile_url(c, proxied.national)
        for _ in range(2):
            kept = await fetch(c, old, proxied.national)
        assert kept.headers["x-cache-status"] == "HIT"
        before = counted(kept.content)
        # the live feed through the proxy: the new incident's event arrives while it is open
        async with c.stream("GET", "/events", headers=bearer(proxied.national)) as feed:
            assert feed.status_code == 200
            assert feed.headers["content-type"].startswith("text/event-stream")
            chunks = feed.aiter_text()
            assert "retry:" in await asyncio.wait_for(anext(chunks), 10)
            created = await c.post(
                "/incidents",
                json={
                    "category": "smuggling",
                    "severity": 3,
                    "occurred_at": "2025-05-30T08:00:00+07:00",
                    "location": {"type": "Point", "coordinates": [(w + e) / 2, (s + n) / 2]},
                },
                headers=bearer(proxied.admin),
            )
            assert created.status_code == 201, created.text
            ident = created.json()["id"]
            seen = ""
            deadline = time.monotonic() + 15
            while ident not in seen:
                seen += await asyncio.wait_for(anext(chunks), deadline - time.monotonic())
        new = await tile_url(c, proxied.national)
        assert new != old
        fresh = await fetch(c, new, proxied.national)
        assert fresh.headers["x-cache-status"] == "MISS"
        assert counted(fresh.content) == before + 1 == await sql_count(proxied.engine)
        assert (await fetch(c, new, proxied.national)).headers["x-cache-status"] == "HIT"


async def test_what_is_not_a_versioned_tile(proxied: Proxied) -> None:
    z, x, y = TILE
    async with httpx.AsyncClient(base_url=proxied.proxy, timeout=30) as c:
        # no `v`: straight to the app, which answers 304 to its own ETag
        plain = await fetch(c, f"/tiles/incidents/{z}/{x}/{y}.mvt", proxied.national)
        assert plain.status_code == 200 and "x-cache-status" not in plain.headers
        assert "no-cache" in plain.headers["cache-control"]
        again = await c.get(
            f"/tiles/incidents/{z}/{x}/{y}.mvt",
            headers={**bearer(proxied.national), "If-None-Match": plain.headers["etag"]},
        )
        assert again.status_code == 304
        # the dashboard's files: public, by URL
        assets = [await c.get("/static/app.css") for _ in range(2)]
        assert [r.headers["x-cache-status"] for r in assets] == ["MISS", "HIT"]
        assert (
            assets[0].content
            == assets[1].content
            == (ROOT / "app" / "web" / "static" / "app.css").read_bytes()
        )
        # the check itself is the proxy's internal location, not a public path of it
        assert (
            await c.get("/_borderwatch_check", headers=bearer(proxied.national))
        ).status_code == 404


async def test_the_client_cannot_choose_its_address(proxied: Proxied) -> None:
    """Last in this file: it uses up the failed-authentication limit of 127.0.0.1. The proxy
    replaces X-Forwarded-For with the address it sees, so a client that invents a new address
    for every try is still limited."""
    async with httpx.AsyncClient(base_url=proxied.proxy, timeout=30) as c:
        statuses = [
            (await c.get(
                "/me", headers={**bearer(f"bw_wrong{i}"), "X-Forwarded-For": f"198.51.100.{i}"}
            )).status_code
            for i in range(AUTH_FAILURES + 2)
        ]  # fmt: skip
        assert statuses[0] == 401 and statuses[-1] == 429
        valid = await c.get(
            "/me", headers={**bearer(proxied.national), "X-Forwarded-For": "203.0.113.7"}
        )
        assert valid.status_code == 429
