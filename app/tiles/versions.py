"""Layer versions: the change counters (table `layer_version`, kept by triggers) that key tile
URLs and ETags. See docs/tiles.md, "Caching and freshness"."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Select, bindparam, func, literal_column, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import DriverStatement, fetch_row
from app.incidents.filters import IncidentFilter
from app.tiles.models import LayerVersion

Versions = dict[str, tuple[int, str]]  # counter name -> (change counter, database epoch)

# every counter and epoch as one JSON value: read alone, or beside a tile in the tile's statement
# (one snapshot)
VERSIONS_SQL = (
    "(SELECT json_object_agg(layer, json_build_array(version, epoch)) FROM layer_version)"
)
VERSIONS_JSON: ColumnElement[Any] = literal_column(VERSIONS_SQL)


@lru_cache(maxsize=4)
def _statement(dialect: Dialect) -> DriverStatement:
    return DriverStatement(select(VERSIONS_JSON), dialect, {})


async def read(*, session: AsyncSession) -> Versions:
    """Each counter and its database epoch (one tiny query, on the driver connection: a 304
    answered from it costs no transaction)."""
    conn = await session.connection()
    row = await fetch_row(conn, _statement(conn.dialect), {})
    assert row is not None  # one row, always
    return parse(row[0])


def parse(value: Any) -> Versions:
    """The VERSIONS_JSON value as a dict."""
    data = orjson.loads(value) if isinstance(value, str | bytes) else (value or {})
    return {str(k): (int(v[0]), str(v[1])) for k, v in data.items()}


def token(depends: tuple[str, ...], versions: Versions, view: str = "") -> str:
    """The version token of a layer made of the `depends` counters: epoch, those counters, and
    for incident layers a short tag of the viewer's scope (what a key may see can change without
    any data change, e.g. the cooperation distance)."""
    epoch = versions[depends[0]][1]
    out = "-".join([epoch, *(str(versions[d][0]) for d in depends)])
    if view:
        out += "-" + hashlib.sha256(view.encode()).hexdigest()[:6]
    return out


def incident_view(filt: IncidentFilter, *, aggregate_only: bool, home: str = "") -> str:
    """What, besides the data, decides an incident layer's content for this principal (and a
    cooperation area's version: its members may change while the incidents do not)."""
    area = f"|{filt.area.area_id}:{filt.area.version}" if filt.area is not None else ""
    return f"{filt.scope.view}|{int(aggregate_only)}|{home}{area}"


# The data a tile was made from, exactly: each counter with the instant it moved (a counter
# rolled back and moved again, as in the tests' transactions, reaches the same number at another
# instant). Only the incidents and jurisdictions counters: the incidents layer depends on those.
STAMP_SQL = (
    "(SELECT string_agg(layer || ':' || epoch || ':' || version || ':' || changed_at, ','"
    " ORDER BY layer) FROM layer_version WHERE layer IN ('incidents', 'jurisdictions'))"
)
STAMP: ColumnElement[Any] = literal_column(STAMP_SQL)


def stamp_parts(stamp: str) -> dict[str, tuple[str, int, str]]:
    """A STAMP taken apart: per layer (epoch, version, the instant it moved)."""
    out: dict[str, tuple[str, int, str]] = {}
    for part in stamp.split(","):
        fields = part.split(":", 3)
        if len(fields) == 4 and fields[2].isdigit():
            out[fields[0]] = (fields[1], int(fields[2]), fields[3])
    return out


# whether this transaction has written: then what it sees includes changes that its counters
# (bumped at COMMIT) do not name yet
WRITING: ColumnElement[Any] = literal_column("(txid_current_if_assigned() IS NOT NULL)")


@lru_cache(maxsize=4)
def _stamped(dialect: Dialect) -> DriverStatement:
    return DriverStatement(select(VERSIONS_JSON, STAMP, WRITING), dialect, {})


async def read_stamped(*, session: AsyncSession) -> tuple[Versions, str, bool]:
    """The versions (read), the STAMP of the incident counters, and whether this transaction
    has written (WRITING), in one tiny query on the driver connection."""
    conn = await session.connection()
    row = await fetch_row(conn, _stamped(conn.dialect), {})
    assert row is not None  # one row, always
    return parse(row[0]), str(row[1]), bool(row[2])


# One counter's STAMP (as above) and WRITING: for answers kept per version of one layer only
# (the jurisdictions' lists), which incident writes must not make afresh.
def _layer_stamp_select() -> Select[Any]:
    lv = LayerVersion
    stamp = (
        select(func.concat_ws(":", lv.layer, lv.epoch, lv.version, lv.changed_at))
        .where(lv.layer == bindparam("layer"))
        .scalar_subquery()
    )
    return select(stamp, WRITING)


@lru_cache(maxsize=4)
def _layer_stamp(dialect: Dialect) -> DriverStatement:
    return DriverStatement(_layer_stamp_select(), dialect, {"layer": ""})


async def read_layer_stamp(*, session: AsyncSession, layer: str) -> tuple[str, bool]:
    """The STAMP of one layer's counter (empty when it has none yet) and whether this
    transaction has written (WRITING), in one tiny query on the driver connection."""
    conn = await session.connection()
    row = await fetch_row(conn, _layer_stamp(conn.dialect), {"layer": layer})
    assert row is not None  # one row, always
    return str(row[0] or ""), bool(row[1])
