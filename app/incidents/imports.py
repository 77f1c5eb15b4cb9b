"""Bulk incident import: CSV (plain or ACLED-style) and GeoJSON.

Every row is validated first (in a worker thread, chunk by chunk) and the valid rows are
COPYed into a temporary staging table. Nothing touches `incident` until the whole file has been
read; in all-or-nothing mode one invalid row rejects the file. The derived fields are then
computed set-based, once per distinct place (the same rules as the `incident_derive` trigger,
which is switched off with `borderwatch.bulk = on`), and the rows are upserted on
(source, source_id) with INSERT ... SELECT ... ON CONFLICT, in batches, in one transaction. The
history trigger records each insert and each real change with action 'import'.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import math
import time
import unicodedata
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput
from app.incidents.models import STATUSES
from app.incidents.schemas import EARLIEST, check_not_future, parse_incident

Format = Literal["csv", "geojson"]
Mode = Literal["all_or_nothing", "skip_invalid"]
FORMATS: tuple[Format, ...] = ("csv", "geojson")
MODES: tuple[Mode, ...] = ("all_or_nothing", "skip_invalid")
MEDIA_TYPES: dict[str, Format] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/geo+json": "geojson",
    "application/json": "geojson",
}

DEFAULT_SOURCE = "import"
ACLED_SOURCE = "acled"
MAX_REPORTED_ERRORS = 1000
DEFAULT_SEVERITY = 3
DEFAULT_STATUS = "reported"
ACLED_PRECISION_M = {1: 1000.0, 2: 10000.0, 3: 50000.0}
MAX_TEXT = {"description": 10_000, "unit": 200, "source": 64, "source_id": 128}

CHUNK_ROWS = 10_000  # rows validated (and COPYed) per step
# The widest CSV header accepted (ACLED has 31 columns), and the longest header line: a wider
# one is refused (422) before anything else is read.
MAX_CSV_COLUMNS = 10_000
MAX_HEADER_CHARS = 1 << 20
DERIVE_BATCH = 10_000  # places derived per statement
# Cells (degrees) of the nearest border / post search: a point whose fine cell holds at least
# DENSE_CELL distinct points uses it, the others share coarse cells (a cell costs ~0.5 ms to
# prepare, a point ~25 µs).
FINE_DEG = 0.1
COARSE_DEG = 0.4
DENSE_CELL = 8
WRITE_BATCH = 25_000  # rows upserted per statement

# Fields a row may leave out: a bit is set when the row carries the field. A new incident takes
# the default of a field it does not carry; an existing one keeps its stored value.
GIVEN_BITS: dict[str, int] = {
    "category": 1,
    "severity": 2,
    "status": 4,
    "location_precision_m": 8,
    "description": 16,
    "unit": 32,
}

# CSV header names (case-insensitive) for each incident field.
CSV_ALIASES: dict[str, tuple[str, ...]] = {
    "lat": ("lat", "latitude"),
    "lon": ("lon", "longitude", "lng"),
    "occurred_at": ("occurred_at", "date", "event_date"),
    "category": ("category",),
    "severity": ("severity",),
    "status": ("status",),
    "description": ("description", "notes"),
    "unit": ("unit",),
    "location_precision_m": ("location_precision_m",),
    "source": ("source",),
    "source_id": ("source_id",),
    "id": ("id",),
}
ACLED_MARKER = "event_id_cnty"
# Properties of Borderwatch's own GeoJSON (exports, GET /incidents) that an import ignores.
READ_ONLY_PROPERTIES = frozenset(
    {
        "country",
        "province",
        "jurisdictions",
        "jurisdiction_method",
        "border_segment",
        "border_distance_km",
        "nearest_post",
        "nearest_post_name",
        "nearest_post_km",
        "reported_at",
        "created_at",
        "updated_at",
        "created_by",
        "updated_by",
        "version",
    }
)

Progress = Callable[[str, int, int | None], None]
# (n, given, category, severity, status, occurred_at, lon, lat, location_precision_m,
#  description, unit, source, source_id) — the staging table's columns, in order.
Record = tuple[
    int, int, str, int, str, datetime, float, float, float | None, str | None, str | None, str,
    str | None,
]  # fmt: skip
STAGING_COLUMNS = [
    "n", "given", "category", "severity", "status", "occurred_at", "lon", "lat",
    "location_precision_m", "description", "unit", "source", "source_id",
]  # fmt: skip


@dataclass(frozen=True)
class ImportReport:
    """What an import did (or, when rejected, would have had to skip)."""

    mode: Mode
    rows: int
    inserted: int
    updated: int
    unchanged: int
    skipped: int
    errors: list[dict[str, Any]]
    more_errors: int
    ignored_columns: list[str]
    # seconds spent in each step (for benchmarks and logs; not part of the API answer)
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The JSON body of the API answer."""
        return {
            "mode": self.mode,
            "rows": self.rows,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "errors": self.errors,
            "more_errors": self.more_errors,
            "ignored_columns": self.ignored_columns,
        }


# --------------------------------------------------------------------------------------------
# Upload and format


def guess_format(*, content_type: str | None = None, filename: str | None = None) -> Format | None:
    """The file format from a media type or a file name; None when neither tells."""
    if content_type:
        media = content_type.split(";", 1)[0].strip().lower()
        if media in MEDIA_TYPES:
            return MEDIA_TYPES[media]
    if filename:
        suffix = Path(filename).suffix.lower()
        if suffix == ".csv":
            return "csv"
        if suffix in (".geojson", ".json"):
            return "geojson"
    return None


# --------------------------------------------------------------------------------------------
# Validation


