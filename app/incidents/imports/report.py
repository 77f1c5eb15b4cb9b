"""What an import reports: the row errors it found, its answer, and where its time went."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["all_or_nothing", "skip_invalid"]
MODES: tuple[Mode, ...] = ("all_or_nothing", "skip_invalid")
MAX_REPORTED_ERRORS = 1000
# (phase, done, total): "reading" counts bytes, the other phases rows or places
Progress = Callable[[str, int, int | None], None]


def no_progress(phase: str, done: int, total: int | None) -> None:
    """A progress callback that shows nothing."""
    return None


class RowErrors:
    """Row errors: the first MAX_REPORTED_ERRORS entries, the total, and the invalid rows."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.total = 0
        self.bad_rows: set[int] = set()

    def add(self, row: int, column: str | None, reason: str) -> None:
        """Record one problem of row `row` (`column` None: the row as a whole)."""
        self.total += 1
        self.bad_rows.add(row)
        if len(self.entries) < MAX_REPORTED_ERRORS:
            self.entries.append({"row": row, "column": column, "reason": reason})

    @property
    def more(self) -> int:
        """How many errors were found beyond the reported ones."""
        return self.total - len(self.entries)


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
    # the IANA zone that times written without an offset were read in
    time_zone: str
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
            "time_zone": self.time_zone,
        }


class Clock:
    """Adds up the wall time of each named step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        """Time the block as (part of) `step`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(step, time.perf_counter() - started)

    def add(self, step: str, seconds: float) -> None:
        """Count `seconds` towards `step`."""
        self.seconds[step] = self.seconds.get(step, 0.0) + seconds
