"""GET /reports/briefing and `borderwatch report briefing`: the PDF read back with poppler's
pdftotext (figures against independent SQL counts, Vietnamese names intact), a page drawn with
pdftoppm, the HTML variant, the CLI's file, scope and bad input."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import scipy.stats  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from test_fields import _local as bundled_unit
from test_fields import _vi
from typer.testing import CliRunner

from app import migrate
from app.auth import service as auth_service
from app.cli import app as cli_app
from app.config import Settings
from app.db import create_engine, sessionmaker
from app.geodata import load as geodata
from app.reports import briefing
from conftest import app_client, database_on, drop_database, make_key, needs
from geo_reference import units_of

PROBLEM = "application/problem+json"
VN = ZoneInfo("Asia/Ho_Chi_Minh")
POPPLER = shutil.which("pdftotext") is not None and shutil.which("pdftoppm") is not None
needs_poppler = needs(POPPLER, "poppler-utils (pdftotext, pdftoppm) not installed")

AN_GIANG = "VN-P91"  # today's An Giang (former An Giang + Kiên Giang)
LANG_SON = "VN-P20"
HCM = "VN-P79"

# (lon, lat, category, severity, status, occurred_at (local), description)
Q1 = [
    (105.435, 10.386, "smuggling", 5, "solved", "2025-01-05 10:00", "Buôn lậu đường sông"),
    (105.439, 10.388, "smuggling", 4, "closed", "2025-01-31 23:30", "Hàng lậu qua kênh Vĩnh Tế"),
    (105.443, 10.390, "smuggling", 2, "reported", "2025-02-10 10:00", None),
    (105.447, 10.392, "gambling", 3, "solved", "2025-02-11 10:00", None),
    (105.451, 10.394, "gambling", 4, "verified", "2025-03-01 00:00", "Đánh bạc ở Tịnh Biên"),
    (105.455, 10.396, "fraud", 1, "reported", "2025-03-20 10:00", None),
    (105.459, 10.398, "fraud", 3, "under_investigation", "2025-03-31 23:59", None),
    (105.090, 10.010, "drug_trafficking", 5, "reported", "2025-02-02 08:00", "Ma túy"),  # Rạch Giá
]
Q4_2024 = [  # the previous period: the 90 days before 2025-Q1 (3 October - 31 December 2024)
    (105.436, 10.387, "smuggling", 2, "solved", "2024-10-05 10:00", None),
    (105.440, 10.389, "fraud", 3, "reported", "2024-12-31 23:59", None),
]
OUTSIDE = [  # not in the period: 1 April 2025 00:00 local is Q2; 31 Dec 2024 is Q4
    (105.444, 10.391, "smuggling", 5, "reported", "2025-04-01 00:00", None),
]
ELSEWHERE = [  # the national total's other incidents
    (106.705, 21.960, "smuggling", 4, "reported", "2025-01-09 10:00", "Hàng lậu Lạng Sơn"),
    (106.690, 21.940, "counterfeit_goods", 2, "verified", "2025-02-09 10:00", None),
    (106.700, 10.780, "fraud", 5, "solved", "2025-03-09 10:00", "Lừa đảo tại Hồ Chí Minh"),
]
ALL = Q1 + Q4_2024 + OUTSIDE + ELSEWHERE


def _local(text_: str) -> str:
    return datetime.strptime(text_, "%Y-%m-%d %H:%M").replace(tzinfo=VN).isoformat()


async def _post(client: httpx.AsyncClient, row: tuple[Any, ...]) -> str:
    lon, lat, category, severity, status, at, description = row
    body: dict[str, Any] = {
        "category": category,
        "severity": severity,
        "status": status,
        "occurred_at": _local(at),
        "location": {"type": "Point", "coordinates": [lon, lat]},
        "unit": "Đồn Biên phòng Vĩnh Xương",
    }
    if description:
        body["description"] = description
    r = await client.post("/incidents", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _seed(client: httpx.AsyncClient) -> None:
    for row in ALL:
        await _post(client, row)
    gone = await _post(
        client, (105.441, 10.389, "smuggling", 5, "solved", "2025-01-06 00:00", None)
    )
    assert (await client.delete(f"/incidents/{gone}")).status_code == 204


COUNT_SQL = """
    SELECT count(*), count(*) FILTER (WHERE status IN ('solved', 'closed')),
           count(*) FILTER (WHERE severity >= 4)
      FROM incident
     WHERE deleted_at IS NULL
       AND (CAST(:code AS text) IS NULL OR CAST(:code AS text) = ANY(jurisdiction_path))
       AND occurred_at >= CAST(CAST(:start AS text) AS timestamptz) AND occurred_at < CAST(CAST(:end AS text) AS timestamptz)
