"""Bulk import (POST /incidents/import, `borderwatch import`): CSV, ACLED and GeoJSON files,
validation reports, all-or-nothing and skip_invalid, upsert on (source, source_id), history,
size limit, and the set-based derivation compared with the trigger's."""

from __future__ import annotations

import asyncio
import csv
import io
import random
import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from typer.testing import CliRunner

from app.config import Settings
from app.errors import InvalidInput
from app.incidents import imports
from app.incidents.imports import staging, write
from app.incidents.imports.csv_file import CsvFile
from app.incidents.imports.formats import Format
from app.incidents.imports.geojson_file import GeoJsonFile
from conftest import app_client, drop_database, make_key
from geo_reference import units_of

LONG_XUYEN = (105.435, 10.386)  # An Giang, VN-44
HA_NOI = (105.854, 21.028)
VIENTIANE = (102.6, 17.97)  # Laos
PHNOM_PENH = (104.928, 11.556)  # Cambodia

# every field the derivation sets (migrations/sql/incident_derive_v6.sql), listed here so that
# an import that leaves one out fails
DERIVED = (
    "country_code, province_code, commune_code, province_at_occurrence, commune_at_occurrence,"
    " jurisdiction_path, jurisdiction_method, offshore_km, maritime_zone, border_segment,"
    " border_distance_km, nearest_post_id, nearest_post_km"
)
VIETNAM = timezone(timedelta(hours=7))  # Asia/Ho_Chi_Minh: no summer time


async def _post(
    client: httpx.AsyncClient, body: str | bytes, media: str = "text/csv", **params: str
) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return await client.post(
        "/incidents/import", content=content, headers={"content-type": media}, params=params
    )


async def _count(session: AsyncSession, source: str | None = None) -> int:
    sql = "SELECT count(*) FROM incident" + (" WHERE source = :s" if source else "")
    return int((await session.execute(text(sql), {"s": source})).scalar_one())


async def _by_source_id(session: AsyncSession, source: str) -> dict[str | None, Any]:
    rows = await session.execute(
        text(
            "SELECT *, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM incident"
            " WHERE source = :s ORDER BY occurred_at"
        ),
        {"s": source},
    )
    return {r.source_id: r for r in rows.all()}


async def _history(session: AsyncSession, incident_id: uuid.UUID) -> list[Any]:
    rows = await session.execute(
        text(
            "SELECT version, action, actor, changes FROM incident_history"
            " WHERE incident_id = :id ORDER BY id"
        ),
        {"id": incident_id},
    )
    return list(rows.all())


