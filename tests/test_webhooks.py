"""Webhooks over real API processes and a real HTTP receiver on 127.0.0.1.

Alerts raised while the receiver is down (connection refused, then 503) all arrive once it is
back, each exactly once (one 2xx per Idempotency-Key, nothing after it), with two API
processes sending from one outbox; every request's signature is checked here with the secret
the rule's creation returned (hmac here, and once with openssl, as docs/webhooks.md shows); a
receiver that always fails makes the delivery dead after the configured attempts, listed and
replayable; a new webhook URL means a new secret; officers see no deliveries, a scoped admin only
those of its scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from test_events import incident

from app.alerts.webhooks import backoff_s
from app.auth import service as auth_service
from app.db import sessionmaker
from conftest import LiveApp, live_app, live_server, needs

WAIT_S = 20.0  # the longest any one condition may take to hold (a bound, not a measure)
POLL = {
    "BORDERWATCH_EVENTS_HEARTBEAT_S": "0.5",
    "BORDERWATCH_EVENTS_POLL_S": "0.5",
    "BORDERWATCH_EVENTS_KEY_CHECK_S": "0.5",
}
# down for a while: many quick retries (0.1-0.2 s, then up to 0.5-1 s apart), never dead
ENV = POLL | {
    "BORDERWATCH_WEBHOOK_BACKOFF_BASE_S": "0.2",
    "BORDERWATCH_WEBHOOK_BACKOFF_CAP_S": "1",
    "BORDERWATCH_WEBHOOK_MAX_ATTEMPTS": "50",
    "BORDERWATCH_WEBHOOK_TIMEOUT_S": "2",
}
# a receiver that never recovers: dead after 3 attempts; a hanging receiver times out in 1 s
DYING_ENV = ENV | {"BORDERWATCH_WEBHOOK_MAX_ATTEMPTS": "3", "BORDERWATCH_WEBHOOK_TIMEOUT_S": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def verifies(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """The receiver's check, written from docs/webhooks.md (not from app/alerts/webhooks.py)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={mac}", signature)


@dataclass
class Hit:
    """One request the receiver got, and what it answered (None: nothing, it hung)."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int | None

    @property
    def key(self) -> str:
        return self.headers["idempotency-key"]


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1:`port`, down until started; answers `status` to every
    request (None: never answers) and records each."""

    port: int = field(default_factory=free_port)
    status: int | None = 200
    hits: list[Hit] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            assert method == "POST", head[0]
            headers = {}
            for line in head[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status = self.status
            self.hits.append(Hit(path, headers, body, status))
            if status is None:
                await asyncio.sleep(3600)  # hang until the sender gives up (or we stop)
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n"
                "Connection: close\r\n\r\nnope".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)

    def of(self, key: str) -> list[Hit]:
        return [h for h in self.hits if h.key == key]


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver, *, up: bool = True) -> AsyncIterator[Receiver]:
    if up:
        await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


@dataclass
class Served:
    live: LiveApp
    keys: dict[str, str] = field(default_factory=dict)

    def client(self, who: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.live.base, headers={"Authorization": f"Bearer {self.keys[who]}"},
            timeout=WAIT_S,
        )  # fmt: skip


async def serve(
    server_url: str, logs: Any, name: str, env: dict[str, str], boundaries: bool
) -> AsyncIterator[Served]:
    async with live_app(
        server_url, logs / f"{name}.log", name=f"bw_{name}", env=env, boundaries=boundaries,
        principals={"admin": "admin"},
    ) as live:  # fmt: skip
        served = Served(live, {"admin": live.keys["admin"].key})
        async with sessionmaker(live.engine)() as s, s.begin():
            _, served.keys["officer"] = await auth_service.create_principal(
                session=s, name="officer", role="officer", jurisdiction_code=None, unit=None,
                actor="test",
            )  # fmt: skip
            if boundaries:
                _, served.keys["ag admin"] = await auth_service.create_principal(
                    session=s, name="ag admin", role="admin", jurisdiction_code="VN-44",
                    unit=None, actor="test",
                )  # fmt: skip
        yield served