"""


async def _counts(session: AsyncSession, code: str | None, start: str, end: str) -> tuple[int, ...]:
    row = (await session.execute(text(COUNT_SQL), {"code": code, "start": start, "end": end})).one()
    return tuple(int(v) for v in row)


def _pdftotext(pdf: bytes, tmp: Path, name: str = "b") -> str:
    path = tmp / f"{name}.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    return out.stdout.decode("utf-8")


async def _by_category(session: AsyncSession) -> dict[str, int]:
    """Q1 2025's incidents of An Giang by category's Vietnamese name (an independent GROUP BY)."""
    rows = await session.execute(
        text(
            "SELECT c.name_vi, count(*) FROM incident i JOIN category c ON c.code = i.category"
            " WHERE i.deleted_at IS NULL AND CAST(:code AS text) = ANY(i.jurisdiction_path)"
            "   AND i.occurred_at >= '2025-01-01T00:00:00+07:00'"
            "   AND i.occurred_at < '2025-04-01T00:00:00+07:00' GROUP BY 1"
        ),
        {"code": AN_GIANG},
    )
    return {str(name): int(n) for name, n in rows.all()}


def _pdftoppm(pdf: Path, prefix: Path) -> list[Path]:
    """The first page as PNG (40 dpi)."""
    subprocess.run(
        ["pdftoppm", "-r", "40", "-png", "-f", "1", "-l", "1", str(pdf), str(prefix)],
        check=True, timeout=60,
    )  # fmt: skip
    return sorted(prefix.parent.glob(f"{prefix.name}*.png"))


def _flat(s: str) -> str:
    return " ".join(s.split())


@needs_poppler
async def test_pdf_figures_against_sql(
    client: httpx.AsyncClient, session: AsyncSession, tmp_path: Path
) -> None:
    await _seed(client)
    q1 = ("2025-01-01T00:00:00+07:00", "2025-04-01T00:00:00+07:00")
    q4 = ("2024-10-03T00:00:00+07:00", "2025-01-01T00:00:00+07:00")  # Q1's 90 days before
    n, cleared, severe = await _counts(session, AN_GIANG, *q1)
    previous, _, _ = await _counts(session, AN_GIANG, *q4)
    national, _, _ = await _counts(session, None, *q1)
    assert (n, cleared, severe, previous, national) == (8, 3, 4, 2, 11)  # the fixture, by hand

    r = await client.get(
        "/reports/briefing", params={"area": f"jurisdiction:{AN_GIANG}", "datetime": "2025-Q1"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-language"] == "vi"
    assert r.content.startswith(b"%PDF-")
    assert "briefing-jurisdiction-VN-P91-20250101-20250331.pdf" in r.headers["content-disposition"]
    words = _flat(_pdftotext(r.content, tmp_path))
    # the headline, in vi-VN numbers
    assert "Tỉnh An Giang" in words
    assert "Kỳ báo cáo: 01/01/2025 – 31/03/2025" in words
    rate = f"{100 * cleared / n:.1f} %".replace(".", ",")  # 37,5 %
    share = f"{100 * n / national:.2f} %".replace(".", ",")  # 72,73 %
    change = n - previous
    pct = f"+{100 * change / previous:.1f} %".replace(".", ",")  # +300,0 %
    assert (
        f"{n} {rate} {share} +{change} Số vụ việc Tỷ lệ làm rõ Tỷ trọng so với cả nước {pct}"
        f" {cleared} vụ đã làm rõ hoặc đã đóng {national} trên tổng số cả nước So với kỳ trước"
        f" kỳ trước: {previous} (03/10/2024 – 31/12/2024)"
    ) in words
    # the change's exact Poisson test (equal lengths: binomial, p = 1/2), by scipy
    p = scipy.stats.binomtest(n, n + previous, 0.5).pvalue
    assert p > 0.05 and f"trong mức ngẫu nhiên (Poisson, p = {p:.3f})".replace(".", ",") in words
    # the severe list: every severe incident of the period, with its local time and place
    assert f"Mức độ 4–5: {severe} vụ việc trong kỳ." in words
    assert "05/01/2025 10:00" in words and "31/01/2025 23:30" in words
    assert "Hàng lậu qua kênh Vĩnh Tế" in words and "Đánh bạc ở Tịnh Biên" in words
    assert "Lừa đảo tại Hồ Chí Minh" not in words and "Hàng lậu Lạng Sơn" not in words
    assert "01/04/2025" not in words.split("Vụ việc nghiêm trọng")[-1]  # Q2 left out
    # the map's names (SVG text) and the neighbours, with their diacritics
    for name in ("Campuchia", "Tỉnh Đồng Tháp", "Thành phố Cần Thơ"):
        assert name in words, name
    # the category chart's names (its counts: test_html_variant; pdftotext interleaves them
    # with the month chart's beside it)
    for name in await _by_category(session):
        assert _flat(name) in words, name
    # one page as an image (looked at by hand while writing this test: see docs/reports.md)
    drawn = await asyncio.to_thread(_pdftoppm, tmp_path / "b.pdf", tmp_path / "page")
    assert len(drawn) == 1 and drawn[0].read_bytes().startswith(b"\x89PNG")


@needs_poppler
async def test_names_of_a_group_and_english(
    client: httpx.AsyncClient, session: AsyncSession, tmp_path: Path
) -> None:
    await _seed(client)
    area = f"jurisdiction:{LANG_SON},{HCM}"
    r = await client.get(
        "/reports/briefing", params={"area": area, "datetime": "2025-01-01/2025-03-31"}
    )
    assert r.status_code == 200, r.text
    words = _flat(_pdftotext(r.content, tmp_path))
    assert "Tỉnh Lạng Sơn, Thành phố Hồ Chí Minh" in words
    assert "Hàng lậu Lạng Sơn" in words and "Lừa đảo tại Hồ Chí Minh" in words
    n, _, _ = await _counts(session, LANG_SON, "2025-01-01T00:00+07", "2025-04-01T00:00+07")
    m, _, _ = await _counts(session, HCM, "2025-01-01T00:00+07", "2025-04-01T00:00+07")
    assert f"{n + m} Số vụ việc" in words
    en = await client.get(
        "/reports/briefing",
        params={"area": f"jurisdiction:{AN_GIANG}", "datetime": "2025-Q1", "lang": "en"},
    )
    assert en.status_code == 200 and en.headers["content-language"] == "en"
    english = _flat(_pdftotext(en.content, tmp_path, "en"))
    assert "Incidents" in english and "Period: 2025-01-01 – 2025-03-31" in english
    assert "Cambodia" in english


async def test_html_variant(
    client: httpx.AsyncClient, engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    await _seed(client)
    r = await client.get(
        "/reports/briefing",
        params={"area": f"jurisdiction:{AN_GIANG}", "datetime": "2025-Q1", "format": "html"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert page.startswith("<!DOCTYPE html>") and 'lang="vi"' in page
    assert "<h1>Tỉnh An Giang</h1>" in page
    assert page.count("<svg") == 3  # the map and two charts, inline: nothing to fetch
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # the month chart: the 12 months to March 2025, each with its count (SQL, local months)
    found = await session.execute(
        text(
            "SELECT to_char(occurred_at AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM'),"
            " count(*) FROM incident WHERE deleted_at IS NULL"
            " AND CAST(:code AS text) = ANY(jurisdiction_path) GROUP BY 1"
        ),
        {"code": AN_GIANG},
    )
    rows = {str(month): int(n) for month, n in found.all()}
    assert rows == {"2024-10": 1, "2024-12": 1, "2025-01": 2, "2025-02": 3, "2025-03": 3,
                    "2025-04": 1}  # fmt: skip
    # the counts above the bars (their y has a decimal; the month labels' has none)
    bars = re.findall(r'<text x="[\d.]+" y="\d+\.\d" text-anchor="middle">(\d+)</text>', page)
    months = ["2024-04", "2024-05", "2024-06", "2024-07", "2024-08", "2024-09", "2024-10",
              "2024-11", "2024-12", "2025-01", "2025-02", "2025-03"]  # fmt: skip
    assert [int(b) for b in bars] == [rows.get(m, 0) for m in months]
    # the category chart: each name, its bar, its count, busiest first (ties: by code)
    chart = re.findall(
        r'<text x="0" y="\d+">([^<]+)</text><rect [^>]+/><text [^>]+>(\d+)</text>', page
    )
    expected = await _by_category(session)
    assert {unescape(n): int(c) for n, c in chart} == expected
    assert [int(c) for _, c in chart] == sorted(expected.values(), reverse=True)
    # a viewer: aggregates only (no incident drawn or listed)
    key = await make_key(session, "viewer")
    async with app_client(engine, session, settings, key) as viewer:
        v = await viewer.get(
            "/reports/briefing",
            params={"area": f"jurisdiction:{AN_GIANG}", "datetime": "2025-Q1", "format": "html"},
        )
        assert v.status_code == 200, v.text
        assert "Khóa xem (viewer) chỉ thấy số liệu tổng hợp" in v.text
        assert "Hàng lậu qua kênh Vĩnh Tế" not in v.text and "stroke-linecap" not in v.text


async def test_scope(
    client: httpx.AsyncClient, engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    await _seed(client)
    params = {"area": f"jurisdiction:{AN_GIANG}", "datetime": "2025-Q1", "format": "html"}
    mine = await make_key(session, "analyst", AN_GIANG)
    async with app_client(engine, session, settings, mine) as scoped:
        r = await scoped.get("/reports/briefing", params=params)
        assert r.status_code == 200, r.text
        assert "chỉ khóa toàn quốc mới xem được số cả nước" in r.text  # no national total
        assert "trên tổng số cả nước" not in r.text
        assert f"Phạm vi khóa truy cập: {AN_GIANG}" in r.text
        # another province's briefing: refused, as a problem
        other = await scoped.get(
            "/reports/briefing", params=params | {"area": f"jurisdiction:{LANG_SON}"}
        )
        assert other.status_code == 403 and other.headers["content-type"] == PROBLEM
        assert "outside your scope" in other.json()["detail"]
    elsewhere = await make_key(session, "viewer", LANG_SON)
    async with app_client(engine, session, settings, elsewhere) as far:
        r = await far.get("/reports/briefing", params=params)
        assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    async with app_client(engine, session, settings, None) as anonymous:
        assert (await anonymous.get("/reports/briefing", params=params)).status_code == 401


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"datetime": "2025-Q1"}, None),  # area missing: FastAPI's 422
        ({"area": "province:VN-P91", "datetime": "2025-Q1"}, "area"),
        ({"area": "jurisdiction:VN-XX", "datetime": "2025-Q1"}, "area"),
        ({"area": "jurisdiction:VNM", "datetime": "2025-Q1"}, "area"),
        ({"area": "cooperation:999999", "datetime": "2025-Q1"}, "area"),
        ({"area": "cooperation:abc", "datetime": "2025-Q1"}, "area"),
        ({"area": "border-segment:VNM-XXX", "datetime": "2025-Q1"}, "area"),
        ({"area": "border-segment:VNM-LAO:0", "datetime": "2025-Q1"}, "area"),
        ({"area": "jurisdiction:VN-P91", "datetime": "2025-01-01/.."}, "datetime"),
        ({"area": "jurisdiction:VN-P91", "datetime": "2025-03-01/2025-01-01"}, "datetime"),
        ({"area": "jurisdiction:VN-P91", "datetime": "2025-13"}, "datetime"),
        ({"area": "jurisdiction:VN-P91", "datetime": "2025-02-30/2025-03-01"}, "datetime"),
        ({"area": "jurisdiction:VN-P91", "datetime": "2015-01-01/2025-01-01"}, "datetime"),
        ({"area": "jurisdiction:VN-P91", "datetime": "yesterday"}, "datetime"),
        ({"area": "jurisdiction:VN-P91", "datetime": "2025-Q1", "format": "docx"}, "format"),
        ({"area": "jurisdiction:VN-P91", "datetime": "2025-Q1", "lang": "fr"}, None),
    ],
)
async def test_bad_input(
    client: httpx.AsyncClient, params: dict[str, str], field: str | None
) -> None:
    r = await client.get("/reports/briefing", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["detail"]
    if field is not None:
        assert body.get("field") == field, body


def test_periods() -> None:
    q = briefing.parse_period("2025-Q1")
    assert q.start == datetime(2025, 1, 1, tzinfo=VN)
    assert q.end == datetime(2025, 4, 1, tzinfo=VN) - timedelta(microseconds=1)
    # the previous period: the same length just before (as /analysis/stats?compare=)
    assert (q.previous.start, q.previous.end) == (
        datetime(2024, 10, 3, tzinfo=VN), datetime(2025, 1, 1, tzinfo=VN) - timedelta(microseconds=1)
    )  # fmt: skip
    m = briefing.parse_period("2025-03")
    assert m.previous.start == datetime(2025, 1, 29, tzinfo=VN)
    days = briefing.parse_period("2025-01-10/2025-01-19")  # 10 local days, the last included
    assert days.end - days.start == timedelta(days=10) - timedelta(microseconds=1)
    assert days.previous.start == datetime(2024, 12, 31, tzinfo=VN)
    utc = briefing.parse_period("2025-01-01T00:00:00Z/2025-01-31T17:00:00Z")
    assert utc.start == datetime(2025, 1, 1, tzinfo=UTC)
    naive = briefing.parse_period("2025-01-01T08:00/2025-01-02T08:00")  # local, never UTC
    assert naive.start == datetime(2025, 1, 1, 1, 0, tzinfo=UTC)


@needs_poppler
async def test_cli_writes_the_same_file(
    server_url: str, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI and the API on one committed database: the same report (the HTML byte for
    byte but for the time it was made; the PDF's text likewise)."""
    from app.config import get_settings
    from app.main import create_app

    name = f"bw_brief_{uuid.uuid4().hex[:8]}"
    url = database_on(server_url, name)
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    from app.db import ensure_database

    await ensure_database(url)
    engine = create_engine(url, settings)
    try:
        await migrate.upgrade(engine)
        async with sessionmaker(engine)() as s, s.begin():
            await geodata.load_default(session=s, settings=settings)
            _, key = await auth_service.create_principal(
                session=s, name="briefing admin", role="admin", jurisdiction_code=None,
                unit=None, actor="test",
            )  # fmt: skip
        app = create_app(settings, engine=engine)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test",
            headers={"Authorization": f"Bearer {key}"},
        ) as api:  # fmt: skip
            await _seed(api)
            params = {"area": f"jurisdiction:{AN_GIANG}", "datetime": "2025-Q1"}
            html_api = await api.get("/reports/briefing", params=params | {"format": "html"})
            pdf_api = await api.get("/reports/briefing", params=params)
        assert html_api.status_code == 200 and pdf_api.status_code == 200

        def run(*args: str) -> str:
            result = CliRunner().invoke(cli_app, list(args))
            assert result.exit_code == 0, result.output
            return result.output

        out_html, out_pdf = tmp_path / "b.html", tmp_path / "b.pdf"
        base = ["report", "briefing", "--area", params["area"], "--datetime", "2025-Q1"]
        await asyncio.to_thread(run, *base, "--format", "html", "--output", str(out_html))
        out = await asyncio.to_thread(run, *base, "--output", str(out_pdf))
        assert "wrote" in out

        def undated(page: str) -> str:
            return re.sub(r"\d\d/\d\d/\d{4} \d\d:\d\d \(Asia/Ho_Chi_Minh\)", "…", page)

        assert undated(out_html.read_text("utf-8")) == undated(html_api.text)
        assert out_pdf.read_bytes().startswith(b"%PDF-")
        assert undated(_pdftotext(out_pdf.read_bytes(), tmp_path, "cli")) == undated(
            _pdftotext(pdf_api.content, tmp_path, "api")
        )
        # a bad period: the message and exit status 1, no file
        bad = await asyncio.to_thread(
            CliRunner().invoke,
            cli_app,
            [*base[:-1], "2025-13", "--output", str(tmp_path / "x.pdf")],
        )
        assert bad.exit_code == 1 and "no month 13" in bad.output
        assert not (tmp_path / "x.pdf").exists()
    finally:
        await engine.dispose()
        get_settings.cache_clear()
        await drop_database(server_url, name)


