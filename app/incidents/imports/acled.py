"""ACLED exports (acleddata.com): how their columns become incident fields (docs/import.md).

A CSV whose header names `event_id_cnty` is an ACLED file. `event_id_cnty` is the source_id,
`notes` and ACLED's own `source` (the news source) make the description, `fatalities` the
severity and `geo_precision` the location precision when the file has no such columns of ours;
rows.py checks and maps the values.
"""

from __future__ import annotations

MARKER = "event_id_cnty"


def columns(position: dict[str, int]) -> dict[str, int | None]:
    """The columns an ACLED file's fields come from (`position`: column name -> index)."""

    def col(name: str) -> int | None:
        return position.get(name)

    return {
        "source": None,  # ACLED's `source` is its news source: kept in the description
        "source_id": col(MARKER),
        "description": col("description"),
        "notes": col("notes"),
        "news_source": col("source"),
        "fatalities": col("fatalities"),
        "geo_precision": col("geo_precision"),
    }


def description(notes: str, news_source: str) -> str | None:
    """The description of a row without a description column: the notes, a blank line, and
    'Source: ' with the news source."""
    parts = [notes] if notes else []
    if news_source:
        parts.append(f"Source: {news_source}")
    return "\n\n".join(parts) or None
