"""Recording and correcting incidents: idempotency, ETags, lifecycle, history, soft delete."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from geo_reference import units_of

PROBLEM = "application/problem+json"


def incident(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "category": "smuggling",
        "severity": 3,
        "occurred_at": "2025-03-04T05:06:07Z",
        "location": {"type": "Point", "coordinates": [106.7050, 21.9600]},  # near Huu Nghi
        "location_precision_m": 50,
        "description": "Hàng lậu qua đường mòn",
        "unit": "Đồn Biên phòng Hữu Nghị",
    }
    body.update(overrides)
    return body


async def _count(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT count(*) FROM incident"))).scalar_one())


async def test_create_returns_feature_with_derived_fields(client: httpx.AsyncClient) -> None:
    r = await client.post("/incidents", json=incident())
    assert r.status_code == 201
    assert r.headers["content-type"] == "application/geo+json"
    f = r.json()
    assert r.headers["location"].endswith(f"/incidents/{f['id']}")
    assert r.headers["etag"] == '"v1"'
    p = f["properties"]
    assert f["geometry"] == {"type": "Point", "coordinates": [106.705, 21.96]}
    assert (p["category"], p["severity"], p["status"], p["version"]) == (
        "smuggling",
        3,
        "reported",
        1,
    )
    assert p["occurred_at"] == "2025-03-04T05:06:07+00:00"
    # Lạng Sơn (VN-09) until 2025-07-01, today Lạng Sơn (VN-P20): the point's units of both
    # eras, by shapely over the bundled files
    former, today = units_of(106.705, 21.96)
    assert former == ("VN-09",) and today[0] == "VN-P20"
    assert (p["country"], p["province"], p["commune"]) == ("VNM", *today)
    assert p["province_at_occurrence"] == "VN-09" and p["commune_at_occurrence"] is None
    assert p["jurisdictions"] == "|".join(["VNM", *former, *today])
    assert p["border_segment"] == "VNM-CHN" and p["nearest_post"] == "huu-nghi"
    assert 0 < p["border_distance_km"] < 5 and 0 < p["nearest_post_km"] < 2
    assert p["description"] == "Hàng lậu qua đường mòn"
    again = await client.get(f"/incidents/{f['id']}")
    assert again.status_code == 200 and again.json() == f
    assert again.headers["etag"] == '"v1"'


async def test_feature_body_is_accepted(client: httpx.AsyncClient) -> None:
    body = incident()
    feature = {
        "type": "Feature",
        "geometry": body.pop("location"),
        "properties": body,
    }
    r = await client.post(
        "/incidents", json=feature, headers={"content-type": "application/geo+json"}
    )
    assert r.status_code == 201
    assert r.json()["properties"]["province"] == units_of(106.705, 21.96)[1][0]


async def test_retry_with_client_id_is_not_doubled(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    ident = str(uuid.uuid4())
    before = await _count(session)
    first = await client.post("/incidents", json=incident(id=ident))
    second = await client.post("/incidents", json=incident(id=ident))
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json() == second.json()
    assert await _count(session) == before + 1
    clash = await client.post("/incidents", json=incident(id=ident, severity=5))
    assert clash.status_code == 409
    assert clash.headers["content-type"] == PROBLEM
    assert ident in clash.json()["detail"]


async def test_idempotency_key_header(client: httpx.AsyncClient, session: AsyncSession) -> None:
    before = await _count(session)
    headers = {"Idempotency-Key": "unit-7/2025-03-04/0001"}
    first = await client.post("/incidents", json=incident(), headers=headers)
    second = await client.post("/incidents", json=incident(), headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert await _count(session) == before + 1
    other = await client.post("/incidents", json=incident(), headers={"Idempotency-Key": "other"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


async def test_patch_with_if_match_and_lifecycle(client: httpx.AsyncClient) -> None:
    created = await client.post("/incidents", json=incident())
    url = created.headers["location"].replace("http://test", "")
    missing = await client.patch(url, json={"severity": 4})
    assert missing.status_code == 428 and missing.headers["content-type"] == PROBLEM
    ok = await client.patch(
        url, json={"severity": 4, "status": "verified"}, headers={"If-Match": '"v1"'}
    )
    assert ok.status_code == 200
    assert ok.headers["etag"] == '"v2"'
    assert (ok.json()["properties"]["severity"], ok.json()["properties"]["status"]) == (
        4,
        "verified",
    )
    stale = await client.patch(url, json={"severity": 5}, headers={"If-Match": '"v1"'})
    assert stale.status_code == 412
    assert stale.json()["current_version"] == 2
    illegal = await client.patch(url, json={"status": "closed"}, headers={"If-Match": '"v2"'})
    assert illegal.status_code == 409
    assert illegal.json()["allowed"] == ["under_investigation", "rejected", "duplicate"]
    for step, version in (("under_investigation", 2), ("solved", 3), ("closed", 4)):
        r = await client.patch(url, json={"status": step}, headers={"If-Match": f'"v{version}"'})
        assert r.status_code == 200, r.text
    final = await client.patch(url, json={"status": "verified"}, headers={"If-Match": '"v5"'})
    assert final.status_code == 409 and final.json()["allowed"] == []


async def test_moving_rederives_and_history_records_every_change(client: httpx.AsyncClient) -> None:
    created = await client.post("/incidents", json=incident())
    ident = created.json()["id"]
    moved = await client.patch(
        f"/incidents/{ident}",
        json={"location": {"type": "Point", "coordinates": [105.435, 10.386]}, "description": None},
        headers={"If-Match": '"v1"'},
    )
    p = moved.json()["properties"]
    assert p["province"] == "VN-P91" and p["border_segment"] == "VNM-KHM"
    assert p["province_at_occurrence"] == "VN-44"  # occurred 2025-03-04: former An Giang
    assert p["description"] is None
    await client.patch(
        f"/incidents/{ident}", json={"status": "verified"}, headers={"If-Match": '"v2"'}
    )
    deleted = await client.delete(f"/incidents/{ident}", headers={"If-Match": '"v3"'})
    assert deleted.status_code == 204
    h = (await client.get(f"/incidents/{ident}/history")).json()["entries"]
    assert [(e["version"], e["action"]) for e in h] == [
        (1, "create"),
        (2, "update"),
        (3, "status"),
        (4, "delete"),
    ]
    assert h[1]["changes"]["province_code"] == ["VN-P20", "VN-P91"]
    assert h[1]["changes"]["province_at_occurrence"] == ["VN-09", "VN-44"]
    assert h[1]["changes"]["description"] == ["Hàng lậu qua đường mòn", None]
    assert h[2]["changes"]["status"] == ["reported", "verified"]
    assert all(e["actor"].startswith("principal:") and "test admin" in e["actor"] for e in h)


async def test_soft_delete_hides_but_keeps(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    created = await client.post("/incidents", json=incident(category="gambling"))
    ident = created.json()["id"]
    assert (
        await client.delete(f"/incidents/{ident}", headers={"If-Match": '"v9"'})
    ).status_code == 412
    assert (await client.delete(f"/incidents/{ident}")).status_code == 204
    assert (await client.get(f"/incidents/{ident}")).status_code == 404
    assert (await client.delete(f"/incidents/{ident}")).status_code == 404
    listed = (
        await client.get("/incidents", params={"category": "gambling", "limit": 10000})
    ).json()
    assert ident not in {f["id"] for f in listed["features"]}
    kept = await session.execute(
        text("SELECT deleted_at IS NOT NULL FROM incident WHERE id = :id"), {"id": ident}
    )
    assert kept.scalar_one() is True
    # re-sending the original create does not resurrect it silently
    retry = await client.post("/incidents", json=incident(category="gambling", id=ident))
    assert retry.status_code == 409


async def test_history_is_append_only(client: httpx.AsyncClient, session: AsyncSession) -> None:
    created = await client.post("/incidents", json=incident())
    with pytest.raises(Exception, match="append-only"):
        async with session.begin_nested():
            await session.execute(text("UPDATE incident_history SET actor = 'mallory'"))
    with pytest.raises(Exception, match="append-only"):
        async with session.begin_nested():
            await session.execute(
                text("DELETE FROM incident_history WHERE incident_id = :id"),
                {"id": created.json()["id"]},
            )


async def test_categories(client: httpx.AsyncClient) -> None:
    cats = (await client.get("/categories")).json()["categories"]
    codes = [c["code"] for c in cats]
    assert codes == [
        "drug_trafficking",
        "human_trafficking",
        "smuggling",
        "counterfeit_goods",
        "illegal_border_crossing",
        "robbery_theft",
        "fraud",
        "gambling",
        "environmental_crime",
        "weapons",
        "other",
    ]
    assert next(c for c in cats if c["code"] == "smuggling")["name_vi"] == "Buôn lậu"


async def test_unknown_incident_is_404(client: httpx.AsyncClient) -> None:
    ident = uuid.uuid4()
    for method, path in (
        ("GET", f"/incidents/{ident}"),
        ("GET", f"/incidents/{ident}/history"),
        ("DELETE", f"/incidents/{ident}"),
    ):
        r = await client.request(method, path)
        assert r.status_code == 404, (method, path)
        assert r.headers["content-type"] == PROBLEM
    r = await client.patch(
        f"/incidents/{ident}", json={"severity": 2}, headers={"If-Match": '"v1"'}
    )
    assert r.status_code == 404
    # an id that is not a UUID names no incident route at all (the path converter)
    bad = await client.get("/incidents/not-a-uuid")
    assert bad.status_code == 404 and bad.headers["content-type"] == PROBLEM


async def test_history_per_statement_equals_the_row_trigger(session: AsyncSession) -> None:
    """The statement-level history triggers (0006) write exactly what the row trigger of 0002
    wrote: the old function is attached again for this test, so every write lands twice."""
    await session.execute(
        text(
            "CREATE TRIGGER zz_row_history AFTER INSERT OR UPDATE ON incident"
            " FOR EACH ROW EXECUTE FUNCTION incident_history_append()"
        )
    )
    await session.execute(text("SELECT set_config('borderwatch.actor', 'tester', true)"))
    ids = (
        (
            await session.execute(
                text(
                    "INSERT INTO incident (category, severity, occurred_at, geom, source, source_id)"
                    " SELECT 'fraud', 2, '2025-01-02T03:04:05Z',"
                    " ST_SetSRID(ST_MakePoint(105.4 + i / 10.0, 10.4), 4326), 'hist', i::text"
                    " FROM generate_series(1, 4) i ORDER BY i RETURNING id"
                )
            )
        )
        .scalars()
        .all()
    )
    assert len(ids) == 4
    statements = [
        # a move (re-derived fields change too) and a no-op on another row
        "UPDATE incident SET geom = ST_SetSRID(ST_MakePoint(106.0, 21.0), 4326), version = 2"
        " WHERE source = 'hist' AND source_id = '1'",
        "UPDATE incident SET geom = geom, version = version WHERE source = 'hist'"
        " AND source_id = '2'",
        "UPDATE incident SET status = 'verified', version = version + 1"
        " WHERE source = 'hist' AND source_id IN ('2', '3')",
        "UPDATE incident SET deleted_at = now(), version = version + 1"
        " WHERE source = 'hist' AND source_id = '4'",
        "UPDATE incident SET deleted_at = NULL, version = version + 1"
        " WHERE source = 'hist' AND source_id = '4'",
        "UPDATE incident SET description = 'x', updated_at = now() WHERE source = 'hist'"
        " AND source_id = '3'",
        "UPDATE incident SET updated_at = now() + interval '1 hour' WHERE source = 'hist'",
    ]
    for sql in statements:
        await session.execute(text(sql))
    await session.execute(text("SELECT set_config('borderwatch.action', 'import', true)"))
    await session.execute(
        text(
            "INSERT INTO incident AS i (category, severity, occurred_at, geom, source, source_id)"
            " VALUES ('fraud', 5, '2025-01-02T03:04:05Z', ST_SetSRID(ST_MakePoint(105.5, 10.4),"
            " 4326), 'hist', '1'), ('other', 1, '2025-01-03T00:00:00Z',"
            " ST_SetSRID(ST_MakePoint(105.6, 10.4), 4326), 'hist', '9')"
            " ON CONFLICT (source, source_id) WHERE source_id IS NOT NULL DO UPDATE"
            " SET severity = EXCLUDED.severity, version = i.version + 1"
        )
    )
    await session.execute(text("DROP TRIGGER zz_row_history ON incident"))
    rows = (
        await session.execute(
            text(
                "SELECT h.incident_id, h.version, h.action, h.actor, h.changes, count(*)"
                " FROM incident_history h JOIN incident i ON i.id = h.incident_id"
                " WHERE i.source = 'hist'"
                " GROUP BY 1, 2, 3, 4, 5 ORDER BY 3, 2"
            )
        )
    ).all()
    assert [r[5] for r in rows] == [2] * len(rows)  # each entry written by both, identically
    actions = sorted(r[2] for r in rows)
    # 4 creates; move; status x2; delete; restore; description; import: update + insert
    assert actions == sorted(
        ["create"] * 4 + ["update", "status", "status", "delete", "restore", "update"]
        + ["import", "import"]
    )  # fmt: skip
    assert {r[3] for r in rows} == {"tester"}
    moved = next(r for r in rows if r[0] == ids[0] and r[2] == "update")
    assert moved[4]["location"][1] == {"type": "Point", "coordinates": [106, 21]}
    assert moved[4]["province_code"][0] != moved[4]["province_code"][1]
    assert "version" not in moved[4] and "updated_at" not in moved[4]
    # the picture names every column (a new column must be added to the history triggers)
    columns = set(
        (
            await session.execute(
                text(
                    "SELECT attname FROM pg_attribute WHERE attrelid = 'incident'::regclass"
                    " AND attnum > 0 AND NOT attisdropped"
                )
            )
        ).scalars()
    )
    created = next(r for r in rows if r[0] == ids[0] and r[2] == "create")
    assert set(created[4]) == columns - {"geom", "request_hash"} | {"location"}


async def test_a_time_without_offset_is_local(client: httpx.AsyncClient) -> None:
    """Field units write local times: "2026-11-02T08:30" is 08:30 in Hà Nội (UTC+7, no summer
    time), stored and answered as 01:30Z, never as 08:30Z; a time with an offset is kept."""
    r = await client.post("/incidents", json=incident(occurred_at="2026-11-02T08:30:00"))
    assert r.status_code == 201, r.text
    assert r.json()["properties"]["occurred_at"] == "2026-11-02T01:30:00+00:00"
    r = await client.post("/incidents", json=incident(occurred_at="2026-11-02T08:30:00+09:00"))
    assert r.json()["properties"]["occurred_at"] == "2026-11-01T23:30:00+00:00"
    ident = r.json()["id"]
    patched = await client.patch(
        f"/incidents/{ident}",
        json={"occurred_at": "2026-11-03T00:15"},
        headers={"If-Match": '"v1"'},
    )
    assert patched.json()["properties"]["occurred_at"] == "2026-11-02T17:15:00+00:00"