def _csv(rows: Iterable[Iterable[object]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


async def _trigger_derived(
    session: AsyncSession, lon: float, lat: float, at: datetime
) -> tuple[Any, ...]:
    """What the incident_derive trigger sets for a point (inserted, read, removed)."""
    row = (
        await session.execute(
            text(
                "INSERT INTO incident (category, severity, occurred_at, geom)"
                " VALUES ('other', 1, :at, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"
                f" RETURNING id, {DERIVED}"
            ),
            {"lon": lon, "lat": lat, "at": at},
        )
    ).one()
    await session.execute(text("DELETE FROM incident WHERE id = :id"), {"id": row[0]})
    return tuple(row[1:])


def _derived(row: Any) -> tuple[Any, ...]:
    return (
        row.country_code,
        row.province_code,
        row.commune_code,
        row.province_at_occurrence,
        row.commune_at_occurrence,
        row.jurisdiction_path,
        row.jurisdiction_method,
        row.offshore_km,
        row.maritime_zone,
        row.border_segment,
        row.border_distance_km,
        row.nearest_post_id,
        row.nearest_post_km,
    )


# ---------------------------------------------------------------------------------------------


async def test_plain_csv(client: httpx.AsyncClient, session: AsyncSession) -> None:
    body = _csv(
        [
            ["lat", "lon", "occurred_at", "category", "severity", "status", "description",
             "unit", "location_precision_m", "source_id", "remarks"],
            [10.386, 105.435, "2024-05-01", "smuggling", 4, "verified",
             "Cigarettes seized, Long Xuyen", "Border guard An Giang", 50, "ag-1", "x"],
            [21.028, 105.854, "2024-05-02 10:00", "fraud", "", "", "", "", "", "hn-1", ""],
            [17.97, 102.6, "2024-05-03T10:00:00+07:00", "OTHER", 2, "", "Vientiane", "", "",
             "", ""],
        ]
    )  # fmt: skip
    before = await _count(session)
    response = await _post(client, body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "mode": "all_or_nothing",
        "rows": 3,
        "inserted": 3,
        "updated": 0,
        "unchanged": 0,
        "skipped": 0,
        "errors": [],
        "more_errors": 0,
        "ignored_columns": ["remarks"],
        "time_zone": "Asia/Ho_Chi_Minh",
    }
    assert await _count(session) == before + 3
    rows = await _by_source_id(session, "import")
    ag, hn, vt = rows["ag-1"], rows["hn-1"], rows[None]
    assert (ag.category, ag.severity, ag.status, ag.unit, ag.location_precision_m) == (
        "smuggling", 4, "verified", "Border guard An Giang", 50.0,
    )  # fmt: skip
    assert ag.description == "Cigarettes seized, Long Xuyen"
    assert ag.occurred_at == datetime(2024, 5, 1, tzinfo=VIETNAM)  # a date: 00:00 local time
    assert (ag.lon, ag.lat) == LONG_XUYEN
    former, today = units_of(*LONG_XUYEN)
    assert (ag.province_at_occurrence, ag.province_code, ag.commune_code) == (*former, *today)
    assert (ag.jurisdiction_path, ag.jurisdiction_method) == (
        ["VNM", *former, *today], "contains",
    )  # fmt: skip
    assert _derived(ag) == await _trigger_derived(session, *LONG_XUYEN, ag.occurred_at)
    # blank cells take the defaults; a time without offset is local time (Asia/Ho_Chi_Minh)
    assert (hn.category, hn.severity, hn.status, hn.description, hn.unit) == (
        "fraud", 3, "reported", None, None,
    )  # fmt: skip
    assert hn.occurred_at == datetime(2024, 5, 2, 10, tzinfo=VIETNAM)
    assert (hn.province_at_occurrence, hn.province_code) == ("VN-HN", units_of(*HA_NOI)[1][0])
    assert _derived(hn) == await _trigger_derived(session, *HA_NOI, hn.occurred_at)
    assert vt.occurred_at == datetime(2024, 5, 3, 3, tzinfo=UTC)
    assert (vt.category, vt.country_code, vt.province_code, vt.border_segment) == (
        "other", "LAO", None, "VNM-LAO",
    )  # fmt: skip
    assert ag.version == 1 and ag.created_by == ag.updated_by
    assert ag.created_by.startswith("principal:")  # the key's principal
    history = await _history(session, ag.id)
    assert [(h.version, h.action, h.actor) for h in history] == [(1, "import", ag.created_by)]
    assert history[0].changes["province_at_occurrence"] == "VN-44"
    assert history[0].changes["commune_code"] == today[1]


async def test_category_by_name_and_column_aliases(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    names = [
        "Buôn lậu",
        "BUÔN LẬU",
        unicodedata.normalize("NFD", "Buôn lậu"),  # decomposed accents, as some editors save
        "mua bán người",
        "Human Trafficking",
        "Lừa đảo (kể cả trên mạng)",
        " weapons ",
    ]
    body = _csv(
        [["latitude", "lng", "event_date", "category", "notes", "source_id"]]
        + [[10.4, 105.4, "2024-05-01", n, f"row {i}", f"c{i}"] for i, n in enumerate(names)]
    )
    response = await _post(client, body)
    assert response.status_code == 200, response.text
    assert response.json()["inserted"] == len(names)
    rows = await _by_source_id(session, "import")
    assert [rows[f"c{i}"].category for i in range(len(names))] == [
        "smuggling", "smuggling", "smuggling", "human_trafficking", "human_trafficking",
        "fraud", "weapons",
    ]  # fmt: skip
    assert rows["c0"].description == "row 0"  # `notes` is an alias of description


ACLED_HEADER = [
    "event_id_cnty", "event_date", "year", "time_precision", "disorder_type", "event_type",
    "sub_event_type", "actor1", "country", "admin1", "location", "latitude", "longitude",
    "geo_precision", "source", "source_scale", "notes", "fatalities", "tags", "timestamp",
]  # fmt: skip


def _acled(changed: bool = False) -> str:
    rows = [
        ["VNM1001", "2024-03-02", 2024, 1, "Strategic developments", "Strategic developments",
         "Arrests", "Police Forces of Vietnam", "Vietnam", "An Giang", "Long Xuyen",
         "10.3860", "105.4350", 1, "Tuoi Tre", "National",
         "On 2 March 2024, police seized 2,000 packs of smuggled cigarettes."
         if not changed else "On 2 March 2024, police seized 2,000 packs; three smugglers died.",
         3 if changed else 0, "", 1710000000],
        ["VNM1002", "05 March 2024", 2024, 1, "Political violence", "Riots", "Mob violence",
         "Rioters", "Vietnam", "Ha Noi", "Ha Noi", "21.0280", "105.8540", 2, "VnExpress",
         "National", "Clash near the market.", 2, "", 1710000000],
        ["LAO2001", "2024-03-10", 2024, 1, "Political violence", "Battles", "Armed clash",
         "Military Forces of Laos", "Laos", "Vientiane", "Vientiane", "17.9700", "102.6000",
         3, "Vientiane Times", "National", "Armed clash with traffickers.", 12, "",
         1710000000],
        ["KHM3001", "2024-03-12", 2024, 1, "Political violence", "Violence against civilians",
         "Attack", "Unidentified", "Cambodia", "Phnom Penh", "Phnom Penh", "11.5560",
         "104.9280", 1, "Khmer Times", "National", "", 4, "", 1710000000],
    ]  # fmt: skip
    return _csv([ACLED_HEADER, *rows])


async def test_acled_mapping_and_reimport(client: httpx.AsyncClient, session: AsyncSession) -> None:
    first = await _post(client, _acled())
    assert first.status_code == 200, first.text
    report = first.json()
    assert (report["rows"], report["inserted"], report["updated"], report["unchanged"]) == (
        4, 4, 0, 0,
    )  # fmt: skip
    assert report["ignored_columns"] == [
        "year", "time_precision", "disorder_type", "event_type", "sub_event_type", "actor1",
        "country", "admin1", "location", "source_scale", "tags", "timestamp",
    ]  # fmt: skip
    rows = await _by_source_id(session, "acled")
    assert set(rows) == {"VNM1001", "VNM1002", "LAO2001", "KHM3001"}
    mapped = {
        sid: (r.severity, r.location_precision_m, r.category, r.status, r.occurred_at)
        for sid, r in rows.items()
    }
    assert mapped == {
        "VNM1001": (2, 1000.0, "other", "reported", datetime(2024, 3, 2, tzinfo=VIETNAM)),
        "VNM1002": (3, 10000.0, "other", "reported", datetime(2024, 3, 5, tzinfo=VIETNAM)),
        "LAO2001": (5, 50000.0, "other", "reported", datetime(2024, 3, 10, tzinfo=VIETNAM)),
        "KHM3001": (4, 1000.0, "other", "reported", datetime(2024, 3, 12, tzinfo=VIETNAM)),
    }
    assert rows["VNM1001"].description == (
        "On 2 March 2024, police seized 2,000 packs of smuggled cigarettes.\n\nSource: Tuoi Tre"
    )
    assert rows["KHM3001"].description == "Source: Khmer Times"
    assert rows["VNM1001"].province_at_occurrence == "VN-44"
    assert rows["KHM3001"].country_code == "KHM"

    again = (await _post(client, _acled())).json()
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 4)
    assert await _count(session, "acled") == 4

    changed = (await _post(client, _acled(changed=True))).json()
    assert (changed["inserted"], changed["updated"], changed["unchanged"]) == (0, 1, 3)
    after = await _by_source_id(session, "acled")
    assert {sid: r.version for sid, r in after.items()} == {
        "VNM1001": 2, "VNM1002": 1, "LAO2001": 1, "KHM3001": 1,
    }  # fmt: skip
    assert after["VNM1001"].severity == 4
    assert after["VNM1001"].updated_at >= rows["VNM1001"].updated_at
    assert after["VNM1002"].updated_at == rows["VNM1002"].updated_at
    history = await _history(session, after["VNM1001"].id)
    assert [(h.version, h.action) for h in history] == [(1, "import"), (2, "import")]
    assert history[1].changes["severity"] == [2, 4]
    assert set(history[1].changes) == {"severity", "description"}


async def test_acled_errors_name_acled_columns(client: httpx.AsyncClient) -> None:
    body = _csv(
        [
            ["event_id_cnty", "event_date", "latitude", "longitude", "geo_precision", "fatalities"],
            ["VNM1", "2024-01-02", 10.4, 105.4, 4, "many"],
            ["", "2024-01-02", 100.4, 5.4, 1, 0],
        ]
    )
    response = await _post(client, body)
    assert response.status_code == 422
    assert [(e["row"], e["column"], e["reason"]) for e in response.json()["errors"]] == [
        (2, "fatalities", "fatalities 'many' is not a whole number ≥ 0"),
        (2, "geo_precision", "geo_precision '4' is not 1, 2 or 3"),
        (
            3,
            "latitude",
            "latitude 100.4 is outside [-90, 90] (latitude and longitude look swapped)",
        ),
        (3, "event_id_cnty", "event_id_cnty is empty"),
    ]


async def test_acled_with_a_category_column(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    body = _csv(
        [
            ["event_id_cnty", "event_date", "latitude", "longitude", "category", "fatalities"],
            ["VNM9", "2024-01-02", 10.4, 105.4, "Buôn lậu", ""],
            ["VNM10", "2024-01-02", 10.4, 105.4, "", 0],
        ]
    )
    response = await _post(client, body, source="acled-vn")
    assert response.status_code == 200, response.text
    rows = await _by_source_id(session, "acled-vn")
    assert (rows["VNM9"].category, rows["VNM9"].severity) == ("smuggling", 3)
    assert (rows["VNM10"].category, rows["VNM10"].severity) == ("other", 2)


async def test_reimport_keeps_what_the_file_does_not_carry(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    header = ["lat", "lon", "occurred_at", "category", "description", "source_id"]
    first = _csv(
        [header, [10.4, 105.4, "2024-01-02", "fraud", "first", "k1"],
         [10.5, 105.5, "2024-01-02", "fraud", "gone", "k2"]]
    )  # fmt: skip
    assert (await _post(client, first, source="unit-3")).json()["inserted"] == 2
    # an operator verifies k1 and deletes k2 in Borderwatch
    await session.execute(
        text(
            "UPDATE incident SET status = 'verified', severity = 5, version = version + 1"
            " WHERE source = 'unit-3' AND source_id = 'k1'"
        )
    )
    await session.execute(
        text(
            "UPDATE incident SET deleted_at = now(), version = version + 1"
            " WHERE source = 'unit-3' AND source_id = 'k2'"
        )
    )
    second = _csv(
        [header, [10.4, 105.4, "2024-01-02", "fraud", "second", "k1"],
         [10.5, 105.5, "2024-01-02", "fraud", "back?", "k2"]]
    )  # fmt: skip
    report = (await _post(client, second, source="unit-3")).json()
    assert (report["inserted"], report["updated"], report["unchanged"]) == (0, 1, 1)
    rows = await _by_source_id(session, "unit-3")
    k1, k2 = rows["k1"], rows["k2"]
    # no status / severity column: the stored values stay; the description is the file's
    assert (k1.status, k1.severity, k1.description, k1.version) == ("verified", 5, "second", 3)
    # a deleted incident is neither restored nor changed
    assert k2.deleted_at is not None and (k2.description, k2.version) == ("gone", 2)


async def test_geojson_feature_collection(client: httpx.AsyncClient, session: AsyncSession) -> None:
    def point(lon: float, lat: float) -> dict[str, Any]:
        return {"type": "Point", "coordinates": [lon, lat]}

    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": "gj-1",
                "geometry": point(*LONG_XUYEN),
                "properties": {
                    "category": "Buôn lậu",
                    "severity": 4,
                    "occurred_at": "2024-05-01T08:00:00+07:00",
                    "description": "from GeoJSON",
                    "province": "read-only properties of exports are ignored",
                    "nearest_post_km": 1.5,
                },
            },
            {
                "type": "Feature",
                "id": 17,
                "geometry": point(*HA_NOI),
                "properties": {
                    "category": "fraud",
                    "occurred_at": "2024-05-02T00:00:00Z",
                    "source_id": "explicit-2",
                    "status": "verified",
                },
            },
            {
                "type": "Feature",
                "geometry": point(*VIENTIANE),
                "properties": {
                    "category": "other",
                    "severity": 2,
                    "occurred_at": "2024-05-03T00:00:00Z",
                },
            },
        ],
    }
    response = await _post(client, orjson.dumps(fc), "application/geo+json", source="unit-7")
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["rows"], report["inserted"], report["errors"]) == (3, 3, [])
    rows = await _by_source_id(session, "unit-7")
    assert set(rows) == {"gj-1", "explicit-2", None}
    gj = rows["gj-1"]
    assert (gj.category, gj.severity, gj.description, gj.province_at_occurrence) == (
        "smuggling", 4, "from GeoJSON", "VN-44",
    )  # fmt: skip
    assert gj.occurred_at == datetime(2024, 5, 1, 1, tzinfo=UTC)
    assert (rows["explicit-2"].severity, rows["explicit-2"].status) == (3, "verified")
    assert rows[None].country_code == "LAO"
    again = (await _post(client, orjson.dumps(fc), "application/json", source="unit-7")).json()
    assert (again["inserted"], again["updated"], again["unchanged"]) == (1, 0, 2)