async def test_border_strip_and_archipelagos(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await _seed(client)
    # near Châu Đốc, a few km from the Cambodian border
    await _post(client, (105.115, 10.705, "smuggling", 3, "reported", "2025-02-15 09:00", None))
    r = await client.get(
        "/reports/briefing",
        params={"area": "border-segment:VNM-KHM", "datetime": "2025-Q1", "format": "html"},
    )
    assert r.status_code == 200, r.text
    assert "<h1>Biên giới Việt Nam – Campuchia (dải 50 km)</h1>" in r.text
    n = (
        await session.execute(
            text(
                "SELECT count(*) FROM incident WHERE deleted_at IS NULL"
                " AND border_segment = 'VNM-KHM' AND border_distance_km <= 50"
                " AND occurred_at >= '2025-01-01T00:00:00+07:00'"
                " AND occurred_at < '2025-04-01T00:00:00+07:00'"
            )
        )
    ).scalar_one()
    assert n > 0
    assert f'<span class="value">{n}</span><span class="label">Số vụ việc</span>' in r.text
    # Viet Nam's archipelagos are named as Viet Nam's whenever the map shows them
    for code, label in (
        ("VN-P48", "Quần đảo Hoàng Sa (Việt Nam)"),  # Đà Nẵng holds Hoàng Sa
        ("VN-P56", "Quần đảo Trường Sa (Việt Nam)"),  # Khánh Hòa holds Trường Sa
    ):
        page = await client.get(
            "/reports/briefing",
            params={"area": f"jurisdiction:{code}", "datetime": "2025-Q1", "format": "html"},
        )
        assert page.status_code == 200, page.text
        assert label in page.text, code
    inland = await client.get(
        "/reports/briefing",
        params={"area": f"jurisdiction:{LANG_SON}", "datetime": "2025-Q1", "format": "html"},
    )
    assert "Hoàng Sa" not in inland.text and "Trường Sa" not in inland.text


async def test_cooperation_area_and_its_key(
    client: httpx.AsyncClient, engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    await _seed(client)
    made = await client.post(
        "/cooperation-areas",
        json={
            "name": "Phối hợp An Giang – Lạng Sơn",
            "valid_from": "2024-01-01",
            "members": [
                {"kind": "jurisdiction", "code": "VN-44"},  # An Giang before 2025
                {"kind": "jurisdiction", "code": "VN-09"},  # Lạng Sơn before 2025
            ],
        },
    )
    assert made.status_code == 201, made.text
    area_id = made.json()["id"]
    params = {"area": f"cooperation:{area_id}", "datetime": "2025-Q1", "format": "html"}
    r = await client.get("/reports/briefing", params=params)
    assert r.status_code == 200, r.text
    assert "<h1>Phối hợp An Giang – Lạng Sơn</h1>" in r.text
    n = (
        await session.execute(
            text(
                "SELECT count(*) FROM incident WHERE deleted_at IS NULL"
                " AND jurisdiction_path && ARRAY['VN-44', 'VN-09']::varchar[]"
                " AND occurred_at >= '2025-01-01T00:00:00+07:00'"
                " AND occurred_at < '2025-04-01T00:00:00+07:00'"
            )
        )
    ).scalar_one()
    assert n == 9  # 7 in former An Giang, 2 in Lạng Sơn (the fixture, by hand)
    assert f'<span class="value">{n}</span><span class="label">Số vụ việc</span>' in r.text
    # a key of the area: briefings of areas overlapping it, nothing else
    key = await make_key(session, "analyst", cooperation_area=area_id)
    async with app_client(engine, session, settings, key) as member:
        assert (await member.get("/reports/briefing", params=params)).status_code == 200
        today = params | {"area": f"jurisdiction:{AN_GIANG}"}  # holds former An Giang
        assert (await member.get("/reports/briefing", params=today)).status_code == 200
        far = await member.get("/reports/briefing", params=params | {"area": f"jurisdiction:{HCM}"})
        assert far.status_code == 403 and far.headers["content-type"] == PROBLEM


async def test_emerging_rows_name_their_commune(session: AsyncSession) -> None:
    """An emerging hot spot's row names where its cell lies in today's map ('Xã …, Tỉnh …'),
    the commune found by an independent lookup in the bundled files (geo_reference); the open
    sea is no commune."""
    gate = (106.7050, 21.9600)  # near the Hữu Nghị gate, Lạng Sơn
    _, today = units_of(*gate)
    province, commune = today
    places = await briefing._places_at(session, [gate, (112.0, 9.0)], "vi")
    assert places == [f"{_vi(commune)}, {_vi(province)}", ""]
    assert places[0].endswith(", Tỉnh Lạng Sơn")
    english = await briefing._places_at(session, [gate], "en")
    assert english == [f"{bundled_unit(commune)['name']}, {bundled_unit(province)['name']}"]
