"""Loading boundary data and border posts, and deriving borders and adjacency from them."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyogrio
import shapely
from shapely.geometry import MultiPolygon
from sqlalchemy import delete, func, insert, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as audit
from app.auth.scope import clear_zones
from app.borders import service as borders
from app.config import PROJECT_ROOT, Settings
from app.errors import InvalidInput
from app.geo import spatial
from app.jurisdictions import eras
from app.jurisdictions import service as jurisdictions
from app.jurisdictions.models import LEVELS, Jurisdiction
from app.posts import service as posts
from app.posts.models import KINDS

GEODATA = PROJECT_ROOT / "geodata"
DEFAULT_BOUNDARIES = GEODATA / "jurisdictions.geojson"
# today's map (since 2025-07-01): 34 provinces and 3 321 communes (geodata/build_2025.py)
DEFAULT_UNITS_2025 = GEODATA / "units_2025.geojson"
UNITS_2025_SINCE = date(2025, 7, 1)
DEFAULT_POSTS = GEODATA / "border_posts.csv"
DEFAULT_CORRECTIONS = GEODATA / "adjacency_corrections.csv"
POSTS_SOURCE = "Borderwatch geodata/border_posts.csv (approximate positions)"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class FieldMap:
    """Which attribute of the user's file holds each jurisdiction field.

    A field left as None takes the constant given for it (`level`, `country`, …) instead.
    """

    code: str = "code"
    name: str = "name"
    name_local: str | None = "name_local"
    level: str | None = "level"
    parent_code: str | None = "parent_code"
    country: str | None = "country"
    valid_from: str | None = "valid_from"
    valid_to: str | None = "valid_to"
    source: str | None = "source"
    source_name: str | None = "source_name"
    official_code: str | None = "official_code"
    type_local: str | None = "type_local"
    geometry_approximate: str | None = "geometry_approximate"
    formed_from: str | None = "formed_from"
    official_area_km2: str | None = "official_area_km2"
    official_centroid: str | None = "official_centroid"


@dataclass(frozen=True)
class JurisdictionRecord:
    """One jurisdiction ready to insert (geometry valid, MultiPolygon, EPSG:4326)."""

    code: str
    name: str
    name_local: str | None
    level: str
    parent_code: str | None
    country: str
    geom: MultiPolygon
    valid_from: date | None
    valid_to: date | None
    source: str
    source_name: str | None
    official_code: str | None = None
    type_local: str | None = None
    geometry_approximate: bool = False
    formed_from: tuple[str, ...] | None = None
    official_area_km2: float | None = None
    official_centroid: tuple[float, float] | None = None


@dataclass
class LoadReport:
    """What a load did, for the operator."""

    jurisdictions: int = 0
    repaired: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    segments: int = 0
    adjacency_pairs: int = 0
    posts: int = 0
    incidents_rederived: int = 0

    def as_dict(self) -> dict[str, object]:
        """The report as the audit log keeps it."""
        return {
            "jurisdictions": self.jurisdictions,
            "segments": self.segments,
            "adjacency_pairs": self.adjacency_pairs,
            "posts": self.posts,
            "incidents_rederived": self.incidents_rederived,
            "repaired": self.repaired,
            "skipped": self.skipped,
        }


def _value(row: dict[str, Any], column: str | None) -> Any:
    if column is None:
        return None
    value = row.get(column)
    if value is None:
        return None
    if pd.api.types.is_scalar(value) and pd.isna(value):  # NaN / NaT for a missing attribute
        return None
    text_value = str(value).strip()
    return text_value or None


def _items(row: dict[str, Any], column: str | None) -> list[Any] | None:
    """A list attribute (a JSON array in GeoJSON, read as an array); None when absent."""
    value = None if column is None else row.get(column)
    if value is None or isinstance(value, str) or not hasattr(value, "__len__"):
        return None
    return list(value)


def _number(value: Any, label: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise InvalidInput(f"{label}: '{value}' is not a number") from exc


def _centroid(row: dict[str, Any], column: str | None, label: str) -> tuple[float, float] | None:
    items = _items(row, column)
    if items is None:
        return None
    if len(items) != 2:
        raise InvalidInput(f"{label}: {column} must be [longitude, latitude]")
    lon, lat = (_number(v, label) for v in items)
    if lon is None or lat is None or not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InvalidInput(f"{label}: {column} {items} is not a position")
    return lon, lat


def _date(value: Any, label: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise InvalidInput(f"{label}: '{value}' is not a date (YYYY-MM-DD)") from exc


def _polygonal(geom: Any, label: str, report: LoadReport) -> MultiPolygon | None:
    if geom is None or geom.is_empty:
        report.skipped.append(f"{label}: no geometry")
        return None
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        geom = shapely.make_valid(geom)
        report.repaired.append(f"{label}: {reason} -> repaired with make_valid")
    parts = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and not p.is_empty]
    if not parts:
        report.skipped.append(f"{label}: no polygon in geometry ({geom.geom_type})")
        return None
    dropped = len(shapely.get_parts(geom)) - len(parts)
    if dropped:
        report.repaired.append(f"{label}: dropped {dropped} non-polygon part(s)")
    return MultiPolygon(parts)


def _read_frame(path: Path, layer: str | None) -> pd.DataFrame:
    """The features of a boundary file, in EPSG:4326."""
    if not path.exists():
        raise InvalidInput(f"boundary file not found: {path}")
    try:
        frame = pyogrio.read_dataframe(path, layer=layer)
    except Exception as exc:
        raise InvalidInput(f"cannot read {path.name}: {exc}") from exc
    if frame.crs is None:
        raise InvalidInput(f"{path.name} has no coordinate reference system")
    if frame.crs.to_epsg() != spatial.SRID_WGS84:
        frame = frame.to_crs(spatial.SRID_WGS84)
    return frame


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The features' attributes, by column name (a column of a file is named by a string; pandas
    types a label as any hashable)."""
    return [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]


