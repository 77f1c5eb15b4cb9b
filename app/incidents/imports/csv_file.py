"""CSV files (Borderwatch's own columns, or an ACLED export): the header resolved to incident
fields, then the rows read as records, a chunk at a time, each checked by rows.RowChecker."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import InvalidInput
from app.incidents.imports import acled
from app.incidents.imports.rows import Context, Record, RowChecker

# The widest CSV header accepted (ACLED has 31 columns), and the longest header line: a wider
# one is refused (422) before anything else is read.
MAX_CSV_COLUMNS = 10_000
MAX_HEADER_CHARS = 1 << 20

# CSV header names (case-insensitive) for each incident field, the preferred first.
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
    "id": ("id",),  # the source_id of rows that have none
}
REQUIRED = ("lat", "lon", "occurred_at", "category")
NOT_REQUIRED_IN_ACLED = ("category",)


@dataclass(frozen=True)
class Header:
    """A CSV header resolved to incident fields."""

    idx: dict[str, int | None]  # field -> column index
    labels: dict[str, str]  # field -> the column's name as the file writes it
    width: int
    acled: bool
    ignored: list[str]


class CsvFile:
    """A CSV file read record by record, with its header resolved to incident fields."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.total_bytes = path.stat().st_size
        self._raw: _CountingReader | None = None
        self.header: Header | None = None

    @property
    def bytes_read(self) -> int:
        """Bytes read so far (for progress)."""
        return self._raw.count if self._raw is not None else 0

    def open(self) -> None:
        """Read and resolve the header (422 when it is unusable); needs no database."""
        with self._stream() as stream:
            self.header = resolve_header(_header_row(stream)[1])

    def chunks(self, size: int, ctx: Context) -> Generator[list[Record], None, None]:
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
    def _records(
        stream: io.TextIOWrapper, size: int, ctx: Context, header: Header
    ) -> Iterator[list[Record]]:
        reader, _ = _header_row(stream)
        cells_of = _cell_reader(header, ctx)
        check = RowChecker(ctx, labels=header.labels, acled=header.acled)
        out: list[Record] = []
        for index, values in enumerate(reader):
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # a blank line: not a row, but it keeps its row number
            ctx.rows += 1
            n = index + 2
            cells = cells_of(values, n)
            if cells is not None and (record := check(cells, n)) is not None:
                out.append(record)
            if ctx.rows % size == 0:
                yield out
                out = []
        yield out


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
        reason = f"the header names {len(header)} columns: at most {MAX_CSV_COLUMNS} are accepted"
        raise InvalidInput(
            reason, limit=MAX_CSV_COLUMNS, errors=[{"row": 1, "column": None, "reason": reason}]
        )
    return reader, header


def resolve_header(header: list[str]) -> Header:
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
    is_acled = acled.MARKER in position
    idx = {
        name: next((position[a] for a in aliases if a in position), None)
        for name, aliases in CSV_ALIASES.items()
    }
    if is_acled:
        idx["id"] = None
        idx.update(acled.columns(position))
    required = [r for r in REQUIRED if not (is_acled and r in NOT_REQUIRED_IN_ACLED)]
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
    if idx["source_id"] is None and idx["id"] is not None:
        labels["source_id"] = labels["id"]
    return Header(idx=idx, labels=labels, width=len(names), acled=is_acled, ignored=ignored)


def _cell_reader(header: Header, ctx: Context) -> Callable[[list[str], int], dict[str, str] | None]:
    """A function from one row's values to its non-empty cells by field (None, and an error,
    when the row has more values than the header names columns); kept flat: it runs per row."""
    idx, width, errors = header.idx, header.width, ctx.errors
    plain = [
        (name, i)
        for name, i in idx.items()
        if i is not None and name not in ("status", "id", "notes", "news_source")
    ]
    i_status, i_id = idx["status"], idx["id"]
    i_notes, i_news = idx.get("notes"), idx.get("news_source")
    is_acled = header.acled

    def cells_of(values: list[str], n: int) -> dict[str, str] | None:
        count = len(values)
        if count > width and any(v.strip() for v in values[width:]):
            errors.add(
                n,
                None,
                f"row has {count} values but the header names {width} columns "
                "(a text containing the delimiter must be in double quotes)",
            )
            return None
        cells: dict[str, Any] = {}
        for name, i in plain:
            if i < count and (value := values[i].strip()):
                cells[name] = value
        if i_status is not None and i_status < count and (value := values[i_status].strip()):
            cells["status"] = value.lower().replace(" ", "_").replace("-", "_")
        if (
            "source_id" not in cells
            and i_id is not None
            and i_id < count
            and (value := values[i_id].strip())
        ):
            cells["source_id"] = value
        if is_acled:
            if "description" not in cells:
                notes = values[i_notes].strip() if i_notes is not None and i_notes < count else ""
                news = values[i_news].strip() if i_news is not None and i_news < count else ""
                if text := acled.description(notes, news):
                    cells["description"] = text
            if "severity" in cells:
                cells.pop("fatalities", None)
            if "location_precision_m" in cells:
                cells.pop("geo_precision", None)
        return cells

    return cells_of


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