@pytest.fixture(scope="module")
async def served(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    async for s in serve(server_url, tmp_path_factory.mktemp("webhooks"), "webhooks", ENV, True):
        yield s


@pytest.fixture(scope="module")
async def dying(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    logs = tmp_path_factory.mktemp("webhooks_dying")
    async for s in serve(server_url, logs, "webhooks_dying", DYING_ENV, False):
        yield s


def square(lon: float, lat: float, d: float = 0.01) -> list[list[float]]:
    return [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]


async def area_rule(s: Served, url: str, lon: float, lat: float) -> tuple[dict[str, Any], str]:
    """A national admin's rule over a small drawn square at (lon, lat) with a webhook to `url`;
    returns the rule and its secret."""
    async with s.client("admin") as c:
        r = await c.post("/cooperation-areas", json={
            "name": f"Ô {lon} {lat}", "members": [{
                "kind": "polygon", "name": "ô",
                "geometry": {"type": "Polygon", "coordinates": [square(lon, lat)]},
            }],
        })  # fmt: skip
        assert r.status_code == 201, r.text
        r = await c.post("/alert-rules", json={
            "name": f"Webhook {lon} {lat}", "kind": "area", "cooperation_area": r.json()["id"],
            "webhook_url": url,
        })  # fmt: skip
        assert r.status_code == 201, r.text
        rule: dict[str, Any] = r.json()
    secret = rule.pop("webhook_secret")
    assert isinstance(secret, str) and len(secret) >= 32
    assert rule["webhook_url"] == url
    return rule, secret


async def raise_at(s: Served, lon: float, lat: float, n: int) -> list[str]:
    """`n` incidents inside the square at (lon, lat); their ids."""
    ids = []
    async with s.client("admin") as c:
        for k in range(n):
            r = await c.post("/incidents", json=incident(lon + 0.002 + k * 0.0005, lat + 0.005))
            assert r.status_code == 201, r.text
            ids.append(str(r.json()["id"]))
    return ids


async def deliveries(s: Served, rule_id: int, who: str = "admin", **params: Any) -> list[Any]:
    async with s.client(who) as c:
        r = await c.get("/alerts/deliveries", params={"limit": 500, **params})
        assert r.status_code == 200, r.text
    return [d for d in r.json()["deliveries"] if d["rule"]["id"] == rule_id]


async def alerts(s: Served, rule_id: int) -> list[Any]:
    async with s.client("admin") as c:
        r = await c.get("/alerts", params={"limit": 500})
        assert r.status_code == 200, r.text
    return [a for a in r.json()["alerts"] if a["rule"]["id"] == rule_id]


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until check() holds (at most WAIT_S)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def check_request(hit: Hit, secret: str, delivery_ids: set[int]) -> None:
    """Everything a receiver relies on in one request."""
    h = hit.headers
    assert hit.path == "/hook"
    assert h["content-type"] == "application/json"
    assert verifies(secret, h["x-borderwatch-timestamp"], hit.body, h["x-borderwatch-signature"])
    body = orjson.loads(hit.body)
    assert body["type"] == "alert.raised"
    assert body["alert"]["idempotency_key"] == h["idempotency-key"]
    assert int(h["x-borderwatch-delivery"]) in delivery_ids


async def test_a_receiver_down_for_a_while_gets_every_alert_exactly_once(
    served: Served, tmp_path_factory: pytest.TempPathFactory
) -> None:
    receiver = Receiver()  # nobody listens on its port yet: connection refused
    rule, secret = await area_rule(served, receiver.url(), 106.10, 21.50)
    logs = tmp_path_factory.mktemp("webhooks_b")
    # a second API process on the same database sends from the same outbox
    async with (
        live_server(served.live.url, logs / "b.log", env=ENV),
        receiving(receiver, up=False),
    ):
        made = await raise_at(served, 106.10, 21.50, 5)

        async def refused_twice() -> bool:
            found = await deliveries(served, rule["id"])
            return len(found) == 5 and all(d["attempts"] >= 2 for d in found)

        await eventually(refused_twice, "every delivery refused twice")
        pending = await deliveries(served, rule["id"], state="pending")
        assert len(pending) == 5
        assert all(d["last_status"] is None and "Connect" in d["last_error"] for d in pending)
        assert all(d["next_attempt_at"] is not None for d in pending)

        receiver.status = 503  # up, but not ready yet
        await receiver.start()

        async def all_refused_by_503() -> bool:
            return len({h.key for h in receiver.hits}) == 5

        await eventually(all_refused_by_503, "a 503 for every alert")
        assert {d["last_status"] for d in await deliveries(served, rule["id"])} <= {503, None}
        receiver.status = 200

        async def all_delivered() -> bool:
            return len(await deliveries(served, rule["id"], state="delivered")) == 5

        await eventually(all_delivered, "every delivery delivered")
        await asyncio.sleep(2.5)  # more than two polls and the longest backoff: nothing more
    raised = await alerts(served, rule["id"])
    assert {a["incident"]["id"] for a in raised} == set(made)
    keys = {a["idempotency_key"] for a in raised}
    assert {h.key for h in receiver.hits} == keys
    done = await deliveries(served, rule["id"])
    ids = {d["id"] for d in done}
    for key in keys:
        got = receiver.of(key)
        taken = [i for i, h in enumerate(got) if h.answered == 200]
        assert len(taken) == 1 and taken[0] == len(got) - 1, [h.answered for h in got]
        assert [h.answered for h in got[:-1]] == [503] * (len(got) - 1)
        for hit in got:
            check_request(hit, secret, ids)
        # retries are the same delivery, the same bytes
        assert len({h.headers["x-borderwatch-delivery"] for h in got}) == 1
        assert len({h.body for h in got}) == 1
    for d in done:
        assert d["state"] == "delivered" and d["last_status"] == 200 and d["last_error"] is None
        assert d["attempts"] > 2  # refused at least twice, then a 503 at least once
        assert d["delivered_at"] is not None and d["next_attempt_at"] is None
        assert d["url"] == receiver.url()


# docs/webhooks.md, "Verifying in a shell"
OPENSSL_CHECK = """printf '%s.' "$TS" | cat - body.json | openssl dgst -sha256 -hmac "$SECRET" \\
  | sed 's/^.*= //; s/^/sha256=/'"""


@needs(shutil.which("openssl") is not None, "openssl is not installed (make setup installs it)")
async def test_the_signature_verifies_with_openssl_as_documented(
    served: Served, tmp_path: Path
) -> None:
    async with receiving(Receiver()) as receiver:
        _, secret = await area_rule(served, receiver.url(), 106.20, 21.50)
        await raise_at(served, 106.20, 21.50, 1)

        async def arrived() -> bool:
            return len(receiver.hits) == 1

        await eventually(arrived, "the alert")
    [hit] = receiver.hits
    (tmp_path / "body.json").write_bytes(hit.body)
    env = {"PATH": os.environ["PATH"], "TS": hit.headers["x-borderwatch-timestamp"],
           "SECRET": secret}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", OPENSSL_CHECK, cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert out.decode().strip() == hit.headers["x-borderwatch-signature"]


async def test_a_receiver_that_always_fails_dead_letters_then_replay_delivers(
    dying: Served,
) -> None:
    async with receiving(Receiver(status=None)) as receiver:  # first it hangs
        rule, secret = await area_rule(dying, receiver.url(), 106.30, 21.50)
        [made] = await raise_at(dying, 106.30, 21.50, 1)

        async def timed_out() -> bool:
            found = await deliveries(dying, rule["id"])
            return bool(found) and "no answer within 1 s" in (found[0]["last_error"] or "")

        await eventually(timed_out, "the first attempt's timeout")
        receiver.status = 500  # then it fails outright

        async def dead() -> bool:
            return len(await deliveries(dying, rule["id"], state="dead")) == 1

        await eventually(dead, "the delivery dead")
        [gone] = await deliveries(dying, rule["id"], state="dead")
        assert gone["attempts"] == 3 and gone["last_status"] == 500
        assert gone["last_error"] == "HTTP 500: nope" and gone["next_attempt_at"] is None
        assert await deliveries(dying, rule["id"], state="pending") == []
        await asyncio.sleep(1.5)  # dead means no more attempts
        assert len(receiver.hits) == 3

        receiver.status = 200
        async with dying.client("admin") as c:
            r = await c.post(f"/alerts/deliveries/{gone['id']}/replay")
            assert r.status_code == 200, r.text
            assert r.json()["state"] == "pending" and r.json()["attempts"] == 0

        async def delivered() -> bool:
            return len(await deliveries(dying, rule["id"], state="delivered")) == 1

        await eventually(delivered, "the replay delivered")
        await asyncio.sleep(1.5)
    [alert] = await alerts(dying, rule["id"])
    assert alert["incident"]["id"] == made
    assert [h.answered for h in receiver.hits] == [None, 500, 500, 200]
    assert {h.key for h in receiver.hits} == {alert["idempotency_key"]}
    for hit in receiver.hits:
        check_request(hit, secret, {gone["id"]})
    [done] = await deliveries(dying, rule["id"])
    assert done["attempts"] == 1 and done["last_status"] == 200
    async with dying.live.engine.connect() as conn:
        audit = (await conn.execute(text(
            "SELECT action, before->>'state', after->>'state' FROM audit_event"
            " WHERE entity_type = 'webhook_delivery' AND entity_id = :i"
        ), {"i": str(gone["id"])})).all()  # fmt: skip
    assert [tuple(a) for a in audit] == [("webhook_replay", "dead", "pending")]


async def test_replay_refuses_a_pending_delivery_and_unknown_ones(served: Served) -> None:
    receiver = Receiver()  # down throughout: its delivery stays pending
    rule, _ = await area_rule(served, receiver.url(), 106.40, 21.50)
    await raise_at(served, 106.40, 21.50, 1)

    async def queued() -> bool:
        return len(await deliveries(served, rule["id"])) == 1

    await eventually(queued, "the delivery")
    [d] = await deliveries(served, rule["id"])
    async with served.client("admin") as c:
        r = await c.post(f"/alerts/deliveries/{d['id']}/replay")
        assert r.status_code == 409, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "pending" in r.json()["detail"]
        r = await c.post("/alerts/deliveries/999999999/replay")
        assert r.status_code == 404, r.text
        assert r.headers["content-type"] == "application/problem+json"
        r = await c.get("/alerts/deliveries", params={"state": "lost"})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        # the rule turned off: its pending delivery dies (not sent), and cannot be replayed
        etag = (await c.get(f"/alert-rules/{rule['id']}")).headers["ETag"]
        r = await c.patch(
            f"/alert-rules/{rule['id']}", json={"active": False}, headers={"If-Match": etag}
        )
        assert r.status_code == 200, r.text

    async def dead() -> bool:
        return len(await deliveries(served, rule["id"], state="dead")) == 1

    await eventually(dead, "the delivery of an inactive rule dead")
    [d] = await deliveries(served, rule["id"])
    assert d["last_error"] == f"not sent: alert rule {rule['id']} is inactive"
    async with served.client("admin") as c:
        r = await c.post(f"/alerts/deliveries/{d['id']}/replay")
        assert r.status_code == 409, r.text
        assert "inactive" in r.json()["detail"]


async def test_officers_see_no_deliveries_scoped_admins_only_their_scope(served: Served) -> None:
    async with receiving(Receiver()) as receiver:
        national, _ = await area_rule(served, receiver.url(), 106.50, 21.50)
        async with served.client("ag admin") as c:  # An Giang's admin: a rule of its scope
            r = await c.post("/alert-rules", json={
                "name": "Buôn lậu An Giang", "kind": "jurisdiction", "jurisdiction": "VN-44",
                "distance_km": 0, "categories": ["smuggling"], "webhook_url": receiver.url(),
            })  # fmt: skip
            assert r.status_code == 201, r.text
            scoped = r.json()
        await raise_at(served, 106.50, 21.50, 1)
        async with served.client("admin") as c:
            r = await c.post("/incidents", json=incident(105.435, 10.386))  # in An Giang
            assert r.status_code == 201, r.text

        async def both() -> bool:
            return len(receiver.hits) == 2

        await eventually(both, "both alerts")
    [mine] = await deliveries(served, scoped["id"], who="ag admin")
    assert mine["state"] == "delivered"
    assert await deliveries(served, national["id"], who="ag admin") == []
    [theirs] = await deliveries(served, national["id"])  # the national admin sees both
    assert [d["id"] for d in await deliveries(served, scoped["id"])] == [mine["id"]]
    async with served.client("ag admin") as c:
        r = await c.post(f"/alerts/deliveries/{theirs['id']}/replay")
        assert r.status_code == 404, r.text
        r = await c.post(f"/alerts/deliveries/{mine['id']}/replay")  # delivered: on purpose
        assert r.status_code == 200, r.text
    async with served.client("officer") as c:
        for r in (
            await c.get("/alerts/deliveries"),
            await c.post(f"/alerts/deliveries/{mine['id']}/replay"),
        ):
            assert r.status_code == 403, r.text
            assert r.headers["content-type"] == "application/problem+json"


async def test_a_new_webhook_url_gets_a_new_secret_and_the_old_one_stops_verifying(
    served: Served,
) -> None:
    async with receiving(Receiver()) as receiver:
        rule, old = await area_rule(served, receiver.url(), 106.60, 21.50)
        await raise_at(served, 106.60, 21.50, 1)

        async def first() -> bool:
            return len(receiver.hits) == 1

        await eventually(first, "the first alert")
        async with served.client("admin") as c:
            etag = (await c.get(f"/alert-rules/{rule['id']}")).headers["ETag"]
            r = await c.patch(f"/alert-rules/{rule['id']}",
                              json={"webhook_url": receiver.url("/hook2")},
                              headers={"If-Match": etag})  # fmt: skip
            assert r.status_code == 200, r.text
            new = r.json()["webhook_secret"]
            assert new != old
            # the secret is shown once: reading the rule does not show it
            assert "webhook_secret" not in (await c.get(f"/alert-rules/{rule['id']}")).json()
        await raise_at(served, 106.60, 21.50, 1)

        async def second() -> bool:
            return len(receiver.hits) == 2

        await eventually(second, "the second alert")
    before, after = receiver.hits
    assert before.path == "/hook" and after.path == "/hook2"
    sig = [(h.headers["x-borderwatch-timestamp"], h.body, h.headers["x-borderwatch-signature"])
           for h in (before, after)]  # fmt: skip
    assert verifies(old, *sig[0]) and not verifies(new, *sig[0])
    assert verifies(new, *sig[1]) and not verifies(old, *sig[1])


def test_the_retry_schedule_is_the_documented_one() -> None:
    """docs/webhooks.md: after the n-th failure, min(cap, base·2^(n−1)) times 0.5 to 1."""
    waits = [[backoff_s(n, base_s=5, cap_s=3600) for _ in range(200)] for n in range(1, 15)]
    full = [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600, 3600]
    for got, most in zip(waits, full, strict=True):
        assert all(most / 2 <= w <= most for w in got)
        assert max(got) - min(got) > most / 4  # jittered, not one value
    assert backoff_s(10_000, base_s=5, cap_s=3600) <= 3600  # no overflow past the cap