def read_boundaries(
    path: Path,
    fields: FieldMap | None = None,
    *,
    level: str | None = None,
    country: str | None = None,
    parent_code: str | None = None,
    source: str | None = None,
    layer: str | None = None,
) -> tuple[list[JurisdictionRecord], LoadReport]:
    """Read a GeoJSON / GeoPackage / Shapefile of boundaries, validating and repairing it."""
    fields = fields or FieldMap()
    frame = _read_frame(path, layer)
    report = LoadReport()
    records: list[JurisdictionRecord] = []
    columns = set(frame.columns)
    for required in (fields.code, fields.name):
        if required not in columns:
            raise InvalidInput(
                f"{path.name} has no attribute '{required}' (attributes: {sorted(columns)})"
            )
    for i, row in enumerate(_records(frame)):
        code = _value(row, fields.code)
        label = f"feature {i} ({code or 'no code'})"
        if not code:
            report.skipped.append(f"{label}: empty code")
            continue
        lvl = level or _value(row, fields.level)
        if lvl not in LEVELS:
            raise InvalidInput(f"{label}: level '{lvl}' is not one of {', '.join(LEVELS)}")
        ctry = country or _value(row, fields.country)
        if not ctry or len(str(ctry)) != 3:
            raise InvalidInput(f"{label}: country must be an ISO 3166-1 alpha-3 code, got '{ctry}'")
        geom = _polygonal(row.get("geometry"), label, report)
        if geom is None:
            continue
        records.append(
            JurisdictionRecord(
                code=str(code),
                name=str(_value(row, fields.name) or code),
                name_local=_value(row, fields.name_local),
                level=str(lvl),
                parent_code=parent_code or _value(row, fields.parent_code),
                country=str(ctry).upper(),
                geom=geom,
                valid_from=_date(_value(row, fields.valid_from), label),
                valid_to=_date(_value(row, fields.valid_to), label),
                source=source or _value(row, fields.source) or f"file {path.name}",
                source_name=_value(row, fields.source_name),
                official_code=_value(row, fields.official_code),
                type_local=_value(row, fields.type_local),
                geometry_approximate=str(_value(row, fields.geometry_approximate)).lower()
                in ("true", "1"),
                formed_from=tuple(str(c) for c in _items(row, fields.formed_from) or ()) or None,
                official_area_km2=_number(_value(row, fields.official_area_km2), label),
                official_centroid=_centroid(row, fields.official_centroid, label),
            )
        )
    return records, report


