"""Incident photos: the type read from the content, EXIF position and time, thumbnails upright
and small, idempotent uploads, ETags, scope, limits, the files of BORDERWATCH_PHOTO_DIR, and
nothing written by a refused request. Images are made here with Pillow."""

from __future__ import annotations

import hashlib
import io
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import ExifTags, Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from conftest import app_client, make_key

PROBLEM = "application/problem+json"
UNIT = "Đồn Biên phòng Hữu Nghị"
PROVINCE = "VN-09"  # Lạng Sơn before 2025-07-01: the incident below lies in it
ELSEWHERE = "VN-44"  # An Giang, at the other end of the country
INCIDENT = {
    "category": "smuggling",
    "severity": 3,
    "occurred_at": "2025-03-04T05:06:07Z",
    "location": {"type": "Point", "coordinates": [106.7050, 21.9600]},  # near Hữu Nghị
}
LAT, LON = 21.9612345, 106.7054321


def _dms(value: float) -> tuple[float, float, float]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    return degrees, minutes, (value - degrees - minutes / 60) * 3600


def image(
    fmt: str = "JPEG",
    size: tuple[int, int] = (64, 48),
    *,
    color: tuple[int, ...] = (200, 30, 30),
    mode: str = "RGB",
    gps: tuple[float, float] | None = None,
    orientation: int | None = None,
    taken: str | None = None,
) -> bytes:
    """An image file made with Pillow, with the EXIF block asked for (Pillow's Exif API)."""
    picture = Image.new(mode, size, color)
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if gps is not None:
        lat, lon = gps
        block = exif.get_ifd(ExifTags.IFD.GPSInfo)
        block[ExifTags.GPS.GPSLatitudeRef] = "N" if lat >= 0 else "S"
        block[ExifTags.GPS.GPSLatitude] = _dms(abs(lat))
        block[ExifTags.GPS.GPSLongitudeRef] = "E" if lon >= 0 else "W"
        block[ExifTags.GPS.GPSLongitude] = _dms(abs(lon))
    if taken is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = taken
    out = io.BytesIO()
    options: dict[str, Any] = {"exif": exif} if len(exif) or gps or taken else {}
    picture.save(out, format=fmt, **options)
    return out.getvalue()


def halves() -> bytes:
    """A landscape JPEG, red on the left, blue on the right, that EXIF orientation 6 says to
    show turned 90° clockwise (portrait: red on top)."""
    picture = Image.new("RGB", (800, 400), (0, 0, 255))
    picture.paste((255, 0, 0), (0, 0, 400, 400))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    out = io.BytesIO()
    picture.save(out, format="JPEG", exif=exif)
    return out.getvalue()


async def _rows(session: AsyncSession) -> tuple[int, int]:
    """(photos, photo audit events): what a refused request must leave unchanged."""
    row = (
        await session.execute(
            text(
                "SELECT (SELECT count(*) FROM incident_photo),"
                " (SELECT count(*) FROM audit_event WHERE action LIKE 'photo%')"
            )
        )
    ).one()
    return int(row[0]), int(row[1])