class _Errors:
    """Row errors: the first MAX_REPORTED_ERRORS entries, the total, and the invalid rows."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.total = 0
        self.bad_rows: set[int] = set()

    def add(self, row: int, column: str | None, reason: str) -> None:
        self.total += 1
        self.bad_rows.add(row)
        if len(self.entries) < MAX_REPORTED_ERRORS:
            self.entries.append({"row": row, "column": column, "reason": reason})

    @property
    def more(self) -> int:
        return self.total - len(self.entries)


def _fold(value: str) -> str:
    return unicodedata.normalize("NFC", value).strip().casefold()


@dataclass
class _Context:
    """What validation needs: categories, defaults, the time window, and the findings."""

    categories: dict[str, tuple[str, bool]]
    default_source: str | None
    latest: datetime
    clock_skew_s: int
    errors: _Errors = field(default_factory=_Errors)
    seen: dict[tuple[str, str], int] = field(default_factory=dict)
    rows: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    _times: dict[str, datetime | str] = field(default_factory=dict)
    _cats: dict[str, str | tuple[str]] = field(default_factory=dict)

    def source_for(self, acled: bool) -> str:
        return self.default_source or (ACLED_SOURCE if acled else DEFAULT_SOURCE)

    def category(self, raw: str) -> str | tuple[str]:
        """The code for a code or name; a 1-tuple holding the reason when unknown."""
        hit = self._cats.get(raw)
        if hit is None:
            found = self.categories.get(_fold(raw))
            if found is None:
                hit = (
                    f"unknown category '{raw[:80]}': use a code (e.g. smuggling) or its English "
                    "or Vietnamese name (GET /categories)",
                )
            elif not found[1]:
                hit = (f"category '{found[0]}' is no longer in use",)
            else:
                hit = found[0]
            if len(self._cats) < 10_000:
                self._cats[raw] = hit
        return hit

    def time(self, raw: str) -> datetime | str:
        """occurred_at in UTC, or the reason it is refused."""
        hit = self._times.get(raw)
        if hit is None:
            hit = _parse_time(raw, self.latest)
            if len(self._times) > 200_000:
                self._times.clear()
            self._times[raw] = hit
        return hit

    def claim(self, source: str, source_id: str, row: int) -> str | None:
        """Register (source, source_id); the reason when an earlier row has it already."""
        first = self.seen.setdefault((source, source_id), row)
        if first != row:
            return f"source_id '{source_id[:80]}' already appears on row {first}"
        return None


def _parse_time(raw: str, latest: datetime) -> datetime | str:
    value = raw.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.strptime(value, "%d %B %Y")  # ACLED's "15 January 2024"
        except ValueError:
            return (
                f"'{value[:40]}' is not an ISO 8601 date or time "
                "(e.g. 2024-05-01 or 2024-05-01T08:30:00+07:00)"
            )
    try:
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:
        return f"occurred_at {value[:40]} is out of range"
    if parsed < EARLIEST:
        return f"occurred_at {value[:40]} is before 1900"
    if parsed > latest:
        return f"occurred_at {value[:40]} is in the future"
    return parsed


def _coordinate_problems(lat: float, lon: float) -> list[tuple[str, str]]:
    """(column, reason) for coordinates that are not finite or out of range."""
    problems: list[tuple[str, str]] = []
    if not math.isfinite(lat):
        problems.append(("lat", f"latitude {lat} is not a finite number"))
    if not math.isfinite(lon):
        problems.append(("lon", f"longitude {lon} is not a finite number"))
    if problems:
        return problems
    swapped = -90 <= lon <= 90 and -180 <= lat <= 180
    if not -90 <= lat <= 90:
        hint = " (latitude and longitude look swapped)" if swapped else ""
        problems.append(("lat", f"latitude {lat} is outside [-90, 90]{hint}"))
    if not -180 <= lon <= 180:
        problems.append(("lon", f"longitude {lon} is outside [-180, 180]"))
    return problems


def _number(raw: str) -> float | str:
    """A float, or the reason it is not one."""
    try:
        return float(raw)
    except ValueError:
        if raw.count(",") == 1 and raw.replace(",", "", 1).replace("-", "", 1).isdigit():
            return f"'{raw[:40]}' is not a number: use a dot as the decimal separator"
        return f"'{raw[:40]}' is not a number"


def _coordinate(raw: str, name: str, n: int, errors: _Errors) -> float | None:
    if not raw:
        errors.add(n, name, f"{name} is empty")
        return None
    number = _number(raw)
    if isinstance(number, str):
        errors.add(n, name, number)
        return None
    return number


def _whole(raw: str) -> int | None:
    try:
        return int(raw)
    except ValueError:
        try:
            value = float(raw)
        except ValueError:
            return None
        return int(value) if value.is_integer() else None


def _text_problem(name: str, value: str) -> str | None:
    if len(value) > MAX_TEXT[name]:
        return f"{name} is longer than {MAX_TEXT[name]} characters"
    if "\x00" in value:
        return f"{name} contains a NUL character"
    return None


def _severity_from_fatalities(fatalities: int) -> int:
    """ACLED fatalities to severity: 0 → 2, 1–2 → 3, 3–9 → 4, 10 or more → 5."""
    if fatalities == 0:
        return 2
    if fatalities <= 2:
        return 3
    if fatalities <= 9:
        return 4
    return 5


@dataclass(frozen=True)
class _Header:
    """A CSV header resolved to incident fields."""

    idx: dict[str, int | None]  # field -> column index
    labels: dict[str, str]  # field -> the column's name as the file writes it
    width: int
    acled: bool
    ignored: list[str]


class _CsvFile:
    """A CSV file read record by record, with its header resolved to incident fields."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.total_bytes = path.stat().st_size
        self._raw: _CountingReader | None = None
        self.header: _Header | None = None

    @property
    def bytes_read(self) -> int:
        return self._raw.count if self._raw is not None else 0

    def open(self) -> None:
        """Read and resolve the header (422 when it is unusable); needs no database."""
        with self._stream() as stream:
            self.header = _resolve_header(self._header_row(stream)[1])

    def chunks(self, size: int, ctx: _Context) -> Generator[list[Record], None, None]:
        """Valid records, `size` rows at a time (invalid rows go to ctx.errors)."""
        assert self.header is not None, "open() first"
        ctx.ignored_columns = self.header.ignored
        with self._stream() as stream:
            yield from self._records(stream, size, ctx, self.header)

    @contextlib.contextmanager
    def _stream(self) -> Iterator[io.TextIOWrapper]:
        self._raw = _CountingReader(self.path)
        stream = io.TextIOWrapper(
            io.BufferedReader(self._raw, 1 << 16), encoding="utf-8-sig", newline=""
        )
        try:
            yield stream
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"the file is not UTF-8 text (byte {self.bytes_read} or before): save it as "
                "CSV UTF-8",
                field="body",
            ) from exc
        except csv.Error as exc:
            raise InvalidInput(f"the CSV cannot be read: {exc}", field="body") from exc
        finally:
            stream.close()

    @staticmethod
    def _header_row(stream: io.TextIOWrapper) -> tuple[Iterator[list[str]], list[str]]:
        """The CSV reader positioned after the header, and the header."""
        first = stream.readline(MAX_HEADER_CHARS + 1)
        if len(first) > MAX_HEADER_CHARS:
            raise InvalidInput(
                f"the header row is longer than {MAX_HEADER_CHARS} characters",
                limit=MAX_HEADER_CHARS,
                errors=[{"row": 1, "column": None, "reason": "header row too long"}],
            )
        if not first.strip():
            raise InvalidInput("the file is empty: the first row must name the columns")
        delimiter = max(",;\t", key=first.count)
        reader = csv.reader(
            _chain_first(first, stream), delimiter=delimiter, quotechar='"', strict=False
        )
        header = next(reader)
        if len(header) > MAX_CSV_COLUMNS:
            reason = (
                f"the header names {len(header)} columns: at most {MAX_CSV_COLUMNS} are accepted"
            )
            raise InvalidInput(
                reason,
                limit=MAX_CSV_COLUMNS,
                errors=[{"row": 1, "column": None, "reason": reason}],
            )
        return reader, header

    def _records(
        self, stream: io.TextIOWrapper, size: int, ctx: _Context, header: _Header
    ) -> Iterator[list[Record]]:
        reader, _ = self._header_row(stream)
        parse = _make_row_parser(header.idx, header.labels, header.width, header.acled, ctx)
        out: list[Record] = []
        for index, values in enumerate(reader):
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # a blank line: not a row, but it keeps its row number
            ctx.rows += 1
            record = parse(values, index + 2)
            if record is not None:
                out.append(record)
            if ctx.rows % size == 0:
                yield out
                out = []
        yield out


