"""What an uploaded photo is, read from its bytes with Pillow (never from the Content-Type the
client declared): its format, displayed size, EXIF position and time, and a thumbnail.

Plain synchronous functions: the service runs them in a worker thread (decoding a photo takes
tens of milliseconds of CPU, which must not stall the event loop).
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from app.errors import AppError, InvalidInput, UnsupportedMediaType

# Pillow format name -> media type; a JPEG with a multi-picture index (many phones) is "MPO"
FORMATS = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
OPENERS = ["JPEG", "PNG", "WEBP"]  # the only decoders an upload ever reaches
THUMBNAIL_PX = 320
THUMBNAIL_TYPE = "image/jpeg"
THUMBNAIL_QUALITY = 80
TURNED = (5, 6, 7, 8)  # EXIF orientations shown turned by 90°: width and height swap
# signatures of what is sent by mistake, to name it in the answer
OTHER_SIGNATURES = (
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
ALLOWED = ", ".join(sorted(set(FORMATS.values())))


def declared_type(header: str | None) -> str:
    """The media type a Content-Type header declares, if it is one photos are accepted as;
    415 otherwise."""
    value = (header or "").split(";", 1)[0].strip().lower()
    if value == "image/jpg":  # seen in the wild
        value = "image/jpeg"
    if value not in FORMATS.values():
        shown = value or "none"
        raise UnsupportedMediaType(
            f"Content-Type {shown} is not a photo type accepted here; send the image itself as"
            f" the body with Content-Type {ALLOWED}",
            field="content-type",
            allowed=sorted(set(FORMATS.values())),
        )
    return value


def digest(data: bytes) -> str:
    """The hex SHA-256 of the content."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Inspected:
    """What the content of an accepted photo is."""

    media_type: str
    width: int
    height: int
    lon: float | None
    lat: float | None
    taken_at: datetime | None
    thumbnail: bytes


def inspect(data: bytes, *, declared: str, max_pixels: int, zone: tzinfo) -> Inspected:
    """Check that `data` is a whole JPEG, PNG or WebP of the `declared` type and at most
    `max_pixels`, and read what is kept of it. 415 for another type, 422 for an image that is
    unreadable, truncated or too large; `zone`: the time zone of an EXIF time without offset."""
    if not data:
        raise InvalidInput("the body is empty: send the image itself", field="body")
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow refuses 2x this while opening (a bomb)
    try:
        with Image.open(io.BytesIO(data), formats=OPENERS) as probe:
            found = probe.format or ""
            probe.verify()  # structure and checksums, without decoding the pixels
        media_type = FORMATS.get(found)
        if media_type is None:
            raise _other(data, found)
        if media_type != declared:
            raise UnsupportedMediaType(
                f"the content is {media_type} but Content-Type says {declared}; send it with"
                f" Content-Type {media_type}",
                field="content-type",
                declared=declared,
                detected=media_type,
            )
        with Image.open(io.BytesIO(data), formats=OPENERS) as image:
            _check_pixels(image.size, max_pixels)
            image.load()  # every pixel: a truncated file fails here
            exif = image.getexif()
            width, height = image.size
            if exif.get(ExifTags.Base.Orientation) in TURNED:
                width, height = height, width
            lon, lat = _position(exif)
            taken_at = _taken_at(exif, zone)
            thumbnail = _thumbnail(image)
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(max_pixels) from exc
    except UnidentifiedImageError as exc:
        raise _other(data, None) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        # Pillow's words for a broken file: "image file is truncated", "broken PNG file", …
        raise InvalidInput(
            f"the body is not a readable {declared} image ({_reason(exc)}); send the whole"
            " file again",
            field="body",
        ) from exc
    return Inspected(media_type, width, height, lon, lat, taken_at, thumbnail)


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    if size[0] * size[1] > max_pixels:
        raise _too_many_pixels(max_pixels)


def _too_many_pixels(max_pixels: int) -> InvalidInput:
    return InvalidInput(
        f"the image has more than {max_pixels} pixels (BORDERWATCH_PHOTO_MAX_PIXELS); resize"
        " it before sending",
        field="body",
        max_pixels=max_pixels,
    )


def _other(data: bytes, found: str | None) -> AppError:
    """The answer for content that is not a JPEG, PNG or WebP: 415 naming what it is when it
    can be told, else 422."""
    head = data[:512].lstrip()
    kind = next((name for sig, name in OTHER_SIGNATURES if data.startswith(sig)), None)
    if kind is None and (head.startswith(b"<?xml") or b"<svg" in head.lower()):
        kind = "image/svg+xml"
    if kind is None and data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        kind = "image/heic or image/avif"
    if kind is None and found:
        kind = found
    if kind is not None:
        return UnsupportedMediaType(
            f"the content is {kind}, not a photo type accepted here ({ALLOWED})",
            field="body",
            detected=kind,
            allowed=sorted(set(FORMATS.values())),
        )
    return InvalidInput(
        f"the body is not a readable image ({ALLOWED}); send the image file itself",
        field="body",
    )


def _thumbnail(image: Image.Image) -> bytes:
    """A JPEG of at most THUMBNAIL_PX on its long side, turned as its EXIF orientation says,
    without any metadata (no EXIF, no ICC profile: save() writes only what it is given);
    transparency over white. `image` is made small in place (no copy of a large picture)."""
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)
    small = ImageOps.exif_transpose(image)
    if small.mode in ("RGBA", "LA") or (small.mode == "P" and "transparency" in small.info):
        rgba = small.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        small = flat
    elif small.mode != "RGB":
        small = small.convert("RGB")
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return out.getvalue()


def _degrees(value: Any, ref: Any) -> float | None:
    """EXIF (degrees, minutes, seconds) rationals and an N/S/E/W reference as signed degrees."""
    try:
        d, m, s = (float(part) for part in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    result = d + m / 60 + s / 3600
    if not math.isfinite(result):
        return None
    side = ref.decode("ascii", "replace") if isinstance(ref, bytes) else str(ref or "")
    if side.strip().upper() in ("S", "W"):
        result = -result
    return result


def _position(exif: Image.Exif) -> tuple[float | None, float | None]:
    """The GPS position of the EXIF block, if it has a valid one."""
    try:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # a malformed IFD: no position, the photo itself is fine
        return None, None
    g = ExifTags.GPS
    lat = _degrees(gps.get(g.GPSLatitude), gps.get(g.GPSLatitudeRef))
    lon = _degrees(gps.get(g.GPSLongitude), gps.get(g.GPSLongitudeRef))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None, None
    if lat == 0 and lon == 0:  # a phone without a fix writes zeros
        return None, None
    return lon, lat


def _taken_at(exif: Image.Exif, zone: tzinfo) -> datetime | None:
    """DateTimeOriginal (with OffsetTimeOriginal when present, else in `zone`)."""
    try:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
    except Exception:
        return None
    raw = sub.get(ExifTags.Base.DateTimeOriginal)
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.strptime(raw.strip().rstrip("\x00")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    offset = sub.get(ExifTags.Base.OffsetTimeOriginal)
    tz: tzinfo = zone
    if isinstance(offset, str) and len(offset.strip()) == 6 and offset[0] in "+-":
        try:
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            sign = -1 if offset[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        except ValueError:
            tz = zone
    return moment.replace(tzinfo=tz)