@pytest.fixture
async def officer(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """An officer of Lạng Sơn's border post (the unit of the incidents it records)."""
    key = await make_key(session, "officer", PROVINCE, UNIT)
    async with app_client(engine, session, settings, key) as c:
        yield c


async def _incident(client: httpx.AsyncClient) -> str:
    r = await client.post("/incidents", json=INCIDENT)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _put(
    client: httpx.AsyncClient,
    incident_id: str,
    data: bytes,
    media_type: str = "image/jpeg",
    photo_id: str | None = None,
    **params: str,
) -> httpx.Response:
    url = f"/incidents/{incident_id}/photos/{photo_id or uuid.uuid4()}"
    return await client.put(url, content=data, headers={"content-type": media_type}, params=params)


def _path(url: str) -> str:
    return url.replace("http://test", "")


async def test_jpeg_with_exif_gps_and_time(
    officer: httpx.AsyncClient, session: AsyncSession
) -> None:
    incident_id = await _incident(officer)
    data = image(gps=(LAT, LON), taken="2025:03:04 12:06:07")
    photo_id = str(uuid.uuid4())
    r = await _put(officer, incident_id, data, photo_id=photo_id, caption="Xe tải ở cửa khẩu")
    assert r.status_code == 201, r.text
    photo = r.json()
    sha = hashlib.sha256(data).hexdigest()
    url = f"http://test/incidents/{incident_id}/photos/{photo_id}"
    assert r.headers["location"] == url == photo["url"]
    assert photo["thumbnail_url"] == url + "/thumbnail"
    assert (photo["id"], photo["incident_id"], photo["media_type"]) == (
        photo_id,
        incident_id,
        "image/jpeg",
    )
    assert (photo["bytes"], photo["width"], photo["height"], photo["sha256"]) == (
        len(data),
        64,
        48,
        sha,
    )
    assert photo["caption"] == "Xe tải ở cửa khẩu"
    lon, lat = photo["exif_position"]["coordinates"]
    assert photo["exif_position"]["type"] == "Point"
    assert abs(lon - LON) < 1e-6 and abs(lat - LAT) < 1e-6
    # no offset in the file: a local time of BORDERWATCH_TIME_ZONE (Asia/Ho_Chi_Minh, UTC+7)
    assert photo["taken_at"] == "2025-03-04T05:06:07+00:00"
    assert photo["created_by"] and photo["created_at"]
    listed = await officer.get(f"/incidents/{incident_id}/photos")
    assert listed.status_code == 200
    assert listed.json() == {"incident_id": incident_id, "photos": [photo]}
    content = await officer.get(_path(url))
    assert content.status_code == 200 and content.content == data
    assert content.headers["content-type"] == "image/jpeg"
    assert content.headers["etag"] == f'"{sha}"'
    assert content.headers["cache-control"].startswith("private, max-age=")
    assert content.headers["x-content-type-options"] == "nosniff"
    # audited on the incident, in the same transaction
    audit = (
        await session.execute(
            text(
                "SELECT action, entity_type, entity_id, after FROM audit_event WHERE action = 'photo_add'"
            )
        )
    ).one()
    assert audit[:3] == ("photo_add", "incident", incident_id)
    assert audit[3]["photo_id"] == photo_id and audit[3]["sha256"] == sha


async def test_png_and_webp(officer: httpx.AsyncClient) -> None:
    incident_id = await _incident(officer)
    png = image("PNG", (30, 20), mode="RGBA", color=(0, 128, 0, 100))
    webp = image("WEBP", (50, 70))
    r1 = await _put(officer, incident_id, png, "image/png")
    r2 = await _put(officer, incident_id, webp, "image/webp")
    assert (r1.status_code, r2.status_code) == (201, 201), r1.text + r2.text
    assert (r1.json()["media_type"], r1.json()["width"], r1.json()["height"]) == (
        "image/png",
        30,
        20,
    )
    assert (r2.json()["media_type"], r2.json()["width"], r2.json()["height"]) == (
        "image/webp",
        50,
        70,
    )
    assert r1.json()["exif_position"] is None and r1.json()["taken_at"] is None
    for r, data in ((r1, png), (r2, webp)):
        got = await officer.get(_path(r.json()["url"]))
        assert got.content == data and got.headers["content-type"] == r.json()["media_type"]
        thumb = await officer.get(_path(r.json()["thumbnail_url"]))
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(thumb.content)).format == "JPEG"
    listed = (await officer.get(f"/incidents/{incident_id}/photos")).json()["photos"]
    assert [p["id"] for p in listed] == [r1.json()["id"], r2.json()["id"]]