async def test_geojson_errors(client: httpx.AsyncClient, session: AsyncSession) -> None:
    good = {"category": "other", "severity": 2, "occurred_at": "2024-05-03T00:00:00Z"}
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [10.386, 105.435]},
             "properties": good},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [105.4, 10.4]},
             "properties": {**good, "occurred_at": "2999-01-01T00:00:00Z"}},
            {"type": "Feature", "geometry": None, "properties": good},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [105.4, 10.4]},
             "properties": {**good, "category": "nonsense", "severity": 9}},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [105.4, 10.4]},
             "properties": {**good, "colour": "red"}},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [105.4, 10.4]},
             "properties": good},
        ],
    }  # fmt: skip
    before = await _count(session)
    response = await _post(client, orjson.dumps(fc), "application/geo+json")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert [(e["row"], e["column"]) for e in errors] == [
        (1, "geometry.coordinates"),
        (2, "occurred_at"),
        (3, "geometry"),
        (4, "category"),
        (5, "colour"),
    ]
    assert "looks like [lat, lon]" in errors[0]["reason"]
    assert "future" in errors[1]["reason"]
    assert await _count(session) == before
    bad = await _post(client, b'{"type": "Feature"}', "application/geo+json")
    assert bad.status_code == 422 and "FeatureCollection" in bad.json()["detail"]
    broken = await _post(client, b'{"type": "FeatureCollection", "features": [', "application/json")
    assert broken.status_code == 422 and "not valid JSON" in broken.json()["detail"]