def _resolve_header(header: list[str]) -> _Header:
    """Which column holds which field (one pass over the header: it may be wide)."""
    names = [h.strip().lower() for h in header]
    position: dict[str, int] = {}  # name -> its first column
    doubled: set[str] = set()
    for i, name in enumerate(names):
        if not name:
            continue
        if name in position:
            doubled.add(name)
        else:
            position[name] = i
    if doubled:
        first = min(doubled)
        raise InvalidInput(
            f"column '{first}' appears more than once in the header",
            errors=[{"row": 1, "column": first, "reason": "duplicate column"}],
        )
    acled = ACLED_MARKER in position

    def col(*aliases: str) -> int | None:
        return next((position[a] for a in aliases if a in position), None)

    idx = {name: col(*aliases) for name, aliases in CSV_ALIASES.items()}
    if acled:
        idx["source"] = None  # ACLED's `source` is its news source: kept in the description
        idx["description"] = col("description")
        idx["notes"] = col("notes")
        idx["acled_source"] = col("source")
        idx["event_id"] = col(ACLED_MARKER)
        idx["geo_precision"] = col("geo_precision")
        idx["fatalities"] = col("fatalities")
    required = ["lat", "lon", "occurred_at"] + ([] if acled else ["category"])
    missing = [name for name in required if idx[name] is None]
    if missing:
        accepted = {m: " or ".join(f"'{a}'" for a in CSV_ALIASES[m]) for m in missing}
        raise InvalidInput(
            "required column missing: " + "; ".join(f"{m} ({accepted[m]})" for m in missing),
            errors=[
                {"row": 1, "column": m, "reason": f"required column is missing ({accepted[m]})"}
                for m in missing
            ],
        )
    used = {i for i in idx.values() if i is not None}
    ignored = [h for i, h in enumerate(header) if i not in used and h.strip()]
    # errors name the columns as the file does ('latitude', 'event_date' …)
    labels = {name: header[i].strip() for name, i in idx.items() if i is not None}
    return _Header(idx=idx, labels=labels, width=len(names), acled=acled, ignored=ignored)


def _chain_first(first: str, rest: io.TextIOWrapper) -> Iterator[str]:
    yield first
    yield from rest


