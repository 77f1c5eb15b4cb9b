"""Which reader a file needs: the format from a media type, a parameter or a file name."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Format = Literal["csv", "geojson"]
FORMATS: tuple[Format, ...] = ("csv", "geojson")
MEDIA_TYPES: dict[str, Format] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/geo+json": "geojson",
    "application/json": "geojson",
}
SUFFIXES: dict[str, Format] = {".csv": "csv", ".geojson": "geojson", ".json": "geojson"}


def guess_format(*, content_type: str | None = None, filename: str | None = None) -> Format | None:
    """The file format from a media type or a file name; None when neither tells."""
    if content_type:
        media = content_type.split(";", 1)[0].strip().lower()
        if media in MEDIA_TYPES:
            return MEDIA_TYPES[media]
    if filename:
        return SUFFIXES.get(Path(filename).suffix.lower())
    return None