MIXED: list[list[object]] = [
    ["lat", "lon", "occurred_at", "category", "severity", "status", "source_id"],
    [10.386, 105.435, "2024-05-01", "smuggling", 3, "", "ok-1"],  # row 2
    ["abc", 105.435, "2024-05-01", "smuggling", 3, "", "bad-1"],  # 3
    [10.386, 105.435, "2024-05-01", "smugglin", 3, "", "bad-2"],  # 4
    [10.386, 105.435, "2024-05-01", "smuggling", 9, "", "bad-3"],  # 5
    [10.386, 105.435, "2024-05-01", "smuggling", 3, "archived", "bad-4"],  # 6
    [10.386, 105.435, "2024-13-45", "smuggling", 3, "", "bad-5"],  # 7
    [10.386, 105.435, "1899-12-31", "smuggling", 3, "", "bad-6"],  # 8
    [10.386, 105.435, "2999-01-01", "smuggling", 3, "", "bad-7"],  # 9
    [10.386, "", "2024-05-01", "smuggling", 3, "", "bad-8"],  # 10
    [],  # 11: a blank line keeps its row number, as in a spreadsheet
    [21.028, 105.854, "2024-05-02", "fraud", 2, "", "ok-2"],  # 12
]
MIXED_ERRORS = [
    (3, "lat", "'abc' is not a number"),
    (4, "category", "unknown category 'smugglin'"),
    (5, "severity", "severity '9' is not a whole number 1..5"),
    (6, "status", "status 'archived' is not one of"),
    (7, "occurred_at", "'2024-13-45' is not an ISO 8601 date"),
    (8, "occurred_at", "before 1900"),
    (9, "occurred_at", "in the future"),
    (10, "lon", "lon is empty"),
]


def _check_errors(errors: list[dict[str, Any]]) -> None:
    assert [(e["row"], e["column"]) for e in errors] == [(r, c) for r, c, _ in MIXED_ERRORS]
    for e, (_, _, reason) in zip(errors, MIXED_ERRORS, strict=True):
        assert reason in e["reason"], e


async def test_all_or_nothing_writes_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    before = await _count(session)
    history_before = (await session.execute(text("SELECT count(*) FROM incident_history"))).scalar()
    response = await _post(client, _csv(MIXED))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["rows"], body["invalid_rows"], body["more_errors"]) == (10, 8, 0)
    assert "nothing was imported" in body["detail"]
    _check_errors(body["errors"])
    assert await _count(session) == before
    history_after = (await session.execute(text("SELECT count(*) FROM incident_history"))).scalar()
    assert history_after == history_before


async def test_skip_invalid_writes_the_good_rows(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    before = await _count(session)
    response = await _post(client, _csv(MIXED), mode="skip_invalid")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["mode"], body["rows"], body["inserted"], body["skipped"]) == (
        "skip_invalid", 10, 2, 8,
    )  # fmt: skip
    _check_errors(body["errors"])
    assert await _count(session) == before + 2
    assert set(await _by_source_id(session, "import")) == {"ok-1", "ok-2"}


async def test_missing_column_is_named_before_reading_rows(client: httpx.AsyncClient) -> None:
    response = await _post(client, "lon,occurred_at,category\n105.4,2024-05-01,other\n")
    assert response.status_code == 422
    body = response.json()
    assert "lat" in body["detail"]
    assert body["errors"] == [
        {"row": 1, "column": "lat", "reason": "required column is missing ('lat' or 'latitude')"}
    ]
    two = await _post(client, "lat;lon\n10;105\n")  # semicolon-separated: found, still lacking
    assert [e["column"] for e in two.json()["errors"]] == ["occurred_at", "category"]
    empty = await _post(client, "\n")
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]


async def test_duplicate_source_id_and_error_cap(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    dup = _csv(
        [["lat", "lon", "date", "category", "source_id"],
         [10.4, 105.4, "2024-01-01", "other", "same"],
         [10.5, 105.5, "2024-01-02", "other", "same"]]
    )  # fmt: skip
    response = await _post(client, dup)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"row": 3, "column": "source_id", "reason": "source_id 'same' already appears on row 2"}
    ]
    many = _csv(
        [["lat", "lon", "date", "category"]]
        + [[10.4, 105.4, "2024-01-01", "bogus"]] * 1200
        + [[10.4, 105.4, "2024-01-01", "other"]]
    )
    report = (await _post(client, many, mode="skip_invalid")).json()
    assert (report["inserted"], report["skipped"]) == (1, 1200)
    assert (len(report["errors"]), report["more_errors"]) == (1000, 200)


async def test_csv_dialects(client: httpx.AsyncClient, session: AsyncSession) -> None:
    header_only = await _post(client, "lat,lon,date,category\n")
    assert header_only.status_code == 200
    assert (header_only.json()["rows"], header_only.json()["inserted"]) == (0, 0)
    excel = (
        "\ufeffLat;Lon;Date;Category;Description;ID\r\n"
        '10,4;105,4;2024-01-01;other;"two\r\nlines; and a ""quote""";x-1\r\n'
        "10.5;105.5;2024-01-02;other;;x-2\r\n"
    )
    response = await _post(client, excel.encode("utf-8"))
    assert response.status_code == 422  # decimal commas
    assert response.json()["errors"][0] == {
        "row": 2,
        "column": "Lat",
        "reason": "'10,4' is not a number: use a dot as the decimal separator",
    }
    response = await _post(client, excel.replace("10,4;105,4", "10.4;105.4").encode("utf-8"))
    assert response.status_code == 200, response.text
    rows = await _by_source_id(session, "import")
    assert rows["x-1"].description == 'two\r\nlines; and a "quote"'  # `id` → source_id
    assert rows["x-2"].description is None
    latin1 = await _post(
        client, "lat,lon,date,category\n10.4,105.4,2024-01-01,Khác\n".encode("latin-1")
    )
    assert latin1.status_code == 422 and "not UTF-8" in latin1.json()["detail"]
    ragged = await _post(client, "lat,lon,date,category\n10.4,105.4,2024-01-01,other,extra\n")
    assert ragged.json()["errors"] == [
        {
            "row": 2,
            "column": None,
            "reason": "row has 5 values but the header names 4 columns "
            "(a text containing the delimiter must be in double quotes)",
        }
    ]