class _CountingReader(io.RawIOBase):
    """A raw file that counts the bytes read (for progress)."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb", buffering=0)
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._file.readinto(buffer) or 0
        self.count += n
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


def _make_row_parser(
    idx: dict[str, int | None], labels: dict[str, str], width: int, acled: bool, ctx: _Context
) -> Callable[[list[str], int], Record | None]:
    """The per-row validator for one header (kept flat: it runs for every row)."""
    errors = ctx.errors
    lab = {name: labels.get(name, name) for name in (*CSV_ALIASES, "fatalities", "geo_precision")}
    lab["event_id"] = ACLED_MARKER
    i_lat, i_lon, i_time = idx["lat"], idx["lon"], idx["occurred_at"]
    assert i_lat is not None and i_lon is not None and i_time is not None
    i_cat, i_sev, i_status = idx["category"], idx["severity"], idx["status"]
    i_desc, i_unit, i_prec = idx["description"], idx["unit"], idx["location_precision_m"]
    i_source, i_sid, i_id = idx["source"], idx["source_id"], idx["id"]
    i_notes, i_asrc = idx.get("notes"), idx.get("acled_source")
    i_event, i_geo, i_fat = idx.get("event_id"), idx.get("geo_precision"), idx.get("fatalities")
    default_source = ctx.source_for(acled)
    statuses = set(STATUSES)
    bits = GIVEN_BITS

    def cell(values: list[str], i: int | None) -> str:
        if i is None or i >= len(values):
            return ""
        return values[i].strip()

    def parse(values: list[str], n: int) -> Record | None:
        ok = True
        if len(values) > width and any(v.strip() for v in values[width:]):
            errors.add(
                n,
                None,
                f"row has {len(values)} values but the header names {width} columns "
                "(a text containing the delimiter must be in double quotes)",
            )
            ok = False
        given = 0
        # coordinates
        lat = _coordinate(cell(values, i_lat), lab["lat"], n, errors)
        lon = _coordinate(cell(values, i_lon), lab["lon"], n, errors)
        if lat is None or lon is None:
            ok = False
        else:
            for column, reason in _coordinate_problems(lat, lon):
                errors.add(n, lab[column], reason)
                ok = False
        # time
        raw = cell(values, i_time)
        occurred = ctx.time(raw) if raw else f"{lab['occurred_at']} is empty"
        if isinstance(occurred, str):
            errors.add(n, lab["occurred_at"], occurred)
            ok = False
        # category
        category = "other"
        raw = cell(values, i_cat)
        if raw:
            found = ctx.category(raw)
            if isinstance(found, tuple):
                errors.add(n, lab["category"], found[0])
                ok = False
            else:
                category = found
                given |= bits["category"]
        elif not acled:
            errors.add(n, lab["category"], "category is empty")
            ok = False
        # severity
        severity = DEFAULT_SEVERITY
        raw = cell(values, i_sev)
        if raw:
            whole = _whole(raw)
            if whole is None or not 1 <= whole <= 5:
                errors.add(n, lab["severity"], f"severity '{raw[:20]}' is not a whole number 1..5")
                ok = False
            else:
                severity = whole
                given |= bits["severity"]
        elif acled and (raw := cell(values, i_fat)):
            whole = _whole(raw)
            if whole is None or whole < 0:
                errors.add(
                    n, lab["fatalities"], f"fatalities '{raw[:20]}' is not a whole number ≥ 0"
                )
                ok = False
            else:
                severity = _severity_from_fatalities(whole)
                given |= bits["severity"]
        # status
        status = DEFAULT_STATUS
        raw = cell(values, i_status)
        if raw:
            status = raw.lower().replace(" ", "_").replace("-", "_")
            if status not in statuses:
                errors.add(
                    n, lab["status"], f"status '{raw[:40]}' is not one of {', '.join(STATUSES)}"
                )
                ok = False
            given |= bits["status"]
        # precision
        precision: float | None = None
        raw = cell(values, i_prec)
        if raw:
            number = _number(raw)
            if isinstance(number, str) or not (math.isfinite(number) and 0 <= number <= 100_000):
                errors.add(
                    n,
                    lab["location_precision_m"],
                    f"location_precision_m '{raw[:40]}' is not a number of metres 0..100000",
                )
                ok = False
            else:
                precision = number
                given |= bits["location_precision_m"]
        elif acled and (raw := cell(values, i_geo)):
            whole = _whole(raw)
            if whole not in ACLED_PRECISION_M:
                errors.add(n, lab["geo_precision"], f"geo_precision '{raw[:20]}' is not 1, 2 or 3")
                ok = False
            else:
                precision = ACLED_PRECISION_M[whole]
                given |= bits["location_precision_m"]
        # texts
        description: str | None = cell(values, i_desc) or None
        if acled and description is None:
            notes, news = cell(values, i_notes), cell(values, i_asrc)
            parts = [notes] if notes else []
            if news:
                parts.append(f"Source: {news}")
            description = "\n\n".join(parts) or None
        if description is not None:
            given |= bits["description"]
        unit = cell(values, i_unit) or None
        if unit is not None:
            given |= bits["unit"]
        source = cell(values, i_source) or default_source
        if acled:
            source_id = cell(values, i_event) or None
            if source_id is None:
                errors.add(n, ACLED_MARKER, f"{ACLED_MARKER} is empty")
                ok = False
        else:
            source_id = cell(values, i_sid) or cell(values, i_id) or None
        for name, value in (
            ("description", description),
            ("unit", unit),
            ("source", source),
            ("source_id", source_id),
        ):
            if value is not None and (problem := _text_problem(name, value)):
                errors.add(n, lab["event_id" if acled and name == "source_id" else name], problem)
                ok = False
        if ok and source_id is not None and (dup := ctx.claim(source, source_id, n)):
            errors.add(n, lab["event_id" if acled else "source_id"], dup)
            ok = False
        if not ok:
            return None
        assert isinstance(occurred, datetime) and lat is not None and lon is not None
        return (
            n,
            given,
            category,
            severity,
            status,
            occurred,
            lon,
            lat,
            precision,
            description,
            unit,
            source,
            source_id,
        )

    return parse


class _GeoJsonFile:
    """A GeoJSON FeatureCollection; each Feature validated like POST /incidents."""

    ctx: _Context

    def __init__(self, path: Path) -> None:
        self.path = path
        self.total_bytes = path.stat().st_size
        self.bytes_read = 0
        self._features: list[Any] | None = None

    def open(self) -> None:
        """Parse the document and check its shape (422 when unusable); needs no database."""
        try:
            data = orjson.loads(self.path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"the file is not valid JSON: {exc}", field="body") from exc
        self.bytes_read = self.total_bytes
        if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
            raise InvalidInput("a GeoJSON import must be a FeatureCollection", field="type")
        features = data.get("features")
        if not isinstance(features, list):
            raise InvalidInput("the FeatureCollection has no 'features' list", field="features")
        self._features = features

    def chunks(self, size: int, ctx: _Context) -> Generator[list[Record], None, None]:
        """Valid records, `size` features at a time (invalid ones go to ctx.errors)."""
        features, self._features = self._features, None
        assert features is not None, "open() first"
        self.ctx = ctx
        out: list[Record] = []
        for number, feature in enumerate(features, start=1):
            self.ctx.rows += 1
            record = self._feature(feature, number)
            if record is not None:
                out.append(record)
            if number % size == 0:
                yield out
                out = []
        yield out

    def _feature(self, feature: Any, n: int) -> Record | None:
        ctx, errors = self.ctx, self.ctx.errors
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            errors.add(n, None, "not a GeoJSON Feature")
            return None
        props = feature.get("properties")
        if props is None:
            props = {}
        if not isinstance(props, dict):
            errors.add(n, "properties", "properties must be an object")
            return None
        props = {k: v for k, v in props.items() if k not in READ_ONLY_PROPERTIES}
        given = sum(bit for name, bit in GIVEN_BITS.items() if name in props)
        given |= GIVEN_BITS["category"]
        fid = props.pop("id", None)
        if fid is None:
            fid = feature.get("id")
        usable = isinstance(fid, str | int) and not isinstance(fid, bool) and str(fid).strip()
        if props.get("source_id") is None and usable:
            props["source_id"] = str(fid).strip()
        if props.get("source_id") == "":
            props["source_id"] = None
        if props.get("source") in (None, ""):
            props["source"] = ctx.source_for(acled=False)
        props.setdefault("severity", DEFAULT_SEVERITY)
        category = props.get("category")
        if isinstance(category, str) and category.strip():
            found = ctx.category(category)
            if isinstance(found, tuple):
                errors.add(n, "category", found[0])
                return None
            props["category"] = found
        body = {k: v for k, v in feature.items() if k not in ("id", "properties")}
        body["properties"] = props
        try:
            data = parse_incident(body)
            check_not_future(data.occurred_at, ctx.clock_skew_s)
        except ValidationError as exc:
            for e in exc.errors():
                errors.add(n, _column(e.get("loc", ())), _reason(e.get("msg", "")))
            return None
        ok = True
        for name in ("description", "unit", "source", "source_id"):
            value = getattr(data, name)
            if value is not None and (problem := _text_problem(name, value)):
                errors.add(n, name, problem)
                ok = False
        assert data.source is not None
        if ok and data.source_id is not None and (dup := ctx.claim(data.source, data.source_id, n)):
            errors.add(n, "source_id", dup)
            ok = False
        if not ok:
            return None
        return (
            n,
            given,
            data.category,
            data.severity,
            data.status,
            data.occurred_at,
            data.location.lon,
            data.location.lat,
            data.location_precision_m,
            data.description,
            data.unit,
            data.source,
            data.source_id,
        )


def _column(loc: Any) -> str | None:
    parts = [str(p) for p in loc]
    if not parts:
        return None
    if parts[0] == "location":
        parts[0] = "geometry"
    return ".".join(parts)


def _reason(message: str) -> str:
    return message.removeprefix("Value error, ")


# --------------------------------------------------------------------------------------------
# Writing

STAGING_DDL = """
CREATE TEMP TABLE import_row (
    n integer NOT NULL,
    given smallint NOT NULL,
    category text NOT NULL,
    severity smallint NOT NULL,
    status text NOT NULL,
    occurred_at timestamptz NOT NULL,
    lon float8 NOT NULL,
    lat float8 NOT NULL,
    location_precision_m float8,
    description text,
    unit text,
    source text NOT NULL,
    source_id text
) ON COMMIT DROP
"""
TEMP_TABLES = (
    "import_row", "import_place", "import_todo", "import_xy", "import_near", "import_piece",
    "import_post", "import_cell", "import_cover", "import_jpiece", "import_jur", "import_jnear",
)  # fmt: skip

# Places whose derived fields are already known: an incident with the same (source, source_id)
# at the same point on the same day (a re-import) carries them; the trigger keeps them current.
PLACES_KNOWN = """
CREATE TEMP TABLE import_place ON COMMIT DROP AS
SELECT DISTINCT ON (r.lon, r.lat, r.occurred_at::date)
       r.lon, r.lat, r.occurred_at::date AS day,
       e.country_code, e.province_code, e.jurisdiction_path, e.jurisdiction_method,
       e.border_segment, e.border_distance_km, e.nearest_post_id, e.nearest_post_km
  FROM import_row r
  JOIN incident e ON e.source = r.source AND e.source_id = r.source_id
 WHERE r.source_id IS NOT NULL
   AND ST_X(e.geom) = r.lon AND ST_Y(e.geom) = r.lat
   AND e.occurred_at::date = r.occurred_at::date