def _ewkt_point(lon_lat: tuple[float, float] | None) -> str | None:
    if lon_lat is None:
        return None
    return f"SRID={spatial.SRID_WGS84};POINT({lon_lat[0]} {lon_lat[1]})"


async def write_jurisdictions(*, session: AsyncSession, records: list[JurisdictionRecord]) -> int:
    """Insert records, replacing any stored version with the same code and valid_from."""
    if not records:
        return 0
    keys = [(r.code, r.valid_from) for r in records]
    await session.execute(
        delete(Jurisdiction).where(
            tuple_(Jurisdiction.code, func.coalesce(Jurisdiction.valid_from, date.min)).in_(
                [(c, v or date.min) for c, v in keys]
            )
        )
    )
    rows = [
        {
            "code": r.code,
            "name": r.name,
            "name_local": r.name_local,
            "level": r.level,
            "parent_code": r.parent_code,
            "country": r.country,
            "geom": f"SRID={spatial.SRID_WGS84};{r.geom.wkt}",
            "valid_from": r.valid_from,
            "valid_to": r.valid_to,
            "source": r.source,
            "source_name": r.source_name,
            "official_code": r.official_code,
            "type_local": r.type_local,
            "geometry_approximate": r.geometry_approximate,
            "formed_from": list(r.formed_from) if r.formed_from else None,
            "official_area_km2": r.official_area_km2,
            "official_centroid": _ewkt_point(r.official_centroid),
        }
        for r in records
    ]
    await session.execute(insert(Jurisdiction), rows)
    return len(rows)


def read_posts(path: Path) -> list[posts.PostRecord]:
    """Read border posts from CSV (code,name,name_local,kind,agency,border,province_code,…)."""
    records: list[posts.PostRecord] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            kind = row["kind"].strip()
            if kind not in KINDS:
                raise InvalidInput(f"{path.name} line {n}: kind '{kind}' not in {', '.join(KINDS)}")
            lon, lat = float(row["lon"]), float(row["lat"])
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                raise InvalidInput(f"{path.name} line {n}: coordinates out of range")
            records.append(
                posts.PostRecord(
                    code=row["code"].strip(),
                    name=row["name"].strip(),
                    name_local=(row.get("name_local") or "").strip() or None,
                    kind=kind,
                    agency=row["agency"].strip(),
                    border=(row.get("border") or "").strip() or None,
                    province_code=(row.get("province_code") or "").strip() or None,
                    counterpart=(row.get("counterpart") or "").strip() or None,
                    lon=lon,
                    lat=lat,
                    position_approximate=row.get("approximate", "true").strip().lower() != "false",
                    source=POSTS_SOURCE,
                )
            )
    return records


