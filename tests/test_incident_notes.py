"""Notes on an incident (append-only, idempotent by the client's id, in the audit log) and
`GET /incidents?recorded_by=me` (a key's own records), against the real database."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from conftest import app_client, make_key

PROBLEM = "application/problem+json"
AN_GIANG = (105.435, 10.386)  # inside An Giang (VN-44)
HA_NOI = (105.854, 21.028)
ANY = {"If-Match": "*"}


async def _incident(c: httpx.AsyncClient, where: tuple[float, float], unit: str) -> str:
    r = await c.post(
        "/incidents",
        json={
            "category": "smuggling",
            "severity": 2,
            "occurred_at": "2026-11-02T08:30:00+07:00",
            "location": {"type": "Point", "coordinates": list(where)},
            "unit": unit,
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _notes(session: AsyncSession, incident_id: str) -> list[Any]:
    rows = await session.execute(
        text("SELECT id, body, created_by, unit FROM incident_note WHERE incident_id = :i"),
        {"i": incident_id},
    )
    return list(rows)


async def test_notes(
    engine: AsyncEngine, session: AsyncSession, settings: Settings, client: httpx.AsyncClient
) -> None:
    ours = await _incident(client, AN_GIANG, "Đồn Biên phòng Vĩnh Xương")
    far = await _incident(client, HA_NOI, "Công an Hà Nội")
    officer_key = await make_key(session, "officer", "VN-44", "Công an xã Tịnh Biên")
    analyst_key = await make_key(session, "analyst", "VN-44")
    async with (
        app_client(engine, session, settings, officer_key) as officer,
        app_client(engine, session, settings, analyst_key) as analyst,
    ):
        # an officer of another unit adds a note to an incident in its area: notes do not
        # change the incident, so the unit rule of corrections does not apply
        text_vi = "Đã phối hợp với Đồn Biên phòng, thu giữ 2 tấn đường cát nhập lậu."
        note_id = str(uuid.uuid4())
        r = await officer.put(f"/incidents/{ours}/notes/{note_id}", json={"text": text_vi})
        assert r.status_code == 201, r.text
        assert r.json()["text"] == text_vi and r.json()["unit"] == "Công an xã Tịnh Biên"
        assert r.headers["location"].endswith(f"/incidents/{ours}/notes/{note_id}")
        # the retry of an offline queue: the same note, once
        again = await officer.put(f"/incidents/{ours}/notes/{note_id}", json={"text": text_vi})
        assert again.status_code == 200 and again.json() == r.json()
        # the same id with another text: refused, the stored note unchanged
        other = await officer.put(f"/incidents/{ours}/notes/{note_id}", json={"text": "khác"})
        assert other.status_code == 409 and other.headers["content-type"] == PROBLEM
        assert [row.body for row in await _notes(session, ours)] == [text_vi]
        second = await officer.post(f"/incidents/{ours}/notes", json={"text": "Đã xác minh."})
        assert second.status_code == 201
        got = await analyst.get(f"/incidents/{ours}/notes")
        assert got.status_code == 200, got.text
        listed = got.json()["notes"]
        assert [n["text"] for n in listed] == [text_vi, "Đã xác minh."]
        # the incident itself did not change
        assert (await client.get(f"/incidents/{ours}")).headers["etag"] == '"v1"'
        # bad input: clear 422s naming the field, nothing stored
        for body in ({"text": "   "}, {"text": ""}, {"text": "x" * 4001}, {"note": "x"}, {}):
            bad = await officer.post(f"/incidents/{ours}/notes", json=body)
            assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM, body
        # an analyst reads but does not write; out of scope and deleted look like unknown
        assert (
            await analyst.post(f"/incidents/{ours}/notes", json={"text": "x"})
        ).status_code == 403
        assert (
            await officer.post(f"/incidents/{far}/notes", json={"text": "x"})
        ).status_code == 404
        assert (await officer.get(f"/incidents/{far}/notes")).status_code == 404
        unknown = f"/incidents/{uuid.uuid4()}/notes"
        assert (await officer.post(unknown, json={"text": "x"})).status_code == 404
        assert await _notes(session, far) == []
        assert len(await _notes(session, ours)) == 2
        assert (
            await client.delete(f"/incidents/{ours}", headers={"If-Match": "*"})
        ).status_code in (
            200,
            204,
        )
        assert (await analyst.get(f"/incidents/{ours}/notes")).status_code == 404
    # every note is in the audit log, with the writer
    audited = (
        await session.execute(
            text(
                "SELECT count(*) FROM audit_event WHERE action = 'note_add'"
                " AND entity_id = :i AND actor LIKE 'principal:%'"
            ),
            {"i": ours},
        )
    ).scalar_one()
    assert audited == 2


async def test_recorded_by_me(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    keys = [await make_key(session, "officer", None, f"Tổ {n}") for n in range(2)]
    made: list[list[str]] = [[], []]
    for n, key in enumerate(keys):
        async with app_client(engine, session, settings, key) as c:
            for _ in range(3 + n):
                made[n].append(await _incident(c, AN_GIANG, f"Tổ {n}"))
    for n, key in enumerate(keys):
        async with app_client(engine, session, settings, key) as c:
            page = (await c.get("/incidents", params={"recorded_by": "me", "count": "true"})).json()
            assert sorted(f["id"] for f in page["features"]) == sorted(made[n])
            # the count is the database's own, by the recorded creator
            expected = (
                await session.execute(
                    text(
                        "SELECT count(*) FROM incident WHERE created_by = ("
                        " SELECT created_by FROM incident WHERE id = :i)"
                    ),
                    {"i": made[n][0]},
                )
            ).scalar_one()
            assert page["numberMatched"] == expected == 3 + n
            # pages of one follow the same filter
            first = (await c.get("/incidents", params={"recorded_by": "me", "limit": 2})).json()
            nxt = next(link["href"] for link in first["links"] if link["rel"] == "next")
            rest = (await c.get(nxt)).json()
            assert {f["id"] for f in first["features"] + rest["features"]} == set(made[n])
            bad = await c.get("/incidents", params={"recorded_by": "someone"})
            assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM


async def test_statuses_say_what_a_correction_accepts(client: httpx.AsyncClient) -> None:
    """`GET /statuses` against PATCH itself: from every status, every other status is accepted
    exactly when `next` lists it (a 409 naming the allowed ones otherwise)."""
    listed = (await client.get("/statuses")).json()["statuses"]
    nxt = {s["code"]: s["next"] for s in listed}
    assert listed[0]["code"] == "reported"
    assert all(s["final"] == (not s["next"]) for s in listed)

    async def at(status: str) -> str:
        """A new incident walked to `status` along the lifecycle (breadth first)."""
        paths: dict[str, list[str]] = {"reported": []}
        queue = ["reported"]
        while queue:
            s = queue.pop(0)
            for t in nxt[s]:
                if t not in paths:
                    paths[t] = [*paths[s], t]
                    queue.append(t)
        ident = await _incident(client, AN_GIANG, "Tổ 1")
        for step in paths[status]:
            r = await client.patch(f"/incidents/{ident}", json={"status": step}, headers=ANY)
            assert r.status_code == 200, r.text
        return ident

    for status in nxt:
        stuck = await at(status)
        for target in nxt:
            if target == status:
                continue
            ident = await at(status) if target in nxt[status] else stuck
            r = await client.patch(f"/incidents/{ident}", json={"status": target}, headers=ANY)
            if target in nxt[status]:
                assert r.status_code == 200 and r.json()["properties"]["status"] == target
            else:
                assert r.status_code == 409 and r.json()["allowed"] == nxt[status], r.text