async def test_chunks_and_batches(
    client: httpx.AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staging, "CHUNK_ROWS", 3)
    monkeypatch.setattr(write, "WRITE_BATCH", 4)
    rows = [["lat", "lon", "date", "category", "severity", "source_id"]] + [
        [10.3 + i / 100, 105.3 + i / 100, "2024-01-01", "other", 1 + i % 5, f"r{i}"]
        for i in range(11)
    ]
    late_error = [*rows, [10.4, 105.4, "2024-01-01", "nope", 1, "bad"]]
    before = await _count(session)
    assert (await _post(client, _csv(late_error))).status_code == 422
    assert await _count(session) == before
    report = (await _post(client, _csv(late_error), mode="skip_invalid")).json()
    assert (report["rows"], report["inserted"], report["skipped"]) == (12, 11, 1)
    stored = await _by_source_id(session, "import")
    assert [stored[f"r{i}"].severity for i in range(11)] == [1 + i % 5 for i in range(11)]
    assert all(r.province_at_occurrence == "VN-44" for r in stored.values())
    # the status column appears: the rows now carry one more field (another write statement)
    with_status = [[*r, "status" if i == 0 else "verified"] for i, r in enumerate(rows)]
    again = (await _post(client, _csv(with_status))).json()
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 11, 0)


async def test_coordinates_are_checked(client: httpx.AsyncClient) -> None:
    rows: list[list[object]] = [
        ["lat", "lon", "date", "category"],
        ["nan", 105.4, "2024-01-01", "other"],  # 2
        [10.4, "inf", "2024-01-01", "other"],  # 3
        ["-Infinity", 105.4, "2024-01-01", "other"],  # 4
        [95, 105.4, "2024-01-01", "other"],  # 5
        [105.435, 10.386, "2024-01-01", "other"],  # 6: swapped
        [10.4, 181, "2024-01-01", "other"],  # 7
        ["10,5", 105.4, "2024-01-01", "other"],  # 8
        [10.4, 105.4, "2024-01-01", "other"],  # 9: fine
    ]
    response = await _post(client, _csv(rows))
    assert response.status_code == 422
    got = [(e["row"], e["column"], e["reason"]) for e in response.json()["errors"]]
    assert got == [
        (2, "lat", "latitude nan is not a finite number"),
        (3, "lon", "longitude inf is not a finite number"),
        (4, "lat", "latitude -inf is not a finite number"),
        (5, "lat", "latitude 95.0 is outside [-90, 90]"),
        (6, "lat", "latitude 105.435 is outside [-90, 90] (latitude and longitude look swapped)"),
        (7, "lon", "longitude 181.0 is outside [-180, 180]"),
        (8, "lat", "'10,5' is not a number: use a dot as the decimal separator"),
    ]