def read_corrections(path: Path) -> list[jurisdictions.AdjacencyCorrection]:
    """Read the explicit adjacency corrections (a,b,action,evidence)."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        out = []
        for row in csv.DictReader(fh):
            if row["action"] not in ("add", "remove") or not row["evidence"].strip():
                raise InvalidInput(f"{path.name}: each correction needs add/remove and evidence")
            out.append(
                jurisdictions.AdjacencyCorrection(
                    a=row["a"], b=row["b"], action=row["action"], evidence=row["evidence"].strip()
                )
            )
        return out


async def derive(
    *,
    session: AsyncSession,
    settings: Settings,
    report: LoadReport,
    corrections: list[jurisdictions.AdjacencyCorrection],
    progress: Progress = _quiet,
    post_records: list[posts.PostRecord] | None = None,
) -> None:
    """Rebuild border segments and adjacency, write `post_records` (when given), then
    re-derive every incident's fields, once (at a million incidents that is the long part)."""
    # geometry work on whole countries can take longer than the request timeout
    await session.execute(text("SET LOCAL statement_timeout = 0"))
    progress("cutting jurisdictions into indexed pieces")
    await clear_zones(session=session)
    await jurisdictions.refresh_pieces(session=session)
    # fresh statistics: the derivation's nearest-piece searches then use the spatial index
    await session.execute(text("ANALYZE jurisdiction_piece"))
    progress("deriving national border segments")
    report.segments = await borders.derive_segments(session=session, home=settings.home_country)
    progress("deriving jurisdiction adjacency")
    report.adjacency_pairs, skipped = await jurisdictions.derive_adjacency(
        session=session, gap_m=settings.adjacency_gap_m, corrections=corrections
    )
    report.skipped += [f"adjacency correction {s}" for s in skipped]
    if post_records is not None:
        progress("writing border posts")
        report.posts = await posts.upsert(session=session, records=post_records)
    progress("re-deriving incident jurisdictions and border distances")
    result = await session.execute(text("UPDATE incident SET geom = geom"))
    report.incidents_rederived = int(getattr(result, "rowcount", 0) or 0)


async def needs_default(*, session: AsyncSession) -> bool:
    """Whether the bundled boundaries should be loaded: the database has none, or it lacks
    today's units (a database loaded before they were bundled)."""
    found = await session.execute(
        text(
            "SELECT count(*), count(*) FILTER (WHERE valid_from = :since AND level = 'province')"
            " FROM jurisdiction"
        ),
        {"since": UNITS_2025_SINCE},
    )
    total, today = found.one()
    return not total or not today


async def load_default(
    *,
    session: AsyncSession,
    settings: Settings,
    actor: str = audit.SYSTEM_ACTOR,
    progress: Progress = _quiet,
) -> LoadReport:
    """Load the bundled boundaries, border posts and corrections in one transaction, and
    record it in the audit log as `actor`'s."""
    progress(f"reading {DEFAULT_BOUNDARIES.name} and {DEFAULT_UNITS_2025.name}")
    records, report = read_boundaries(DEFAULT_BOUNDARIES)
    today, today_report = read_boundaries(DEFAULT_UNITS_2025)
    records += today
    report.repaired += today_report.repaired
    report.skipped += today_report.skipped
    progress(f"writing {len(records)} jurisdictions")
    report.jurisdictions = await write_jurisdictions(session=session, records=records)
    await derive(
        session=session,
        settings=settings,
        report=report,
        corrections=read_corrections(DEFAULT_CORRECTIONS),
        progress=progress,
        post_records=read_posts(DEFAULT_POSTS),
    )
    await _audit(session, actor=actor, source="default", report=report)
    return report


async def _audit(session: AsyncSession, *, actor: str, source: str, report: LoadReport) -> None:
    await audit.record(
        session=session, actor=actor, action="geodata_load", entity_type="geodata",
        entity_id=source, after=report.as_dict(),
    )  # fmt: skip


async def load_file(
    *,
    session: AsyncSession,
    settings: Settings,
    path: Path,
    fields: FieldMap,
    level: str | None,
    country: str | None,
    parent_code: str | None,
    source: str | None,
    layer: str | None = None,
    actor: str = audit.SYSTEM_ACTOR,
    progress: Progress = _quiet,
) -> LoadReport:
    """Load a user's boundary file (replacing same code + valid_from), re-derive, and record
    it in the audit log as `actor`'s."""
    progress(f"reading {path.name}")
    records, report = read_boundaries(
        path,
        fields,
        level=level,
        country=country,
        parent_code=parent_code,
        source=source,
        layer=layer,
    )
    if not records:
        raise InvalidInput(f"{path.name}: no usable polygon features")
    progress(f"writing {len(records)} jurisdictions")
    report.jurisdictions = await write_jurisdictions(session=session, records=records)
    await derive(
        session=session,
        settings=settings,
        report=report,
        corrections=read_corrections(DEFAULT_CORRECTIONS),
        progress=progress,
    )
    await _audit(session, actor=actor, source=str(path), report=report)
    return report