"""
PLACES_TODO = """
CREATE TEMP TABLE import_todo ON COMMIT DROP AS
SELECT row_number() OVER (ORDER BY d.lon, d.lat, d.day) AS k, d.lon, d.lat, d.day
  FROM (SELECT DISTINCT r.lon, r.lat, r.occurred_at::date AS day FROM import_row r
        EXCEPT
        SELECT p.lon, p.lat, p.day FROM import_place p) d
"""
XY_TODO = f"""
CREATE TEMP TABLE import_xy ON COMMIT DROP AS
WITH d AS (
    SELECT f.lon, f.lat, f.fx, f.fy, count(*) OVER (PARTITION BY f.fx, f.fy) AS near
      FROM (SELECT t.lon, t.lat, floor(t.lon / {FINE_DEG})::int AS fx,
                   floor(t.lat / {FINE_DEG})::int AS fy
              FROM (SELECT DISTINCT t.lon, t.lat FROM import_todo t) t) f
)
SELECT row_number() OVER (ORDER BY d.lon, d.lat) AS k, d.lon, d.lat, s.deg,
       floor(d.lon / s.deg)::int AS cx, floor(d.lat / s.deg)::int AS cy
  FROM d
 CROSS JOIN LATERAL (SELECT CASE WHEN d.near >= {DENSE_CELL} THEN {FINE_DEG}::float8
                                 ELSE {COARSE_DEG}::float8 END AS deg) s
"""
NEAR_DDL = """
CREATE TEMP TABLE import_near (
    lon float8, lat float8, border_segment text, border_distance_km float8,
    nearest_post_id integer, nearest_post_km float8
) ON COMMIT DROP
"""

# The nearest border piece and border post of each distinct point, with the incident_derive()
# result (migration 0007: the smallest ST_Distance on the spheroid, ties to the lowest id) but
# without a nearest-neighbour index search per point. The points are grouped in cells of
# FINE_DEG or COARSE_DEG degrees. Per cell, from its centre c: r = the distance to the farthest
# corner (+1 %, +10 m); d = the distance to the piece nearest on the sphere (at least the
# smallest distance); the candidates = every piece within (d + 2r) · 1.011 + 10 m of c, with
# that distance. Per point p: ub = its distance to the candidate nearest to c; another candidate
# Q is measured only when its lower bound dist(c, Q) / 1.005 - dist(p, c) - 1 m is at most ub.
# PostGIS's spheroid distance is within 0.5 % of the geodesic one, which obeys the triangle
# inequality: neither step can drop the piece the trigger picks, so the result is the same
# value; only the number of ST_Distance calls changes (1-3 per point instead of an index search
# and 2-3 calls). The same for the border posts.
NEAR_PIECES = """
CREATE TEMP TABLE import_piece ON COMMIT DROP AS
SELECT p.id, s.code, p.geom::geography AS g
  FROM border_segment_piece p JOIN border_segment s ON s.id = p.segment_id
"""
NEAR_POSTS = """
CREATE TEMP TABLE import_post ON COMMIT DROP AS
SELECT p.id, p.geom::geography AS g FROM border_post p
"""


def _clamped_point(lon: str, lat: str) -> str:
    return (
        f"ST_SetSRID(ST_MakePoint(least(180, greatest(-180, {lon})),"
        f" least(90, greatest(-90, {lat}))), 4326)::geography"
    )


NEAR_CELLS = f"""
CREATE TEMP TABLE import_cell ON COMMIT DROP AS
WITH c AS MATERIALIZED (
    SELECT d.cx, d.cy,
           {_clamped_point("(d.cx + 0.5) * d.deg", "(d.cy + 0.5) * d.deg")} AS ctr, d.deg
      FROM (SELECT DISTINCT x.deg, x.cx, x.cy FROM import_xy x) d
), r AS MATERIALIZED (
    SELECT c.deg, c.cx, c.cy, c.ctr,
           (SELECT max(ST_Distance(c.ctr, {
    _clamped_point("(c.cx + v.dx) * c.deg", "(c.cy + v.dy) * c.deg")
}))
              FROM (VALUES (0, 0), (0, 1), (1, 0), (1, 1)) v(dx, dy)) * 1.01 + 10 AS r_m
      FROM c
), b AS MATERIALIZED (
    SELECT r.*,
           (SELECT ST_Distance(q.g, r.ctr) FROM import_piece q
             ORDER BY q.g <-> r.ctr LIMIT 1) AS piece_m,
           (SELECT ST_Distance(q.g, r.ctr) FROM import_post q
             ORDER BY q.g <-> r.ctr LIMIT 1) AS post_m
      FROM r
), reach AS MATERIALIZED (
    SELECT b.deg, b.cx, b.cy, b.ctr, (b.piece_m + 2 * b.r_m) * 1.011 + 10 AS piece_reach,
           (b.post_m + 2 * b.r_m) * 1.011 + 10 AS post_reach
      FROM b
)
SELECT e.deg, e.cx, e.cy, e.ctr, bc.ids AS piece_ids, bc.m AS piece_m, pc.ids AS post_ids,
       pc.m AS post_m
  FROM reach e
 CROSS JOIN LATERAL (
       SELECT array_agg(w.id ORDER BY w.m, w.id) AS ids, array_agg(w.m ORDER BY w.m, w.id) AS m
         FROM (SELECT p.id, ST_Distance(p.g, e.ctr) AS m FROM import_piece p
                WHERE ST_DWithin(p.g, e.ctr, e.piece_reach * 1.01 + 10, false) OFFSET 0) w
        WHERE w.m <= e.piece_reach) bc
 CROSS JOIN LATERAL (
       SELECT array_agg(w.id ORDER BY w.m, w.id) AS ids, array_agg(w.m ORDER BY w.m, w.id) AS m
         FROM (SELECT p.id, ST_Distance(p.g, e.ctr) AS m FROM import_post p
                WHERE ST_DWithin(p.g, e.ctr, e.post_reach * 1.01 + 10, false) OFFSET 0) w
        WHERE w.m <= e.post_reach) pc