async def test_sql_looking_text_is_stored_verbatim(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    nasty = {
        "description": "x'); DROP TABLE incident; --",
        "unit": "Robert'); DELETE FROM incident_history; --",
        "source": "acled'; DROP TABLE category; --",
        "source_id": "1; DELETE FROM incident WHERE true",
    }
    body = _csv(
        [["lat", "lon", "occurred_at", "category", *nasty],
         [10.4, 105.4, "2024-01-01", "other", *nasty.values()],
         [10.4, 105.4, "2024-01-01", "other", "$$; SELECT pg_sleep(10); $$", "", "", ""]]
    )  # fmt: skip
    before = await _count(session)
    categories = (await session.execute(text("SELECT count(*) FROM category"))).scalar()
    response = await _post(client, body, source="'); TRUNCATE incident; --")
    assert response.status_code == 200, response.text
    assert response.json()["inserted"] == 2
    assert await _count(session) == before + 2
    assert (await session.execute(text("SELECT count(*) FROM category"))).scalar() == categories
    stored = (await _by_source_id(session, nasty["source"]))[nasty["source_id"]]
    assert (stored.description, stored.unit) == (nasty["description"], nasty["unit"])
    other = await _by_source_id(session, "'); TRUNCATE incident; --")
    assert other[None].description == "$$; SELECT pg_sleep(10); $$"
    unknown = await _post(client, _csv([["lat", "lon", "date", "category"],
                                        [10.4, 105.4, "2024-01-01", "other' OR '1'='1"]]))  # fmt: skip
    assert unknown.status_code == 422
    assert "unknown category" in unknown.json()["errors"][0]["reason"]


@pytest.mark.parametrize(
    ("role", "jurisdiction", "status"),
    [(None, None, 401), ("viewer", None, 403), ("officer", "VN-44", 403), ("admin", "VN-44", 403)],
)
async def test_imports_need_a_national_admin(
    engine: AsyncEngine,
    session: AsyncSession,
    settings: Settings,
    role: str | None,
    jurisdiction: str | None,
    status: int,
) -> None:
    key = await make_key(session, role, jurisdiction) if role else None
    async with app_client(engine, session, settings, key) as c:
        response = await _post(c, "lat,lon,date,category\n10.4,105.4,2024-01-01,other\n")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"


async def test_format_from_content_type_or_parameter(client: httpx.AsyncClient) -> None:
    body = "lat,lon,date,category\n10.4,105.4,2024-01-01,other\n"
    refused = await _post(client, body, "text/plain")
    assert refused.status_code == 415
    assert refused.headers["content-type"] == "application/problem+json"
    assert "format=csv" in refused.json()["detail"]
    accepted = await _post(client, body, "text/plain", format="csv")
    assert accepted.status_code == 200 and accepted.json()["inserted"] == 1
    assert (await _post(client, body, "text/csv; charset=utf-8")).status_code == 200
    bad_mode = await _post(client, body, mode="sometimes")
    assert bad_mode.status_code == 422


@pytest.fixture
async def small_limit_client(
    engine: AsyncEngine, session: AsyncSession
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(environment="test", max_import_bytes=1024)
    async with app_client(engine, session, settings, await make_key(session, "admin")) as c:
        yield c


async def test_upload_over_the_limit_is_413(
    small_limit_client: httpx.AsyncClient, session: AsyncSession
) -> None:
    row = "10.4,105.4,2024-01-01,other\n"
    body = "lat,lon,date,category\n" + row * 60  # ~1.7 kB
    before = await _count(session)
    declared = await _post(small_limit_client, body)
    assert declared.status_code == 413
    assert declared.headers["content-type"] == "application/problem+json"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while streaming
        for i in range(0, len(body), 256):
            yield body[i : i + 256].encode()

    streamed = await small_limit_client.post(
        "/incidents/import", content=chunks(), headers={"content-type": "text/csv"}
    )
    assert streamed.status_code == 413
    assert "1024-byte" in streamed.json()["detail"]
    assert await _count(session) == before
    fits = await _post(small_limit_client, "lat,lon,date,category\n" + row * 10)
    assert fits.status_code == 200


# ---------------------------------------------------------------------------------------------
# The set-based derivation must agree with the trigger.


def _varied_points(
    coast: list[tuple[float, float]], joints: list[tuple[float, float]]
) -> Iterator[tuple[float, float]]:
    rng = random.Random(20261122)
    for _ in range(170):  # provinces, the neighbours, the sea
        yield rng.uniform(102.0, 110.0), rng.uniform(8.0, 23.5)
    for x, y in rng.sample(coast, 150):  # around the land borders, the coast, the river mouths
        yield x + rng.uniform(-0.12, 0.12), y + rng.uniform(-0.12, 0.12)
    for _ in range(20):  # far at sea
        yield rng.uniform(111.0, 116.0), rng.uniform(8.0, 18.0)
    # dense spots (the import's fine cells) around points where two border pieces meet, and
    # those points themselves: equally near both pieces, the lower piece id wins
    for x, y in rng.sample(joints, 6):
        for _ in range(25):
            yield x + rng.uniform(-0.05, 0.05), y + rng.uniform(-0.05, 0.05)
    yield from rng.sample(joints, 20)


async def test_bulk_derivation_matches_the_trigger(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    coast = [
        (float(x), float(y))
        for x, y in (
            await session.execute(
                text(
                    "SELECT ST_X(d.geom), ST_Y(d.geom) FROM jurisdiction j, ST_DumpPoints(j.geom) d"
                    " WHERE j.level = 'country' AND j.code = 'VNM'"
                )
            )
        ).all()
    ]
    joints = [
        (float(x), float(y))
        for x, y in (
            await session.execute(
                text(
                    "SELECT ST_X(ST_StartPoint(geom)), ST_Y(ST_StartPoint(geom))"
                    " FROM border_segment_piece ORDER BY id"
                )
            )
        ).all()
    ]
    points = list(_varied_points(coast, joints))
    days = [date(2001, 1, 1), date(2024, 5, 1), date(2025, 12, 31)]
    at = [datetime.combine(days[i % 3], datetime.min.time(), UTC) for i in range(len(points))]
    # the trigger path: plain INSERTs
    await session.execute(
        text(
            "INSERT INTO incident (category, severity, occurred_at, geom, source, source_id)"
            " SELECT 'other', 1, a, ST_SetSRID(ST_MakePoint(x, y), 4326), 'trigger-path', i::text"
            " FROM unnest(CAST(:x AS float8[]), CAST(:y AS float8[]), CAST(:a AS timestamptz[]))"
            " WITH ORDINALITY AS u(x, y, a, i)"
        ),
        {"x": [p[0] for p in points], "y": [p[1] for p in points], "a": at},
    )
    # the bulk path: the same points through the import
    body = _csv(
        [["source_id", "lon", "lat", "occurred_at", "category", "severity"]]
        + [
            [i + 1, repr(x), repr(y), at[i].isoformat(), "other", 1]
            for i, (x, y) in enumerate(points)
        ]
    )
    response = await _post(client, body, source="bulk-path")
    assert response.status_code == 200, response.text
    assert response.json()["inserted"] == len(points)
    columns = [c.strip() for c in DERIVED.split(",")]
    rows = (
        await session.execute(
            text(
                "SELECT t.source_id, "
                + ", ".join([f"t.{c}" for c in columns] + [f"b.{c}" for c in columns])
                + " FROM incident t JOIN incident b ON b.source = 'bulk-path'"
                " AND b.source_id = t.source_id WHERE t.source = 'trigger-path'"
            )
        )
    ).all()
    assert len(rows) == len(points)
    n = len(columns)
    pairs = [(r[0], tuple(r[1 : 1 + n]), tuple(r[1 + n :])) for r in rows]
    for sid, expected, got in pairs:
        assert got == expected, (sid, points[int(sid) - 1])
    # the rule itself, by brute force: every border piece and every post measured on the
    # spheroid, the nearest taken (lowest id on a tie); the trigger and the import share the
    # candidate search (migrations/sql/incident_derive_v6.sql), this does not
    brute = {
        str(r[0]): tuple(r[1:])
        for r in (
            await session.execute(
                text(
                    "SELECT t.source_id,"
                    " (SELECT s.code FROM border_segment_piece p"
                    "   JOIN border_segment s ON s.id = p.segment_id"
                    "  ORDER BY ST_Distance(p.geom::geography, t.geom::geography), p.id LIMIT 1),"
                    " (SELECT min(ST_Distance(p.geom::geography, t.geom::geography)) / 1000.0"
                    "    FROM border_segment_piece p),"
                    " (SELECT p.id FROM border_post p"
                    "  ORDER BY ST_Distance(p.geom::geography, t.geom::geography), p.id LIMIT 1),"
                    " (SELECT min(ST_Distance(p.geom::geography, t.geom::geography)) / 1000.0"
                    "    FROM border_post p)"
                    " FROM incident t WHERE t.source = 'trigger-path'"
                )
            )
        ).all()
    }
    border_and_post = columns.index("border_segment")
    method = columns.index("jurisdiction_method")
    for sid, expected, _ in pairs:
        assert expected[border_and_post:] == brute[sid], (sid, points[int(sid) - 1])
    # the sample covers every case
    methods = [t[method] for _, t, _ in pairs]
    countries = {t[0] for _, t, _ in pairs}
    assert methods.count("contains") > 150 and methods.count("nearest") >= 10
    assert methods.count(None) >= 20
    assert {"VNM", "LAO", "KHM", "CHN"} <= countries
    assert len({t[1] for _, t, _ in pairs}) > 30  # provinces


# ---------------------------------------------------------------------------------------------
# One set of rules: a CSV row is refused exactly when POST /incidents refuses the same values.

RULE_CASES = [
    # (column, value in the CSV, the same in the API body)
    ("severity", "1", 1), ("severity", "5", 5), ("severity", "0", 0), ("severity", "6", 6),
    ("location_precision_m", "0", 0), ("location_precision_m", "100000", 100000),
    ("location_precision_m", "-1", -1), ("location_precision_m", "100000.5", 100000.5),
    ("lat", "90", 90), ("lat", "-90", -90), ("lat", "90.0001", 90.0001),
    ("lon", "180", 180), ("lon", "-180.5", -180.5),
    ("unit", "u" * 200, "u" * 200), ("unit", "u" * 201, "u" * 201),
    ("description", "d" * 10_000, "d" * 10_000), ("description", "d" * 10_001, "d" * 10_001),
    ("source", "s" * 64, "s" * 64), ("source", "s" * 65, "s" * 65),
    ("source_id", "i" * 128, "i" * 128), ("source_id", "i" * 129, "i" * 129),
    ("status", "solved", "solved"), ("status", "finished", "finished"),
    ("occurred_at", "1900-01-01T00:00:00+00:00", "1900-01-01T00:00:00+00:00"),
    ("occurred_at", "1899-12-31T23:59:59+00:00", "1899-12-31T23:59:59+00:00"),
]  # fmt: skip


async def test_csv_rows_follow_the_api_rules(client: httpx.AsyncClient) -> None:
    from pydantic import ValidationError

    from app.incidents.schemas import parse_incident

    base = {"lat": "10.4", "lon": "105.4", "occurred_at": "2024-01-01T00:00:00+00:00",
            "category": "other", "severity": "3"}  # fmt: skip
    api_base = {"lat": 10.4, "lon": 105.4, "occurred_at": "2024-01-01T00:00:00+00:00",
                "category": "other", "severity": 3}  # fmt: skip
    columns = ["lat", "lon", "occurred_at", "category", "severity", "status", "unit",
               "description", "location_precision_m", "source", "source_id"]  # fmt: skip
    rows = [columns]
    api_valid = []
    for column, csv_value, api_value in RULE_CASES:
        cells = {**base, column: csv_value}
        rows.append([cells.get(c, "") for c in columns])
        fields = {**api_base, column: api_value}
        body = {k: v for k, v in fields.items() if k not in ("lat", "lon")}
        body["location"] = {"type": "Point", "coordinates": [fields["lon"], fields["lat"]]}
        try:
            parse_incident(body)
            api_valid.append(True)
        except ValidationError:
            api_valid.append(False)
    report = (await _post(client, _csv(rows), mode="skip_invalid")).json()
    bad_rows = {e["row"] for e in report["errors"]}
    csv_valid = [n + 2 not in bad_rows for n in range(len(RULE_CASES))]
    assert csv_valid == api_valid, [
        (case[0], case[1][:12], c, a)
        for case, c, a in zip(RULE_CASES, csv_valid, api_valid, strict=True)
        if c != a
    ]
    assert api_valid.count(False) == 12  # the sample holds both sides of every limit


# ---------------------------------------------------------------------------------------------
# Imports run under their own statement timeout, not the requests' one.


async def test_imports_have_their_own_statement_timeout(
    engine: AsyncEngine, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.incidents.imports import run

    seen: list[str] = []
    original = write.upsert  # the function run.py calls as `upsert`, replaced there below

    async def slow_upsert(session: AsyncSession, **kw: Any) -> Any:
        seen.append(str((await session.execute(text("SHOW statement_timeout"))).scalar_one()))
        await session.execute(text("SELECT pg_sleep(0.5)"))
        return await original(session, **kw)

    monkeypatch.setattr(run, "upsert", slow_upsert)
    body = "lat,lon,date,category\n10.4,105.4,2024-01-01,other\n"
    # requests time out after 100 ms; the import's own limit (4 321 ms) applies inside it
    await session.execute(text("SET LOCAL statement_timeout = 100"))
    patient = Settings(environment="test", import_statement_timeout_ms=4321)
    async with app_client(engine, session, patient, await make_key(session)) as c:
        r = await _post(c, body, source="patient")
    assert r.status_code == 200, r.text
    assert seen == ["4321ms"]
    # and that limit does hold: a statement longer than it ends the import with a 503
    hasty = Settings(environment="test", import_statement_timeout_ms=1000)
    monkeypatch.setattr(run, "upsert", _sleeper(1.5))
    async with app_client(engine, session, hasty, await make_key(session)) as c:
        r = await _post(c, body, source="hasty")
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"


def _sleeper(seconds: float) -> Any:
    async def sleepy(session: AsyncSession, **kw: Any) -> Any:
        await session.execute(text(f"SELECT pg_sleep({seconds})"))
        raise AssertionError("not reached: the statement timeout cancels the sleep")

    return sleepy


# ---------------------------------------------------------------------------------------------
# First load: the secondary indexes and foreign keys built after the load


async def _incident_schema(session: AsyncSession) -> tuple[list[str], list[str]]:
    indexes = await session.execute(
        text("SELECT indexdef FROM pg_indexes WHERE tablename = 'incident' ORDER BY indexname")
    )
    keys = await session.execute(
        text(
            "SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'incident'::regclass ORDER BY conname"
        )
    )
    return list(indexes.scalars()), list(keys.scalars())


async def test_first_load_builds_the_indexes_after(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    before = await _incident_schema(session)
    held = await _count(session)
    rows = [["lat", "lon", "date", "category", "source_id"]] + [
        [10.3 + i / 100, 105.3 + i / 100, "2024-01-01", "other", f"f{i}"] for i in range(held + 3)
    ]
    r = await _post(client, _csv(rows), source="first", first_load="true")
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == held + 3
    assert await _incident_schema(session) == before
    stored = await _by_source_id(session, "first")
    for row in stored.values():
        assert _derived(row) == await _trigger_derived(session, row.lon, row.lat, row.occurred_at)
    # the table now holds more rows than a small file brings: refused, nothing written
    r = await _post(client, _csv(rows[:3]), source="second", first_load="true")
    assert r.status_code == 422, r.text
    assert "first_load" in r.json()["detail"]
    assert await _count(session, "second") == 0
    assert await _incident_schema(session) == before


# ---------------------------------------------------------------------------------------------
# CLI (commits: runs on a database of its own)


async def test_cli_import(cli_database: str, server_url: str, tmp_path: Path) -> None:
    from app.cli import app

    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result.output

    good = tmp_path / "incidents.csv"
    good.write_text(
        _csv([["lat", "lon", "date", "category", "source_id"],
              [10.386, 105.435, "2024-05-01", "Buôn lậu", "a"],
              [21.028, 105.854, "2024-05-02", "fraud", "b"]]),
        encoding="utf-8",
    )  # fmt: skip
    bad = tmp_path / "bad.txt"
    bad.write_text(
        _csv([["lat", "lon", "date", "category"], [10.4, 105.4, "2024-01-01", "other"],
              ["x", 105.4, "2024-01-01", "[bold]other"]]),
        encoding="utf-8",
    )  # fmt: skip
    try:
        await asyncio.to_thread(run, "migrate")
        await asyncio.to_thread(run, "geodata", "load")
        out = await asyncio.to_thread(run, "import", "--first-load", str(good))
        assert "rows: 2, inserted: 2, updated: 0, unchanged: 0, skipped: 0" in out
        out = await asyncio.to_thread(run, "import", str(good))
        assert "inserted: 0, updated: 0, unchanged: 2" in out
        out = await asyncio.to_thread(run, "import", str(bad), code=2)
        assert "--format" in out
        out = await asyncio.to_thread(run, "import", "--format", "csv", str(bad), code=1)
        assert "rejected" in out and "row 3 lat: 'x' is not a number" in out
        assert "[bold]other" in out  # file text is printed, not interpreted as markup
        out = await asyncio.to_thread(
            run, "import", "--format", "csv", "--mode", "skip_invalid", "--source", "s", str(bad)
        )
        assert "rows: 2, inserted: 1, updated: 0, unchanged: 0, skipped: 1" in out
    finally:
        await drop_database(server_url, cli_database)


# ---------------------------------------------------------------------------------------------
# Throughput (opt-in: BORDERWATCH_BENCH=1; prints rows/s for each path)


# ---------------------------------------------------------------------------------------------
# Wide headers: a cap on the columns, one pass over the header, no transaction while parsing


def _wide_csv(columns: int, *, rows: int = 1) -> str:
    extra = [f"c{i}" for i in range(columns - 4)]
    header = ",".join(["lat", "lon", "date", "category", *extra])
    row = ",".join(["10.4", "105.4", "2024-01-01", "other", *([""] * len(extra))])
    return header + "\n" + (row + "\n") * rows


async def test_more_columns_than_the_cap_is_422_naming_it(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    before = await _count(session)
    r = await _post(client, _wide_csv(imports.MAX_CSV_COLUMNS + 1))
    assert r.status_code == 422
    problem = r.json()
    assert problem["limit"] == imports.MAX_CSV_COLUMNS
    assert f"at most {imports.MAX_CSV_COLUMNS}" in problem["detail"]
    assert f"{imports.MAX_CSV_COLUMNS + 1} columns" in problem["detail"]
    assert problem["errors"][0]["row"] == 1
    long_line = "lat,lon,date,category," + "x" * imports.MAX_HEADER_CHARS + "\n"
    r = await _post(client, long_line)
    assert r.status_code == 422 and str(imports.MAX_HEADER_CHARS) in r.json()["detail"]
    assert await _count(session) == before


async def test_a_header_at_the_cap_is_imported(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    before = await _count(session)
    r = await _post(client, _wide_csv(imports.MAX_CSV_COLUMNS, rows=2), source="wide")
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 2
    assert len(r.json()["ignored_columns"]) == imports.MAX_CSV_COLUMNS - 4
    assert await _count(session) == before + 2


def test_a_header_at_the_cap_is_read_with_every_column_found(tmp_path: Path) -> None:
    # how the time grows with the width is measured in bench/bench_bodies.py, not asserted here
    wide = tmp_path / "wide.csv"
    wide.write_text(_wide_csv(imports.MAX_CSV_COLUMNS))
    reader = CsvFile(wide)
    reader.open()
    assert reader.header is not None and reader.header.width == imports.MAX_CSV_COLUMNS
    assert reader.header.idx["category"] == 3
    # a doubled column at the far end is still found
    doubled = tmp_path / "doubled.csv"
    doubled.write_text(_wide_csv(imports.MAX_CSV_COLUMNS - 1).replace("\n", ",C5\n", 1))
    with pytest.raises(InvalidInput, match="'c5' appears more than once"):
        CsvFile(doubled).open()


@dataclass
class ParseSpy:
    """Whether `session` was inside a transaction each time an import parsed its file."""

    session: AsyncSession | None = None
    seen: list[bool] = field(default_factory=list)


@pytest.fixture
def parse_spy(monkeypatch: pytest.MonkeyPatch) -> ParseSpy:
    watch = ParseSpy()
    for cls in (CsvFile, GeoJsonFile):

        def spy(self: Any, _open: Any = cls.open) -> None:
            assert watch.session is not None
            watch.seen.append(watch.session.in_transaction())
            _open(self)

        monkeypatch.setattr(cls, "open", spy)
    return watch


async def test_no_transaction_is_open_while_the_file_is_parsed(
    engine: AsyncEngine, tmp_path: Path, parse_spy: ParseSpy
) -> None:
    from app.db import sessionmaker

    rejected = tmp_path / "rejected.csv"  # a valid header, an invalid row: nothing is written
    rejected.write_text("lat,lon,date,category\n10.4,105.4,2024-01-01,other\n95,105,x,other\n")
    too_wide = tmp_path / "wide.csv"
    too_wide.write_text(_wide_csv(imports.MAX_CSV_COLUMNS + 1))
    collection = tmp_path / "fc.geojson"
    collection.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature"}]}')
    async with sessionmaker(engine)() as session:
        parse_spy.session = session
        cases: list[tuple[Path, Format]] = [
            (rejected, "csv"),
            (too_wide, "csv"),
            (collection, "geojson"),
        ]
        for path, fmt in cases:
            with pytest.raises(InvalidInput):
                await imports.import_file(
                    session=session,
                    path=path,
                    fmt=fmt,
                    actor="test",
                    statement_timeout_ms=Settings().import_statement_timeout_ms,
                )
            assert not session.in_transaction()
    assert parse_spy.seen == [False, False, False]


async def test_the_import_route_ends_the_key_lookup_s_transaction_before_parsing(
    client: httpx.AsyncClient, session: AsyncSession, parse_spy: ParseSpy
) -> None:
    parse_spy.session = session
    # the second request within a minute writes no "last used": the key lookup's transaction
    # is still open when the route begins
    for source in ("first", "second"):
        r = await _post(
            client, "lat,lon,date,category\n10.4,105.4,2024-01-01,other\n", source=source
        )
        assert r.status_code == 200, r.text
    assert parse_spy.seen == [False, False]