# official codes are zero-padded in the registry: 2 digits for a province, 5 for a commune
OFFICIAL_CODE_DIGITS = {"province": 2, "commune": 5}


def _official(value: Any, level: str) -> str | None:
    """An official code as the registry writes it ('30769', '00466', '91'), from text or a
    number (a spreadsheet drops the leading zeros)."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    text_value = str(value).strip()
    if text_value.endswith(".0"):  # a float column
        text_value = text_value[:-2]
    if not text_value.isdigit():
        return text_value or None
    return text_value.zfill(OFFICIAL_CODE_DIGITS[level])


REPLACE_OFFICIAL_SQL = text(
    """
    UPDATE jurisdiction SET geom = ST_GeomFromText(:wkt, :srid), geometry_approximate = false,
           source = :source
     WHERE level = :level AND official_code = :official
       AND (valid_from IS NULL OR valid_from <= :today)
       AND (valid_to IS NULL OR valid_to > :today)
    RETURNING code
    """
)


async def load_official(
    *,
    session: AsyncSession,
    settings: Settings,
    path: Path,
    level: str,
    official_field: str,
    source: str | None = None,
    layer: str | None = None,
    actor: str = audit.SYSTEM_ACTOR,
    progress: Progress = _quiet,
) -> LoadReport:
    """Replace the polygons of today's units of `level` (province or commune) with an agency's
    own, matched on the official code in `official_field`: each replaced unit keeps its code,
    names and dates and is no longer approximate; a feature whose code names no unit in force
    today is reported and skipped. Then everything is derived again, as for any load."""
    if level not in OFFICIAL_CODE_DIGITS:
        raise InvalidInput(f"--level must be one of {', '.join(OFFICIAL_CODE_DIGITS)}")
    progress(f"reading {path.name}")
    frame = _read_frame(path, layer)
    if official_field not in frame.columns:
        raise InvalidInput(
            f"{path.name} has no attribute '{official_field}'"
            f" (attributes: {sorted(c for c in frame.columns if c != 'geometry')})"
        )
    report = LoadReport()
    today = eras.today()
    seen: set[str] = set()
    for i, row in enumerate(_records(frame)):
        official = _official(row.get(official_field), level)
        label = f"feature {i} ({official_field} {official or 'empty'})"
        if official is None:
            report.skipped.append(f"{label}: no official code")
            continue
        if official in seen:
            report.skipped.append(f"{label}: a second polygon for the same code")
            continue
        geom = _polygonal(row.get("geometry"), label, report)
        if geom is None:
            continue
        replaced = await session.execute(
            REPLACE_OFFICIAL_SQL,
            {
                "wkt": geom.wkt,
                "srid": spatial.SRID_WGS84,
                "source": source or f"file {path.name}",
                "level": level,
                "official": official,
                "today": today,
            },
        )
        if replaced.scalar() is None:
            report.skipped.append(f"{label}: no {level} in force today has this official code")
            continue
        seen.add(official)
    report.jurisdictions = len(seen)
    if not seen:
        raise InvalidInput(f"{path.name}: no feature matched a {level} by its official code")
    await derive(
        session=session,
        settings=settings,
        report=report,
        corrections=read_corrections(DEFAULT_CORRECTIONS),
        progress=progress,
    )
    await _audit(session, actor=actor, source=f"{path} (official {level} polygons)", report=report)
    return report