"""

# (the candidate lists hold ids and distances only: geographies in them made every point copy
# and decompress kilobytes)
DERIVE_NEAR = """
INSERT INTO import_near
WITH x AS MATERIALIZED (
    SELECT x.lon, x.lat, g.pt, x.deg, x.cx, x.cy, ST_Distance(g.pt, c.ctr) AS pc_m,
           ST_Distance(b0.g, g.pt) AS piece_ub, ST_Distance(p0.g, g.pt) AS post_ub
      FROM import_xy x
      JOIN import_cell c ON c.deg = x.deg AND c.cx = x.cx AND c.cy = x.cy
     CROSS JOIN LATERAL (SELECT ST_SetSRID(ST_MakePoint(x.lon, x.lat), 4326)::geography AS pt) g
      LEFT JOIN import_piece b0 ON b0.id = c.piece_ids[1]
      LEFT JOIN import_post p0 ON p0.id = c.post_ids[1]
     WHERE x.k BETWEEN :lo AND :hi
)
SELECT x.lon, x.lat, b.code, b.m / 1000.0, po.id, po.m / 1000.0
  FROM x
  JOIN import_cell c ON c.deg = x.deg AND c.cx = x.cx AND c.cy = x.cy
  LEFT JOIN LATERAL (
       SELECT (SELECT p.code FROM import_piece p WHERE p.id = q.id) AS code, q.id,
              CASE WHEN q.i = 1 THEN x.piece_ub
                   ELSE (SELECT ST_Distance(p.g, x.pt) FROM import_piece p WHERE p.id = q.id)
              END AS m
         FROM unnest(c.piece_ids, c.piece_m) WITH ORDINALITY AS q(id, cm, i)
        WHERE q.i = 1 OR q.cm / 1.005 - x.pc_m - 1 <= x.piece_ub
        ORDER BY 3, q.id
        LIMIT 1) b ON true
  LEFT JOIN LATERAL (
       SELECT q.id,
              CASE WHEN q.i = 1 THEN x.post_ub
                   ELSE (SELECT ST_Distance(p.g, x.pt) FROM import_post p WHERE p.id = q.id)
              END AS m
         FROM unnest(c.post_ids, c.post_m) WITH ORDINALITY AS q(id, cm, i)
        WHERE q.i = 1 OR q.cm / 1.005 - x.pc_m - 1 <= x.post_ub
        ORDER BY 2, q.id
        LIMIT 1) po ON true
"""

# The jurisdiction pieces that cover each distinct point (the trigger's ST_Covers over the
# indexed pieces), once per point whatever the number of days it appears on.
JURISDICTION_COVER = """
CREATE TEMP TABLE import_cover ON COMMIT DROP AS
SELECT x.lon, x.lat,
       array(SELECT p.id FROM jurisdiction_piece p
              WHERE ST_Covers(p.geom, ST_SetSRID(ST_MakePoint(x.lon, x.lat), 4326))) AS ids
  FROM import_xy x
"""
JURISDICTION_PIECES = """
CREATE TEMP TABLE import_jpiece ON COMMIT DROP AS
SELECT p.id, p.code, p.level, p.country, p.valid_from, p.valid_to FROM jurisdiction_piece p
"""

# The jurisdiction of each distinct (point, day), as incident_derive() sets it: among the
# covering pieces, one per level (preferring the version valid on that day, then the latest,
# then the lowest code), else the nearest province within 22 224 m among the 16 nearest province
# pieces. Before the geodesic ST_DWithin, a candidate whose planar distance (degrees) already
# proves it farther than 22 224 m is dropped: that test only removes candidates the trigger
# would reject (the bound uses the smallest meridian radius, the highest latitude the geodesic
# can reach, and a 2 % margin), and saves the geodesic test far at sea. The province is the
# first code of the path that names a province (the trigger takes a province whose code is in
# the path: the same, as a path holds one code per level).
JURISDICTION_PICK = """
CREATE TEMP TABLE import_jur ON COMMIT DROP AS
SELECT pick.k, array_agg(pick.code ORDER BY pick.rank) AS path, max(pick.country) AS country,
       (array_agg(pick.code ORDER BY pick.rank) FILTER (WHERE pick.is_province))[1] AS province
  FROM (SELECT DISTINCT ON (t.k, p.level) t.k, p.code, p.country,
               array_position(ARRAY['country','province','district','commune'], p.level::text)
                   AS rank,
               p.code IN (SELECT jj.code FROM jurisdiction jj WHERE jj.level = 'province')
                   AS is_province
          FROM import_todo t
          JOIN import_cover cv ON cv.lon = t.lon AND cv.lat = t.lat
         CROSS JOIN LATERAL unnest(cv.ids) AS q(id)
          JOIN import_jpiece p ON p.id = q.id
         ORDER BY t.k, p.level,
                  (coalesce(p.valid_from, '-infinity'::date) <= t.day
                   AND t.day < coalesce(p.valid_to, 'infinity'::date)) DESC,
                  p.valid_from DESC NULLS LAST, p.code) pick
 GROUP BY pick.k
"""
JURISDICTION_NEAREST = """
CREATE TEMP TABLE import_jnear ON COMMIT DROP AS
SELECT t.k, c.code, c.country
  FROM (SELECT t.k, t.lon, t.lat, ST_SetSRID(ST_MakePoint(t.lon, t.lat), 4326) AS geom
          FROM import_todo t
         WHERE NOT EXISTS (SELECT 1 FROM import_jur j WHERE j.k = t.k)) t
 CROSS JOIN LATERAL (
       SELECT c.code, c.country
         FROM (SELECT p.code, p.country, p.geom, p.geom <-> t.geom AS deg
                 FROM jurisdiction_piece p
                WHERE p.level = 'province'
                ORDER BY p.geom <-> t.geom LIMIT 16) c
        WHERE (abs(t.lon) > 179
               OR radians(c.deg) * 6335439 * cos(radians(least(abs(t.lat) + 0.25, 89)))
                  <= 22224 * 1.02)
          AND ST_DWithin(c.geom::geography, t.geom::geography, 22224)
        ORDER BY ST_Distance(c.geom::geography, t.geom::geography), c.code
        LIMIT 1) c
