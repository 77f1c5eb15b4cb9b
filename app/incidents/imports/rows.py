"""One imported row checked against the incident rules (app/incidents/rules.py) and turned into
the staging record, or into row errors worded for a spreadsheet user.

A CSV reader hands over the non-empty cells of a row as a dict of text; one TypeAdapter call
parses and checks every field with the same types as POST /incidents (in pydantic-core: faster
than the hand-written checks it replaced, docs/performance.md 2026-12-06).
What the types cannot know is checked here: the category (a code or a name, and in use), the
time window, a (source, source_id) pair used twice in one file.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Required, get_args

from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from app.incidents import rules
from app.incidents.imports.report import RowErrors

DEFAULT_SOURCE = "import"
ACLED_SOURCE = "acled"
DERIVED_CATEGORY = "other"  # an ACLED row without a category column
# the hint when a latitude out of range would be a valid longitude and the other way round
SWAPPED_HINT = "latitude and longitude look swapped"
TIME_EXAMPLES = "e.g. 2024-05-01 or 2024-05-01T08:30:00+07:00"

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
TEXT_FIELDS = ("description", "unit", "source", "source_id")

# (n, given, category, severity, status, occurred_at, lon, lat, location_precision_m,
#  description, unit, source, source_id) — the staging table's columns, in order.
Record = tuple[
    int, int, str, int, str, datetime, float, float, float | None, str | None, str | None, str,
    str | None,
]  # fmt: skip


def _time(value: Any) -> datetime:
    """An ISO 8601 date or time (no offset: the deployment's zone, rules.localized), or
    ACLED's '15 January 2024'; in UTC."""
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            try:
                parsed = datetime.strptime(text, "%d %B %Y")
            except ValueError:
                raise ValueError(
                    f"'{text[:40]}' is not an ISO 8601 date or time ({TIME_EXAMPLES})"
                ) from None
    try:
        parsed = rules.localized(parsed).astimezone(UTC)  # no offset: the deployment's zone
    except OverflowError:
        raise ValueError(f"occurred_at {str(value)[:40]} is out of range") from None
    if (problem := rules.time_problem(parsed)) is not None:
        raise ValueError(problem.replace("occurred_at", f"occurred_at {str(value)[:40]}", 1))
    return parsed


class RowFields(TypedDict, total=False):
    """The fields of one row as a reader found them (text; absent when the cell is empty)."""

    lat: Required[rules.Latitude]
    lon: Required[rules.Longitude]
    occurred_at: Required[Annotated[datetime, BeforeValidator(_time)]]
    category: str
    severity: rules.Severity
    status: rules.Status
    location_precision_m: rules.PrecisionM
    description: rules.Description
    unit: rules.Unit
    source: rules.SourceName
    source_id: rules.SourceId
    # ACLED's columns, mapped to severity and precision when the row has none
    fatalities: Annotated[int, Field(ge=0)]
    geo_precision: Annotated[int, Field(ge=1, le=3)]


ROW = TypeAdapter(RowFields)
ACLED_PRECISION_M = {1: 1000.0, 2: 10000.0, 3: 50000.0}


def severity_from_fatalities(fatalities: int) -> int:
    """ACLED fatalities to severity: 0 → 2, 1–2 → 3, 3–9 → 4, 10 or more → 5."""
    if fatalities == 0:
        return 2
    if fatalities <= 2:
        return 3
    if fatalities <= 9:
        return 4
    return 5


def fold(value: str) -> str:
    """A category name as it is looked up: NFC, trimmed, case-folded."""
    return unicodedata.normalize("NFC", value).strip().casefold()


@dataclass
class Context:
    """What validation needs (categories, the default source, the time window) and what it
    finds (rows, errors, the (source, source_id) pairs seen)."""

    categories: dict[str, tuple[str, bool]]  # folded code or name -> (code, active)
    default_source: str | None
    latest: datetime
    clock_skew_s: int
    errors: RowErrors = field(default_factory=RowErrors)
    seen: dict[tuple[str, str], int] = field(default_factory=dict)
    rows: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    _cats: dict[str, str | tuple[str]] = field(default_factory=dict)

    def source_for(self, acled: bool) -> str:
        """The source of rows that name none."""
        return self.default_source or (ACLED_SOURCE if acled else DEFAULT_SOURCE)

    def category(self, raw: str) -> str | tuple[str]:
        """The code for a code or name; a 1-tuple holding the reason when unknown."""
        hit = self._cats.get(raw)
        if hit is None:
            found = self.categories.get(fold(raw))
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

    def claim(self, source: str, source_id: str, row: int) -> str | None:
        """Register (source, source_id); the reason when an earlier row has it already."""
        first = self.seen.setdefault((source, source_id), row)
        if first != row:
            return f"source_id '{source_id[:80]}' already appears on row {first}"
        return None


class RowChecker:
    """Turns the cells of one row into a Record, or adds its errors to the context."""

    def __init__(self, ctx: Context, *, labels: dict[str, str], acled: bool) -> None:
        self.ctx = ctx
        self.labels = labels  # field -> the column as the file names it
        self.acled = acled
        self.default_source = ctx.source_for(acled)

    def __call__(self, cells: dict[str, str], n: int) -> Record | None:
        """The record of row `n` (its non-empty cells by field), or None when it is invalid;
        every problem of an invalid row is reported."""
        ctx = self.ctx
        try:
            row = ROW.validate_python(cells)
        except ValidationError as exc:
            failed = set()
            for error in exc.errors(include_url=False):
                name = str(error["loc"][0]) if error["loc"] else ""
                failed.add(name)
                ctx.errors.add(n, self._label(name), self._reason(name, error, cells))
            self._checked_category(cells, n)
            self._other_problems(cells, n)
            if "occurred_at" not in failed:
                self._not_future(_time(cells["occurred_at"]), cells, n)
            return None
        category = self._checked_category(cells, n)
        problems = self._other_problems(cells, n)
        if not self._not_future(row["occurred_at"], cells, n) or category is None or problems:
            return None
        source = row.get("source") or self.default_source
        source_id = row.get("source_id")
        if source_id is not None and (dup := ctx.claim(source, source_id, n)):
            ctx.errors.add(n, self._label("source_id"), dup)
            return None
        return self._record(n, row, category, "category" in cells, source, source_id)

    def _checked_category(self, cells: dict[str, str], n: int) -> str | None:
        """The category code of the row (ACLED rows may have none), or None after an error."""
        raw = cells.get("category")
        if raw is None:
            if self.acled:
                return DERIVED_CATEGORY
            self.ctx.errors.add(n, self._label("category"), "category is empty")
            return None
        found = self.ctx.category(raw)
        if isinstance(found, tuple):
            self.ctx.errors.add(n, self._label("category"), found[0])
            return None
        return found

    def _other_problems(self, cells: dict[str, str], n: int) -> bool:
        """Reports a missing ACLED event id and NUL characters in texts; whether there were."""
        problems = False
        if self.acled and "source_id" not in cells:
            self.ctx.errors.add(n, self._label("source_id"), f"{self._label('source_id')} is empty")
            problems = True
        for name in TEXT_FIELDS:
            value = cells.get(name)
            if value is not None and "\x00" in value:
                self.ctx.errors.add(n, self._label(name), f"{name} contains a NUL character")
                problems = True
        return problems

    def _not_future(self, occurred: datetime, cells: dict[str, str], n: int) -> bool:
        if occurred <= self.ctx.latest:
            return True
        reason = f"occurred_at {cells['occurred_at'][:40]} is in the future"
        self.ctx.errors.add(n, self._label("occurred_at"), reason)
        return False

    @staticmethod
    def _record(
        n: int,
        row: RowFields,
        category: str,
        category_given: bool,
        source: str,
        source_id: str | None,
    ) -> Record:
        given = GIVEN_BITS["category"] if category_given else 0
        severity = row.get("severity")
        if severity is None and "fatalities" in row:
            severity = severity_from_fatalities(row["fatalities"])
        precision = row.get("location_precision_m")
        if precision is None and "geo_precision" in row:
            precision = ACLED_PRECISION_M[row["geo_precision"]]
        status, description, unit = row.get("status"), row.get("description"), row.get("unit")
        for name, value in (
            ("severity", severity),
            ("status", status),
            ("location_precision_m", precision),
            ("description", description),
            ("unit", unit),
        ):
            if value is not None:
                given |= GIVEN_BITS[name]
        return (
            n,
            given,
            category,
            rules.DEFAULT_SEVERITY if severity is None else severity,
            status or rules.DEFAULT_STATUS,
            row["occurred_at"],
            row["lon"],
            row["lat"],
            precision,
            description,
            unit,
            source,
            source_id,
        )

    def _label(self, name: str) -> str:
        return self.labels.get(name, name)

    def _reason(self, name: str, error: Any, cells: dict[str, str]) -> str:
        """A pydantic error as the import words it (the limits come from the error)."""
        kind, ctx = error["type"], error.get("ctx") or {}
        raw = str(cells.get(name, ""))[:40]
        if kind == "missing":
            return f"{self._label(name)} is empty"
        if kind == "value_error":
            return str(error["msg"]).removeprefix("Value error, ")
        if name in ("lat", "lon"):
            if kind == "float_parsing":
                return _not_a_number(raw)
            value = float(cells[name])
            if name == "lon":
                return rules.longitude_problem(value) or str(error["msg"])
            lon = _number_or_none(cells.get("lon"))
            return rules.latitude_problem(value, lon, swapped_hint=SWAPPED_HINT) or str(
                error["msg"]
            )
        if kind == "string_too_long":
            return f"{name} is longer than {ctx['max_length']} characters"
        if name == "severity":
            return (
                f"severity '{raw[:20]}' is not a whole number "
                f"{rules.SEVERITY_MIN}..{rules.SEVERITY_MAX}"
            )
        if name == "status":
            return f"status '{raw}' is not one of {', '.join(get_args(rules.Status))}"
        if name == "location_precision_m":
            return (
                f"location_precision_m '{raw}' is not a number of metres 0..{rules.PRECISION_MAX_M}"
            )
        if name == "fatalities":
            return f"fatalities '{raw[:20]}' is not a whole number ≥ 0"
        if name == "geo_precision":
            *codes, last = sorted(ACLED_PRECISION_M)
            return f"geo_precision '{raw[:20]}' is not {', '.join(map(str, codes))} or {last}"
        return str(error["msg"])


def _not_a_number(raw: str) -> str:
    if raw.count(",") == 1 and raw.replace(",", "", 1).replace("-", "", 1).isdigit():
        return f"'{raw}' is not a number: use a dot as the decimal separator"
    return f"'{raw}' is not a number"


def _number_or_none(raw: str | None) -> float | None:
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None
