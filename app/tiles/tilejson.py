"""TileJSON 3.0.0 documents: what a layer holds, where its tiles are, and its data's extent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

WORLD = [-180.0, -85.051129, 180.0, 85.051129]  # what Web Mercator can show


@dataclass(frozen=True)
class LayerInfo:
    """What TileJSON says about a layer."""

    description: str
    minzoom: int
    maxzoom: int
    fields: dict[str, str]


@dataclass(frozen=True)
class Extent:
    """Where a layer's TileJSON bounds come from: a table's extent, widened by `pad_deg`; with
    `home`, the home country's outline only (the incidents' layers: their data is Vietnam's,
    while the jurisdiction table also holds the neighbours, China included)."""

    table: str
    pad_deg: float = 0.0
    home: bool = False


@dataclass(frozen=True)
class Where:
    """A layer's TileJSON bounds (west, south, east, north) and centre (lon, lat)."""

    bounds: list[float]
    center: list[float]


# a point inside the home country's largest part (mainland Vietnam; the middle of its box lies
# in Laos): the layer's centre
HOME_CENTRE = (
    "SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_PointOnSurface(part) c FROM jurisdiction j,"
    " LATERAL ST_Dump(j.geom) d(path, part) WHERE level = 'country' AND code = :home"
    " ORDER BY ST_Area(part) DESC LIMIT 1) x"
)


async def where(*, session: AsyncSession, extent: Extent, home_country: str) -> Where:
    """The bounds of the table's geometries (of the home country's, for `home`), widened and
    clamped to WORLD (WORLD when there are none); the centre is the middle of the bounds, or
    for `home` a point inside the largest part (mainland Vietnam: not the sea between it and
    Trường Sa, nor Laos)."""
    only_home = " WHERE level = 'country' AND code = :home" if extent.home else ""
    params = {"home": home_country} if extent.home else {}
    row = (
        await session.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)"
                f" FROM (SELECT ST_Extent(geom) AS e FROM {extent.table}{only_home}) x"
            ),
            params,
        )
    ).one()
    if row[0] is None:
        return Where(list(WORLD), [0.0, 0.0])
    w, s, e, n = (float(v) for v in row)
    pad = extent.pad_deg
    bounds = [
        round(max(WORLD[0], w - pad), 6),
        round(max(WORLD[1], s - pad), 6),
        round(min(WORLD[2], e + pad), 6),
        round(min(WORLD[3], n + pad), 6),
    ]
    centre = [round((bounds[0] + bounds[2]) / 2, 6), round((bounds[1] + bounds[3]) / 2, 6)]
    if extent.home:
        found = (await session.execute(text(HOME_CENTRE), params)).one()
        centre = [round(float(found[0]), 6), round(float(found[1]), 6)]
    return Where(bounds, centre)


def document(*, layer: str, info: LayerInfo, url: str, version: str, at: Where) -> dict[str, Any]:
    """A TileJSON 3.0.0 document for one layer."""
    return {
        "tilejson": "3.0.0",
        "name": f"borderwatch {layer}",
        "description": info.description,
        "tiles": [url],
        "scheme": "xyz",
        "minzoom": info.minzoom,
        "maxzoom": info.maxzoom,
        "bounds": at.bounds,
        "center": [*at.center, max(info.minzoom, 5)],
        "vector_layers": [
            {
                "id": layer,
                "description": info.description,
                "minzoom": info.minzoom,
                "maxzoom": info.maxzoom,
                "fields": info.fields,
            }
        ],
        "data_version": version,
    }