"""
DERIVE_PLACE = """
INSERT INTO import_place
SELECT t.lon, t.lat, t.day,
       CASE WHEN j.path IS NOT NULL THEN j.country ELSE nr.country END,
       CASE WHEN j.path IS NOT NULL THEN j.province ELSE nr.code END,
       CASE WHEN j.path IS NOT NULL THEN j.path
            WHEN nr.code IS NOT NULL THEN ARRAY[nr.country, nr.code] END,
       CASE WHEN j.path IS NOT NULL THEN 'contains'
            WHEN nr.code IS NOT NULL THEN 'nearest' END,
       n.border_segment, n.border_distance_km, n.nearest_post_id, n.nearest_post_km
  FROM import_todo t
  JOIN import_near n ON n.lon = t.lon AND n.lat = t.lat
  LEFT JOIN import_jur j ON j.k = t.k
  LEFT JOIN import_jnear nr ON nr.k = t.k
"""

DERIVED_COLUMNS = (
    "country_code",
    "province_code",
    "jurisdiction_path",
    "jurisdiction_method",
    "border_segment",
    "border_distance_km",
    "nearest_post_id",
    "nearest_post_km",
)


def _upsert_sql(given: int, *, set_based: bool) -> str:
    """INSERT ... SELECT ... ON CONFLICT for the staged rows that carry the fields in `given`."""
    carried = [name for name, bit in GIVEN_BITS.items() if given & bit]
    compared = ["occurred_at", "geom", *carried]
    derived = DERIVED_COLUMNS if set_based else ()
    columns = [
        "category",
        "severity",
        "status",
        "occurred_at",
        "geom",
        "location_precision_m",
        "description",
        "unit",
        "source",
        "source_id",
        "created_by",
        "updated_by",
        *derived,
    ]
    values = [
        "r.category",
        "r.severity",
        "r.status",
        "r.occurred_at",
        "ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326)",
        "r.location_precision_m",
        "r.description",
        "r.unit",
        "r.source",
        "r.source_id",
        ":actor",
        ":actor",
        *(f"pl.{c}" for c in derived),
    ]
    join = (
        "JOIN import_place pl ON pl.lon = r.lon AND pl.lat = r.lat AND pl.day = r.occurred_at::date"
        if set_based
        else ""
    )
    sets = [f"{c} = EXCLUDED.{c}" for c in (*compared, *derived)]
    sets += ["version = i.version + 1", "updated_at = now()", "updated_by = EXCLUDED.updated_by"]
    old = ", ".join(f"i.{c}" for c in compared)
    new = ", ".join(f"EXCLUDED.{c}" for c in compared)
    return f"""
WITH w AS (
    INSERT INTO incident AS i ({", ".join(columns)})
    SELECT {", ".join(values)}
      FROM import_row r {join}
     WHERE r.given = :given AND r.n BETWEEN :lo AND :hi
     ORDER BY r.n
    ON CONFLICT (source, source_id) WHERE source_id IS NOT NULL DO UPDATE
       SET {", ".join(sets)}
     WHERE i.deleted_at IS NULL AND ({old}) IS DISTINCT FROM ({new})
    RETURNING (i.xmax = 0) AS fresh
)
SELECT count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh) FROM w
"""


async def _categories(session: AsyncSession) -> dict[str, tuple[str, bool]]:
    rows = await session.execute(text("SELECT code, name_en, name_vi, active FROM category"))
    names: dict[str, tuple[str, bool]] = {}
    for code, name_en, name_vi, active in rows.all():
        for key in (name_vi, name_en, code):
            names[_fold(key)] = (code, bool(active))
    return names


def _ranges(first: int, last: int, step: int) -> Iterator[tuple[int, int]]:
    lo = first
    while lo <= last:
        yield lo, min(lo + step - 1, last)
        lo += step


class _Clock:
    """Adds up the wall time of each named step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[step] = self.seconds.get(step, 0.0) + elapsed


async def _derive(session: AsyncSession, progress: Progress, clock: _Clock) -> None:
    """Fill import_place with the derived fields of every distinct (point, day) staged."""
    with clock("derive: cells"):
        await _prepare_places(session)
    points = int((await session.execute(text("SELECT count(*) FROM import_xy"))).scalar_one())
    places = int((await session.execute(text("SELECT count(*) FROM import_todo"))).scalar_one())
    total = points + places
    progress("deriving", 0, total)
    with clock("derive: border and post"):
        for lo, hi in _ranges(1, points, DERIVE_BATCH):
            await session.execute(text(DERIVE_NEAR), {"lo": lo, "hi": hi})
            progress("deriving", hi, total)
        await session.execute(text("CREATE INDEX ON import_near (lon, lat)"))
        await session.execute(text("ANALYZE import_near"))
    with clock("derive: jurisdiction"):
        await session.execute(text(JURISDICTION_COVER))
        await session.execute(text("CREATE INDEX ON import_cover (lon, lat)"))
        await session.execute(text("ANALYZE import_cover"))
        await session.execute(text(JURISDICTION_PIECES))
        await session.execute(text("CREATE UNIQUE INDEX ON import_jpiece (id)"))
        await session.execute(text("ANALYZE import_jpiece"))
        await session.execute(text(JURISDICTION_PICK))
        await session.execute(text("CREATE UNIQUE INDEX ON import_jur (k)"))
        await session.execute(text("ANALYZE import_jur"))
        await session.execute(text(JURISDICTION_NEAREST))
        await session.execute(text("CREATE UNIQUE INDEX ON import_jnear (k)"))
        await session.execute(text("ANALYZE import_jnear"))
        await session.execute(text(DERIVE_PLACE))
        progress("deriving", total, total)
        await session.execute(text("CREATE INDEX ON import_place (lon, lat, day)"))
        await session.execute(text("ANALYZE import_place"))


