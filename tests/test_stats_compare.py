"""GET /analysis/stats?compare=…: counts planted in two periods checked against independent
counts in SQL (literal bounds written here by hand), the p-value against scipy.stats.binomtest
on the same numbers, the scope in both periods, bad input, and 29 February."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from scipy.stats import binomtest  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.analysis import snapshot, stats
from app.auth.scope import NATIONAL
from app.config import Settings
from app.incidents.filters import IncidentFilter, parse_datetime
from conftest import app_client, make_key

PROBLEM = "application/problem+json"
DAY = 86_400.0

# Q2 2024 in Vietnamese time; its previous period (91 days) is exactly Q1 2024, its same
# period last year Q2 2023 (91 days too)
Q2 = "2024-04-01T00:00:00+07:00/2024-06-30T23:59:59.999999+07:00"
# half-open bounds of each period, written independently of the service's arithmetic
HALF_OPEN = {
    "period": ("2024-04-01 00:00+07", "2024-07-01 00:00+07"),
    "previous_period": ("2024-01-01 00:00+07", "2024-04-01 00:00+07"),
    "same_period_last_year": ("2023-04-01 00:00+07", "2023-07-01 00:00+07"),
}

# places well inside one province (An Giang: VN-44 then, VN-P91 now; Hà Nội), far from others
AN_GIANG = (105.44, 10.39)
HA_NOI = (105.85, 21.03)

# (place, category, status, how many, first local day, step in hours)
PLANTED = [
    (AN_GIANG, "smuggling", "solved", 40, "2024-04-01", 50),  # Q2 2024
    (AN_GIANG, "smuggling", "reported", 15, "2024-01-01", 120),  # Q1 2024
    (AN_GIANG, "smuggling", "closed", 12, "2023-04-02", 150),  # Q2 2023
    (AN_GIANG, "fraud", "reported", 9, "2024-04-05", 200),
    (AN_GIANG, "fraud", "verified", 11, "2024-01-03", 180),
    (AN_GIANG, "gambling", "reported", 6, "2024-01-10", 300),  # only in Q1 2024
    (HA_NOI, "fraud", "solved", 25, "2024-04-02", 80),
    (HA_NOI, "fraud", "reported", 20, "2024-01-02", 100),
    (HA_NOI, "robbery_theft", "closed", 7, "2023-05-01", 90),
    # just outside each period: the day before Q1 and the first instant of Q3 (Viet Nam)
    (HA_NOI, "fraud", "reported", 1, "2023-12-31", 1),
    (HA_NOI, "fraud", "reported", 1, "2024-07-01", 1),
]


async def _plant(session: AsyncSession) -> None:
    for (lon, lat), category, status, n, first, step in PLANTED:
        await session.execute(
            text(
                "INSERT INTO incident (category, severity, status, occurred_at, geom)"
                " SELECT :category, 3, :status,"
                " CAST(CAST(:first AS text) AS timestamp) AT TIME ZONE 'Asia/Ho_Chi_Minh'"
                " + (k * :step) * interval '1 hour',"
                " ST_SetSRID(ST_MakePoint(CAST(:lon AS float8) + k * 0.0001,"
                " CAST(:lat AS float8)), 4326)"
                " FROM generate_series(0, :n - 1) k"
            ),
            {
                "category": category,
                "status": status,
                "first": first,
                "step": step,
                "lon": lon,
                "lat": lat,
                "n": n,
            },
        )


async def _sql_counts(
    session: AsyncSession, key: str, bounds: tuple[str, str], where: str = "TRUE"
) -> dict[Any, tuple[int, int]]:
    rows = await session.execute(
        text(
            f"SELECT {key}, count(*), count(*) FILTER (WHERE status IN ('solved', 'closed'))"
            " FROM incident WHERE deleted_at IS NULL"
            " AND occurred_at >= CAST(CAST(:a AS text) AS timestamptz)"
            " AND occurred_at < CAST(CAST(:b AS text) AS timestamptz)"
            f" AND {where} GROUP BY 1"
        ),
        {"a": bounds[0], "b": bounds[1]},
    )
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


async def _get(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get("/analysis/stats", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _scipy_p(n: int, n_prev: int, t: float, t_prev: float) -> float:
    if n + n_prev == 0:
        return 1.0
    return float(binomtest(n, n + n_prev, t / (t + t_prev)).pvalue)


def _check_group(g: dict[str, Any], now: tuple[int, int], before: tuple[int, int]) -> None:
    n, s = now
    n_prev, s_prev = before
    assert (g["count"], g["solved"]) == (n, s), g
    assert (g["previous_count"], g["previous_solved"]) == (n_prev, s_prev), g
    assert g["change"] == n - n_prev
    if n_prev:
        assert g["change_pct"] == pytest.approx(100 * (n - n_prev) / n_prev)
    else:
        assert g["change_pct"] is None
    # both periods 91 days long and in the past
    expected = _scipy_p(n, n_prev, 91 * DAY, 91 * DAY)
    assert g["p_value"] == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert g["significant"] == (expected < 0.05)


KEYS = {
    "category": "category",
    "status": "status",
    "border_segment": "border_segment",
    "jurisdiction": "province_code",
}


@pytest.mark.parametrize("compare", ["previous_period", "same_period_last_year"])
@pytest.mark.parametrize("group_by", list(KEYS))
async def test_counts_match_sql(
    client: httpx.AsyncClient, session: AsyncSession, compare: str, group_by: str
) -> None:
    await _plant(session)
    body = await _get(client, group_by=group_by, datetime=Q2, compare=compare)
    now = await _sql_counts(session, KEYS[group_by], HALF_OPEN["period"])
    before = await _sql_counts(session, KEYS[group_by], HALF_OPEN[compare])
    assert {g["key"] for g in body["groups"]} == set(now) | set(before)
    for g in body["groups"]:
        _check_group(g, now.get(g["key"], (0, 0)), before.get(g["key"], (0, 0)))
    total = (sum(n for n, _ in now.values()), sum(s for _, s in now.values()))
    total_prev = (sum(n for n, _ in before.values()), sum(s for _, s in before.values()))
    assert total[0] > 0 and total_prev[0] > 0
    _check_group(
        {**body, "count": body["total"], "previous_count": body["previous_total"]},
        total,
        total_prev,
    )
    assert body["compare"] == compare
    assert body["period"] == {
        "start": "2024-04-01T00:00:00+07:00",
        "end": "2024-06-30T23:59:59.999999+07:00",
        "days": 91.0,
        "elapsed_days": 91.0,
    }
    start = HALF_OPEN[compare][0]
    assert body["comparison_period"]["start"] == start.replace(" ", "T").replace("+07", ":00+07:00")
    assert body["comparison_period"]["days"] == 91.0
    assert body["compare_label"]["vi"] and body["test"]["alpha"] == 0.05
    if group_by == "jurisdiction":
        names = {g["name_local"] for g in body["groups"]}
        assert {"Hà Nội", "An Giang"} <= names


async def test_planted_figures_by_hand(client: httpx.AsyncClient, session: AsyncSession) -> None:
    """The planted numbers themselves (not only SQL's): An Giang smuggling 40 against 15."""
    await _plant(session)
    body = await _get(client, group_by="category", datetime=Q2, compare="previous_period")
    by = {g["key"]: g for g in body["groups"]}
    assert (by["smuggling"]["count"], by["smuggling"]["previous_count"]) == (40, 15)
    assert by["smuggling"]["change"] == 25
    assert by["smuggling"]["change_pct"] == pytest.approx(166.66666666666666)
    assert by["smuggling"]["significant"] is True  # 40 vs 15: p ≈ 0.0011
    assert (by["gambling"]["count"], by["gambling"]["previous_count"]) == (0, 6)
    assert by["gambling"]["change_pct"] == -100.0
    assert (by["fraud"]["count"], by["fraud"]["previous_count"]) == (34, 31)
    assert by["fraud"]["significant"] is False
    assert body["total"] == 74 and body["previous_total"] == 52
    last_year = await _get(
        client, group_by="category", datetime=Q2, compare="same_period_last_year"
    )
    by = {g["key"]: g for g in last_year["groups"]}
    assert (by["fraud"]["count"], by["fraud"]["previous_count"]) == (34, 0)
    assert by["fraud"]["change_pct"] is None  # no base
    assert (by["robbery_theft"]["count"], by["robbery_theft"]["previous_count"]) == (0, 7)


async def test_month_groups(client: httpx.AsyncClient, session: AsyncSession) -> None:
    await _plant(session)
    body = await _get(client, group_by="month", datetime=Q2, compare="previous_period")
    month = "to_char(occurred_at AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM')"
    now = await _sql_counts(session, month, HALF_OPEN["period"])
    before = await _sql_counts(session, month, HALF_OPEN["previous_period"])
    pairs = [(g["key"], g["previous_key"]) for g in body["groups"]]
    assert pairs == [("2024-04", "2024-01"), ("2024-05", "2024-02"), ("2024-06", "2024-03")]
    for g in body["groups"]:
        _check_group(g, now.get(g["key"], (0, 0)), before.get(g["previous_key"], (0, 0)))
    yearly = await _get(client, group_by="month", datetime=Q2, compare="same_period_last_year")
    assert [g["previous_key"] for g in yearly["groups"]] == ["2023-04", "2023-05", "2023-06"]


async def test_area_filter_and_era_groups(client: httpx.AsyncClient, session: AsyncSession) -> None:
    """jurisdiction= narrows both periods; at= groups both by the units of that day."""
    await _plant(session)
    body = await _get(
        client, group_by="category", datetime=Q2, compare="previous_period", jurisdiction="VN-44"
    )
    where = "jurisdiction_path @> ARRAY['VN-44']::varchar[]"
    now = await _sql_counts(session, "category", HALF_OPEN["period"], where)
    before = await _sql_counts(session, "category", HALF_OPEN["previous_period"], where)
    assert {g["key"]: (g["count"], g["previous_count"]) for g in body["groups"]} == {
        k: (now.get(k, (0, 0))[0], before.get(k, (0, 0))[0]) for k in set(now) | set(before)
    }
    assert (body["total"], body["previous_total"]) == (49, 32)
    era = await _get(
        client, group_by="jurisdiction", at="2024-06-01", datetime=Q2, compare="previous_period"
    )
    assert {g["key"]: (g["count"], g["previous_count"]) for g in era["groups"]} == {
        "VN-44": (49, 32),
        "VN-HN": (25, 20),
    }


async def test_snapshot_answers_like_sql(session: AsyncSession) -> None:
    """The in-memory path (both periods from one snapshot) gives the body SQL gives."""
    await _plant(session)
    snap = await snapshot.build(session=session, filt=IncidentFilter(scope=NATIONAL))
    assert snap is not None
    start, end = parse_datetime(Q2)
    filt = IncidentFilter(scope=NATIONAL, start=start, end=end)
    assert snapshot.answerable(filt)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    for compare in ("previous_period", "same_period_last_year"):
        for group_by in ("category", "status", "month"):
            args: dict[str, Any] = {"compare": compare, "group_by": group_by, "now": moment}
            direct = await stats.compare_counts(session=session, filt=filt, **args)
            kept = await stats.compare_counts(session=session, filt=filt, snap=snap, **args)
            assert kept == direct, (compare, group_by)
            assert direct["total"] > 0


async def test_scope_holds_in_both_periods(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    await _plant(session)
    key = await make_key(session, "viewer", "VN-44")
    async with app_client(engine, session, settings, key) as viewer:
        for compare in ("previous_period", "same_period_last_year"):
            body = await _get(viewer, group_by="category", datetime=Q2, compare=compare)
            assert body["scope"] == "VN-44"
            where = "jurisdiction_path @> ARRAY['VN-44']::varchar[]"
            now = await _sql_counts(session, "category", HALF_OPEN["period"], where)
            before = await _sql_counts(session, "category", HALF_OPEN[compare], where)
            assert body["total"] == sum(n for n, _ in now.values())
            assert body["previous_total"] == sum(n for n, _ in before.values())
            for g in body["groups"]:
                _check_group(g, now.get(g["key"], (0, 0)), before.get(g["key"], (0, 0)))
            # Hà Nội's fraud and robbery stay invisible in either period
            assert "robbery_theft" not in {g["key"] for g in body["groups"]}
            hanoi = await _get(
                viewer, group_by="category", datetime=Q2, compare=compare, jurisdiction="VN-HN"
            )
            assert (hanoi["total"], hanoi["previous_total"], hanoi["groups"]) == (0, 0, [])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_by": "category", "datetime": Q2, "compare": "last_week"}, "compare"),
        ({"group_by": "category", "compare": "previous_period"}, "datetime"),
        (
            {
                "group_by": "category",
                "compare": "previous_period",
                "datetime": "2024-04-01T00:00:00+07:00/..",
            },
            "datetime",
        ),
        (
            {
                "group_by": "category",
                "compare": "same_period_last_year",
                "datetime": "../2024-06-30T23:59:59+07:00",
            },
            "datetime",
        ),
        (
            {
                "group_by": "category",
                "compare": "same_period_last_year",
                "datetime": "0001-03-01T00:00:00Z/0001-04-01T00:00:00Z",
            },
            "datetime",
        ),
    ],
)
async def test_bad_inputs(client: httpx.AsyncClient, params: dict[str, str], field: str) -> None:
    r = await client.get("/analysis/stats", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == 422 and field in r.text


def _period(text_: str) -> stats.Period:
    start, end = parse_datetime(text_)
    assert start is not None and end is not None
    return stats.Period(start, end)


def test_leap_day_periods() -> None:
    def shifted(text_: str) -> tuple[str, str, float]:
        p = stats.comparison_period(_period(text_), "same_period_last_year")
        j = p.as_json(datetime(2030, 1, 1, tzinfo=UTC))
        return j["start"], j["end"], j["days"]

    end = "T23:59:59.999999+07:00"
    # February 2025 compares with the whole of February 2024 (29 days) …
    assert shifted(f"2025-02-01T00:00:00+07:00/2025-02-28{end}") == (
        "2024-02-01T00:00:00+07:00",
        f"2024-02-29{end}",
        29.0,
    )
    # … February 2024 with February 2023 (28 days), 29 February alone with 28 February
    assert shifted(f"2024-02-01T00:00:00+07:00/2024-02-29{end}") == (
        "2023-02-01T00:00:00+07:00",
        f"2023-02-28{end}",
        28.0,
    )
    assert shifted(f"2024-02-29T00:00:00+07:00/2024-02-29{end}") == (
        "2023-02-28T00:00:00+07:00",
        f"2023-02-28{end}",
        1.0,
    )
    # a year from 1 March is a year from 1 March; bounds given in UTC move in Vietnam's calendar
    assert shifted("2024-02-29T17:00:00Z/2025-02-28T16:59:59.999999Z") == (
        "2023-03-01T00:00:00+07:00",
        f"2024-02-29{end}",
        366.0,
    )
    previous = stats.comparison_period(
        _period(f"2024-02-01T00:00:00+07:00/2024-02-29{end}"), "previous_period"
    )
    assert (previous.start.isoformat(), previous.end.isoformat()) == (
        "2024-01-03T00:00:00+07:00",
        f"2024-01-31{end}",
    )


async def test_leap_day_counts(client: httpx.AsyncClient, session: AsyncSession) -> None:
    """Incidents on 29 February 2024 count for February 2024 when February 2025 is compared
    with it; the test weighs 28 days against 29."""
    await session.execute(
        text(
            "INSERT INTO incident (category, severity, status, occurred_at, geom)"
            " SELECT 'fraud', 2, 'reported', timestamptz '2024-02-29 10:00+07' + k * interval"
            " '1 minute', ST_SetSRID(ST_MakePoint(105.44 + k * 0.0001, 10.39), 4326)"
            " FROM generate_series(0, 9) k"
            " UNION ALL SELECT 'fraud', 2, 'reported', timestamptz '2025-02-10 10:00+07' + k *"
            " interval '1 hour', ST_SetSRID(ST_MakePoint(105.44, 10.39 + k * 0.0001), 4326)"
            " FROM generate_series(0, 3) k"
        )
    )
    body = await _get(
        client,
        group_by="category",
        datetime="2025-02-01T00:00:00+07:00/2025-02-28T23:59:59.999999+07:00",
        compare="same_period_last_year",
    )
    (fraud,) = body["groups"]
    assert (fraud["count"], fraud["previous_count"]) == (4, 10)
    assert body["comparison_period"]["days"] == 29.0 and body["period"]["days"] == 28.0
    assert fraud["p_value"] == pytest.approx(_scipy_p(4, 10, 28 * DAY, 29 * DAY), rel=1e-9)


@pytest.mark.parametrize(
    ("n", "n_prev", "t", "t_prev"),
    [
        (0, 0, 1.0, 1.0),
        (0, 7, 1.0, 1.0),
        (40, 15, 91.0, 91.0),
        (4, 10, 28.0, 29.0),
        (12, 12, 90.0, 92.0),
        (500, 430, 365.0, 366.0),
        (101_000, 99_000, 1.0, 1.0),
        (3, 0, 1.0, 1e-6),
    ],
)
def test_p_value_matches_scipy(n: int, n_prev: int, t: float, t_prev: float) -> None:
    got = stats.poisson_p_value(n, n_prev, t, t_prev)
    assert got == pytest.approx(_scipy_p(n, n_prev, t, t_prev), rel=1e-9, abs=1e-300)


def test_p_value_of_a_period_not_begun() -> None:
    """A period wholly in the future has no elapsed time: no test (null), not a verdict."""
    assert stats.poisson_p_value(0, 5, 0.0, 91.0) is None
    future = _period("2999-01-01T00:00:00Z/2999-03-31T23:59:59Z")
    assert future.exposure(datetime(2026, 1, 1, tzinfo=UTC)) == 0.0


async def test_cooperation_area_in_both_periods(
    client: httpx.AsyncClient, engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    """cooperation=<id> narrows both periods, and so does a key bound to the area."""
    await _plant(session)
    r = await client.post(
        "/cooperation-areas",
        json={
            "name": "Thủ đô và vùng lân cận",
            "valid_from": "2020-01-01",
            "members": [{"kind": "jurisdiction", "code": "VN-HN"}],
        },
    )
    assert r.status_code == 201, r.text
    area = r.json()["id"]
    where = "jurisdiction_path @> ARRAY['VN-HN']::varchar[]"
    now = await _sql_counts(session, "category", HALF_OPEN["period"], where)
    before = await _sql_counts(session, "category", HALF_OPEN["previous_period"], where)
    assert (sum(n for n, _ in now.values()), sum(n for n, _ in before.values())) == (25, 20)
    filtered = await _get(
        client, group_by="category", datetime=Q2, compare="previous_period", cooperation=area
    )
    key = await make_key(session, "viewer", cooperation_area=area)
    async with app_client(engine, session, settings, key) as member:
        bound = await _get(member, group_by="category", datetime=Q2, compare="previous_period")
    assert bound["scope"] == f"cooperation:{area}"
    for body in (filtered, bound):
        assert (body["total"], body["previous_total"]) == (25, 20)
        for g in body["groups"]:
            _check_group(g, now.get(g["key"], (0, 0)), before.get(g["key"], (0, 0)))