async def test_post_chooses_the_id(officer: httpx.AsyncClient, session: AsyncSession) -> None:
    incident_id = await _incident(officer)
    data = image()
    r = await officer.post(
        f"/incidents/{incident_id}/photos", content=data, headers={"content-type": "image/jpeg"}
    )
    assert r.status_code == 201, r.text
    assert r.headers["location"].endswith(f"/photos/{r.json()['id']}")
    again = await officer.post(
        f"/incidents/{incident_id}/photos", content=data, headers={"content-type": "image/jpeg"}
    )
    assert again.status_code == 201 and again.json()["id"] != r.json()["id"]
    assert await _rows(session) == (2, 2)


async def test_retry_is_idempotent_and_a_clash_is_409(
    officer: httpx.AsyncClient, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    incident_id = await _incident(officer)
    photo_id = str(uuid.uuid4())
    data = image()
    first = await _put(officer, incident_id, data, photo_id=photo_id)
    second = await _put(officer, incident_id, data, photo_id=photo_id)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json() == second.json()
    assert second.headers["location"] == first.headers["location"]
    assert await _rows(session) == (1, 1)
    other = image(color=(10, 200, 10))
    clash = await _put(officer, incident_id, other, photo_id=photo_id)
    assert clash.status_code == 409 and clash.headers["content-type"] == PROBLEM
    assert photo_id in clash.json()["detail"]
    # the same id under another incident: 409 too
    second_incident = await _incident(officer)
    elsewhere = await _put(officer, second_incident, data, photo_id=photo_id)
    assert elsewhere.status_code == 409 and elsewhere.headers["content-type"] == PROBLEM
    assert await _rows(session) == (1, 1)
    stored = await officer.get(f"/incidents/{incident_id}/photos/{photo_id}")
    assert stored.content == data


BAD_IDS = [
    "png-as-jpeg", "jpeg-as-webp", "text-plain", "svg-declared", "svg-as-jpeg", "gif", "pdf",
    "garbage", "truncated-jpeg", "truncated-png", "empty",
]  # fmt: skip


@pytest.mark.parametrize(
    ("declared", "data", "status", "field"),
    [
        ("image/jpeg", image("PNG"), 415, "content-type"),  # a PNG declared as JPEG
        ("image/webp", image("JPEG"), 415, "content-type"),
        ("text/plain", image("JPEG"), 415, "content-type"),
        ("image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"/>', 415, "content-type"),
        ("image/jpeg", b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>', 415, "body"),
        ("image/png", image("GIF"), 415, "body"),
        ("image/jpeg", b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF", 415, "body"),
        ("image/jpeg", b"not an image at all" * 10, 422, "body"),
        ("image/jpeg", image("JPEG", (300, 200))[:600], 422, "body"),  # truncated
        ("image/png", image("PNG", (300, 200))[:-30], 422, "body"),  # truncated
        ("image/jpeg", b"", 422, "body"),
    ],
    ids=BAD_IDS,
)
async def test_bad_content_is_refused_and_nothing_written(
    officer: httpx.AsyncClient,
    session: AsyncSession,
    declared: str,
    data: bytes,
    status: int,
    field: str,
) -> None:
    incident_id = await _incident(officer)
    before = await _rows(session)
    r = await _put(officer, incident_id, data, declared)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["status"] == status and problem["field"] == field
    if field == "content-type":
        assert "Content-Type" in problem["detail"]
    assert await _rows(session) == before


# Pillow warns between the limit and twice it (then the service refuses), and raises past that
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
async def test_pixels_over_the_limit(
    engine: AsyncEngine, session: AsyncSession, officer: httpx.AsyncClient
) -> None:
    incident_id = await _incident(officer)
    settings = Settings(environment="test", photo_max_pixels=10_000)
    key = await make_key(session, "admin")
    before = await _rows(session)
    async with app_client(engine, session, settings, key) as c:
        # over the limit (Pillow warns), and over twice the limit (Pillow's DecompressionBombError)
        for size in ((150, 100), (300, 300)):
            r = await _put(c, incident_id, image("PNG", size), "image/png")
            assert r.status_code == 422, r.text
            assert r.headers["content-type"] == PROBLEM
            assert "BORDERWATCH_PHOTO_MAX_PIXELS" in r.json()["detail"]
        assert (await _put(c, incident_id, image("PNG", (90, 90)), "image/png")).status_code == 201
    assert await _rows(session) == (before[0] + 1, before[1] + 1)


async def test_over_photo_max_bytes_is_413(
    engine: AsyncEngine, session: AsyncSession, officer: httpx.AsyncClient
) -> None:
    incident_id = await _incident(officer)
    settings = Settings(environment="test", photo_max_bytes=4096)
    key = await make_key(session, "admin")
    noisy = Image.frombytes("RGB", (64, 64), random.Random(18).randbytes(64 * 64 * 3))
    out = io.BytesIO()
    noisy.save(out, format="PNG")
    big = out.getvalue()
    assert len(big) > 4096
    before = await _rows(session)
    async with app_client(engine, session, settings, key) as c:
        r = await _put(c, incident_id, big, "image/png")
        assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
        assert "BORDERWATCH_PHOTO_MAX_BYTES" in r.json()["detail"]
        # the JSON limit (BORDERWATCH_MAX_BODY_BYTES, 1 MiB) is not the photos' one
        small = Settings(environment="test", max_body_bytes=2048)
        async with app_client(engine, session, small, key) as c2:
            assert (await _put(c2, incident_id, big, "image/png")).status_code == 201
    assert await _rows(session) == (before[0] + 1, before[1] + 1)


async def test_thumbnail_is_small_and_upright(officer: httpx.AsyncClient) -> None:
    incident_id = await _incident(officer)
    r = await _put(officer, incident_id, halves())
    assert r.status_code == 201, r.text
    photo = r.json()
    assert (photo["width"], photo["height"]) == (400, 800)  # as displayed
    thumb = await officer.get(_path(photo["thumbnail_url"]))
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    small = Image.open(io.BytesIO(thumb.content))
    assert small.size == (160, 320) and max(small.size) <= 320
    assert not small.getexif() and "icc_profile" not in small.info  # no metadata
    rgb = small.convert("RGB")
    top, bottom = rgb.getpixel((80, 20)), rgb.getpixel((80, 300))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60, top  # red on top: turned as EXIF orientation 6 says
    assert bottom[2] > 200 and bottom[0] < 60, bottom
    etag = thumb.headers["etag"]
    assert etag != f'"{photo["sha256"]}"'
    again = await officer.get(_path(photo["thumbnail_url"]), headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""


async def test_etag_and_304(officer: httpx.AsyncClient) -> None:
    incident_id = await _incident(officer)
    r = await _put(officer, incident_id, image())
    url = _path(r.json()["url"])
    etag = f'"{r.json()["sha256"]}"'
    assert r.headers["etag"] == etag
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        cached = await officer.get(url, headers={"If-None-Match": header})
        assert cached.status_code == 304 and cached.content == b"", header
        assert cached.headers["etag"] == etag
        assert cached.headers["cache-control"].startswith("private, max-age=")
    fresh = await officer.get(url, headers={"If-None-Match": '"something else"'})
    assert fresh.status_code == 200 and fresh.content


async def test_another_province_cannot_list_read_or_write(
    engine: AsyncEngine,
    session: AsyncSession,
    settings: Settings,
    officer: httpx.AsyncClient,
) -> None:
    incident_id = await _incident(officer)
    r = await _put(officer, incident_id, image())
    photo = r.json()
    before = await _rows(session)
    for role in ("officer", "admin"):
        key = await make_key(session, role, ELSEWHERE, "Công an An Giang")
        async with app_client(engine, session, settings, key) as c:
            answers = [
                await c.get(f"/incidents/{incident_id}/photos"),
                await c.get(_path(photo["url"])),
                await c.get(_path(photo["thumbnail_url"])),
                await _put(c, incident_id, image(color=(1, 1, 1))),
                await _put(c, incident_id, image(), photo_id=photo["id"]),  # even a "retry"
                await c.post(
                    f"/incidents/{incident_id}/photos",
                    content=image(),
                    headers={"content-type": "image/jpeg"},
                ),
                await c.delete(_path(photo["url"])),
            ]
            for answer in answers:
                assert answer.status_code == 404, (role, answer.request.url, answer.text)
                assert answer.headers["content-type"] == PROBLEM
                assert incident_id in answer.json()["detail"]
    assert await _rows(session) == before


async def test_officer_of_another_unit_cannot_write(
    engine: AsyncEngine, session: AsyncSession, settings: Settings, officer: httpx.AsyncClient
) -> None:
    incident_id = await _incident(officer)
    photo = (await _put(officer, incident_id, image())).json()
    before = await _rows(session)
    key = await make_key(session, "officer", PROVINCE, "Công an tỉnh Lạng Sơn")
    async with app_client(engine, session, settings, key) as c:
        assert (await c.get(f"/incidents/{incident_id}/photos")).status_code == 200
        refused = [await _put(c, incident_id, image()), await c.delete(_path(photo["url"]))]
        assert [a.status_code for a in refused] == [403, 403]
    viewer = await make_key(session, "viewer")
    async with app_client(engine, session, settings, viewer) as c:
        assert (await c.get(f"/incidents/{incident_id}/photos")).status_code == 403
        assert (await _put(c, incident_id, image())).status_code == 403
    assert await _rows(session) == before


async def test_delete_photo_and_deleted_incident(
    officer: httpx.AsyncClient, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    incident_id = await _incident(officer)
    kept = (await _put(officer, incident_id, image())).json()
    gone = (await _put(officer, incident_id, image(color=(0, 0, 0)))).json()
    r = await officer.delete(_path(gone["url"]))
    assert r.status_code == 204
    assert (await officer.get(_path(gone["url"]))).status_code == 404
    assert (await officer.delete(_path(gone["url"]))).status_code == 404
    listed = (await officer.get(f"/incidents/{incident_id}/photos")).json()["photos"]
    assert [p["id"] for p in listed] == [kept["id"]]
    deleted = (
        await session.execute(
            text("SELECT entity_id, before FROM audit_event WHERE action = 'photo_delete'")
        )
    ).one()
    assert deleted[0] == incident_id and deleted[1]["photo_id"] == gone["id"]
    # the incident soft-deleted: its photos are no longer served
    assert (await client.delete(f"/incidents/{incident_id}")).status_code == 204
    for url in (
        f"/incidents/{incident_id}/photos",
        _path(kept["url"]),
        _path(kept["thumbnail_url"]),
    ):
        answer = await client.get(url)
        assert answer.status_code == 404 and answer.headers["content-type"] == PROBLEM, url
    assert (await _put(client, incident_id, image())).status_code == 404


async def test_photo_dir_keeps_the_content_in_files(
    engine: AsyncEngine, session: AsyncSession, officer: httpx.AsyncClient, tmp_path: Path
) -> None:
    incident_id = await _incident(officer)
    folder = tmp_path / "photos"
    settings = Settings(environment="test", photo_dir=folder)
    key = await make_key(session, "admin")
    data = image(gps=(LAT, LON))
    sha = hashlib.sha256(data).hexdigest()
    async with app_client(engine, session, settings, key) as c:
        r = await _put(c, incident_id, data)
        assert r.status_code == 201, r.text
        stored = folder / sha[:2] / sha
        assert stored.read_bytes() == data
        assert [p.name for p in stored.parent.iterdir()] == [sha]  # no temporary file left
        in_row = (
            await session.execute(
                text(
                    "SELECT content IS NULL, length(thumbnail) > 0 FROM incident_photo WHERE id = :id"
                ),
                {"id": uuid.UUID(r.json()["id"])},
            )
        ).one()
        assert tuple(in_row) == (True, True)
        got = await c.get(_path(r.json()["url"]))
        assert got.status_code == 200 and got.content == data
        # the same content under another id: one file
        assert (await _put(c, incident_id, data)).status_code == 201
        assert [p.name for p in stored.parent.iterdir()] == [sha]
        # a refused upload writes no file
        await _put(c, incident_id, image("GIF"), "image/png")
        assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == [sha]