async def _prepare_places(session: AsyncSession) -> None:
    """The places to derive, the distinct points among them, and the cells of those points."""
    await session.execute(text(PLACES_KNOWN))
    await session.execute(text(PLACES_TODO))
    await session.execute(text(XY_TODO))
    await session.execute(text(NEAR_DDL))
    await session.execute(text("CREATE INDEX ON import_todo (k)"))
    await session.execute(text("ANALYZE import_todo"))
    await session.execute(text("CREATE INDEX ON import_xy (k)"))
    await session.execute(text("ANALYZE import_xy"))
    await session.execute(text(NEAR_PIECES))
    await session.execute(text(NEAR_POSTS))
    for table in ("import_piece", "import_post"):
        await session.execute(text(f"CREATE INDEX ON {table} USING gist (g)"))
        await session.execute(text(f"CREATE UNIQUE INDEX ON {table} (id)"))
        await session.execute(text(f"ANALYZE {table}"))
    await session.execute(text(NEAR_CELLS))
    await session.execute(text("CREATE INDEX ON import_cell (deg, cx, cy)"))
    await session.execute(text("ANALYZE import_cell"))


async def _upsert(
    session: AsyncSession, *, actor: str, set_based: bool, progress: Progress
) -> tuple[int, int, int]:
    """Write the staged rows; (staged, inserted, updated)."""
    stats = (
        await session.execute(
            text("SELECT count(*), coalesce(min(n), 0), coalesce(max(n), -1) FROM import_row")
        )
    ).one()
    staged, first, last = int(stats[0]), int(stats[1]), int(stats[2])
    groups = [
        int(g)
        for g in (
            await session.execute(text("SELECT DISTINCT given FROM import_row ORDER BY given"))
        ).scalars()
    ]
    batches = [(g, lo, hi) for g in groups for lo, hi in _ranges(first, last, WRITE_BATCH)]
    inserted = updated = 0
    progress("writing", 0, staged)
    for done, (given, lo, hi) in enumerate(batches, start=1):
        sql = text(_upsert_sql(given, set_based=set_based))
        fresh, changed = (
            await session.execute(sql, {"given": given, "lo": lo, "hi": hi, "actor": actor})
        ).one()
        inserted += int(fresh)
        updated += int(changed)
        progress("writing", staged * done // len(batches), staged)
    return staged, inserted, updated


async def _stage(
    session: AsyncSession,
    reader: _CsvFile | _GeoJsonFile,
    ctx: _Context,
    *,
    keep_going: bool,
    progress: Progress,
) -> None:
    """Validate the file chunk by chunk in a worker thread and COPY the valid rows to staging
    (after the first invalid row only when `keep_going`: the rest is read for the report)."""
    raw = await session.connection()
    conn = (await raw.get_raw_connection()).driver_connection
    assert conn is not None
    chunks = reader.chunks(CHUNK_ROWS, ctx)
    progress("reading", 0, reader.total_bytes)
    # the next chunk is validated while the server stores the previous one
    ahead = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
    try:
        while (records := await ahead) is not None:
            ahead = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
            progress("reading", reader.bytes_read, reader.total_bytes)
            progress("validating", ctx.rows, None)
            if records and (keep_going or not ctx.errors.total):
                await conn.copy_records_to_table(
                    "import_row", records=records, columns=STAGING_COLUMNS
                )
    finally:
        with contextlib.suppress(BaseException):  # after an error: the worker ends its chunk
            await asyncio.shield(ahead)
        with contextlib.suppress(ValueError):  # still running in its thread after a cancel
            chunks.close()
    progress("validating", ctx.rows, ctx.rows)


def _no_progress(phase: str, done: int, total: int | None) -> None:
    return None


async def import_file(
    *,
    session: AsyncSession,
    path: Path,
    fmt: Format,
    mode: Mode = "all_or_nothing",
    source: str | None = None,
    actor: str,
    clock_skew_s: int = 300,
    progress: Progress | None = None,
    set_based: bool = True,
) -> ImportReport:
    """Validate a CSV or GeoJSON file and upsert its incidents in one transaction."""
    report = progress or _no_progress
    clock = _Clock()
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}", field="mode")
    if source is not None and not 1 <= len(source.strip()) <= MAX_TEXT["source"]:
        raise InvalidInput("source must be 1 to 64 characters", field="source")
    reader: _CsvFile | _GeoJsonFile = _CsvFile(path) if fmt == "csv" else _GeoJsonFile(path)
    # the header (CSV) or the whole document (GeoJSON) is parsed before the session is used:
    # no transaction is open while a large or wide file is read
    with clock("parse header or document"):
        await asyncio.to_thread(reader.open)
    try:
        ctx = _Context(
            categories=await _categories(session),
            default_source=source.strip() if source else None,
            latest=datetime.now(UTC) + timedelta(seconds=clock_skew_s),
            clock_skew_s=clock_skew_s,
        )
        await session.execute(
            text(
                "SELECT set_config('borderwatch.actor', :actor, true),"
                " set_config('borderwatch.action', 'import', true),"
                " set_config('borderwatch.bulk', :bulk, true)"
            ),
            {"actor": actor, "bulk": "on" if set_based else "off"},
        )
        for name in TEMP_TABLES:
            await session.execute(text(f"DROP TABLE IF EXISTS pg_temp.{name}"))
        await session.execute(text(STAGING_DDL))
        with clock("read, validate, copy"):
            await _stage(session, reader, ctx, keep_going=mode == "skip_invalid", progress=report)
        errors = ctx.errors
        if errors.total and mode == "all_or_nothing":
            raise InvalidInput(
                f"{len(errors.bad_rows)} of {ctx.rows} rows are invalid: nothing was imported "
                "(fix them, or import in skip_invalid mode to write the valid rows)",
                rows=ctx.rows,
                invalid_rows=len(errors.bad_rows),
                errors=errors.entries,
                more_errors=errors.more,
            )
        await session.execute(text("CREATE INDEX ON import_row (n)"))
        await session.execute(text("ANALYZE import_row"))
        if set_based:
            await _derive(session, report, clock)
        with clock("write"):
            staged, inserted, updated = await _upsert(
                session, actor=actor, set_based=set_based, progress=report
            )
        for name in TEMP_TABLES:
            await session.execute(text(f"DROP TABLE IF EXISTS pg_temp.{name}"))
        await session.execute(
            text(
                "SELECT set_config('borderwatch.action', '', true),"
                " set_config('borderwatch.bulk', '', true)"
            )
        )
        with clock("commit"):
            await session.commit()
    except BaseException:
        await session.rollback()
        raise
    return ImportReport(
        mode=mode,
        rows=ctx.rows,
        inserted=inserted,
        updated=updated,
        unchanged=staged - inserted - updated,
        skipped=len(errors.bad_rows),
        errors=errors.entries,
        more_errors=errors.more,
        ignored_columns=ctx.ignored_columns,
        timings=clock.seconds,
    )
